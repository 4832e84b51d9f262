// Bearer JWT verification and the mapping of verified claims to a Caller.
// The claims and the refusals are documented in espace/policy/auth.h.
//
// Order matters: the JOSE header is parsed (bounded) to choose the key, the
// signature is checked over the raw header.payload, and only then are the
// claims read — nothing in an unauthenticated payload is interpreted.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <ctime>
#include <fstream>
#include <mutex>
#include <unordered_map>

#include "espace/policy/auth.h"
#include "jwt_internal.h"

namespace espace::policy {

using fhir::ErrorCategory;
using fhir::Status;

namespace {

constexpr size_t kMaxTokenBytes = 16u << 10;
constexpr size_t kMaxJwksBytes = 1u << 20;
constexpr size_t kMaxClaimChars = 256;
constexpr size_t kMaxScopes = 200;
constexpr size_t kMaxRepresented = 100;
// Tokens remembered as verified. A client sends the same token for many
// requests, and an ES256 verification costs more than serving a read.
constexpr size_t kMaxVerifiedTokens = 4096;

Status refuse(const char* message_id, const char* code, std::string why) {
  fhir::Issue issue;
  issue.code = code;
  issue.message_id = message_id;
  issue.diagnostics = "bearer token refused: " + why;
  return Status::error(ErrorCategory::Unauthorized, std::move(issue));
}
Status bad_claims(std::string why) { return refuse("auth-claims", "security", std::move(why)); }
Status malformed(std::string why) { return refuse("auth-malformed", "security", std::move(why)); }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// No control characters: claim values end up in the audit trail and logs.
bool printable(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7F; });
}

// FHIR id (R4 datatypes: [A-Za-z0-9\-\.]{1,64}).
bool is_fhir_id(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.';
  });
}

bool is_resource_type(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::isupper(static_cast<unsigned char>(s[0])) &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isalpha(static_cast<unsigned char>(c)); });
}

bool is_code(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

// A string claim: absent leaves *out empty; present must be a bounded printable string.
Status string_claim(const rapidjson::Value& obj, const char* name, std::string* out, const char* where = "") {
  out->clear();
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd()) return Status::ok();
  if (!it->value.IsString()) return bad_claims(std::string("claim ") + where + name + " must be a string");
  std::string_view v(it->value.GetString(), it->value.GetStringLength());
  if (v.size() > kMaxClaimChars || !printable(v))
    return bad_claims(std::string("claim ") + where + name + " is too long or holds control characters");
  *out = std::string(v);
  return Status::ok();
}

// A code given as a string, a Coding, or an array holding one Coding (IUA
// carries subject_role and purpose_of_use as Codings).
Status code_claim(const rapidjson::Value& obj, const char* name, std::string* code) {
  code->clear();
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd()) return Status::ok();
  const rapidjson::Value* v = &it->value;
  std::string what = std::string("claim extensions.ihe_iua.") + name;
  if (v->IsArray()) {
    if (v->Size() != 1) return bad_claims(what + " must hold exactly one code");
    v = &(*v)[0];
  }
  if (v->IsObject()) {
    if (Status s = string_claim(*v, "code", code, (std::string("extensions.ihe_iua.") + name + ".").c_str()); !s)
      return s;
  } else if (v->IsString()) {
    *code = std::string(v->GetString(), v->GetStringLength());
  } else {
    return bad_claims(what + " must be a code or a Coding");
  }
  if (!is_code(*code)) return bad_claims(what + " has no valid code");
  return Status::ok();
}

bool role_from_name(std::string_view name, Role* role) {
  static const struct {
    const char* name;
    Role role;
  } kRoles[] = {
      {"patient", Role::Patient},         {"legal-representative", Role::LegalRepresentative},
      {"professional", Role::Professional}, {"system", Role::System},
      {"administrator", Role::Administrator},
  };
  for (const auto& r : kRoles)
    if (name == r.name) {
      *role = r.role;
      return true;
    }
  return false;
}

