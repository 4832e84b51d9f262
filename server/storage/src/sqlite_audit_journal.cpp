#include "sqlite_audit_journal.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace espace::storage::sqlite {

using fhir::ErrorCategory;

namespace {

// The file is emptied once it holds this much and all of it is in the table
// (room for a full table batch of large events).
constexpr int64_t kEmptyAtBytes = 32 << 20;
// The file grows by this much at a time, written with zeros, so that a batch
// overwrites blocks that exist: its fdatasync then flushes the data alone,
// not the inode and block map as well (half the time and CPU of a flush).
constexpr int64_t kGrowBytes = 1 << 20;
constexpr auto kIdleWake = std::chrono::milliseconds(50);
constexpr int64_t kRetryAfterFailureUs = 1'000'000;
constexpr size_t kMaxFrame = 64u << 20;

Status internal(std::string msg) {
  return Status::error(ErrorCategory::Internal, "exception", "storage: audit journal: " + std::move(msg));
}

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void put_u16(std::string& out, size_t v) {
  const char b[2] = {static_cast<char>(v & 0xff), static_cast<char>((v >> 8) & 0xff)};
  out.append(b, 2);
}
void put_u32(std::string& out, uint64_t v) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}
void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}
// The little-endian number in the `width` bytes at p (the bounds are the caller's).
uint64_t get_le(const char* p, int width) {
  uint64_t v = 0;
  for (int i = 0; i < width; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

void append_frame(std::string& out, const AuditRecord& r, const std::string& body) {
  const size_t start = out.size();
  put_u32(out, 0);  // the length, filled in below
  put_u64(out, static_cast<uint64_t>(r.seq));
  put_u64(out, static_cast<uint64_t>(r.recorded_us));
  put_u16(out, r.id.size());
  out += r.id;
  put_u16(out, r.patients.size());
  for (const std::string& p : r.patients) {
    put_u16(out, p.size());
    out += p;
  }
  put_u32(out, body.size());
  out += body;
  out += r.prev_hash;
  out += r.hash;
  const uint64_t length = out.size() - start - 4;
  for (int i = 0; i < 4; ++i) out[start + i] = static_cast<char>((length >> (8 * i)) & 0xff);
}

// Bounds-checked reading of one frame's fields.
class FrameReader {
 public:
  FrameReader(const char* p, size_t n) : p_(p), end_(p + n) {}
  bool u16(size_t* v) { return uint(2, v); }
  bool u32(size_t* v) { return uint(4, v); }
  bool u64(uint64_t* v) {
    if (end_ - p_ < 8) return false;
    *v = get_le(p_, 8);
    p_ += 8;
    return true;
  }
  bool bytes(size_t n, std::string* out) {
    if (static_cast<size_t>(end_ - p_) < n) return false;
    out->assign(p_, n);
    p_ += n;
    return true;
  }
  bool at_end() const { return p_ == end_; }

 private:
  bool uint(int width, size_t* v) {
    if (end_ - p_ < width) return false;
    *v = static_cast<size_t>(get_le(p_, width));
    p_ += width;
    return true;
  }
  const char* p_;
  const char* end_;
};

bool parse_frame(const char* p, size_t n, JournalEntry* e) {
  FrameReader in(p, n);
  uint64_t seq, recorded;
  size_t len, count;
  AuditRecord& r = e->record;
  if (!in.u64(&seq) || !in.u64(&recorded) || !in.u16(&len) || !in.bytes(len, &r.id) || !in.u16(&count)) return false;
  r.seq = static_cast<int64_t>(seq);
  r.recorded_us = static_cast<int64_t>(recorded);
  r.patients.resize(count);
  for (std::string& patient : r.patients)
    if (!in.u16(&len) || !in.bytes(len, &patient)) return false;
  if (!in.u32(&len) || !in.bytes(len, &e->body)) return false;
  if (!in.bytes(kAuditHashSize, &r.prev_hash) || !in.bytes(kAuditHashSize, &r.hash)) return false;
  return in.at_end();
}

// Whether a frame that continues the log (seq `next`) starts at `at`: then
// the broken frame before it is damage, not the unfinished end of the log.
bool valid_frame_at(const std::string& data, size_t at, int64_t next) {
  if (data.size() < at + 4) return false;
  const size_t length = static_cast<size_t>(get_le(data.data() + at, 4));
  JournalEntry e;
  return length > 0 && length <= data.size() - at - 4 && parse_frame(data.data() + at + 4, length, &e) &&
         (next < 0 || e.record.seq == next);
}

}  // namespace

Status read_journal(int fd, const AuditChainHead& head, std::vector<JournalEntry>* out) {
  out->clear();
  struct stat st {};
  if (::fstat(fd, &st) != 0) return internal("cannot read its size");
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t have = 0;
  while (have < data.size()) {
    ssize_t n = ::pread(fd, data.data() + have, data.size() - have, static_cast<off_t>(have));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return internal("cannot read it");
    have += static_cast<size_t>(n);
  }
  int64_t seq = head.seq;       // the chain as replayed so far
  std::string prev = head.hash;
  int64_t expected = -1;        // the seq the next frame must carry (-1: any, at the start)
  size_t at = 0;
  while (at < data.size()) {
    const size_t left = data.size() - at;
    const size_t length = left >= 4 ? static_cast<size_t>(get_le(data.data() + at, 4)) : 0;
    if (left >= 4 && length == 0) return Status::ok();  // the end mark (or the zeros after it)
    // A frame is good when whole, well-formed, next in order (after the
    // log's end lie zeros or older frames), and, beyond the table's head,
    // the chain's next link.
    const bool whole = left >= 4 && length <= left - 4 && length <= kMaxFrame;
    JournalEntry e;
    bool good = whole && parse_frame(data.data() + at + 4, length, &e) && (expected < 0 || e.record.seq == expected);
    if (good && e.record.seq > head.seq) {
      if (e.record.seq > seq + 1)
        return Status::error(ErrorCategory::Internal, "exception",
                             "storage: the audit journal lacks records " + std::to_string(seq + 1) + " to " +
                                 std::to_string(e.record.seq - 1) + " (they are not in the audit table either)");
      AuditRecord check = e.record;
      check.json = decode_audit_body(e.body);
      good = e.record.prev_hash == prev && audit_chain_hash(prev, check) == e.record.hash;
    }
    if (!good) {
      // A good frame after a bad one means the bad one was written and
      // flushed: damage (or tampering). The file is left as it is.
      if (whole && valid_frame_at(data, at + 4 + length, expected < 0 ? -1 : expected + 1))
        return Status::error(ErrorCategory::Internal, "exception",
                             "storage: the audit journal holds a damaged record at byte " + std::to_string(at) +
                                 "; move the file aside to open the database without its records");
      // Otherwise the end of the log: a write a crash interrupted, never acknowledged.
      return Status::ok();
    }
    at += 4 + length;
    expected = e.record.seq + 1;
    if (e.record.seq <= head.seq) continue;  // already in the table (the file was not emptied yet)
    seq = e.record.seq;
    prev = e.record.hash;
    out->push_back(std::move(e));
  }
  return Status::ok();
}

AuditJournal::~AuditJournal() {
  stop();
  if (fd_ >= 0) ::close(fd_);
}

Status AuditJournal::lock(const std::string& path, bool* owned) {
  *owned = false;
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) return internal("cannot open " + path);
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const bool held_elsewhere = errno == EWOULDBLOCK;
    ::close(fd_);
    fd_ = -1;
    if (held_elsewhere) return Status::ok();
    return internal("cannot lock " + path);
  }
  *owned = true;
  return Status::ok();
}

