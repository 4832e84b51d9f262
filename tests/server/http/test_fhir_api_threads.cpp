// Which requests FhirApi::handle answers on the calling (I/O) thread and which
// it hands to the worker pool. A pool whose only worker is busy and whose
// queue is full answers 503 to everything handed to it, so a request that is
// answered anyway was handled on the calling thread.
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "espace/fhir/definitions.h"
#include "espace/http/fhir_api.h"
#include "espace/http/worker_pool.h"
#include "espace/policy/audit.h"
#include "espace/policy/policy.h"
#include "espace/storage/storage.h"

namespace {

using espace::http::Request;
using espace::http::Response;

const espace::fhir::Definitions& definitions() {
  static std::unique_ptr<espace::fhir::Definitions> defs = [] {
    std::unique_ptr<espace::fhir::Definitions> d;
    espace::fhir::Status s =
        espace::fhir::Definitions::load(espace::fhir::Definitions::default_package_dir(), &d);
    if (!s) FAIL("cannot load the R4 definitions: " << s.message());
    return d;
  }();
  return *defs;
}

Request make_request(std::string method, std::string target, std::string body = {}) {
  Request r;
  r.method = std::move(method);
  r.target = std::move(target);
  REQUIRE(espace::http::parse_target(r.target, &r.path, &r.query));
  r.headers.add("Host", "localhost");
  r.headers.add("Accept", "application/fhir+json");
  if (!body.empty()) r.headers.add("Content-Type", "application/fhir+json");
  r.body = std::move(body);
  return r;
}

// A server's request path without the network: storage in a temporary
// directory, the open policy, and a one-worker pool that can be jammed.
class ApiRig {
 public:
  ApiRig() : pool_(1, 1) {
    char tmpl[] = "/tmp/espace-api-threads-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    dir_ = tmpl;
    espace::storage::SqliteOptions opts;
    opts.path = dir_ + "/test.db";
    opts.synchronous_full = false;
    REQUIRE(espace::storage::open_sqlite(opts, &store_).is_ok());
    services_.defs = &definitions();
    services_.store = store_.get();
    policy_ = espace::policy::make_open_policy();
    api_ = std::make_unique<espace::http::FhirApi>(services_, *policy_, pool_, espace::http::ApiOptions());
  }
  ~ApiRig() {
    release();
    pool_.shutdown();
    api_.reset();
    audit_.reset();
    store_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  espace::http::FhirApi& api() { return *api_; }
  espace::storage::Storage& store() { return *store_; }
  void set_audit() {
    audit_ = espace::policy::make_audit_trail(*store_);
    api_->set_audit_trail(audit_.get());
  }

  // Occupies the worker and fills the queue: every later post() fails.
  void jam() {
    REQUIRE(pool_.post([future = release_.get_future().share()] { future.wait(); }));
    // Wait (bounded) until the worker has taken the blocking task off the queue.
    for (int i = 0; i < 15000 && pool_.queued() != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    REQUIRE(pool_.queued() == 0);
    REQUIRE(pool_.post([] {}));
    REQUIRE_FALSE(pool_.post([] {}));
  }
  void release() {
    if (!released_) {
      released_ = true;
      release_.set_value();
    }
  }

  // The response when handle() answers before returning (on this thread or
  // by refusing), nothing when it queued the request.
  std::optional<Response> handle(Request request) {
    auto answer = std::make_shared<std::optional<Response>>();
    api_->handle(std::move(request), [answer](Response&& r) { *answer = std::move(r); });
    return *answer;
  }

 private:
  std::string dir_;
  std::unique_ptr<espace::storage::Storage> store_;
  espace::interactions::Services services_;
  std::unique_ptr<espace::policy::Policy> policy_;
  std::unique_ptr<espace::policy::AuditTrail> audit_;
  espace::http::WorkerPool pool_;
  std::unique_ptr<espace::http::FhirApi> api_;
  std::promise<void> release_;
  bool released_ = false;
};

std::string created_id(ApiRig& rig, const std::string& type, const std::string& body) {
  Response created = rig.api().handle_now(make_request("POST", "/" + type, body));
  REQUIRE(created.status == 201);
  std::string location(created.headers.get("Location"));
  size_t start = location.find("/" + type + "/");
  REQUIRE(start != std::string::npos);
  start += type.size() + 2;
  return location.substr(start, location.find('/', start) - start);
}

}  // namespace

TEST_CASE("only /health is answered on the calling thread; everything touching the storage goes to the pool",
          "[http][threads]") {
  ApiRig rig;
  const std::string id = created_id(rig, "Patient", R"({"resourceType":"Patient","gender":"female"})");
  const std::string binary_id =
      created_id(rig, "Binary", R"({"resourceType":"Binary","contentType":"text/plain","data":"aGVsbG8="})");
  rig.jam();

  auto health = rig.handle(make_request("GET", "/health"));
  REQUIRE(health);
  CHECK(health->status == 200);

  // The jammed pool refuses every request handed to it: a 503 proves the
  // request did not run on the calling (I/O) thread.
  for (const Request& queued :
       {make_request("GET", "/Patient/" + id), make_request("GET", "/Patient/" + id + "/_history/1"),
        make_request("GET", "/Patient/no-such-patient"),
        make_request("POST", "/Patient", R"({"resourceType":"Patient"})"), make_request("GET", "/Patient?gender=female"),
        make_request("GET", "/Patient/" + id + "/_history"), make_request("DELETE", "/Patient/" + id),
        make_request("GET", "/Binary/" + binary_id), make_request("GET", "/metadata")}) {
    INFO(queued.method << " " << queued.target);
    auto refused = rig.handle(queued);
    REQUIRE(refused);
    CHECK(refused->status == 503);
  }
}

TEST_CASE("with an audit trail /health is still answered on the calling thread", "[http][threads]") {
  ApiRig rig;
  rig.set_audit();
  rig.jam();
  auto health = rig.handle(make_request("GET", "/health"));
  REQUIRE(health);
  CHECK(health->status == 200);
}

namespace {

// An audit trail whose records become durable (or fail) when the test says.
class HeldTrail final : public espace::policy::AuditTrail {
 public:
  espace::fhir::Status record(const espace::policy::Caller&, const espace::interactions::FhirRequest&, int,
                              const espace::policy::AccessRecord&) override {
    return espace::fhir::Status::ok();
  }
  void record_then(const espace::policy::Caller&, const espace::interactions::FhirRequest&, int status,
                   const espace::policy::AccessRecord&, std::function<void(espace::fhir::Status)> done) override {
    std::lock_guard lock(mutex_);
    statuses_.push_back(status);
    waiting_.push_back(std::move(done));
    cv_.notify_all();
  }
  // Waits (bounded) until a record waits to be settled.
  void wait_for_record() {
    std::unique_lock lock(mutex_);
    REQUIRE(cv_.wait_for(lock, std::chrono::seconds(30), [&] { return !waiting_.empty(); }));
  }
  // Waits (bounded) for the next record, then settles it with `result`.
  int settle_next(espace::fhir::Status result) {
    std::function<void(espace::fhir::Status)> done;
    int status;
    {
      std::unique_lock lock(mutex_);
      REQUIRE(cv_.wait_for(lock, std::chrono::seconds(30), [&] { return !waiting_.empty(); }));
      done = std::move(waiting_.front());
      waiting_.erase(waiting_.begin());
      status = statuses_.front();
      statuses_.erase(statuses_.begin());
    }
    done(std::move(result));
    return status;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::function<void(espace::fhir::Status)>> waiting_;
  std::vector<int> statuses_;
};

// handle() with the answer delivered to a future.
std::future<Response> answer_of(espace::http::FhirApi& api, Request request) {
  auto promise = std::make_shared<std::promise<Response>>();
  std::future<Response> answer = promise->get_future();
  api.handle(std::move(request), [promise](Response&& r) { promise->set_value(std::move(r)); });
  return answer;
}

}  // namespace

TEST_CASE("a response waits for its audit record, and a record that fails turns it into a 503",
          "[http][threads][audit]") {
  HeldTrail trail;  // outlives the rig's FhirApi
  ApiRig rig;
  const std::string id = created_id(rig, "Patient", R"({"resourceType":"Patient","gender":"female"})");
  rig.api().set_audit_trail(&trail);

  std::future<Response> read = answer_of(rig.api(), make_request("GET", "/Patient/" + id));
  // The worker is done with the request long before this; the record is not durable yet.
  CHECK(read.wait_for(std::chrono::milliseconds(100)) == std::future_status::timeout);
  CHECK(trail.settle_next(espace::fhir::Status::ok()) == 200);
  REQUIRE(read.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  Response ok = read.get();
  CHECK(ok.status == 200);
  CHECK(ok.body.find(id) != std::string::npos);

  std::future<Response> failed = answer_of(rig.api(), make_request("GET", "/Patient/" + id));
  CHECK(trail.settle_next(espace::fhir::Status::error(espace::fhir::ErrorCategory::Internal, "exception", "disk full")) ==
        200);
  REQUIRE(failed.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  Response refused = failed.get();
  CHECK(refused.status == 503);
  CHECK(refused.body.find("could not be recorded in the audit trail") != std::string::npos);
  CHECK(refused.body.find(id) == std::string::npos);  // nothing of the resource left

  // An error answer is held the same way, with the status it would have carried on record.
  std::future<Response> missing = answer_of(rig.api(), make_request("GET", "/Patient/no-such-patient"));
  CHECK(missing.wait_for(std::chrono::milliseconds(50)) == std::future_status::timeout);
  CHECK(trail.settle_next(espace::fhir::Status::ok()) == 404);
  REQUIRE(missing.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  CHECK(missing.get().status == 404);

  // finish_held_responses() (after the pool has run the request) returns only once held answers are out.
  std::future<Response> last = answer_of(rig.api(), make_request("GET", "/Patient/" + id));
  trail.wait_for_record();
  std::thread settler([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    trail.settle_next(espace::fhir::Status::ok());
  });
  rig.api().finish_held_responses();
  CHECK(last.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
  settler.join();
}
