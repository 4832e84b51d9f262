// The notification outbox of the SQLite storage: events written by the
// outbox rule inside the write transaction, read when due, settled, and kept
// across a reopen.
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "espace/storage/sqlite_storage.h"
#include "temp_db.h"

using namespace espace::storage;
using espace::fhir::ErrorCategory;

namespace {

using espace::testing::TempDb;

// A rule like the server's, independent of it: one event per created "Doc",
// naming the patient from the index row "patient".
void test_rule(const ResourceVersion& v, bool created, const std::vector<IndexEntry>& index,
               std::vector<OutboxEvent>* events) {
  if (!created || v.type != "Doc") return;
  OutboxEvent e;
  e.topic = "doc-added";
  e.resource = v.type + "/" + v.id;
  for (const IndexEntry& row : index)
    if (row.param == "patient") e.patient = row.value;
  events->push_back(e);
}

std::unique_ptr<Storage> open_with_rule(const std::string& path) {
  SqliteOptions opts;
  opts.path = path;
  opts.reader_connections = 2;
  opts.outbox_rule = test_rule;
  std::unique_ptr<Storage> s;
  Status st = open_sqlite(opts, &s);
  INFO(st.message());
  REQUIRE(st.is_ok());
  return s;
}

ResourceVersion doc(const std::string& id, int64_t version, int64_t now) {
  ResourceVersion v;
  v.type = "Doc";
  v.id = id;
  v.version = version;
  v.last_updated_us = now;
  v.method = version == 1 ? "POST" : "PUT";
  v.json = R"({"resourceType":"Doc","id":")" + id + R"("})";
  return v;
}

std::vector<IndexEntry> about(const std::string& patient) {
  IndexEntry e;
  e.param = "patient";
  e.kind = "reference";
  e.system = "Patient";
  e.value = patient;
  return {e};
}

std::vector<OutboxEvent> all_events(Storage& s) {
  std::vector<OutboxEvent> out;
  REQUIRE(s.scan_outbox(0, kMaxOutboxPage, &out).is_ok());
  return out;
}

}  // namespace

TEST_CASE("outbox: a created resource records one event in its own transaction", "[outbox]") {
  TempDb db;
  auto s = open_with_rule(db.path);
  int64_t committed_at = 0;
  REQUIRE(s->write([&](WriteTxn& txn) {
             committed_at = txn.now_us();
             return txn.put(doc("d1", 1, txn.now_us()), about("p1"));
           }).is_ok());
  auto events = all_events(*s);
  REQUIRE(events.size() == 1);
  CHECK(events[0].topic == "doc-added");
  CHECK(events[0].resource == "Doc/d1");
  CHECK(events[0].patient == "p1");
  CHECK(events[0].created_us == committed_at);
  CHECK(events[0].state == OutboxState::Pending);
  CHECK(events[0].attempts == 0);
  CHECK(events[0].next_attempt_us == committed_at);

  // An update (version 2) is not a creation: no new event.
  REQUIRE(s->write([&](WriteTxn& txn) { return txn.put(doc("d1", 2, txn.now_us()), about("p1")); }).is_ok());
  // Other types raise nothing under this rule.
  REQUIRE(s->write([&](WriteTxn& txn) {
             ResourceVersion v = doc("x", 1, txn.now_us());
             v.type = "Other";
             return txn.put(v, {});
           }).is_ok());
  CHECK(all_events(*s).size() == 1);
}

TEST_CASE("outbox: a failed transaction leaves no event", "[outbox]") {
  TempDb db;
  auto s = open_with_rule(db.path);
  Status failed = s->write([&](WriteTxn& txn) -> Status {
    if (Status p = txn.put(doc("d1", 1, txn.now_us()), about("p1")); !p) return p;
    return Status::error(ErrorCategory::Invalid, "invalid", "the body gives up after the put");
  });
  REQUIRE_FALSE(failed.is_ok());
  CHECK(all_events(*s).empty());
  // A failed body in a group commit does not take a neighbour's event along.
  REQUIRE(s->write([&](WriteTxn& txn) { return txn.put(doc("d2", 1, txn.now_us()), about("p2")); }).is_ok());
  auto events = all_events(*s);
  REQUIRE(events.size() == 1);
  CHECK(events[0].resource == "Doc/d2");
}