Status AuditJournal::start(const AuditChainHead& head, std::string largest_id, bool fsync, size_t table_batch,
                           int64_t table_delay_us, AuditJournalHooks hooks) {
  if (fd_ < 0) return internal("not locked");
  // Everything in the file is in the table: start it afresh, keeping its blocks.
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return internal("cannot read its size");
  allocated_ = st.st_size;
  fsync_ = fsync;
  file_bytes_ = 0;
  if (!write_end_mark()) return internal("cannot empty it");
  head_ = head;
  largest_in_table_ = std::move(largest_id);
  table_batch_ = table_batch;
  table_delay_us_ = table_delay_us;
  hooks_ = std::move(hooks);
  acknowledged_seq_ = in_table_seq_ = head.seq;
  thread_ = std::thread([this] { run(); });
  return Status::ok();
}

void AuditJournal::append(std::vector<AuditRecord> records, std::vector<std::string> bodies, int64_t after_commit,
                          Done done) {
  Status refused;
  {
    std::lock_guard lock(mutex_);
    if (!stopping_ && !failed_ && thread_.joinable()) {
      queued_.push_back(Call{std::move(records), std::move(bodies), after_commit, std::move(done)});
      if (queued_.size() == 1) wake_.notify_one();
      return;
    }
    refused = failed_ ? internal("an earlier write or flush failed; audit records are refused until restart")
                      : Status::error(ErrorCategory::Unavailable, "transient",
                                      "storage: the audit journal is not open here (stopping, or another process "
                                      "holds it)");
  }
  done(std::move(refused), records);
}

