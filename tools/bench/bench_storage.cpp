// Storage benchmark: durable creates from many threads (group commit), then
// reads by id. Not a test; prints rates for the record.
//
//   bench_storage [--threads N] [--seconds S] [--path FILE] [--normal] [--no-overlap] [--max-batch N] [--readers N]
//                 [--seed N] [--index patient|minimal]
//
// --normal: no fsync before acknowledging (survives a process crash, not an
// OS crash), for comparison. --no-overlap: SQLite's synchronous=FULL, one
// fsync inside each COMMIT, instead of the overlapped sync threads.
// --seed N: resources written (in large transactions) before the measured
// creates, so the indexes are not tiny. --index: the index rows of each create,
// `patient` (default) the 21 rows the server writes for the bench Patient of
// test-data/bench/patient.json, with values as varied as real ones; `minimal`
// three rows. The writer's CPU and the bytes it writes (the WAL: every page a
// commit dirties) are reported per create: both are load-independent.
// Then audit appends (one record per request, as the server's trail writes
// them: a 2.5 KB event about one of 1,000 patients) from the same threads:
// records/s, append latency, and the CPU of the audit journal's thread, of
// the writer (which moves the records into the audit table) and of the
// WAL sync threads, per record.
#include <dirent.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "espace/storage/sqlite_storage.h"

using namespace espace::storage;
using Clock = std::chrono::steady_clock;

namespace {

// CPU time (user + system, microseconds) of this process's threads whose
// name starts with `prefix`.
int64_t thread_cpu_us(const std::string& prefix) {
  int64_t total = 0;
  DIR* dir = opendir("/proc/self/task");
  if (!dir) return 0;
  const long ticks = sysconf(_SC_CLK_TCK);
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::string base = std::string("/proc/self/task/") + e->d_name;
    std::ifstream comm(base + "/comm");
    std::string name;
    std::getline(comm, name);
    if (name.rfind(prefix, 0) != 0) continue;
    std::ifstream stat(base + "/stat");
    std::string line;
    std::getline(stat, line);
    size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    // Fields after the name: state is field 3; utime and stime are fields 14 and 15.
    std::istringstream rest(line.substr(close + 2));
    std::string field;
    int64_t utime = 0, stime = 0;
    for (int n = 3; n <= 15 && rest >> field; ++n) {
      if (n == 14) utime = std::atoll(field.c_str());
      if (n == 15) stime = std::atoll(field.c_str());
    }
    total += (utime + stime) * 1000000 / ticks;
  }
  closedir(dir);
  return total;
}

// An AuditEvent like the server's trail writes for a professional's read.
std::string audit_event_json(const std::string& id, const std::string& patient) {
  return R"({"resourceType":"AuditEvent","id":")" + id +
         R"(","meta":{"versionId":"1","lastUpdated":"2026-12-07T17:35:29.066191Z"},"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest","display":"RESTful Operation"},"subtype":[{"system":"http://hl7.org/fhir/restful-interaction","code":"read"}],"action":"R","recorded":"2026-12-07T17:35:29.066191Z","outcome":"0","outcomeDesc":"HTTP 200","purposeOfEvent":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"TREAT"}]}],"agent":[{"extension":[{"url":"https://espace.example/fhir/StructureDefinition/audit-rule","valueString":"GP"}],"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/extra-security-role-type","code":"humanuser","display":"human user"}]},"role":[{"coding":[{"system":"https://espace.example/fhir/CodeSystem/caller-role","code":"professional"}]}],"who":{"reference":"Practitioner/gp","identifier":{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"810001234567"}},"requestor":true,"network":{"address":"127.0.0.1","type":"2"}},{"type":{"coding":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110152","display":"Destination Role ID"}]},"who":{"display":"espace FHIR server"},"requestor":false}],"source":{"site":"espace","observer":{"display":"espace FHIR server"},"type":[{"system":"http://terminology.hl7.org/CodeSystem/security-source-type","code":"4","display":"Application Server"}]},"entity":[{"what":{"reference":"Patient/)" +
         patient +
         R"("},"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"1","display":"Person"},"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"1","display":"Patient"}}]})";
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

