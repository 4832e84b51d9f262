// The audit table of the SQLite storage: append-only records chained by
// SHA-256, read by id, searched by patient and date, and verified — including
// after the database file was tampered with through SQLite directly.
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "espace/storage/sqlite_storage.h"
#include "first_version.h"
#include "temp_db.h"

using namespace espace::storage;
using espace::fhir::ErrorCategory;

namespace {

using espace::testing::first_version;
using espace::testing::TempDb;

std::unique_ptr<Storage> open_db(const std::string& path) {
  SqliteOptions opts;
  opts.path = path;
  opts.reader_connections = 4;
  std::unique_ptr<Storage> s;
  Status st = open_sqlite(opts, &s);
  INFO(st.message());
  REQUIRE(st.is_ok());
  return s;
}

std::string to_hex(const std::string& bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

AuditRecord make_record(const std::string& id, int64_t recorded_us, std::vector<std::string> patients) {
  AuditRecord r;
  r.id = id;
  r.recorded_us = recorded_us;
  r.patients = std::move(patients);
  r.json = R"({"resourceType":"AuditEvent","id":")" + id + R"(","recorded":")" + std::to_string(recorded_us) + "\"}";
  return r;
}

// Appends n records one call each: ids e1..en, recorded 1000*i, patient
// "p" + (i % 3) (and none for every fifth).
void append_series(Storage& s, int n) {
  for (int i = 1; i <= n; ++i) {
    std::vector<std::string> patients;
    if (i % 5 != 0) patients.push_back("p" + std::to_string(i % 3));
    std::vector<AuditRecord> one{make_record("e" + std::to_string(i), 1000 * int64_t{i}, patients)};
    Status st = s.append_audit(&one);
    INFO(st.message());
    REQUIRE(st.is_ok());
  }
}

AuditVerification verify(const std::string& path) {
  auto s = open_db(path);
  AuditVerification v;
  Status st = verify_audit_chain(*s, &v);
  INFO(st.message());
  REQUIRE(st.is_ok());
  return v;
}

// Runs SQL on the database file behind the storage's back (the storage is closed).
void tamper(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  INFO((err ? err : ""));
  sqlite3_free(err);
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
}

}  // namespace

