// make_guard (guard.h): the storage seen through the rules of one request.
//
// Chains and _has are resolved over visible resources before the search
// runs (a hidden resource never decides which visible ones match).
//
// Visibility of a stored version is decided once per request and cached:
//  - a delete marker has no body, so it is judged by the version it deleted
//    (the body just before it);
//  - an older version is visible only while the resource as a whole is
//    visible (its current version, judged as above): masking a document
//    hides every version of it, not only the latest.
// Hidden versions are answered exactly as absent ones (same status and
// diagnostics as the SQLite storage gives for an unknown id), and searches
// and histories page and count over visible versions only, by re-querying
// the base storage in chunks. Every scan is bounded (kMaxScannedRows):
// beyond it the request fails with too-costly rather than answer a count or
// a page that would be wrong.
#include "espace/policy/guard.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace espace::policy {

namespace {

using fhir::ErrorCategory;
using fhir::Status;
using storage::ResourceVersion;

// Rows of the base storage judged by one scan (a page, a total, an offset);
// the request fails with too-costly beyond it.
constexpr int64_t kMaxScannedRows = 50000;
// Base rows fetched per round trip while filling a page or counting.
constexpr int kScanChunk = 200;
constexpr int kCountChunk = 1000;
// Ids per _include query, and rounds of _include:iterate (as the storage).
constexpr size_t kIncludeIdsPerQuery = 500;
constexpr int kMaxIncludeRounds = 8;
// Chains and _has: visible resources a join may resolve to, and nesting.
constexpr size_t kMaxJoinIds = 5000;
constexpr int kMaxJoinDepth = 6;
// An id no stored resource has (ids are [A-Za-z0-9.-]): an empty join.
constexpr const char* kNoSuchId = "!";

std::string key_of(const std::string& type, const std::string& id) { return type + "/" + id; }
std::string version_key(const ResourceVersion& v) {
  return v.type + "/" + v.id + "/_history/" + std::to_string(v.version);
}

// The answers of the SQLite storage for ids it does not hold (sqlite_storage.cpp):
// a hidden resource must be indistinguishable from those.
Status absent(const std::string& type, const std::string& id) {
  return Status::error(ErrorCategory::NotFound, "not-found", "storage: " + type + "/" + id + " does not exist");
}
Status absent_version(const std::string& type, const std::string& id, int64_t version) {
  return Status::error(ErrorCategory::NotFound, "not-found",
                       "storage: " + type + "/" + id + " has no version " + std::to_string(version));
}
// An audit record as the version the rules judge.
ResourceVersion audit_version(const storage::AuditRecord& r) {
  ResourceVersion v;
  v.type = "AuditEvent";
  v.id = r.id;
  v.version = 1;
  v.last_updated_us = r.recorded_us;
  v.method = "POST";
  v.json = r.json;
  return v;
}

Status too_costly(const std::string& what) {
  return Status::error(ErrorCategory::TooLarge, "too-costly",
                       what + " would have to examine more than " + std::to_string(kMaxScannedRows) +
                           " stored resources under the access rules; narrow it (patient, _type, _since, dates)");
}

// What one request has seen and decided; shared by the storage decorator and
// the write transactions it hands out.
class Judge {
 public:
  Judge(storage::Storage& base, std::unique_ptr<ResourceRules> rules) : base_(base), rules_(std::move(rules)) {}

  // Is this version visible? For a current version (search matches, reads)
  // the answer also settles the resource as a whole.
  bool current_visible(const ResourceVersion& v) {
    bool visible = version_verdict(v);
    resource_visible_[key_of(v.type, v.id)] = visible;
    return visible;
  }

  // Is this (possibly older) version visible: its own verdict and the
  // resource's current one.
  bool version_visible(const ResourceVersion& v) { return version_verdict(v) && resource_visible(v.type, v.id); }