// A Patient of about 1 KB; varies per id so pages do not compress trivially.
std::string patient_json(const std::string& id, std::mt19937& rng) {
  static const char* family[] = {"Chalmers", "Windsor", "Lefebvre", "Nakamura", "Okafor", "Silva", "Novak"};
  static const char* given[] = {"Peter", "James", "Amélie", "Yuki", "Chidi", "Ana", "Jan", "Marie"};
  auto pick = [&](auto& arr) { return arr[rng() % (sizeof(arr) / sizeof(arr[0]))]; };
  std::string j = R"({"resourceType":"Patient","id":")" + id +
                  R"(","meta":{"versionId":"1","lastUpdated":"2026-11-23T13:00:00.000Z"},)"
                  R"("text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Patient record</div>"},)"
                  R"("identifier":[{"use":"usual","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},)"
                  R"("system":"urn:oid:1.2.36.146.595.217.0.1","value":")" +
                  std::to_string(rng()) + R"("}],"active":true,"name":[{"use":"official","family":")" + pick(family) +
                  R"(","given":[")" + pick(given) + R"(",")" + pick(given) +
                  R"("]}],"telecom":[{"system":"phone","value":"(03) 5555 )" + std::to_string(1000 + rng() % 9000) +
                  R"(","use":"work","rank":1}],"gender":")" + (rng() % 2 ? "male" : "female") +
                  R"(","birthDate":")" + std::to_string(1930 + rng() % 90) +
                  R"(-12-25","address":[{"use":"home","type":"both","text":")" + std::to_string(rng() % 999) +
                  R"( Brisbane Street, Anytown","line":[")" + std::to_string(rng() % 999) +
                  R"( Brisbane Street"],"city":"PleasantVille","district":"Rainbow","state":"Vic","postalCode":")" +
                  std::to_string(3000 + rng() % 999) +
                  R"(","period":{"start":"1974-12-25"}}],"contact":[{"relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0131","code":"N"}]}],)"
                  R"("name":{"family":"du Marché","given":["Bénédicte"]},"telecom":[{"system":"phone","value":"+33 (237) 998327"}],)"
                  R"("gender":"female","period":{"start":"2012"}}],"managingOrganization":{"reference":"Organization/1"}})";
  return j;
}

double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// Bytes written so far by this process's thread named `name` (wchar of
// /proc/self/task/TID/io: the writer thread writes the WAL and little else).
int64_t thread_bytes_written(const std::string& name) {
  DIR* dir = opendir("/proc/self/task");
  if (!dir) return -1;
  int64_t bytes = -1;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::string task = std::string("/proc/self/task/") + e->d_name;
    std::ifstream comm(task + "/comm");
    std::string line;
    if (!std::getline(comm, line) || line != name) continue;
    std::ifstream io(task + "/io");
    while (std::getline(io, line))
      if (line.rfind("wchar:", 0) == 0) bytes = std::atoll(line.c_str() + 6);
    break;
  }
  closedir(dir);
  return bytes;
}

