// Notifications of documents added to a record, end to end: the real server,
// a rest-hook receiver and an SMTP sink written here (Asio, loopback).
// Waiting for a delivery polls with a generous deadline; nothing is timed.
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <istream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "http_client.h"
#include "json_checks.h"
#include "server_process.h"

using espace::testing::HttpClient;
using espace::testing::HttpResponse;
using espace::testing::json_of;
using espace::testing::ServerProcess;
using espace::testing::str;
namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;

namespace {

// A loopback listener served one connection at a time on its own thread.
class Listener {
 public:
  using Serve = std::function<void(tcp::socket&)>;
  Listener(uint16_t port, Serve serve) : acceptor_(ioc_), serve_(std::move(serve)) {
    tcp::endpoint at(asio::ip::make_address("127.0.0.1"), port);
    acceptor_.open(at.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(at);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { run(); });
  }
  ~Listener() {
    stopping_ = true;
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);  // wakes the blocking accept
    thread_.join();
  }
  uint16_t port() const { return port_; }

 private:
  void run() {
    while (!stopping_) {
      tcp::socket socket(ioc_);
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || stopping_) return;
      timeval tv{10, 0};  // a stuck peer cannot hang the test
      setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      try {
        serve_(socket);
      } catch (const std::exception&) {
        // the peer went away mid-exchange: next connection
      }
    }
  }

  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  Serve serve_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

struct HookRequest {
  std::string method, target, body, authorization, content_type;
};

