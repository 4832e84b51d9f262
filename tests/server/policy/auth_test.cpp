// Bearer JWT authentication: signatures, algorithms, keys, time, issuer and
// audience checks, bounds, claims -> Caller, SMART scopes, JWKS reload, minting.
#include <openssl/hmac.h>
#include <sys/stat.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "espace/policy/auth.h"
#include "text_helpers.h"

using namespace espace;
using namespace espace::policy;

namespace {

using espace::testing::read_text;

constexpr int64_t kNow = 1'800'000'000;
const std::string kIssuer = "https://idp.espace.example";
const std::string kAudience = "https://espace.example/fhir";

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
}

// Keys generated once per test program in a private temporary folder.
struct Keys {
  std::string dir;
  std::string es_pem, rs_pem, other_es_pem;  // other_es is not in the trusted set
  std::string es_jwk, rs_jwk, other_es_jwk;
  std::string jwks_path;

  Keys() {
    char tmpl[] = "/tmp/espace-auth-test-XXXXXX";
    dir = ::mkdtemp(tmpl);
    es_pem = dir + "/es.pem";
    rs_pem = dir + "/rs.pem";
    other_es_pem = dir + "/other-es.pem";
    REQUIRE(make_signing_key("ES256", es_pem, &es_jwk));
    REQUIRE(make_signing_key("RS256", rs_pem, &rs_jwk));
    REQUIRE(make_signing_key("ES256", other_es_pem, &other_es_jwk));
    jwks_path = dir + "/jwks.json";
    write_text(jwks_path, "{\"keys\":[" + es_jwk + "," + rs_jwk + "]}");
  }
  ~Keys() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

Keys& keys() {
  static Keys k;
  return k;
}

// "kid" value inside a JWK text produced by make_signing_key.
std::string kid_of(const std::string& jwk) {
  size_t at = jwk.find("\"kid\":\"") + 7;
  return jwk.substr(at, jwk.find('"', at) - at);
}

AuthConfig config(const std::string& jwks = keys().jwks_path) {
  AuthConfig c;
  c.jwks_file = jwks;
  c.issuers = {"https://other-idp.example", kIssuer};
  c.audience = kAudience;
  c.clock_skew_s = 60;
  c.clock = [] { return kNow; };
  return c;
}

std::unique_ptr<Authenticator> authenticator(const AuthConfig& c = config()) {
  std::unique_ptr<Authenticator> a;
  fhir::Status s = Authenticator::create(c, &a);
  INFO(s.message());
  REQUIRE(s);
  return a;
}

// Claims as raw JSON values by name; a professional's token by default.
using Claims = std::map<std::string, std::string>;
Claims professional_claims() {
  return {
      {"iss", "\"" + kIssuer + "\""},
      {"aud", "\"" + kAudience + "\""},
      {"sub", "\"account-42\""},
      {"exp", std::to_string(kNow + 600)},
      {"iat", std::to_string(kNow - 10)},
      {"espace_role", "\"professional\""},
      {"fhirUser", "\"Practitioner/demo-dr-bernard\""},
  };
}

std::string json_of(const Claims& claims) {
  std::string out = "{";
  for (const auto& [name, value] : claims) {
    if (out.size() > 1) out += ",";
    out += "\"" + name + "\":" + value;
  }
  return out + "}";
}

std::string header(const std::string& alg, const std::string& kid) {
  return "{\"alg\":\"" + alg + "\",\"typ\":\"JWT\"" + (kid.empty() ? "" : ",\"kid\":\"" + kid + "\"") + "}";
}

std::string sign_es(const Claims& claims, const std::string& pem = keys().es_pem, bool with_kid = true) {
  std::string token;
  std::string kid = with_kid ? kid_of(pem == keys().es_pem ? keys().es_jwk : keys().other_es_jwk) : "";
  REQUIRE(jwt::sign(header("ES256", kid), json_of(claims), pem, &token));
  return token;
}

std::string sign_rs(const Claims& claims) {
  std::string token;
  REQUIRE(jwt::sign(header("RS256", kid_of(keys().rs_jwk)), json_of(claims), keys().rs_pem, &token));
  return token;
}

Credentials bearer(const std::string& token) {
  Credentials c;
  c.authorization = "Bearer " + token;
  c.remote_address = "192.0.2.7";
  return c;
}

// The message id of a refusal (empty when accepted).
std::string refusal(const Authenticator& a, const Credentials& credentials, Caller* caller = nullptr) {
  Caller scratch;
  fhir::Status s = a.authenticate(credentials, caller ? caller : &scratch);
  if (s) return "";
  CHECK(s.category() == fhir::ErrorCategory::Unauthorized);
  REQUIRE(!s.issues().empty());
  return s.issues().front().message_id;
}

std::string refusal(const Authenticator& a, const std::string& token, Caller* caller = nullptr) {
  return refusal(a, bearer(token), caller);
}

}  // namespace