// The index rows of one create. `patient`: those of the bench Patient
// (test-data/bench/patient.json) as the server indexes it, with values drawn
// from pools about as varied as real data (names, streets, phones, identifiers
// nearly unique; cities, postal codes, genders few).
std::vector<IndexEntry> index_rows(bool patient, const std::string& id, int n, std::mt19937& rng) {
  auto row = [](const char* param, const char* kind, std::string system, std::string value) {
    IndexEntry e;
    e.param = param;
    e.kind = kind;
    e.system = std::move(system);
    e.value = std::move(value);
    return e;
  };
  if (!patient) {
    std::vector<IndexEntry> index(3);
    index[0] = row("identifier", "token", "urn:oid:1.2.36.146.595.217.0.1", id);
    index[1] = row("gender", "token", "http://hl7.org/fhir/administrative-gender", (n % 2) ? "male" : "female");
    index[2] = row("birthdate", "date", "", "");
    index[2].low = 1e15;
    index[2].high = 1e15 + 86400e6;
    return index;
  }
  auto pick = [&](const char* prefix, unsigned pool) { return prefix + std::to_string(rng() % pool); };
  std::string family = pick("family", 20000), given = pick("given", 3000);
  std::string street = std::to_string(1 + rng() % 150) + " " + pick("rue ", 50000);
  std::string city = pick("city", 300), postal = std::to_string(1000 + rng() % 300) + "0";
  std::string phone = "+33 6 " + std::to_string(10000000 + rng() % 90000000);
  std::vector<IndexEntry> index;
  for (const std::string& v : {street, postal, std::string("fr"), city}) index.push_back(row("address", "string", v, v));
  index.push_back(row("address-city", "string", city, city));
  index.push_back(row("address-country", "string", "FR", "fr"));
  index.push_back(row("address-postalcode", "string", postal, postal));
  index.push_back(row("address-use", "token", "", "home"));
  IndexEntry birth = row("birthdate", "date", "", "");
  birth.low = -2e15 + static_cast<double>(rng() % 30000) * 86400e6;
  birth.high = birth.low + 86400e6 - 1;
  index.push_back(birth);
  index.push_back(row("deceased", "token", "", "false"));
  index.push_back(row("family", "string", family, family));
  const char* genders[] = {"male", "female", "other"};
  index.push_back(row("gender", "token", "", genders[rng() % 3]));
  index.push_back(row("given", "string", given, given));
  index.push_back(row("identifier", "token", "urn:espace:bench", id));
  index.push_back(row("identifier", "token", "urn:oid:1.2.250.1.213.1.4.8", std::to_string(rng()) + std::to_string(rng())));
  index.push_back(row("name", "string", family, family));
  index.push_back(row("name", "string", given, given));
  index.push_back(row("phone", "token", "", phone));
  index.push_back(row("phonetic", "string", family, family));
  index.push_back(row("phonetic", "string", given, given));
  index.push_back(row("telecom", "token", "", phone));
  return index;
}

// The first version of Patient `id`, as a create stores it.
ResourceVersion created_patient(const std::string& id, std::string json, int64_t now_us) {
  ResourceVersion v;
  v.type = "Patient";
  v.id = id;
  v.version = 1;
  v.method = "POST";
  v.last_updated_us = now_us;
  v.json = std::move(json);
  return v;
}

