// Bearer tokens for integration tests: a server started with
// `--auth jwt --jwks KEYS/dev-jwks.json --issuer kTestIssuer --audience
// kTestAudience` accepts what mint_dev_token signs with the development key
// that `espace token init --dir KEYS` wrote.
#pragma once

#include <string>
#include <vector>

namespace espace::testing {

inline const std::string kTestIssuer = "https://idp.espace.example";
inline const std::string kTestAudience = "https://espace.example/fhir";

// Runs `espace token init --dir keys_dir`; fails the test if it cannot.
void init_dev_keys(const std::string& keys_dir);

// `espace token mint` with the key of `keys_dir`, kTestIssuer, `audience` and
// the given claim flags (e.g. {"--role", "patient", "--fhir-user", "Patient/p1"});
// the token without its line end. Fails the test (with espace's message) if
// minting fails.
std::string mint_dev_token(const std::string& keys_dir, const std::vector<std::string>& claim_flags,
                           const std::string& audience = kTestAudience);

}  // namespace espace::testing
