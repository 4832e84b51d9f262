// Internals of JWT handling shared by auth_*.cpp and jwt_*.cpp (not installed).
#pragma once

#include <openssl/evp.h>
#include <rapidjson/document.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "espace/fhir/status.h"

namespace espace::policy::jwt {

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using Pkey = std::shared_ptr<EVP_PKEY>;

enum class KeyType { Rsa, Ec };
const char* alg_for(KeyType type);  // "RS256" / "ES256"

struct PublicKey {
  std::string kid;  // may be empty: then only tokens without kid can use it
  KeyType type = KeyType::Ec;
  Pkey pkey;
};

// Parses a JWKS document. Keys of other types (oct, OKP, other curves) and
// keys whose `use` is not "sig" are skipped; malformed RSA/EC keys, private
// material, RSA under 2048 bits, duplicate kids and an empty result are errors.
fhir::Status parse_jwks(std::string_view text, std::vector<PublicKey>* keys);

// Signature check of `signing_input` (ASCII header.payload). For ES256 the
// signature is the JWS form R||S (64 bytes).
bool verify(const PublicKey& key, std::string_view signing_input, std::string_view signature);

fhir::Status load_private_key(const std::string& pem_file, Pkey* key);
fhir::Status key_type_of(EVP_PKEY* key, KeyType* type);
// Produces the JWS signature (R||S for ES256).
fhir::Status sign_bytes(EVP_PKEY* key, std::string_view signing_input, std::string* signature);
// The public JWK members of `key` and its RFC 7638 thumbprint.
fhir::Status public_jwk(EVP_PKEY* key, std::string* jwk_json, std::string* thumbprint);
fhir::Status generate_key(KeyType type, Pkey* key);
// Writes the private key as PKCS#8 PEM, created with mode 0600.
fhir::Status write_private_key(EVP_PKEY* key, const std::string& pem_file);

// RapidJSON parse with a nesting limit, strict UTF-8 and no duplicate member
// names at any level (a duplicated claim is ambiguous: RFC 7519 section 4).
bool parse_json(std::string_view text, size_t max_depth, rapidjson::Document* doc, std::string* why);

}  // namespace espace::policy::jwt
