#include "sqlite_wal_gather.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <new>

namespace espace::storage::sqlite {

WalWriteGather::Next WalWriteGather::append(const void* data, size_t size, int64_t offset) {
  if (bytes_.empty()) start_ = offset;
  bytes_.append(static_cast<const char*>(data), size);
  if (commit_page_next_) {
    commit_page_next_ = false;
    return Next::kFlush;
  }
  // A frame header is the only 24-byte write SQLite makes to a WAL (its file
  // header is 32 bytes, pages 512 or more); bytes 4-7 hold the database size
  // after the commit, and are zero in frames that do not end a transaction.
  if (size == kFrameHeaderBytes) {
    const auto* h = static_cast<const unsigned char*>(data);
    commit_page_next_ = (h[4] | h[5] | h[6] | h[7]) != 0;
  }
  return bytes_.size() >= kMaxBytes ? Next::kFlush : Next::kKeep;
}

void WalWriteGather::clear() {
  bytes_.clear();
  start_ = 0;
  commit_page_next_ = false;
}

namespace {

std::atomic<int64_t> writes_offered{0};
std::atomic<int64_t> writes_issued{0};

sqlite3_vfs* inner_vfs = nullptr;  // the default VFS, set once before registration

// A WAL file of the gathering VFS: our header, then the default VFS's file.
struct GatherFile {
  sqlite3_file base;
  sqlite3_file* real;
  WalWriteGather* gather;
};
constexpr size_t kRealOffset = (sizeof(GatherFile) + 15) & ~size_t{15};

GatherFile* as_gather(sqlite3_file* f) { return reinterpret_cast<GatherFile*>(f); }

// The default VFS of SQLite 3.40 keeps only the low 17 bits of a write's
// size (it writes `size & 0x1ffff` bytes per call and reports a disk full when
// that is zero), so larger buffers go out in pieces below that.
constexpr size_t kWritePiece = 64 << 10;

int write_through(GatherFile* g, const char* data, size_t size, int64_t offset) {
  for (size_t done = 0; done < size;) {
    const size_t piece = std::min(kWritePiece, size - done);
    writes_issued.fetch_add(1, std::memory_order_relaxed);
    int rc = g->real->pMethods->xWrite(g->real, data + done, static_cast<int>(piece),
                                       offset + static_cast<int64_t>(done));
    if (rc != SQLITE_OK) return rc;
    done += piece;
  }
  return SQLITE_OK;
}

int flush(GatherFile* g) {
  if (g->gather->empty()) return SQLITE_OK;
  const std::string& bytes = g->gather->bytes();
  int rc = write_through(g, bytes.data(), bytes.size(), g->gather->start());
  g->gather->clear();
  return rc;
}

int gather_close(sqlite3_file* f) {
  GatherFile* g = as_gather(f);
  int rc = flush(g);
  int close_rc = g->real->pMethods->xClose(g->real);
  delete g->gather;
  g->gather = nullptr;
  return rc != SQLITE_OK ? rc : close_rc;
}

int gather_read(sqlite3_file* f, void* out, int amount, sqlite3_int64 offset) {
  GatherFile* g = as_gather(f);
  if (int rc = flush(g); rc != SQLITE_OK) return rc;
  return g->real->pMethods->xRead(g->real, out, amount, offset);
}

int gather_write(sqlite3_file* f, const void* data, int amount, sqlite3_int64 offset) {
  GatherFile* g = as_gather(f);
  writes_offered.fetch_add(1, std::memory_order_relaxed);
  const auto size = static_cast<size_t>(amount);
  if (!g->gather->adjacent(offset) || g->gather->bytes().size() + size > WalWriteGather::kMaxBytes) {
    if (int rc = flush(g); rc != SQLITE_OK) return rc;
  }
  if (size > WalWriteGather::kMaxBytes) return write_through(g, static_cast<const char*>(data), size, offset);
  if (g->gather->append(data, size, offset) == WalWriteGather::Next::kFlush) return flush(g);
  return SQLITE_OK;
}

int gather_truncate(sqlite3_file* f, sqlite3_int64 size) {
  GatherFile* g = as_gather(f);
  if (int rc = flush(g); rc != SQLITE_OK) return rc;
  return g->real->pMethods->xTruncate(g->real, size);
}

int gather_sync(sqlite3_file* f, int flags) {
  GatherFile* g = as_gather(f);
  if (int rc = flush(g); rc != SQLITE_OK) return rc;
  return g->real->pMethods->xSync(g->real, flags);
}

int gather_file_size(sqlite3_file* f, sqlite3_int64* size) {
  GatherFile* g = as_gather(f);
  if (int rc = flush(g); rc != SQLITE_OK) return rc;
  return g->real->pMethods->xFileSize(g->real, size);
}

int gather_lock(sqlite3_file* f, int level) { return as_gather(f)->real->pMethods->xLock(as_gather(f)->real, level); }
int gather_unlock(sqlite3_file* f, int level) {
  return as_gather(f)->real->pMethods->xUnlock(as_gather(f)->real, level);
}
int gather_check_reserved(sqlite3_file* f, int* out) {
  return as_gather(f)->real->pMethods->xCheckReservedLock(as_gather(f)->real, out);
}

int gather_file_control(sqlite3_file* f, int op, void* arg) {
  GatherFile* g = as_gather(f);
  if (int rc = flush(g); rc != SQLITE_OK) return rc;
  return g->real->pMethods->xFileControl(g->real, op, arg);
}

int gather_sector_size(sqlite3_file* f) { return as_gather(f)->real->pMethods->xSectorSize(as_gather(f)->real); }
int gather_device_characteristics(sqlite3_file* f) {
  return as_gather(f)->real->pMethods->xDeviceCharacteristics(as_gather(f)->real);
}

// Version 1: a WAL file is never memory-mapped nor used for shared memory
// (both concern the database file).
const sqlite3_io_methods kGatherMethods = {
    1,
    gather_close,
    gather_read,
    gather_write,
    gather_truncate,
    gather_sync,
    gather_file_size,
    gather_lock,
    gather_unlock,
    gather_check_reserved,
    gather_file_control,
    gather_sector_size,
    gather_device_characteristics,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
};

// Files other than WALs are the default VFS's own, opened in place at the
// start of the block SQLite allocated (szOsFile covers both layouts).
int gather_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  if (!(flags & SQLITE_OPEN_WAL)) return inner_vfs->xOpen(inner_vfs, name, file, flags, out_flags);
  GatherFile* g = as_gather(file);
  g->base.pMethods = nullptr;
  g->gather = nullptr;
  g->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(file) + kRealOffset);
  std::memset(g->real, 0, static_cast<size_t>(inner_vfs->szOsFile));
  int rc = inner_vfs->xOpen(inner_vfs, name, g->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    if (g->real->pMethods) g->real->pMethods->xClose(g->real);
    return rc;
  }
  g->gather = new (std::nothrow) WalWriteGather();
  if (!g->gather) {
    g->real->pMethods->xClose(g->real);
    return SQLITE_NOMEM;
  }
  g->base.pMethods = &kGatherMethods;
  return SQLITE_OK;
}