TEST_CASE("outbox: due events, delivery, back-off and failure are settled and survive a reopen", "[outbox]") {
  TempDb db;
  int64_t t0 = 0;
  {
    auto s = open_with_rule(db.path);
    for (const char* id : {"a", "b", "c"})
      REQUIRE(s->write([&](WriteTxn& txn) {
                 t0 = txn.now_us();
                 return txn.put(doc(id, 1, txn.now_us()), about(std::string("p-") + id));
               }).is_ok());
    std::vector<OutboxEvent> due;
    REQUIRE(s->due_outbox(t0, 10, &due).is_ok());
    REQUIRE(due.size() == 3);
    // Nothing is due before it was recorded.
    std::vector<OutboxEvent> early;
    REQUIRE(s->due_outbox(due[0].created_us - 1, 10, &early).is_ok());
    CHECK(early.empty());

    OutboxEvent delivered = due[0];
    delivered.state = OutboxState::Delivered;
    delivered.delivered_to = "Subscription/s1";
    REQUIRE(s->settle_outbox(delivered).is_ok());

    OutboxEvent later = due[1];
    later.attempts = 1;
    later.next_attempt_us = t0 + 60'000'000;
    later.last_error = "receiver down";
    REQUIRE(s->settle_outbox(later).is_ok());

    OutboxEvent failed = due[2];
    failed.attempts = 5;
    failed.state = OutboxState::Failed;
    failed.last_error = "gave up";
    REQUIRE(s->settle_outbox(failed).is_ok());

    REQUIRE(s->due_outbox(t0 + 1, 10, &due).is_ok());
    CHECK(due.empty());
    REQUIRE(s->due_outbox(t0 + 60'000'000, 10, &due).is_ok());
    REQUIRE(due.size() == 1);
    CHECK(due[0].resource == "Doc/b");

    OutboxEvent unknown;
    unknown.id = 999;
    CHECK(s->settle_outbox(unknown).category() == ErrorCategory::NotFound);
  }
  // Reopened (a restart): every event is still there, in its settled state.
  auto s = open_with_rule(db.path);
  auto events = all_events(*s);
  REQUIRE(events.size() == 3);
  CHECK(events[0].state == OutboxState::Delivered);
  CHECK(events[0].delivered_to == "Subscription/s1");
  CHECK(events[1].state == OutboxState::Pending);
  CHECK(events[1].attempts == 1);
  CHECK(events[1].last_error == "receiver down");
  CHECK(events[1].patient == "p-b");
  CHECK(events[2].state == OutboxState::Failed);
  std::vector<OutboxEvent> due;
  REQUIRE(s->due_outbox(t0 + 60'000'000, 10, &due).is_ok());
  REQUIRE(due.size() == 1);
  CHECK(due[0].resource == "Doc/b");
  CHECK_FALSE(s->due_outbox(t0, 0, &due).is_ok());
  CHECK_FALSE(s->due_outbox(t0, kMaxOutboxPage + 1, &due).is_ok());
}

TEST_CASE("outbox: without a rule nothing is recorded", "[outbox]") {
  TempDb db;
  SqliteOptions opts;
  opts.path = db.path;
  std::unique_ptr<Storage> s;
  REQUIRE(open_sqlite(opts, &s).is_ok());
  REQUIRE(s->write([&](WriteTxn& txn) { return txn.put(doc("d1", 1, txn.now_us()), about("p1")); }).is_ok());
  CHECK(all_events(*s).empty());
}
