// bench_search: the CPU cost of searches against a database, without HTTP —
// the query parsed as the server parses it (search/query.h, the documents'
// default filters), run by the storage. Reports CPU microseconds per search
// (this thread's CPU time, so other load on the machine barely moves it) and
// the matches found, per query template.
//
//   bench_search --db FILE [--repeat N] [--data DIR] [--walk-threshold N] QUERY...
//
// QUERY is "Type?params" as in a URL (percent-encoded); {pick:FILE} is
// replaced by a line of DIR/FILE, taken in turn, so repeated searches ask
// for different values.
#include <time.h>

#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common.h"
#include "documents/mhd_provide.h"
#include "espace/fhir/definitions.h"
#include "espace/interactions/api.h"
#include "espace/storage/sqlite_storage.h"
#include "search/query.h"

namespace {

namespace storage = espace::storage;
namespace search = espace::interactions::search;
using espace::fhir::Status;

int64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::vector<std::string> read_list(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty() && line[0] != '#') out.push_back(line);
  return out;
}

int usage() {
  std::cerr << "usage: bench_search --db FILE [--repeat N] [--data DIR] [--walk-threshold N] 'Type?params'...\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string db, data = ".";
  int repeat = 200;
  int64_t walk_threshold = espace::interactions::Limits().search_walk_threshold;
  std::vector<std::string> queries;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--db" && i + 1 < argc) db = argv[++i];
    else if (a == "--data" && i + 1 < argc) data = argv[++i];
    else if (a == "--repeat" && i + 1 < argc) repeat = std::atoi(argv[++i]);
    else if (a == "--walk-threshold" && i + 1 < argc) walk_threshold = std::atoll(argv[++i]);
    else if (!a.starts_with("--")) queries.push_back(a);
    else return usage();
  }
  if (db.empty() || queries.empty() || repeat <= 0) return usage();

  std::unique_ptr<espace::fhir::Definitions> defs;
  if (Status s = espace::fhir::Definitions::load(espace::fhir::Definitions::default_package_dir(), &defs); !s) {
    std::cerr << "bench_search: " << s.message() << "\n";
    return 1;
  }
  const search::Registry& registry = search::Registry::get(*defs);
  storage::SqliteOptions so;
  so.path = db;
  so.reader_connections = 1;
  so.synchronous_full = false;
  std::unique_ptr<storage::Storage> store;
  if (Status s = storage::open_sqlite(so, &store); !s) {
    std::cerr << "bench_search: " << s.message() << "\n";
    return 1;
  }
  std::map<std::string, std::vector<std::string>> lists;
  std::map<std::string, size_t> turns;
  espace::interactions::Limits limits;

  for (const std::string& templ : queries) {
    int64_t cpu = 0, matches = 0;
    for (int r = 0; r < repeat; ++r) {
      std::string q = templ;
      for (size_t at; (at = q.find("{pick:")) != std::string::npos;) {
        size_t end = q.find('}', at);
        if (end == std::string::npos) return usage();
        std::string file = q.substr(at + 6, end - at - 6);
        auto& list = lists[file];
        if (list.empty()) list = read_list(data + "/" + file);
        if (list.empty()) {
          std::cerr << "bench_search: no values in " << data << "/" << file << "\n";
          return 1;
        }
        q.replace(at, end - at + 1, list[turns[file]++ % list.size()]);
      }
      size_t qm = q.find('?');
      std::string type = q.substr(0, qm);
      std::vector<std::pair<std::string, std::string>> params;
      int64_t start = thread_cpu_ns();
      if (qm != std::string::npos && !espace::interactions::split_query(q.substr(qm + 1), &params)) {
        std::cerr << "bench_search: bad query " << q << "\n";
        return 1;
      }
      search::ParseContext ctx;
      ctx.registry = &registry;
      ctx.defs = defs.get();
      ctx.limits = limits;
      search::ParsedSearch parsed;
      if (Status s = search::parse_search(ctx, type, params, &parsed); !s) {
        std::cerr << "bench_search: " << q << ": " << s.message() << "\n";
        return 1;
      }
      if (type == "DocumentReference") espace::interactions::mhd::add_default_document_filters(params, &parsed.query);
      parsed.query.walk_threshold = walk_threshold;
      parsed.query.count = parsed.count;
      storage::SearchPage page;
      if (Status s = store->search(parsed.query, &page); !s) {
        std::cerr << "bench_search: " << q << ": " << s.message() << "\n";
        return 1;
      }
      cpu += thread_cpu_ns() - start;
      matches += static_cast<int64_t>(page.matches.size());
    }
    std::printf("%9.1f us/search %7.2f matches  %s\n", static_cast<double>(cpu) / repeat / 1000.0,
                static_cast<double>(matches) / repeat, templ.c_str());
  }
  return 0;
}
