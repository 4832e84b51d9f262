// The FHIR REST API over HTTP: routing, content negotiation, body parsing,
// policy, dispatch to the interactions, and rendering of the response.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "espace/http/message.h"
#include "espace/interactions/api.h"
#include "espace/interactions/bulk_export.h"
#include "espace/policy/policy.h"

namespace espace::http {

class WorkerPool;

struct ApiOptions {
  // Base URL used in Location headers and Bundle links. Empty: derived from
  // the Host header of each request ("http://" + host).
  std::string base_url;
  size_t max_body_bytes = 64u << 20;  // after decompression
  int max_json_depth = 64;
};

class FhirApi {
 public:
  // services, policy and pool must outlive the FhirApi.
  FhirApi(const interactions::Services& services, const policy::Policy& policy, WorkerPool& pool,
          ApiOptions options);

  ~FhirApi();

  // The net::Server handler: runs the request on the worker pool. With an
  // audit trail the worker does not wait for the record's flush: the
  // response goes out from the thread that learns it is durable.
  void handle(Request&& request, Responder respond);
  // The same on the calling thread, waiting for the audit record (tests).
  Response handle_now(const Request& request) const;
  // Waits until every response held back for its audit record has been
  // handed to its Responder. Call after the worker pool has shut down and
  // before the net::Server goes; the destructor does it too.
  void finish_held_responses();

  // Every request then writes an AuditEvent before its response is sent.
  // Null (the default): no audit trail. `audit` must outlive the FhirApi.
  void set_audit_trail(policy::AuditTrail* audit) { audit_ = audit; }
  // Bulk Data $export kick-offs, status and file URLs go to `jobs`. Null (the
  // default): $export answers not-supported. `jobs` must outlive the FhirApi.
  void set_export_jobs(interactions::ExportJobs* jobs) { export_ = jobs; }

 private:
  struct HeldResponse;  // a response waiting for its audit record (fhir_api.cpp)
  Response handle_request(const Request& request, HeldResponse* held) const;

  const interactions::Services& services_;
  const policy::Policy& policy_;
  WorkerPool& pool_;
  ApiOptions options_;
  policy::AuditTrail* audit_ = nullptr;
  interactions::ExportJobs* export_ = nullptr;
  mutable std::mutex held_mutex_;
  mutable std::condition_variable held_cv_;
  mutable int held_count_ = 0;  // HeldResponses not yet answered
};

}  // namespace espace::http
