#include "dev_tokens.h"

#include <catch2/catch.hpp>

#include "server_process.h"

namespace espace::testing {

void init_dev_keys(const std::string& keys_dir) {
  std::string err;
  int rc = run_espace({"token", "init", "--dir", keys_dir}, nullptr, &err);
  INFO(err);
  REQUIRE(rc == 0);
}

std::string mint_dev_token(const std::string& keys_dir, const std::vector<std::string>& claim_flags,
                           const std::string& audience) {
  std::vector<std::string> args = {"token",  "mint",      "--key",    keys_dir + "/dev-signing-key.pem",
                                   "--issuer", kTestIssuer, "--audience", audience};
  args.insert(args.end(), claim_flags.begin(), claim_flags.end());
  std::string out, err;
  int rc = run_espace(args, &out, &err);
  INFO(err);
  REQUIRE(rc == 0);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

}  // namespace espace::testing
