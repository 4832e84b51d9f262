// bench_seed: builds a large synthetic database for the search benchmarks
// (tools/bench/search-scale) directly through the storage API, with the index
// rows the server itself computes (search::Registry::index), in large
// transactions without fsync. Reproducible: a fixed seed gives the same data.
//
//   bench_seed --db FILE --patients N [--documents N] [--observations N]
//              [--seed S] [--batch N] [--threads N] [--samples N] [--data DIR]
//              [--phase Patient|DocumentReference|Observation]...
//
// --phase writes only those resources (repeatable; default all three), e.g.
// to add the Observations to a database seeded earlier with the same seed.
// Writes into --data the lists the search scenarios pick from (ids and values
// of generated resources, already percent-encoded for a URL query), then
// runs ANALYZE so the planner statistics match the data, like a server that
// has been running for a while.
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "espace/fhir/definitions.h"
#include "espace/fhir/json.h"
#include "espace/storage/sqlite_storage.h"
#include "espace/storage/storage.h"
#include "search/registry.h"

namespace {

using espace::fhir::Status;
namespace storage = espace::storage;

struct Options {
  std::string db;
  std::string data_dir = ".";
  std::string lists_dir = ESPACE_SOURCE_DIR "/test-data/bench";
  int64_t patients = 1000;
  int64_t documents = -1;     // default: 10 per patient
  int64_t observations = -1;  // default: 10 per patient
  uint64_t seed = 20261123;
  int batch = 2000;
  int threads = 2;
  int samples = 10000;
  std::vector<std::string> phases;  // empty: all
};

std::vector<std::string> read_list(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty() && line[0] != '#') out.push_back(line);
  return out;
}

std::string url_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char ch : s) {
    if (std::isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
      out.push_back(static_cast<char>(ch));
    } else {
      out.push_back('%');
      out.push_back(hex[ch >> 4]);
      out.push_back(hex[ch & 15]);
    }
  }
  return out;
}

std::string format_instant(int64_t us) {
  time_t secs = static_cast<time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(us % 1000000));
  return buf;
}

std::string two(int v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%02d", v);
  return buf;
}

// Every value of resource i derives from (seed, kind, i) alone, so the
// workers may generate in any order and the data is still reproducible.
std::mt19937_64 rng_for(uint64_t seed, uint64_t kind, int64_t i) {
  std::seed_seq s{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(kind),
                  static_cast<uint32_t>(i), static_cast<uint32_t>(static_cast<uint64_t>(i) >> 32)};
  return std::mt19937_64(s);
}

int uniform(std::mt19937_64& r, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(r); }

template <class T>
const T& pick(std::mt19937_64& r, const std::vector<T>& v) {
  return v[std::uniform_int_distribution<size_t>(0, v.size() - 1)(r)];
}

struct Lists {
  std::vector<std::string> family, given, gender, cities, streets, doc_types;
};

std::string patient_id(int64_t i) { return "pat-" + std::to_string(i); }

// An INS-like NIR (15 digits: sex, year, month, department, commune, order, key), unique per patient.
std::string nir_of(int64_t i, int sex, int year, int month) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%d%02d%02d%08lld", sex, year % 100, month, static_cast<long long>(i));
  std::string base = buf;  // 13 digits
  long long n = std::stoll(base);
  int key = static_cast<int>(97 - n % 97);
  return base + two(key);
}

struct Generated {
  std::string type, id, head, tail;  // json = head + lastUpdated + tail
};

struct PatientFacts {
  std::string family, birthdate, nir;
};

PatientFacts patient_facts(const Options& o, const Lists& l, int64_t i) {
  auto r = rng_for(o.seed, 1, i);
  PatientFacts f;
  f.family = pick(r, l.family);
  int year = uniform(r, 1930, 2020), month = uniform(r, 1, 12), day = uniform(r, 1, 28);
  f.birthdate = std::to_string(year) + "-" + two(month) + "-" + two(day);
  f.nir = nir_of(i, uniform(r, 1, 2), year, month);
  return f;
}

