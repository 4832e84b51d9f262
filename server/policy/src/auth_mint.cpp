// Token minting and development keys: what `espace token` and the tests use
// to play the authorization server. Keys are generated at run time and never
// committed.
#include <openssl/rand.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "espace/policy/auth.h"
#include "jwt_internal.h"

namespace espace::policy {

using fhir::ErrorCategory;
using fhir::Status;

namespace {

Status invalid(std::string why) { return Status::error(ErrorCategory::Invalid, "invalid", std::move(why)); }

std::string random_id() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return {};
  return jwt::base64url_encode(std::string_view(reinterpret_cast<char*>(bytes), sizeof bytes));
}

// Writes through a temporary file and a rename, so that a server reloading
// the JWKS never reads half a file.
Status write_file_atomically(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << text;
    if (!f.flush()) return Status::error(ErrorCategory::Internal, "exception", "cannot write " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::error(ErrorCategory::Internal, "exception", "cannot write " + path + ": " + ec.message());
  return Status::ok();
}

}  // namespace

namespace jwt {

Status sign(const std::string& header_json, const std::string& payload_json, const std::string& key_file,
            std::string* token) {
  Pkey key;
  if (Status s = load_private_key(key_file, &key); !s) return s;
  std::string input = base64url_encode(header_json) + "." + base64url_encode(payload_json);
  std::string signature;
  if (Status s = sign_bytes(key.get(), input, &signature); !s) return s;
  *token = input + "." + base64url_encode(signature);
  return Status::ok();
}

}  // namespace jwt

Status mint_token(const MintOptions& o, std::string* token) {
  static const char* const kRoles[] = {"patient", "legal-representative", "professional", "system", "administrator"};
  bool known = false;
  for (const char* r : kRoles) known = known || o.role == r;
  if (!known) return invalid("role must be one of patient, legal-representative, professional, system, administrator");
  if (o.subject.empty()) return invalid("a subject (sub) is required");
  if (o.issuer.empty() || o.audience.empty()) return invalid("issuer and audience are required");
  if (o.ttl_s <= 0 || o.ttl_s > 7 * 24 * 3600) return invalid("ttl must be between 1 second and 7 days");

  jwt::Pkey key;
  if (Status s = jwt::load_private_key(o.key_file, &key); !s) return s;
  jwt::KeyType type;
  if (Status s = jwt::key_type_of(key.get(), &type); !s) return s;
  std::string kid = o.kid;
  if (kid.empty()) {
    std::string jwk;
    if (Status s = jwt::public_jwk(key.get(), &jwk, &kid); !s) return s;
  }

  rapidjson::StringBuffer hb;
  {
    rapidjson::Writer<rapidjson::StringBuffer> w(hb);
    w.StartObject();
    w.Key("alg");
    w.String(jwt::alg_for(type));
    w.Key("typ");
    w.String("JWT");
    w.Key("kid");
    w.String(kid);
    w.EndObject();
  }

  const int64_t now = o.now ? o.now : int64_t(std::time(nullptr));
  rapidjson::StringBuffer pb;
  rapidjson::Writer<rapidjson::StringBuffer> w(pb);
  auto field = [&w](const char* name, const std::string& value) {
    if (value.empty()) return;
    w.Key(name);
    w.String(value);
  };
  w.StartObject();
  field("iss", o.issuer);
  field("sub", o.subject);
  field("aud", o.audience);
  w.Key("iat");
  w.Int64(now);
  w.Key("exp");
  w.Int64(now + o.ttl_s);
  field("jti", random_id());
  field("client_id", o.client_id);
  field("scope", o.scope);
  field("fhirUser", o.fhir_user);
  field("patient", o.patient);
  field("espace_role", o.role);
  field("espace_profession", o.profession);
  field("espace_specialty", o.specialty);
  if (!o.represents.empty()) {
    w.Key("espace_represented_patients");
    w.StartArray();
    for (const std::string& id : o.represents) w.String(id);
    w.EndArray();
  }
  if (!o.name.empty() || !o.organization.empty() || !o.national_id.empty() || !o.purpose.empty()) {
    w.Key("extensions");
    w.StartObject();
    w.Key("ihe_iua");
    w.StartObject();
    field("subject_name", o.name);
    field("subject_organization_id", o.organization);
    field("national_provider_identifier", o.national_id);
    if (!o.purpose.empty()) {
      w.Key("purpose_of_use");
      w.StartObject();
      w.Key("system");
      w.String("http://terminology.hl7.org/CodeSystem/v3-ActReason");
      w.Key("code");
      w.String(o.purpose);
      w.EndObject();
    }
    w.EndObject();
    w.EndObject();
  }
  w.EndObject();

  std::string input = jwt::base64url_encode(std::string_view(hb.GetString(), hb.GetSize())) + "." +
                      jwt::base64url_encode(std::string_view(pb.GetString(), pb.GetSize()));
  std::string signature;
  if (Status s = jwt::sign_bytes(key.get(), input, &signature); !s) return s;
  *token = input + "." + jwt::base64url_encode(signature);
  return Status::ok();
}

Status make_signing_key(const std::string& alg, const std::string& pem_file, std::string* public_jwk) {
  jwt::KeyType type;
  if (alg == "ES256") type = jwt::KeyType::Ec;
  else if (alg == "RS256") type = jwt::KeyType::Rsa;
  else return invalid("key algorithm must be ES256 or RS256");
  jwt::Pkey key;
  if (Status s = jwt::generate_key(type, &key); !s) return s;
  std::string kid;
  if (Status s = jwt::public_jwk(key.get(), public_jwk, &kid); !s) return s;
  return jwt::write_private_key(key.get(), pem_file);
}

Status make_dev_keys(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::error(ErrorCategory::Internal, "exception", "cannot create " + dir + ": " + ec.message());
  std::string jwk;
  if (Status s = make_signing_key("ES256", dir + "/dev-signing-key.pem", &jwk); !s) return s;
  return write_file_atomically(dir + "/jwks.json", "{\"keys\":[" + jwk + "]}\n");
}

}  // namespace espace::policy