  // The resource as a whole, judged by its current version; false when it
  // cannot be read.
  bool resource_visible(const std::string& type, const std::string& id) {
    std::string key = key_of(type, id);
    auto it = resource_visible_.find(key);
    if (it != resource_visible_.end()) return it->second;
    ResourceVersion current;
    bool visible = base_.read(type, id, &current) && version_verdict(current);
    resource_visible_[key] = visible;
    return visible;
  }

  // A write changed the resource: judge it again next time.
  void forget(const std::string& type, const std::string& id) { resource_visible_.erase(key_of(type, id)); }

  void note_returned(const ResourceVersion& v) {
    std::string key = version_key(v);
    if (returned_.insert(key).second) record_.resources.push_back(std::move(key));
  }

  Status may_write(const ResourceVersion* before, const ResourceVersion& after) {
    return rules_->may_write(before, after, &record_);
  }
  Status restrict_search(storage::SearchQuery* q) { return rules_->restrict_search(q); }

  storage::Storage& base() { return base_; }
  const AccessRecord& record() const { return record_; }

 private:
  bool version_verdict(const ResourceVersion& v) {
    std::string key = version_key(v);
    auto it = version_visible_.find(key);
    if (it != version_visible_.end()) return it->second;
    bool visible = false;
    if (!v.deleted) {
      visible = rules_->may_see(v, &record_).visible;
    } else if (v.version > 1) {
      // A delete marker shows what it deleted: judge that body. Unreadable
      // (not yet committed by another write of the same batch): hidden.
      ResourceVersion deleted_body;
      if (base_.vread(v.type, v.id, v.version - 1, &deleted_body) && !deleted_body.deleted)
        visible = rules_->may_see(deleted_body, &record_).visible;
    }
    if (!visible) {
      hidden_.insert(key);
      record_.hidden = hidden_.size();
    }
    version_visible_[key] = visible;
    return visible;
  }

  storage::Storage& base_;
  std::unique_ptr<ResourceRules> rules_;
  AccessRecord record_;
  std::map<std::string, bool> version_visible_;   // "Type/id/_history/v"
  std::map<std::string, bool> resource_visible_;  // "Type/id"
  std::set<std::string> hidden_, returned_;
};

// The transaction handed to write bodies: hidden current versions read as
// absent, and every put passes may_write first.
class GuardedTxn final : public storage::WriteTxn {
 public:
  GuardedTxn(storage::WriteTxn& base, Judge& judge) : base_(base), judge_(judge) {}

  Status current(const std::string& type, const std::string& id, std::optional<ResourceVersion>* out) override {
    if (Status s = base_.current(type, id, out); !s) return s;
    if (*out && !judge_.current_visible(**out)) out->reset();
    return Status::ok();
  }

  Status put(const ResourceVersion& v, const std::vector<storage::IndexEntry>& index) override {
    std::optional<ResourceVersion> before;
    if (Status s = base_.current(v.type, v.id, &before); !s) return s;
    bool hidden_before = before && !judge_.current_visible(*before);
    Status allowed = judge_.may_write(before ? &*before : nullptr, v);
    if (!allowed) return allowed;
    if (hidden_before) {
      // The rules must refuse a write over what the caller cannot see
      // (guard.h); if they did not, refuse here rather than overwrite it.
      return Status::error(ErrorCategory::Forbidden, "forbidden",
                           "access denied (rule HIDDEN_TARGET): this write is not allowed");
    }
    if (Status s = base_.put(v, index); !s) return s;
    judge_.forget(v.type, v.id);
    judge_.note_returned(v);
    return Status::ok();
  }

  int64_t now_us() override { return base_.now_us(); }

 private:
  storage::WriteTxn& base_;
  Judge& judge_;
};

class GuardedStorage final : public storage::Storage {
 public:
  explicit GuardedStorage(Judge& judge) : judge_(judge), base_(judge.base()) {}

