// Digests (OpenSSL) and base64 (RFC 4648) for cda_codec.h.
#include "cda_codec.h"

#include <openssl/evp.h>

#include <cstring>

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
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t v = (uint32_t(p[i]) << 16) | (uint32_t(p[i + 1]) << 8) | p[i + 2];
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (size_t rest = data.size() - i) {
    uint32_t v = uint32_t(p[i]) << 16;
    if (rest == 2) v |= uint32_t(p[i + 1]) << 8;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

bool base64_check_prefix(std::string_view text, size_t max_bytes, std::string* prefix) {
  prefix->clear();
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
    if (padding) return false;
    const char* at = c ? std::strchr(kAlphabet, c) : nullptr;
    if (!at) return false;
    acc = (acc << 6) | uint32_t(at - kAlphabet);
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