TEST_CASE("auth: base64url is strict") {
  std::string out;
  CHECK(jwt::base64url_encode("") == "");
  CHECK(jwt::base64url_encode("f") == "Zg");
  CHECK(jwt::base64url_encode("fo") == "Zm8");
  CHECK(jwt::base64url_encode("foo") == "Zm9v");
  CHECK(jwt::base64url_encode("\xfb\xff") == "-_8");
  REQUIRE(jwt::base64url_decode("-_8", &out));
  CHECK(out == "\xfb\xff");
  REQUIRE(jwt::base64url_decode("Zm9vYmFy", &out));
  CHECK(out == "foobar");
  CHECK_FALSE(jwt::base64url_decode("Zg==", &out));   // padding
  CHECK_FALSE(jwt::base64url_decode("+/8", &out));    // standard alphabet
  CHECK_FALSE(jwt::base64url_decode("Zm9v YmFy", &out));
  CHECK_FALSE(jwt::base64url_decode("Z", &out));      // a lone sextet
  CHECK_FALSE(jwt::base64url_decode("Zh", &out));     // non-zero trailing bits ("Zg" is canonical)
}

TEST_CASE("auth: a valid ES256 token gives a Caller with the claims") {
  auto a = authenticator();
  Claims c = professional_claims();
  c["jti"] = "\"token-1\"";
  c["azp"] = "\"dossier-app\"";
  c["espace_profession"] = "\"10\"";
  c["espace_specialty"] = "\"SM54\"";
  c["scope"] = "\"openid fhirUser user/*.cruds\"";
  c["extensions"] =
      R"({"ihe_iua":{"subject_name":"Dr Luc Bernard","subject_organization_id":"1350000019",)"
      R"("national_provider_identifier":"810001234567",)"
      R"("subject_role":{"system":"urn:oid:2.16.756.5.30.1.127.3.10.6","code":"HCP"},)"
      R"("purpose_of_use":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"TREAT"}}})";
  Caller caller;
  REQUIRE(refusal(*a, sign_es(c), &caller) == "");
  CHECK(caller.authenticated);
  CHECK(caller.role == Role::Professional);
  CHECK(caller.subject == "account-42");
  CHECK(caller.issuer == kIssuer);
  CHECK(caller.client_id == "dossier-app");
  CHECK(caller.token_id == "token-1");
  CHECK(caller.fhir_user == "Practitioner/demo-dr-bernard");
  CHECK(caller.national_id == "810001234567");
  CHECK(caller.organization_id == "1350000019");
  CHECK(caller.display_name == "Dr Luc Bernard");
  CHECK(caller.purpose_of_use == "TREAT");
  CHECK(caller.profession_code == "10");
  CHECK(caller.specialty_code == "SM54");
  CHECK(caller.remote_address == "192.0.2.7");
  REQUIRE(caller.scopes.size() == 1);
  CHECK(caller.scopes[0].context == Scope::Context::User);
  CHECK(caller.scopes[0].type == "*");
  CHECK(caller.scopes[0].permissions == "cruds");
}

TEST_CASE("auth: a valid RS256 token is accepted, with or without kid") {
  auto a = authenticator();
  Caller caller;
  REQUIRE(refusal(*a, sign_rs(professional_claims()), &caller) == "");
  CHECK(caller.role == Role::Professional);
  std::string token;
  REQUIRE(jwt::sign(header("RS256", ""), json_of(professional_claims()), keys().rs_pem, &token));
  CHECK(refusal(*a, token) == "");
  // Without kid, the keys of the token's key type are tried.
  CHECK(refusal(*a, sign_es(professional_claims(), keys().es_pem, false)) == "");
}

TEST_CASE("auth: the RFC 7515 A.3 ES256 example verifies (R||S signatures)") {
  std::string dir = keys().dir;
  write_text(dir + "/rfc.json",
             R"({"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",)"
             R"("y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]})");
  AuthConfig c = config(dir + "/rfc.json");
  c.issuers = {"joe"};
  c.clock = [] { return int64_t(1300819000); };
  auto a = authenticator(c);
  const std::string input =
      "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
  const std::string signature = "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
  // The signature verifies; the example has no aud, so it stops at the audience.
  CHECK(refusal(*a, input + "." + signature) == "auth-audience");
  std::string altered = signature;
  altered[5] = altered[5] == 'A' ? 'B' : 'A';
  CHECK(refusal(*a, input + "." + altered) == "auth-signature");
}

TEST_CASE("auth: tampering is detected") {
  auto a = authenticator();
  std::string token = sign_es(professional_claims());
  size_t dot1 = token.find('.'), dot2 = token.rfind('.');
  Claims other = professional_claims();
  other["espace_role"] = "\"administrator\"";
  std::string forged_payload = jwt::base64url_encode(json_of(other));
  CHECK(refusal(*a, token.substr(0, dot1 + 1) + forged_payload + token.substr(dot2)) == "auth-signature");

  std::string sig = token.substr(dot2 + 1);
  sig[0] = sig[0] == 'A' ? 'B' : 'A';
  CHECK(refusal(*a, token.substr(0, dot2 + 1) + sig) == "auth-signature");
  CHECK(refusal(*a, token.substr(0, dot2 + 1)) == "auth-signature");  // signature removed

  std::string rs = sign_rs(professional_claims());
  std::string rs_sig = rs.substr(rs.rfind('.') + 1);
  CHECK(refusal(*a, rs.substr(0, rs.rfind('.') + 1) + rs_sig.substr(4)) == "auth-signature");  // shortened

  // A header swapped after signing (kid of the RSA key) no longer verifies either.
  std::string swapped = jwt::base64url_encode(header("ES256", "")) + token.substr(dot1);
  CHECK(refusal(*a, swapped) == "auth-signature");
  // Signed by a key that is not trusted, naming a trusted kid.
  std::string untrusted;
  REQUIRE(jwt::sign(header("ES256", kid_of(keys().es_jwk)), json_of(professional_claims()), keys().other_es_pem,
                    &untrusted));
  CHECK(refusal(*a, untrusted) == "auth-signature");
  CHECK(refusal(*a, sign_es(professional_claims(), keys().other_es_pem, false)) == "auth-signature");
}

