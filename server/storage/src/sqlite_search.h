// Search over SQLite: translates a storage::SearchQuery into one SQL
// statement (plus a count and the include lookups, in the same snapshot).
// Internal to the storage library; SqliteStorage::search calls it with a
// pooled reader connection.
#pragma once

#include "espace/storage/storage.h"
#include "sqlite_connection.h"

namespace espace::storage::sqlite {

// Limits that keep one plan's SQL bounded whatever the client sends.
inline constexpr int kMaxSearchConditions = 64;
inline constexpr int kMaxChainDepth = 4;
inline constexpr int kMaxSearchPage = 10000;

Status run_search(Connection& c, const SearchQuery& q, SearchPage* out);

}  // namespace espace::storage::sqlite
