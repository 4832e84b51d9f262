// A VFS over SQLite's default one that gathers the writes of a transaction
// to the write-ahead log into one pwrite.
//
// Why: SQLite writes each WAL frame with two calls, its 24-byte header then
// its page. A commit of the writer touches some 25 pages per created
// resource (one per index row at a random place), so a batch of a dozen
// creates made about 600 pwrite calls, which took over a third of the writer
// thread's time (system call entry and a per-call pass through the page
// cache for each partial page).
//
// Correctness rests on when other connections can see frames: only after the
// commit publishes the new end of the log in the shared index, which SQLite
// does after the commit frame's page is written. The gather writes everything
// it holds when that page arrives (and before any read, sync, truncation,
// size query or non-adjacent write of the file), so what the file holds when
// the commit is published is exactly what it would hold without the gather.
// A failed gathered write fails the commit frame's write, and with it the
// commit.
#pragma once

#include <cstdint>
#include <string>

namespace espace::storage::sqlite {

// The name to pass to sqlite3_open_v2 for a connection whose WAL writes are
// gathered; registered on first call. nullptr (the default VFS) if SQLite
// refused to register it.
const char* wal_gathering_vfs();

// The buffer of one WAL file: adjacent writes are appended, and `flush` is
// told when the buffered bytes must reach the file. Separate from the VFS
// plumbing so it can be tested alone.
class WalWriteGather {
 public:
  static constexpr size_t kMaxBytes = 16 << 20;  // a larger transaction is written in several calls
  static constexpr int kFrameHeaderBytes = 24;

  // What the caller must do after offering a write.
  enum class Next {
    kKeep,         // buffered: nothing to do yet
    kFlush,        // write out the buffer now (it ends with a commit frame, or is full)
  };
  // Whether a write at `offset` continues the buffer; if not, the caller
  // writes out the buffer first and offers the write to the emptied one.
  bool adjacent(int64_t offset) const { return bytes_.empty() || offset == start_ + static_cast<int64_t>(bytes_.size()); }
  // Appends (precondition: adjacent(offset)).
  Next append(const void* data, size_t size, int64_t offset);

  bool empty() const { return bytes_.empty(); }
  const std::string& bytes() const { return bytes_; }
  int64_t start() const { return start_; }
  void clear();

 private:
  std::string bytes_;
  int64_t start_ = 0;
  bool commit_page_next_ = false;  // the last write was the header of a commit frame
};

// Counters over every gathering VFS file since the process started (tests
// and benchmarks).
struct WalGatherCounts {
  int64_t writes_offered = 0;  // xWrite calls SQLite made on WAL files
  int64_t writes_issued = 0;   // pwrite-sized writes handed to the default VFS
};
WalGatherCounts wal_gather_counts();

}  // namespace espace::storage::sqlite
