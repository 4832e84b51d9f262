// Keys for JWS RS256 and ES256 (RFC 7518 section 3.3 and 3.4) with the
// OpenSSL 3 provider API: JWKS import (RFC 7517, RFC 7518 section 6),
// signing, verification, key generation and RFC 7638 thumbprints.
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>

#include "espace/policy/auth.h"
#include "jwt_internal.h"

namespace espace::policy::jwt {

using fhir::ErrorCategory;
using fhir::Status;

namespace {

constexpr size_t kMaxJwksBytes = 1u << 20;
constexpr size_t kMaxKeyFileBytes = 64u << 10;
constexpr size_t kMaxKeys = 100;
constexpr int kMinRsaBits = 2048;
constexpr size_t kP256Bytes = 32;

struct BnFree {
  void operator()(BIGNUM* b) const { BN_free(b); }
};
using Bn = std::unique_ptr<BIGNUM, BnFree>;
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
struct BldFree {
  void operator()(OSSL_PARAM_BLD* b) const { OSSL_PARAM_BLD_free(b); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct SigFree {
  void operator()(ECDSA_SIG* s) const { ECDSA_SIG_free(s); }
};

Status invalid(std::string why) { return Status::error(ErrorCategory::Invalid, "invalid", std::move(why)); }
Status internal(std::string why) {
  ERR_clear_error();  // the OpenSSL queue is per thread: leave it clean for the next caller
  return Status::error(ErrorCategory::Internal, "exception", std::move(why));
}

Pkey wrap(EVP_PKEY* key) { return Pkey(key, PkeyFree()); }

bool is_p256(EVP_PKEY* key) {
  char group[64] = {0};
  size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) != 1) return false;
  std::string_view g(group, len);
  return g == "prime256v1" || g == "P-256" || g == "secp256r1";
}

bool public_check(EVP_PKEY* key) {
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  bool ok = ctx && EVP_PKEY_public_check(ctx.get()) == 1;
  ERR_clear_error();
  return ok;
}

Pkey key_from_params(const char* type, OSSL_PARAM_BLD* bld) {
  std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld));
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    ERR_clear_error();
    return nullptr;
  }
  return wrap(key);
}

// A JWK member holding base64url bytes.
bool bytes_member(const rapidjson::Value& jwk, const char* name, std::string* out) {
  auto it = jwk.FindMember(name);
  return it != jwk.MemberEnd() && it->value.IsString() &&
         base64url_decode(std::string_view(it->value.GetString(), it->value.GetStringLength()), out) && !out->empty();
}

std::string string_member(const rapidjson::Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd() || !it->value.IsString()) return {};
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

Status import_rsa(const rapidjson::Value& jwk, const std::string& where, Pkey* out) {
  std::string n, e;
  if (!bytes_member(jwk, "n", &n) || !bytes_member(jwk, "e", &e))
    return invalid(where + ": an RSA key needs base64url members n and e");
  if (e.size() > 8) return invalid(where + ": RSA exponent e is implausibly long");
  Bn bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()), int(n.size()), nullptr));
  Bn bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()), int(e.size()), nullptr));
  std::unique_ptr<OSSL_PARAM_BLD, BldFree> bld(OSSL_PARAM_BLD_new());
  if (!bn_n || !bn_e || !bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1)
    return internal("out of memory building an RSA key");
  Pkey key = key_from_params("RSA", bld.get());
  if (!key) return invalid(where + ": not a usable RSA public key");
  if (EVP_PKEY_get_bits(key.get()) < kMinRsaBits)
    return invalid(where + ": RSA key shorter than " + std::to_string(kMinRsaBits) + " bits");
  if (!BN_is_odd(bn_e.get()) || BN_is_one(bn_e.get())) return invalid(where + ": RSA exponent e is not valid");
  *out = std::move(key);
  return Status::ok();
}