TEST_CASE("audit SHA-256 gives the FIPS 180-2 test vectors", "[audit]") {
  CHECK(to_hex(audit_sha256("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(to_hex(audit_sha256("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(to_hex(audit_sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(to_hex(audit_sha256(std::string(1000000, 'a'))) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("audit records are numbered, chained and read back as appended", "[audit]") {
  TempDb db;
  auto s = open_db(db.path);
  std::vector<AuditRecord> batch{make_record("a1", 10, {"p1"}), make_record("a2", 20, {}),
                                 make_record("a3", 30, {"p1", "p2"})};
  REQUIRE(s->append_audit(&batch).is_ok());
  REQUIRE(batch[0].seq == 1);
  REQUIRE(batch[1].seq == 2);
  REQUIRE(batch[2].seq == 3);
  CHECK(batch[0].prev_hash == std::string(kAuditHashSize, '\0'));
  CHECK(batch[1].prev_hash == batch[0].hash);
  CHECK(batch[2].prev_hash == batch[1].hash);
  CHECK(batch[2].hash == audit_chain_hash(batch[1].hash, batch[2]));

  AuditRecord back;
  REQUIRE(s->read_audit("a3", &back).is_ok());
  CHECK(back.seq == 3);
  CHECK(back.recorded_us == 30);
  CHECK(back.patients == std::vector<std::string>{"p1", "p2"});
  CHECK(back.json == batch[2].json);
  CHECK(back.hash == batch[2].hash);
  CHECK(s->read_audit("nope", &back).category() == ErrorCategory::NotFound);

  // A later call continues the chain, also after the database is reopened.
  s.reset();
  s = open_db(db.path);
  std::vector<AuditRecord> more{make_record("a4", 40, {"p2"})};
  REQUIRE(s->append_audit(&more).is_ok());
  CHECK(more[0].seq == 4);
  CHECK(more[0].prev_hash == batch[2].hash);
  AuditVerification v;
  REQUIRE(verify_audit_chain(*s, &v).is_ok());
  CHECK(v.intact);
  CHECK(v.records == 4);
  CHECK(v.head_hash == to_hex(more[0].hash));
}

TEST_CASE("audit appends refuse bad records and duplicates, keeping nothing of the call", "[audit]") {
  TempDb db;
  auto s = open_db(db.path);
  std::vector<AuditRecord> first{make_record("dup", 10, {"p1"})};
  REQUIRE(s->append_audit(&first).is_ok());

  std::vector<AuditRecord> with_dup{make_record("fresh", 20, {"p1"}), make_record("dup", 30, {})};
  CHECK(s->append_audit(&with_dup).category() == ErrorCategory::Conflict);
  CHECK(with_dup[0].seq == 0);
  AuditRecord r;
  CHECK(s->read_audit("fresh", &r).category() == ErrorCategory::NotFound);
  // The same id twice in one call: refused whole as well.
  std::vector<AuditRecord> same_twice{make_record("twin", 20, {}), make_record("twin", 30, {})};
  CHECK(s->append_audit(&same_twice).category() == ErrorCategory::Conflict);
  CHECK(s->read_audit("twin", &r).category() == ErrorCategory::NotFound);

  std::vector<AuditRecord> empty;
  CHECK(s->append_audit(&empty).category() == ErrorCategory::Invalid);
  std::vector<AuditRecord> bad_id{make_record("has space", 10, {})};
  CHECK(s->append_audit(&bad_id).category() == ErrorCategory::Invalid);
  std::vector<AuditRecord> bad_patient{make_record("ok1", 10, {"a,b"})};
  CHECK(s->append_audit(&bad_patient).category() == ErrorCategory::Invalid);
  std::vector<AuditRecord> twice{make_record("ok2", 10, {"p1", "p1"})};
  CHECK(s->append_audit(&twice).category() == ErrorCategory::Invalid);
  std::vector<AuditRecord> no_time{make_record("ok3", 0, {})};
  CHECK(s->append_audit(&no_time).category() == ErrorCategory::Invalid);

  AuditHead head;
  REQUIRE(s->audit_head(&head).is_ok());
  CHECK(head.seq == 1);
  AuditVerification v;
  REQUIRE(verify_audit_chain(*s, &v).is_ok());
  CHECK(v.intact);
  CHECK(v.records == 1);
}

TEST_CASE("AuditEvent resources cannot be written through the resource tables", "[audit]") {
  TempDb db;
  auto s = open_db(db.path);
  Status st = s->write([](WriteTxn& txn) {
    return txn.put(first_version(txn, "AuditEvent", "x", R"({"resourceType":"AuditEvent","id":"x"})"), {});
  });
  CHECK(st.category() == ErrorCategory::NotAllowed);
  ResourceVersion out;
  CHECK(s->read("AuditEvent", "x", &out).category() == ErrorCategory::NotFound);
}

TEST_CASE("audit search: by patient, by date, newest first, in pages", "[audit]") {
  TempDb db;
  auto s = open_db(db.path);
  append_series(*s, 30);

  // Expected from the series' rule, computed independently of the storage.
  auto expected = [](int patient, int64_t since, int64_t before) {
    std::vector<std::string> ids;
    for (int i = 30; i >= 1; --i) {
      bool about = i % 5 != 0 && (patient < 0 || i % 3 == patient);
      if (patient >= 0 && !about) continue;
      int64_t t = 1000 * int64_t{i};
      if (since && t < since) continue;
      if (before && t >= before) continue;
      ids.push_back("e" + std::to_string(i));
    }
    return ids;
  };
  auto collect = [&](AuditQuery q) {
    std::vector<std::string> ids;
    for (int pages = 0; pages < 100; ++pages) {
      AuditPage page;
      Status st = s->search_audit(q, &page);
      INFO(st.message());
      REQUIRE(st.is_ok());
      REQUIRE(page.records.size() <= static_cast<size_t>(q.count));
      for (const AuditRecord& r : page.records) ids.push_back(r.id);
      if (!page.more) break;
      REQUIRE(page.records.size() == static_cast<size_t>(q.count));
      q.before_seq = page.last_seq;
    }
    return ids;
  };

  for (int count : {1, 4, 7, 50}) {
    INFO("page size " << count);
    AuditQuery q;
    q.count = count;
    CHECK(collect(q) == expected(-1, 0, 0));
    q.patient = "p1";
    CHECK(collect(q) == expected(1, 0, 0));
    q.since_us = 7000;
    q.before_us = 21000;
    CHECK(collect(q) == expected(1, 7000, 21000));
    q.patient.clear();
    CHECK(collect(q) == expected(-1, 7000, 21000));
  }
  AuditQuery nobody;
  nobody.patient = "p9";
  CHECK(collect(nobody).empty());

  AuditQuery too_big;
  too_big.count = kMaxAuditCount + 1;
  AuditPage page;
  CHECK(s->search_audit(too_big, &page).category() == ErrorCategory::Invalid);
}

TEST_CASE("concurrent audit appends form one unbroken chain", "[audit]") {
  TempDb db;
  auto s = open_db(db.path);
  constexpr int kThreads = 8, kEach = 60;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        std::vector<AuditRecord> one{
            make_record("t" + std::to_string(t) + "-" + std::to_string(i), 1 + i, {"p" + std::to_string(t)})};
        if (!s->append_audit(&one).is_ok()) failures.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures.load() == 0);
  AuditVerification v;
  REQUIRE(verify_audit_chain(*s, &v).is_ok());
  CHECK(v.intact);
  CHECK(v.records == kThreads * kEach);
  AuditQuery q;
  q.patient = "p3";
  q.count = 1000;
  AuditPage page;
  REQUIRE(s->search_audit(q, &page).is_ok());
  CHECK(page.records.size() == static_cast<size_t>(kEach));
}

TEST_CASE("audit verification finds altered, removed and reordered records", "[audit]") {
  TempDb db;
  {
    auto s = open_db(db.path);
    append_series(*s, 20);
  }
  AuditVerification clean = verify(db.path);
  REQUIRE(clean.intact);
  REQUIRE(clean.records == 20);
  REQUIRE(clean.first_bad == 0);

  // Each tampering is applied to a fresh copy of the clean database.
  auto check = [&](const std::string& sql, int64_t first_bad, const std::string& kind) {
    TempDb copy;
    tamper(db.path, "VACUUM INTO '" + copy.path + "'");
    tamper(copy.path, sql);
    AuditVerification v = verify(copy.path);
    INFO(sql << " -> " << v.problem);
    CHECK_FALSE(v.intact);
    CHECK(v.first_bad == first_bad);
    CHECK(v.problem.rfind(kind, 0) == 0);
    return v;
  };

  SECTION("a body changed") {
    // The stored form may be encoded: the end of the JSON ("}) is stored as it is.
    check("UPDATE audit_log SET body = substr(body, 1, length(body) - 2) || 'X\"}' WHERE seq = 7", 7, "altered");
  }
  SECTION("a recorded time changed") {
    check("UPDATE audit_log SET recorded = recorded + 1 WHERE seq = 12", 12, "altered");
  }
  SECTION("a patient taken off a record and its index") {
    check("UPDATE audit_log SET patients = '' WHERE seq = 4; DELETE FROM audit_patient WHERE seq = 4", 4, "altered");
  }
  SECTION("a row of the patient index removed") {
    check("DELETE FROM audit_patient WHERE seq = 9", 9, "altered");
  }
  SECTION("a row added to the patient index") {
    check("INSERT INTO audit_patient(patient, seq) VALUES('intruder', 3)", 20, "altered");
  }
  SECTION("a record removed from the middle") {
    AuditVerification v = check("DELETE FROM audit_log WHERE seq = 8", 8, "removed");
    CHECK(v.records == 7);
  }
  SECTION("the newest records removed") {
    check("DELETE FROM audit_log WHERE seq >= 18", 18, "removed");
  }
  SECTION("a record removed and the rest renumbered") {
    check("DELETE FROM audit_log WHERE seq = 5; UPDATE audit_log SET seq = seq - 1 WHERE seq > 5", 5, "reordered");
  }
  SECTION("two records swapped") {
    // Everything but the position is exchanged between records 6 and 11.
    check("UPDATE audit_log SET seq = -6 WHERE seq = 6; UPDATE audit_log SET seq = 6 WHERE seq = 11;"
          "UPDATE audit_log SET seq = 11 WHERE seq = -6",
          6, "reordered");
  }
  SECTION("a record rewritten with a recomputed own hash") {
    // Without the previous record's hash changing, a forged hash does not chain on.
    check("UPDATE audit_log SET hash = zeroblob(32) WHERE seq = 15", 15, "altered");
  }
}

TEST_CASE("audit appends share commits with resource writes; a duplicate fails alone; reopening continues the chain",
          "[audit]") {
  TempDb db;
  constexpr int kThreads = 6, kEach = 40;
  {
    auto s = open_db(db.path);
    std::vector<AuditRecord> seed{make_record("seed", 1, {"p0"})};
    REQUIRE(s->append_audit(&seed).is_ok());
    std::vector<std::thread> threads;
    std::atomic<int> unexpected{0}, conflicts{0};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i) {
          // Every fifth append repeats the seed's id: refused, alone.
          bool dup = i % 5 == 4;
          std::vector<AuditRecord> one{
              make_record(dup ? "seed" : "m" + std::to_string(t) + "-" + std::to_string(i), 1 + i, {"p" + std::to_string(t)})};
          Status st = s->append_audit(&one);
          if (dup && st.category() == ErrorCategory::Conflict && one[0].seq == 0)
            conflicts.fetch_add(1);
          else if (dup || !st.is_ok())
            unexpected.fetch_add(1);
          // A resource write and a failing write body between appends: the
          // writer mixes them into the same commits as the audit records.
          Status w = s->write([&](WriteTxn& txn) {
            return txn.put(first_version(txn, "Basic", "b" + std::to_string(t) + "-" + std::to_string(i),
                                         R"({"resourceType":"Basic"})"),
                           {});
          });
          if (!w) unexpected.fetch_add(1);
          Status refused = s->write([](WriteTxn&) { return Status::error(ErrorCategory::Invalid, "invalid", "no"); });
          if (refused.category() != ErrorCategory::Invalid) unexpected.fetch_add(1);
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(unexpected.load() == 0);
    CHECK(conflicts.load() == kThreads * (kEach / 5));
    AuditHead head;
    REQUIRE(s->audit_head(&head).is_ok());
    CHECK(head.seq == 1 + kThreads * (kEach - kEach / 5));
    AuditVerification v;
    REQUIRE(verify_audit_chain(*s, &v).is_ok());
    CHECK(v.intact);
    CHECK(v.records == head.seq);
  }
  // A fresh storage reads the head from the file and chains after it.
  auto s = open_db(db.path);
  std::vector<AuditRecord> next{make_record("after-reopen", 5, {})};
  REQUIRE(s->append_audit(&next).is_ok());
  CHECK(next[0].seq == 2 + kThreads * (kEach - kEach / 5));
  AuditRecord last;
  REQUIRE(s->read_audit("after-reopen", &last).is_ok());
  CHECK(last.prev_hash.size() == kAuditHashSize);
  AuditVerification v;
  REQUIRE(verify_audit_chain(*s, &v).is_ok());
  CHECK(v.intact);
  CHECK(v.records == next[0].seq);
}

namespace {

// length(body) of a stored record, read behind the storage's back.
int64_t stored_body_size(const std::string& path, int64_t seq) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT length(body) FROM audit_log WHERE seq = ?1", -1, &st, nullptr) == SQLITE_OK);
  sqlite3_bind_int64(st, 1, seq);
  int64_t size = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
  sqlite3_finalize(st);
  sqlite3_close(db);
  return size;
}

// An event as our AuditTrail writes it (a GP's read of a Patient).
std::string trail_like_event(const std::string& id) {
  return R"({"resourceType":"AuditEvent","id":")" + id +
         R"(","meta":{"versionId":"1","lastUpdated":"2026-12-07T17:35:29.066191Z"},"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest","display":"RESTful Operation"},"subtype":[{"system":"http://hl7.org/fhir/restful-interaction","code":"read"}],"action":"R","recorded":"2026-12-07T17:35:29.066191Z","outcome":"0","outcomeDesc":"HTTP 200","purposeOfEvent":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"TREAT"}]}],"agent":[{"extension":[{"url":"https://espace.example/fhir/StructureDefinition/audit-rule","valueString":"GP"}],"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/extra-security-role-type","code":"humanuser","display":"human user"}]},"role":[{"coding":[{"system":"https://espace.example/fhir/CodeSystem/caller-role","code":"professional"}]}],"who":{"reference":"Practitioner/gp","identifier":{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"810001234567"}},"requestor":true,"network":{"address":"127.0.0.1","type":"2"}},{"type":{"coding":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110152","display":"Destination Role ID"}]},"who":{"display":"espace FHIR server"},"requestor":false}],"source":{"site":"espace","observer":{"display":"espace FHIR server"},"type":[{"system":"http://terminology.hl7.org/CodeSystem/security-source-type","code":"4","display":"Application Server"}]},"entity":[{"what":{"reference":"Patient/p1"},"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"1","display":"Person"},"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"1","display":"Patient"}}]})";
}

}  // namespace

