// The notification outbox (transactional outbox pattern): events are rows
// written in the same transaction as the resource that raised them, so an
// event exists exactly when its write committed, and it stays until the
// delivery worker settles it, across crashes and restarts.
#include "sqlite_outbox.h"

namespace espace::storage {

using fhir::ErrorCategory;

namespace {

Status no_outbox() {
  return Status::error(ErrorCategory::NotAllowed, "not-supported", "storage: this storage keeps no outbox");
}

const char* state_text(OutboxState s) {
  switch (s) {
    case OutboxState::Pending: return "pending";
    case OutboxState::Delivered: return "delivered";
    case OutboxState::Failed: return "failed";
  }
  return "pending";
}

OutboxState state_from(const std::string& text) {
  if (text == "delivered") return OutboxState::Delivered;
  if (text == "failed") return OutboxState::Failed;
  return OutboxState::Pending;
}

// Bounds on what a rule or the worker may store: an event names things, it
// carries no resource content.
constexpr size_t kMaxOutboxText = 4096;
constexpr size_t kMaxOutboxDeliveredTo = 64 * 1024;

}  // namespace

Status Storage::due_outbox(int64_t, int, std::vector<OutboxEvent>*) { return no_outbox(); }
Status Storage::settle_outbox(const OutboxEvent&) { return no_outbox(); }
Status Storage::scan_outbox(int64_t, int, std::vector<OutboxEvent>*) { return no_outbox(); }

namespace sqlite {

const char* const kOutboxSchema = R"sql(
CREATE TABLE IF NOT EXISTS outbox(
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  topic           TEXT NOT NULL,
  patient         TEXT NOT NULL,
  resource        TEXT NOT NULL,
  created_us      INTEGER NOT NULL,
  state           TEXT NOT NULL,
  attempts        INTEGER NOT NULL,
  next_attempt_us INTEGER NOT NULL,
  last_error      TEXT NOT NULL,
  delivered_to    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_attempt_us) WHERE state = 'pending';
)sql";

namespace {

constexpr const char* kColumns =
    "id, topic, patient, resource, created_us, state, attempts, next_attempt_us, last_error, delivered_to";

void load_event(const Stmt& st, OutboxEvent* e) {
  e->id = st.int64(0);
  e->topic = st.text(1);
  e->patient = st.text(2);
  e->resource = st.text(3);
  e->created_us = st.int64(4);
  e->state = state_from(st.text(5));
  e->attempts = static_cast<int>(st.int64(6));
  e->next_attempt_us = st.int64(7);
  e->last_error = st.text(8);
  e->delivered_to = st.text(9);
}

Status invalid(const std::string& what) { return Status::error(ErrorCategory::Invalid, "invalid", "storage: " + what); }

}  // namespace

Status record_outbox_events(Connection& c, const OutboxRule& rule, const ResourceVersion& written, bool created,
                            const std::vector<IndexEntry>& index, int64_t now_us) {
  std::vector<OutboxEvent> events;
  rule(written, created, index, &events);
  if (events.empty()) return Status::ok();
  sqlite3_stmt* raw = nullptr;
  if (Status s = c.prepare(
          "INSERT INTO outbox(topic, patient, resource, created_us, state, attempts, next_attempt_us, last_error, "
          "delivered_to) VALUES(?1, ?2, ?3, ?4, 'pending', 0, ?4, '', '')",
          &raw);
      !s)
    return s;
  for (const OutboxEvent& e : events) {
    if (e.topic.empty() || e.resource.empty()) return invalid("an outbox event needs a topic and a resource");
    if (e.topic.size() > kMaxOutboxText || e.patient.size() > kMaxOutboxText || e.resource.size() > kMaxOutboxText)
      return invalid("an outbox event field is longer than " + std::to_string(kMaxOutboxText) + " bytes");
    Stmt st(raw);
    st.bind(1, e.topic);
    st.bind(2, e.patient);
    st.bind(3, e.resource);
    st.bind(4, now_us);
    if (st.step() != SQLITE_DONE) return error(c.db(), "recording an outbox event");
  }
  return Status::ok();
}

Status update_outbox_event(Connection& c, const OutboxEvent& e) {
  if (e.last_error.size() > kMaxOutboxText) return invalid("an outbox error text is too long");
  if (e.delivered_to.size() > kMaxOutboxDeliveredTo) return invalid("an outbox delivery list is too long");
  sqlite3_stmt* raw = nullptr;
  if (Status s = c.prepare(
          "UPDATE outbox SET state = ?2, attempts = ?3, next_attempt_us = ?4, last_error = ?5, delivered_to = ?6 "
          "WHERE id = ?1",
          &raw);
      !s)
    return s;
  Stmt st(raw);
  st.bind(1, e.id);
  st.bind(2, std::string_view(state_text(e.state)));
  st.bind(3, static_cast<int64_t>(e.attempts));
  st.bind(4, e.next_attempt_us);
  st.bind(5, e.last_error);
  st.bind(6, e.delivered_to);
  if (st.step() != SQLITE_DONE) return error(c.db(), "updating an outbox event");
  if (sqlite3_changes(c.db()) != 1)
    return Status::error(ErrorCategory::NotFound, "not-found", "storage: outbox event " + std::to_string(e.id) +
                                                                   " does not exist");
  return Status::ok();
}

Status due_outbox_events(Connection& c, int64_t now_us, int max, std::vector<OutboxEvent>* out) {
  out->clear();
  if (max < 1 || max > kMaxOutboxPage) return invalid("outbox page size must be 1.." + std::to_string(kMaxOutboxPage));
  sqlite3_stmt* raw = nullptr;
  if (Status s = c.prepare(std::string("SELECT ") + kColumns +
                               " FROM outbox WHERE state = 'pending' AND next_attempt_us <= ?1 "
                               "ORDER BY next_attempt_us, id LIMIT ?2",
                           &raw);
      !s)
    return s;
  Stmt st(raw);
  st.bind(1, now_us);
  st.bind(2, static_cast<int64_t>(max));
  int rc;
  while ((rc = st.step()) == SQLITE_ROW) {
    OutboxEvent e;
    load_event(st, &e);
    out->push_back(std::move(e));
  }
  if (rc != SQLITE_DONE) return error(c.db(), "reading due outbox events");
  return Status::ok();
}

Status scan_outbox_events(Connection& c, int64_t after_id, int count, std::vector<OutboxEvent>* out) {
  out->clear();
  if (count < 1 || count > kMaxOutboxPage)
    return invalid("outbox page size must be 1.." + std::to_string(kMaxOutboxPage));
  sqlite3_stmt* raw = nullptr;
  if (Status s = c.prepare(std::string("SELECT ") + kColumns + " FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2", &raw);
      !s)
    return s;
  Stmt st(raw);
  st.bind(1, after_id);
  st.bind(2, static_cast<int64_t>(count));
  int rc;
  while ((rc = st.step()) == SQLITE_ROW) {
    OutboxEvent e;
    load_event(st, &e);
    out->push_back(std::move(e));
  }
  if (rc != SQLITE_DONE) return error(c.db(), "reading outbox events");
  return Status::ok();
}

}  // namespace sqlite
}  // namespace espace::storage