Status AuditJournal::catch_up() {
  std::unique_lock lock(mutex_);
  if (!thread_.joinable()) return Status::ok();  // not owned here: the table is all there is
  const int64_t target = acknowledged_seq_;
  if (in_table_seq_ >= target) return Status::ok();
  ++catch_up_waiters_;
  table_error_ = Status::ok();  // an older failure is retried for this caller
  wake_.notify_one();
  progress_.wait(lock, [&] { return in_table_seq_ >= target || failed_ || !table_error_.is_ok() || stopping_; });
  --catch_up_waiters_;
  if (in_table_seq_ >= target) return Status::ok();
  return table_error_.is_ok() ? internal("records could not be moved to the audit table") : table_error_;
}

void AuditJournal::stop() {
  {
    std::lock_guard lock(mutex_);
    if (!thread_.joinable() || stopping_) return;
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

bool AuditJournal::pwrite_all(const char* data, size_t size, int64_t at) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pwrite(fd_, data + done, size - done, static_cast<off_t>(at + static_cast<int64_t>(done)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

bool AuditJournal::write_all(std::string& bytes) {
  // The frames, then the end mark (a zero length) that the next batch overwrites.
  const size_t frames = bytes.size();
  bytes.append(4, '\0');
  const int64_t end = file_bytes_ + static_cast<int64_t>(bytes.size());
  if (end > allocated_) {
    const int64_t grown = (end + kGrowBytes - 1) / kGrowBytes * kGrowBytes;
    static const std::string zeros(64 << 10, '\0');
    for (int64_t at = allocated_; at < grown; at += static_cast<int64_t>(zeros.size()))
      if (!pwrite_all(zeros.data(), static_cast<size_t>(std::min<int64_t>(grown - at, zeros.size())), at)) return false;
    allocated_ = grown;
  }
  if (!pwrite_all(bytes.data(), bytes.size(), file_bytes_)) return false;
  if (fsync_ && ::fdatasync(fd_) != 0) return false;
  file_bytes_ += static_cast<int64_t>(frames);
  return true;
}

bool AuditJournal::write_end_mark() {
  const char mark[4] = {0, 0, 0, 0};
  return pwrite_all(mark, sizeof mark, file_bytes_) && (!fsync_ || ::fdatasync(fd_) == 0);
}

void AuditJournal::write_calls(std::vector<Call>& calls) {
  // Ids already used: in the table, waiting for it, or earlier in this batch.
  // Only ids no larger than the table's largest are looked up there.
  std::string largest_in_table;
  {
    std::lock_guard lock(mutex_);
    largest_in_table = largest_in_table_;
  }
  std::vector<const std::string*> ids;
  for (const Call& c : calls)
    for (const AuditRecord& r : c.records)
      if (r.id <= largest_in_table) ids.push_back(&r.id);
  std::unordered_set<std::string> taken;
  Status lookup = ids.empty() ? Status::ok() : hooks_.find_in_table(ids, &taken);
  std::vector<Status> results(calls.size());
  std::unordered_set<std::string> batch_ids;
  std::string bytes;
  const AuditChainHead before = head_;
  int64_t after_commit = 0;
  for (size_t i = 0; i < calls.size(); ++i) {
    Call& c = calls[i];
    if (!lookup) {
      results[i] = lookup;
      continue;
    }
    for (const AuditRecord& r : c.records)  // (check_audit_records refused ids repeated within a call)
      if (taken.count(r.id) || unfiled_ids_.count(r.id) || batch_ids.count(r.id)) {
        results[i] = Status::error(ErrorCategory::Conflict, "duplicate", "storage: audit record " + r.id + " already exists");
        break;
      }
    if (!results[i]) continue;
    for (size_t k = 0; k < c.records.size(); ++k) {
      AuditRecord& r = c.records[k];
      batch_ids.insert(r.id);
      r.seq = ++head_.seq;
      r.prev_hash = head_.hash;
      r.hash = audit_chain_hash(r.prev_hash, r);
      head_.hash = r.hash;
      append_frame(bytes, r, c.bodies[k]);
    }
    after_commit = std::max(after_commit, c.after_commit);
  }
  bool durable = bytes.empty() || write_all(bytes);
  if (durable && after_commit > 0) durable = hooks_.wait_commit_durable(after_commit);
  if (!durable) {
    // The records may or may not be on disk; nothing later can chain to them safely.
    head_ = before;
    std::lock_guard lock(mutex_);
    failed_ = true;
    progress_.notify_all();
  }
  const int64_t at = now_us();
  for (size_t i = 0; i < calls.size(); ++i) {
    Call& c = calls[i];
    if (results[i] && !durable) results[i] = internal("the journal could not be written or flushed; not recorded");
    if (results[i])
      for (size_t k = 0; k < c.records.size(); ++k) {
        // Everything but the JSON, which the body holds in its stored form.
        const AuditRecord& r = c.records[k];
        JournalEntry e;
        e.record.seq = r.seq;
        e.record.id = r.id;
        e.record.recorded_us = r.recorded_us;
        e.record.patients = r.patients;
        e.record.prev_hash = r.prev_hash;
        e.record.hash = r.hash;
        e.body = std::move(c.bodies[k]);
        e.journaled_us = at;
        unfiled_.push_back(std::move(e));
        unfiled_ids_.insert(unfiled_.back().record.id);
      }
  }
  if (durable && head_.seq != before.seq) {
    std::lock_guard lock(mutex_);
    acknowledged_seq_ = head_.seq;
  }
  for (size_t i = 0; i < calls.size(); ++i) calls[i].done(std::move(results[i]), calls[i].records);
}

void AuditJournal::drop_entries_in_table() {
  int64_t in_table;
  {
    std::lock_guard lock(mutex_);
    in_table = in_table_seq_;
  }
  // Only entries the finished hand-overs took: none is in use any more.
  while (!unfiled_.empty() && unfiled_.front().record.seq <= in_table) {
    unfiled_ids_.erase(unfiled_.front().record.id);
    unfiled_.pop_front();
  }
}

void AuditJournal::maybe_add_to_table(bool force, bool urgent) {
  if (unfiled_.empty()) return;
  int64_t in_table;
  {
    std::lock_guard lock(mutex_);
    if (handing_over_) return;
    if (!urgent && now_us() < retry_at_us_) return;
    in_table = in_table_seq_;
  }
  // The entries stay here (their ids still count as used) until the table
  // has them durably; a failed hand-over is retried. Those a hand-over that
  // finished since the last drop_entries_in_table took are not given again.
  // The wait is the oldest waiting entry's: counting it from the first entry
  // of a deque that was never empty under steady load (entries journaled
  // during a hand-over) made every loop hand over a few records, a commit
  // each, and each commit empties the page cache of every reader.
  auto waiting = std::partition_point(unfiled_.begin(), unfiled_.end(),
                                      [in_table](const JournalEntry& e) { return e.record.seq <= in_table; });
  const size_t count = static_cast<size_t>(unfiled_.end() - waiting);
  if (count == 0) return;
  if (!force && count < table_batch_ && now_us() - waiting->journaled_us < table_delay_us_) return;
  std::vector<const JournalEntry*> entries;
  entries.reserve(count);
  for (auto it = waiting; it != unfiled_.end(); ++it) entries.push_back(&*it);
  {
    // Only this thread starts hand-overs: none began since the check above.
    std::lock_guard lock(mutex_);
    handing_over_ = true;
  }
  const int64_t upto = entries.back()->record.seq;
  std::string largest_id;
  for (const JournalEntry* e : entries) largest_id = std::max(largest_id, e->record.id);
  hooks_.add_to_table(std::move(entries), [this, upto, largest_id = std::move(largest_id)](Status s) {
    std::lock_guard lock(mutex_);
    handing_over_ = false;
    if (s) {
      in_table_seq_ = std::max(in_table_seq_, upto);
      largest_in_table_ = std::max(largest_in_table_, largest_id);
      table_error_ = Status::ok();
    } else {
      table_error_ = std::move(s);
      retry_at_us_ = now_us() + kRetryAfterFailureUs;
    }
    progress_.notify_all();
    wake_.notify_one();
  });
}

void AuditJournal::run() {
  pthread_setname_np(pthread_self(), "espace-audit");
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait_for(lock, kIdleWake, [&] { return stopping_ || !queued_.empty() || catch_up_waiters_ > 0; });
    std::vector<Call> calls;
    calls.swap(queued_);
    const bool stopping = stopping_;
    const bool wanted = catch_up_waiters_ > 0 || stopping;
    lock.unlock();
    drop_entries_in_table();
    if (!calls.empty()) write_calls(calls);
    maybe_add_to_table(wanted || file_bytes_ >= kEmptyAtBytes, wanted);
    if (file_bytes_ >= kEmptyAtBytes || stopping) {
      // Wait until the table holds everything the file does, then empty it.
      lock.lock();
      progress_.wait(lock, [&] { return !handing_over_; });
      lock.unlock();
      drop_entries_in_table();
      if (!unfiled_.empty()) maybe_add_to_table(true, wanted);
      lock.lock();
      progress_.wait(lock, [&] { return !handing_over_; });
      const bool all_in_table = in_table_seq_ >= head_.seq;
      lock.unlock();
      drop_entries_in_table();
      if (all_in_table && file_bytes_ > 0) {
        // Emptied by an end mark at the start; the blocks stay for the next records.
        file_bytes_ = 0;
        if (!write_end_mark()) {
          // Unknown whether the start now reads as empty: trust nothing more to the file.
          std::lock_guard failed_lock(mutex_);
          failed_ = true;
          progress_.notify_all();
        }
      }
    }
    lock.lock();
    if (stopping && queued_.empty()) break;
  }
  // Appends that raced with stop() are refused by append(); none is queued.
}

}  // namespace espace::storage::sqlite
