// Validation before writes, and the $validate operation.
#include "espace/interactions/validate.h"

#include "common.h"
#include "espace/profiles/validator.h"

namespace espace::interactions {

namespace {

fhir::Issue make_issue(fhir::Severity severity, const char* code, std::string text, std::string id,
                       std::string expression = {}) {
  fhir::Issue i;
  i.severity = severity;
  i.code = code;
  i.diagnostics = std::move(text);
  i.message_id = std::move(id);
  i.expression = std::move(expression);
  return i;
}

// A resource taken out of a Parameters parameter becomes a root of its own.
fhir::Node as_root(const fhir::Node& n) {
  fhir::Node copy = n;
  copy.def = nullptr;
  copy.name = copy.type ? std::string_view(copy.type->name) : std::string_view();
  return copy;
}

}  // namespace

fhir::Status validate_for_write(const Services& services, const fhir::Node& resource,
                                const std::string& location_prefix) {
  if (!services.validator) return fhir::Status::ok();
  profiles::ValidationOptions opts;
  opts.location_prefix = location_prefix;
  opts.apply_required_profiles = true;  // the profiles the server requires per type (none when relaxed)
  std::vector<fhir::Issue> issues = services.validator->validate(resource, opts);
  if (!profiles::has_errors(issues)) return fhir::Status::ok();
  fhir::Status s;
  s.set_category(ErrorCategory::Unprocessable);
  // Errors first: clients and logs read the top of the outcome.
  std::stable_partition(issues.begin(), issues.end(), [](const fhir::Issue& i) {
    return i.severity == fhir::Severity::Error || i.severity == fhir::Severity::Fatal;
  });
  for (fhir::Issue& i : issues) s.add(std::move(i));
  return s;
}

FhirResponse validate_operation(const Services& services, const FhirRequest& req) {
  if (!services.validator)
    return error_response(ErrorCategory::NotFound, "not-supported", "this server has no validator configured");
  std::string mode, profile;
  for (const auto& [name, value] : req.params) {
    if (name == "mode") mode = value;
    else if (name == "profile") profile = value;
  }
  std::optional<fhir::Node> target;
  if (req.resource && fhir::resource_type(*req.resource) == "Parameters") {
    for (const fhir::Node& p : req.resource->children) {
      if (!p.def || p.def->name != "parameter") continue;
      std::string_view name = p.child_value("name");
      if (name == "resource") {
        if (const fhir::Node* r = p.child("resource")) target = as_root(*r);
      } else if (name == "mode") {
        mode = std::string(p.child_value("value"));
      } else if (name == "profile") {
        profile = std::string(p.child_value("value"));
      }
    }
  } else if (req.resource) {
    target = *req.resource;
  }
  if (!mode.empty() && mode != "create" && mode != "update" && mode != "delete")
    return error_response(ErrorCategory::Invalid, "invalid",
                          "mode must be create, update or delete (got '" + mode + "')", "mode");

  std::vector<fhir::Issue> issues;
  if (mode == "delete") {
    if (req.id.empty())
      return error_response(ErrorCategory::Invalid, "required", "mode=delete needs [type]/[id]/$validate");
    issues.push_back(make_issue(fhir::Severity::Information, "informational",
                                "no rule of this server prevents deleting " + req.type + "/" + req.id,
                                "validate-delete-ok"));
  } else {
    if (!target)
      return error_response(ErrorCategory::Invalid, "required",
                            "$validate needs a resource (the body, or the 'resource' parameter of a Parameters)");
    std::string_view type = fhir::resource_type(*target);
    if (!req.type.empty() && type != req.type)
      return error_response(ErrorCategory::Invalid, "invalid",
                            "the resource is a " + std::string(type) + " but the URL names " + req.type);
    if (mode == "update") {
      std::string_view id = fhir::resource_id(*target);
      if (id.empty())
        issues.push_back(make_issue(fhir::Severity::Error, "required", "an update needs the resource id",
                                    "validate-update-no-id", std::string(type) + ".id"));
      else if (!req.id.empty() && id != req.id)
        issues.push_back(make_issue(fhir::Severity::Error, "invalid",
                                    "the id in the resource differs from the id in the URL", "validate-update-id",
                                    std::string(type) + ".id"));
    }
    profiles::ValidationOptions opts;
    if (!profile.empty()) opts.profiles.push_back(profile);
    for (fhir::Issue& i : services.validator->validate(*target, opts)) issues.push_back(std::move(i));
    if (issues.empty())
      issues.push_back(make_issue(fhir::Severity::Information, "informational", "no issues found", "validate-ok"));
  }
  FhirResponse r;
  r.status = 200;
  r.json = fhir::outcome_json(issues);
  return r;
}

}  // namespace espace::interactions
