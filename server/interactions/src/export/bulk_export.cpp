// Bulk Data export jobs (bulk_export.h). Spec: hl7.org/fhir/uv/bulkdata/export.html
// (kick-off, status, manifest, NDJSON output files) and hl7.org/fhir/R4/async.html.
#include "espace/interactions/bulk_export.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <system_error>
#include <thread>

#include "../common.h"
#include "../search/query.h"
#include "../search/registry.h"
#include "espace/interactions/compartments.h"

namespace espace::interactions {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kPollPath = "/$export-poll-status";
constexpr std::string_view kFilePath = "/$export-file";
constexpr std::string_view kJobDirPrefix = "job-";
constexpr int kPageSize = 200;

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The access trail is no clinical data: patients read it through GET AuditEvent.
bool exported_type(std::string_view type) { return type != "AuditEvent"; }

ExportAnswer failure(ErrorCategory category, std::string code, std::string text, std::string expression = {}) {
  ExportAnswer a;
  a.error = Status::error(category, std::move(code), std::move(text), std::move(expression));
  a.status = http_status(category);
  return a;
}

ExportAnswer information(int status, const std::string& text) {
  fhir::Issue issue;
  issue.severity = fhir::Severity::Information;
  issue.code = "informational";
  issue.diagnostics = text;
  ExportAnswer a;
  a.status = status;
  a.content_type = "application/fhir+json";
  a.body = fhir::outcome_json({issue});
  return a;
}

const std::string* param(const std::vector<std::pair<std::string, std::string>>& params, std::string_view name) {
  for (const auto& [n, v] : params)
    if (n == name) return &v;
  return nullptr;
}

// Job ids are our own UUIDs: anything else never names a job (nor a path).
bool plausible_job_id(std::string_view id) {
  if (id.size() != 36) return false;
  for (char c : id)
    if (!(std::isxdigit(static_cast<unsigned char>(c)) || c == '-')) return false;
  return true;
}

}  // namespace

ExportEndpoint export_endpoint(std::string_view path) {
  if (path == kPollPath) return ExportEndpoint::PollStatus;
  if (path == kFilePath) return ExportEndpoint::File;
  return ExportEndpoint::None;
}

struct OutputFile {
  std::string type;
  std::string name;  // "Observation.ndjson", "Observation.2.ndjson"
  int64_t count = 0;
  std::vector<std::string> patients;  // whose resources it holds
};

struct ExportJobs::Job {
  std::string id, owner;
  fs::path dir;
  std::string request_url;
  int64_t transaction_us = 0;
  // What to export.
  enum class Level { Patient, AllPatients, System } level = Level::Patient;
  std::string patient_id;
  std::vector<std::string> types;  // empty: every type
  int64_t since_us = -1;
  std::string since_text;
  ExportViewOpener open;
  std::string base_url;

  std::thread thread;
  std::atomic<bool> cancelled{false};
  std::atomic<bool> finished{false};

  // Guarded by ExportJobs::mutex_ once the thread runs.
  size_t patients_total = 0, patients_done = 0;
  bool failed = false;
  std::string failure_text;
  int64_t ended_us = 0;
  std::vector<OutputFile> outputs;
};

ExportJobs::ExportJobs(const Services& base, ExportOptions options) : base_(base), options_(std::move(options)) {}

ExportJobs::~ExportJobs() {
  std::vector<std::shared_ptr<Job>> all;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [id, job] : jobs_) all.push_back(job);
    all.insert(all.end(), retired_.begin(), retired_.end());
    jobs_.clear();
    retired_.clear();
  }
  for (auto& job : all) job->cancelled = true;
  for (auto& job : all) {
    if (job->thread.joinable()) job->thread.join();
    std::error_code ec;
    fs::remove_all(job->dir, ec);
  }
}

