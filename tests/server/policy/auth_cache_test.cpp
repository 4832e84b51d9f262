// The authenticator remembers verified tokens: a remembered token must still
// expire on time, be refused once its key is rotated out, and carry the
// current request's address, never the one it was first seen with.
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "espace/policy/auth.h"

using namespace espace;
using namespace espace::policy;

namespace {

constexpr int64_t kStart = 1'800'000'000;

struct CacheKeys {
  std::string dir, pem, jwk, other_pem, other_jwk, jwks;
  CacheKeys() {
    char tmpl[] = "/tmp/espace-auth-cache-test-XXXXXX";
    dir = ::mkdtemp(tmpl);
    pem = dir + "/es.pem";
    other_pem = dir + "/other.pem";
    REQUIRE(make_signing_key("ES256", pem, &jwk));
    REQUIRE(make_signing_key("ES256", other_pem, &other_jwk));
    jwks = dir + "/jwks.json";
    write({jwk});
  }
  ~CacheKeys() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  void write(const std::vector<std::string>& keys) const {
    std::string text = "{\"keys\":[";
    for (size_t i = 0; i < keys.size(); ++i) text += (i ? "," : "") + keys[i];
    std::ofstream(jwks, std::ios::binary | std::ios::trunc) << text << "]}";
  }
};

std::string token(const std::string& pem, int64_t exp) {
  std::string claims = R"({"iss":"https://idp.espace.example","aud":"espace","sub":"account-7",)"
                       R"("espace_role":"professional","fhirUser":"Practitioner/p7","exp":)" +
                       std::to_string(exp) + "}";
  std::string out;
  REQUIRE(jwt::sign(R"({"alg":"ES256","typ":"JWT"})", claims, pem, &out));
  return out;
}

Credentials bearer(const std::string& t, const std::string& address) {
  Credentials c;
  c.authorization = "Bearer " + t;
  c.remote_address = address;
  return c;
}

std::string outcome(const Authenticator& a, const Credentials& c, Caller* caller) {
  fhir::Status s = a.authenticate(c, caller);
  if (s) return "ok";
  REQUIRE(!s.issues().empty());
  return s.issues().front().message_id;
}

}  // namespace

TEST_CASE("auth cache: a remembered token expires on time and carries each request's address") {
  CacheKeys keys;
  static std::atomic<int64_t> now{kStart};
  now = kStart;
  AuthConfig config;
  config.jwks_file = keys.jwks;
  config.issuers = {"https://idp.espace.example"};
  config.audience = "espace";
  config.clock_skew_s = 30;
  config.clock = [] { return now.load(); };
  std::unique_ptr<Authenticator> a;
  REQUIRE(Authenticator::create(config, &a));

  std::string t = token(keys.pem, kStart + 100);
  Caller first, second;
  REQUIRE(outcome(*a, bearer(t, "192.0.2.1"), &first) == "ok");
  REQUIRE(outcome(*a, bearer(t, "198.51.100.2"), &second) == "ok");
  CHECK(first.remote_address == "192.0.2.1");
  CHECK(second.remote_address == "198.51.100.2");
  CHECK(second.subject == "account-7");
  CHECK(second.fhir_user == "Practitioner/p7");
  CHECK(second.role == Role::Professional);
  CHECK(second.authenticated);

  now = kStart + 100 + 29;  // within the skew
  CHECK(outcome(*a, bearer(t, "192.0.2.1"), &second) == "ok");
  now = kStart + 100 + 30;
  CHECK(outcome(*a, bearer(t, "192.0.2.1"), &second) == "auth-expired");
  CHECK(outcome(*a, bearer(t, "192.0.2.1"), &second) == "auth-expired");
}

TEST_CASE("auth cache: a remembered token is refused once its key leaves the key set") {
  CacheKeys keys;
  keys.write({keys.jwk, keys.other_jwk});
  AuthConfig config;
  config.jwks_file = keys.jwks;
  config.issuers = {"https://idp.espace.example"};
  config.audience = "espace";
  config.clock = [] { return kStart; };
  std::unique_ptr<Authenticator> a;
  REQUIRE(Authenticator::create(config, &a));
  std::string old_key = token(keys.pem, kStart + 600);
  std::string new_key = token(keys.other_pem, kStart + 600);
  Caller c;
  REQUIRE(outcome(*a, bearer(old_key, "192.0.2.1"), &c) == "ok");
  REQUIRE(outcome(*a, bearer(new_key, "192.0.2.1"), &c) == "ok");

  keys.write({keys.other_jwk});
  REQUIRE(a->reload());
  CHECK(outcome(*a, bearer(old_key, "192.0.2.1"), &c) == "auth-signature");
  CHECK(outcome(*a, bearer(new_key, "192.0.2.1"), &c) == "ok");
  // A one-character change is a different token: verified in full, refused.
  std::string altered = new_key;
  altered[altered.size() / 2] = altered[altered.size() / 2] == 'A' ? 'B' : 'A';
  CHECK(outcome(*a, bearer(altered, "192.0.2.1"), &c) != "ok");
}
