// The access log sink of `espace serve`: lines are gathered in memory and
// written by one background thread in batches.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace espace::app {

class AccessLogWriter {
 public:
  // `out` must outlive the writer; it is flushed, not closed, at the end.
  explicit AccessLogWriter(FILE* out);
  // Writes every line appended so far.
  ~AccessLogWriter();
  AccessLogWriter(const AccessLogWriter&) = delete;
  AccessLogWriter& operator=(const AccessLogWriter&) = delete;

  // Queues one line (with its '\n'); callable from any thread. Lines are
  // written within kFlushInterval, and at destruction.
  void append(std::string_view line);

  static constexpr std::chrono::milliseconds kFlushInterval{100};
  // Beyond this many pending bytes (the output cannot keep up), lines are
  // dropped and counted rather than held without bound.
  static constexpr size_t kMaxPendingBytes = 16u << 20;

 private:
  void run();
  void write_out(const std::string& batch);

  FILE* out_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::string pending_;
  size_t dropped_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace espace::app
