// `espace serve`: the FHIR server.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "access_log.h"
#include "commands.h"
#include "device_purge.h"
#include "espace/fhir/definitions.h"
#include "espace/http/fhir_api.h"
#include "espace/http/worker_pool.h"
#include "espace/interactions/notify.h"
#include "espace/net/server.h"
#include "espace/policy/audit.h"
#include "espace/policy/auth.h"
#include "espace/policy/policy.h"
#include "espace/policy/rules.h"
#include "espace/profiles/validator.h"
#include "espace/storage/storage.h"
#include "espace/terminology/terminology.h"
#include "options.h"

namespace espace::app {

namespace {

const char* kServeHelp =
    "usage: espace serve --port N --db FILE --auth none [options]\n"
    "Every option can also be set in the environment as ESPACE_<NAME> (e.g. ESPACE_PORT=8080).\n"
    "  --address ADDR          listen address (default 127.0.0.1)\n"
    "  --port N                TCP port; 0 picks a free one (default 8080)\n"
    "  --port-file FILE        write the bound port to FILE once listening\n"
    "  --db FILE               SQLite database file (created if missing; default ./var/espace.db)\n"
    "  --auth MODE             access policy; 'none' allows every request (development, test suites);\n"
    "                          'jwt' applies the DMP rules to callers with bearer JWTs (server/policy/README.md).\n"
    "                          The server refuses to start without one.\n"
    "  --jwks FILE             --auth jwt: the trusted signing keys (JWKS; re-read at start-up)\n"
    "  --issuer ISS[,ISS2]     --auth jwt: accepted token issuers\n"
    "  --audience AUD          --auth jwt: required token audience\n"
    "  --clock-skew SEC        --auth jwt: tolerance on exp/nbf/iat (default 60)\n"
    "  --io-threads N          network threads (default 2)\n"
    "  --workers N             request-handling threads (default 64)\n"
    "  --max-queue N           requests waiting for a worker before 503 (default 4096)\n"
    "  --max-body BYTES        largest request body, after decompression (default 64 MiB, or more\n"
    "                          to fit --max-document-bytes)\n"
    "  --max-header BYTES      largest request header block (default 16384)\n"
    "  --max-depth N           deepest JSON/XML nesting accepted (default 64)\n"
    "  --max-entries N         most entries in a batch/transaction Bundle (default 20000)\n"
    "  --max-document-bytes N  largest document in an ITI-65 bundle (default 67108864); raises the\n"
    "                          --max-body default to fit it base64-encoded\n"
    "  --request-timeout SEC   a whole request must arrive within this time (default 30)\n"
    "  --idle-timeout SEC      keep-alive connections close after this idle time (default 75)\n"
    "  --base-url URL          base URL for Location headers and links (default: from Host)\n"
    "  --fhir-package DIR      unpacked hl7.fhir.r4.examples package (default: the set-up cache)\n"
    "  --tls-cert FILE --tls-key FILE   serve HTTPS\n"
    "  --access-log FILE       access log destination ('-' = stderr, 'off'; default '-')\n"
    "  --audit on|off          one AuditEvent per request in the hash-chained audit trail, durable before\n"
    "                          the response (default on; off only for benchmarks and throwaway databases)\n"
    "  --notify on|off         deliver document-added notifications to active Subscriptions (rest-hook,\n"
    "                          email) from the outbox (default on; events are recorded either way)\n"
    "  --smtp-relay HOST:PORT  SMTP relay for email Subscriptions (none by default: email deliveries fail\n"
    "                          and are retried)\n"
    "  --smtp-from ADDRESS     sender of notification mails (default espace@localhost)\n"
    "  --notify-max-attempts N  attempts before an event fails and its Subscriptions go to status error\n"
    "                          (default 10)\n"
    "  --notify-retry-base-ms MS  first retry delay, doubled per attempt (default 1000)\n"
    "  --notify-retry-cap-ms MS   longest retry delay (default 300000)\n"
    "  --notify-poll-ms MS     how often the outbox is checked for due events (default 500)\n"
    "  --notify-timeout-ms MS  bound on one delivery: connect, send, answer (default 10000)\n"
    "  --purge-interval SEC    remove connected-app measurements past their retention every SEC seconds,\n"
    "                          first at start (default 3600; 0: never; `espace purge` runs it once)\n"
    "  --export-dir DIR        Bulk Data $export files (default: 'export' beside the database)\n"
    "  --export-expiry SEC     a finished export and its files are removed after this time (default 3600)\n"
    "  --export-max-jobs N     exports one caller may have running at once (default 2)\n"
    "  --relaxed-profiles      do not require the French profiles (generic FHIR test suites)\n"
    "  --no-fsync              commit without fsync (faster, not durable across power loss)\n";

// Appends to a fixed buffer, silently truncating at its end.
class LineBuilder {
 public:
  LineBuilder(char* buf, size_t cap) : buf_(buf), cap_(cap) {}
  void add(std::string_view s) {
    size_t n = std::min(s.size(), cap_ - size_);
    std::memcpy(buf_ + size_, s.data(), n);
    size_ += n;
  }
  void add(char c) {
    if (size_ < cap_) buf_[size_++] = c;
  }
  void add_number(uint64_t v, int min_digits = 1) {
    char digits[24];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, v);
    (void)ec;
    for (int pad = min_digits - static_cast<int>(end - digits); pad > 0; --pad) add('0');
    add(std::string_view(digits, static_cast<size_t>(end - digits)));
  }
  size_t size() const { return size_; }