TEST_CASE("auth: algorithms other than RS256 and ES256 are refused") {
  auto a = authenticator();
  std::string payload = jwt::base64url_encode(json_of(professional_claims()));
  // alg none, with and without a signature part.
  CHECK(refusal(*a, jwt::base64url_encode("{\"alg\":\"none\"}") + "." + payload + ".") == "auth-algorithm");
  CHECK(refusal(*a, jwt::base64url_encode("{\"alg\":\"None\"}") + "." + payload + ".") == "auth-algorithm");

  // HS256 keyed with the public key, as a confused verifier would check it.
  for (const std::string& secret : {keys().es_jwk, keys().rs_jwk}) {
    for (const std::string& kid : {std::string(), kid_of(keys().rs_jwk)}) {
      std::string input = jwt::base64url_encode(header("HS256", kid)) + "." + payload;
      unsigned char mac[32];
      unsigned int mac_len = 0;
      HMAC(EVP_sha256(), secret.data(), int(secret.size()), reinterpret_cast<const unsigned char*>(input.data()),
           input.size(), mac, &mac_len);
      std::string token = input + "." + jwt::base64url_encode(std::string(reinterpret_cast<char*>(mac), mac_len));
      CHECK(refusal(*a, token) == "auth-algorithm");
    }
  }
  for (const char* alg : {"RS512", "PS256", "ES384", "EdDSA"}) {
    std::string token = jwt::base64url_encode(header(alg, "")) + "." + payload + ".AAAA";
    CHECK(refusal(*a, token) == "auth-algorithm");
  }
  // alg and the key named by kid disagree (RS256 claimed, EC key named).
  std::string mismatch;
  REQUIRE(jwt::sign(header("RS256", kid_of(keys().es_jwk)), json_of(professional_claims()), keys().es_pem, &mismatch));
  CHECK(refusal(*a, mismatch) == "auth-algorithm");
  // Same without kid: only RSA keys are tried, and none verifies an EC signature.
  REQUIRE(jwt::sign(header("RS256", ""), json_of(professional_claims()), keys().es_pem, &mismatch));
  CHECK(refusal(*a, mismatch) == "auth-signature");
}

TEST_CASE("auth: unknown key ids are refused") {
  auto a = authenticator();
  std::string token;
  REQUIRE(jwt::sign(header("ES256", "no-such-key"), json_of(professional_claims()), keys().es_pem, &token));
  CHECK(refusal(*a, token) == "auth-unknown-key");
  REQUIRE(jwt::sign(header("ES256", kid_of(keys().other_es_jwk)), json_of(professional_claims()),
                    keys().other_es_pem, &token));
  CHECK(refusal(*a, token) == "auth-unknown-key");
}

TEST_CASE("auth: exp, nbf and iat with the clock skew") {
  auto a = authenticator();  // skew 60 s
  auto with = [](const char* name, int64_t value) {
    Claims c = professional_claims();
    c[name] = std::to_string(value);
    return c;
  };
  CHECK(refusal(*a, sign_es(with("exp", kNow - 60))) == "auth-expired");
  CHECK(refusal(*a, sign_es(with("exp", kNow - 59))) == "");
  CHECK(refusal(*a, sign_es(with("exp", kNow - 3600))) == "auth-expired");
  CHECK(refusal(*a, sign_es(with("nbf", kNow + 61))) == "auth-not-yet-valid");
  CHECK(refusal(*a, sign_es(with("nbf", kNow + 60))) == "");
  CHECK(refusal(*a, sign_es(with("iat", kNow + 61))) == "auth-not-yet-valid");
  CHECK(refusal(*a, sign_es(with("iat", kNow + 60))) == "");
  Claims fractional = professional_claims();
  fractional["exp"] = std::to_string(kNow - 60) + ".5";
  CHECK(refusal(*a, sign_es(fractional)) == "");

  Claims no_exp = professional_claims();
  no_exp.erase("exp");
  CHECK(refusal(*a, sign_es(no_exp)) == "auth-claims");
  Claims text_exp = professional_claims();
  text_exp["exp"] = "\"" + std::to_string(kNow + 600) + "\"";
  CHECK(refusal(*a, sign_es(text_exp)) == "auth-claims");

  AuthConfig strict = config();
  strict.clock_skew_s = 0;
  auto b = authenticator(strict);
  CHECK(refusal(*b, sign_es(with("exp", kNow))) == "auth-expired");
  CHECK(refusal(*b, sign_es(with("exp", kNow + 1))) == "");
  CHECK(refusal(*b, sign_es(with("nbf", kNow + 1))) == "auth-not-yet-valid");
}

