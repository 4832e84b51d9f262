// ExportJobs (interactions/bulk_export.h) in-process over a real SQLite store:
// what the HTTP tests cannot pin down because jobs finish too fast there —
// the per-requester and global limits while jobs run, cancellation of a
// running job, patients the opener refuses, files split by line count.
#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "espace/interactions/bulk_export.h"
#include "search_fixture.h"

using espace::fhir::Status;
using espace::interactions::ExportAnswer;
using espace::interactions::ExportEndpoint;
using espace::interactions::ExportJobs;
using espace::interactions::ExportOptions;
using espace::interactions::ExportView;
using espace::interactions::ExportViewOpener;
using espace::interactions::FhirRequest;
using espace::interactions::Interaction;
using espace::interactions::Services;

namespace {

namespace fs = std::filesystem;

// The base services themselves, as the view of an unrestricted requester.
class PlainView final : public ExportView {
 public:
  explicit PlainView(const Services& s) : s_(s) {}
  const Services& services() const override { return s_; }

 private:
  const Services& s_;
};

// Holds every job inside the opener until released.
struct Gate {
  std::mutex m;
  std::condition_variable cv;
  bool open = false;
  int waiting = 0;
  void release() {
    std::lock_guard<std::mutex> l(m);
    open = true;
    cv.notify_all();
  }
  void wait_for_waiters(int n) {
    std::unique_lock<std::mutex> l(m);
    REQUIRE(cv.wait_for(l, std::chrono::seconds(30), [&] { return waiting >= n; }));
  }
};

ExportViewOpener gated(const Services& s, Gate& gate) {
  return [&s, &gate](const FhirRequest&, std::unique_ptr<ExportView>* out) {
    std::unique_lock<std::mutex> l(gate.m);
    ++gate.waiting;
    gate.cv.notify_all();
    gate.cv.wait(l, [&] { return gate.open; });
    *out = std::make_unique<PlainView>(s);
    return Status::ok();
  };
}

ExportViewOpener plain(const Services& s) {
  return [&s](const FhirRequest&, std::unique_ptr<ExportView>* out) {
    *out = std::make_unique<PlainView>(s);
    return Status::ok();
  };
}

FhirRequest kick(const std::string& patient) {
  FhirRequest r;
  r.interaction = Interaction::Operation;
  r.operation = "export";
  r.method = "GET";
  r.type = "Patient";
  r.id = patient;
  r.base_url = "http://test";
  return r;
}

std::string job_of(const ExportAnswer& a) {
  for (const auto& [name, value] : a.headers)
    if (name == "Content-Location") return value.substr(value.find("_jobId=") + 7);
  return "";
}

// Polls until the job is no longer running; the final answer.
ExportAnswer finish(ExportJobs& jobs, const std::string& job, const std::string& owner) {
  for (int i = 0; i < 3000; ++i) {
    ExportAnswer a = jobs.follow_up(ExportEndpoint::PollStatus, "GET", {{"_jobId", job}}, owner);
    if (a.status != 202) return a;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  FAIL("the job never finished");
  return {};
}

int job_dirs(const fs::path& dir) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.path().filename().string().rfind("job-", 0) == 0;
  return n;
}

struct Fixture {
  search_test::Server server;
  fs::path dir;
  Fixture() {
    char tmpl[] = "/tmp/espace-export-unit-XXXXXX";
    dir = ::mkdtemp(tmpl);
    REQUIRE(server.put(R"({"resourceType":"Patient","id":"p1"})") == 201);
    REQUIRE(server.put(R"({"resourceType":"Patient","id":"p2"})") == 201);
    for (int i = 0; i < 5; ++i)
      REQUIRE(server.put(R"({"resourceType":"Observation","id":"o)" + std::to_string(i) +
                         R"(","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}})") == 201);
  }
  ~Fixture() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  ExportOptions options() {
    ExportOptions o;
    o.directory = (dir / "export").string();
    return o;
  }
};

}  // namespace

TEST_CASE("export: running jobs are limited per requester and in all", "[export]") {
  Fixture f;
  ExportOptions o = f.options();
  o.max_jobs_per_owner = 1;
  o.max_running_jobs = 2;
  Gate gate;
  {
    ExportJobs jobs(f.server.services(), o);
    REQUIRE(jobs.start().is_ok());
    ExportAnswer first = jobs.kick_off(kick("p1"), "respond-async", "alice", false, gated(f.server.services(), gate));
    REQUIRE(first.status == 202);
    gate.wait_for_waiters(1);
    ExportAnswer again = jobs.kick_off(kick("p1"), "respond-async", "alice", false, plain(f.server.services()));
    CHECK(again.status == 429);
    bool retry_after = false;
    for (const auto& [name, value] : again.headers) retry_after = retry_after || name == "Retry-After";
    CHECK(retry_after);
    ExportAnswer other = jobs.kick_off(kick("p1"), "respond-async", "bob", false, gated(f.server.services(), gate));
    CHECK(other.status == 202);
    gate.wait_for_waiters(2);
    // Two running in all: a third requester waits too.
    CHECK(jobs.kick_off(kick("p1"), "respond-async", "carol", false, plain(f.server.services())).status == 429);
    gate.release();
    CHECK(finish(jobs, job_of(first), "alice").status == 200);
    CHECK(finish(jobs, job_of(other), "bob").status == 200);
    // Finished jobs no longer count.
    ExportAnswer later = jobs.kick_off(kick("p1"), "respond-async", "alice", false, plain(f.server.services()));
    CHECK(later.status == 202);
    CHECK(finish(jobs, job_of(later), "alice").status == 200);
  }
  // Stopping removes every job's files.
  CHECK(job_dirs(f.dir / "export") == 0);
}

