#include "espace/http/status_map.h"

namespace espace::http {

int http_status(fhir::ErrorCategory category) {
  using fhir::ErrorCategory;
  switch (category) {
    case ErrorCategory::None: return 200;
    case ErrorCategory::Invalid: return 400;
    case ErrorCategory::Unprocessable: return 422;
    case ErrorCategory::NotFound: return 404;
    case ErrorCategory::Gone: return 410;
    case ErrorCategory::Conflict: return 409;
    case ErrorCategory::PreconditionFailed: return 412;
    case ErrorCategory::NotAllowed: return 405;
    case ErrorCategory::NotAcceptable: return 406;
    case ErrorCategory::TooLarge: return 413;
    case ErrorCategory::UnsupportedMedia: return 415;
    case ErrorCategory::Unauthorized: return 401;
    case ErrorCategory::Forbidden: return 403;
    case ErrorCategory::NotModified: return 304;
    case ErrorCategory::Unavailable: return 503;
    case ErrorCategory::Internal: return 500;
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

}  // namespace espace::http