  Status read(const std::string& type, const std::string& id, ResourceVersion* out) override {
    if (Status s = base_.read(type, id, out); !s) return s;
    if (!judge_.current_visible(*out)) {
      *out = ResourceVersion();
      return absent(type, id);
    }
    judge_.note_returned(*out);
    return Status::ok();
  }

  Status vread(const std::string& type, const std::string& id, int64_t version, ResourceVersion* out) override {
    if (Status s = base_.vread(type, id, version, out); !s) return s;
    if (!judge_.version_visible(*out)) {
      *out = ResourceVersion();
      return absent_version(type, id, version);
    }
    judge_.note_returned(*out);
    return Status::ok();
  }

  Status history(const storage::HistoryQuery& q, storage::HistoryPage* out) override {
    *out = storage::HistoryPage();
    if (q.count < 0) return base_.history(q, out);  // the base names the error
    int64_t scanned = 0;
    bool exhausted = false;    // the page scan reached the oldest matching version
    int64_t visible_seen = 0;  // visible versions met by the page scan
    if (q.count > 0) {
      storage::HistoryQuery b = q;
      int64_t cursor = q.before_seq;
      while (static_cast<int>(out->versions.size()) < q.count) {
        int need = q.count - static_cast<int>(out->versions.size());
        b.before_seq = cursor;
        b.count = std::max(need, kScanChunk);
        storage::HistoryPage page;
        if (Status s = base_.history(b, &page); !s) return s;
        scanned += static_cast<int64_t>(page.versions.size());
        size_t used = 0;  // versions of this batch the page consumed
        for (size_t i = 0; i < page.versions.size() && static_cast<int>(out->versions.size()) < q.count; ++i) {
          used = i + 1;
          if (!judge_.version_visible(page.versions[i])) continue;
          ++visible_seen;
          out->versions.push_back(std::move(page.versions[i]));
        }
        bool batch_short = static_cast<int>(page.versions.size()) < b.count;
        if (static_cast<int>(out->versions.size()) == q.count) {
          if (used == page.versions.size()) {
            out->last_seq = page.last_seq;
            exhausted = batch_short;
          } else {
            // The page ends inside this batch: its cursor is the sequence of
            // the last version used, which only the base can tell.
            storage::HistoryQuery exact = b;
            exact.count = static_cast<int>(used);
            storage::HistoryPage head;
            if (Status s = base_.history(exact, &head); !s) return s;
            out->last_seq = head.last_seq;
          }
          break;
        }
        if (batch_short || page.last_seq <= 1) {
          out->last_seq = page.last_seq;
          exhausted = true;
          break;
        }
        cursor = page.last_seq;
        if (scanned > kMaxScannedRows) return too_costly("this history");
      }
    }
    for (const ResourceVersion& v : out->versions) judge_.note_returned(v);

    // The total counts visible versions of the whole history (not the page).
    if (q.before_seq == 0 && exhausted) {
      out->total = visible_seen;
      return Status::ok();
    }
    storage::HistoryQuery b = q;
    b.before_seq = 0;
    b.count = kCountChunk;
    int64_t total = 0;
    scanned = 0;
    for (;;) {
      storage::HistoryPage page;
      if (Status s = base_.history(b, &page); !s) return s;
      scanned += static_cast<int64_t>(page.versions.size());
      for (const ResourceVersion& v : page.versions)
        if (judge_.version_visible(v)) ++total;
      if (static_cast<int>(page.versions.size()) < b.count || page.last_seq <= 1) break;
      if (scanned > kMaxScannedRows) return too_costly("counting this history");
      b.before_seq = page.last_seq;
    }
    out->total = total;
    return Status::ok();
  }

  Status write(const std::function<Status(storage::WriteTxn&)>& body) override {
    return base_.write([&](storage::WriteTxn& txn) {
      GuardedTxn guarded(txn, judge_);
      return body(guarded);
    });
  }

