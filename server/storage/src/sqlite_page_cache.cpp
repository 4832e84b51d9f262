#include "sqlite_page_cache.h"

#include <sqlite3.h>

#include <atomic>
#include <mutex>
#include <new>

namespace espace::storage::sqlite {

namespace {

// SQLite's own cache; set once, before any cache is created.
sqlite3_pcache_methods2 g_default{};
std::atomic<int64_t> g_forwarded{0}, g_skipped{0};

// One cache: the default cache it wraps and the keys it may hold. A cache is
// used by one connection at a time, under that connection's lock.
struct BoundedCache {
  sqlite3_pcache* inner = nullptr;
  PageKeyBounds keys;
};

BoundedCache* bounded(sqlite3_pcache* p) { return reinterpret_cast<BoundedCache*>(p); }

int cache_init(void*) { return g_default.xInit ? g_default.xInit(g_default.pArg) : SQLITE_OK; }
void cache_shutdown(void*) {
  if (g_default.xShutdown) g_default.xShutdown(g_default.pArg);
}

sqlite3_pcache* cache_create(int page_size, int extra_size, int purgeable) {
  auto* c = new (std::nothrow) BoundedCache;
  if (!c) return nullptr;
  c->inner = g_default.xCreate(page_size, extra_size, purgeable);
  if (!c->inner) {
    delete c;
    return nullptr;
  }
  return reinterpret_cast<sqlite3_pcache*>(c);
}

void cache_size(sqlite3_pcache* p, int pages) { g_default.xCachesize(bounded(p)->inner, pages); }

int cache_page_count(sqlite3_pcache* p) { return g_default.xPagecount(bounded(p)->inner); }

sqlite3_pcache_page* cache_fetch(sqlite3_pcache* p, unsigned key, int create) {
  BoundedCache* c = bounded(p);
  sqlite3_pcache_page* page = g_default.xFetch(c->inner, key, create);
  if (page) c->keys.fetched(key);
  return page;
}

void cache_unpin(sqlite3_pcache* p, sqlite3_pcache_page* page, int discard) {
  g_default.xUnpin(bounded(p)->inner, page, discard);
}

void cache_rekey(sqlite3_pcache* p, sqlite3_pcache_page* page, unsigned from, unsigned to) {
  BoundedCache* c = bounded(p);
  g_default.xRekey(c->inner, page, from, to);
  c->keys.moved(from, to);
}

void cache_truncate(sqlite3_pcache* p, unsigned limit) {
  BoundedCache* c = bounded(p);
  if (c->keys.truncate(limit)) {
    g_default.xTruncate(c->inner, limit);
    g_forwarded.fetch_add(1, std::memory_order_relaxed);
  } else {
    g_skipped.fetch_add(1, std::memory_order_relaxed);
  }
}

void cache_destroy(sqlite3_pcache* p) {
  BoundedCache* c = bounded(p);
  g_default.xDestroy(c->inner);
  delete c;
}

void cache_shrink(sqlite3_pcache* p) {
  if (g_default.xShrink) g_default.xShrink(bounded(p)->inner);
}

}  // namespace

bool install_page_cache_layer() {
  // Once only: a second install would find the layer itself as the default.
  static std::mutex mutex;
  static bool installed = false;
  std::lock_guard lock(mutex);
  if (installed) return true;
  sqlite3_pcache_methods2 base{};
  if (sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &base) != SQLITE_OK || !base.xCreate || !base.xFetch ||
      !base.xCachesize || !base.xPagecount || !base.xUnpin || !base.xRekey || !base.xTruncate || !base.xDestroy)
    return false;
  g_default = base;
  static sqlite3_pcache_methods2 layer{};
  layer.iVersion = 1;
  layer.pArg = nullptr;
  layer.xInit = cache_init;
  layer.xShutdown = cache_shutdown;
  layer.xCreate = cache_create;
  layer.xCachesize = cache_size;
  layer.xPagecount = cache_page_count;
  layer.xFetch = cache_fetch;
  layer.xUnpin = cache_unpin;
  layer.xRekey = cache_rekey;
  layer.xTruncate = cache_truncate;
  layer.xDestroy = cache_destroy;
  layer.xShrink = cache_shrink;
  installed = sqlite3_config(SQLITE_CONFIG_PCACHE2, &layer) == SQLITE_OK;
  return installed;
}

PageCacheLayerCounts page_cache_layer_counts() {
  return {g_forwarded.load(std::memory_order_relaxed), g_skipped.load(std::memory_order_relaxed)};
}

}  // namespace espace::storage::sqlite
