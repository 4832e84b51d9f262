// A SQLite database path for one test: unique to the test process and the
// instance, and removed with its write-ahead log and shared-memory files
// before the test (a crashed earlier run may have left them) and after it.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>

namespace espace::testing {

struct TempDb {
  std::string path;
  // `name` tells which test left a file behind if one ever stays.
  explicit TempDb(const std::string& name = "espace-test") {
    static std::atomic<int> counter{0};
    path = "/tmp/" + name + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + ".db";
    remove_files();
  }
  ~TempDb() { remove_files(); }
  TempDb(const TempDb&) = delete;
  TempDb& operator=(const TempDb&) = delete;
  void remove_files() const {
    for (const char* suffix : {"", "-wal", "-shm", "-audit"}) std::remove((path + suffix).c_str());
  }
};

}  // namespace espace::testing