TEST_CASE("auth: issuer and audience") {
  auto a = authenticator();
  auto with = [](const char* name, std::string value) {
    Claims c = professional_claims();
    c[name] = std::move(value);
    return c;
  };
  CHECK(refusal(*a, sign_es(with("iss", "\"https://evil.example\""))) == "auth-issuer");
  CHECK(refusal(*a, sign_es(with("iss", "\"https://idp.espace.example/\""))) == "auth-issuer");
  CHECK(refusal(*a, sign_es(with("iss", "\"https://other-idp.example\""))) == "");
  CHECK(refusal(*a, sign_es(with("iss", "42"))) == "auth-claims");
  Claims no_iss = professional_claims();
  no_iss.erase("iss");
  CHECK(refusal(*a, sign_es(no_iss)) == "auth-issuer");

  CHECK(refusal(*a, sign_es(with("aud", "\"https://elsewhere.example\""))) == "auth-audience");
  CHECK(refusal(*a, sign_es(with("aud", "[\"a\",\"" + kAudience + "\"]"))) == "");
  CHECK(refusal(*a, sign_es(with("aud", "[\"a\",\"b\"]"))) == "auth-audience");
  CHECK(refusal(*a, sign_es(with("aud", "[]"))) == "auth-audience");
  CHECK(refusal(*a, sign_es(with("aud", "[\"" + kAudience + "\", 3]"))) == "auth-audience");
  CHECK(refusal(*a, sign_es(with("aud", "{\"x\":1}"))) == "auth-audience");
  Claims no_aud = professional_claims();
  no_aud.erase("aud");
  CHECK(refusal(*a, sign_es(no_aud)) == "auth-audience");
}

TEST_CASE("auth: malformed credentials and tokens") {
  auto a = authenticator();
  Credentials none;
  CHECK(refusal(*a, none) == "auth-missing");
  Credentials basic;
  basic.authorization = "Basic dXNlcjpwYXNz";
  CHECK(refusal(*a, basic) == "auth-scheme");
  Credentials bare;
  bare.authorization = "Bearer";
  CHECK(refusal(*a, bare) == "auth-scheme");
  CHECK(refusal(*a, "   ") == "auth-malformed");
  // The scheme is case-insensitive (RFC 7235).
  Credentials lower;
  lower.authorization = "bearer " + sign_es(professional_claims());
  CHECK(refusal(*a, lower) == "");

  CHECK(refusal(*a, "abc") == "auth-malformed");
  CHECK(refusal(*a, "a.b") == "auth-malformed");
  CHECK(refusal(*a, "a.b.c.d") == "auth-malformed");
  std::string good = sign_es(professional_claims());
  size_t dot1 = good.find('.'), dot2 = good.rfind('.');
  CHECK(refusal(*a, "." + good.substr(dot1 + 1)) == "auth-malformed");              // empty header
  CHECK(refusal(*a, good.substr(0, dot1) + ".." + good.substr(dot2 + 1)) == "auth-malformed");  // empty payload
  CHECK(refusal(*a, good + "=") == "auth-malformed");                               // padding
  CHECK(refusal(*a, "+" + good.substr(1)) == "auth-malformed");                     // standard base64
  CHECK(refusal(*a, jwt::base64url_encode("not json") + good.substr(dot1)) == "auth-malformed");
  CHECK(refusal(*a, jwt::base64url_encode("[\"ES256\"]") + good.substr(dot1)) == "auth-malformed");
  CHECK(refusal(*a, jwt::base64url_encode("{\"alg\":\"ES256\",\"x\":[[[[[[[[[[1]]]]]]]]]]}") + good.substr(dot1)) ==
        "auth-malformed");
  CHECK(refusal(*a, jwt::base64url_encode("{\"alg\":\"ES256\",\"crit\":[\"exp\"],\"exp\":1}") + good.substr(dot1)) ==
        "auth-malformed");
  CHECK(refusal(*a, jwt::base64url_encode("{\"alg\":\"ES256\",\"typ\":\"JOSE+JSON\"}") + good.substr(dot1)) ==
        "auth-malformed");
  CHECK(refusal(*a, jwt::base64url_encode("{\"alg\":\"ES256\",\"kid\":7}") + good.substr(dot1)) == "auth-malformed");
  CHECK(refusal(*a, std::string(16 * 1024 + 1, 'a')) == "auth-malformed");

  // Signed payloads that are not acceptable JSON objects.
  auto signed_payload = [](const std::string& payload) {
    std::string token;
    REQUIRE(jwt::sign(header("ES256", kid_of(keys().es_jwk)), payload, keys().es_pem, &token));
    return token;
  };
  CHECK(refusal(*a, signed_payload("{\"iss\":")) == "auth-malformed");
  CHECK(refusal(*a, signed_payload("[1,2]")) == "auth-malformed");
  CHECK(refusal(*a, signed_payload(std::string(100, '[') + std::string(100, ']'))) == "auth-malformed");
  CHECK(refusal(*a, signed_payload("{\"iss\":\"\xff\xfe\"}")) == "auth-malformed");  // not UTF-8
  // A duplicated claim is ambiguous.
  Claims c = professional_claims();
  std::string dup = json_of(c);
  dup.insert(dup.size() - 1, ",\"espace_role\":\"administrator\"");
  CHECK(refusal(*a, signed_payload(dup)) == "auth-malformed");
}

