// In-process tests of espace::net::Server through a raw POSIX socket client,
// so the test itself speaks HTTP/1.1 byte by byte and includes no Beast.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "espace/http/worker_pool.h"
#include "espace/net/server.h"

using espace::http::Request;
using espace::http::Responder;
using espace::http::Response;
using espace::net::AccessLogEntry;
using espace::net::Server;
using espace::net::ServerOptions;

namespace {

// Upper bound on any single wait so a broken server fails a test instead of
// hanging it. Not a performance assertion.
constexpr int kSafetyTimeoutMs = 15000;

struct RawResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }

  // False when the peer has closed (EPIPE / ECONNRESET).
  bool send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Waits up to timeout_ms for bytes; appends them to the buffer. Returns the
  // count, 0 on EOF, -1 on error or timeout.
  ssize_t fill(int timeout_ms = kSafetyTimeoutMs) {
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, timeout_ms);
    if (r <= 0) return -1;
    char chunk[16384];
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) buffer_.append(chunk, static_cast<size_t>(n));
    if (n < 0 && errno == ECONNRESET) return 0;
    return n;
  }

  // Reads one response (Content-Length framing, as the server always sends).
  std::optional<RawResponse> read_response(bool head_request = false) {
    size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (fill() <= 0) return std::nullopt;
    }
    RawResponse r;
    std::string head = buffer_.substr(0, end);
    buffer_.erase(0, end + 4);
    size_t line_end = head.find("\r\n");
    std::string status_line = head.substr(0, line_end);
    if (status_line.rfind("HTTP/1.1 ", 0) != 0) return std::nullopt;
    r.status = std::stoi(status_line.substr(9, 3));
    size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      size_t next = head.find("\r\n", pos);
      std::string line = head.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
      size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.erase(0, 1);
        r.headers[lower(line.substr(0, colon))] = value;
      }
      pos = next == std::string::npos ? head.size() : next + 2;
    }
    size_t length = r.headers.count("content-length") ? std::stoul(r.headers["content-length"]) : 0;
    if (head_request || r.status == 100 || r.status == 204 || r.status == 304) length = 0;
    while (buffer_.size() < length) {
      if (fill() <= 0) return std::nullopt;
    }
    r.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    return r;
  }

  // True when the server closes the connection (EOF or reset) within the wait.
  bool closed_by_peer(int timeout_ms = kSafetyTimeoutMs) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      int left = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
      ssize_t n = fill(std::max(left, 1));
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
    return false;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string buffer_;
};

std::string get(std::string_view target, std::string_view extra_headers = "") {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: test\r\n" + std::string(extra_headers) + "\r\n";
}

// Runs a Server on an ephemeral port in a background thread.
class TestServer {
 public:
  TestServer(ServerOptions options, espace::http::Handler handler) {
    options.port = 0;
    server_ = std::make_unique<Server>(std::move(options), std::move(handler), [this](const AccessLogEntry& e) {
      std::lock_guard<std::mutex> lock(log_mutex_);
      log_.push_back(LogLine{std::string(e.method), std::string(e.path), e.status, e.bytes_in, e.bytes_out,
                             e.duration_us, std::string(e.remote)});
      log_cv_.notify_all();
    });
    espace::fhir::Status st = server_->start();
    REQUIRE(st.is_ok());
    REQUIRE(server_->port() != 0);
    runner_ = std::thread([this] {
      server_->run();
      run_returned_ = true;
    });
  }
  ~TestServer() { stop_and_join(); }

  void stop_and_join() {
    if (runner_.joinable()) {
      server_->stop();
      runner_.join();
    }
  }
  uint16_t port() const { return server_->port(); }
  Server& server() { return *server_; }
  bool run_returned() const { return run_returned_; }

  struct LogLine {
    std::string method, path;
    int status;
    size_t bytes_in, bytes_out;
    int64_t duration_us;
    std::string remote;
  };
  // The access log is written after the response bytes went out, so the
  // client may read the response before the entry exists: wait for it.
  std::vector<LogLine> wait_for_log(size_t count) {
    std::unique_lock<std::mutex> lock(log_mutex_);
    log_cv_.wait_for(lock, std::chrono::milliseconds(kSafetyTimeoutMs), [&] { return log_.size() >= count; });
    return log_;
  }

 private:
  std::unique_ptr<Server> server_;
  std::thread runner_;
  std::atomic<bool> run_returned_{false};
  std::mutex log_mutex_;
  std::condition_variable log_cv_;
  std::vector<LogLine> log_;
};

