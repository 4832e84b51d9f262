// Storage benchmark: durable creates from many threads (group commit), then
// reads by id. Not a test; prints rates for the record.
//
//   bench_storage [--threads N] [--seconds S] [--path FILE] [--normal] [--no-overlap] [--max-batch N] [--readers N]
//
// --normal: no fsync before acknowledging (survives a process crash, not an
// OS crash), for comparison. --no-overlap: SQLite's synchronous=FULL, one
// fsync inside each COMMIT, instead of the overlapped sync threads.
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
#include <string>
#include <thread>
#include <vector>

#include "espace/storage/sqlite_storage.h"

using namespace espace::storage;
using Clock = std::chrono::steady_clock;

namespace {

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
    else if (a == "--normal") full = false;
    else if (a == "--no-overlap") overlap = false;
    else {
      std::fprintf(stderr, "usage: %s [--threads N] [--seconds S] [--path FILE] [--normal] [--no-overlap] [--max-batch N] [--readers N]\n",
                   argv[0]);
      return 2;
    }
  }
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());

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
        std::vector<IndexEntry> index(3);
        index[0].param = "identifier";
        index[0].kind = "token";
        index[0].system = "urn:oid:1.2.36.146.595.217.0.1";
        index[0].value = id;
        index[1].param = "gender";
        index[1].kind = "token";
        index[1].system = "http://hl7.org/fhir/administrative-gender";
        index[1].value = (n % 2) ? "male" : "female";
        index[2].param = "birthdate";
        index[2].kind = "date";
        index[2].low = 1e15;
        index[2].high = 1e15 + 86400e6;
        auto start = Clock::now();
        Status s = storage->write([&](WriteTxn& txn) -> Status {
          std::optional<ResourceVersion> cur;
          if (Status c = txn.current("Patient", id, &cur); !c) return c;
          ResourceVersion v;
          v.type = "Patient";
          v.id = id;
          v.version = 1;
          v.method = "POST";
          v.last_updated_us = txn.now_us();
          v.json = std::move(json);
          return txn.put(v, index);
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

  std::vector<int64_t> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  WriteStats ws = storage->write_stats();
  std::printf("creates: %zu in %.2f s = %.0f creates/s (body %zu bytes, 3 index rows), errors %lld\n", all.size(),
              elapsed, static_cast<double>(all.size()) / elapsed, body_bytes, static_cast<long long>(errors.load()));
  double n_creates = static_cast<double>(std::max<size_t>(all.size(), 1));
  std::printf("cpu: %.0f us per create in this process (clients included), writer thread %.0f us per create\n",
              cpu_used * 1e6 / n_creates, static_cast<double>(ws.writer_cpu_us) / n_creates);
  int64_t p50 = percentile(all, 0.50), p99 = percentile(all, 0.99);
  std::printf("latency: p50 %.2f ms, p99 %.2f ms\n", static_cast<double>(p50) / 1000, static_cast<double>(p99) / 1000);
  std::printf("commits: %lld, mean batch %.1f, largest batch %lld, WAL fsyncs by sync threads %lld, checkpoints %lld\n",
              static_cast<long long>(ws.batches),
              ws.batches ? static_cast<double>(ws.bodies) / static_cast<double>(ws.batches) : 0.0,
              static_cast<long long>(ws.largest_batch), static_cast<long long>(ws.fsyncs),
              static_cast<long long>(ws.checkpoints));

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
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
  return 0;
}
