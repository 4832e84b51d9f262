// Who may do what. Every FHIR request passes through the Policy before its
// interaction runs (deny by default: `serve` refuses to start without one).
//
// The request flow (http/fhir_api.cpp):
//   authenticate(credentials)          -> Caller, or 401
//   begin(caller, request, services)   -> a RequestGuard, or 403 (request-level rules)
//   dispatch(guard->services(), req)   -> the interaction sees the storage only
//                                         through the guard: the one enforcement
//                                         point every stored resource passes
//   audit.record(caller, req, status, guard->record())   -> durable before the response
//
// Names of the rules, their data files and the status codes chosen are
// documented in server/policy/README.md.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "espace/fhir/status.h"
#include "espace/interactions/api.h"
#include "espace/policy/caller.h"

namespace espace::policy {

// What the http layer knows of the caller's credentials.
struct Credentials {
  std::string authorization;   // the Authorization header, verbatim (empty when absent)
  std::string remote_address;
};

// What one request touched and why it was allowed or refused: the substance
// of its AuditEvent.
struct AccessRecord {
  std::vector<std::string> patients;    // Patient ids whose data was read or written
  std::vector<std::string> resources;   // "Type/id/_history/v" of what was returned or written
  std::vector<std::string> rules;       // names of the rules that decided (e.g. "GRANT", "GP", "MASKED")
  bool break_glass = false;             // access under ETREAT without a grant
  size_t hidden = 0;                    // resources withheld by the rules
};

// The per-request view of the storage under the rules.
class RequestGuard {
 public:
  virtual ~RequestGuard() = default;
  // The services the interaction must run with (its store is the guarded one).
  virtual const interactions::Services& services() const = 0;
  // Filled while the interaction runs; read after it returns.
  virtual const AccessRecord& record() const = 0;
};

class Policy {
 public:
  virtual ~Policy() = default;
  // Ok with *out filled, or Unauthorized (401) with the reason (missing,
  // malformed, expired, untrusted token). Never inspects the request body.
  virtual fhir::Status authenticate(const Credentials& credentials, Caller* out) const = 0;
  // Request-level rules (role, purpose of use, scopes, ...): Forbidden (403)
  // with the rule's name in the diagnostics, or Ok with *out set. `base`
  // outlives the guard.
  virtual fhir::Status begin(const Caller& caller, const interactions::FhirRequest& request,
                             const interactions::Services& base, std::unique_ptr<RequestGuard>* out) const = 0;
  virtual const char* name() const = 0;
};

// Allows everything: chosen explicitly with `--auth none`. Callers are
// Role::Open; the guard passes the storage through unchanged.
std::unique_ptr<Policy> make_open_policy();

// Writes one AuditEvent per request. Implemented in audit.h.
class AuditTrail {
 public:
  virtual ~AuditTrail() = default;
  // Durable when it returns Ok (the response is only sent after it). `status`
  // is the HTTP status the response will carry.
  virtual fhir::Status record(const Caller& caller, const interactions::FhirRequest& request, int status,
                              const AccessRecord& access) = 0;
  // record() without waiting: the record is built before this returns, and
  // `done` gets record()'s result once it is durable or has failed, on
  // another thread or on this one. The default calls record(), then `done`.
  virtual void record_then(const Caller& caller, const interactions::FhirRequest& request, int status,
                           const AccessRecord& access, std::function<void(fhir::Status)> done) {
    done(record(caller, request, status, access));
  }
  // True when record() appends, and waits for the flush of, a write to
  // `store` itself: the request's own writes to it may then skip their flush
  // wait (storage::DeferFlushToNextWrite), the record's flush covering them.
  virtual bool flushes_writes_of(const storage::Storage& /*store*/) const { return false; }
};

}  // namespace espace::policy
