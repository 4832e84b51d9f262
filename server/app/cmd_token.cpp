// `espace token`: development keys and bearer tokens for demos and tests.
//   espace token init --dir var/dev-keys
//   espace token mint --key var/dev-keys/dev-signing-key.pem --role professional --sub ... [claims]
// The printed token is a credential: it is written to stdout only.
#include <cstdio>
#include <string>
#include <vector>

#include "commands.h"
#include "espace/policy/auth.h"
#include "options.h"

namespace espace::app {

namespace {

void usage(FILE* out) {
  std::fputs(
      "usage: espace token init [--dir DIR]\n"
      "         writes DIR/dev-signing-key.pem (EC P-256 private key, mode 0600) and DIR/jwks.json\n"
      "         (its public key) for `espace serve --auth jwt --jwks DIR/jwks.json`; DIR defaults to\n"
      "         var/dev-keys; an existing key is never replaced\n"
      "       espace token mint --key PEM --role ROLE [options]\n"
      "         prints a signed JWT (ES256 for an EC key, RS256 for an RSA key)\n"
      "  --role ROLE            patient | legal-representative | professional | system | administrator\n"
      "  --sub ID               the account (default: --fhir-user, else --patient)\n"
      "  --fhir-user REF        SMART fhirUser, e.g. Practitioner/demo-dr-bernard or Patient/demo-claire-martin\n"
      "  --patient ID           SMART patient context (the patient's own id for --role patient)\n"
      "  --represents ID,ID     patients a legal representative acts for\n"
      "  --rpps N               IUA national_provider_identifier (RPPS)\n"
      "  --profession CODE      ANS TRE_G15 profession (10 médecin, 21 pharmacien, 60 infirmier, ...)\n"
      "  --specialty CODE       ANS TRE_R38 specialty (SM54 médecine générale, ...)\n"
      "  --organization ID      IUA subject_organization_id (FINESS, ...)\n"
      "  --purpose CODE         IUA purpose_of_use (TREAT, ETREAT, PATRQT, ...)\n"
      "  --scope TEXT           SMART scopes, e.g. \"user/*.cruds\"\n"
      "  --name TEXT            IUA subject_name, shown in the patient's access history\n"
      "  --issuer URL           iss (default https://espace.example/dev-issuer)\n"
      "  --audience TEXT        aud (default espace)\n"
      "  --ttl SECONDS          lifetime (default 3600, at most 7 days)\n"
      "  --kid ID               key id (default: the key's RFC 7638 thumbprint, as in jwks.json)\n"
      "  --client-id ID         client_id (default espace-token)\n",
      out);
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    if (comma > pos) out.push_back(text.substr(pos, comma - pos));
    pos = comma + 1;
  }
  return out;
}

int token_init(int argc, char** argv) {
  Options o;
  std::string err;
  if (!o.parse(argc, argv, {"dir"}, {}, &err) || !o.positional().empty()) {
    if (!err.empty()) std::fprintf(stderr, "espace token init: %s\n", err.c_str());
    usage(stderr);
    return 2;
  }
  std::string dir = o.get_or("dir", "var/dev-keys");
  if (fhir::Status s = policy::make_dev_keys(dir); !s) {
    std::fprintf(stderr, "espace token init: %s\n", s.message().c_str());
    return 1;
  }
  std::fprintf(stderr, "espace token init: wrote %s/dev-signing-key.pem and %s/jwks.json\n", dir.c_str(),
               dir.c_str());
  return 0;
}

int token_mint(int argc, char** argv) {
  Options o;
  std::string err;
  if (!o.parse(argc, argv,
               {"key", "role", "sub", "fhir-user", "patient", "represents", "rpps", "profession", "specialty",
                "organization", "purpose", "scope", "name", "issuer", "audience", "ttl", "kid", "client-id"},
               {}, &err) ||
      !o.positional().empty()) {
    if (!err.empty()) std::fprintf(stderr, "espace token mint: %s\n", err.c_str());
    usage(stderr);
    return 2;
  }
  policy::MintOptions m;
  m.key_file = o.get_or("key", "");
  m.role = o.get_or("role", "");
  if (m.key_file.empty() || m.role.empty()) {
    std::fprintf(stderr, "espace token mint: --key and --role are required\n");
    usage(stderr);
    return 2;
  }
  int64_t ttl = 0;
  if (!o.get_int("ttl", 3600, 1, 7 * 24 * 3600, &ttl, &err)) {
    std::fprintf(stderr, "espace token mint: %s\n", err.c_str());
    return 2;
  }
  m.ttl_s = ttl;
  m.fhir_user = o.get_or("fhir-user", "");
  m.patient = o.get_or("patient", "");
  m.subject = o.get_or("sub", !m.fhir_user.empty() ? m.fhir_user : m.patient);
  m.represents = split_list(o.get_or("represents", ""));
  m.national_id = o.get_or("rpps", "");
  m.profession = o.get_or("profession", "");
  m.specialty = o.get_or("specialty", "");
  m.organization = o.get_or("organization", "");
  m.purpose = o.get_or("purpose", "");
  m.scope = o.get_or("scope", "");
  m.name = o.get_or("name", "");
  m.issuer = o.get_or("issuer", m.issuer);
  m.audience = o.get_or("audience", m.audience);
  m.kid = o.get_or("kid", "");
  m.client_id = o.get_or("client-id", m.client_id);
  std::string token;
  if (fhir::Status s = policy::mint_token(m, &token); !s) {
    std::fprintf(stderr, "espace token mint: %s\n", s.message().c_str());
    return 1;
  }
  std::printf("%s\n", token.c_str());
  return 0;
}

}  // namespace

int cmd_token(int argc, char** argv) {
  std::string sub = argc >= 2 ? argv[1] : "";
  if (sub == "init") return token_init(argc - 1, argv + 1);
  if (sub == "mint") return token_mint(argc - 1, argv + 1);
  if (sub == "--help" || sub == "-h" || sub == "help") {
    usage(stdout);
    return 0;
  }
  if (!sub.empty()) std::fprintf(stderr, "espace token: unknown subcommand '%s'\n", sub.c_str());
  usage(stderr);
  return 2;
}

}  // namespace espace::app