// IUA subject_role codes: the Swiss EPR role codes (PAT, REP, HCP, TCU,
// PADM, DADM) and our own role names. The assistant (ASS) has no role here.
bool role_from_iua(std::string_view code, Role* role) {
  if (role_from_name(code, role)) return true;
  if (code == "PAT") *role = Role::Patient;
  else if (code == "REP") *role = Role::LegalRepresentative;
  else if (code == "HCP") *role = Role::Professional;
  else if (code == "TCU") *role = Role::System;
  else if (code == "PADM" || code == "DADM") *role = Role::Administrator;
  else return false;
  return true;
}

// fhirUser: "Type/id", or an absolute URL ending in Type/id.
bool normalize_fhir_user(std::string_view value, std::string* out) {
  if (value.rfind("https://", 0) == 0 || value.rfind("http://", 0) == 0) {
    size_t last = value.rfind('/');
    if (last == std::string_view::npos || last == 0) return false;
    size_t before = value.rfind('/', last - 1);
    if (before == std::string_view::npos) return false;
    value = value.substr(before + 1);
  }
  size_t slash = value.find('/');
  if (slash == std::string_view::npos || !is_resource_type(value.substr(0, slash)) ||
      !is_fhir_id(value.substr(slash + 1)))
    return false;
  *out = std::string(value);
  return true;
}

std::string_view type_of(std::string_view fhir_user) { return fhir_user.substr(0, fhir_user.find('/')); }
std::string_view id_of(std::string_view fhir_user) { return fhir_user.substr(fhir_user.find('/') + 1); }

}  // namespace

// SMART App Launch 2.0 (hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).
bool parse_smart_scope(std::string_view text, Scope* scope, bool* keep, std::string* why) {
  *keep = false;
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) return true;  // openid, fhirUser, offline_access, ...
  std::string_view context = text.substr(0, slash);
  if (context == "patient") scope->context = Scope::Context::Patient;
  else if (context == "user") scope->context = Scope::Context::User;
  else if (context == "system") scope->context = Scope::Context::System;
  else return true;  // launch/patient, launch/encounter, ...
  std::string_view rest = text.substr(slash + 1);
  if (rest.find('?') != std::string_view::npos) return true;  // granular: unsupported, so not granted
  size_t dot = rest.find('.');
  if (dot == std::string_view::npos) {
    *why = "scope without permissions";
    return false;
  }
  std::string_view type = rest.substr(0, dot);
  std::string_view perms = rest.substr(dot + 1);
  if (type != "*" && !is_resource_type(type)) {
    *why = "scope with an invalid resource type";
    return false;
  }
  std::string permissions;
  if (perms == "read") permissions = "rs";
  else if (perms == "write") permissions = "cud";
  else if (perms == "*") permissions = "cruds";
  else {
    static constexpr std::string_view kOrder = "cruds";
    size_t next = 0;
    for (char c : perms) {
      size_t at = kOrder.find(c, next);
      if (at == std::string_view::npos) {
        *why = "scope permissions must be a subset of c, r, u, d, s in that order";
        return false;
      }
      next = at + 1;
    }
    if (perms.empty()) {
      *why = "scope without permissions";
      return false;
    }
    permissions = std::string(perms);
  }
  scope->type = std::string(type);
  scope->permissions = std::move(permissions);
  *keep = true;
  return true;
}

struct Authenticator::State {
  AuthConfig config;
  mutable std::mutex mutex;
  std::shared_ptr<const std::vector<jwt::PublicKey>> keys;

  // A token whose signature and claims passed, with the times that must be
  // checked again on every use. Valid only with the key set that verified it
  // (reload() replaces the set, so a rotated-out key's tokens are re-checked).
  struct Verified {
    std::shared_ptr<const std::vector<jwt::PublicKey>> keys;
    Caller caller;  // without remote_address, which belongs to the request
    double exp = 0;
    bool has_nbf = false, has_iat = false;
    double nbf = 0, iat = 0;
  };
  mutable std::mutex verified_mutex;
  mutable std::unordered_map<std::string, Verified> verified;

