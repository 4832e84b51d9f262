// FHIR Bulk Data export (hl7.org/fhir/uv/bulkdata/export.html): the
// asynchronous request pattern of hl7.org/fhir/R4/async.html with NDJSON files.
//
//   GET [base]/Patient/[id]/$export | [base]/Patient/$export | [base]/$export
//       with Prefer: respond-async  -> 202, Content-Location: the status URL
//   GET    [base]/$export-poll-status?_jobId=J   -> 202 (X-Progress, Retry-After)
//                                                   then 200 with the manifest
//   DELETE [base]/$export-poll-status?_jobId=J   -> 202: cancelled, files removed
//   GET    [base]/$export-file?_jobId=J&_file=F  -> application/fhir+ndjson
//
// The job runs on its own thread and reads through the requester's view of the
// store (ExportViewOpener): one view per patient, opened as if the requester
// had asked for Patient/[id]/$export, so the access rules filter exactly as for
// $everything; a patient the requester may not reach is skipped. The Binary
// resources a patient's DocumentReferences name go with them (when the view
// shows them). AuditEvents are not exported. Only the
// requester (same owner key) sees the job: anyone else gets 404.
//
// This file knows nothing of callers and rules; the http layer supplies the
// owner key, whether the caller may export every patient, and the opener.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "espace/fhir/status.h"
#include "espace/interactions/api.h"

namespace espace::interactions {

struct ExportOptions {
  std::string directory;               // job files live in <directory>/job-<id>/
  int max_jobs_per_owner = 2;          // jobs of one requester still running
  int max_running_jobs = 4;            // all requesters together
  int64_t expiry_seconds = 3600;       // a finished job and its files are removed this long after it ended
  int retry_after_seconds = 2;         // advertised to pollers
  int64_t max_lines_per_file = 10000;  // a type with more resources gets several files (each is read whole to be sent)
};

// The requester's view of the store for one part of a job.
class ExportView {
 public:
  virtual ~ExportView() = default;
  virtual const Services& services() const = 0;
};

// Opens the requester's view as if `as_if` (an Operation "export" request:
// Patient/[id]/$export for one patient's data, or system level for data
// outside any patient's record) were sent by them now. An error means the
// request would be refused: that part is skipped.
using ExportViewOpener = std::function<fhir::Status(const FhirRequest& as_if, std::unique_ptr<ExportView>* out)>;

// An answer of the export endpoints, rendered by the http layer.
struct ExportAnswer {
  int status = 200;
  std::string body;          // with content_type; empty: no body
  std::string content_type;  // "application/json", "application/fhir+ndjson", "application/fhir+json"
  std::vector<std::pair<std::string, std::string>> headers;
  fhir::Status error;                 // not ok: answer an OperationOutcome with its status instead
  std::vector<std::string> patients;  // whose data the answer carries (for the audit record)
};

enum class ExportEndpoint { None, PollStatus, File };
// Which export endpoint a request path is ("/$export-poll-status", "/$export-file").
ExportEndpoint export_endpoint(std::string_view path);

class ExportJobs {
 public:
  // `base` (unguarded: used only to list Patient ids) outlives this object.
  ExportJobs(const Services& base, ExportOptions options);
  ~ExportJobs();  // cancels running jobs, waits for them, removes every job directory
  ExportJobs(const ExportJobs&) = delete;
  ExportJobs& operator=(const ExportJobs&) = delete;

  // Creates the directory and removes job directories left by an earlier run
  // (jobs live in memory only: their files cannot be served again).
  fhir::Status start();

  // A kick-off (request.operation == "export"). `prefer` is the Prefer header;
  // `owner` identifies the requester; `all_patients_allowed`: the requester
  // may export Patient/$export and $export (systems).
  ExportAnswer kick_off(const FhirRequest& request, std::string_view prefer, const std::string& owner,
                        bool all_patients_allowed, ExportViewOpener open);

  // GET/DELETE of the status URL, GET of a file URL.
  ExportAnswer follow_up(ExportEndpoint endpoint, const std::string& method,
                         const std::vector<std::pair<std::string, std::string>>& params, const std::string& owner);

  struct Job;

 private:
  void run(std::shared_ptr<Job> job);
  void sweep_locked(int64_t now_us);

  const Services& base_;
  ExportOptions options_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Job>> jobs_;
  std::vector<std::shared_ptr<Job>> retired_;  // cancelled or expired, thread maybe still running
};

}  // namespace espace::interactions