TEST_CASE("export: DELETE of a running job cancels it and its files go", "[export]") {
  Fixture f;
  Gate gate;
  ExportJobs jobs(f.server.services(), f.options());
  REQUIRE(jobs.start().is_ok());
  ExportAnswer started = jobs.kick_off(kick("p1"), "respond-async", "alice", false, gated(f.server.services(), gate));
  REQUIRE(started.status == 202);
  gate.wait_for_waiters(1);
  std::string job = job_of(started);
  CHECK(jobs.follow_up(ExportEndpoint::PollStatus, "DELETE", {{"_jobId", job}}, "bob").status == 404);
  CHECK(jobs.follow_up(ExportEndpoint::PollStatus, "DELETE", {{"_jobId", job}}, "alice").status == 202);
  CHECK(jobs.follow_up(ExportEndpoint::PollStatus, "GET", {{"_jobId", job}}, "alice").status == 404);
  gate.release();
  // The cancelled job stops at its next step and leaves nothing behind.
  for (int i = 0; i < 3000 && job_dirs(f.dir / "export") > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    (void)jobs.follow_up(ExportEndpoint::PollStatus, "GET", {{"_jobId", job}}, "alice");  // sweeps
  }
  CHECK(job_dirs(f.dir / "export") == 0);
}

TEST_CASE("export: patients the requester may not reach are skipped", "[export]") {
  Fixture f;
  ExportJobs jobs(f.server.services(), f.options());
  REQUIRE(jobs.start().is_ok());
  ExportViewOpener only_p2 = [&](const FhirRequest& as_if, std::unique_ptr<ExportView>* out) {
    if (as_if.id != "p2")
      return Status::error(espace::fhir::ErrorCategory::Forbidden, "forbidden", "not this one");
    *out = std::make_unique<PlainView>(f.server.services());
    return Status::ok();
  };
  FhirRequest all = kick("");
  all.id.clear();
  CHECK(jobs.kick_off(all, "respond-async", "sys", false, only_p2).status == 403);  // not a system
  ExportAnswer started = jobs.kick_off(all, "respond-async", "sys", true, only_p2);
  REQUIRE(started.status == 202);
  ExportAnswer done = finish(jobs, job_of(started), "sys");
  REQUIRE(done.status == 200);
  rapidjson::Document manifest;
  manifest.Parse(done.body.c_str());
  REQUIRE(manifest["output"].Size() == 1);
  CHECK(std::string(manifest["output"][0]["type"].GetString()) == "Patient");
  CHECK(manifest["output"][0]["count"].GetInt() == 1);
  ExportAnswer file = jobs.follow_up(ExportEndpoint::File, "GET",
                                     {{"_jobId", job_of(started)}, {"_file", "Patient.ndjson"}}, "sys");
  REQUIRE(file.status == 200);
  CHECK(file.body.find("\"id\":\"p2\"") != std::string::npos);
  CHECK(file.body.find("\"id\":\"p1\"") == std::string::npos);
  CHECK(file.patients == std::vector<std::string>{"p2"});
}

TEST_CASE("export: a type with more lines than a file holds gets several files", "[export]") {
  Fixture f;
  ExportOptions o = f.options();
  o.max_lines_per_file = 2;
  ExportJobs jobs(f.server.services(), o);
  REQUIRE(jobs.start().is_ok());
  FhirRequest req = kick("p1");
  req.params = {{"_type", "Observation"}};
  ExportAnswer started = jobs.kick_off(req, "respond-async", "alice", false, plain(f.server.services()));
  REQUIRE(started.status == 202);
  ExportAnswer done = finish(jobs, job_of(started), "alice");
  REQUIRE(done.status == 200);
  rapidjson::Document manifest;
  manifest.Parse(done.body.c_str());
  std::map<std::string, int> counts;
  std::set<std::string> ids;
  for (const auto& o2 : manifest["output"].GetArray()) {
    std::string url = o2["url"].GetString();
    std::string name = url.substr(url.find("_file=") + 6);
    counts[name] = o2["count"].GetInt();
    ExportAnswer file = jobs.follow_up(ExportEndpoint::File, "GET", {{"_jobId", job_of(started)}, {"_file", name}},
                                       "alice");
    REQUIRE(file.status == 200);
    std::istringstream lines(file.body);
    int n = 0;
    for (std::string line; std::getline(lines, line); ++n) {
      rapidjson::Document d;
      d.Parse(line.c_str());
      REQUIRE_FALSE(d.HasParseError());
      ids.insert(d["id"].GetString());
    }
    CHECK(n == counts[name]);
  }
  CHECK(counts == std::map<std::string, int>{{"Observation.ndjson", 2}, {"Observation.2.ndjson", 2},
                                             {"Observation.3.ndjson", 1}});
  CHECK(ids == std::set<std::string>{"o0", "o1", "o2", "o3", "o4"});
}