Status import_ec(const rapidjson::Value& jwk, const std::string& where, Pkey* out) {
  std::string x, y;
  if (!bytes_member(jwk, "x", &x) || !bytes_member(jwk, "y", &y))
    return invalid(where + ": an EC key needs base64url members x and y");
  // RFC 7518 section 6.2.1.2: the full coordinate length, leading zeros kept.
  if (x.size() != kP256Bytes || y.size() != kP256Bytes)
    return invalid(where + ": P-256 coordinates x and y must be 32 bytes each");
  std::string point = "\x04" + x + y;  // SEC 1 uncompressed point
  std::unique_ptr<OSSL_PARAM_BLD, BldFree> bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1)
    return internal("out of memory building an EC key");
  Pkey key = key_from_params("EC", bld.get());
  if (!key || !public_check(key.get())) return invalid(where + ": the point (x, y) is not on the P-256 curve");
  *out = std::move(key);
  return Status::ok();
}

std::string padded(const BIGNUM* bn, size_t width) {
  std::string out(width, '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), int(width));
  return out;
}

std::string unpadded(const BIGNUM* bn) {
  std::string out(size_t(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

std::string sha256(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(md), len);
}

bool read_small_file(const std::string& path, size_t limit, std::string* out, std::string* why) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    *why = "cannot read " + path;
    return false;
  }
  f.seekg(0, std::ios::end);
  std::streamoff size = f.tellg();
  if (size < 0 || size_t(size) > limit) {
    *why = path + " is larger than " + std::to_string(limit) + " bytes";
    return false;
  }
  f.seekg(0);
  out->resize(size_t(size));
  f.read(out->data(), size);
  if (!f) {
    *why = "cannot read " + path;
    return false;
  }
  return true;
}

}  // namespace

const char* alg_for(KeyType type) { return type == KeyType::Rsa ? "RS256" : "ES256"; }

Status parse_jwks(std::string_view text, std::vector<PublicKey>* keys) {
  keys->clear();
  if (text.size() > kMaxJwksBytes) return invalid("JWKS larger than 1 MiB");
  rapidjson::Document doc;
  std::string why;
  if (!parse_json(text, 8, &doc, &why)) return invalid("JWKS: " + why);
  if (!doc.IsObject()) return invalid("JWKS: not a JSON object");
  auto ks = doc.FindMember("keys");
  if (ks == doc.MemberEnd() || !ks->value.IsArray()) return invalid("JWKS: no array 'keys'");
  if (ks->value.Size() > kMaxKeys) return invalid("JWKS: more than 100 keys");
  std::set<std::string> kids;
  size_t index = 0;
  for (const auto& jwk : ks->value.GetArray()) {
    std::string where = "JWKS key #" + std::to_string(index++);
    if (!jwk.IsObject()) return invalid(where + ": not a JSON object");
    std::string kid = string_member(jwk, "kid");
    if (jwk.HasMember("kid") && (!jwk["kid"].IsString() || kid.size() > 256))
      return invalid(where + ": kid must be a string of at most 256 characters");
    if (!kid.empty()) where += " (kid " + kid + ")";
    // Private material has no business in a published key set: refuse the
    // file rather than risk serving it elsewhere.
    if (jwk.HasMember("d")) return invalid(where + ": contains private key material (d)");
    std::string kty = string_member(jwk, "kty");
    if (kty.empty()) return invalid(where + ": no kty");
    std::string use = string_member(jwk, "use");
    if (jwk.HasMember("use") && use != "sig") continue;  // an encryption key: not ours to use
    if (auto ops = jwk.FindMember("key_ops"); ops != jwk.MemberEnd()) {
      bool verifies = false;
      if (ops->value.IsArray())
        for (const auto& op : ops->value.GetArray())
          if (op.IsString() && std::string_view(op.GetString()) == "verify") verifies = true;
      if (!verifies) continue;
    }
    std::string alg = string_member(jwk, "alg");
    PublicKey key;
    key.kid = kid;
    if (kty == "RSA") {
      if (!alg.empty() && alg != "RS256") continue;  // RS384, PS256...: algorithms we do not accept
      key.type = KeyType::Rsa;
      if (Status s = import_rsa(jwk, where, &key.pkey); !s) return s;
    } else if (kty == "EC") {
      if (string_member(jwk, "crv") != "P-256") continue;
      if (!alg.empty() && alg != "ES256") continue;
      key.type = KeyType::Ec;
      if (Status s = import_ec(jwk, where, &key.pkey); !s) return s;
    } else {
      continue;  // oct, OKP, ...: not usable for RS256/ES256
    }
    if (!kid.empty() && !kids.insert(kid).second) return invalid(where + ": duplicate kid");
    keys->push_back(std::move(key));
  }
  if (keys->empty()) return invalid("JWKS: no RS256 or ES256 signature key");
  return Status::ok();
}

