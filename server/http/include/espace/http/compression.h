// gzip for response bodies and request bodies (zlib).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "espace/fhir/status.h"
#include "espace/http/message.h"

namespace espace::http {

// Bodies at or below this size are sent as they are: gzip would save little.
inline constexpr size_t kMinCompressBytes = 1024;

// True when Accept-Encoding allows gzip with q > 0 (explicitly or via "*").
bool accepts_gzip(std::string_view accept_encoding);

std::string gzip_compress(std::string_view data, int level = 6);

// Inflates a gzip stream (one or more members). TooLarge (413) when the output
// would exceed max_output; Invalid (400) when the data is corrupt or truncated.
fhir::Status gzip_decompress(std::string_view data, size_t max_output, std::string* out);

// Compresses response->body in place when the request accepts gzip, the body
// is larger than kMinCompressBytes and not already encoded; sets
// Content-Encoding and Vary.
void compress_response(const Request& request, Response* response);

// Replaces request->body by its decoded form per Content-Encoding (identity or
// gzip) and removes the header. UnsupportedMedia (415) for other encodings.
fhir::Status decode_request_body(Request* request, size_t max_body_bytes);

}  // namespace espace::http