Status ExportJobs::start() {
  std::error_code ec;
  fs::create_directories(options_.directory, ec);
  if (ec)
    return Status::error(ErrorCategory::Internal, "exception",
                         "cannot create the export directory " + options_.directory + ": " + ec.message());
  for (const fs::directory_entry& e : fs::directory_iterator(options_.directory, ec)) {
    std::string name = e.path().filename().string();
    if (e.is_directory() && name.starts_with(kJobDirPrefix) && plausible_job_id(name.substr(kJobDirPrefix.size())))
      fs::remove_all(e.path(), ec);
  }
  return Status::ok();
}

void ExportJobs::sweep_locked(int64_t now) {
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    Job& job = *it->second;
    if (job.finished && job.ended_us + options_.expiry_seconds * 1000000 <= now) {
      std::error_code ec;
      fs::remove_all(job.dir, ec);
      retired_.push_back(it->second);
      it = jobs_.erase(it);
    } else {
      ++it;
    }
  }
  // Threads of retired jobs are joined once they have ended; their files go with them.
  for (auto it = retired_.begin(); it != retired_.end();) {
    if ((*it)->finished) {
      if ((*it)->thread.joinable()) (*it)->thread.join();
      std::error_code ec;
      fs::remove_all((*it)->dir, ec);
      it = retired_.erase(it);
    } else {
      ++it;
    }
  }
}

ExportAnswer ExportJobs::kick_off(const FhirRequest& req, std::string_view prefer, const std::string& owner,
                                  bool all_patients_allowed, ExportViewOpener open) {
  auto job = std::make_shared<Job>();
  if (req.type.empty()) {
    job->level = Job::Level::System;
  } else if (req.type == "Patient" && req.id.empty()) {
    job->level = Job::Level::AllPatients;
  } else if (req.type == "Patient") {
    job->level = Job::Level::Patient;
    job->patient_id = req.id;
  } else {
    return failure(ErrorCategory::NotFound, "not-supported", "$export is defined on [base], Patient and Patient/[id]");
  }
  if (job->level != Job::Level::Patient && !all_patients_allowed)
    return failure(ErrorCategory::Forbidden, "forbidden",
                   "only system clients export every patient; ask for Patient/[id]/$export (rule EXPORT_SYSTEM_ONLY)");
  if (prefer.find("respond-async") == std::string_view::npos)
    return failure(ErrorCategory::Invalid, "required", "$export runs asynchronously: send Prefer: respond-async",
                   "Prefer");
  if (!req.resource && !req.body.empty())
    return failure(ErrorCategory::Invalid, "not-supported", "$export takes its parameters in the URL");

  for (const auto& [name, value] : req.params) {
    if (name == "_outputFormat") {
      if (value != "application/fhir+ndjson" && value != "application/ndjson" && value != "ndjson")
        return failure(ErrorCategory::Invalid, "not-supported",
                       "_outputFormat: only application/fhir+ndjson is offered, not '" + value + "'", "_outputFormat");
    } else if (name == "_since") {
      if (!parse_fhir_datetime(value, &job->since_us))
        return failure(ErrorCategory::Invalid, "invalid", "_since must be an instant such as 2026-01-01T00:00:00Z",
                       "_since");
      job->since_text = value;
    } else if (name == "_type") {
      size_t start = 0;
      while (start <= value.size()) {
        size_t comma = value.find(',', start);
        if (comma == std::string::npos) comma = value.size();
        std::string t = value.substr(start, comma - start);
        if (!base_.defs->resource_type(t))
          return failure(ErrorCategory::Invalid, "invalid", "_type: unknown resource type '" + t + "'", "_type");
        if (std::find(job->types.begin(), job->types.end(), t) == job->types.end()) job->types.push_back(t);
        start = comma + 1;
      }
    } else if (name == "_format") {
      // the kick-off's own answers (OperationOutcome) follow the negotiated format
    } else if (!req.lenient) {
      // _typeFilter, _elements, patient, includeAssociatedData: not offered, and
      // ignoring them would export more than was asked.
      return failure(ErrorCategory::Invalid, "not-supported", "$export: the parameter '" + name + "' is not supported",
                     name);
    }
  }

  job->id = new_id();
  job->owner = owner;
  job->dir = fs::path(options_.directory) / (std::string(kJobDirPrefix) + job->id);
  job->transaction_us = now_us();
  std::string path = job->level == Job::Level::System        ? "/$export"
                     : job->level == Job::Level::AllPatients ? "/Patient/$export"
                                                             : "/Patient/" + req.id + "/$export";
  job->request_url = link_url(req.base_url, path, req.params);
  job->base_url = req.base_url;
  job->open = std::move(open);

  std::lock_guard<std::mutex> lock(mutex_);
  sweep_locked(now_us());
  int mine = 0, running = 0;
  for (const auto& [id, j] : jobs_)
    if (!j->finished) {
      ++running;
      if (j->owner == owner) ++mine;
    }
  running += static_cast<int>(retired_.size());
  if (mine >= options_.max_jobs_per_owner || running >= options_.max_running_jobs) {
    ExportAnswer a = failure(ErrorCategory::Unavailable, "throttled",
                             mine >= options_.max_jobs_per_owner
                                 ? "you already have " + std::to_string(mine) + " export(s) running; wait for them"
                                 : "too many exports are running; retry later");
    a.status = 429;
    a.headers.emplace_back("Retry-After", std::to_string(options_.retry_after_seconds * 5));
    return a;
  }
  std::error_code ec;
  fs::create_directories(job->dir, ec);
  if (ec) return failure(ErrorCategory::Internal, "exception", "cannot create the export files: " + ec.message());
  jobs_[job->id] = job;
  job->thread = std::thread([this, job] { run(job); });

  ExportAnswer a = information(202, "export accepted; poll the Content-Location URL");
  a.headers.emplace_back("Content-Location", link_url(req.base_url, std::string(kPollPath), {{"_jobId", job->id}}));
  if (job->level == Job::Level::Patient) a.patients.push_back(job->patient_id);
  return a;
}