// A handler that keeps the Responder of the request it receives, so that the
// test answers it when it chooses (or never). A Responder keeps its
// connection alive and must not outlive the Server (as a worker pool's tasks
// must not): a ReleaseOnExit declared after the TestServer drops it first,
// even when a REQUIRE fails.
class ParkedRequest {
 public:
  espace::http::Handler handler() {
    return [this](Request&&, Responder respond) {
      std::lock_guard<std::mutex> lock(mutex_);
      responder_ = std::move(respond);
      arrived_.notify_all();
    };
  }
  // Whether a request was parked within the safety timeout.
  bool wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    return arrived_.wait_for(lock, std::chrono::milliseconds(kSafetyTimeoutMs),
                             [&] { return responder_.has_value(); });
  }
  void answer(Response&& response) { (*responder_)(std::move(response)); }
  void release() { responder_.reset(); }

  struct ReleaseOnExit {
    ParkedRequest& parked;
    ~ReleaseOnExit() { parked.release(); }
  };

 private:
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::optional<Responder> responder_;
};

// Answers with a description of the request it saw.
void echo_handler(Request&& r, Responder respond) {
  Response res;
  res.status = 200;
  res.headers.set("Content-Type", "text/plain");
  std::string body = r.method + " " + r.path + "\n";
  for (const auto& [k, v] : r.query) body += "q:" + k + "=" + v + "\n";
  body += "remote:" + r.remote_address + "\n";
  body += "x-test:" + std::string(r.headers.get("x-test")) + "\n";
  body += "body:" + r.body;
  res.body = std::move(body);
  respond(std::move(res));
}

ServerOptions small_options() {
  ServerOptions o;
  o.io_threads = 2;
  o.max_body_bytes = 1024;
  o.max_header_bytes = 2048;
  o.request_timeout = std::chrono::seconds(1);
  o.idle_timeout = std::chrono::seconds(1);
  o.shutdown_grace = std::chrono::seconds(10);
  return o;
}

}  // namespace

TEST_CASE("a request reaches the handler decoded and the answer comes back", "[net]") {
  TestServer ts(small_options(), echo_handler);
  Client c(ts.port());
  REQUIRE(c.connected());
  REQUIRE(c.send("POST /Patient/_search?name=Jos%C3%A9+M&x=1 HTTP/1.1\r\nHost: t\r\nX-Test: hello\r\n"
                 "Content-Length: 5\r\n\r\nabcde"));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->header("server") == "espace");
  CHECK(r->header("date").size() == 29);  // "Sun, 06 Nov 1994 08:49:37 GMT"
  CHECK(r->header("date").substr(25) == " GMT");
  CHECK(r->header("content-type") == "text/plain");
  CHECK(r->header("content-length") == std::to_string(r->body.size()));
  CHECK(r->body == "POST /Patient/_search\nq:name=José M\nq:x=1\nremote:127.0.0.1\nx-test:hello\nbody:abcde");
}

TEST_CASE("keep-alive serves several requests on one connection", "[net]") {
  TestServer ts(small_options(), echo_handler);
  Client c(ts.port());
  REQUIRE(c.connected());
  for (int i = 0; i < 3; ++i) {
    REQUIRE(c.send(get("/Patient/" + std::to_string(i))));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body.rfind("GET /Patient/" + std::to_string(i) + "\n", 0) == 0);
    CHECK(lower(r->header("connection")) != "close");
  }
  // A chunked body is reassembled too.
  REQUIRE(c.send("PUT /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->body.find("body:abcde") != std::string::npos);
  // Connection: close is honoured.
  REQUIRE(c.send(get("/last", "Connection: close\r\n")));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(lower(r->header("connection")) == "close");
  CHECK(c.closed_by_peer());
}

TEST_CASE("an oversized body is answered 413 and the connection closed", "[net]") {
  TestServer ts(small_options(), echo_handler);
  SECTION("declared by Content-Length") {
    Client c(ts.port());
    REQUIRE(c.send("POST /Patient HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + std::string(2000, 'x')));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 413);
    CHECK(r->header("content-type").find("application/fhir+json") == 0);
    CHECK(r->body.find("\"resourceType\":\"OperationOutcome\"") != std::string::npos);
    CHECK(r->body.find("\"code\":\"too-costly\"") != std::string::npos);
    CHECK(c.closed_by_peer());
  }
  SECTION("sent chunked") {
    Client c(ts.port());
    std::string chunk(600, 'y');
    REQUIRE(c.send("POST /Patient HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n" + chunk +
                   "\r\n258\r\n" + chunk + "\r\n"));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 413);
    CHECK(c.closed_by_peer());
  }
  SECTION("a body at the limit is fine") {
    Client c(ts.port());
    REQUIRE(c.send("POST /Patient HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n" + std::string(1024, 'z')));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
  }
}

TEST_CASE("huge headers are answered 431", "[net]") {
  TestServer ts(small_options(), echo_handler);
  Client c(ts.port());
  REQUIRE(c.send(get("/Patient", "X-Big: " + std::string(4000, 'h') + "\r\n")));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 431);
  CHECK(r->body.find("\"code\":\"too-costly\"") != std::string::npos);
  CHECK(c.closed_by_peer());
}

TEST_CASE("garbage and malformed targets are answered 400", "[net]") {
  std::atomic<int> handled{0};
  TestServer ts(small_options(), [&](Request&& r, Responder respond) {
    handled++;
    echo_handler(std::move(r), std::move(respond));
  });
  SECTION("not HTTP at all") {
    Client c(ts.port());
    REQUIRE(c.send("\x16\x03\x01 this is not HTTP\r\n\r\n"));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(r->body.find("\"code\":\"structure\"") != std::string::npos);
    CHECK(c.closed_by_peer());
  }
  SECTION("a bad header line") {
    Client c(ts.port());
    REQUIRE(c.send("GET / HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n"));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 400);
  }
  SECTION("a malformed percent-encoding never reaches the handler") {
    Client c(ts.port());
    REQUIRE(c.send(get("/Patient?name=%zz")));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 400);
    // The request was framed correctly, so the connection stays usable.
    REQUIRE(c.send(get("/Patient")));
    r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(handled.load() == 1);
  }
}

