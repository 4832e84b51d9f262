// base64url (RFC 4648 section 5, unpadded as JWS requires: RFC 7515
// section 2) and the bounded JSON parse used for JOSE headers, claims and JWKS.
#include <rapidjson/error/en.h>

#include <string_view>
#include <unordered_set>

#include "espace/policy/auth.h"
#include "jwt_internal.h"

namespace espace::policy::jwt {

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

bool no_duplicate_members(const rapidjson::Value& v) {
  if (v.IsObject()) {
    std::unordered_set<std::string_view> seen;
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
      if (!seen.insert(std::string_view(it->name.GetString(), it->name.GetStringLength())).second) return false;
      if (!no_duplicate_members(it->value)) return false;
    }
  } else if (v.IsArray()) {
    for (const auto& item : v.GetArray())
      if (!no_duplicate_members(item)) return false;
  }
  return true;
}

}  // namespace

std::string base64url_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t n = (uint32_t(uint8_t(bytes[i])) << 16) | (uint32_t(uint8_t(bytes[i + 1])) << 8) | uint8_t(bytes[i + 2]);
    out.push_back(kAlphabet[(n >> 18) & 63]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    out.push_back(kAlphabet[(n >> 6) & 63]);
    out.push_back(kAlphabet[n & 63]);
  }
  size_t rest = bytes.size() - i;
  if (rest == 1) {
    uint32_t n = uint32_t(uint8_t(bytes[i])) << 16;
    out.push_back(kAlphabet[(n >> 18) & 63]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
  } else if (rest == 2) {
    uint32_t n = (uint32_t(uint8_t(bytes[i])) << 16) | (uint32_t(uint8_t(bytes[i + 1])) << 8);
    out.push_back(kAlphabet[(n >> 18) & 63]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    out.push_back(kAlphabet[(n >> 6) & 63]);
  }
  return out;
}

bool base64url_decode(std::string_view text, std::string* bytes) {
  bytes->clear();
  if (text.size() % 4 == 1) return false;  // no whole byte in a lone sextet
  bytes->reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = sextet(c);
    if (v < 0) return false;
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes->push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  // Leftover bits must be zero, so that each byte string has one encoding
  // (otherwise a signature could be altered without changing its value).
  return (acc & ((1u << bits) - 1)) == 0;
}

bool parse_json(std::string_view text, size_t max_depth, rapidjson::Document* doc, std::string* why) {
  // RapidJSON's DOM parser recurses without a limit: measure the nesting first.
  size_t depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '{' || c == '[') {
      if (++depth > max_depth) {
        *why = "JSON nested deeper than " + std::to_string(max_depth) + " levels";
        return false;
      }
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  doc->Parse<rapidjson::kParseValidateEncodingFlag>(text.data(), text.size());
  if (doc->HasParseError()) {
    *why = std::string("invalid JSON (") + rapidjson::GetParseError_En(doc->GetParseError()) + " at offset " +
           std::to_string(doc->GetErrorOffset()) + ")";
    return false;
  }
  if (!no_duplicate_members(*doc)) {
    *why = "JSON with a duplicated member name";
    return false;
  }
  return true;
}

}  // namespace espace::policy::jwt
