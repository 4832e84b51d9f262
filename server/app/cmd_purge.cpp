// `espace purge --db FILE [--now DATETIME]`: removes the connected-app
// measurements whose retention has passed (interactions/devices.h), writes
// one AuditEvent for the run, prints what was removed (references only).
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>

#include "commands.h"
#include "device_purge.h"
#include "espace/interactions/api.h"
#include "espace/policy/audit.h"
#include "espace/storage/sqlite_storage.h"
#include "espace/storage/storage.h"
#include "options.h"

namespace espace::app {

namespace {

const char* kPurgeHelp =
    "usage: espace purge --db FILE [--now YYYY-MM-DDThh:mm:ssZ] [--fhir-package DIR]\n"
    "Deletes the measurements connected apps pushed (Observations of an app's Device, and the Provenance\n"
    "targeting them) once the retention of the patient's device-app-connection Consent has passed, and\n"
    "records the purge in the audit trail. --now evaluates the retention at another time (tests, catching\n"
    "up). `espace serve --purge-interval SECONDS` runs the same purge on a timer.\n";

// "2026-11-23T20:00:00Z" (UTC only) -> microseconds.
bool parse_utc(const std::string& text, int64_t* us) {
  std::tm tm{};
  int consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                  &tm.tm_min, &tm.tm_sec, &consumed) != 6 ||
      static_cast<size_t>(consumed) != text.size())
    return false;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  std::time_t t = ::timegm(&tm);
  if (t == static_cast<std::time_t>(-1)) return false;
  *us = static_cast<int64_t>(t) * 1000000;
  return true;
}

}  // namespace

int cmd_purge(int argc, char** argv) {
  Options o;
  std::string err;
  if (!o.parse(argc, argv, {"db", "now", "fhir-package"}, {"help"}, &err)) {
    std::fprintf(stderr, "espace purge: %s\n%s", err.c_str(), kPurgeHelp);
    return 2;
  }
  if (o.has_switch("help")) {
    std::fputs(kPurgeHelp, stdout);
    return 0;
  }
  auto db = o.get("db");
  if (!db || db->empty()) {
    std::fprintf(stderr, "espace purge: --db FILE is required\n%s", kPurgeHelp);
    return 2;
  }
  int64_t now_us = static_cast<int64_t>(std::time(nullptr)) * 1000000;
  if (auto now = o.get("now"); now && !parse_utc(*now, &now_us)) {
    std::fprintf(stderr, "espace purge: --now takes a UTC date-time like 2026-11-23T20:00:00Z\n");
    return 2;
  }
  std::unique_ptr<fhir::Definitions> defs;
  std::string package = o.get_or("fhir-package", fhir::Definitions::default_package_dir());
  if (fhir::Status s = fhir::Definitions::load(package, &defs); !s) {
    std::fprintf(stderr, "espace purge: cannot load the FHIR definitions from %s: %s\n", package.c_str(),
                 s.message().c_str());
    return 1;
  }
  interactions::prepare_search(*defs);
  storage::SqliteOptions sopts;
  sopts.path = *db;
  std::unique_ptr<storage::Storage> store;
  if (fhir::Status s = storage::open_sqlite(sopts, &store); !s) {
    std::fprintf(stderr, "espace purge: cannot open %s: %s\n", db->c_str(), s.message().c_str());
    return 1;
  }
  // Nothing is removed that could not be put on record.
  if (auto* sqlite = dynamic_cast<storage::SqliteStorage*>(store.get()); sqlite && !sqlite->owns_audit_journal()) {
    std::fprintf(stderr,
                 "espace purge: a running server holds the audit trail of %s; it purges on its own "
                 "(--purge-interval), or stop it first\n",
                 db->c_str());
    return 1;
  }
  std::unique_ptr<policy::AuditTrail> audit = policy::make_audit_trail(*store);
  interactions::devices::PurgeReport report;
  fhir::Status s = run_device_purge(*defs, *store, audit.get(), now_us, &report);
  for (const std::string& removed : report.removed) std::printf("removed %s\n", removed.c_str());
  std::printf("%zu resources removed\n", report.removed.size());
  if (!s) {
    std::fprintf(stderr, "espace purge: %s\n", s.message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace espace::app