TEST_CASE("audit bodies are stored compactly and read back byte for byte", "[audit]") {
  TempDb db;
  std::vector<std::string> bodies;
  bodies.push_back(trail_like_event("a1"));
  // Control bytes (unescaped by some writer), the bytes the stored form uses
  // as markers, fragments of the repeated phrases cut short, and a body that
  // is not JSON at all: all kept exactly.
  bodies.push_back(std::string("{\"resourceType\":\"AuditEvent\",\"x\":\"") + '\x01' + '\x02' + '\x1f' + '\x00' +
                   "\n\"}");
  bodies.push_back(R"({"resourceType":"AuditEvent","id":"a3","meta":{"versionId":"2"},"outcome":)");
  bodies.push_back(std::string("\x01\x01{\"resourceType\":\"AuditEvent\",\"id\":\"") + '\x01');
  std::string random;
  uint64_t x = 88172645463325252ull;
  const std::string event = trail_like_event("a5");
  for (int i = 0; i < 3000; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    // Random bytes mixed with random pieces of a real event.
    if (x % 4 == 0)
      random += event.substr(x % event.size(), (x >> 20) % 40);
    else
      random += static_cast<char>(x >> 32);
  }
  bodies.push_back(random);
  {
    auto s = open_db(db.path);
    for (size_t i = 0; i < bodies.size(); ++i) {
      std::vector<AuditRecord> one{make_record("a" + std::to_string(i + 1), 1000 * int64_t(i + 1), {"p1"})};
      one[0].json = bodies[i];
      Status st = s->append_audit(&one);
      INFO(st.message());
      REQUIRE(st.is_ok());
    }
    for (size_t i = 0; i < bodies.size(); ++i) {
      AuditRecord r;
      REQUIRE(s->read_audit("a" + std::to_string(i + 1), &r).is_ok());
      CHECK(r.json == bodies[i]);
    }
    std::vector<AuditRecord> scanned;
    std::vector<int64_t> mismatches;
    REQUIRE(s->scan_audit(0, 100, &scanned, &mismatches).is_ok());
    REQUIRE(scanned.size() == bodies.size());
    for (size_t i = 0; i < bodies.size(); ++i) CHECK(scanned[i].json == bodies[i]);
  }
  AuditVerification v = verify(db.path);
  CHECK(v.intact);
  CHECK(v.records == static_cast<int64_t>(bodies.size()));
  // The event our trail writes takes less than a quarter of its JSON.
  CHECK(stored_body_size(db.path, 1) * 4 < static_cast<int64_t>(bodies[0].size()));
}