// The body of a job: one view per patient, then (system level) the data of no patient.
void ExportJobs::run(std::shared_ptr<Job> job) {
  struct Writer {
    Job& job;
    const ExportOptions& options;
    std::mutex& mutex;
    std::map<std::string, size_t> current;  // type -> index in job.outputs
    std::map<std::string, std::ofstream> streams;
    std::set<std::string> written;          // "Type/id": a resource in two compartments once
    std::string error;

    bool add(const storage::ResourceVersion& v, const std::string& patient) {
      if (!written.insert(v.type + "/" + v.id).second) return true;
      auto at = current.find(v.type);
      std::lock_guard<std::mutex> lock(mutex);
      if (at == current.end() || job.outputs[at->second].count >= options.max_lines_per_file) {
        int part = at == current.end() ? 1 : 2;
        if (at != current.end()) {
          const std::string& previous = job.outputs[at->second].name;
          size_t dot = previous.find('.');
          size_t dot2 = previous.find('.', dot + 1);
          if (dot2 != std::string::npos && previous.substr(dot2) == ".ndjson")
            part = std::stoi(previous.substr(dot + 1, dot2 - dot - 1)) + 1;
        }
        OutputFile f;
        f.type = v.type;
        f.name = part == 1 ? v.type + ".ndjson" : v.type + "." + std::to_string(part) + ".ndjson";
        job.outputs.push_back(f);
        current[v.type] = job.outputs.size() - 1;
        std::ofstream& out = streams[v.type];
        if (out.is_open()) out.close();
        out.open(job.dir / f.name, std::ios::binary | std::ios::trunc);
        if (!out) {
          error = "cannot write " + f.name;
          return false;
        }
      }
      OutputFile& f = job.outputs[current[v.type]];
      // One resource per line: stored JSON is compact, but a line break
      // between tokens would split the record, so none survive.
      std::string line = v.json;
      std::replace(line.begin(), line.end(), '\n', ' ');
      std::replace(line.begin(), line.end(), '\r', ' ');
      std::ofstream& out = streams[v.type];
      out << line << '\n';
      if (!out) {
        error = "cannot write " + f.name;
        return false;
      }
      ++f.count;
      if (!patient.empty() && std::find(f.patients.begin(), f.patients.end(), patient) == f.patients.end())
        f.patients.push_back(patient);
      return true;
    }
  } writer{*job, options_, mutex_, {}, {}, {}, {}};

  const search::Registry& registry = search::Registry::get(*base_.defs);
  auto wanted = [&](const std::string& type) {
    return exported_type(type) &&
           (job->types.empty() || std::find(job->types.begin(), job->types.end(), type) != job->types.end());
  };
  // A document's content lives in Binary resources, outside the Patient
  // compartment: those its attachments name are exported with it when the
  // view shows them (the rules judge a Binary by its DocumentReference).
  auto export_documents = [&](const Services& view, const storage::ResourceVersion& document,
                              const std::string& patient) -> Status {
    rapidjson::Document doc;
    doc.Parse(document.json.data(), document.json.size());
    if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("content") || !doc["content"].IsArray())
      return Status::ok();
    const std::string absolute = job->base_url + "/Binary/";
    for (const auto& content : doc["content"].GetArray()) {
      if (!content.IsObject() || !content.HasMember("attachment") || !content["attachment"].IsObject()) continue;
      const auto& attachment = content["attachment"];
      if (!attachment.HasMember("url") || !attachment["url"].IsString()) continue;
      std::string url = attachment["url"].GetString();
      std::string id = url.starts_with("Binary/")      ? url.substr(7)
                       : url.starts_with(absolute)      ? url.substr(absolute.size())
                                                        : std::string();
      if (!is_valid_id(id)) continue;
      storage::ResourceVersion binary;
      if (Status s = view.store->read("Binary", id, &binary); !s || binary.deleted) continue;
      if (binary.last_updated_us <= job->since_us || binary.last_updated_us > job->transaction_us) continue;
      if (!writer.add(binary, patient)) return Status::error(ErrorCategory::Internal, "exception", writer.error);
    }
    return Status::ok();
  };
  // Pages through one search (already restricted) and writes what the view shows.
  auto export_search = [&](const Services& view, storage::SearchQuery q, const std::string& patient) -> Status {
    std::vector<std::pair<std::string, std::string>> params;
    if (job->since_us >= 0) params.emplace_back("_lastUpdated", "gt" + job->since_text);
    // Nothing changed after the transaction time (the manifest's promise).
    params.emplace_back("_lastUpdated", "le" + format_instant(job->transaction_us));
    search::ParseContext ctx;
    ctx.registry = &registry;
    ctx.defs = base_.defs;
    ctx.base_url = job->base_url;
    ctx.limits = base_.limits;
    search::ParsedSearch parsed;
    if (Status s = search::parse_search(ctx, q.type, params, &parsed); !s) return s;
    for (storage::Condition& c : parsed.query.all_of) q.all_of.push_back(std::move(c));
    q.count = kPageSize;
    q.walk_threshold = base_.limits.search_walk_threshold;
    for (;;) {
      if (job->cancelled) return Status::ok();
      storage::SearchPage page;
      Status s = view.store->search(q, &page);
      if (s.category() == ErrorCategory::Forbidden || s.category() == ErrorCategory::NotFound) return Status::ok();
      if (!s) return s;
      for (const storage::SearchMatch& m : page.matches) {
        if (!wanted(m.resource.type) || m.resource.deleted) continue;
        if (!writer.add(m.resource, patient)) return Status::error(ErrorCategory::Internal, "exception", writer.error);
        if (m.resource.type == "DocumentReference" && wanted("Binary"))
          if (Status s = export_documents(view, m.resource, patient); !s) return s;
      }
      if (!page.more || page.matches.empty()) return Status::ok();
      q.after_key = page.matches.back().key;
    }
  };

  auto export_patient = [&](const std::string& patient_id) -> Status {
    FhirRequest as_if;
    as_if.interaction = Interaction::Operation;
    as_if.operation = "export";
    as_if.method = "GET";
    as_if.type = "Patient";
    as_if.id = patient_id;
    as_if.base_url = job->base_url;
    std::unique_ptr<ExportView> view;
    if (Status s = job->open(as_if, &view); !s) return Status::ok();  // not the requester's to export
    const Services& services = view->services();
    storage::ResourceVersion patient;
    if (Status s = services.store->read("Patient", patient_id, &patient); !s || patient.deleted) return Status::ok();
    if (wanted("Patient") && patient.last_updated_us > job->since_us && patient.last_updated_us <= job->transaction_us)
      if (!writer.add(patient, patient_id)) return Status::error(ErrorCategory::Internal, "exception", writer.error);
    storage::SearchQuery q;
    storage::Condition in_compartment;
    std::vector<std::string> member_types;
    if (Status s = search::compartment_condition(registry, "Patient", patient_id, "", &in_compartment, &member_types);
        !s)
      return s;
    q.all_of.push_back(std::move(in_compartment));
    for (const std::string& t : member_types)
      if (t != "Patient" && wanted(t)) q.types.push_back(t);
    if (q.types.empty()) return Status::ok();
    return export_search(services, std::move(q), patient_id);
  };

  Status outcome = Status::ok();
  std::vector<std::string> patients;
  if (job->level == Job::Level::Patient) {
    patients.push_back(job->patient_id);
  } else {
    // Ids only, from the unguarded store: each patient's data is then read
    // through the requester's own view of that patient.
    storage::SearchQuery q;
    q.type = "Patient";
    q.count = kPageSize;
    for (;;) {
      storage::SearchPage page;
      if (outcome = base_.store->search(q, &page); !outcome) break;
      for (const storage::SearchMatch& m : page.matches) patients.push_back(m.resource.id);
      if (!page.more || page.matches.empty() || job->cancelled) break;
      q.after_key = page.matches.back().key;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job->patients_total = patients.size();
  }
  for (size_t i = 0; outcome && i < patients.size() && !job->cancelled; ++i) {
    outcome = export_patient(patients[i]);
    std::lock_guard<std::mutex> lock(mutex_);
    job->patients_done = i + 1;
  }
  if (outcome && !job->cancelled && job->level == Job::Level::System) {
    // Data of no patient: shared resources (practitioners, organizations, ...)
    // and the other types outside the Patient compartment, as the view shows them.
    FhirRequest as_if;
    as_if.interaction = Interaction::Operation;
    as_if.operation = "export";
    as_if.method = "GET";
    as_if.base_url = job->base_url;
    std::unique_ptr<ExportView> view;
    if (job->open(as_if, &view)) {
      for (const std::string& type : base_.defs->resource_type_names()) {
        if (!outcome || job->cancelled) break;
        if (is_compartment_member(*base_.defs, "Patient", type) || !wanted(type)) continue;
        storage::SearchQuery q;
        q.type = type;
        outcome = export_search(view->services(), std::move(q), "");
      }
    }
  }
  for (auto& [type, out] : writer.streams) out.close();

  std::lock_guard<std::mutex> lock(mutex_);
  if (!outcome) {
    job->failed = true;
    job->failure_text = outcome.message();
  }
  job->ended_us = now_us();
  if (job->cancelled) {
    std::error_code ec;
    fs::remove_all(job->dir, ec);
  }
  job->finished = true;
}