// Answers 500 to the first `failures` requests, 200 afterwards; keeps them all.
class HookReceiver {
 public:
  explicit HookReceiver(int failures = 0, uint16_t port = 0)
      : failures_(failures), listener_(port, [this](tcp::socket& s) { serve(s); }) {}
  uint16_t port() const { return listener_.port(); }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port()) + path; }
  std::vector<HookRequest> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }
  // Waits (bounded) until at least n requests arrived.
  bool wait_for(size_t n) const {
    for (int i = 0; i < 600; ++i) {
      if (requests().size() >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

 private:
  void serve(tcp::socket& socket) {
    boost::beast::flat_buffer buffer;
    http::request<http::string_body> req;
    http::read(socket, buffer, req);
    bool fail;
    {
      std::lock_guard lock(mutex_);
      requests_.push_back({std::string(req.method_string()), std::string(req.target()), req.body(),
                           std::string(req[http::field::authorization]), std::string(req[http::field::content_type])});
      fail = static_cast<int>(requests_.size()) <= failures_;
    }
    http::response<http::string_body> res(fail ? http::status::internal_server_error : http::status::ok, 11);
    res.set(http::field::connection, "close");
    res.body() = fail ? "down for now" : "";
    res.prepare_payload();
    http::write(socket, res);
  }

  int failures_;
  mutable std::mutex mutex_;
  std::vector<HookRequest> requests_;
  Listener listener_;
};

struct Mail {
  std::string from, to, data;
};

// A minimal SMTP server: accepts every mail and keeps it.
class SmtpSink {
 public:
  SmtpSink() : listener_(0, [this](tcp::socket& s) { serve(s); }) {}
  uint16_t port() const { return listener_.port(); }
  std::vector<Mail> mails() const {
    std::lock_guard lock(mutex_);
    return mails_;
  }
  bool wait_for(size_t n) const {
    for (int i = 0; i < 600; ++i) {
      if (mails().size() >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

 private:
  void serve(tcp::socket& socket) {
    asio::streambuf buffer;
    auto say = [&](const std::string& line) { asio::write(socket, asio::buffer(line)); };
    auto read_line = [&] {
      asio::read_until(socket, buffer, "\r\n");
      std::istream in(&buffer);
      std::string line;
      std::getline(in, line);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return line;
    };
    Mail mail;
    say("220 sink.test ESMTP\r\n");
    for (;;) {
      std::string line = read_line();
      if (line.rfind("EHLO", 0) == 0) {
        say("250-sink.test\r\n250 8BITMIME\r\n");
      } else if (line.rfind("MAIL FROM:", 0) == 0) {
        mail.from = line.substr(10);
        say("250 OK\r\n");
      } else if (line.rfind("RCPT TO:", 0) == 0) {
        mail.to = line.substr(8);
        say("250 OK\r\n");
      } else if (line == "DATA") {
        say("354 go ahead\r\n");
        for (std::string l = read_line(); l != "."; l = read_line()) mail.data += l + "\n";
        {
          std::lock_guard lock(mutex_);
          mails_.push_back(mail);
        }
        say("250 queued\r\n");
      } else if (line == "QUIT") {
        say("221 bye\r\n");
        return;
      } else {
        say("500 what?\r\n");
      }
    }
  }

  mutable std::mutex mutex_;
  std::vector<Mail> mails_;
  Listener listener_;
};

std::vector<std::string> notify_args(int max_attempts = 10) {
  return {"--notify", "on", "--notify-retry-base-ms", "100", "--notify-retry-cap-ms", "400", "--notify-poll-ms", "50",
          "--notify-max-attempts", std::to_string(max_attempts)};
}

std::string created_id(const HttpResponse& r) {
  INFO(r.body.substr(0, 1000));
  REQUIRE(r.status == 201);
  return str(json_of(r), "id");
}

std::string subscription(HttpClient& c, const std::string& criteria, const std::string& type,
                         const std::string& endpoint, const std::string& extra = "") {
  std::string body = R"({"resourceType":"Subscription","status":"active","reason":"new documents","criteria":")" +
                     criteria + R"(","channel":{"type":")" + type + R"(","endpoint":")" + endpoint + "\"" + extra +
                     "}}";
  return created_id(c.request("POST", "/Subscription", body, {{"Content-Type", "application/fhir+json"}}));
}

std::string add_document(HttpClient& c, const std::string& patient) {
  std::string body =
      R"({"resourceType":"DocumentReference","status":"current","subject":{"reference":"Patient/)" + patient +
      R"("},"description":"Compte rendu de consultation","content":[{"attachment":{"contentType":"text/plain","data":"Qm9uam91cg=="}}]})";
  return created_id(c.request("POST", "/DocumentReference", body, {{"Content-Type", "application/fhir+json"}}));
}

// A loopback port nobody listens on (for now).
uint16_t free_port() {
  asio::io_context ioc;
  tcp::acceptor a(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

}  // namespace

TEST_CASE("notification: rest-hook with payload receives the new document, once, for matching criteria only",
          "[notification]") {
  HookReceiver hook;
  ServerProcess server(notify_args());
  HttpClient c("127.0.0.1", server.port());
  subscription(c, "DocumentReference?patient=Patient/notif-p1", "rest-hook", hook.url("/fhir"),
               R"(,"payload":"application/fhir+json","header":["Authorization: Bearer hook-secret"])");
  subscription(c, "DocumentReference?patient=Patient/someone-else", "rest-hook", hook.url("/other"));

  std::string doc1 = add_document(c, "notif-p1");
  REQUIRE(hook.wait_for(1));
  auto got = hook.requests();
  CHECK(got[0].method == "PUT");
  CHECK(got[0].target == "/fhir/DocumentReference/" + doc1);
  CHECK(got[0].authorization == "Bearer hook-secret");
  CHECK(got[0].content_type == "application/fhir+json");
  rapidjson::Document body;
  body.Parse(got[0].body.c_str());
  REQUIRE_FALSE(body.HasParseError());
  CHECK(str(body, "id") == doc1);
  CHECK(str(body, "resourceType") == "DocumentReference");

  // An update is not a new document; the next creation is, and arrives after
  // the update would have (events are delivered in order).
  std::string doc1_json = got[0].body;
  HttpResponse upd = c.request("PUT", "/DocumentReference/" + doc1, doc1_json, {{"Content-Type", "application/fhir+json"}});
  REQUIRE(upd.status == 200);
  std::string doc2 = add_document(c, "notif-p1");
  REQUIRE(hook.wait_for(2));
  // A document for another patient only reaches the other Subscription.
  std::string doc3 = add_document(c, "someone-else");
  REQUIRE(hook.wait_for(3));
  got = hook.requests();
  REQUIRE(got.size() == 3);
  CHECK(got[1].target == "/fhir/DocumentReference/" + doc2);
  CHECK(got[2].method == "POST");  // no payload: a bare ping
  CHECK(got[2].target == "/other");
  CHECK(got[2].body.empty());
  CHECK(server.log().find("notif-p1") == std::string::npos);  // no patient data in the log
}

TEST_CASE("notification: email through the SMTP relay carries no clinical content", "[notification]") {
  SmtpSink sink;
  auto args = notify_args();
  args.insert(args.end(), {"--smtp-relay", "127.0.0.1:" + std::to_string(sink.port()), "--smtp-from",
                           "dmp-notifications@espace.example"});
  ServerProcess server(args);
  HttpClient c("127.0.0.1", server.port());
  subscription(c, "DocumentReference?subject=Patient/notif-mail", "email", "mailto:patient.mail@example.org");
  std::string doc = add_document(c, "notif-mail");
  REQUIRE(sink.wait_for(1));
  Mail m = sink.mails()[0];
  CHECK(m.from == "<dmp-notifications@espace.example>");
  CHECK(m.to == "<patient.mail@example.org>");
  CHECK(m.data.find("A new document was added to your health record") != std::string::npos);
  CHECK(m.data.find("To: <patient.mail@example.org>") != std::string::npos);
  CHECK(m.data.find(doc) == std::string::npos);
  CHECK(m.data.find("notif-mail") == std::string::npos);
  CHECK(m.data.find("consultation") == std::string::npos);
}

TEST_CASE("notification: a failing receiver is retried until it accepts", "[notification]") {
  HookReceiver hook(/*failures=*/2);
  ServerProcess server(notify_args());
  HttpClient c("127.0.0.1", server.port());
  subscription(c, "DocumentReference?patient=Patient/notif-retry", "rest-hook", hook.url("/ping"));
  add_document(c, "notif-retry");
  REQUIRE(hook.wait_for(3));
  // Settled as delivered after the third attempt: a later document is the
  // next request, not a fourth copy of the first.
  add_document(c, "notif-retry");
  REQUIRE(hook.wait_for(4));
  auto got = hook.requests();
  CHECK(got.size() == 4);
  for (const auto& r : got) CHECK(r.target == "/ping");
}

TEST_CASE("notification: after the last attempt the Subscription is set to error", "[notification]") {
  HookReceiver hook(/*failures=*/1000);
  ServerProcess server(notify_args(/*max_attempts=*/2));
  HttpClient c("127.0.0.1", server.port());
  std::string sub = subscription(c, "DocumentReference?patient=Patient/notif-err", "rest-hook", hook.url("/x"));
  add_document(c, "notif-err");
  std::string status;
  for (int i = 0; i < 600 && status != "error"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    status = str(json_of(c.get("/Subscription/" + sub)), "status");
  }
  REQUIRE(status == "error");
  auto s = json_of(c.get("/Subscription/" + sub));
  CHECK(str(s, "error").find("2 attempts") != std::string::npos);
  CHECK(hook.requests().size() == 2);
}

TEST_CASE("notification: an event recorded before a crash is delivered after the restart", "[notification]") {
  char dir_template[] = "/tmp/espace-notify-XXXXXX";
  REQUIRE(mkdtemp(dir_template) != nullptr);
  const std::string dir = dir_template;
  const std::string db = dir + "/espace.db";
  uint16_t hook_port = free_port();  // the receiver is down while the first server runs
  std::string doc;
  {
    ServerProcess server(notify_args(), db);
    HttpClient c("127.0.0.1", server.port());
    subscription(c, "DocumentReference?patient=Patient/notif-restart", "rest-hook",
                 "http://127.0.0.1:" + std::to_string(hook_port) + "/after-restart");
    doc = add_document(c, "notif-restart");
    int status = server.stop(SIGKILL);
    CHECK(WIFSIGNALED(status));
  }
  HookReceiver hook(0, hook_port);
  {
    ServerProcess server(notify_args(), db);
    REQUIRE(hook.wait_for(1));
    // Give a duplicate every chance to show up: a second document's
    // notification arrives after any redelivery of the first would have.
    HttpClient c("127.0.0.1", server.port());
    add_document(c, "notif-restart");
    REQUIRE(hook.wait_for(2));
    auto got = hook.requests();
    CHECK(got.size() == 2);
    CHECK(got[0].target == "/after-restart");
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("notification: a document created inside a transaction Bundle is announced; a rolled-back one is not",
          "[notification]") {
  HookReceiver hook;
  ServerProcess server(notify_args());
  HttpClient c("127.0.0.1", server.port());
  subscription(c, "DocumentReference?patient=Patient/notif-tx", "rest-hook", hook.url("/tx"),
               R"(,"payload":"application/fhir+json")");
  auto document_entry = [](const std::string& patient) {
    return R"({"fullUrl":"urn:uuid:)" + std::string(patient == "notif-tx" ? "8f2c0c4e-0000-4000-8000-000000000001"
                                                                          : "8f2c0c4e-0000-4000-8000-000000000002") +
           R"(","resource":{"resourceType":"DocumentReference","status":"current","subject":{"reference":"Patient/)" +
           patient +
           R"("},"content":[{"attachment":{"contentType":"text/plain","data":"Qm9uam91cg=="}}]},"request":{"method":"POST","url":"DocumentReference"}})";
  };
  // The second entry's If-Match cannot hold: the whole transaction, and the
  // event of its document, are rolled back.
  std::string failing = R"({"resourceType":"Bundle","type":"transaction","entry":[)" + document_entry("notif-tx") +
                        R"(,{"resource":{"resourceType":"Basic","id":"nope","code":{"text":"x"}},"request":{"method":"PUT","url":"Basic/nope","ifMatch":"W/\"7\""}}]})";
  HttpResponse r = c.request("POST", "/", failing, {{"Content-Type", "application/fhir+json"}});
  INFO(r.body.substr(0, 1000));
  REQUIRE(r.status == 412);
  std::string ok = R"({"resourceType":"Bundle","type":"transaction","entry":[)" + document_entry("notif-tx") + "]}";
  r = c.request("POST", "/", ok, {{"Content-Type", "application/fhir+json"}});
  INFO(r.body.substr(0, 1000));
  REQUIRE(r.status == 200);
  auto bundle = json_of(r);
  std::string location = str(bundle["entry"][0]["response"], "location");
  REQUIRE(hook.wait_for(1));
  // A later document proves nothing else was queued before it.
  std::string later = add_document(c, "notif-tx");
  REQUIRE(hook.wait_for(2));
  auto got = hook.requests();
  REQUIRE(got.size() == 2);
  rapidjson::Document first;
  first.Parse(got[0].body.c_str());
  REQUIRE_FALSE(first.HasParseError());
  CHECK(location.find("DocumentReference/" + str(first, "id")) != std::string::npos);
  CHECK(got[1].target == "/tx/DocumentReference/" + later);
}

