// Who is calling: OAuth 2.0 bearer tokens (RFC 6750) that are JWTs
// (RFC 7519) signed with RS256 or ES256 (RFC 7518 section 3) by an
// authorization server we trust, whose public keys are a JWKS file
// (RFC 7517). The verified claims become a Caller (caller.h).
//
// Claims read (all optional unless said otherwise):
//   iss            required, one of AuthConfig::issuers
//   aud            required, a string or an array containing AuthConfig::audience
//   exp            required; nbf and iat checked when present (clock skew allowed)
//   sub            required: the account, for the audit trail
//   jti, client_id (else azp)
//   espace_role    our role claim: "patient", "legal-representative",
//                  "professional", "system", "administrator"
//   extensions.ihe_iua  (IHE ITI Internet User Authorization, the JWT IUA
//                  extension of ITI-71/ITI-72; profiled for a national record
//                  e.g. by CH EPR FHIR, fhir.ch/ig/ch-epr-fhir/iti-71.html):
//       subject_role   a Coding or a code; mapped to a Role by its code, see
//                      below. When espace_role is also present they must agree.
//       purpose_of_use a Coding, an array of one Coding, or a code (v3
//                      ActReason: TREAT, ETREAT, ...); the code is kept
//       national_provider_identifier  RPPS/ADELI number of the professional
//       subject_organization_id      FINESS/SIRET of the care structure
//       subject_name                 display name for the access history
//   fhirUser       SMART: "Practitioner/x", "Patient/y", "RelatedPerson/z"
//                  (an absolute URL ending in Type/id is reduced to Type/id)
//   patient        SMART launch context; for Role::Patient, the patient's id
//   scope          SMART App Launch 2.0 scopes, space separated:
//                  <patient|user|system>/<Type|*>.<cruds subset in order>;
//                  v1 forms .read/.write/.* map to rs/cud/cruds. Granular
//                  scopes with a query (?category=...) are not supported and
//                  are dropped (they grant nothing); other tokens such as
//                  openid, fhirUser, launch/patient are ignored.
//   espace_profession, espace_specialty   ANS TRE_G15 profession and
//                  TRE_R38 specialty codes ("10", "SM54")
//   espace_represented_patients  array of Patient ids (legal representatives)
//
// subject_role codes accepted (any code system; the codes of the Swiss EPR
// role value set urn:oid:2.16.756.5.30.1.127.3.10.6 and our own names):
// PAT|patient -> Patient, REP|legal-representative -> LegalRepresentative,
// HCP|professional -> Professional, TCU|system -> System,
// PADM|DADM|administrator -> Administrator. Anything else (the assistant ASS
// included) is refused: an unknown role never defaults.
//
// Consistency required of each role (else 401): Patient names its own id
// (patient, or fhirUser Patient/id; equal when both); LegalRepresentative
// names at least one represented patient; Professional names an RPPS or a
// fhirUser Practitioner/PractitionerRole. "open" and "anonymous" cannot be
// carried by a token.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "espace/fhir/status.h"
#include "espace/policy/caller.h"
#include "espace/policy/policy.h"

namespace espace::policy {

struct AuthConfig {
  std::string jwks_file;             // {"keys":[...]} with RSA (>= 2048 bits) and EC P-256 public keys
  std::vector<std::string> issuers;  // accepted `iss` values (at least one)
  std::string audience;              // required in `aud`
  int clock_skew_s = 60;             // tolerance on exp, nbf and iat
  // Seconds since the Unix epoch; empty means the system clock (tests inject one).
  std::function<int64_t()> clock;
};

// Verifies bearer tokens. authenticate() may run on many threads while
// reload() runs on another: each call sees one whole key set.
class Authenticator {
 public:
  // Reads the JWKS; Invalid (naming the file and the key) when it cannot be used.
  static fhir::Status create(const AuthConfig& config, std::unique_ptr<Authenticator>* out);
  ~Authenticator();

