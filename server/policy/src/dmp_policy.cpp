// The DMP policy: bearer JWTs (auth.h), then the request-level rules, the
// patient-level decision on the patients the request names, and the guard
// (guard.h) applying DmpRules to everything the interaction touches.
#include <chrono>

#include "espace/policy/rules.h"

namespace espace::policy {

using fhir::Status;

namespace {

int64_t system_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool is_write(interactions::Interaction i) {
  using interactions::Interaction;
  return i == Interaction::Create || i == Interaction::Update || i == Interaction::Patch ||
         i == Interaction::Delete || i == Interaction::ConditionalUpdate || i == Interaction::ConditionalDelete ||
         i == Interaction::ConditionalPatch;
}

class DmpPolicy final : public Policy {
 public:
  DmpPolicy(std::unique_ptr<Authenticator> auth, const RulesConfig& config, const fhir::Definitions& defs,
            std::function<int64_t()> clock_us)
      : auth_(std::move(auth)), config_(config), defs_(defs), clock_us_(std::move(clock_us)) {}

  Status authenticate(const Credentials& credentials, Caller* out) const override {
    return auth_->authenticate(credentials, out);
  }

  Status begin(const Caller& caller, const interactions::FhirRequest& request, const interactions::Services& base,
               std::unique_ptr<RequestGuard>* out) const override {
    std::vector<std::string> named;
    if (Status s = check_request(config_, defs_, caller, request, &named); !s) return s;
    int64_t now = clock_us_ ? clock_us_() : system_now_us();
    auto rules = std::make_unique<DmpRules>(config_, defs_, *base.store, caller, now, named);
    // Patient-level refusal is a 403 whether or not the patient has a record.
    for (const std::string& patient : named) {
      Verdict v = rules->patient_access(patient);
      if (v.visible) continue;
      // A system registering a new patient names a record that does not exist yet.
      if (caller.role == Role::System && request.type == "Patient" && is_write(request.interaction) &&
          !rules->facts(patient).exists)
        continue;
      return refusal(public_rule(caller, v.rule), "no access to this patient's record");
    }
    *out = make_guard(base, std::move(rules));
    return Status::ok();
  }

  const char* name() const override { return "jwt"; }

 private:
  std::unique_ptr<Authenticator> auth_;
  const RulesConfig& config_;
  const fhir::Definitions& defs_;
  std::function<int64_t()> clock_us_;
};

}  // namespace

Status make_dmp_policy(const DmpPolicyConfig& options, const RulesConfig& config, const fhir::Definitions& defs,
                       std::unique_ptr<Policy>* out) {
  std::unique_ptr<Authenticator> auth;
  if (Status s = Authenticator::create(options.auth, &auth); !s) return s;
  *out = std::make_unique<DmpPolicy>(std::move(auth), config, defs, options.clock_us);
  return Status::ok();
}

}  // namespace espace::policy