TEST_CASE("audit bodies stored as raw JSON (before the compact form) are read and verified as they are", "[audit]") {
  TempDb db;
  const std::string json = trail_like_event("old1");
  {
    auto s = open_db(db.path);
    std::vector<AuditRecord> one{make_record("old1", 5000, {"p1"})};
    one[0].json = json;
    REQUIRE(s->append_audit(&one).is_ok());
  }
  // What a database written before the compact form holds: the JSON itself.
  std::string quoted;
  for (char c : json) quoted += c == '\'' ? std::string("''") : std::string(1, c);
  tamper(db.path, "UPDATE audit_log SET body = CAST('" + quoted + "' AS BLOB) WHERE seq = 1");
  REQUIRE(stored_body_size(db.path, 1) == static_cast<int64_t>(json.size()));
  {
    auto s = open_db(db.path);
    AuditRecord r;
    REQUIRE(s->read_audit("old1", &r).is_ok());
    CHECK(r.json == json);
    // New records chain after it.
    append_series(*s, 3);
  }
  AuditVerification v = verify(db.path);
  CHECK(v.intact);
  CHECK(v.records == 4);
}

TEST_CASE("DeferFlushToNextWrite lasts for its scope, on its own thread only", "[storage][audit]") {
  CHECK_FALSE(DeferFlushToNextWrite::active_on_this_thread());
  {
    DeferFlushToNextWrite outer;
    CHECK(DeferFlushToNextWrite::active_on_this_thread());
    bool seen_elsewhere = true;
    std::thread([&] { seen_elsewhere = DeferFlushToNextWrite::active_on_this_thread(); }).join();
    CHECK_FALSE(seen_elsewhere);
    {
      DeferFlushToNextWrite inner;
      CHECK(DeferFlushToNextWrite::active_on_this_thread());
    }
    CHECK(DeferFlushToNextWrite::active_on_this_thread());  // the inner scope restores, not clears
  }
  CHECK_FALSE(DeferFlushToNextWrite::active_on_this_thread());
}