int64_t percentile(std::vector<int64_t>& v, double p) {
  if (v.empty()) return 0;
  size_t k = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 32;
  double seconds = 5;
  int max_batch = 256;
  int readers = 8;
  int seed = 0;
  bool patient_index = true;
  bool full = true;
  bool overlap = true;
  std::string path = "/tmp/espace-bench-storage.db";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads") threads = std::max(1, std::atoi(next()));
    else if (a == "--seconds") seconds = std::max(0.5, std::atof(next()));
    else if (a == "--path") path = next();
    else if (a == "--max-batch") max_batch = std::max(1, std::atoi(next()));
    else if (a == "--readers") readers = std::max(1, std::atoi(next()));
    else if (a == "--seed") seed = std::max(0, std::atoi(next()));
    else if (a == "--index") {
      std::string kind = next();
      if (kind != "patient" && kind != "minimal") {
        std::fprintf(stderr, "--index is patient or minimal\n");
        return 2;
      }
      patient_index = kind == "patient";
    }
    else if (a == "--normal") full = false;
    else if (a == "--no-overlap") overlap = false;
    else {
      std::fprintf(stderr,
                   "usage: %s [--threads N] [--seconds S] [--path FILE] [--normal] [--no-overlap] [--max-batch N] "
                   "[--readers N] [--seed N] [--index patient|minimal]\n",
                   argv[0]);
      return 2;
    }
  }
  for (const char* suffix : {"", "-wal", "-shm", "-audit"}) std::remove((path + suffix).c_str());

  std::printf("machine: %u cores (nproc), CPU %s\n", std::thread::hardware_concurrency(), cpu_model().c_str());
  std::printf("sqlite %s, durability=%s, %d writer threads, max_batch %d, db %s\n", sqlite3_libversion(),
              !full ? "NORMAL (no fsync)" : overlap ? "fsync per commit, overlapped" : "synchronous=FULL", threads, max_batch, path.c_str());

  SqliteOptions opts;
  opts.path = path;
  opts.synchronous_full = full;
  opts.overlap_fsync = overlap;
  opts.max_batch = max_batch;
  opts.reader_connections = readers;
  std::unique_ptr<Storage> base;
  if (Status s = open_sqlite(opts, &base); !s) {
    std::fprintf(stderr, "open failed: %s\n", s.message().c_str());
    return 1;
  }
  auto* storage = dynamic_cast<SqliteStorage*>(base.get());

  // ---- seed: large transactions, not measured ----
  {
    std::mt19937 rng(99);
    for (int done = 0; done < seed;) {
      int n = std::min(500, seed - done);
      Status s = storage->write([&](WriteTxn& txn) -> Status {
        for (int i = 0; i < n; ++i) {
          std::string id = "seed-" + std::to_string(done + i);
          ResourceVersion v = created_patient(id, patient_json(id, rng), txn.now_us());
          if (Status p = txn.put(v, index_rows(patient_index, id, done + i, rng)); !p) return p;
        }
        return Status::ok();
      });
      if (!s) {
        std::fprintf(stderr, "seeding failed: %s\n", s.message().c_str());
        return 1;
      }
      done += n;
    }
    if (seed > 0) std::printf("seeded %d resources\n", seed);
  }
  const WriteStats before = storage->write_stats();
  const int64_t written_before = thread_bytes_written("espace-writer");

  // ---- durable creates ----
  std::atomic<bool> stop{false};
  std::atomic<int64_t> errors{0};
  std::vector<std::vector<int64_t>> latencies(static_cast<size_t>(threads));
  std::vector<std::vector<std::string>> ids(static_cast<size_t>(threads));
  size_t body_bytes = 0;
  {
    std::mt19937 rng(1);
    body_bytes = patient_json("00000000-0000-0000-0000-000000000000", rng).size();
  }
  std::vector<std::thread> pool;
  auto t0 = Clock::now();
  double cpu0 = process_cpu_seconds();
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t) + 7);
      auto& lat = latencies[static_cast<size_t>(t)];
      auto& mine = ids[static_cast<size_t>(t)];
      for (int n = 0; !stop.load(std::memory_order_relaxed); ++n) {
        char id[48];
        std::snprintf(id, sizeof id, "b%02d-%08d-%08x", t, n, static_cast<unsigned>(rng()));
        std::string json = patient_json(id, rng);
        std::vector<IndexEntry> index = index_rows(patient_index, id, n, rng);
        auto start = Clock::now();
        Status s = storage->write([&](WriteTxn& txn) -> Status {
          std::optional<ResourceVersion> cur;
          if (Status c = txn.current("Patient", id, &cur); !c) return c;
          return txn.put(created_patient(id, std::move(json), txn.now_us()), index);
        });
        lat.push_back(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
        if (s)
          mine.emplace_back(id);
        else
          ++errors;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : pool) th.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  double cpu_used = process_cpu_seconds() - cpu0;

  const int64_t written_after = thread_bytes_written("espace-writer");
  std::vector<int64_t> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  WriteStats ws = storage->write_stats();
  ws.batches -= before.batches;
  ws.bodies -= before.bodies;
  ws.fsyncs -= before.fsyncs;
  ws.checkpoints -= before.checkpoints;
  ws.rerun_batches -= before.rerun_batches;
  ws.writer_cpu_us -= before.writer_cpu_us;
  std::printf("creates: %zu in %.2f s = %.0f creates/s (body %zu bytes, %s index rows), errors %lld\n", all.size(),
              elapsed, static_cast<double>(all.size()) / elapsed, body_bytes, patient_index ? "21 Patient" : "3",
              static_cast<long long>(errors.load()));
  double n_creates = static_cast<double>(std::max<size_t>(all.size(), 1));
  std::printf("cpu: %.0f us per create in this process (clients included), writer thread %.0f us per create\n",
              cpu_used * 1e6 / n_creates, static_cast<double>(ws.writer_cpu_us) / n_creates);
  if (written_before >= 0 && written_after >= 0)
    std::printf("writer thread wrote %.1f KB per create (WAL frames, and checkpoints it ran itself)\n",
                static_cast<double>(written_after - written_before) / 1024.0 / n_creates);
  int64_t p50 = percentile(all, 0.50), p99 = percentile(all, 0.99);
  std::printf("latency: p50 %.2f ms, p99 %.2f ms\n", static_cast<double>(p50) / 1000, static_cast<double>(p99) / 1000);
  std::printf("commits: %lld, mean batch %.1f, largest batch %lld, run again after a failed body %lld, "
              "WAL fsyncs by sync threads %lld, checkpoints %lld\n",
              static_cast<long long>(ws.batches),
              ws.batches ? static_cast<double>(ws.bodies) / static_cast<double>(ws.batches) : 0.0,
              static_cast<long long>(ws.largest_batch), static_cast<long long>(ws.rerun_batches),
              static_cast<long long>(ws.fsyncs), static_cast<long long>(ws.checkpoints));

  // ---- reads by id ----
  std::vector<std::string> written;
  for (auto& v : ids) written.insert(written.end(), v.begin(), v.end());
  if (written.empty()) return 1;
  std::atomic<int64_t> reads{0}, read_errors{0};
  stop = false;
  pool.clear();
  int read_threads = std::min(threads, readers);
  auto r0 = Clock::now();
  for (int t = 0; t < read_threads; ++t) {
    pool.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t) + 99);
      ResourceVersion v;
      int64_t mine = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const std::string& id = written[rng() % written.size()];
        if (!storage->read("Patient", id, &v)) ++read_errors;
        ++mine;
      }
      reads += mine;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(std::min(seconds, 3.0)));
  stop = true;
  for (auto& th : pool) th.join();
  double read_elapsed = std::chrono::duration<double>(Clock::now() - r0).count();
  std::printf("reads by id: %.0f reads/s with %d threads, errors %lld\n", static_cast<double>(reads) / read_elapsed,
              read_threads, static_cast<long long>(read_errors.load()));

  // ---- audit appends ----
  {
    std::vector<int64_t> latencies[256];
    std::atomic<int64_t> appended{0}, audit_errors{0};
    stop = false;
    pool.clear();
    const int audit_threads = std::min(threads, 256);
    const WriteStats before = storage->write_stats();
    const int64_t journal0 = thread_cpu_us("espace-audit"), sync0 = thread_cpu_us("espace-sync"),
                  ckpt0 = thread_cpu_us("espace-ckpt");
    rusage u0{};
    getrusage(RUSAGE_SELF, &u0);
    auto a0 = Clock::now();
    for (int t = 0; t < audit_threads; ++t) {
      pool.emplace_back([&, t] {
        std::mt19937 rng(static_cast<unsigned>(t) + 7);
        for (int n = 0; !stop.load(std::memory_order_relaxed); ++n) {
          char id[48];
          std::snprintf(id, sizeof id, "a%03d-%08d-%08x", t, n, static_cast<unsigned>(rng()));
          const std::string patient = "p" + std::to_string(rng() % 1000);
          AuditRecord r;
          r.id = id;
          r.recorded_us = 1'765'000'000'000'000 + n;
          r.patients = {patient};
          r.json = audit_event_json(id, patient);
          std::vector<AuditRecord> one{std::move(r)};
          auto t0 = Clock::now();
          if (!storage->append_audit(&one)) ++audit_errors;
          latencies[t].push_back(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count());
          ++appended;
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    stop = true;
    for (auto& th : pool) th.join();
    const double elapsed = std::chrono::duration<double>(Clock::now() - a0).count();
    AuditHead head;
    const auto c0 = Clock::now();
    if (!storage->audit_head(&head)) ++audit_errors;  // moves every record into the table
    const double catch_up_ms = std::chrono::duration<double, std::milli>(Clock::now() - c0).count();
    rusage u1{};
    getrusage(RUSAGE_SELF, &u1);
    const WriteStats after = storage->write_stats();
    std::vector<int64_t> all_latencies;
    for (int t = 0; t < audit_threads; ++t) all_latencies.insert(all_latencies.end(), latencies[t].begin(), latencies[t].end());
    std::sort(all_latencies.begin(), all_latencies.end());
    const double n = static_cast<double>(std::max<int64_t>(1, appended.load()));
    auto us = [](const rusage& r) {
      return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 + r.ru_utime.tv_usec + r.ru_stime.tv_usec;
    };
    std::printf("audit appends: %lld in %.2f s = %.0f records/s with %d threads, errors %lld; table caught up in %.1f ms\n",
                static_cast<long long>(appended.load()), elapsed, n / elapsed, audit_threads,
                static_cast<long long>(audit_errors.load()), catch_up_ms);
    if (!all_latencies.empty())
      std::printf("audit append latency: p50 %.2f ms, p99 %.2f ms\n",
                  static_cast<double>(all_latencies[all_latencies.size() / 2]) / 1000,
                  static_cast<double>(all_latencies[all_latencies.size() * 99 / 100]) / 1000);
    std::printf("audit cpu per record: %.1f us in this process (clients included); journal thread %.1f, writer %.1f, "
                "WAL sync %.1f, checkpoints %.1f\n",
                (us(u1) - us(u0)) / n, static_cast<double>(thread_cpu_us("espace-audit") - journal0) / n,
                static_cast<double>(after.writer_cpu_us - before.writer_cpu_us) / n,
                static_cast<double>(thread_cpu_us("espace-sync") - sync0) / n,
                static_cast<double>(thread_cpu_us("espace-ckpt") - ckpt0) / n);
  }

  // ---- would compressing bodies help? ----
  {
    std::mt19937 rng(5);
    std::string body = patient_json("c0000000-0000-0000-0000-000000000000", rng);
    std::vector<unsigned char> out(compressBound(static_cast<uLong>(body.size())));
    z_stream z{};
    deflateInit(&z, 1);  // one stream reset per body, as a storage layer would keep it
    constexpr int kRounds = 20000;
    size_t out_len = 0;
    auto c0 = Clock::now();
    for (int i = 0; i < kRounds; ++i) {
      deflateReset(&z);
      z.next_in = reinterpret_cast<Bytef*>(body.data());
      z.avail_in = static_cast<uInt>(body.size());
      z.next_out = out.data();
      z.avail_out = static_cast<uInt>(out.size());
      deflate(&z, Z_FINISH);
      out_len = out.size() - z.avail_out;
    }
    double us = std::chrono::duration<double, std::micro>(Clock::now() - c0).count() / kRounds;
    deflateEnd(&z);
    std::printf("zlib level 1 on one body: %zu -> %zu bytes, %.1f us per body\n", body.size(), out_len, us);
  }
  {
    std::FILE* wal = std::fopen((path + "-wal").c_str(), "rb");
    if (wal) {
      std::fseek(wal, 0, SEEK_END);
      std::printf("WAL file before close: %.1f MB\n", static_cast<double>(std::ftell(wal)) / 1e6);
      std::fclose(wal);
    }
  }
  base.reset();
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f) {
    std::fseek(f, 0, SEEK_END);
    std::printf("database file: %.1f MB\n", static_cast<double>(std::ftell(f)) / 1e6);
    std::fclose(f);
  }
  for (const char* suffix : {"", "-wal", "-shm", "-audit"}) std::remove((path + suffix).c_str());
  return 0;
}
