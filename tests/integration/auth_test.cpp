// Bearer tokens end to end: `espace token init/mint`.
#include <signal.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "http_client.h"
#include "json_checks.h"
#include "server_process.h"

using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::run_espace;
using espace::testing::ServerProcess;

namespace {

const std::string kIssuer = "https://idp.espace.example";
const std::string kAudience = "https://espace.example/fhir";

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
std::string mint(const std::string& keys_dir, std::vector<std::string> claims, const std::string& audience = kAudience) {
  std::vector<std::string> args = {"token", "mint", "--key", keys_dir + "/dev-signing-key.pem", "--issuer", kIssuer,
                                   "--audience", audience};
  args.insert(args.end(), claims.begin(), claims.end());
  std::string out, err;
  int rc = run_espace(args, &out, &err);
  INFO(err);
  REQUIRE(rc == 0);
  return trimmed(out);
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
