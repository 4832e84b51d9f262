// A thin layer over SQLite's default page cache that skips needless
// truncations.
//
// Why: SQLite 3.40 (Debian 12), while balancing a B-tree, briefly gives a page
// the number of the lock-byte page (1 GiB / page size) to reorder new pages.
// The default cache remembers that number as its largest key, so the
// truncation to the database size that ends every transaction believes pages
// lie past the end and walks the whole cache hash table: one cache miss per
// cached page, at every COMMIT of the writer (2-6 % of its time in the create
// benchmarks). The layer tracks which keys can really be in the cache and
// forwards a truncation only when one can be at or past the limit; everything
// else goes straight to the default cache.
#pragma once

#include <cstdint>
#include <map>

namespace espace::storage::sqlite {

// The keys one cache may hold, conservatively: every key created since the
// last truncation below it is <= `fetched_max`, or is a moved key counted in
// `moved` (renumbered pages are rare: B-tree balancing only).
class PageKeyBounds {
 public:
  void fetched(unsigned key) {
    if (key > fetched_max_) fetched_max_ = key;
  }
  void moved(unsigned from, unsigned to) noexcept {
    auto it = moved_.find(from);
    if (it != moved_.end() && --it->second == 0) moved_.erase(it);
    if (to <= fetched_max_) return;
    try {
      ++moved_[to];
    } catch (...) {
      lost_track_ = true;  // out of memory: every truncation is passed on from now on
    }
  }
  // Whether a truncation to keys below `limit` may drop a page; afterwards
  // (whether it ran or was skipped) no page at or past `limit` remains.
  bool truncate(unsigned limit) {
    if (limit == 0) {  // everything goes (keys start at 1; passed on whatever is known)
      fetched_max_ = 0;
      moved_.clear();
      lost_track_ = false;  // nothing is left to lose track of
      return true;
    }
    bool needed = lost_track_ || fetched_max_ >= limit || (!moved_.empty() && moved_.rbegin()->first >= limit);
    if (fetched_max_ >= limit) fetched_max_ = limit - 1;
    moved_.erase(moved_.lower_bound(limit), moved_.end());
    return needed;
  }

 private:
  unsigned fetched_max_ = 0;
  std::map<unsigned, int> moved_;
  bool lost_track_ = false;
};

// Puts the layer in front of SQLite's page cache for the whole process.
// Only possible before SQLite is first used (sqlite3_config): returns whether
// the layer is in place, and changes nothing when it cannot be. Calling it
// again is harmless.
bool install_page_cache_layer();

// Truncations the layer passed on to the default cache or skipped, process-wide.
struct PageCacheLayerCounts {
  int64_t forwarded = 0;
  int64_t skipped = 0;
};
PageCacheLayerCounts page_cache_layer_counts();

}  // namespace espace::storage::sqlite