TEST_CASE("auth: refusals never quote the token") {
  auto a = authenticator();
  Claims c = professional_claims();
  c["exp"] = std::to_string(kNow - 3600);
  std::string token = sign_es(c);
  Caller caller;
  fhir::Status s = a->authenticate(bearer(token), &caller);
  REQUIRE_FALSE(s);
  for (const auto& issue : s.issues()) {
    CHECK(issue.diagnostics.find(token.substr(0, 20)) == std::string::npos);
    CHECK(issue.diagnostics.find("account-42") == std::string::npos);
  }
  CHECK_FALSE(caller.authenticated);
}

TEST_CASE("auth: claims mapping for each role") {
  auto a = authenticator();
  auto base = [] {
    Claims c = professional_claims();
    c.erase("fhirUser");
    c.erase("espace_role");
    return c;
  };
  Caller caller;

  SECTION("patient") {
    Claims c = base();
    c["espace_role"] = "\"patient\"";
    c["fhirUser"] = "\"https://espace.example/fhir/Patient/demo-claire-martin\"";
    c["scope"] = "\"patient/*.rs launch/patient\"";
    REQUIRE(refusal(*a, sign_es(c), &caller) == "");
    CHECK(caller.role == Role::Patient);
    CHECK(caller.fhir_user == "Patient/demo-claire-martin");
    CHECK(caller.patient_id == "demo-claire-martin");
    REQUIRE(caller.scopes.size() == 1);
    CHECK(caller.scopes[0].context == Scope::Context::Patient);
    c["patient"] = "\"demo-claire-martin\"";
    CHECK(refusal(*a, sign_es(c)) == "");
    c["patient"] = "\"demo-jean-dupont\"";
    CHECK(refusal(*a, sign_es(c)) == "auth-claims");  // patient and fhirUser disagree
    c.erase("fhirUser");
    REQUIRE(refusal(*a, sign_es(c), &caller) == "");
    CHECK(caller.patient_id == "demo-jean-dupont");
    c.erase("patient");
    CHECK(refusal(*a, sign_es(c)) == "auth-claims");  // names no patient
    c["fhirUser"] = "\"Practitioner/demo-dr-bernard\"";
    CHECK(refusal(*a, sign_es(c)) == "auth-claims");
  }
  SECTION("patient through the IUA role code") {
    Claims c = base();
    c["patient"] = "\"demo-lea-petit\"";
    c["extensions"] = R"({"ihe_iua":{"subject_role":{"code":"PAT"},"purpose_of_use":"PATRQT"}})";
    REQUIRE(refusal(*a, sign_es(c), &caller) == "");
    CHECK(caller.role == Role::Patient);
    CHECK(caller.patient_id == "demo-lea-petit");
    CHECK(caller.purpose_of_use == "PATRQT");
  }
  SECTION("legal representative") {
    Claims c = base();
    c["espace_role"] = "\"legal-representative\"";
    c["fhirUser"] = "\"RelatedPerson/parent-1\"";
    c["espace_represented_patients"] = "[\"demo-lea-petit\",\"child-2\",\"demo-lea-petit\"]";
    REQUIRE(refusal(*a, sign_es(c), &caller) == "");
    CHECK(caller.role == Role::LegalRepresentative);
    CHECK(caller.represented_patients == std::vector<std::string>{"demo-lea-petit", "child-2"});
    c["espace_represented_patients"] = "[]";
    CHECK(refusal(*a, sign_es(c)) == "auth-claims");
    c["espace_represented_patients"] = "[\"Patient/x\"]";
    CHECK(refusal(*a, sign_es(c)) == "auth-claims");
    c["espace_represented_patients"] = "\"demo-lea-petit\"";
    CHECK(refusal(*a, sign_es(c)) == "auth-claims");
    c["espace_represented_patients"] = "[\"demo-lea-petit\"]";
    c["fhirUser"] = "\"Practitioner/x\"";
    CHECK(refusal(*a, sign_es(c)) == "auth-claims");
  }
  SECTION("professional") {
    Claims c = base();
    c["extensions"] = R"({"ihe_iua":{"subject_role":[{"code":"HCP"}],"national_provider_identifier":"810007654321",)"
                      R"("purpose_of_use":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"ETREAT"}]}})";
    REQUIRE(refusal(*a, sign_es(c), &caller) == "");
    CHECK(caller.role == Role::Professional);
    CHECK(caller.national_id == "810007654321");
    CHECK(caller.purpose_of_use == "ETREAT");
    CHECK(caller.fhir_user.empty());
    c["extensions"] = R"({"ihe_iua":{"subject_role":{"code":"HCP"}}})";
    CHECK(refusal(*a, sign_es(c)) == "auth-claims");  // neither RPPS nor Practitioner
    c["fhirUser"] = "\"PractitionerRole/role-1\"";
    CHECK(refusal(*a, sign_es(c)) == "");
    c["fhirUser"] = "\"Patient/demo-lea-petit\"";
    CHECK(refusal(*a, sign_es(c)) == "auth-claims");
    c["fhirUser"] = "\"Practitioner/bad id\"";
    CHECK(refusal(*a, sign_es(c)) == "auth-claims");
    c["fhirUser"] = "\"Practitioner/demo-dr-bernard\"";
    c["extensions"] = R"({"ihe_iua":{"purpose_of_use":[{"code":"TREAT"},{"code":"ETREAT"}]}})";
    c["espace_role"] = "\"professional\"";
    CHECK(refusal(*a, sign_es(c)) == "auth-claims");  // two purposes are ambiguous
    c["extensions"] = R"({"ihe_iua":{"purpose_of_use":{"system":"x"}}})";
    CHECK(refusal(*a, sign_es(c)) == "auth-claims");
    c["extensions"] = R"({"ihe_iua":"HCP"})";
    CHECK(refusal(*a, sign_es(c)) == "auth-claims");
  }
  SECTION("system and administrator") {
    Claims c = base();
    c["espace_role"] = "\"system\"";
    c["client_id"] = "\"his-rennes\"";
    c["azp"] = "\"ignored\"";
    c["scope"] = "\"system/*.rs system/Patient.cruds\"";
    REQUIRE(refusal(*a, sign_es(c), &caller) == "");
    CHECK(caller.role == Role::System);
    CHECK(caller.client_id == "his-rennes");
    CHECK(caller.scopes.size() == 2);
    c = base();
    c["extensions"] = R"({"ihe_iua":{"subject_role":{"code":"PADM"}}})";
    REQUIRE(refusal(*a, sign_es(c), &caller) == "");
    CHECK(caller.role == Role::Administrator);
    c["espace_role"] = "\"administrator\"";
    CHECK(refusal(*a, sign_es(c)) == "");
  }
  SECTION("roles that are unknown, missing, conflicting or not for tokens") {
    Claims c = base();
    CHECK(refusal(*a, sign_es(c)) == "auth-claims");
    for (const char* role : {"\"open\"", "\"anonymous\"", "\"doctor\"", "\"Professional\"", "1"}) {
      c["espace_role"] = role;
      CHECK(refusal(*a, sign_es(c)) == "auth-claims");
    }
    c["espace_role"] = "\"professional\"";
    c["fhirUser"] = "\"Practitioner/demo-dr-bernard\"";
    c["extensions"] = R"({"ihe_iua":{"subject_role":{"code":"PAT"}}})";
    CHECK(refusal(*a, sign_es(c)) == "auth-claims");
    c["extensions"] = R"({"ihe_iua":{"subject_role":{"code":"ASS"}}})";
    CHECK(refusal(*a, sign_es(c)) == "auth-claims");
  }
  SECTION("sub is required; claims are bounded and printable") {
    Claims c = professional_claims();
    c.erase("sub");
    CHECK(refusal(*a, sign_es(c)) == "auth-claims");
    c["sub"] = "\"" + std::string(300, 'x') + "\"";
    CHECK(refusal(*a, sign_es(c)) == "auth-claims");
    c["sub"] = "\"a\\nb\"";
    CHECK(refusal(*a, sign_es(c)) == "auth-claims");
    c["sub"] = "\"account-42\"";
    c["espace_profession"] = "\"10; drop\"";
    CHECK(refusal(*a, sign_es(c)) == "auth-claims");
  }
}

