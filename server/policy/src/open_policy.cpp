#include "espace/policy/policy.h"

namespace espace::policy {

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

namespace {

class PassThroughGuard final : public RequestGuard {
 public:
  explicit PassThroughGuard(const interactions::Services& base) : services_(base) {}
  const interactions::Services& services() const override { return services_; }
  const AccessRecord& record() const override { return record_; }

 private:
  const interactions::Services& services_;
  AccessRecord record_;
};

class OpenPolicy final : public Policy {
 public:
  fhir::Status authenticate(const Credentials& credentials, Caller* out) const override {
    *out = Caller();
    out->authenticated = true;
    out->role = Role::Open;
    out->remote_address = credentials.remote_address;
    return fhir::Status::ok();
  }
  fhir::Status begin(const Caller&, const interactions::FhirRequest&, const interactions::Services& base,
                     std::unique_ptr<RequestGuard>* out) const override {
    *out = std::make_unique<PassThroughGuard>(base);
    return fhir::Status::ok();
  }
  const char* name() const override { return "none"; }
};

}  // namespace

std::unique_ptr<Policy> make_open_policy() { return std::make_unique<OpenPolicy>(); }

}  // namespace espace::policy
