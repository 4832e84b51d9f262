#include "espace/policy/policy.h"

namespace espace::policy {

namespace {
class OpenPolicy final : public Policy {
 public:
  fhir::Status authorize(const Caller&, const interactions::FhirRequest&) const override { return fhir::Status::ok(); }
  const char* name() const override { return "none"; }
};
}  // namespace

std::unique_ptr<Policy> make_open_policy() { return std::make_unique<OpenPolicy>(); }

}  // namespace espace::policy