TEST_CASE("a slowloris client is cut off at the request timeout", "[net]") {
  TestServer ts(small_options(), echo_handler);  // request_timeout = 1 s
  SECTION("silent after connecting") {
    Client c(ts.port());
    REQUIRE(c.connected());
    CHECK(c.closed_by_peer(5000));
  }
  SECTION("trickling header bytes does not extend the deadline") {
    Client c(ts.port());
    const std::string request = get("/Patient", "X-Slow: " + std::string(200, 's') + "\r\n");
    bool closed = false;
    // One byte every 100 ms would take 20+ s; the server must close after ~1 s.
    for (size_t i = 0; i < request.size() - 1 && !closed; ++i) {
      if (!c.send(request.substr(i, 1))) {
        closed = true;
        break;
      }
      ssize_t n = c.fill(100);
      if (n == 0 || (n < 0 && errno == ECONNRESET)) closed = true;
    }
    CHECK(closed);
  }
  SECTION("a body that stops arriving") {
    Client c(ts.port());
    REQUIRE(c.send("POST /Patient HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly part"));
    CHECK(c.closed_by_peer(5000));
  }
}

TEST_CASE("an idle keep-alive connection is closed after idle_timeout", "[net]") {
  TestServer ts(small_options(), echo_handler);  // idle_timeout = 1 s
  Client c(ts.port());
  REQUIRE(c.send(get("/one")));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(c.closed_by_peer(5000));
}

TEST_CASE("Expect: 100-continue gets an interim response before the body", "[net]") {
  TestServer ts(small_options(), echo_handler);
  Client c(ts.port());
  REQUIRE(c.send("POST /Patient HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"));
  auto interim = c.read_response();
  REQUIRE(interim);
  CHECK(interim->status == 100);
  REQUIRE(c.send("data"));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body.find("body:data") != std::string::npos);
}

TEST_CASE("HEAD gets the length of the body without the body", "[net]") {
  TestServer ts(small_options(), echo_handler);
  Client c(ts.port());
  REQUIRE(c.send("HEAD /Patient HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto r = c.read_response(/*head_request=*/true);
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->header("content-length") == std::to_string(std::string("HEAD /Patient\nremote:127.0.0.1\nx-test:\nbody:").size()));
  // The next response on the connection starts right after the head.
  REQUIRE(c.send(get("/next")));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->body.rfind("GET /next\n", 0) == 0);
}