ExportAnswer ExportJobs::follow_up(ExportEndpoint endpoint, const std::string& method,
                                   const std::vector<std::pair<std::string, std::string>>& params,
                                   const std::string& owner) {
  const std::string* id = param(params, "_jobId");
  const bool poll = endpoint == ExportEndpoint::PollStatus;
  if (!(poll && (method == "GET" || method == "DELETE")) && !(!poll && method == "GET")) {
    ExportAnswer a = failure(ErrorCategory::NotAllowed, "not-supported",
                             method + " is not allowed here (allowed: " + (poll ? "GET, DELETE" : "GET") + ")");
    a.headers.emplace_back("Allow", poll ? "GET, DELETE" : "GET");
    return a;
  }
  if (!id) return failure(ErrorCategory::Invalid, "required", "_jobId is required", "_jobId");
  std::lock_guard<std::mutex> lock(mutex_);
  sweep_locked(now_us());
  auto it = jobs_.find(*id);
  // Someone else's job answers exactly like one that does not exist.
  if (it == jobs_.end() || it->second->owner != owner)
    return failure(ErrorCategory::NotFound, "not-found", "no export job '" + *id + "' (unknown, expired or deleted)",
                   "_jobId");
  std::shared_ptr<Job> job = it->second;

  if (poll && method == "DELETE") {
    job->cancelled = true;
    if (job->finished) {
      std::error_code ec;
      fs::remove_all(job->dir, ec);
    }
    retired_.push_back(job);
    jobs_.erase(it);
    return information(202, "export job cancelled; its files are removed");
  }

  if (!job->finished) {
    ExportAnswer a;
    a.status = 202;
    a.headers.emplace_back("X-Progress", "in progress: " + std::to_string(job->patients_done) + " of " +
                                             std::to_string(job->patients_total) + " patients");
    a.headers.emplace_back("Retry-After", std::to_string(options_.retry_after_seconds));
    return a;
  }
  if (job->failed) {
    ExportAnswer a = failure(ErrorCategory::Internal, "exception", "the export failed: " + job->failure_text);
    return a;
  }

  if (poll) {
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    auto str = [&](const char* k, const std::string& v) {
      w.Key(k);
      w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
    };
    w.StartObject();
    str("transactionTime", format_instant(job->transaction_us));
    str("request", job->request_url);
    w.Key("requiresAccessToken");
    w.Bool(true);
    w.Key("output");
    w.StartArray();
    for (const OutputFile& f : job->outputs) {
      w.StartObject();
      str("type", f.type);
      str("url", link_url(job->base_url, std::string(kFilePath), {{"_jobId", job->id}, {"_file", f.name}}));
      w.Key("count");
      w.Int64(f.count);
      w.EndObject();
    }
    w.EndArray();
    w.Key("error");
    w.StartArray();
    w.EndArray();
    w.EndObject();
    ExportAnswer a;
    a.status = 200;
    a.content_type = "application/json";
    a.body.assign(buf.GetString(), buf.GetSize());
    a.headers.emplace_back("Expires", format_http_date(job->ended_us + options_.expiry_seconds * 1000000));
    return a;
  }

  const std::string* name = param(params, "_file");
  if (!name) return failure(ErrorCategory::Invalid, "required", "_file is required", "_file");
  // Only names of the manifest: never a path of the caller's choosing.
  const OutputFile* file = nullptr;
  for (const OutputFile& f : job->outputs)
    if (f.name == *name) file = &f;
  if (!file) return failure(ErrorCategory::NotFound, "not-found", "no file '" + *name + "' in this export", "_file");
  std::ifstream in(job->dir / file->name, std::ios::binary);
  if (!in.is_open()) return failure(ErrorCategory::Internal, "exception", "the export file " + file->name + " cannot be read");
  ExportAnswer a;
  a.status = 200;
  a.content_type = "application/fhir+ndjson";
  a.body.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  a.patients = file->patients;
  return a;
}

}  // namespace espace::interactions

namespace espace::interactions {

// The table's handler for $export: reached only when the http layer has no
// export jobs to hand the kick-off to (an in-process FhirApi without them).
FhirResponse export_unavailable_operation(const Services&, const FhirRequest&) {
  return error_response(ErrorCategory::NotFound, "not-supported", "bulk export is not enabled on this server");
}

}  // namespace espace::interactions
