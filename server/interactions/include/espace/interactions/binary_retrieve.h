// ITI-68 Retrieve Document: a Binary read answered with the document's own
// bytes and media type (hl7.org/fhir/R4/binary.html#rest, http.html#binary),
// with single byte ranges (RFC 9110 section 14). Pure functions used by the
// http layer after the read interaction returned the stored Binary.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "espace/fhir/status.h"

namespace espace::interactions {

// True when a Binary read should answer the raw document: no _format, and an
// Accept header that names no FHIR format (absent, */*, or a document type).
bool wants_native_binary(const std::string* format_param, std::string_view accept);

// True when the Accept header admits `media_type` (exact match, type/* or
// */*, with q > 0); an absent header admits everything.
bool accept_admits(std::string_view accept, std::string_view media_type);

// Takes a stored Binary (FHIR JSON; consumed: parsed in place) and yields its
// contentType and decoded bytes.
fhir::Status decode_binary(std::string&& binary_json, std::string* content_type, std::string* bytes);

// A Range header against a representation of `size` bytes.
enum class RangeAnswer {
  Whole,          // no Range, not a bytes range, or several ranges: send it all (200)
  Partial,        // one satisfiable range: 206 with [*first, *last]
  Unsatisfiable,  // 416 with Content-Range: bytes */size
};
RangeAnswer parse_byte_range(std::string_view range_header, uint64_t size, uint64_t* first, uint64_t* last);

}  // namespace espace::interactions