TEST_CASE("auth: SMART scopes") {
  auto parse = [](const std::string& text, Scope* scope, bool* keep) {
    std::string why;
    return parse_smart_scope(text, scope, keep, &why);
  };
  Scope s;
  bool keep = false;
  REQUIRE(parse("patient/Observation.rs", &s, &keep));
  CHECK(keep);
  CHECK(s.context == Scope::Context::Patient);
  CHECK(s.type == "Observation");
  CHECK(s.permissions == "rs");
  REQUIRE(parse("user/*.cruds", &s, &keep));
  CHECK((keep && s.context == Scope::Context::User && s.type == "*" && s.permissions == "cruds"));
  REQUIRE(parse("system/Patient.r", &s, &keep));
  CHECK((keep && s.context == Scope::Context::System && s.permissions == "r"));
  REQUIRE(parse("user/DocumentReference.cd", &s, &keep));
  CHECK(s.permissions == "cd");
  // SMART 1.0 forms.
  REQUIRE(parse("patient/Observation.read", &s, &keep));
  CHECK((keep && s.permissions == "rs"));
  REQUIRE(parse("user/*.write", &s, &keep));
  CHECK((keep && s.permissions == "cud"));
  REQUIRE(parse("user/Encounter.*", &s, &keep));
  CHECK((keep && s.permissions == "cruds"));
  // Valid but granting nothing here.
  for (const char* none : {"openid", "fhirUser", "offline_access", "launch", "launch/patient",
                           "patient/Observation.rs?category=laboratory"}) {
    INFO(none);
    REQUIRE(parse(none, &s, &keep));
    CHECK_FALSE(keep);
  }
  // Malformed resource scopes.
  for (const char* bad : {"patient/Observation", "patient/Observation.", "patient/Observation.sr",
                          "patient/Observation.rr", "patient/Observation.x", "user/observation.r", "user/.r",
                          "system/Obs3rvation.r"}) {
    INFO(bad);
    CHECK_FALSE(parse(bad, &s, &keep));
  }

  auto a = authenticator();
  Claims c = professional_claims();
  c["scope"] = "\"openid  patient/Observation.read user/Patient.rs?name=x user/MedicationRequest.cruds\"";
  Caller caller;
  REQUIRE(refusal(*a, sign_es(c), &caller) == "");
  REQUIRE(caller.scopes.size() == 2);
  CHECK(caller.scopes[0].type == "Observation");
  CHECK(caller.scopes[0].permissions == "rs");
  CHECK(caller.scopes[1].type == "MedicationRequest");
  c["scope"] = "\"user/*.xyz\"";
  CHECK(refusal(*a, sign_es(c)) == "auth-claims");
  c["scope"] = "[\"user/*.rs\"]";
  CHECK(refusal(*a, sign_es(c)) == "auth-claims");
}

