#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "espace/http/status_map.h"
#include "espace/http/worker_pool.h"

using espace::http::WorkerPool;

TEST_CASE("the worker pool runs every posted task off the caller's thread", "[worker_pool]") {
  std::atomic<int> done{0};
  std::mutex m;
  std::set<std::thread::id> ids;
  {
    WorkerPool pool(3, 1000);
    CHECK(pool.thread_count() == 3);
    for (int i = 0; i < 200; ++i) {
      REQUIRE(pool.post([&] {
        {
          std::lock_guard<std::mutex> lock(m);
          ids.insert(std::this_thread::get_id());
        }
        done.fetch_add(1);
      }));
    }
    pool.shutdown();  // drains the queue first
  }
  CHECK(done.load() == 200);
  CHECK(ids.count(std::this_thread::get_id()) == 0);
}

TEST_CASE("post refuses when the queue is full and after shutdown", "[worker_pool]") {
  WorkerPool pool(1, 2);
  std::mutex m;
  std::condition_variable cv;
  bool release = false, started = false;
  // Occupy the only worker until released.
  REQUIRE(pool.post([&] {
    std::unique_lock<std::mutex> lock(m);
    started = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
  }));
  {
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [&] { return started; });
  }
  std::atomic<int> ran{0};
  CHECK(pool.post([&] { ran++; }));
  CHECK(pool.post([&] { ran++; }));
  CHECK(pool.queued() == 2);
  CHECK_FALSE(pool.post([&] { ran++; }));  // full: the caller answers 503
  {
    std::lock_guard<std::mutex> lock(m);
    release = true;
  }
  cv.notify_all();
  pool.shutdown();
  CHECK(ran.load() == 2);
  CHECK_FALSE(pool.post([&] { ran++; }));
}

TEST_CASE("a throwing task does not kill its worker", "[worker_pool]") {
  WorkerPool pool(1, 10);
  std::atomic<int> ran{0};
  REQUIRE(pool.post([] { throw std::runtime_error("boom"); }));
  REQUIRE(pool.post([&] { ran++; }));
  pool.shutdown();
  CHECK(ran.load() == 1);
}

TEST_CASE("error categories map to one status code each", "[status_map]") {
  using espace::fhir::ErrorCategory;
  using espace::http::http_status;
  CHECK(http_status(ErrorCategory::None) == 200);
  CHECK(http_status(ErrorCategory::Invalid) == 400);
  CHECK(http_status(ErrorCategory::Unprocessable) == 422);
  CHECK(http_status(ErrorCategory::NotFound) == 404);
  CHECK(http_status(ErrorCategory::Gone) == 410);
  CHECK(http_status(ErrorCategory::Conflict) == 409);
  CHECK(http_status(ErrorCategory::PreconditionFailed) == 412);
  CHECK(http_status(ErrorCategory::NotAllowed) == 405);
  CHECK(http_status(ErrorCategory::NotAcceptable) == 406);
  CHECK(http_status(ErrorCategory::TooLarge) == 413);
  CHECK(http_status(ErrorCategory::UnsupportedMedia) == 415);
  CHECK(http_status(ErrorCategory::Unauthorized) == 401);
  CHECK(http_status(ErrorCategory::Forbidden) == 403);
  CHECK(http_status(ErrorCategory::NotModified) == 304);
  CHECK(http_status(ErrorCategory::Unavailable) == 503);
  CHECK(http_status(ErrorCategory::Internal) == 500);
  CHECK(std::string(espace::http::reason_phrase(404)) == "Not Found");
}