TEST_CASE("a write answered at commit is made durable by the audit append that follows it", "[storage][audit]") {
  TempDb db;
  auto s = open_db(db.path);
  auto* sqlite = dynamic_cast<SqliteStorage*>(s.get());
  REQUIRE(sqlite);
  const int64_t fsyncs_before = sqlite->write_stats().fsyncs;
  {
    DeferFlushToNextWrite one_flush;
    REQUIRE(s->write([](WriteTxn& txn) {
                return txn.put(
                    first_version(txn, "Patient", "deferred", R"({"resourceType":"Patient","id":"deferred"})"), {});
              }).is_ok());
    // A failing body is still rolled back and reported under the scope.
    Status failed = s->write([](WriteTxn& txn) {
      const std::string json = R"({"resourceType":"Patient","id":"rolled-back"})";
      if (Status st = txn.put(first_version(txn, "Patient", "rolled-back", json), {}); !st) return st;
      return Status::error(ErrorCategory::Invalid, "invalid", "refused after writing");
    });
    CHECK(failed.category() == ErrorCategory::Invalid);
  }
  // The audit append always waits for a flush, which covers the earlier commit.
  std::vector<AuditRecord> one{make_record("after-write", 1000, {"deferred"})};
  REQUIRE(s->append_audit(&one).is_ok());
  CHECK(sqlite->write_stats().fsyncs > fsyncs_before);
  ResourceVersion v;
  REQUIRE(s->read("Patient", "deferred", &v).is_ok());
  CHECK(v.version == 1);
  CHECK(s->read("Patient", "rolled-back", &v).category() == ErrorCategory::NotFound);
  s.reset();
  // Reopened: both the write and the record are there.
  auto reopened = open_db(db.path);
  REQUIRE(reopened->read("Patient", "deferred", &v).is_ok());
  AuditRecord r;
  REQUIRE(reopened->read_audit("after-write", &r).is_ok());
}
