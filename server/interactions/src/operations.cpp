// The operation table (operations.h). One row per operation; handlers live in
// their own files.
#include "espace/interactions/operations.h"

#include <algorithm>

#include "common.h"
#include "espace/interactions/cda.h"
#include "espace/interactions/terminology_ops.h"
#include "espace/interactions/validate.h"
#include "messaging/reminders_ops.h"
#include "vaccination/vaccination_ops.h"

namespace espace::interactions {

// Patient/[id]/$everything (everything.cpp).
FhirResponse everything_operation(const Services& services, const FhirRequest& request);
// $export kick-off when the http layer has no export jobs (export/bulk_export.cpp).
FhirResponse export_unavailable_operation(const Services& services, const FhirRequest& request);

namespace {

FhirResponse expand(const Services& s, const FhirRequest& r) { return terminology_operation(s, r, "expand"); }
FhirResponse validate_code(const Services& s, const FhirRequest& r) {
  return terminology_operation(s, r, "validate-code");
}
FhirResponse lookup(const Services& s, const FhirRequest& r) { return terminology_operation(s, r, "lookup"); }
FhirResponse subsumes(const Services& s, const FhirRequest& r) { return terminology_operation(s, r, "subsumes"); }

OperationDef row(std::string name, bool system, bool type, bool instance, std::vector<std::string> types,
                 bool allows_get, OperationBody body, bool changes_state, OperationHandler handler) {
  OperationDef d;
  d.name = std::move(name);
  d.system = system;
  d.type = type;
  d.instance = instance;
  d.types = std::move(types);
  d.allows_get = allows_get;
  d.body = body;
  d.changes_state = changes_state;
  d.handler = handler;
  return d;
}

}  // namespace

const std::vector<OperationDef>& operation_table() {
  using B = OperationBody;
  //                 name             system type   inst   types              GET    body         writes handler
  static const std::vector<OperationDef> table = {
      row("validate",      false, true,  true,  {},                false, B::Resource, false, validate_operation),
      row("expand",        false, true,  true,  {"ValueSet"},      true,  B::Resource, false, expand),
      row("validate-code", false, true,  true,  {"ValueSet"},      true,  B::Resource, false, validate_code),
      row("lookup",        false, true,  false, {"CodeSystem"},    true,  B::Resource, false, lookup),
      row("subsumes",      false, true,  false, {"CodeSystem"},    true,  B::Resource, false, subsumes),
      row("ingest-cda",    false, true,  false, {"DocumentReference"}, false, B::Raw,   true,  ingest_cda_operation),
      row("vaccination-booklet",         false, false, true, {"Patient"}, true, B::None,     false, vaccination_booklet_operation),
      row("immunization-recommendation", false, false, true, {"Patient"}, true, B::Resource, false, immunization_recommendation_operation),
      row("screening-reminders",         false, false, true, {"Patient"}, true, B::None,     false, screening_reminders_operation),
      row("everything",                  false, false, true, {"Patient"}, true, B::Resource, false, everything_operation),
      row("materialize-reminders",       false, false, true, {"Patient"}, false, B::None,     true,  materialize_reminders_operation),
      // Bulk Data kick-off ([base], Patient, Patient/[id]); the http layer hands it to interactions/bulk_export.h.
      row("export",                      true,  true,  true, {"Patient"}, true, B::None,     false, export_unavailable_operation),
  };
  return table;
}

const OperationDef* find_operation(std::string_view name, OperationLevel level, std::string_view type) {
  for (const OperationDef& d : operation_table()) {
    if (d.name != name) continue;
    bool at_level = level == OperationLevel::System ? d.system : level == OperationLevel::Type ? d.type : d.instance;
    if (!at_level) continue;
    // The types restrict the type and instance levels; a system-level call names none.
    if (level != OperationLevel::System && !d.types.empty() &&
        std::find(d.types.begin(), d.types.end(), type) == d.types.end())
      continue;
    return &d;
  }
  return nullptr;
}

FhirResponse run_operation(const Services& services, const FhirRequest& req) {
  OperationLevel level = req.type.empty() ? OperationLevel::System
                         : req.id.empty() ? OperationLevel::Type
                                          : OperationLevel::Instance;
  if (!req.type.empty() && !services.defs->resource_type(req.type))
    return error_response(ErrorCategory::NotFound, "not-supported", "unknown resource type '" + req.type + "'");
  const OperationDef* op = find_operation(req.operation, level, req.type);
  if (!op) return error_response(ErrorCategory::NotFound, "not-supported", "unknown operation $" + req.operation);
  return op->handler(services, req);
}

}  // namespace espace::interactions
