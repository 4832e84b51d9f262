// Digests (OpenSSL) and base64 (RFC 4648) for cda_codec.h.
#include "cda_codec.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>

namespace espace::interactions::cda {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

}  // namespace

std::array<uint8_t, 20> sha1(std::string_view data) {
  std::array<uint8_t, 20> out{};
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &length, EVP_sha1(), nullptr);
  return out;
}

std::string base64_encode(std::string_view data) {
  // Written in place into a string sized once: documents reach tens of MB.
  std::string out((data.size() + 2) / 3 * 4, '=');
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  char* o = out.data();
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3, o += 4) {
    uint32_t v = (uint32_t(p[i]) << 16) | (uint32_t(p[i + 1]) << 8) | p[i + 2];
    o[0] = kAlphabet[v >> 18];
    o[1] = kAlphabet[(v >> 12) & 63];
    o[2] = kAlphabet[(v >> 6) & 63];
    o[3] = kAlphabet[v & 63];
  }
  if (size_t rest = data.size() - i) {
    uint32_t v = uint32_t(p[i]) << 16;
    if (rest == 2) v |= uint32_t(p[i + 1]) << 8;
    o[0] = kAlphabet[v >> 18];
    o[1] = kAlphabet[(v >> 12) & 63];
    if (rest == 2) o[2] = kAlphabet[(v >> 6) & 63];
  }
  return out;
}

bool base64_check_prefix(std::string_view text, size_t max_bytes, std::string* prefix) {
  // The value of each base64 character, -1 for any other byte.
  static const std::array<int8_t, 256> kValue = [] {
    std::array<int8_t, 256> table{};
    table.fill(-1);
    for (int v = 0; v < 64; ++v) table[static_cast<uint8_t>(kAlphabet[v])] = static_cast<int8_t>(v);
    return table;
  }();
  prefix->clear();
  prefix->reserve(std::min(max_bytes, text.size() / 4 * 3));
  uint32_t acc = 0;
  int bits = 0;
  size_t chars = 0, padding = 0;
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    ++chars;
    if (c == '=') {
      ++padding;
      continue;
    }
    int8_t value = kValue[static_cast<uint8_t>(c)];
    if (padding || value < 0) return false;
    acc = (acc << 6) | uint32_t(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (prefix->size() < max_bytes) prefix->push_back(char((acc >> bits) & 0xFF));
    }
  }
  return chars % 4 == 0 && padding <= 2;
}

bool base64_decode(std::string_view text, std::string* out) {
  return base64_check_prefix(text, static_cast<size_t>(-1), out);
}

}  // namespace espace::interactions::cda