TEST_CASE("auth: JWKS problems are reported at creation") {
  std::string dir = keys().dir;
  auto fails = [&](const std::string& jwks) {
    write_text(dir + "/bad.json", jwks);
    std::unique_ptr<Authenticator> a;
    fhir::Status s = Authenticator::create(config(dir + "/bad.json"), &a);
    CHECK(s.category() == fhir::ErrorCategory::Invalid);
    CHECK_FALSE(a);
    return s.message();
  };
  CHECK(fails("not json").find("bad.json") != std::string::npos);
  CHECK(fails("{\"keys\":[]}").find("no RS256 or ES256") != std::string::npos);
  CHECK(fails("{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}").find("no RS256 or ES256") != std::string::npos);
  CHECK(fails("{\"keys\":[" + keys().es_jwk + "," + keys().es_jwk + "]}").find("duplicate kid") != std::string::npos);
  std::string with_d = keys().es_jwk;
  with_d.insert(1, "\"d\":\"AAAA\",");
  CHECK(fails("{\"keys\":[" + with_d + "]}").find("private") != std::string::npos);
  // A point moved off the curve.
  std::string off_curve = keys().es_jwk;
  size_t x = off_curve.find("\"x\":\"") + 5;
  off_curve[x + 3] = off_curve[x + 3] == 'A' ? 'B' : 'A';
  CHECK(fails("{\"keys\":[" + off_curve + "]}").find("curve") != std::string::npos);
  CHECK(fails("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\",\"y\":\"AAAA\"}]}").find("32 bytes") !=
        std::string::npos);
  CHECK(fails("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}").find("2048") != std::string::npos);

  std::unique_ptr<Authenticator> a;
  CHECK_FALSE(Authenticator::create(config(dir + "/missing.json"), &a));
  AuthConfig no_issuer = config();
  no_issuer.issuers.clear();
  CHECK_FALSE(Authenticator::create(no_issuer, &a));
  AuthConfig no_audience = config();
  no_audience.audience.clear();
  CHECK_FALSE(Authenticator::create(no_audience, &a));

  // Encryption keys and other algorithms are skipped, not fatal.
  std::string enc = keys().rs_jwk;
  enc.replace(enc.find("\"use\":\"sig\""), 11, "\"use\":\"enc\"");
  write_text(dir + "/mixed.json", "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}," + enc + "," +
                                      keys().es_jwk + "]}");
  auto mixed = authenticator(config(dir + "/mixed.json"));
  CHECK(mixed->key_count() == 1);
  CHECK(refusal(*mixed, sign_es(professional_claims())) == "");
  CHECK(refusal(*mixed, sign_rs(professional_claims())) == "auth-unknown-key");
}

TEST_CASE("auth: reload keeps the old keys on a broken file and picks up new ones") {
  std::string path = keys().dir + "/reload.json";
  write_text(path, "{\"keys\":[" + keys().es_jwk + "]}");
  auto a = authenticator(config(path));
  std::string old_key_token = sign_es(professional_claims());
  std::string new_key_token = sign_es(professional_claims(), keys().other_es_pem);
  CHECK(refusal(*a, old_key_token) == "");
  CHECK(refusal(*a, new_key_token) == "auth-unknown-key");

  write_text(path, "{\"keys\":[");
  fhir::Status s = a->reload();
  CHECK_FALSE(s);
  CHECK(s.message().find("previous keys stay in use") != std::string::npos);
  CHECK(refusal(*a, old_key_token) == "");
  std::filesystem::remove(path);
  CHECK_FALSE(a->reload());
  CHECK(refusal(*a, old_key_token) == "");

  write_text(path, "{\"keys\":[" + keys().other_es_jwk + "]}");
  REQUIRE(a->reload());
  CHECK(refusal(*a, new_key_token) == "");
  CHECK(refusal(*a, old_key_token) == "auth-unknown-key");
}

TEST_CASE("auth: authentication runs concurrently with reloads") {
  std::string path = keys().dir + "/concurrent.json";
  write_text(path, "{\"keys\":[" + keys().es_jwk + "," + keys().other_es_jwk + "]}");
  auto a = authenticator(config(path));
  std::string token = sign_es(professional_claims());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        Caller caller;
        if (!a->authenticate(bearer(token), &caller)) ++failures;
      }
    });
  for (int i = 0; i < 30; ++i) CHECK(a->reload());
  for (auto& t : threads) t.join();
  CHECK(failures == 0);
}