  std::shared_ptr<const std::vector<jwt::PublicKey>> snapshot() const {
    std::lock_guard<std::mutex> lock(mutex);
    return keys;
  }
  int64_t now() const { return config.clock ? config.clock() : int64_t(std::time(nullptr)); }
  Status claims_to_caller(const rapidjson::Document& claims, Caller* out) const;
};

namespace {

Status read_jwks(const std::string& path, std::vector<jwt::PublicKey>* keys) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::error(ErrorCategory::Invalid, "not-found", "cannot read the JWKS file " + path);
  std::string text;
  text.resize(kMaxJwksBytes + 1);
  f.read(text.data(), std::streamsize(text.size()));
  text.resize(size_t(f.gcount()));
  if (text.size() > kMaxJwksBytes)
    return Status::error(ErrorCategory::Invalid, "too-costly", "the JWKS file " + path + " is larger than 1 MiB");
  Status s = jwt::parse_jwks(text, keys);
  if (!s) {
    for (auto& issue : s.issues()) issue.diagnostics = path + ": " + issue.diagnostics;
  }
  return s;
}

// NumericDate (RFC 7519 section 2): a JSON number of seconds, possibly fractional.
Status numeric_date(const rapidjson::Value& claims, const char* name, bool required, bool* present, double* out) {
  *present = false;
  auto it = claims.FindMember(name);
  if (it == claims.MemberEnd()) {
    if (required) return bad_claims(std::string("claim ") + name + " is required");
    return Status::ok();
  }
  if (!it->value.IsNumber()) return bad_claims(std::string("claim ") + name + " must be a number of seconds");
  *out = it->value.GetDouble();
  if (!std::isfinite(*out)) return bad_claims(std::string("claim ") + name + " is not a finite number");
  *present = true;
  return Status::ok();
}

}  // namespace

namespace {

// The live Authenticators, for reload_all(). Lock order: this mutex, then
// an Authenticator's own (authenticate() takes only the latter).
std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::vector<Authenticator*>& registry() {
  static std::vector<Authenticator*> live;
  return live;
}

}  // namespace

Authenticator::Authenticator(const AuthConfig& config) : state_(std::make_unique<State>()) {
  state_->config = config;
  std::lock_guard<std::mutex> lock(registry_mutex());
  registry().push_back(this);
}

Authenticator::~Authenticator() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto& live = registry();
  live.erase(std::remove(live.begin(), live.end(), this), live.end());
}

Status Authenticator::reload_all() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  Status first;
  for (Authenticator* a : registry()) {
    // Keys from a failed create() never served a request: skip them.
    if (!a->state_->snapshot()) continue;
    Status s = a->reload();
    if (!s && first) first = std::move(s);
  }
  return first;
}

Status Authenticator::create(const AuthConfig& config, std::unique_ptr<Authenticator>* out) {
  if (config.issuers.empty()) return Status::error(ErrorCategory::Invalid, "required", "no trusted issuer configured");
  for (const std::string& iss : config.issuers)
    if (iss.empty()) return Status::error(ErrorCategory::Invalid, "invalid", "an empty issuer was configured");
  if (config.audience.empty()) return Status::error(ErrorCategory::Invalid, "required", "no audience configured");
  if (config.clock_skew_s < 0 || config.clock_skew_s > 600)
    return Status::error(ErrorCategory::Invalid, "invalid", "clock skew must be between 0 and 600 seconds");
  std::unique_ptr<Authenticator> a(new Authenticator(config));
  if (Status s = a->reload(); !s) return s;
  *out = std::move(a);
  return Status::ok();
}