TEST_CASE("responses from other threads, dropped responders and unsafe headers", "[net]") {
  std::vector<std::thread> workers;
  std::mutex workers_mutex;
  TestServer ts(small_options(), [&](Request&& r, Responder respond) {
    if (r.path == "/drop") return;  // never answers: the server must answer 500
    if (r.path == "/throw") throw std::runtime_error("handler bug");
    if (r.path == "/inject") {
      Response res;
      res.headers.set("Location", "x\r\nSet-Cookie: evil=1");
      res.headers.set("X-Fine", "ok");
      res.body = "i";
      return respond(std::move(res));
    }
    std::lock_guard<std::mutex> lock(workers_mutex);
    workers.emplace_back([respond = std::move(respond)]() mutable {
      Response res;
      res.status = 201;
      res.body = "from a worker";
      respond(std::move(res));
      Response again;
      again.status = 202;
      respond(std::move(again));  // a second answer is ignored
    });
  });
  Client c(ts.port());
  REQUIRE(c.send(get("/worker")));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 201);
  CHECK(r->body == "from a worker");
  REQUIRE(c.send(get("/drop")));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 500);
  CHECK(r->body.find("OperationOutcome") != std::string::npos);
  REQUIRE(c.send(get("/throw")));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 500);
  REQUIRE(c.send(get("/inject")));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->header("set-cookie").empty());
  CHECK(r->header("location").empty());
  CHECK(r->header("x-fine") == "ok");
  // The 202 must not have been sent as an extra response on the connection.
  REQUIRE(c.send(get("/worker")));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 201);
  ts.stop_and_join();
  for (auto& t : workers) t.join();
}

TEST_CASE("graceful stop finishes an in-flight request and closes idle connections", "[net]") {
  ParkedRequest parked;
  TestServer ts(small_options(), parked.handler());
  ParkedRequest::ReleaseOnExit release{parked};

  Client idle(ts.port());
  Client busy(ts.port());
  REQUIRE(busy.send(get("/slow")));
  REQUIRE(parked.wait());
  // The idle client has connected but sent nothing: stop() closes it.
  ts.server().stop();
  CHECK(idle.closed_by_peer(5000));
  CHECK_FALSE(ts.run_returned());  // the slow request is still in flight

  Response res;
  res.body = "finished";
  parked.answer(std::move(res));
  auto r = busy.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "finished");
  CHECK(lower(r->header("connection")) == "close");
  CHECK(busy.closed_by_peer());
  ts.stop_and_join();
  CHECK(ts.run_returned());
  // No longer accepting.
  Client late(ts.port());
  CHECK_FALSE(late.connected());
}

TEST_CASE("the access log has the path without the query string", "[net]") {
  TestServer ts(small_options(), echo_handler);
  Client c(ts.port());
  REQUIRE(c.send("POST /Patient/_search?name=Secretname&birthdate=1970-01-01 HTTP/1.1\r\nHost: t\r\n"
                 "Content-Length: 3\r\n\r\nabc"));
  auto r = c.read_response();
  REQUIRE(r);
  REQUIRE(c.send("POST /Patient HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n"));
  auto big = c.read_response();
  REQUIRE(big);
  CHECK(big->status == 413);
  auto log = ts.wait_for_log(2);
  REQUIRE(log.size() == 2);
  CHECK(log[0].method == "POST");
  CHECK(log[0].path == "/Patient/_search");
  CHECK(log[0].status == 200);
  CHECK(log[0].bytes_in > 3);  // head and body
  CHECK(log[0].bytes_out >= r->body.size());
  CHECK(log[0].duration_us >= 0);
  CHECK(log[0].remote == "127.0.0.1");
  CHECK(log[1].method == "POST");
  CHECK(log[1].path == "/Patient");
  CHECK(log[1].status == 413);
  for (const auto& line : log) {
    CHECK(line.path.find("Secret") == std::string::npos);
    CHECK(line.path.find('?') == std::string::npos);
  }
}

TEST_CASE("connections over max_connections are answered 503", "[net]") {
  ServerOptions o = small_options();
  o.max_connections = 1;
  o.idle_timeout = std::chrono::seconds(10);
  TestServer ts(o, echo_handler);
  Client first(ts.port());
  REQUIRE(first.send(get("/a")));
  auto r = first.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(ts.server().connection_count() == 1);
  Client second(ts.port());
  auto rejected = second.read_response();
  REQUIRE(rejected);
  CHECK(rejected->status == 503);
  CHECK(rejected->body.find("OperationOutcome") != std::string::npos);
  CHECK(second.closed_by_peer());
  // The first connection is unaffected.
  REQUIRE(first.send(get("/b")));
  r = first.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
}

TEST_CASE("start reports a port already in use and bad addresses", "[net]") {
  TestServer ts(small_options(), echo_handler);
  ServerOptions o = small_options();
  o.port = ts.port();
  Server clash(o, echo_handler);
  espace::fhir::Status st = clash.start();
  CHECK_FALSE(st.is_ok());
  CHECK(st.message().find(std::to_string(ts.port())) != std::string::npos);

  ServerOptions bad = small_options();
  bad.address = "not-an-address";
  Server b(bad, echo_handler);
  CHECK_FALSE(b.start().is_ok());

  ServerOptions half_tls = small_options();
  half_tls.port = 0;
  half_tls.tls_cert_file = "/nonexistent/cert.pem";
  Server h(half_tls, echo_handler);
  CHECK_FALSE(h.start().is_ok());
}