bool verify(const PublicKey& key, std::string_view signing_input, std::string_view signature) {
  std::string der;
  std::string_view to_check = signature;
  if (key.type == KeyType::Ec) {
    // JWS carries R||S, fixed 32 bytes each (RFC 7518 section 3.4); OpenSSL
    // verifies the DER ECDSA-Sig-Value.
    if (signature.size() != 2 * kP256Bytes) return false;
    const auto* raw = reinterpret_cast<const unsigned char*>(signature.data());
    std::unique_ptr<ECDSA_SIG, SigFree> sig(ECDSA_SIG_new());
    BIGNUM* r = BN_bin2bn(raw, int(kP256Bytes), nullptr);
    BIGNUM* s = BN_bin2bn(raw + kP256Bytes, int(kP256Bytes), nullptr);
    if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
      BN_free(r);
      BN_free(s);
      ERR_clear_error();
      return false;
    }
    int len = i2d_ECDSA_SIG(sig.get(), nullptr);
    if (len <= 0) return false;
    der.resize(size_t(len));
    auto* p = reinterpret_cast<unsigned char*>(der.data());
    i2d_ECDSA_SIG(sig.get(), &p);
    to_check = der;
  } else if (signature.size() != size_t(EVP_PKEY_get_size(key.pkey.get()))) {
    return false;  // RSASSA-PKCS1-v1_5 signatures are exactly the modulus length
  }
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> md(EVP_MD_CTX_new());
  bool ok = md && EVP_DigestVerifyInit(md.get(), nullptr, EVP_sha256(), nullptr, key.pkey.get()) == 1 &&
            EVP_DigestVerify(md.get(), reinterpret_cast<const unsigned char*>(to_check.data()), to_check.size(),
                             reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size()) == 1;
  ERR_clear_error();
  return ok;
}

Status load_private_key(const std::string& pem_file, Pkey* key) {
  std::string text, why;
  if (!read_small_file(pem_file, kMaxKeyFileBytes, &text, &why)) return invalid(why);
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(text.data(), int(text.size())));
  // No passphrase callback prompt: an encrypted key fails instead of blocking on a terminal.
  auto no_passphrase = [](char*, int, int, void*) -> int { return 0; };
  EVP_PKEY* k = bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr) : nullptr;
  ERR_clear_error();
  if (!k) return invalid(pem_file + " holds no unencrypted PEM private key");
  *key = wrap(k);
  KeyType type;
  return key_type_of(key->get(), &type);
}

Status key_type_of(EVP_PKEY* key, KeyType* type) {
  if (EVP_PKEY_is_a(key, "RSA")) {
    if (EVP_PKEY_get_bits(key) < kMinRsaBits) return invalid("RSA key shorter than 2048 bits");
    *type = KeyType::Rsa;
    return Status::ok();
  }
  if (EVP_PKEY_is_a(key, "EC") && is_p256(key)) {
    *type = KeyType::Ec;
    return Status::ok();
  }
  return invalid("the key is neither RSA nor EC P-256");
}

