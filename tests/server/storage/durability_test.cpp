// An acknowledged write survives kill -9: a child process writes in a loop
// and reports each acknowledged write through a pipe; the parent kills it
// with SIGKILL at a random moment and checks every reported write.
#include <sqlite3.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "espace/storage/sqlite_storage.h"
#include "killed_child.h"

using namespace espace::storage;

namespace {

struct Acked {
  std::string id;
  int64_t version;
};

std::string make_body(const std::string& id, int64_t version) {
  std::string body = R"({"resourceType":"Patient","id":")";
  body += id;
  body += R"(","meta":{"versionId":")";
  body += std::to_string(version);
  body += R"("},"text":"payload ")";
  body.append(600, 'x');  // a realistic size, so commits span several pages
  body += "\"}";
  return body;
}

// The child: several threads, each creating resources and updating every
// other one once, reporting "id version" after each acknowledged write.
[[noreturn]] void child_main(const std::string& path, bool overlap_fsync, int round, int report_fd) {
  SqliteOptions opts;
  opts.path = path;
  opts.overlap_fsync = overlap_fsync;
  opts.reader_connections = 1;
  std::unique_ptr<Storage> s;
  if (!open_sqlite(opts, &s)) _exit(3);
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int n = 0;; ++n) {
        std::string id = "r";  // appended piecewise: GCC 12 warns falsely on "literal" + std::string
        id += std::to_string(round);
        id += "-t";
        id += std::to_string(t);
        id += "-";
        id += std::to_string(n / 2);
        int64_t written = 0;
        Status st = s->write([&](WriteTxn& txn) -> Status {
          std::optional<ResourceVersion> cur;
          if (Status c = txn.current("Patient", id, &cur); !c) return c;
          ResourceVersion v;
          v.type = "Patient";
          v.id = id;
          v.version = cur ? cur->version + 1 : 1;
          v.method = cur ? "PUT" : "POST";
          v.last_updated_us = txn.now_us();
          v.json = make_body(id, v.version);
          IndexEntry e;
          e.param = "identifier";
          e.kind = "token";
          e.system = "urn:durability";
          e.value = id;
          written = v.version;
          return txn.put(v, {e});
        });
        if (!st) _exit(4);
        std::string line = id;
        line += ' ';
        line += std::to_string(written);
        line += '\n';
        // Lines are far below PIPE_BUF, so concurrent writes do not interleave.
        if (::write(report_fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(5);
      }
    });
  }
  for (auto& th : threads) th.join();
  _exit(0);
}

std::string integrity_check(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) return "cannot open";
  sqlite3_stmt* st = nullptr;
  std::string result;
  if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr) == SQLITE_OK) {
    while (sqlite3_step(st) == SQLITE_ROW) {
      if (!result.empty()) result += "; ";
      result += reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    }
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return result;
}

}  // namespace

TEST_CASE("acknowledged writes survive kill -9 of the writing process", "[storage][durability]") {
  std::string path = "/tmp/espace-storage-kill-" + std::to_string(getpid()) + ".db";
  auto remove_db = [&] {
    std::remove(path.c_str());
    std::remove((path + "-wal").c_str());
    std::remove((path + "-shm").c_str());
    std::remove((path + "-audit").c_str());
  };
  remove_db();

  // Both ways of syncing: our sync threads, and SQLite's synchronous=FULL.
  bool overlap_fsync = GENERATE(true, false);
  INFO("overlap_fsync " << overlap_fsync);
  std::random_device rd;
  unsigned seed = rd();
  INFO("seed " << seed);
  std::mt19937 rng(seed);

  std::vector<Acked> all_acked;
  constexpr int kRounds = 2;
  for (int round = 0; round < kRounds; ++round) {
    INFO("round " << round);
    // Kill after a random number of acknowledged writes plus a random delay,
    // so the kill lands anywhere in the write/commit cycle.
    long kill_after = std::uniform_int_distribution<long>(1, 1500)(rng);
    espace::testing::KilledChild child = espace::testing::run_until_killed(
        [&](int report_fd) { child_main(path, overlap_fsync, round, report_fd); }, kill_after, &rng);
    REQUIRE(child.enough);
    REQUIRE(child.killed);  // it was our kill, not an early exit of the child
    std::vector<Acked> acked;
    for (const std::string& line : child.lines) {
      std::istringstream fields(line);
      Acked a;
      fields >> a.id >> a.version;
      acked.push_back(a);
    }
    all_acked.insert(all_acked.end(), acked.begin(), acked.end());

    // Before any other connection touches it: the file must be consistent
    // (reading replays the WAL left by the killed process).
    CHECK(integrity_check(path) == "ok");

    SqliteOptions opts;
    opts.path = path;
    opts.overlap_fsync = overlap_fsync;
    std::unique_ptr<Storage> s;
    REQUIRE(open_sqlite(opts, &s).is_ok());
    size_t missing = 0;
    for (const Acked& a : all_acked) {
      ResourceVersion v;
      if (!s->vread("Patient", a.id, a.version, &v) || v.json != make_body(a.id, a.version)) {
        ++missing;
        continue;
      }
      ResourceVersion cur;
      if (!s->read("Patient", a.id, &cur) || cur.version < a.version) ++missing;
    }
    CHECK(missing == 0);
    // The token index agrees with the current versions.
    std::vector<std::string> ids;
    REQUIRE(s->find_by_token("Patient", "identifier", "urn:durability", all_acked.back().id, &ids).is_ok());
    CHECK(ids == std::vector<std::string>{all_acked.back().id});
  }
  CHECK(integrity_check(path) == "ok");
  remove_db();
}