Status Authenticator::reload() {
  std::vector<jwt::PublicKey> keys;
  if (Status s = read_jwks(state_->config.jwks_file, &keys); !s) {
    if (state_->snapshot())
      for (auto& issue : s.issues()) issue.diagnostics += " (the previous keys stay in use)";
    return s;
  }
  auto fresh = std::make_shared<const std::vector<jwt::PublicKey>>(std::move(keys));
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->keys = std::move(fresh);
  }
  std::lock_guard<std::mutex> lock(state_->verified_mutex);
  state_->verified.clear();
  return Status::ok();
}

size_t Authenticator::key_count() const {
  auto keys = state_->snapshot();
  return keys ? keys->size() : 0;
}

Status Authenticator::authenticate(const Credentials& credentials, Caller* out) const {
  std::string_view header = credentials.authorization;
  if (header.empty())
    return refuse("auth-missing", "login", "no credentials; send Authorization: Bearer <token> (RFC 6750)");
  size_t space = header.find(' ');
  if (space == std::string_view::npos || !iequals(header.substr(0, space), "Bearer"))
    return refuse("auth-scheme", "login", "only the Bearer authorization scheme is accepted (RFC 6750)");
  std::string_view token = header.substr(space);
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  if (token.empty()) return malformed("empty bearer token");
  if (token.size() > kMaxTokenBytes) return malformed("token longer than 16 KiB");
  const AuthConfig& config = state_->config;
  const double skew = double(config.clock_skew_s);
  {
    auto keys_now = state_->snapshot();
    std::lock_guard<std::mutex> lock(state_->verified_mutex);
    auto hit = state_->verified.find(std::string(token));
    if (hit != state_->verified.end() && hit->second.keys == keys_now) {
      const State::Verified& v = hit->second;
      const double now = double(state_->now());
      // The same time checks, in the same order, as a first verification.
      if (!(now < v.exp + skew)) return refuse("auth-expired", "expired", "the token has expired (exp)");
      if (v.has_nbf && now + skew < v.nbf)
        return refuse("auth-not-yet-valid", "security", "the token is not valid yet (nbf)");
      if (v.has_iat && now + skew < v.iat)
        return refuse("auth-not-yet-valid", "security", "the token was issued in the future (iat)");
      *out = v.caller;
      out->remote_address = credentials.remote_address;
      return Status::ok();
    }
  }

  // JWS compact serialization: three base64url parts (RFC 7515 section 7.1).
  size_t dot1 = token.find('.');
  size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos)
    return malformed("not a JWS in compact form (three dot-separated parts)");
  std::string_view header_b64 = token.substr(0, dot1);
  std::string_view payload_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
  std::string_view signature_b64 = token.substr(dot2 + 1);
  std::string header_json, payload_json, signature;
  if (header_b64.empty() || !jwt::base64url_decode(header_b64, &header_json))
    return malformed("the JOSE header is not base64url");
  if (payload_b64.empty() || !jwt::base64url_decode(payload_b64, &payload_json))
    return malformed("the payload is not base64url");
  if (!jwt::base64url_decode(signature_b64, &signature)) return malformed("the signature is not base64url");

  rapidjson::Document jose;
  std::string why;
  if (!jwt::parse_json(header_json, 2, &jose, &why)) return malformed("JOSE header: " + why);
  if (!jose.IsObject()) return malformed("the JOSE header is not a JSON object");
  auto alg_it = jose.FindMember("alg");
  if (alg_it == jose.MemberEnd() || !alg_it->value.IsString()) return malformed("the JOSE header has no alg");
  std::string_view alg(alg_it->value.GetString(), alg_it->value.GetStringLength());
  if (alg == "none" || iequals(alg, "none"))
    return refuse("auth-algorithm", "security", "unsigned tokens (alg none) are not accepted");
  jwt::KeyType wanted;
  if (alg == "RS256") wanted = jwt::KeyType::Rsa;
  else if (alg == "ES256") wanted = jwt::KeyType::Ec;
  else return refuse("auth-algorithm", "security", "only RS256 and ES256 signatures are accepted");
  // RFC 7515 section 4.1.11: extensions we would have to understand.
  if (jose.HasMember("crit")) return malformed("critical JOSE header extensions are not supported");
  if (auto typ = jose.FindMember("typ"); typ != jose.MemberEnd()) {
    std::string_view t = typ->value.IsString() ? std::string_view(typ->value.GetString()) : std::string_view();
    if (!iequals(t, "JWT") && !iequals(t, "at+jwt") && !iequals(t, "application/at+jwt"))
      return malformed("the token type (typ) is not a JWT");
  }
  // Keys named inside the token (jwk, jku, x5u, x5c) are ignored: only the
  // configured key set is trusted.
  auto kid_it = jose.FindMember("kid");
  if (kid_it != jose.MemberEnd() && !kid_it->value.IsString()) return malformed("kid must be a string");

  auto keys = state_->snapshot();
  if (!keys) return refuse("auth-unknown-key", "security", "no trusted keys are loaded");
  std::string_view signing_input = token.substr(0, dot2);
  bool verified = false;
  if (kid_it != jose.MemberEnd()) {
    std::string_view kid(kid_it->value.GetString(), kid_it->value.GetStringLength());
    const jwt::PublicKey* key = nullptr;
    for (const auto& k : *keys)
      if (!k.kid.empty() && k.kid == kid) key = &k;
    if (!key) return refuse("auth-unknown-key", "security", "the key id (kid) names no trusted key");
    if (key->type != wanted)
      return refuse("auth-algorithm", "security",
                    std::string("alg ") + std::string(alg) + " does not match the type of the key named by kid");
    verified = jwt::verify(*key, signing_input, signature);
  } else {
    for (const auto& k : *keys)
      if (k.type == wanted && jwt::verify(k, signing_input, signature)) {
        verified = true;
        break;
      }
  }
  if (!verified) return refuse("auth-signature", "security", "the signature does not verify with a trusted key");

  rapidjson::Document claims;
  if (!jwt::parse_json(payload_json, 8, &claims, &why)) return malformed("claims: " + why);
  if (!claims.IsObject()) return malformed("the claims are not a JSON object");

  std::string iss;
  if (Status s = string_claim(claims, "iss", &iss); !s) return s;
  if (iss.empty()) return refuse("auth-issuer", "security", "claim iss is required");
  if (std::find(config.issuers.begin(), config.issuers.end(), iss) == config.issuers.end())
    return refuse("auth-issuer", "security", "the issuer (iss) is not trusted");

  bool audience_ok = false;
  auto aud = claims.FindMember("aud");
  if (aud == claims.MemberEnd()) return refuse("auth-audience", "security", "claim aud is required");
  if (aud->value.IsString()) {
    audience_ok = config.audience == aud->value.GetString();
  } else if (aud->value.IsArray()) {
    for (const auto& a : aud->value.GetArray()) {
      if (!a.IsString()) return refuse("auth-audience", "security", "claim aud must hold strings");
      if (config.audience == a.GetString()) audience_ok = true;
    }
  } else {
    return refuse("auth-audience", "security", "claim aud must be a string or an array of strings");
  }
  if (!audience_ok) return refuse("auth-audience", "security", "the token is not meant for this server (aud)");

  const double now = double(state_->now());
  State::Verified token_times;
  bool present = false;
  if (Status s = numeric_date(claims, "exp", true, &present, &token_times.exp); !s) return s;
  if (!(now < token_times.exp + skew)) return refuse("auth-expired", "expired", "the token has expired (exp)");
  if (Status s = numeric_date(claims, "nbf", false, &token_times.has_nbf, &token_times.nbf); !s) return s;
  if (token_times.has_nbf && now + skew < token_times.nbf)
    return refuse("auth-not-yet-valid", "security", "the token is not valid yet (nbf)");
  if (Status s = numeric_date(claims, "iat", false, &token_times.has_iat, &token_times.iat); !s) return s;
  if (token_times.has_iat && now + skew < token_times.iat)
    return refuse("auth-not-yet-valid", "security", "the token was issued in the future (iat)");

  Caller caller;
  caller.issuer = iss;
  if (Status s = state_->claims_to_caller(claims, &caller); !s) return s;
  caller.authenticated = true;
  token_times.keys = std::move(keys);
  token_times.caller = caller;
  {
    std::lock_guard<std::mutex> lock(state_->verified_mutex);
    // Bounded: when full, start over rather than track ages.
    if (state_->verified.size() >= kMaxVerifiedTokens) state_->verified.clear();
    state_->verified.insert_or_assign(std::string(token), std::move(token_times));
  }
  caller.remote_address = credentials.remote_address;
  *out = std::move(caller);
  return Status::ok();
}