  Status find_by_token(const std::string& type, const std::string& param, const std::string& system,
                       const std::string& value, std::vector<std::string>* ids) override {
    std::vector<std::string> all;
    if (Status s = base_.find_by_token(type, param, system, value, &all); !s) return s;
    ids->clear();
    for (std::string& id : all)
      if (judge_.resource_visible(type, id)) ids->push_back(std::move(id));
    return Status::ok();
  }

  // The audit trail: each event is judged as version 1 of an AuditEvent, so
  // the rules decide who reads which events (hidden == absent here too).
  // Appending and verification are not for requests: the base defaults refuse.
  Status read_audit(const std::string& id, storage::AuditRecord* out) override {
    if (Status s = base_.read_audit(id, out); !s) return s;
    ResourceVersion v = audit_version(*out);
    if (!judge_.current_visible(v)) {
      *out = storage::AuditRecord();
      return absent("AuditEvent", id);
    }
    judge_.note_returned(v);
    return Status::ok();
  }

  // Hidden events are skipped and the page refilled from older ones (a
  // bounded number of storage pages); the cursor is the last event returned.
  Status search_audit(const storage::AuditQuery& asked, storage::AuditPage* out) override {
    constexpr int kRefills = 20;
    out->records.clear();
    out->more = false;
    out->last_seq = 0;
    const size_t wanted = static_cast<size_t>(std::max(asked.count, 0));
    storage::AuditQuery q = asked;
    for (int round = 0; round < kRefills; ++round) {
      storage::AuditPage page;
      if (Status s = base_.search_audit(q, &page); !s) return s;
      for (size_t i = 0; i < page.records.size(); ++i) {
        if (out->records.size() == wanted) {
          out->more = true;
          return Status::ok();
        }
        ResourceVersion v = audit_version(page.records[i]);
        if (!judge_.current_visible(v)) continue;
        judge_.note_returned(v);
        out->last_seq = page.records[i].seq;
        out->records.push_back(std::move(page.records[i]));
      }
      if (!page.more) return Status::ok();
      if (out->records.size() == wanted) {
        out->more = true;
        return Status::ok();
      }
      q.before_seq = page.last_seq;
      out->last_seq = page.last_seq;  // continue below what was examined
    }
    out->more = true;
    return Status::ok();
  }

  Status search(const storage::SearchQuery& asked, storage::SearchPage* out) override {
    *out = storage::SearchPage();
    storage::SearchQuery q = asked;
    if (Status s = judge_.restrict_search(&q); !s) return s;
    if (Status s = resolve_joins(&q, 0); !s) return s;
    std::vector<storage::IncludeSpec> includes = std::move(q.includes);
    q.includes.clear();
    bool whole_result_seen = false;  // the page scan met every match
    if (q.count > 0) {
      Status s = (!q.sort.empty() || q.offset > 0) ? page_by_offset(q, out, &whole_result_seen)
                 : q.before_key > 0                ? page_backwards(q, out)
                                                   : page_forwards(q, out, &whole_result_seen);
      if (!s) return s;
    }
    if (q.want_total) {
      if (whole_result_seen) {
        out->total = static_cast<int64_t>(out->matches.size()) + (q.offset > 0 ? q.offset : 0);
      } else if (Status s = count_visible(q, &out->total); !s) {
        return s;
      }
    }
    for (const storage::SearchMatch& m : out->matches) judge_.note_returned(m.resource);
    if (!includes.empty() && !out->matches.empty())
      if (Status s = include(includes, q.max_included, out); !s) return s;
    return Status::ok();
  }

 private:
  static storage::SearchQuery scan_query(const storage::SearchQuery& q) {
    storage::SearchQuery b = q;
    b.want_total = false;
    b.includes.clear();
    return b;
  }