int gather_delete(sqlite3_vfs*, const char* name, int sync_dir) { return inner_vfs->xDelete(inner_vfs, name, sync_dir); }
int gather_access(sqlite3_vfs*, const char* name, int flags, int* out) {
  return inner_vfs->xAccess(inner_vfs, name, flags, out);
}
int gather_full_pathname(sqlite3_vfs*, const char* name, int size, char* out) {
  return inner_vfs->xFullPathname(inner_vfs, name, size, out);
}
void* gather_dl_open(sqlite3_vfs*, const char* name) { return inner_vfs->xDlOpen(inner_vfs, name); }
void gather_dl_error(sqlite3_vfs*, int size, char* out) { inner_vfs->xDlError(inner_vfs, size, out); }
void (*gather_dl_sym(sqlite3_vfs*, void* handle, const char* symbol))(void) {
  return inner_vfs->xDlSym(inner_vfs, handle, symbol);
}
void gather_dl_close(sqlite3_vfs*, void* handle) { inner_vfs->xDlClose(inner_vfs, handle); }
int gather_randomness(sqlite3_vfs*, int size, char* out) { return inner_vfs->xRandomness(inner_vfs, size, out); }
int gather_sleep(sqlite3_vfs*, int us) { return inner_vfs->xSleep(inner_vfs, us); }
int gather_current_time(sqlite3_vfs*, double* out) { return inner_vfs->xCurrentTime(inner_vfs, out); }
int gather_last_error(sqlite3_vfs*, int size, char* out) { return inner_vfs->xGetLastError(inner_vfs, size, out); }
int gather_current_time_int64(sqlite3_vfs*, sqlite3_int64* out) {
  return inner_vfs->xCurrentTimeInt64(inner_vfs, out);
}
int gather_set_system_call(sqlite3_vfs*, const char* name, sqlite3_syscall_ptr call) {
  return inner_vfs->xSetSystemCall(inner_vfs, name, call);
}
sqlite3_syscall_ptr gather_get_system_call(sqlite3_vfs*, const char* name) {
  return inner_vfs->xGetSystemCall(inner_vfs, name);
}
const char* gather_next_system_call(sqlite3_vfs*, const char* name) {
  return inner_vfs->xNextSystemCall(inner_vfs, name);
}

sqlite3_vfs gather_vfs;

const char* register_vfs() {
  inner_vfs = sqlite3_vfs_find(nullptr);
  // Version 3 is what the calls below forward; an older default VFS is not
  // worth wrapping.
  if (!inner_vfs || inner_vfs->iVersion < 3) return nullptr;
  gather_vfs = sqlite3_vfs{};
  gather_vfs.iVersion = 3;
  gather_vfs.szOsFile = static_cast<int>(kRealOffset) + inner_vfs->szOsFile;
  gather_vfs.mxPathname = inner_vfs->mxPathname;
  gather_vfs.zName = "espace-wal-gather";
  gather_vfs.xOpen = gather_open;
  gather_vfs.xDelete = gather_delete;
  gather_vfs.xAccess = gather_access;
  gather_vfs.xFullPathname = gather_full_pathname;
  gather_vfs.xDlOpen = gather_dl_open;
  gather_vfs.xDlError = gather_dl_error;
  gather_vfs.xDlSym = gather_dl_sym;
  gather_vfs.xDlClose = gather_dl_close;
  gather_vfs.xRandomness = gather_randomness;
  gather_vfs.xSleep = gather_sleep;
  gather_vfs.xCurrentTime = gather_current_time;
  gather_vfs.xGetLastError = gather_last_error;
  gather_vfs.xCurrentTimeInt64 = gather_current_time_int64;
  gather_vfs.xSetSystemCall = gather_set_system_call;
  gather_vfs.xGetSystemCall = gather_get_system_call;
  gather_vfs.xNextSystemCall = gather_next_system_call;
  if (sqlite3_vfs_register(&gather_vfs, 0) != SQLITE_OK) return nullptr;
  return gather_vfs.zName;
}

}  // namespace

const char* wal_gathering_vfs() {
  static const char* name = register_vfs();
  return name;
}

WalGatherCounts wal_gather_counts() {
  return WalGatherCounts{writes_offered.load(), writes_issued.load()};
}

}  // namespace espace::storage::sqlite
