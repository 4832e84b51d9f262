// The one table from interaction to implementation.
#include "common.h"
#include "espace/interactions/operations.h"

namespace espace::interactions {

const char* interaction_code(Interaction i) {
  switch (i) {
    case Interaction::Read: return "read";
    case Interaction::VRead: return "vread";
    case Interaction::Update: return "update";
    case Interaction::Patch: return "patch";
    case Interaction::Delete: return "delete";
    case Interaction::HistoryInstance: return "history-instance";
    case Interaction::HistoryType: return "history-type";
    case Interaction::HistorySystem: return "history-system";
    case Interaction::Create: return "create";
    case Interaction::SearchType: return "search-type";
    case Interaction::SearchSystem: return "search-system";
    case Interaction::Capabilities: return "capabilities";
    case Interaction::Batch: return "batch";
    case Interaction::Transaction: return "transaction";
    case Interaction::ConditionalUpdate: return "update";
    case Interaction::ConditionalDelete: return "delete";
    case Interaction::ConditionalPatch: return "patch";
    case Interaction::Operation: return "operation";
  }
  return "unknown";
}

int http_status(ErrorCategory c) {
  switch (c) {
    case ErrorCategory::None: return 200;
    case ErrorCategory::Invalid: return 400;
    case ErrorCategory::Unauthorized: return 401;
    case ErrorCategory::Forbidden: return 403;
    case ErrorCategory::NotFound: return 404;
    case ErrorCategory::NotAllowed: return 405;
    case ErrorCategory::NotAcceptable: return 406;
    case ErrorCategory::Conflict: return 409;
    case ErrorCategory::Gone: return 410;
    case ErrorCategory::PreconditionFailed: return 412;
    case ErrorCategory::TooLarge: return 413;
    case ErrorCategory::UnsupportedMedia: return 415;
    case ErrorCategory::Unprocessable: return 422;
    case ErrorCategory::NotModified: return 304;
    case ErrorCategory::Internal: return 500;
    case ErrorCategory::Unavailable: return 503;
  }
  return 500;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
  }
  return "Unknown";
}

// AuditEvent is served from the audit table (audit_events.cpp).
FhirResponse do_audit_event(const Services& services, const FhirRequest& req);

FhirResponse dispatch(const Services& services, const FhirRequest& req) {
  bool type_level = req.interaction != Interaction::Capabilities && req.interaction != Interaction::Operation &&
                    req.interaction != Interaction::Batch &&
                    req.interaction != Interaction::Transaction && req.interaction != Interaction::HistorySystem &&
                    req.interaction != Interaction::SearchSystem;
  if (type_level && !services.defs->resource_type(req.type))
    return error_response(ErrorCategory::NotFound, "not-supported", "unknown resource type '" + req.type + "'");
  bool instance_level = req.interaction == Interaction::Read || req.interaction == Interaction::VRead ||
                        req.interaction == Interaction::Update || req.interaction == Interaction::Patch ||
                        req.interaction == Interaction::Delete || req.interaction == Interaction::HistoryInstance;
  if (instance_level && !is_valid_id(req.id))
    return error_response(ErrorCategory::Invalid, "invalid", "malformed resource id");
  try {
    if (req.type == "AuditEvent" && type_level) return do_audit_event(services, req);
    switch (req.interaction) {
      case Interaction::Read: return do_read(services, req);
      case Interaction::VRead: return do_vread(services, req);
      case Interaction::Create: return do_create(services, req);
      case Interaction::Update: return do_update(services, req);
      case Interaction::ConditionalUpdate: return do_conditional_update(services, req);
      case Interaction::Patch: return do_patch(services, req);
      case Interaction::Delete: return do_delete(services, req);
      case Interaction::ConditionalDelete: return do_conditional_delete(services, req);
      case Interaction::HistoryInstance:
      case Interaction::HistoryType:
      case Interaction::HistorySystem: return do_history(services, req);
      case Interaction::Capabilities: return do_capabilities(services, req);
      case Interaction::Batch:
      case Interaction::Transaction: return do_bundle(services, req);
      case Interaction::SearchType:
      case Interaction::SearchSystem: return do_search(services, req);
      case Interaction::Operation: return run_operation(services, req);
      case Interaction::ConditionalPatch:
        return error_response(ErrorCategory::NotAllowed, "not-supported",
                              std::string(interaction_code(req.interaction)) + " is not implemented yet");
    }
  } catch (const std::bad_alloc&) {
    return error_response(ErrorCategory::Unavailable, "too-costly", "out of memory while processing the request");
  } catch (const std::exception&) {
    return error_response(ErrorCategory::Internal, "exception", "internal error");
  }
  return error_response(ErrorCategory::Internal, "exception", "unhandled interaction");
}

}  // namespace espace::interactions
