// Server behaviour around the interactions: graceful stop, the access log,
// the refusal to start without an access policy.
#include <signal.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <regex>
#include <string>
#include <thread>

#include "http_client.h"
#include "server_process.h"

using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::ServerProcess;

TEST_CASE("SIGTERM lets an in-flight request finish", "[server]") {
  ServerProcess server;
  std::string tx = R"({"resourceType":"Bundle","type":"transaction","entry":[)";
  for (int i = 0; i < 5000; ++i) {
    if (i) tx += ',';
    tx += R"({"resource":{"resourceType":"Patient","name":[{"family":"F)" + std::to_string(i) +
          R"("}]},"request":{"method":"POST","url":"Patient"}})";
  }
  tx += "]}";
  HttpResponse response;
  std::thread client([&] {
    HttpClient c("127.0.0.1", server.port());
    response = c.request("POST", "/", tx, {{"Prefer", "return=minimal"}});
  });
  // Give the request time to be read and started, then ask the server to stop.
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  int status = server.stop(SIGTERM);
  client.join();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(response.status == 200);
}

TEST_CASE("the access log names the kind of request, never ids or query strings", "[server]") {
  ServerProcess server;
  {
    HttpClient c("127.0.0.1", server.port());
    REQUIRE(c.request("PUT", "/Patient/secret-id-42", R"({"resourceType":"Patient","id":"secret-id-42"})").status ==
            201);
    REQUIRE(c.get("/Patient/secret-id-42/_history/1").status == 200);
    c.get("/Patient?family=Confidentielle");
  }
  server.stop(SIGTERM);
  std::string log = server.log();
  CHECK(log.find("PUT /Patient/:id 201") != std::string::npos);
  CHECK(log.find("GET /Patient/:id/_history/:id 200") != std::string::npos);
  // Method, masked path, status, bytes in, bytes out, duration in milliseconds.
  CHECK(std::regex_search(log, std::regex("\nGET /Patient/:id/_history/:id 200 [0-9]+ [1-9][0-9]* [0-9]+\\.[0-9]{3}ms\n")));
  CHECK(log.find("secret-id-42") == std::string::npos);
  CHECK(log.find("Confidentielle") == std::string::npos);
}

TEST_CASE("serve refuses to start without an access policy", "[server]") {
  std::string out, err;
  int rc = espace::testing::run_espace({"serve", "--port", "0", "--db", "/tmp/espace-never-created.db"}, &out, &err);
  CHECK(rc == 2);
  CHECK(err.find("--auth none") != std::string::npos);
  rc = espace::testing::run_espace({"serve", "--port", "0", "--auth", "none", "--bogus"}, &out, &err);
  CHECK(rc == 2);
  CHECK(err.find("unknown option --bogus") != std::string::npos);
}