TEST_CASE("auth: minted tokens and dev keys") {
  std::string dir = keys().dir + "/dev";
  REQUIRE(make_dev_keys(dir));
  struct stat st {};
  REQUIRE(::stat((dir + "/dev-signing-key.pem").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  std::string jwks = read_text(dir + "/jwks.json");
  CHECK(jwks.find("\"d\"") == std::string::npos);
  CHECK(jwks.find("\"kid\"") != std::string::npos);
  CHECK(make_dev_keys(dir).category() == fhir::ErrorCategory::Conflict);  // never replaced

  MintOptions m;
  m.key_file = dir + "/dev-signing-key.pem";
  m.issuer = kIssuer;
  m.audience = kAudience;
  m.subject = "dr-bernard";
  m.role = "professional";
  m.fhir_user = "Practitioner/demo-dr-bernard";
  m.national_id = "810001234567";
  m.profession = "10";
  m.specialty = "SM54";
  m.organization = "1350000019";
  m.purpose = "TREAT";
  m.scope = "user/*.cruds";
  m.name = "Dr Luc Bernard";
  m.patient = "demo-claire-martin";
  m.now = kNow;
  m.ttl_s = 300;
  std::string token;
  REQUIRE(mint_token(m, &token));
  auto a = authenticator(config(dir + "/jwks.json"));
  Caller caller;
  REQUIRE(refusal(*a, token, &caller) == "");
  CHECK(caller.role == Role::Professional);
  CHECK(caller.national_id == "810001234567");
  CHECK(caller.purpose_of_use == "TREAT");
  CHECK(caller.organization_id == "1350000019");
  CHECK(caller.display_name == "Dr Luc Bernard");
  CHECK(caller.patient_id == "demo-claire-martin");
  CHECK(caller.client_id == "espace-token");
  CHECK_FALSE(caller.token_id.empty());

  // The ttl is honoured.
  m.now = kNow - 300 - 60;
  REQUIRE(mint_token(m, &token));
  CHECK(refusal(*a, token) == "auth-expired");

  MintOptions rep;
  rep.key_file = keys().rs_pem;  // RSA keys mint RS256
  rep.issuer = kIssuer;
  rep.audience = kAudience;
  rep.subject = "parent";
  rep.role = "legal-representative";
  rep.represents = {"demo-lea-petit"};
  rep.now = kNow;
  REQUIRE(mint_token(rep, &token));
  CHECK(token.substr(0, token.find('.')) == jwt::base64url_encode(header("RS256", kid_of(keys().rs_jwk))));
  auto b = authenticator();
  REQUIRE(refusal(*b, token, &caller) == "");
  CHECK(caller.represented_patients == std::vector<std::string>{"demo-lea-petit"});

  rep.role = "open";
  CHECK_FALSE(mint_token(rep, &token));
  rep.role = "patient";
  rep.key_file = keys().dir + "/missing.pem";
  CHECK_FALSE(mint_token(rep, &token));
}

TEST_CASE("auth: every one-character change to a valid token is refused") {
  auto a = authenticator();
  for (const std::string& token : {sign_es(professional_claims()), sign_rs(professional_claims())}) {
    REQUIRE(refusal(*a, token) == "");
    size_t accepted = 0;
    for (size_t i = 0; i < token.size(); ++i) {
      for (char replacement : {'A', 'x', '_', '.', '0'}) {
        if (token[i] == replacement) continue;
        std::string mutated = token;
        mutated[i] = replacement;
        if (refusal(*a, mutated).empty()) ++accepted;
      }
      std::string shorter = token;
      shorter.erase(i, 1);
      if (refusal(*a, shorter).empty()) ++accepted;
    }
    CHECK(accepted == 0);
  }
}

TEST_CASE("auth: reload_all reloads every live authenticator (SIGHUP)") {
  std::string first = keys().dir + "/all-1.json", second = keys().dir + "/all-2.json";
  write_text(first, "{\"keys\":[" + keys().es_jwk + "]}");
  write_text(second, "{\"keys\":[" + keys().es_jwk + "]}");
  auto a = authenticator(config(first));
  auto b = authenticator(config(second));
  std::string new_key_token = sign_es(professional_claims(), keys().other_es_pem);
  CHECK(refusal(*a, new_key_token) == "auth-unknown-key");

  write_text(first, "{\"keys\":[" + keys().other_es_jwk + "]}");
  write_text(second, "{\"keys\":[" + keys().es_jwk + "," + keys().other_es_jwk + "]}");
  REQUIRE(Authenticator::reload_all());
  CHECK(refusal(*a, new_key_token) == "");
  CHECK(refusal(*b, new_key_token) == "");
  CHECK(a->key_count() == 1);
  CHECK(b->key_count() == 2);

  // One broken file: reported, that one keeps its keys, the other still reloads.
  write_text(first, "{");
  write_text(second, "{\"keys\":[" + keys().es_jwk + "]}");
  fhir::Status s = Authenticator::reload_all();
  CHECK_FALSE(s);
  CHECK(s.message().find("all-1.json") != std::string::npos);
  CHECK(refusal(*a, new_key_token) == "");
  CHECK(refusal(*b, new_key_token) == "auth-unknown-key");

  // A destroyed authenticator is no longer reloaded.
  a.reset();
  CHECK(Authenticator::reload_all());
}