TEST_CASE("notification: a Subscription set to error is not used for the other events of the same pass",
          "[notification]") {
  HookReceiver hook(/*failures=*/1000);
  ServerProcess server(notify_args(/*max_attempts=*/1));
  HttpClient c("127.0.0.1", server.port());
  std::string sub = subscription(c, "DocumentReference?patient=Patient/notif-pass", "rest-hook", hook.url("/p"));
  // Five documents in one transaction: their events commit together and are
  // due in the same pass of the worker.
  std::string bundle = R"({"resourceType":"Bundle","type":"transaction","entry":[)";
  for (int i = 0; i < 5; ++i)
    bundle += std::string(i ? "," : "") +
              R"({"resource":{"resourceType":"DocumentReference","status":"current","subject":{"reference":"Patient/notif-pass"},)"
              R"("content":[{"attachment":{"contentType":"text/plain","data":"Qm9uam91cg=="}}]},"request":{"method":"POST","url":"DocumentReference"}})";
  bundle += "]}";
  HttpResponse r = c.request("POST", "/", bundle, {{"Content-Type", "application/fhir+json"}});
  INFO(r.body.substr(0, 1000));
  REQUIRE(r.status == 200);
  std::string status;
  for (int i = 0; i < 600 && status != "error"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    status = str(json_of(c.get("/Subscription/" + sub)), "status");
  }
  REQUIRE(status == "error");
  // The first event's only attempt failed and switched the Subscription off;
  // the four others are not sent to it.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(hook.requests().size() == 1);
}