 private:
  char* buf_;
  size_t cap_;
  size_t size_ = 0;
};

// Ids and version numbers are masked in the access log: a log line tells
// what kind of request it was, never whose record it touched.
void add_loggable_path(std::string_view path, LineBuilder* out) {
  size_t segment = 0;
  size_t start = 1;
  if (path.empty()) return out->add('/');
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    std::string_view part = path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    out->add('/');
    bool literal = segment == 0 || part.empty() || part[0] == '_' || part[0] == '$' || part == "*" ||
                   (std::isupper(static_cast<unsigned char>(part[0])) && segment != 1 && segment != 3);
    out->add(literal ? part : std::string_view(":id"));
    ++segment;
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
}

// "GET /Patient/:id 200 87 1234 0.412ms\n", formatted without printf: one
// line per request.
size_t format_access_line(const net::AccessLogEntry& e, char* buf, size_t cap) {
  LineBuilder line(buf, cap - 1);  // room for the newline, always written
  line.add(e.method.substr(0, 32));
  line.add(' ');
  char path[400];
  LineBuilder masked(path, sizeof path);
  add_loggable_path(e.path, &masked);
  line.add(std::string_view(path, masked.size()));
  line.add(' ');
  line.add_number(static_cast<uint64_t>(std::max(e.status, 0)));
  line.add(' ');
  line.add_number(e.bytes_in);
  line.add(' ');
  line.add_number(e.bytes_out);
  line.add(' ');
  const uint64_t us = static_cast<uint64_t>(std::max<int64_t>(e.duration_us, 0));
  line.add_number(us / 1000);
  line.add('.');
  line.add_number(us % 1000, 3);
  line.add("ms");
  size_t n = line.size();
  buf[n++] = '\n';
  return n;
}

}  // namespace

