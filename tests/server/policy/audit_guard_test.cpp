// AuditEvents read through the guard: the rules' may_see decides which
// events a request sees; hidden ones are absent, and search pages stay full.
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "espace/policy/guard.h"
#include "espace/storage/sqlite_storage.h"
#include "temp_db.h"

using namespace espace;
using fhir::ErrorCategory;
using fhir::Status;

namespace {

// Shows only events whose JSON names the caller's patient.
struct PatientEventsRules final : policy::ResourceRules {
  std::string patient;
  explicit PatientEventsRules(std::string p) : patient(std::move(p)) {}
  policy::Verdict may_see(const storage::ResourceVersion& v, policy::AccessRecord* record) override {
    policy::Verdict verdict;
    verdict.visible = v.type == "AuditEvent" && v.json.find("\"Patient/" + patient + "\"") != std::string::npos;
    verdict.rule = verdict.visible ? "OWN_EVENTS" : "NOT_OWN";
    if (verdict.visible) record->rules.push_back(verdict.rule);
    return verdict;
  }
  Status may_write(const storage::ResourceVersion*, const storage::ResourceVersion&, policy::AccessRecord*) override {
    return Status::error(ErrorCategory::Forbidden, "forbidden", "no writes here");
  }
  Status restrict_search(storage::SearchQuery*) override { return Status::ok(); }
};

using espace::testing::TempDb;

}  // namespace

TEST_CASE("the guard shows a request only the audit events its rules allow", "[audit]") {
  TempDb db;
  storage::SqliteOptions opts;
  opts.path = db.path;
  std::unique_ptr<storage::Storage> store;
  REQUIRE(storage::open_sqlite(opts, &store).is_ok());
  // 40 events, every third about patient "mine", the others about "theirs".
  std::vector<std::string> mine_newest_first;
  for (int i = 1; i <= 40; ++i) {
    std::string patient = i % 3 == 0 ? "mine" : "theirs";
    std::string id = "ev" + std::to_string(i);
    std::vector<storage::AuditRecord> one(1);
    one[0].id = id;
    one[0].recorded_us = 1000 * int64_t{i};
    one[0].json = R"({"resourceType":"AuditEvent","id":")" + id + R"(","entity":[{"what":{"reference":"Patient/)" +
                  patient + R"("}}]})";
    REQUIRE(store->append_audit(&one).is_ok());
    if (patient == "mine") mine_newest_first.insert(mine_newest_first.begin(), id);
  }
  interactions::Services base;
  base.store = store.get();

  SECTION("read: someone else's event is as absent as an unknown id") {
    auto guard = policy::make_guard(base, std::make_unique<PatientEventsRules>("mine"));
    storage::Storage& seen = *guard->services().store;
    storage::AuditRecord r;
    REQUIRE(seen.read_audit("ev3", &r).is_ok());
    CHECK(r.id == "ev3");
    Status hidden = seen.read_audit("ev4", &r);
    Status unknown = seen.read_audit("ev999", &r);
    CHECK(hidden.category() == ErrorCategory::NotFound);
    CHECK(unknown.category() == ErrorCategory::NotFound);
    CHECK(hidden.message().find("ev4") != std::string::npos);
    CHECK(r.json.empty());
    const policy::AccessRecord& record = guard->record();
    CHECK(record.resources == std::vector<std::string>{"AuditEvent/ev3/_history/1"});
    CHECK(record.hidden == 1);
  }

  SECTION("search: full pages of visible events, the cursor walks past hidden ones") {
    for (int count : {1, 2, 5, 13, 50}) {
      INFO("page size " << count);
      auto guard = policy::make_guard(base, std::make_unique<PatientEventsRules>("mine"));
      storage::Storage& seen = *guard->services().store;
      storage::AuditQuery q;
      q.count = count;
      std::vector<std::string> got;
      for (int pages = 0; pages < 100; ++pages) {
        storage::AuditPage page;
        REQUIRE(seen.search_audit(q, &page).is_ok());
        for (const auto& r : page.records) got.push_back(r.id);
        if (!page.more) break;
        CHECK(page.records.size() == static_cast<size_t>(count));
        q.before_seq = page.last_seq;
      }
      CHECK(got == mine_newest_first);
    }
  }

  SECTION("nobody's events: an empty result, not an error") {
    auto guard = policy::make_guard(base, std::make_unique<PatientEventsRules>("nobody"));
    storage::AuditPage page;
    storage::AuditQuery q;
    q.count = 10;
    REQUIRE(guard->services().store->search_audit(q, &page).is_ok());
    CHECK(page.records.empty());
  }

  SECTION("requests cannot append to or scan the trail through the guard") {
    auto guard = policy::make_guard(base, std::make_unique<PatientEventsRules>("mine"));
    std::vector<storage::AuditRecord> forged(1);
    forged[0].id = "forged";
    forged[0].recorded_us = 1;
    forged[0].json = "{}";
    CHECK(guard->services().store->append_audit(&forged).category() == ErrorCategory::NotAllowed);
    storage::AuditHead head;
    CHECK(guard->services().store->audit_head(&head).category() == ErrorCategory::NotAllowed);
  }
}
