// FHIR operations ($name, hl7.org/fhir/R4/operations.html) as one table of
// data: the http layer routes by it, the policy layer reads what each one
// does, dispatch() runs it, and the CapabilityStatement can list it.
//
// To add an operation: write its handler in its own file (citing its spec)
// and add one row to the table in operations.cpp.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "espace/interactions/api.h"

namespace espace::interactions {

enum class OperationLevel { System, Type, Instance };

// What the http layer does with a POST body before calling the handler.
enum class OperationBody {
  None,      // no body accepted
  Resource,  // FHIR JSON/XML parsed into FhirRequest::resource (a Parameters or a resource)
  Raw,       // bytes kept in FhirRequest::body, media type in FhirRequest::content_type
};

using OperationHandler = FhirResponse (*)(const Services&, const FhirRequest&);

struct OperationDef {
  std::string name;                 // without '$'
  bool system = false, type = false, instance = false;  // levels it is defined at
  std::vector<std::string> types;   // resource types it applies to at type/instance level; empty: any
  bool allows_get = false;          // idempotent: may be invoked with GET
  OperationBody body = OperationBody::Resource;
  bool changes_state = false;       // writes something (the policy treats it as a write)
  OperationHandler handler = nullptr;
};

// Every operation the server knows.
const std::vector<OperationDef>& operation_table();

// The row for `name` at `level` on `type` (empty for system level), or null.
const OperationDef* find_operation(std::string_view name, OperationLevel level, std::string_view type);

// Runs request.operation (request.interaction == Operation). The request's
// level is System when type is empty, Instance when id is set, else Type.
FhirResponse run_operation(const Services& services, const FhirRequest& request);

}  // namespace espace::interactions
