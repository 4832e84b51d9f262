// A fixed set of threads running request handling, off the I/O threads.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace espace::http {

class WorkerPool {
 public:
  // `threads` workers (at least 1); at most `max_queued` tasks wait for a
  // worker, beyond which post() refuses so the caller can answer 503.
  WorkerPool(size_t threads, size_t max_queued);
  ~WorkerPool();  // shutdown()
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Hands the task to an idle worker, or queues it when every worker is
  // busy; false when the queue is full or the pool is shut down.
  bool post(std::function<void()> task);

  // Stops taking tasks, runs those already queued, joins the workers.
  // Idempotent; must not be called from a worker.
  void shutdown();

  size_t queued() const;
  size_t thread_count() const { return threads_.size(); }

 private:
  // A worker's own wake-up: post() wakes exactly the worker it hands a task
  // to, never a crowd.
  struct Slot {
    std::condition_variable wake;
    std::function<void()> task;  // handed over by post() while the worker sleeps
    bool has_task = false;
  };
  void work(Slot* slot);

  mutable std::mutex mutex_;
  std::deque<std::function<void()>> queue_;
  // Sleeping workers, the most recently active last: post() wakes that one,
  // whose stack and caches are still warm, and the others stay asleep.
  std::vector<Slot*> idle_;
  std::vector<std::unique_ptr<Slot>> slots_;
  size_t max_queued_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace espace::http
