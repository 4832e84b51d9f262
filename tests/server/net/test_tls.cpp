// HTTPS through the same Server: a self-signed certificate made with the
// OpenSSL API at test time, and an OpenSSL client over a plain socket.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <vector>
#include <mutex>
#include <string>
#include <thread>

#include "espace/net/server.h"
#include "tls_client.h"

namespace {

using espace::testing::make_certificate;
using espace::testing::tls_request;
using espace::testing::TlsExchange;

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/espace-tls-XXXXXX";
    char* made = ::mkdtemp(tmpl);
    REQUIRE(made != nullptr);
    path = made;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

void hello_handler(espace::http::Request&& r, espace::http::Responder respond) {
  espace::http::Response res;
  res.body = "secure " + r.path;
  respond(std::move(res));
}

}  // namespace

TEST_CASE("HTTPS requests are served and a reload switches certificates", "[net][tls]") {
  TempDir dir;
  const std::string cert = (dir.path / "cert.pem").string();
  const std::string key = (dir.path / "key.pem").string();
  make_certificate(cert, key, 1001);

  espace::net::ServerOptions o;
  o.port = 0;
  o.request_timeout = std::chrono::seconds(5);
  o.tls_cert_file = cert;
  o.tls_key_file = key;
  espace::net::Server server(o, hello_handler);
  REQUIRE(server.start().is_ok());
  std::thread runner([&] { server.run(); });

  const std::string request = "GET /Patient?x=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  TlsExchange first = tls_request(server.port(), request);
  CHECK(first.ok);
  CHECK(first.peer_serial == 1001);
  CHECK(first.response.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(first.response.find("\r\n\r\nsecure /Patient") != std::string::npos);

  // Plain HTTP on the TLS port gets no HTTP answer.
  {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(server.port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{15, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    char buf[256];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    CHECK((n <= 0 || std::string(buf, static_cast<size_t>(n)).rfind("HTTP/", 0) != 0));
    ::close(fd);
  }

  make_certificate(cert, key, 2002);
  REQUIRE(server.reload_tls().is_ok());
  TlsExchange second = tls_request(server.port(), request);
  CHECK(second.ok);
  CHECK(second.peer_serial == 2002);

  // A broken key file is refused and the working material stays.
  {
    FILE* f = std::fopen(key.c_str(), "w");
    std::fputs("not a key", f);
    std::fclose(f);
  }
  CHECK_FALSE(server.reload_tls().is_ok());
  TlsExchange third = tls_request(server.port(), request);
  CHECK(third.ok);
  CHECK(third.peer_serial == 2002);

  server.stop();
  runner.join();
}

TEST_CASE("an HTTPS answer may come from a thread of the handler's own", "[net][tls]") {
  // As with the audit trail on: the answer leaves from the thread that made
  // the request's record durable, not from an I/O thread.
  TempDir dir;
  const std::string cert = (dir.path / "cert.pem").string();
  const std::string key = (dir.path / "key.pem").string();
  make_certificate(cert, key, 3003);
  std::mutex mutex;
  std::vector<std::thread> answerers;
  espace::net::ServerOptions o;
  o.port = 0;
  o.request_timeout = std::chrono::seconds(5);
  o.tls_cert_file = cert;
  o.tls_key_file = key;
  espace::net::Server server(o, [&](espace::http::Request&& r, espace::http::Responder respond) {
    std::lock_guard lock(mutex);
    answerers.emplace_back([path = r.path, respond = std::move(respond)]() mutable {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      espace::http::Response res;
      res.body = "later " + path + " " + std::string(100000, 'x');  // more than one TLS record
      respond(std::move(res));
    });
  });
  REQUIRE(server.start().is_ok());
  std::thread runner([&] { server.run(); });
  for (int i = 0; i < 3; ++i) {
    TlsExchange answer = tls_request(server.port(), "GET /Patient/" + std::to_string(i) +
                                                        " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    CHECK(answer.ok);
    CHECK(answer.response.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    CHECK(answer.response.find("\r\n\r\nlater /Patient/" + std::to_string(i) + " xxx") != std::string::npos);
    CHECK(answer.response.size() > 100000);
  }
  {
    std::lock_guard lock(mutex);
    for (auto& t : answerers) t.join();
  }
  server.stop();
  runner.join();
}

TEST_CASE("start fails on an unreadable certificate", "[net][tls]") {
  espace::net::ServerOptions o;
  o.port = 0;
  o.tls_cert_file = "/nonexistent/cert.pem";
  o.tls_key_file = "/nonexistent/key.pem";
  espace::net::Server server(o, hello_handler);
  espace::fhir::Status st = server.start();
  CHECK_FALSE(st.is_ok());
  CHECK(st.message().find("/nonexistent/cert.pem") != std::string::npos);
}
