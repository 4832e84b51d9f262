// `espace audit verify --db FILE`: recomputes the hash chain of the audit
// trail and names the first record that was altered, removed or reordered.
#include <sys/stat.h>

#include <cstdio>
#include <memory>
#include <string>

#include "commands.h"
#include "espace/storage/storage.h"
#include "options.h"

namespace espace::app {

namespace {

const char* kAuditHelp =
    "usage: espace audit verify --db FILE\n"
    "Recomputes the SHA-256 chain of the audit trail in FILE (up to the newest record committed when it starts).\n"
    "Exit status: 0 when intact (prints the count and the hash of the newest record: keep it elsewhere to\n"
    "anchor the chain), 1 when a record was altered, removed or reordered (prints the first one), 2 for\n"
    "bad arguments, 3 when the database cannot be read.\n";

}  // namespace

int cmd_audit(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(kAuditHelp, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (std::string(argv[1]) != "verify") {
    std::fprintf(stderr, "espace audit: unknown subcommand '%s'\n%s", argv[1], kAuditHelp);
    return 2;
  }
  Options o;
  std::string err;
  if (!o.parse(argc - 1, argv + 1, {"db"}, {"help"}, &err)) {
    std::fprintf(stderr, "espace audit verify: %s\n%s", err.c_str(), kAuditHelp);
    return 2;
  }
  if (o.has_switch("help")) {
    std::fputs(kAuditHelp, stdout);
    return 0;
  }
  auto db = o.get("db");
  if (!db || db->empty()) {
    std::fprintf(stderr, "espace audit verify: --db FILE is required\n");
    return 2;
  }
  // Opening creates a missing database; verifying one that is not there is a mistake.
  struct stat st {};
  if (::stat(db->c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    std::fprintf(stderr, "espace audit verify: %s is not a database file\n", db->c_str());
    return 3;
  }
  storage::SqliteOptions sopts;
  sopts.path = *db;
  sopts.reader_connections = 1;
  std::unique_ptr<storage::Storage> store;
  if (fhir::Status s = storage::open_sqlite(sopts, &store); !s) {
    std::fprintf(stderr, "espace audit verify: cannot open %s: %s\n", db->c_str(), s.message().c_str());
    return 3;
  }
  storage::AuditVerification v;
  if (fhir::Status s = storage::verify_audit_chain(*store, &v); !s) {
    std::fprintf(stderr, "espace audit verify: cannot read the audit trail: %s\n", s.message().c_str());
    return 3;
  }
  if (v.intact) {
    std::printf("audit trail intact: %lld records, head hash %s\n", static_cast<long long>(v.records),
                v.head_hash.c_str());
    return 0;
  }
  std::printf("audit trail BROKEN at record %lld: %s\n(%lld records before it verified; last good hash %s)\n",
              static_cast<long long>(v.first_bad), v.problem.c_str(), static_cast<long long>(v.records),
              v.head_hash.c_str());
  return 1;
}

}  // namespace espace::app
