// Notification pieces that need no network: the outbox rule and the checks
// the delivery channels make on what a Subscription asks for.
#include <catch2/catch.hpp>
#include <chrono>

#include "../../../server/interactions/src/documents/notify_channels.h"
#include "espace/interactions/notify.h"

using namespace espace::interactions;
using espace::fhir::ErrorCategory;
namespace storage = espace::storage;

namespace {

storage::IndexEntry reference_row(const std::string& param, const std::string& type, const std::string& id) {
  storage::IndexEntry e;
  e.param = param;
  e.kind = "reference";
  e.system = type;
  e.value = id;
  return e;
}

storage::ResourceVersion version(const std::string& type, const std::string& id) {
  storage::ResourceVersion v;
  v.type = type;
  v.id = id;
  v.version = 1;
  v.method = "POST";
  v.json = "{}";
  return v;
}

}  // namespace

TEST_CASE("outbox rule: a created DocumentReference raises document-added for its patient", "[notify]") {
  storage::OutboxRule rule = document_outbox_rule();
  std::vector<storage::OutboxEvent> events;
  rule(version("DocumentReference", "d1"), true,
       {reference_row("author", "Practitioner", "pr1"), reference_row("patient", "Patient", "p1")}, &events);
  REQUIRE(events.size() == 1);
  CHECK(events[0].topic == std::string(kDocumentAddedTopic));
  CHECK(events[0].resource == "DocumentReference/d1");
  CHECK(events[0].patient == "p1");

  // Without a patient row, a subject that is a Patient names it.
  events.clear();
  rule(version("DocumentReference", "d2"), true,
       {reference_row("subject", "Group", "g1"), reference_row("subject", "Patient", "p2")}, &events);
  REQUIRE(events.size() == 1);
  CHECK(events[0].patient == "p2");

  events.clear();
  rule(version("DocumentReference", "d1"), false, {reference_row("patient", "Patient", "p1")}, &events);
  CHECK(events.empty());  // an update
  storage::ResourceVersion deleted = version("DocumentReference", "d3");
  deleted.deleted = true;
  deleted.json.clear();
  rule(deleted, true, {}, &events);
  CHECK(events.empty());
  rule(version("Observation", "o1"), true, {reference_row("patient", "Patient", "p1")}, &events);
  CHECK(events.empty());
}

TEST_CASE("rest-hook endpoints: plain http URLs only", "[notify]") {
  notify::HttpUrl u;
  REQUIRE(notify::parse_http_url("http://127.0.0.1:8081/hooks/dmp?x=1", &u).is_ok());
  CHECK(u.host == "127.0.0.1");
  CHECK(u.port == "8081");
  CHECK(u.target == "/hooks/dmp?x=1");
  REQUIRE(notify::parse_http_url("http://receiver.example", &u).is_ok());
  CHECK(u.host == "receiver.example");
  CHECK(u.port == "80");
  CHECK(u.target == "/");
  for (const char* bad : {"https://receiver.example/h", "ftp://receiver.example/", "receiver.example/h",
                          "http://:80/h", "http://h:/x", "http://h:80x/", "http://user@h/", "http://h/a b",
                          "http://h/a\r\nX-Injected: 1"}) {
    INFO(bad);
    CHECK(notify::parse_http_url(bad, &u).category() == ErrorCategory::Invalid);
  }
}

TEST_CASE("rest-hook headers that would rewrite the request are refused before connecting", "[notify]") {
  notify::HttpDelivery d;
  d.method = "POST";
  d.url = "http://127.0.0.1:9/never-reached";
  d.headers = {"Authorization: Bearer x\r\nX-Injected: 1"};
  CHECK(notify::http_deliver(d, std::chrono::milliseconds(1000)).category() == ErrorCategory::Invalid);
  d.headers = {"no colon here"};
  CHECK(notify::http_deliver(d, std::chrono::milliseconds(1000)).category() == ErrorCategory::Invalid);
}

TEST_CASE("email: only plain addresses, and a relay must be configured", "[notify]") {
  CHECK(notify::is_plain_mail_address("patient.mail@example.org"));
  for (const char* bad : {"", "no-at-sign", "@example.org", "a@", "a@b@c", "a b@example.org", "a<b>@example.org",
                          "a@example.org\r\nRCPT TO:<x@y>", "\"quoted\"@example.org"}) {
    INFO(bad);
    CHECK_FALSE(notify::is_plain_mail_address(bad));
  }
  notify::Mail mail{"espace@example.org", "patient.mail@example.org", "s", "t"};
  CHECK(notify::smtp_send("", 25, mail, std::chrono::milliseconds(1000)).category() == ErrorCategory::Invalid);
  mail.to = "x@y>\r\nDATA";
  CHECK(notify::smtp_send("127.0.0.1", 9, mail, std::chrono::milliseconds(1000)).category() ==
        ErrorCategory::Invalid);
}
