// A string-keyed map shared by the request threads, for facts that are quick
// to recompute: bounded by starting over when full rather than by tracking
// ages. Private to the policy library.
#pragma once

#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

namespace espace::policy {

template <typename Entry>
class BoundedCache {
 public:
  explicit BoundedCache(size_t max_entries) : max_entries_(max_entries) {}

  // Calls use(entry) under the lock when `key` is there; use copies out what
  // it needs and says whether the entry still holds. False when absent.
  template <typename Use>
  bool find(const std::string& key, Use&& use) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(key);
    return it != entries_.end() && use(it->second);
  }

  void keep(std::string key, Entry entry) {
    std::lock_guard lock(mutex_);
    if (entries_.size() >= max_entries_) entries_.clear();
    entries_.insert_or_assign(std::move(key), std::move(entry));
  }

 private:
  const size_t max_entries_;
  std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace espace::policy
