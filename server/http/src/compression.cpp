// gzip via zlib, bounded on the way in so a small bomb cannot exhaust memory.
#include "espace/http/compression.h"

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>

namespace espace::http {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// q of one Accept-Encoding item "gzip;q=0.5"; -1 when malformed.
double item_q(std::string_view params) {
  double q = 1.0;
  while (!params.empty()) {
    size_t semi = params.find(';');
    std::string_view p = trim(params.substr(0, semi));
    params = semi == std::string_view::npos ? std::string_view() : params.substr(semi + 1);
    std::string_view after_name = p.empty() ? p : trim(p.substr(1));
    if (!p.empty() && (p.front() == 'q' || p.front() == 'Q') && !after_name.empty() && after_name.front() == '=') {
      std::string value(trim(after_name.substr(1)));
      char* end = nullptr;
      q = std::strtod(value.c_str(), &end);
      if (value.empty() || end != value.c_str() + value.size() || !(q >= 0 && q <= 1)) return -1;
    }
  }
  return q;
}

}  // namespace

bool accepts_gzip(std::string_view accept_encoding) {
  double gzip_q = -1, star_q = -1;
  while (!accept_encoding.empty()) {
    size_t comma = accept_encoding.find(',');
    std::string_view item = trim(accept_encoding.substr(0, comma));
    accept_encoding = comma == std::string_view::npos ? std::string_view() : accept_encoding.substr(comma + 1);
    size_t semi = item.find(';');
    std::string_view coding = trim(item.substr(0, semi));
    double q = item_q(semi == std::string_view::npos ? std::string_view() : item.substr(semi + 1));
    if (q < 0) continue;
    if (header_name_equals(coding, "gzip") || header_name_equals(coding, "x-gzip")) {
      gzip_q = std::max(gzip_q, q);
    } else if (coding == "*") {
      star_q = std::max(star_q, q);
    }
  }
  if (gzip_q >= 0) return gzip_q > 0;  // an explicit gzip entry overrides "*"
  return star_q > 0;
}

std::string gzip_compress(std::string_view data, int level) {
  z_stream zs{};
  // 15 window bits + 16 selects the gzip wrapper.
  if (deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return {};
  std::string out;
  out.resize(deflateBound(&zs, static_cast<uLong>(data.size())) + 32);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) return {};
  return out;
}

fhir::Status gzip_decompress(std::string_view data, size_t max_output, std::string* out) {
  out->clear();
  if (data.empty()) {
    return fhir::Status::error(fhir::ErrorCategory::Invalid, "structure", "the gzip body is empty");
  }
  if (data.size() > UINT32_MAX) {
    return fhir::Status::error(fhir::ErrorCategory::TooLarge, "too-costly", "the gzip request body is too large");
  }
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) {
    return fhir::Status::error(fhir::ErrorCategory::Internal, "exception", "cannot initialise zlib");
  }
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  char chunk[16384];
  fhir::Status result;
  bool ended = false;
  while (true) {
    zs.next_out = reinterpret_cast<Bytef*>(chunk);
    zs.avail_out = sizeof(chunk);
    int rc = inflate(&zs, Z_NO_FLUSH);
    size_t produced = sizeof(chunk) - zs.avail_out;
    if (out->size() + produced > max_output) {
      result = fhir::Status::error(fhir::ErrorCategory::TooLarge, "too-costly",
                                   "the decompressed request body exceeds " + std::to_string(max_output) + " bytes");
      break;
    }
    out->append(chunk, produced);
    if (rc == Z_STREAM_END) {
      ended = true;
      if (zs.avail_in == 0) break;
      // Another gzip member follows (RFC 1952 allows concatenation).
      if (inflateReset(&zs) != Z_OK) {
        ended = false;
        break;
      }
      ended = false;
      continue;
    }
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) break;  // input ended before the stream did
    if (rc != Z_OK) {
      result = fhir::Status::error(fhir::ErrorCategory::Invalid, "structure", "the gzip request body is corrupt");
      break;
    }
  }
  inflateEnd(&zs);
  if (result.is_ok() && !ended) {
    result = fhir::Status::error(fhir::ErrorCategory::Invalid, "structure", "the gzip request body is truncated");
  }
  if (!result.is_ok()) out->clear();
  return result;
}

void compress_response(const Request& request, Response* response) {
  if (response->body.size() <= kMinCompressBytes) return;
  if (response->headers.find("Content-Encoding")) return;
  // The representation depends on Accept-Encoding from here on, whatever this
  // client sent, so caches must key on it.
  if (!response->headers.find("Vary")) {
    response->headers.set("Vary", "Accept-Encoding");
  } else if (response->headers.get("Vary").find("Accept-Encoding") == std::string_view::npos) {
    response->headers.set("Vary", std::string(response->headers.get("Vary")) + ", Accept-Encoding");
  }
  if (!accepts_gzip(request.headers.get("Accept-Encoding"))) return;
  std::string compressed = gzip_compress(response->body);
  if (compressed.empty()) return;  // zlib failure: sending it plain is still correct
  response->body = std::move(compressed);
  response->headers.set("Content-Encoding", "gzip");
}

fhir::Status decode_request_body(Request* request, size_t max_body_bytes) {
  const std::string* encoding = request->headers.find("Content-Encoding");
  if (!encoding) return fhir::Status::ok();
  std::string_view coding = trim(*encoding);
  if (coding.empty() || header_name_equals(coding, "identity")) {
    request->headers.remove("Content-Encoding");
    return fhir::Status::ok();
  }
  if (!header_name_equals(coding, "gzip") && !header_name_equals(coding, "x-gzip")) {
    return fhir::Status::error(fhir::ErrorCategory::UnsupportedMedia, "not-supported",
                               "Content-Encoding '" + std::string(coding.substr(0, 40)) +
                                   "' is not supported; use gzip or identity");
  }
  std::string decoded;
  fhir::Status st = gzip_decompress(request->body, max_body_bytes, &decoded);
  if (!st) return st;
  request->body = std::move(decoded);
  request->headers.remove("Content-Encoding");
  return fhir::Status::ok();
}

}  // namespace espace::http