Status sign_bytes(EVP_PKEY* key, std::string_view signing_input, std::string* signature) {
  KeyType type;
  if (Status s = key_type_of(key, &type); !s) return s;
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> md(EVP_MD_CTX_new());
  size_t len = 0;
  const auto* data = reinterpret_cast<const unsigned char*>(signing_input.data());
  if (!md || EVP_DigestSignInit(md.get(), nullptr, EVP_sha256(), nullptr, key) != 1 ||
      EVP_DigestSign(md.get(), nullptr, &len, data, signing_input.size()) != 1)
    return internal("cannot start signing");
  std::string sig(len, '\0');
  if (EVP_DigestSign(md.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, data, signing_input.size()) != 1)
    return internal("signing failed");
  sig.resize(len);
  if (type == KeyType::Rsa) {
    *signature = std::move(sig);
    return Status::ok();
  }
  const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
  std::unique_ptr<ECDSA_SIG, SigFree> ecdsa(d2i_ECDSA_SIG(nullptr, &p, long(sig.size())));
  if (!ecdsa) return internal("cannot decode the ECDSA signature");
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(ecdsa.get(), &r, &s);
  *signature = padded(r, kP256Bytes) + padded(s, kP256Bytes);
  return Status::ok();
}

Status public_jwk(EVP_PKEY* key, std::string* jwk_json, std::string* thumbprint) {
  KeyType type;
  if (Status s = key_type_of(key, &type); !s) return s;
  // Members in lexicographic order without whitespace: this text is both the
  // RFC 7638 thumbprint input and the body of the published JWK.
  std::string canonical;
  if (type == KeyType::Rsa) {
    BIGNUM* n = nullptr;
    BIGNUM* e = nullptr;
    if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n) != 1 ||
        EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &e) != 1) {
      BN_free(n);
      BN_free(e);
      return internal("cannot read the RSA public key");
    }
    Bn hold_n(n), hold_e(e);
    canonical = "{\"e\":\"" + base64url_encode(unpadded(e)) + "\",\"kty\":\"RSA\",\"n\":\"" +
                base64url_encode(unpadded(n)) + "\"}";
  } else {
    BIGNUM* x = nullptr;
    BIGNUM* y = nullptr;
    if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x) != 1 ||
        EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &y) != 1) {
      BN_free(x);
      BN_free(y);
      return internal("cannot read the EC public key");
    }
    Bn hold_x(x), hold_y(y);
    canonical = "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"" + base64url_encode(padded(x, kP256Bytes)) +
                "\",\"y\":\"" + base64url_encode(padded(y, kP256Bytes)) + "\"}";
  }
  *thumbprint = base64url_encode(sha256(canonical));
  canonical.pop_back();
  *jwk_json = canonical + ",\"alg\":\"" + alg_for(type) + "\",\"use\":\"sig\",\"kid\":\"" + *thumbprint + "\"}";
  return Status::ok();
}

Status generate_key(KeyType type, Pkey* key) {
  EVP_PKEY* k = type == KeyType::Rsa ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t(kMinRsaBits))
                                     : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (!k) return internal("key generation failed");
  *key = wrap(k);
  return Status::ok();
}

Status write_private_key(EVP_PKEY* key, const std::string& pem_file) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return internal("cannot encode the private key");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  // O_EXCL: an existing key is never overwritten; 0600 from creation on.
  int fd = ::open(pem_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST)
      return Status::error(ErrorCategory::Conflict, "duplicate", pem_file + " already exists; not replaced");
    return Status::error(ErrorCategory::Internal, "exception",
                         "cannot create " + pem_file + ": " + std::strerror(errno));
  }
  bool ok = ::fchmod(fd, 0600) == 0;
  for (long written = 0; ok && written < len;) {
    ssize_t n = ::write(fd, data + written, size_t(len - written));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) ok = false;
    else written += n;
  }
  ok = ::fsync(fd) == 0 && ok;
  ok = ::close(fd) == 0 && ok;
  if (!ok) {
    ::unlink(pem_file.c_str());
    return Status::error(ErrorCategory::Internal, "exception", "cannot write " + pem_file);
  }
  return Status::ok();
}

}  // namespace espace::policy::jwt
