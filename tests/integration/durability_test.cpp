// Acknowledged writes survive kill -9 of the server process.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <atomic>
#include <filesystem>
#include <catch2/catch.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "http_client.h"
#include "server_process.h"

using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::ServerProcess;

TEST_CASE("acknowledged creates survive SIGKILL", "[durability]") {
  std::string db;
  std::vector<std::string> acknowledged;
  std::mutex mu;
  {
    ServerProcess server;
    db = server.db_path();
    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (int t = 0; t < 8; ++t) {
      writers.emplace_back([&, t] {
        HttpClient c("127.0.0.1", server.port());
        for (int i = 0; !stop; ++i) {
          std::string body = R"({"resourceType":"Patient","id":"k)" + std::to_string(t) + "-" + std::to_string(i) +
                             R"(","active":true})";
          try {
            HttpResponse r = c.request("PUT", "/Patient/k" + std::to_string(t) + "-" + std::to_string(i), body);
            if (r.status == 201) {
              std::lock_guard<std::mutex> lock(mu);
              acknowledged.push_back("k" + std::to_string(t) + "-" + std::to_string(i));
            }
          } catch (const std::exception&) {
            return;  // the server is gone
          }
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    int status = server.stop(SIGKILL);  // mid-stream, no chance to flush anything
    CHECK(WIFSIGNALED(status));
    stop = true;
    for (auto& w : writers) w.join();
    // Keep the database: the ServerProcess destructor would remove its directory.
    char dir_template[] = "/tmp/espace-durability-XXXXXX";
    REQUIRE(mkdtemp(dir_template) != nullptr);
    std::string keep = std::string(dir_template) + "/espace.db";
    std::filesystem::copy_file(db, keep, std::filesystem::copy_options::overwrite_existing);
    for (const char* suffix : {"-wal", "-shm", "-audit"}) {
      std::error_code ec;
      std::filesystem::copy_file(db + suffix, keep + suffix, std::filesystem::copy_options::overwrite_existing, ec);
    }
    db = keep;
  }
  REQUIRE(acknowledged.size() > 50);
  WARN("acknowledged writes before SIGKILL: " << acknowledged.size());
  std::unique_ptr<ServerProcess> restarted_holder = std::make_unique<ServerProcess>(std::vector<std::string>{}, db);
  ServerProcess& restarted = *restarted_holder;
  HttpClient c("127.0.0.1", restarted.port());
  // Each acknowledged write's audit record is there too (durable before the
  // response, in the audit journal then the table): checked for the last
  // hundred, those nearest the kill, before any read adds records about them.
  size_t unrecorded = 0;
  for (size_t i = acknowledged.size() > 100 ? acknowledged.size() - 100 : 0; i < acknowledged.size(); ++i) {
    HttpResponse events = c.get("/AuditEvent?patient=" + acknowledged[i]);
    if (events.status != 200 || events.body.find("\"subtype\":[{\"system\":\"http://hl7.org/fhir/restful-interaction\","
                                                 "\"code\":\"update\"}]") == std::string::npos)
      ++unrecorded;
  }
  CHECK(unrecorded == 0);
  size_t missing = 0;
  for (const std::string& id : acknowledged)
    if (c.get("/Patient/" + id).status != 200) ++missing;
  CHECK(missing == 0);
  restarted_holder.reset();
  std::error_code ec;
  std::filesystem::remove_all(std::filesystem::path(db).parent_path(), ec);
}
