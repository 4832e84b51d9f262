#include "espace/policy/policy.h"

namespace espace::policy {

namespace {
class OpenPolicy final : public Policy {
 public:
  fhir::Status authorize(const Caller&, const interactions::FhirRequest&) const override { return fhir::Status::ok(); }
  const char* name() const override { return "none"; }
};
}  // namespace

const char* role_name(Role role) {
  switch (role) {
    case Role::Anonymous: return "anonymous";
    case Role::Patient: return "patient";
    case Role::LegalRepresentative: return "legal-representative";
    case Role::Professional: return "professional";
    case Role::System: return "system";
    case Role::Administrator: return "administrator";
    case Role::Open: return "open";
  }
  return "unknown";
}

std::unique_ptr<Policy> make_open_policy() { return std::make_unique<OpenPolicy>(); }

}  // namespace espace::policy
