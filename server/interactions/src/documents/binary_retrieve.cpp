// ITI-68 Retrieve Document (profiles.ihe.net/ITI/MHD/ITI-68.html): the
// Binary's bytes with its contentType; Range per RFC 9110 section 14.
#include "espace/interactions/binary_retrieve.h"

#include <rapidjson/document.h>

#include <cctype>
#include <string>

namespace espace::interactions {

namespace {

using fhir::ErrorCategory;
using fhir::Status;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Calls f(media_range, q) for each element of an Accept header.
template <typename F>
void for_each_media_range(std::string_view accept, F&& f) {
  while (!accept.empty()) {
    size_t comma = accept.find(',');
    std::string_view item = accept.substr(0, comma);
    accept = comma == std::string_view::npos ? std::string_view() : accept.substr(comma + 1);
    size_t semi = item.find(';');
    std::string range = lower(trim(item.substr(0, semi)));
    double q = 1;
    while (semi != std::string_view::npos) {
      item = item.substr(semi + 1);
      semi = item.find(';');
      std::string_view param = trim(item.substr(0, semi));
      if (param.size() > 2 && (param[0] == 'q' || param[0] == 'Q') && param[1] == '=') {
        try {
          q = std::stod(std::string(param.substr(2)));
        } catch (const std::exception&) {
          q = 0;
        }
      }
    }
    if (!range.empty()) f(range, q);
  }
}

bool is_fhir_media_range(const std::string& range) {
  return range == "application/fhir+json" || range == "application/fhir+xml" || range == "application/json" ||
         range == "application/xml" || range == "text/xml" || range == "application/json+fhir" ||
         range == "application/xml+fhir";
}

bool parse_u64(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

bool wants_native_binary(const std::string* format_param, std::string_view accept) {
  if (format_param && !format_param->empty()) return false;
  bool names_fhir = false;
  for_each_media_range(accept, [&](const std::string& range, double q) {
    if (q > 0 && is_fhir_media_range(range)) names_fhir = true;
  });
  return !names_fhir;
}

bool accept_admits(std::string_view accept, std::string_view media_type) {
  if (trim(accept).empty()) return true;
  std::string type = lower(trim(media_type.substr(0, media_type.find(';'))));
  std::string major = type.substr(0, type.find('/'));
  bool admitted = false;
  for_each_media_range(accept, [&](const std::string& range, double q) {
    if (q <= 0) return;
    if (range == "*/*" || range == type || (range.size() > 2 && range.compare(range.size() - 2, 2, "/*") == 0 &&
                                            range.substr(0, range.size() - 2) == major))
      admitted = true;
  });
  return admitted;
}

Status decode_binary(std::string&& binary_json, std::string* content_type, std::string* bytes) {
  rapidjson::Document doc;
  // In place: the base64 text is not copied once more.
  doc.ParseInsitu(binary_json.data());
  if (doc.HasParseError() || !doc.IsObject())
    return Status::error(ErrorCategory::Internal, "exception", "the stored Binary is not JSON");
  auto ct = doc.FindMember("contentType");
  content_type->assign(ct != doc.MemberEnd() && ct->value.IsString() ? ct->value.GetString()
                                                                      : "application/octet-stream");
  bytes->clear();
  auto data = doc.FindMember("data");
  if (data == doc.MemberEnd() || !data->value.IsString()) return Status::ok();  // an empty document
  std::string_view text(data->value.GetString(), data->value.GetStringLength());
  bytes->reserve(text.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    int v = base64_value(c);
    if (v < 0) {
      if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
      return Status::error(ErrorCategory::Internal, "exception", "the stored Binary data is not base64");
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes->push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return Status::ok();
}

RangeAnswer parse_byte_range(std::string_view header, uint64_t size, uint64_t* first, uint64_t* last) {
  header = trim(header);
  if (header.empty()) return RangeAnswer::Whole;
  if (lower(header.substr(0, 6)) != "bytes=") return RangeAnswer::Whole;  // unknown unit: ignore (RFC 9110 14.2)
  std::string_view set = trim(header.substr(6));
  if (set.find(',') != std::string_view::npos) return RangeAnswer::Whole;  // several ranges: we send it all
  size_t dash = set.find('-');
  if (dash == std::string_view::npos) return RangeAnswer::Whole;           // malformed: ignore
  std::string_view a = trim(set.substr(0, dash)), b = trim(set.substr(dash + 1));
  uint64_t x = 0, y = 0;
  if (a.empty()) {
    // Suffix range: the last y bytes.
    if (!parse_u64(b, &y)) return RangeAnswer::Whole;
    if (y == 0 || size == 0) return RangeAnswer::Unsatisfiable;
    *first = y >= size ? 0 : size - y;
    *last = size - 1;
    return RangeAnswer::Partial;
  }
  if (!parse_u64(a, &x)) return RangeAnswer::Whole;
  if (!b.empty()) {
    if (!parse_u64(b, &y) || y < x) return RangeAnswer::Whole;  // invalid range-spec: ignore the header
  } else {
    y = size ? size - 1 : 0;
  }
  if (x >= size) return RangeAnswer::Unsatisfiable;
  *first = x;
  *last = y >= size ? size - 1 : y;
  return RangeAnswer::Partial;
}

}  // namespace espace::interactions