Status Authenticator::State::claims_to_caller(const rapidjson::Document& claims, Caller* c) const {
  if (Status s = string_claim(claims, "sub", &c->subject); !s) return s;
  if (c->subject.empty()) return bad_claims("claim sub is required");
  if (Status s = string_claim(claims, "jti", &c->token_id); !s) return s;
  if (Status s = string_claim(claims, "client_id", &c->client_id); !s) return s;
  if (c->client_id.empty())
    if (Status s = string_claim(claims, "azp", &c->client_id); !s) return s;

  static const rapidjson::Value kEmptyObject(rapidjson::kObjectType);
  const rapidjson::Value* iua = &kEmptyObject;
  if (auto ext = claims.FindMember("extensions"); ext != claims.MemberEnd()) {
    if (!ext->value.IsObject()) return bad_claims("claim extensions must be an object");
    if (auto i = ext->value.FindMember("ihe_iua"); i != ext->value.MemberEnd()) {
      if (!i->value.IsObject()) return bad_claims("claim extensions.ihe_iua must be an object");
      iua = &i->value;
    }
  }

  // Role: ours or IUA's; both must agree when both are given.
  std::string role_name_claim, iua_role;
  if (Status s = string_claim(claims, "espace_role", &role_name_claim); !s) return s;
  if (Status s = code_claim(*iua, "subject_role", &iua_role); !s) return s;
  Role role = Role::Anonymous;
  if (!role_name_claim.empty() && !role_from_name(role_name_claim, &role))
    return bad_claims("claim espace_role is not a known role");
  if (!iua_role.empty()) {
    Role from_iua;
    if (!role_from_iua(iua_role, &from_iua)) return bad_claims("claim extensions.ihe_iua.subject_role is not a known role");
    if (!role_name_claim.empty() && from_iua != role)
      return bad_claims("claims espace_role and extensions.ihe_iua.subject_role disagree");
    role = from_iua;
  }
  if (role == Role::Anonymous) return bad_claims("the token names no role (espace_role or extensions.ihe_iua.subject_role)");
  c->role = role;

  std::string fhir_user;
  if (Status s = string_claim(claims, "fhirUser", &fhir_user); !s) return s;
  if (!fhir_user.empty() && !normalize_fhir_user(fhir_user, &c->fhir_user))
    return bad_claims("claim fhirUser is not a FHIR resource reference (Type/id)");
  if (Status s = string_claim(claims, "patient", &c->patient_id); !s) return s;
  if (!c->patient_id.empty() && !is_fhir_id(c->patient_id)) return bad_claims("claim patient is not a FHIR id");

  if (auto rep = claims.FindMember("espace_represented_patients"); rep != claims.MemberEnd()) {
    if (!rep->value.IsArray() || rep->value.Size() > kMaxRepresented)
      return bad_claims("claim espace_represented_patients must be an array of at most 100 Patient ids");
    for (const auto& id : rep->value.GetArray()) {
      if (!id.IsString() || !is_fhir_id(id.GetString()))
        return bad_claims("claim espace_represented_patients holds something other than a Patient id");
      std::string v = id.GetString();
      if (std::find(c->represented_patients.begin(), c->represented_patients.end(), v) == c->represented_patients.end())
        c->represented_patients.push_back(std::move(v));
    }
  }

  if (Status s = string_claim(*iua, "national_provider_identifier", &c->national_id, "extensions.ihe_iua."); !s)
    return s;
  if (!c->national_id.empty() && (c->national_id.size() > 32 || !is_code(c->national_id)))
    return bad_claims("claim extensions.ihe_iua.national_provider_identifier is not an identifier");
  if (Status s = string_claim(*iua, "subject_organization_id", &c->organization_id, "extensions.ihe_iua."); !s)
    return s;
  if (Status s = string_claim(*iua, "subject_name", &c->display_name, "extensions.ihe_iua."); !s) return s;
  if (Status s = code_claim(*iua, "purpose_of_use", &c->purpose_of_use); !s) return s;
  if (Status s = string_claim(claims, "espace_profession", &c->profession_code); !s) return s;
  if (!c->profession_code.empty() && !is_code(c->profession_code))
    return bad_claims("claim espace_profession is not a code");
  if (Status s = string_claim(claims, "espace_specialty", &c->specialty_code); !s) return s;
  if (!c->specialty_code.empty() && !is_code(c->specialty_code))
    return bad_claims("claim espace_specialty is not a code");

  if (auto sc = claims.FindMember("scope"); sc != claims.MemberEnd()) {
    if (!sc->value.IsString()) return bad_claims("claim scope must be a space-separated string");
    std::string_view all(sc->value.GetString(), sc->value.GetStringLength());
    size_t pos = 0;
    while (pos < all.size()) {
      size_t end = all.find(' ', pos);
      if (end == std::string_view::npos) end = all.size();
      std::string_view one = all.substr(pos, end - pos);
      pos = end + 1;
      if (one.empty()) continue;
      Scope scope;
      bool keep = false;
      std::string why;
      if (!parse_smart_scope(one, &scope, &keep, &why)) return bad_claims("claim scope: " + why);
      if (!keep) continue;
      if (c->scopes.size() >= kMaxScopes) return bad_claims("claim scope holds more than 200 scopes");
      c->scopes.push_back(std::move(scope));
    }
  }

  // What each role must name so that the rules can rely on it.
  std::string_view user_type = type_of(c->fhir_user);
  switch (role) {
    case Role::Patient:
      if (!c->fhir_user.empty()) {
        if (user_type != "Patient") return bad_claims("a patient's fhirUser must be a Patient");
        if (c->patient_id.empty()) c->patient_id = std::string(id_of(c->fhir_user));
        else if (c->patient_id != id_of(c->fhir_user))
          return bad_claims("claims patient and fhirUser name different patients");
      }
      if (c->patient_id.empty()) return bad_claims("a patient token must name the patient (patient or fhirUser)");
      break;
    case Role::LegalRepresentative:
      if (c->represented_patients.empty())
        return bad_claims("a legal representative's token must list espace_represented_patients");
      if (!c->fhir_user.empty() && user_type != "RelatedPerson" && user_type != "Patient")
        return bad_claims("a legal representative's fhirUser must be a RelatedPerson or a Patient");
      break;
    case Role::Professional:
      if (!c->fhir_user.empty() && user_type != "Practitioner" && user_type != "PractitionerRole")
        return bad_claims("a professional's fhirUser must be a Practitioner or a PractitionerRole");
      if (c->fhir_user.empty() && c->national_id.empty())
        return bad_claims("a professional's token must carry an RPPS number or a Practitioner fhirUser");
      break;
    default: break;
  }
  return Status::ok();
}

}  // namespace espace::policy
