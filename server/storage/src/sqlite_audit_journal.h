// The audit journal: where audit records become durable before they reach
// the audit table (sqlite_audit.cpp). Private to the storage library.
//
// Why: one record is written for every request, reads included. Through
// SQLite each cost a B-tree insert or three, WAL pages, and, worst, a commit
// that wiped every reader connection's page cache, so that the next reads
// fetched their pages again. The journal is a plain file beside the
// database ("<db>-audit") that records are appended to, chained, and flushed
// with one fdatasync per batch; a request's record is durable, and its
// response may go, once that flush returns. The journal then hands records to
// the audit table in large batches (a few commits a second instead of
// thousands). The file is emptied once all it holds is durable in the table,
// by an end mark at its start: its blocks are kept and overwritten, so that
// a flush writes data only (growing a file costs a second write per flush).
//
// One process owns a journal (an exclusive lock on the file). Opening a
// storage replays the records of a journal left behind (a crash) into the
// table first. A storage that cannot take the lock (a server owns it) reads
// the table as it is and refuses audit appends.
//
// Frame (little-endian), one per record:
//   u32 length of the rest | u64 seq | i64 recorded_us | u16 n + id |
//   u16 count, then per patient u16 n + id | u32 n + stored body
//   (encode_audit_body) | prev_hash (32) | hash (32)
// Each batch is followed by an end mark (a zero length) that the next batch
// overwrites; past it lie zeros or older frames. Replay reads frames up to
// the end mark, each checked to be next in order and against the chain
// (audit_chain_hash). A broken frame is the end of a write a crash
// interrupted (never acknowledged) and is dropped — unless a good frame
// follows it: that is damage, and the opening stops (the file is kept).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "espace/storage/storage.h"
#include "sqlite_audit.h"

namespace espace::storage::sqlite {

// Reads the frames of a journal file with seq > head.seq, checking each
// against the chain that continues from `head`. A missing file reads as
// empty; an unfinished last frame is dropped.
Status read_journal(int fd, const AuditChainHead& head, std::vector<JournalEntry>* out);

// What the journal needs from its storage.
struct AuditJournalHooks {
  // The ids among `ids` that the audit table already holds.
  std::function<Status(const std::vector<const std::string*>& ids, std::unordered_set<std::string>* taken)>
      find_in_table;
  // Appends chained entries to the audit table; `done` once that is durable.
  // The entries stay where they are (unchanged) until `done` has run.
  std::function<void(std::vector<const JournalEntry*> entries, std::function<void(Status)> done)> add_to_table;
  // Blocks until the storage's commit number `commit` is durable; false when it may never be.
  std::function<bool(int64_t commit)> wait_commit_durable;
};

class AuditJournal {
 public:
  using Done = std::function<void(Status, std::vector<AuditRecord>&)>;

  AuditJournal() = default;
  ~AuditJournal();  // stop()
  AuditJournal(const AuditJournal&) = delete;
  AuditJournal& operator=(const AuditJournal&) = delete;

  // Opens (creating) the file and takes its lock. *owned false: another
  // process holds it (nothing else was done; the journal stays unusable).
  Status lock(const std::string& path, bool* owned);
  int fd() const { return fd_; }
  // Starts appending after `head` (the audit table's newest record, every
  // record of the file being in the table): empties the file and starts the
  // flush thread. `largest_id`: the table's largest id ("" when empty).
  // `fsync` false: records are written, never flushed.
  // Records go to the table `table_batch` at a time or after `table_delay_us`.
  Status start(const AuditChainHead& head, std::string largest_id, bool fsync, size_t table_batch,
               int64_t table_delay_us, AuditJournalHooks hooks);
  bool started() const { return thread_.joinable(); }

  // Checked records with the stored form of each body. `done` gets the
  // result on the flush thread (the records chained, when Ok) once they are
  // durable — after commit `after_commit` of the storage too, when it is
  // not 0 — or have failed; an id already used fails the whole call
  // (Conflict). `done` must not append again.
  void append(std::vector<AuditRecord> records, std::vector<std::string> bodies, int64_t after_commit, Done done);

  // Returns once every record acknowledged before the call is in the audit
  // table (readers of the table call this first).
  Status catch_up();

  // Flushes what is queued, moves every record into the table, stops the
  // thread. Appends after this fail.
  void stop();

 private:
  struct Call {
    std::vector<AuditRecord> records;
    std::vector<std::string> bodies;
    int64_t after_commit = 0;
    Done done;
  };

  void run();
  void write_calls(std::vector<Call>& calls);
  // Hands the records not yet in the table to it when `force` or when enough
  // have waited long enough; at most one hand-over at a time. After a failed
  // hand-over the next waits kRetryAfterFailure unless `urgent` (a caller
  // waits for the table, or the journal stops): a table that keeps refusing
  // (a full disk) must not keep the writer busy.
  void maybe_add_to_table(bool force, bool urgent);
  void drop_entries_in_table();
  // Appends a batch's frames (and the end mark after them) and flushes.
  bool write_all(std::string& bytes);
  // An end mark at file_bytes_, flushed.
  bool write_end_mark();
  bool pwrite_all(const char* data, size_t size, int64_t at);

  int fd_ = -1;
  bool fsync_ = true;
  size_t table_batch_ = 0;      // set by start()
  int64_t table_delay_us_ = 0;
  AuditJournalHooks hooks_;
  std::thread thread_;

  std::mutex mutex_;
  std::condition_variable wake_;      // the flush thread
  std::condition_variable progress_;  // catch_up() callers
  std::vector<Call> queued_;
  bool stopping_ = false;
  bool failed_ = false;          // a write or flush failed: nothing after it is trusted
  int catch_up_waiters_ = 0;
  int64_t acknowledged_seq_ = 0;  // newest record acknowledged
  int64_t in_table_seq_ = 0;      // newest record durable in the audit table
  // No id of the table is larger (byte order): an id that is needs no lookup
  // there. Time-ordered ids (the trail's UUIDv7) almost always are.
  std::string largest_in_table_;
  bool handing_over_ = false;     // an add_to_table call is running
  Status table_error_;            // the last hand-over's failure (retried)
  int64_t retry_at_us_ = 0;       // no hand-over that is not urgent before this time

  // Flush thread only.
  AuditChainHead head_;
  int64_t file_bytes_ = 0;  // where the next frame goes (the end mark's place)
  int64_t allocated_ = 0;   // bytes of the file that exist on disk (records or zeros)
  // Durable here, not yet in the table. A deque: its elements stay in place
  // as entries are added and removed at the ends, so a hand-over and the id
  // set can point into it.
  std::deque<JournalEntry> unfiled_;
  std::unordered_set<std::string_view> unfiled_ids_;
};

}  // namespace espace::storage::sqlite