Generated patient(const Options& o, const Lists& l, int64_t i) {
  PatientFacts f = patient_facts(o, l, i);
  auto r = rng_for(o.seed, 2, i);
  Generated g{"Patient", patient_id(i), {}, {}};
  g.head = R"({"resourceType":"Patient","id":")" + g.id + R"(","meta":{"versionId":"1","lastUpdated":")";
  g.tail = R"("},"identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":")" + f.nir +
           R"("},{"system":"urn:espace:bench","value":"bench-)" + std::to_string(i) +
           R"("}],"name":[{"use":"official","family":")" + f.family + R"(","given":[")" + pick(r, l.given) +
           R"("]}],"telecom":[{"system":"phone","value":"+33 6 )" + two(uniform(r, 10, 99)) + " " +
           two(uniform(r, 10, 99)) + " " + two(uniform(r, 10, 99)) + " " + two(uniform(r, 10, 99)) +
           R"(","use":"mobile"}],"gender":")" + pick(r, l.gender) + R"(","birthDate":")" + f.birthdate +
           R"(","address":[{"use":"home","line":[")" + std::to_string(uniform(r, 1, 150)) + " " + pick(r, l.streets) +
           R"("],)" + pick(r, l.cities) + R"(,"country":"FR"}]})";
  return g;
}

std::string some_date(std::mt19937_64& r) {
  return std::to_string(uniform(r, 2015, 2025)) + "-" + two(uniform(r, 1, 12)) + "-" + two(uniform(r, 1, 28)) + "T" +
         two(uniform(r, 7, 19)) + ":" + two(uniform(r, 0, 59)) + ":00Z";
}

Generated document(const Options& o, const Lists& l, int64_t i) {
  auto r = rng_for(o.seed, 3, i);
  Generated g{"DocumentReference", "doc-" + std::to_string(i), {}, {}};
  std::string subject = patient_id(std::uniform_int_distribution<int64_t>(0, o.patients - 1)(r));
  std::string type = pick(r, l.doc_types);
  g.head = R"({"resourceType":"DocumentReference","id":")" + g.id + R"(","meta":{"versionId":"1","lastUpdated":")";
  g.tail = R"("},"masterIdentifier":{"system":"urn:ietf:rfc:3986","value":"urn:oid:1.2.250.1.999.1.)" +
           std::to_string(i) + R"("},"status":"current","type":{"coding":[{"system":"http://loinc.org","code":")" + type +
           R"("}]},"category":[{"coding":[{"system":"http://loinc.org","code":")" + pick(r, l.doc_types) +
           R"("}]}],"subject":{"reference":"Patient/)" + subject + R"("},"date":")" + some_date(r) +
           R"(","author":[{"reference":"Practitioner/prac-)" + std::to_string(uniform(r, 0, 999)) +
           R"("}],"content":[{"attachment":{"contentType":"application/pdf","url":"Binary/doc-)" + std::to_string(i) +
           R"(","title":"compte rendu )" + std::to_string(i) + R"("}}]})";
  return g;
}

Generated observation(const Options& o, const Lists&, int64_t i) {
  static const char* kCodes[][3] = {{"8867-4", "/min", "60"},     {"29463-7", "kg", "70"},
                                    {"8480-6", "mm[Hg]", "120"}, {"8462-4", "mm[Hg]", "80"},
                                    {"2339-0", "mg/dL", "95"},   {"8310-5", "Cel", "37"}};
  auto r = rng_for(o.seed, 4, i);
  Generated g{"Observation", "obs-" + std::to_string(i), {}, {}};
  std::string subject = patient_id(std::uniform_int_distribution<int64_t>(0, o.patients - 1)(r));
  const auto& code = kCodes[uniform(r, 0, 5)];
  g.head = R"({"resourceType":"Observation","id":")" + g.id + R"(","meta":{"versionId":"1","lastUpdated":")";
  g.tail = R"("},"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":")" +
           std::string(code[0]) + R"("}]},"subject":{"reference":"Patient/)" + subject +
           R"("},"effectiveDateTime":")" + some_date(r) + R"(","valueQuantity":{"value":)" +
           std::to_string(std::atoi(code[2]) + uniform(r, -10, 10)) + R"(,"unit":")" + code[1] +
           R"(","system":"http://unitsofmeasure.org","code":")" + code[1] + R"("}})";
  return g;
}