int cmd_serve(int argc, char** argv) {
  Options o;
  std::string err;
  if (!o.parse(argc, argv,
               {"address", "port", "port-file", "db", "auth", "io-threads", "workers", "max-queue", "max-body",
                "max-header", "max-depth", "max-entries", "max-document-bytes", "request-timeout", "idle-timeout", "base-url",
                "fhir-package", "tls-cert", "tls-key", "access-log", "audit", "jwks", "issuer", "audience", "clock-skew",
                "notify", "smtp-relay", "smtp-from", "notify-max-attempts", "notify-retry-base-ms", "notify-retry-cap-ms",
                "notify-poll-ms", "notify-timeout-ms", "export-dir", "export-expiry", "export-max-jobs", "purge-interval"},
               {"relaxed-profiles", "no-fsync", "help"}, &err)) {
    std::fprintf(stderr, "espace serve: %s\n%s", err.c_str(), kServeHelp);
    return 2;
  }
  if (o.has_switch("help")) {
    std::fputs(kServeHelp, stdout);
    return 0;
  }
  int64_t port, io_threads, workers, max_queue, max_body, max_header, max_depth, max_entries, request_timeout,
      idle_timeout, max_document;
  int64_t purge_interval;
  if (!o.get_int("max-document-bytes", 64LL << 20, 1024, 3LL << 30, &max_document, &err) ||
      !o.get_int("purge-interval", 3600, 0, 30LL * 86400, &purge_interval, &err)) {
    std::fprintf(stderr, "espace serve: %s\n", err.c_str());
    return 2;
  }
  // A document travels base64-encoded (4/3 of its size) inside a Bundle.
  const int64_t default_max_body = std::max<int64_t>(64LL << 20, max_document / 3 * 4 + (4LL << 20));
  if (!o.get_int("port", 8080, 0, 65535, &port, &err) || !o.get_int("io-threads", 2, 1, 256, &io_threads, &err) ||
      !o.get_int("workers", 64, 1, 4096, &workers, &err) ||
      !o.get_int("max-queue", 4096, 1, 1 << 20, &max_queue, &err) ||
      !o.get_int("max-body", default_max_body, 1024, 4LL << 30, &max_body, &err) ||
      !o.get_int("max-header", 16384, 1024, 1 << 20, &max_header, &err) ||
      !o.get_int("max-depth", 64, 8, 1000, &max_depth, &err) ||
      !o.get_int("max-entries", 20000, 1, 1000000, &max_entries, &err) ||
      !o.get_int("request-timeout", 30, 1, 3600, &request_timeout, &err) ||
      !o.get_int("idle-timeout", 75, 1, 3600, &idle_timeout, &err)) {
    std::fprintf(stderr, "espace serve: %s\n", err.c_str());
    return 2;
  }
  const std::string audit_mode = o.get_or("audit", "on");
  if (audit_mode != "on" && audit_mode != "off") {
    std::fprintf(stderr, "espace serve: --audit takes on or off, not '%s'\n", audit_mode.c_str());
    return 2;
  }
  const std::string notify_mode = o.get_or("notify", "on");
  if (notify_mode != "on" && notify_mode != "off") {
    std::fprintf(stderr, "espace serve: --notify takes on or off, not '%s'\n", notify_mode.c_str());
    return 2;
  }
  interactions::NotifyOptions notify_opts;
  {
    int64_t attempts, base_ms, cap_ms, poll_ms, timeout_ms;
    if (!o.get_int("notify-max-attempts", 10, 1, 1000, &attempts, &err) ||
        !o.get_int("notify-retry-base-ms", 1000, 1, 86400000, &base_ms, &err) ||
        !o.get_int("notify-retry-cap-ms", 300000, 1, 7LL * 86400000, &cap_ms, &err) ||
        !o.get_int("notify-poll-ms", 500, 10, 3600000, &poll_ms, &err) ||
        !o.get_int("notify-timeout-ms", 10000, 100, 600000, &timeout_ms, &err)) {
      std::fprintf(stderr, "espace serve: %s\n", err.c_str());
      return 2;
    }
    notify_opts.max_attempts = static_cast<int>(attempts);
    notify_opts.retry_base_ms = base_ms;
    notify_opts.retry_cap_ms = cap_ms;
    notify_opts.poll_ms = poll_ms;
    notify_opts.io_timeout_ms = timeout_ms;
    notify_opts.smtp_from = o.get_or("smtp-from", notify_opts.smtp_from);
    if (auto relay = o.get("smtp-relay")) {
      size_t colon = relay->rfind(':');
      int64_t relay_port = 0;
      std::string port_text = colon == std::string::npos ? "" : relay->substr(colon + 1);
      if (colon == std::string::npos || colon == 0 || port_text.empty() || port_text.size() > 5 ||
          port_text.find_first_not_of("0123456789") != std::string::npos ||
          (relay_port = std::stoll(port_text)) < 1 || relay_port > 65535) {
        std::fprintf(stderr, "espace serve: --smtp-relay takes HOST:PORT\n");
        return 2;
      }
      notify_opts.smtp_host = relay->substr(0, colon);
      notify_opts.smtp_port = static_cast<uint16_t>(relay_port);
    }
  }
  std::string auth = o.get_or("auth", "");
  if (auth != "none" && auth != "jwt") {
    std::fprintf(stderr,
                 "espace serve: no access policy configured. Pass --auth jwt --jwks FILE --issuer ISS --audience AUD, "
                 "or --auth none to run an open development server (%s).\n",
                 auth.empty() ? "none given" : ("unknown mode '" + auth + "'").c_str());
    return 2;
  }
  policy::DmpPolicyConfig dmp_config;
  if (auth == "jwt") {
    int64_t skew;
    if (!o.get_int("clock-skew", 60, 0, 3600, &skew, &err)) {
      std::fprintf(stderr, "espace serve: %s\n", err.c_str());
      return 2;
    }
    dmp_config.auth.clock_skew_s = static_cast<int>(skew);
    dmp_config.auth.jwks_file = o.get_or("jwks", "");
    dmp_config.auth.audience = o.get_or("audience", "");
    std::string issuers = o.get_or("issuer", "");
    for (size_t start = 0; start <= issuers.size();) {
      size_t comma = std::min(issuers.find(',', start), issuers.size());
      if (comma > start) dmp_config.auth.issuers.push_back(issuers.substr(start, comma - start));
      start = comma + 1;
    }
    if (dmp_config.auth.jwks_file.empty() || dmp_config.auth.issuers.empty() || dmp_config.auth.audience.empty()) {
      std::fprintf(stderr, "espace serve: --auth jwt needs --jwks FILE, --issuer ISS and --audience AUD\n");
      return 2;
    }
  }

  auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<fhir::Definitions> defs;
  std::string package = o.get_or("fhir-package", fhir::Definitions::default_package_dir());
  // The terminology (CodeSystems, ValueSets) loads on a second thread while
  // the definitions load here: start-up takes the longer of the two.
  std::unique_ptr<terminology::Store> terms;
  fhir::Status terms_status;
  std::thread terms_loader([&] { terms_status = terminology::Store::load(package, &terms); });
  fhir::Status defs_status = fhir::Definitions::load(package, &defs);
  terms_loader.join();
  if (fhir::Status s = std::move(defs_status); !s) {
    std::fprintf(stderr, "espace serve: cannot load the FHIR definitions from %s: %s\n(run tools/setup)\n",
                 package.c_str(), s.message().c_str());
    return 1;
  }
  // Writes are validated against the base specification always;
  // --relaxed-profiles only lifts the French profiles.
  if (fhir::Status s = std::move(terms_status); !s) {
    std::fprintf(stderr, "espace serve: cannot load the terminology from %s: %s\n", package.c_str(),
                 s.message().c_str());
    return 1;
  }
  profiles::Validator validator(*defs, terms.get());
  // Our profiles serve meta.profile and $validate always; the ones required
  // per type (profiles/data/required-profiles.json) only without --relaxed-profiles.
  fhir::Status profiles_status = validator.load_data_profiles();
  if (profiles_status && !o.has_switch("relaxed-profiles")) profiles_status = validator.load_required_profiles();
  if (!profiles_status) {
    std::fprintf(stderr, "espace serve: cannot load our profiles: %s\n", profiles_status.message().c_str());
    return 1;
  }
  // Compiles every SearchParameter expression now rather than on the first
  // write or search.
  interactions::prepare_search(*defs);
  auto t1 = std::chrono::steady_clock::now();

  storage::SqliteOptions sopts;
  sopts.path = o.get_or("db", "var/espace.db");
  sopts.synchronous_full = !o.has_switch("no-fsync");
  // Created DocumentReferences record their notification in the same
  // transaction, whether or not this server delivers them.
  sopts.outbox_rule = interactions::document_outbox_rule();
  std::unique_ptr<storage::Storage> store;
  if (fhir::Status s = storage::open_sqlite(sopts, &store); !s) {
    std::fprintf(stderr, "espace serve: cannot open the database %s: %s\n", sopts.path.c_str(), s.message().c_str());
    return 1;
  }

  interactions::Services services;
  services.defs = defs.get();
  services.store = store.get();
  services.validator = &validator;
  services.limits.max_bundle_entries = static_cast<size_t>(max_entries);
  services.limits.max_document_bytes = static_cast<size_t>(max_document);
  // The rules' data (habilitation matrix, purposes, roles) outlives the policy.
  policy::RulesConfig rules_config;
  std::unique_ptr<policy::Policy> policy;
  if (auth == "jwt") {
    fhir::Status s = policy::RulesConfig::load(&rules_config);
    if (s) s = policy::make_dmp_policy(dmp_config, rules_config, *defs, &policy);
    if (!s) {
      std::fprintf(stderr, "espace serve: cannot set up the access policy: %s\n", s.message().c_str());
      return 1;
    }
  } else {
    policy = policy::make_open_policy();
  }

  http::WorkerPool pool(static_cast<size_t>(workers), static_cast<size_t>(max_queue));
  http::ApiOptions api_opts;
  api_opts.base_url = o.get_or("base-url", "");
  api_opts.max_body_bytes = static_cast<size_t>(max_body);
  api_opts.max_json_depth = static_cast<int>(max_depth);
  http::FhirApi api(services, *policy, pool, api_opts);
  std::unique_ptr<policy::AuditTrail> audit_trail;
  if (audit_mode == "on") {
    audit_trail = policy::make_audit_trail(*store);
    api.set_audit_trail(audit_trail.get());
  }
  interactions::ExportOptions export_opts;
  export_opts.directory =
      o.get_or("export-dir", (std::filesystem::path(sopts.path).parent_path() / "export").string());
  int64_t export_expiry, export_max_jobs;
  if (!o.get_int("export-expiry", 3600, 1, 30LL * 86400, &export_expiry, &err) ||
      !o.get_int("export-max-jobs", 2, 1, 64, &export_max_jobs, &err)) {
    std::fprintf(stderr, "espace serve: %s\n", err.c_str());
    return 2;
  }
  export_opts.expiry_seconds = export_expiry;
  export_opts.max_jobs_per_owner = static_cast<int>(export_max_jobs);
  export_opts.retry_after_seconds = 1;
  interactions::ExportJobs export_jobs(services, export_opts);
  if (fhir::Status s = export_jobs.start(); !s) {
    std::fprintf(stderr, "espace serve: %s\n", s.message().c_str());
    return 1;
  }
  api.set_export_jobs(&export_jobs);

  net::ServerOptions nopts;
  nopts.address = o.get_or("address", "127.0.0.1");
  nopts.port = static_cast<uint16_t>(port);
  nopts.io_threads = static_cast<int>(io_threads);
  nopts.max_body_bytes = static_cast<size_t>(max_body);
  nopts.max_header_bytes = static_cast<size_t>(max_header);
  nopts.request_timeout = std::chrono::seconds(request_timeout);
  nopts.idle_timeout = std::chrono::seconds(idle_timeout);
  nopts.tls_cert_file = o.get_or("tls-cert", "");
  nopts.tls_key_file = o.get_or("tls-key", "");

  std::string log_dest = o.get_or("access-log", "-");
  FILE* log_file = nullptr;
  if (log_dest == "-") {
    log_file = stderr;
  } else if (log_dest != "off") {
    log_file = std::fopen(log_dest.c_str(), "a");
    if (!log_file) {
      std::fprintf(stderr, "espace serve: cannot open the access log %s\n", log_dest.c_str());
      return 1;
    }
  }
  // Lines go out in batches from a thread of their own: an unbuffered
  // write(2) per request under a shared lock was a sixth of a read's CPU.
  std::unique_ptr<AccessLogWriter> log_writer;
  std::function<void(const net::AccessLogEntry&)> access_log;
  if (log_file) {
    log_writer = std::make_unique<AccessLogWriter>(log_file);
    access_log = [writer = log_writer.get()](const net::AccessLogEntry& e) {
      char line[512];
      writer->append(std::string_view(line, format_access_line(e, line, sizeof line)));
    };
  }

  net::Server server(nopts, [&api](http::Request&& r, http::Responder respond) { api.handle(std::move(r), std::move(respond)); },
                     access_log);
  if (fhir::Status s = server.start(); !s) {
    std::fprintf(stderr, "espace serve: cannot listen on %s:%lld: %s\n", nopts.address.c_str(),
                 static_cast<long long>(port), s.message().c_str());
    return 1;
  }
  if (auto pf = o.get("port-file")) {
    // Written whole then renamed, so a reader never sees a partial number.
    std::string tmp = *pf + ".tmp";
    {
      std::ofstream f(tmp);
      f << server.port() << "\n";
    }
    std::rename(tmp.c_str(), pf->c_str());
  }
  std::fprintf(stderr, "espace: FHIR R4 server on %s://%s:%u (definitions and terminology loaded in %lld ms, database %s, auth %s)\n",
               nopts.tls_cert_file.empty() ? "http" : "https", nopts.address.c_str(), server.port(),
               static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(t1 - t0).count()),
               sopts.path.c_str(), policy->name());
  // SIGHUP: re-read the signing keys (--auth jwt) and the TLS material; on
  // failure the old ones stay in use.
  server.stop_on_signals([&server, jwt = auth == "jwt", tls = !nopts.tls_cert_file.empty()] {
    if (jwt) {
      if (fhir::Status s = policy::Authenticator::reload_all(); !s)
        std::fprintf(stderr, "espace: SIGHUP: signing keys not reloaded: %s\n", s.message().c_str());
      else
        std::fprintf(stderr, "espace: SIGHUP: signing keys reloaded\n");
    }
    if (!tls) return;
    if (fhir::Status s = server.reload_tls(); !s)
      std::fprintf(stderr, "espace: SIGHUP: TLS certificate not reloaded: %s\n", s.message().c_str());
  });
  // The worker uses the storage directly: it acts for the server, not a caller.
  std::unique_ptr<interactions::NotificationWorker> notifier;
  if (notify_mode == "on") {
    notifier = std::make_unique<interactions::NotificationWorker>(services, notify_opts);
    notifier->start();
  }
  // Connected-app measurements past their retention (device_purge.h).
  std::unique_ptr<DevicePurgeTimer> purger;
  if (purge_interval > 0) {
    purger = std::make_unique<DevicePurgeTimer>(*defs, *store, audit_trail.get(), purge_interval);
    purger->start();
  }
  server.run();
  if (purger) purger->stop();
  if (notifier) notifier->stop();
  pool.shutdown();
  api.finish_held_responses();  // answers waiting for their audit record reach the sessions first
  log_writer.reset();  // the I/O threads are done: the last lines go out now
  std::fprintf(stderr, "espace: stopped\n");
  if (log_file && log_file != stderr) std::fclose(log_file);
  return 0;
}

}  // namespace espace::app