  // Re-reads the JWKS file. On failure the previous keys stay in use and the
  // Status says why. `serve` calls it on SIGHUP (net::Server::stop_on_signals'
  // on_hup callback), so keys rotate without a restart.
  fhir::Status reload();

  // Ok with *out filled, or Unauthorized with a reason that never quotes the
  // token. Issue message ids: auth-missing, auth-scheme, auth-malformed,
  // auth-algorithm, auth-unknown-key, auth-signature, auth-expired,
  // auth-not-yet-valid, auth-issuer, auth-audience, auth-claims.
  fhir::Status authenticate(const Credentials& credentials, Caller* out) const;

  // Number of keys in use (for the start-up log line).
  size_t key_count() const;

  // reload() on every Authenticator alive in the process: what SIGHUP means
  // (a process-wide signal), usable by `serve` without reaching into the
  // policy that owns the Authenticator. Ok when there is none; otherwise the
  // first failure, the others still reloaded.
  static fhir::Status reload_all();

  struct State;

 private:
  explicit Authenticator(const AuthConfig& config);
  std::unique_ptr<State> state_;
};

// One SMART scope: <patient|user|system>/<Type|*>.<c?r?u?d?s?> with the
// permissions in that order; the SMART 1.0 forms .read/.write/.* become
// rs / cud / cruds. False (with *why) for a malformed resource scope; true
// with *keep false for tokens that grant nothing here (openid, launch/...,
// granular scopes with a query).
bool parse_smart_scope(std::string_view text, Scope* scope, bool* keep, std::string* why);

// --- Token minting (demos, tests, `espace token`) ---

struct MintOptions {
  std::string key_file;   // PEM private key: EC P-256 signs ES256, RSA signs RS256
  std::string kid;        // empty: the key's RFC 7638 thumbprint (as in make_dev_keys' jwks.json)
  std::string issuer = "https://espace.example/dev-issuer";
  std::string audience = "espace";
  std::string subject;
  std::string role;       // espace_role value (see above); required
  std::string fhir_user;
  std::string patient;
  std::vector<std::string> represents;
  std::string national_id;   // -> extensions.ihe_iua.national_provider_identifier
  std::string profession;
  std::string specialty;
  std::string organization;  // -> extensions.ihe_iua.subject_organization_id
  std::string purpose;       // -> extensions.ihe_iua.purpose_of_use (v3 ActReason Coding)
  std::string scope;
  std::string name;          // -> extensions.ihe_iua.subject_name
  std::string client_id = "espace-token";
  int64_t ttl_s = 3600;
  int64_t now = 0;           // issue time; 0 = the system clock
};

fhir::Status mint_token(const MintOptions& options, std::string* jwt);

// Writes <dir>/dev-signing-key.pem (a fresh EC P-256 private key, mode 0600)
// and <dir>/jwks.json (its public key with kid = RFC 7638 thumbprint).
// Conflict when the key already exists: keys are never silently replaced.
fhir::Status make_dev_keys(const std::string& dir);

// Generates a key for `alg` ("ES256" or "RS256", 2048 bits), writes it as a
// PEM file (mode 0600) and returns its public JWK (a JSON object, with kid =
// thumbprint and alg) in *public_jwk.
fhir::Status make_signing_key(const std::string& alg, const std::string& pem_file, std::string* public_jwk);

// The lower layer, public for tests and tools.
namespace jwt {
std::string base64url_encode(std::string_view bytes);
// Strict: URL-safe alphabet, no padding, no whitespace, zero trailing bits.
bool base64url_decode(std::string_view text, std::string* bytes);
// Signs header.payload (both JSON texts, used verbatim) with the PEM key;
// the header's alg must match the key type.
fhir::Status sign(const std::string& header_json, const std::string& payload_json, const std::string& key_file,
                  std::string* token);
}  // namespace jwt

}  // namespace espace::policy
