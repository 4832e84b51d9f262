// Content negotiation as pure functions (hl7.org/fhir/R4/http.html#mime-type).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "espace/fhir/status.h"
#include "espace/http/message.h"

namespace espace::http {

enum class Format { Json, Xml };

// "application/fhir+json; charset=utf-8" or the XML equivalent.
const char* content_type(Format f);

// A parsed media type: lower-cased type/subtype, parameters with lower-cased names.
struct MediaType {
  std::string type;     // "application"
  std::string subtype;  // "fhir+json"
  std::vector<std::pair<std::string, std::string>> params;
  const std::string* param(std::string_view name) const;
};
// False when the text is not "type/subtype *( ; name=value )".
bool parse_media_type(std::string_view text, MediaType* out);

// The FHIR format a media type or a _format shorthand names ("json", "xml",
// "application/fhir+json", "application/json", "application/fhir+xml",
// "application/xml", "text/xml"); false when none, when a charset other than
// UTF-8 is asked for, or when fhirVersion is not 4.0.
bool format_of_media_type(std::string_view text, Format* out);

// Response format from a _format value (takes precedence) or an Accept header
// with q-values and wildcards; JSON when neither says anything.
// NotAcceptable (406) when nothing acceptable is supported.
fhir::Status choose_response_format(const std::string* format_param, std::string_view accept, Format* out);

struct ResponseFormat {
  Format format = Format::Json;
  bool pretty = false;
};
// Reads _format, _pretty and Accept from the request. _pretty must be true or false.
fhir::Status negotiate_response(const Request& request, ResponseFormat* out);

// What a request body is, from Content-Type.
enum class BodyKind { Json, Xml, JsonPatch, FormUrlEncoded };
// UnsupportedMedia (415) when Content-Type is missing, unknown, or has a
// charset other than UTF-8. Callers decide which kinds an interaction accepts.
fhir::Status request_body_kind(std::string_view content_type_header, BodyKind* out);

}  // namespace espace::http