  // Chains and _has join the searched resources with others through the
  // index: run as they are, a hidden resource would decide which visible
  // ones match (an oracle). Each join is resolved here first, over the
  // VISIBLE resources of the joined type only, and replaced by plain
  // conditions on ids and reference values.
  Status resolve_joins(storage::SearchQuery* q, int depth) {
    if (depth > kMaxJoinDepth)
      return Status::error(ErrorCategory::Invalid, "invalid", "search chains and _has are nested too deeply");
    for (storage::Condition& c : q->all_of) {
      if (c.kind == storage::Condition::Kind::Has && c.has_query) {
        storage::SearchQuery inner = *c.has_query;
        if (inner.type.empty()) inner.type = c.has_type;
        if (Status s = resolve_joins(&inner, depth + 1); !s) return s;
        std::vector<std::string> sources;
        if (Status s = visible_ids(inner, &sources); !s) return s;
        storage::IncludeSpec refs;
        refs.source_type = inner.type;
        refs.param = c.has_param;
        refs.target_type = q->type;
        std::set<std::string> targets;
        for (size_t at = 0; at < sources.size(); at += kIncludeIdsPerQuery) {
          storage::SearchQuery iq;
          iq.type = inner.type;
          storage::Condition by_id;
          by_id.kind = storage::Condition::Kind::Id;
          by_id.ids.assign(sources.begin() + static_cast<std::ptrdiff_t>(at),
                           sources.begin() + static_cast<std::ptrdiff_t>(std::min(sources.size(), at + kIncludeIdsPerQuery)));
          iq.count = static_cast<int>(by_id.ids.size());
          iq.all_of.push_back(std::move(by_id));
          iq.includes.push_back(refs);
          iq.max_included = static_cast<int>(kMaxJoinIds) + 1;
          storage::SearchPage page;
          if (Status s = base_.search(iq, &page); !s) return s;
          for (const ResourceVersion& v : page.included)
            if (q->type.empty() || v.type == q->type) targets.insert(v.id);
          if (targets.size() > kMaxJoinIds) return too_costly("this _has search");
        }
        storage::Condition resolved;
        resolved.kind = storage::Condition::Kind::Id;
        resolved.ids.assign(targets.begin(), targets.end());
        if (resolved.ids.empty()) resolved.ids.push_back(kNoSuchId);
        resolved.negate = c.negate;
        c = std::move(resolved);
        continue;
      }
      bool chained = std::any_of(c.any_of.begin(), c.any_of.end(), [](const storage::IndexTest& t) { return t.target; });
      if (!chained) continue;
      std::vector<storage::IndexTest> tests;
      for (storage::IndexTest& t : c.any_of) {
        if (!t.target) {
          tests.push_back(std::move(t));
          continue;
        }
        storage::SearchQuery inner = *t.target;
        if (Status s = resolve_joins(&inner, depth + 1); !s) return s;
        std::vector<std::string> ids;
        if (Status s = visible_ids(inner, &ids); !s) return s;
        if (ids.empty()) ids.push_back(kNoSuchId);
        for (const std::string& id : ids) {
          storage::IndexTest plain;
          plain.param = t.param;
          plain.kind = t.kind;
          plain.system = t.system ? t.system : std::optional<std::string>(inner.type);
          plain.value_op = storage::TextOp::Equal;
          plain.value = id;
          tests.push_back(std::move(plain));
        }
      }
      c.any_of = std::move(tests);
    }
    return Status::ok();
  }

  // Ids of every visible match of `q` (creation order), bounded.
  Status visible_ids(const storage::SearchQuery& q, std::vector<std::string>* ids) {
    storage::SearchQuery b = scan_query(q);
    b.sort.clear();
    b.offset = 0;
    b.after_key = 0;
    b.before_key = 0;
    b.count = kCountChunk;
    int64_t scanned = 0;
    for (;;) {
      storage::SearchPage page;
      if (Status s = base_.search(b, &page); !s) return s;
      scanned += static_cast<int64_t>(page.matches.size());
      for (const storage::SearchMatch& m : page.matches)
        if (judge_.current_visible(m.resource)) ids->push_back(m.resource.id);
      if (ids->size() > kMaxJoinIds) return too_costly("this chained or _has search");
      if (!page.more || page.matches.empty()) break;
      if (scanned > kMaxScannedRows) return too_costly("this chained or _has search");
      b.after_key = page.matches.back().key;
    }
    return Status::ok();
  }

