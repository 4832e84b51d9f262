#include "espace/http/worker_pool.h"

#include <pthread.h>

#include <cstdio>
#include <exception>

namespace espace::http {

WorkerPool::WorkerPool(size_t threads, size_t max_queued) : max_queued_(max_queued) {
  if (threads == 0) threads = 1;
  slots_.reserve(threads);
  idle_.reserve(threads);
  threads_.reserve(threads);
  for (size_t i = 0; i < threads; ++i) {
    slots_.push_back(std::make_unique<Slot>());
    threads_.emplace_back([this, slot = slots_.back().get()] {
      pthread_setname_np(pthread_self(), "espace-work");  // per-thread CPU and perf reports tell the pools apart
      work(slot);
    });
  }
}

WorkerPool::~WorkerPool() { shutdown(); }

bool WorkerPool::post(std::function<void()> task) {
  Slot* wake = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return false;
    if (!idle_.empty()) {
      wake = idle_.back();
      idle_.pop_back();
      wake->task = std::move(task);
      wake->has_task = true;
    } else {
      if (queue_.size() >= max_queued_) return false;
      queue_.push_back(std::move(task));
    }
  }
  if (wake) wake->wake.notify_one();
  return true;
}

void WorkerPool::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  for (auto& slot : slots_) slot->wake.notify_one();
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

size_t WorkerPool::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

void WorkerPool::work(Slot* slot) {
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      // A busy pool: take the oldest waiting task without sleeping.
      if (!queue_.empty()) {
        task = std::move(queue_.front());
        queue_.pop_front();
      } else {
        if (stopping_) return;  // stopping and drained
        idle_.push_back(slot);
        slot->wake.wait(lock, [&] { return slot->has_task || stopping_; });
        if (!slot->has_task) {
          // Stopping: post() no longer hands out tasks, but queued ones still run.
          std::erase(idle_, slot);
          continue;
        }
        task = std::move(slot->task);
        slot->task = nullptr;
        slot->has_task = false;
      }
    }
    // A throwing task must not take the worker down with it; the task owns
    // answering its request (the net layer answers 500 if it never does).
    try {
      task();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "espace: worker task failed: %s\n", e.what());
    } catch (...) {
      std::fprintf(stderr, "espace: worker task failed with a non-standard exception\n");
    }
  }
}

}  // namespace espace::http