TEST_CASE("concurrent keep-alive clients answered through a worker pool", "[net]") {
  espace::http::WorkerPool pool(4, 1000);
  std::atomic<int> refused{0};
  {
    TestServer ts(small_options(), [&](Request&& r, Responder respond) {
      auto shared = std::make_shared<Request>(std::move(r));
      bool queued = pool.post([shared, respond] {
        Response res;
        res.body = "n=" + shared->query.at(0).second;
        respond(std::move(res));
      });
      if (!queued) {
        refused++;
        Response busy;
        busy.status = 503;
        respond(std::move(busy));
      }
    });
    constexpr int kClients = 8, kRequests = 40;
    std::atomic<int> good{0};
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&, c] {
        Client client(ts.port());
        if (!client.connected()) return;
        for (int i = 0; i < kRequests; ++i) {
          std::string n = std::to_string(c * 1000 + i);
          if (!client.send(get("/x?n=" + n))) return;
          auto r = client.read_response();
          if (!r) return;
          if (r->status == 200 && r->body == "n=" + n) good++;
        }
      });
    }
    for (auto& t : clients) t.join();
    CHECK(good.load() == kClients * kRequests);
    CHECK(refused.load() == 0);
    ts.stop_and_join();
    pool.shutdown();  // the pool's tasks end before the Server is destroyed
  }
}

TEST_CASE("an answer from another thread larger than the socket buffers arrives whole", "[net]") {
  // 32 MiB cannot fit the loopback buffers while the client is not reading:
  // the answering thread's write stops short and the rest goes out later.
  const std::string big(32u << 20, 'x');
  std::vector<std::thread> workers;
  std::mutex workers_mutex;
  std::atomic<int> answered{0};
  TestServer ts(small_options(), [&](Request&& r, Responder respond) {
    std::lock_guard<std::mutex> lock(workers_mutex);
    workers.emplace_back([&, path = r.path, respond = std::move(respond)]() mutable {
      Response res;
      res.headers.set("Content-Type", "text/plain");
      res.body = path == "/big" ? big : "small";
      respond(std::move(res));
      answered++;
    });
  });
  Client c(ts.port());
  REQUIRE(c.send(get("/big")));
  for (int i = 0; i < 500 && answered.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(answered.load() == 1);
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->header("content-length") == std::to_string(big.size()));
  CHECK(r->body.size() == big.size());
  CHECK(r->body == big);
  // The connection goes on after the delayed write.
  REQUIRE(c.send(get("/next")));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->body == "small");
  auto log = ts.wait_for_log(2);
  REQUIRE(log.size() == 2);
  CHECK(log[0].bytes_out > big.size());
  ts.stop_and_join();
  for (auto& t : workers) t.join();
}

TEST_CASE("pipelined requests answered from other threads come back in order", "[net]") {
  std::vector<std::thread> workers;
  std::mutex workers_mutex;
  TestServer ts(small_options(), [&](Request&& r, Responder respond) {
    std::lock_guard<std::mutex> lock(workers_mutex);
    workers.emplace_back([path = r.path, respond = std::move(respond)]() mutable {
      Response res;
      res.body = path;
      respond(std::move(res));
    });
  });
  Client c(ts.port());
  // Three requests in one segment: the second and third are already buffered
  // when the first answer is written.
  REQUIRE(c.send(get("/one") + get("/two") + get("/three")));
  for (const char* expected : {"/one", "/two", "/three"}) {
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == expected);
  }
  ts.stop_and_join();
  for (auto& t : workers) t.join();
}

TEST_CASE("an answer given after the grace period closed the connection is dropped", "[net]") {
  ServerOptions o = small_options();
  o.shutdown_grace = std::chrono::seconds(1);
  ParkedRequest parked;
  TestServer ts(o, parked.handler());
  ParkedRequest::ReleaseOnExit release{parked};
  Client busy(ts.port());
  REQUIRE(busy.send(get("/slow")));
  REQUIRE(parked.wait());
  ts.server().stop();
  // The grace period ends with the request still in flight: closed unanswered.
  CHECK(busy.closed_by_peer(5000));
  for (int i = 0; i < 500 && !ts.run_returned(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(ts.run_returned());
  // The late answer (the Server still exists) goes nowhere and harms nothing.
  Response late;
  late.body = "too late";
  parked.answer(std::move(late));
  parked.release();
  ts.stop_and_join();
}