  // Creation order from after_key: `count` visible matches, and one more to
  // know whether another page follows.
  Status page_forwards(const storage::SearchQuery& q, storage::SearchPage* out, bool* whole) {
    storage::SearchQuery b = scan_query(q);
    b.count = std::max(q.count + 1, kScanChunk);
    int64_t scanned = 0;
    for (;;) {
      storage::SearchPage page;
      if (Status s = base_.search(b, &page); !s) return s;
      scanned += static_cast<int64_t>(page.matches.size());
      for (storage::SearchMatch& m : page.matches) {
        if (!judge_.current_visible(m.resource)) continue;
        if (static_cast<int>(out->matches.size()) == q.count) {
          out->more = true;
          return Status::ok();
        }
        out->matches.push_back(std::move(m));
      }
      if (!page.more || page.matches.empty()) break;
      if (scanned > kMaxScannedRows) return too_costly("this search");
      b.after_key = page.matches.back().key;
    }
    *whole = q.after_key == 0;
    return Status::ok();
  }

  // Creation order, the page just before before_key (previous links):
  // walk backwards, then put the page back in order.
  Status page_backwards(const storage::SearchQuery& q, storage::SearchPage* out) {
    storage::SearchQuery b = scan_query(q);
    b.count = std::max(q.count + 1, kScanChunk);
    std::vector<storage::SearchMatch> reversed;
    int64_t scanned = 0;
    for (;;) {
      storage::SearchPage page;
      if (Status s = base_.search(b, &page); !s) return s;
      scanned += static_cast<int64_t>(page.matches.size());
      for (auto it = page.matches.rbegin(); it != page.matches.rend(); ++it) {
        if (!judge_.current_visible(it->resource)) continue;
        if (static_cast<int>(reversed.size()) == q.count) {
          out->more = true;
          break;
        }
        reversed.push_back(std::move(*it));
      }
      if (out->more || !page.more || page.matches.empty()) break;
      if (scanned > kMaxScannedRows) return too_costly("this search");
      b.before_key = page.matches.front().key;
    }
    out->matches.assign(std::make_move_iterator(reversed.rbegin()), std::make_move_iterator(reversed.rend()));
    return Status::ok();
  }

  // Explicit sorts page by offset: the offset counts visible matches, so the
  // scan starts at the first match and skips `offset` visible ones.
  Status page_by_offset(const storage::SearchQuery& q, storage::SearchPage* out, bool* whole) {
    storage::SearchQuery b = scan_query(q);
    b.offset = 0;
    b.after_key = 0;
    b.before_key = 0;
    b.count = std::max(q.count + 1, kScanChunk);
    int64_t to_skip = q.offset;
    int64_t scanned = 0;
    for (;;) {
      storage::SearchPage page;
      if (Status s = base_.search(b, &page); !s) return s;
      scanned += static_cast<int64_t>(page.matches.size());
      for (storage::SearchMatch& m : page.matches) {
        if (!judge_.current_visible(m.resource)) continue;
        if (to_skip > 0) {
          --to_skip;
          continue;
        }
        if (static_cast<int>(out->matches.size()) == q.count) {
          out->more = true;
          return Status::ok();
        }
        out->matches.push_back(std::move(m));
      }
      if (!page.more || page.matches.empty()) break;
      if (scanned > kMaxScannedRows) return too_costly("this search");
      b.offset += static_cast<int64_t>(page.matches.size());
    }
    // Every match was met; with an offset past the end the page is empty and
    // the total is not known from it.
    *whole = to_skip == 0;
    return Status::ok();
  }

