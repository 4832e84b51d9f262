// Bearer tokens end to end: `espace token init/mint` and `espace serve
// --auth jwt` answering 401 (RFC 6750) for missing, malformed, foreign and
// misdirected tokens, accepting minted ones, and rotating keys on SIGHUP.
#include <signal.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "dev_tokens.h"
#include "http_client.h"
#include "json_checks.h"
#include "server_process.h"

using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::run_espace;
using espace::testing::ServerProcess;
using espace::testing::kTestIssuer;
using espace::testing::kTestAudience;
using espace::testing::mint_dev_token;
using espace::testing::init_dev_keys;

namespace {


struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/espace-auth-it-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

// Mints a token with the key of `keys_dir`; fails the test if it cannot.
std::string mint(const std::string& keys_dir, std::vector<std::string> claims, const std::string& audience = kTestAudience) {
  std::string out = mint_dev_token(keys_dir, claims, audience);
return trimmed(out);
}

std::string admin(const std::string& keys_dir, const std::string& audience = kTestAudience) {
  return mint(keys_dir, {"--role", "administrator", "--sub", "admin-1"}, audience);
}

HttpResponse get_with(HttpClient& c, const std::string& target, const std::string& authorization) {
  if (authorization.empty()) return c.get(target);
  return c.get(target, {{"Authorization", authorization}});
}

// Waits (bounded) until the server's log shows `text` `count` times: the
// SIGHUP is handled asynchronously.
bool log_shows(const ServerProcess& server, const std::string& text, size_t count) {
  for (int i = 0; i < 500; ++i) {
    std::string log = server.log();
    size_t seen = 0;
    for (size_t at = log.find(text); at != std::string::npos; at = log.find(text, at + 1)) ++seen;
    if (seen >= count) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

void copy_file(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string tmp = to + ".tmp";
  std::ofstream(tmp, std::ios::binary | std::ios::trunc) << text;
  std::filesystem::rename(tmp, to);
}

}  // namespace

TEST_CASE("espace token init writes a private key and a JWKS, and never replaces them", "[auth]") {
  TempDir tmp;
  std::string dir = tmp.path + "/keys";
  std::string err;
  REQUIRE(run_espace({"token", "init", "--dir", dir}, nullptr, &err) == 0);
  struct stat st {};
  REQUIRE(::stat((dir + "/dev-signing-key.pem").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  std::ifstream jwks_file(dir + "/jwks.json");
  std::string jwks((std::istreambuf_iterator<char>(jwks_file)), std::istreambuf_iterator<char>());
  rapidjson::Document doc;
  doc.Parse(jwks.c_str());
  REQUIRE_FALSE(doc.HasParseError());
  REQUIRE(doc["keys"].Size() == 1);
  CHECK(espace::testing::str(doc["keys"][0], "kty") == "EC");
  CHECK_FALSE(doc["keys"][0].HasMember("d"));
  std::ifstream key_before(dir + "/dev-signing-key.pem");
  std::string pem((std::istreambuf_iterator<char>(key_before)), std::istreambuf_iterator<char>());

  CHECK(run_espace({"token", "init", "--dir", dir}, nullptr, &err) == 1);
  CHECK(err.find("already exists") != std::string::npos);
  std::ifstream key_after(dir + "/dev-signing-key.pem");
  CHECK(std::string((std::istreambuf_iterator<char>(key_after)), std::istreambuf_iterator<char>()) == pem);

  std::string token = mint(dir, {"--role", "patient", "--fhir-user", "Patient/demo-claire-martin"});
  CHECK(std::count(token.begin(), token.end(), '.') == 2);
  CHECK(run_espace({"token", "mint", "--key", dir + "/dev-signing-key.pem", "--role", "open", "--sub", "x"}, nullptr,
                   &err) == 1);
  CHECK(run_espace({"token", "mint", "--role", "patient"}, nullptr, &err) == 2);
  CHECK(run_espace({"token", "frobnicate"}, nullptr, &err) == 2);
}

TEST_CASE("serve --auth jwt: 401 with WWW-Authenticate unless the token is ours", "[auth]") {
  TempDir tmp;
  std::string keys = tmp.path + "/keys", foreign = tmp.path + "/foreign";
  init_dev_keys(keys);
  init_dev_keys(foreign);
  ServerProcess server({"--auth", "jwt", "--jwks", keys + "/jwks.json", "--issuer", kTestIssuer, "--audience", kTestAudience});
  HttpClient c("127.0.0.1", server.port());

  HttpResponse r = get_with(c, "/Patient/demo-claire-martin", "");
  CHECK(r.status == 401);
  CHECK(r.header("WWW-Authenticate").rfind("Bearer realm=", 0) == 0);
  CHECK(espace::testing::str(espace::testing::json_of(r), "resourceType") == "OperationOutcome");
  // The CapabilityStatement is public (SMART discovery); a bad token on it is still refused below.
  r = get_with(c, "/metadata", "");
  CHECK(r.status == 200);
  CHECK(espace::testing::str(espace::testing::json_of(r), "resourceType") == "CapabilityStatement");
  CHECK(get_with(c, "/Patient", "").status == 401);

  for (const std::string& bad :
       {std::string("Bearer not-a-jwt"), "Bearer " + admin(foreign), "Bearer " + admin(keys, "https://elsewhere"),
        std::string("Basic YWRtaW46YWRtaW4=")}) {
    INFO(bad.substr(0, 12));
    r = get_with(c, "/metadata", bad);
    CHECK(r.status == 401);
    CHECK(r.header("WWW-Authenticate").find("Bearer") == 0);
  }
  r = get_with(c, "/metadata", "Bearer not-a-jwt");
  CHECK(r.header("WWW-Authenticate").find("error=\"invalid_token\"") != std::string::npos);
  // The refusal does not echo the token.
  std::string token = admin(foreign);
  r = get_with(c, "/metadata", "Bearer " + token);
  CHECK(r.body.find(token.substr(token.rfind('.') + 1)) == std::string::npos);

  r = get_with(c, "/metadata", "Bearer " + admin(keys));
  CHECK(r.status == 200);
  CHECK(espace::testing::str(espace::testing::json_of(r), "resourceType") == "CapabilityStatement");
}

TEST_CASE("serve --auth jwt: SIGHUP rotates the signing keys, keeping them when the new file is broken", "[auth]") {
  TempDir tmp;
  std::string old_keys = tmp.path + "/old", new_keys = tmp.path + "/new", served = tmp.path + "/served-jwks.json";
  init_dev_keys(old_keys);
  init_dev_keys(new_keys);
  copy_file(old_keys + "/jwks.json", served);
  ServerProcess server({"--auth", "jwt", "--jwks", served, "--issuer", kTestIssuer, "--audience", kTestAudience});
  HttpClient c("127.0.0.1", server.port());
  std::string old_token = "Bearer " + admin(old_keys), new_token = "Bearer " + admin(new_keys);
  CHECK(get_with(c, "/metadata", old_token).status == 200);
  CHECK(get_with(c, "/metadata", new_token).status == 401);

  copy_file(new_keys + "/jwks.json", served);
  REQUIRE(::kill(server.pid(), SIGHUP) == 0);
  REQUIRE(log_shows(server, "signing keys reloaded", 1));
  CHECK(get_with(c, "/metadata", new_token).status == 200);
  CHECK(get_with(c, "/metadata", old_token).status == 401);

  std::ofstream(served, std::ios::trunc) << "{\"keys\":";
  REQUIRE(::kill(server.pid(), SIGHUP) == 0);
  REQUIRE(log_shows(server, "signing keys not reloaded", 1));
  CHECK(get_with(c, "/metadata", new_token).status == 200);
  CHECK(server.running());
}
