// The server binary over HTTPS (--tls-cert/--tls-key), with the audit trail
// on: answers of every size arrive whole, as their Content-Length says.
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "server_process.h"
#include "tls_client.h"

using espace::testing::make_certificate;
using espace::testing::ServerProcess;
using espace::testing::tls_request;
using espace::testing::TlsExchange;

namespace {

// The body of an HTTP/1.1 answer after checking it is as long as its Content-Length says.
std::string checked_body(const TlsExchange& answer) {
  const size_t end_of_head = answer.response.find("\r\n\r\n");
  REQUIRE(end_of_head != std::string::npos);
  const std::string head = answer.response.substr(0, end_of_head);
  const size_t at = head.find("Content-Length: ");
  REQUIRE(at != std::string::npos);
  const size_t length = std::stoul(head.substr(at + 16));
  std::string body = answer.response.substr(end_of_head + 4);
  CHECK(body.size() == length);
  return body;
}

std::string request(const std::string& method, const std::string& target, const std::string& body = {}) {
  std::string r = method + " " + target + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
  if (!body.empty())
    r += "Content-Type: application/fhir+json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  return r + "\r\n" + body;
}

}  // namespace

TEST_CASE("over HTTPS, small and large answers arrive whole", "[server][tls]") {
  char tmpl[] = "/tmp/espace-https-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::filesystem::path dir = tmpl;
  const std::string cert = (dir / "cert.pem").string(), key = (dir / "key.pem").string();
  make_certificate(cert, key, 4004);
  {
    ServerProcess server({"--tls-cert", cert, "--tls-key", key});

    TlsExchange metadata = tls_request(server.port(), request("GET", "/metadata"));
    REQUIRE(metadata.ok);
    CHECK(metadata.response.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    const std::string capabilities = checked_body(metadata);
    CHECK(capabilities.size() > 100000);
    CHECK(capabilities.find("\"resourceType\":\"CapabilityStatement\"") != std::string::npos);

    const std::string patient =
        R"({"resourceType":"Patient","id":"tls1","name":[{"family":")" + std::string(200000, 'a') + R"("}]})";
    TlsExchange created = tls_request(server.port(), request("PUT", "/Patient/tls1", patient));
    REQUIRE(created.ok);
    CHECK(created.response.rfind("HTTP/1.1 201 Created\r\n", 0) == 0);
    CHECK(checked_body(created).size() > 200000);

    TlsExchange read = tls_request(server.port(), request("GET", "/Patient/tls1"));
    REQUIRE(read.ok);
    CHECK(checked_body(read).find(std::string(200000, 'a')) != std::string::npos);

    TlsExchange health = tls_request(server.port(), request("GET", "/health"));
    REQUIRE(health.ok);
    CHECK(checked_body(health).find("ok") != std::string::npos);
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}
