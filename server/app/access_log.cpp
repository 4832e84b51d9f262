#include "access_log.h"

#include <chrono>

namespace espace::app {

namespace {
// A batch this large is written at once instead of at the next interval.
constexpr size_t kEagerFlushBytes = 256u << 10;
}  // namespace

AccessLogWriter::AccessLogWriter(FILE* out) : out_(out), thread_([this] { run(); }) {}

AccessLogWriter::~AccessLogWriter() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void AccessLogWriter::append(std::string_view line) {
  bool eager;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (pending_.size() + line.size() > kMaxPendingBytes) {
      ++dropped_;
      return;
    }
    pending_.append(line);
    eager = pending_.size() >= kEagerFlushBytes;
  }
  if (eager) wake_.notify_one();
}

void AccessLogWriter::run() {
  std::string batch;
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    wake_.wait_for(lock, kFlushInterval,
                   [this] { return stopping_ || pending_.size() >= kEagerFlushBytes; });
    batch.clear();
    batch.swap(pending_);
    size_t dropped = dropped_;
    dropped_ = 0;
    const bool last = stopping_;
    lock.unlock();
    // Written outside the lock: requests keep appending meanwhile.
    if (dropped > 0)
      batch += "espace: " + std::to_string(dropped) + " access log lines dropped (the log output is too slow)\n";
    if (!batch.empty()) write_out(batch);
    if (last) return;
    lock.lock();
  }
}

void AccessLogWriter::write_out(const std::string& batch) {
  std::fwrite(batch.data(), 1, batch.size(), out_);
  std::fflush(out_);
}

}  // namespace espace::app
