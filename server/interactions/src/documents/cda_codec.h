// Byte encodings the document attachment needs: SHA-1 (Attachment.hash is
// the base64 SHA-1 of the data in R4) and base64 (Binary.data).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace espace::interactions::cda {

std::array<uint8_t, 20> sha1(std::string_view data);
std::string base64_encode(std::string_view data);
// Strict decoding; XML whitespace between characters is skipped. False on
// anything else that is not base64.
bool base64_decode(std::string_view text, std::string* out);
// The same checks as base64_decode, decoding only the first `max_bytes`
// bytes into *prefix (a 50 MB PDF need not be decoded to recognise it).
bool base64_check_prefix(std::string_view text, size_t max_bytes, std::string* prefix);

}  // namespace espace::interactions::cda
