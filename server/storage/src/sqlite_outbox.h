// The notification outbox of the SQLite storage (storage.h, OutboxEvent);
// private to the storage library. sqlite_storage.cpp owns the connections
// and calls these.
#pragma once

#include <vector>

#include "espace/storage/storage.h"
#include "sqlite_connection.h"

namespace espace::storage::sqlite {

// Created when missing on every open (IF NOT EXISTS): the table is
// independent of the resource tables, so it needs no schema version step.
extern const char* const kOutboxSchema;

// Inside a write transaction, right after `written` was stored: asks the rule
// which events the write raises and inserts them, so they commit or roll back
// with the write itself.
Status record_outbox_events(Connection& c, const OutboxRule& rule, const ResourceVersion& written, bool created,
                            const std::vector<IndexEntry>& index, int64_t now_us);
// Inside a write transaction: stores the delivery state of an event.
Status update_outbox_event(Connection& c, const OutboxEvent& event);
// Reads (reader connection).
Status due_outbox_events(Connection& c, int64_t now_us, int max, std::vector<OutboxEvent>* out);
Status scan_outbox_events(Connection& c, int64_t after_id, int count, std::vector<OutboxEvent>* out);

}  // namespace espace::storage::sqlite