  // Visible matches of the whole result, walked in creation order.
  Status count_visible(const storage::SearchQuery& q, int64_t* total) {
    storage::SearchQuery b = scan_query(q);
    b.sort.clear();
    b.offset = 0;
    b.after_key = 0;
    b.before_key = 0;
    b.count = kCountChunk;
    int64_t visible = 0, scanned = 0;
    for (;;) {
      storage::SearchPage page;
      if (Status s = base_.search(b, &page); !s) return s;
      scanned += static_cast<int64_t>(page.matches.size());
      for (const storage::SearchMatch& m : page.matches)
        if (judge_.current_visible(m.resource)) ++visible;
      if (!page.more || page.matches.empty()) break;
      if (scanned > kMaxScannedRows) return too_costly("counting this search");
      b.after_key = page.matches.back().key;
    }
    *total = visible;
    return Status::ok();
  }

  // _include/_revinclude followed from visible resources only: round 0 from
  // the page's matches with every spec, later rounds from what the previous
  // round added with the :iterate specs (as the storage does), each round a
  // search by _id per type; included resources pass the rules too.
  Status include(const std::vector<storage::IncludeSpec>& specs, int max_included, storage::SearchPage* out) {
    std::set<std::string> seen;
    std::map<std::string, std::vector<std::string>> frontier;  // type -> ids
    for (const storage::SearchMatch& m : out->matches) {
      seen.insert(key_of(m.resource.type, m.resource.id));
      frontier[m.resource.type].push_back(m.resource.id);
    }
    // The storage would iterate on its own from everything it included,
    // hidden resources too: each query here is one round (iterate off).
    std::vector<storage::IncludeSpec> all, iterate;
    for (storage::IncludeSpec spec : specs) {
      bool iterates = spec.iterate;
      spec.iterate = false;
      all.push_back(spec);
      if (iterates) iterate.push_back(spec);
    }
    for (int round = 0; round < kMaxIncludeRounds && !frontier.empty(); ++round) {
      const std::vector<storage::IncludeSpec>& applied = round == 0 ? all : iterate;
      if (applied.empty()) break;
      std::map<std::string, std::vector<std::string>> next;
      for (const auto& [type, ids] : frontier) {
        for (size_t at = 0; at < ids.size(); at += kIncludeIdsPerQuery) {
          storage::SearchQuery iq;
          iq.type = type;
          storage::Condition by_id;
          by_id.kind = storage::Condition::Kind::Id;
          by_id.ids.assign(ids.begin() + static_cast<std::ptrdiff_t>(at),
                           ids.begin() + static_cast<std::ptrdiff_t>(std::min(ids.size(), at + kIncludeIdsPerQuery)));
          iq.count = static_cast<int>(by_id.ids.size());
          iq.all_of.push_back(std::move(by_id));
          iq.includes = applied;
          iq.max_included = max_included;
          storage::SearchPage page;
          if (Status s = base_.search(iq, &page); !s) return s;
          for (ResourceVersion& v : page.included) {
            if (v.deleted || !seen.insert(key_of(v.type, v.id)).second) continue;
            if (!judge_.current_visible(v)) continue;
            if (static_cast<int>(out->included.size()) >= max_included) return Status::ok();
            judge_.note_returned(v);
            next[v.type].push_back(v.id);
            out->included.push_back(std::move(v));
          }
        }
      }
      frontier = std::move(next);
    }
    return Status::ok();
  }

  Judge& judge_;
  storage::Storage& base_;
};

class Guard final : public RequestGuard {
 public:
  Guard(const interactions::Services& base, std::unique_ptr<ResourceRules> rules)
      : judge_(*base.store, std::move(rules)), store_(judge_), services_(base) {
    services_.store = &store_;
  }
  const interactions::Services& services() const override { return services_; }
  const AccessRecord& record() const override { return judge_.record(); }

 private:
  Judge judge_;
  GuardedStorage store_;
  interactions::Services services_;
};

}  // namespace

std::unique_ptr<RequestGuard> make_guard(const interactions::Services& base, std::unique_ptr<ResourceRules> rules) {
  return std::make_unique<Guard>(base, std::move(rules));
}

}  // namespace espace::policy