struct Prepared {
  Generated g;
  std::vector<storage::IndexEntry> index;
};

bool write_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::ofstream out(path);
  for (const std::string& l : lines) out << l << '\n';
  return static_cast<bool>(out);
}

int usage() {
  std::cerr << "usage: bench_seed --db FILE --patients N [--documents N] [--observations N] [--seed S]\n"
               "                  [--batch N] [--threads N] [--samples N] [--data DIR] [--lists DIR]\n"
               "                  [--phase Patient|DocumentReference|Observation]...\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    std::string v = argv[++i];
    try {
      if (a == "--db") o.db = v;
      else if (a == "--data") o.data_dir = v;
      else if (a == "--lists") o.lists_dir = v;
      else if (a == "--patients") o.patients = std::stoll(v);
      else if (a == "--documents") o.documents = std::stoll(v);
      else if (a == "--observations") o.observations = std::stoll(v);
      else if (a == "--seed") o.seed = std::stoull(v);
      else if (a == "--batch") o.batch = std::stoi(v);
      else if (a == "--threads") o.threads = std::stoi(v);
      else if (a == "--samples") o.samples = std::stoi(v);
      else if (a == "--phase") o.phases.push_back(v);
      else return usage();
    } catch (const std::exception&) {
      return usage();
    }
  }
  if (o.db.empty() || o.patients <= 0 || o.batch <= 0 || o.threads <= 0) return usage();
  if (o.documents < 0) o.documents = o.patients * 10;
  if (o.observations < 0) o.observations = o.patients * 10;

  Lists l;
  l.family = read_list(o.lists_dir + "/family-names.txt");
  l.given = read_list(o.lists_dir + "/given-names.txt");
  l.gender = read_list(o.lists_dir + "/genders.txt");
  l.cities = read_list(o.lists_dir + "/cities.txt");
  l.streets = read_list(o.lists_dir + "/street-names.txt");
  l.doc_types = read_list(o.lists_dir + "/document-types.txt");
  if (l.family.empty() || l.given.empty() || l.gender.empty() || l.cities.empty() || l.streets.empty() ||
      l.doc_types.empty()) {
    std::cerr << "bench_seed: name lists missing under " << o.lists_dir << "\n";
    return 1;
  }

  std::unique_ptr<espace::fhir::Definitions> defs;
  if (Status s = espace::fhir::Definitions::load(espace::fhir::Definitions::default_package_dir(), &defs); !s) {
    std::cerr << "bench_seed: " << s.message() << "\n";
    return 1;
  }
  const auto& registry = espace::interactions::search::Registry::get(*defs);

  storage::SqliteOptions so;
  so.path = o.db;
  so.synchronous_full = false;
  so.reader_connections = 1;
  std::unique_ptr<storage::Storage> store;
  if (Status s = storage::open_sqlite(so, &store); !s) {
    std::cerr << "bench_seed: " << s.message() << "\n";
    return 1;
  }

  struct Phase {
    const char* name;
    int64_t count;
    Generated (*make)(const Options&, const Lists&, int64_t);
  };
  const Phase phases[] = {{"Patient", o.patients, patient},
                          {"DocumentReference", o.documents, document},
                          {"Observation", o.observations, observation}};
  auto started = std::chrono::steady_clock::now();
  for (const Phase& phase : phases) {
    if (!o.phases.empty() && std::find(o.phases.begin(), o.phases.end(), phase.name) == o.phases.end()) continue;
    std::atomic<int64_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex err_mutex;
    std::string err;
    auto worker = [&] {
      for (;;) {
        int64_t from = next.fetch_add(o.batch);
        if (from >= phase.count || failed) return;
        int64_t to = std::min<int64_t>(phase.count, from + o.batch);
        std::vector<Prepared> batch;
        batch.reserve(static_cast<size_t>(to - from));
        for (int64_t i = from; i < to; ++i) {
          Prepared p{phase.make(o, l, i), {}};
          std::string json = p.g.head + format_instant(1700000000000000) + p.g.tail;
          espace::fhir::Node node;
          if (Status s = espace::fhir::parse_json(*defs, json, &node); !s) {
            std::lock_guard lock(err_mutex);
            err = p.g.type + "/" + p.g.id + ": " + s.message();
            failed = true;
            return;
          }
          p.index = registry.index(node);
          batch.push_back(std::move(p));
        }
        Status s = store->write([&](storage::WriteTxn& txn) {
          std::string stamp = format_instant(txn.now_us());
          for (const Prepared& p : batch) {
            // Resumable: what an interrupted earlier run committed is kept.
            std::optional<storage::ResourceVersion> existing;
            if (Status st = txn.current(p.g.type, p.g.id, &existing); !st) return st;
            if (existing) continue;
            storage::ResourceVersion v;
            v.type = p.g.type;
            v.id = p.g.id;
            v.version = 1;
            v.last_updated_us = txn.now_us();
            v.method = "POST";
            v.json = p.g.head + stamp + p.g.tail;
            if (Status st = txn.put(v, p.index); !st) return st;
          }
          return Status::ok();
        });
        if (!s) {
          std::lock_guard lock(err_mutex);
          err = s.message();
          failed = true;
          return;
        }
      }
    };
    std::vector<std::thread> workers;
    for (int t = 0; t < o.threads; ++t) workers.emplace_back(worker);
    for (auto& w : workers) w.join();
    if (failed) {
      std::cerr << "bench_seed: " << err << "\n";
      return 1;
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::cerr << "bench_seed: " << phase.count << " " << phase.name << " written (" << secs << " s so far)\n";
  }
  store.reset();

  // Planner statistics, as `espace` would have after its own ANALYZE.
  sqlite3* db = nullptr;
  if (sqlite3_open(o.db.c_str(), &db) != SQLITE_OK || sqlite3_exec(db, "ANALYZE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    std::cerr << "bench_seed: ANALYZE failed: " << (db ? sqlite3_errmsg(db) : "cannot open") << "\n";
    sqlite3_close(db);
    return 1;
  }
  sqlite3_close(db);

  // Values the scenarios pick from, taken from the generated data.
  std::mt19937_64 r(o.seed ^ 0x5eed);
  std::vector<std::string> ids, nirs, family_birthdate;
  for (int k = 0; k < o.samples; ++k) {
    int64_t i = std::uniform_int_distribution<int64_t>(0, o.patients - 1)(r);
    PatientFacts f = patient_facts(o, l, i);
    ids.push_back(patient_id(i));
    nirs.push_back(url_encode("urn:oid:1.2.250.1.213.1.4.8|" + f.nir));
    family_birthdate.push_back("family=" + url_encode(f.family) + "&birthdate=" + f.birthdate);
  }
  if (!write_lines(o.data_dir + "/patient-ids.txt", ids) || !write_lines(o.data_dir + "/patient-ins.txt", nirs) ||
      !write_lines(o.data_dir + "/family-birthdate.txt", family_birthdate)) {
    std::cerr << "bench_seed: cannot write the lists into " << o.data_dir << "\n";
    return 1;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cerr << "bench_seed: done in " << secs << " s\n";
  return 0;
}
