// SearchQuery -> SQL. Every condition becomes a subquery on search_index (or
// on the resource tables for _id/_lastUpdated), combined with AND; values
// are always bound parameters, never spliced into the text (index kinds, the
// server's own names, are literals: see kind_sql).
//
// Statements come from the connection's bounded LRU cache of shaped texts:
// their text depends on the shape of the search, which clients choose, so
// the cache holds the shapes in use and evicts the rest.
//
// A page is chosen in one of three ways: from the driving condition's index
// rows by res_key when every condition is on index rows (key_page_sql), by
// walking resource_current in key order when nothing is selective, or over
// resource_current with the conditions as key sets or probes otherwise.
#include "sqlite_search.h"

#include <algorithm>
#include <set>
#include <utility>
#include <variant>

namespace espace::storage::sqlite {

namespace {

using fhir::ErrorCategory;

Status invalid(std::string msg) {
  return Status::error(ErrorCategory::Invalid, "invalid", "search: " + std::move(msg));
}

using Param = std::variant<std::string, double, int64_t>;

// Accumulates SQL text and the values bound to its ?N placeholders.
class SqlBuilder {
 public:
  std::string placeholder(Param p) {
    params_.push_back(std::move(p));
    return "?" + std::to_string(params_.size());
  }
  std::string alias(const char* prefix) { return prefix + std::to_string(++aliases_); }
  const std::vector<Param>& params() const { return params_; }
  // Top-level index conditions as correlated EXISTS probes (per candidate
  // resource) instead of key sets: for plans that walk resources in order.
  bool correlated = false;
  // Per top-level condition (when not empty): correlate that one only.
  std::vector<bool> correlate;
  // The plan walks resource_current in key order. Otherwise the top-level
  // type test and the creation-order key are written so that SQLite cannot
  // use that index ("+c.type"): walking it to find a few selective matches
  // would visit every resource of the type.
  bool walk = false;
  // Planner counts (count_rows): tests without bounds leave out the kind,
  // which search_index_by_value lacks, so they are answered from the index
  // alone instead of reading every matching row; a param whose rows of
  // several kinds share a value only makes the estimate higher.
  bool estimate = false;
  // The top-level alias is a bare res_key (a page read from index rows
  // alone, see key_page_sql): key sets match on res_key.
  bool by_key = false;

 private:
  std::vector<Param> params_;
  int aliases_ = 0;
};

// A search statement from the connection's bounded cache of shaped texts
// (values are bound, so the text depends only on the search's shape), with
// its values bound; reset on scope exit.
class SearchStmt {
 public:
  Status prepare(Connection& c, const std::string& sql, const std::vector<Param>& params) {
    if (Status s = c.prepare_shaped(sql, &st_); !s) return s;
    sqlite3_stmt* s = st_.get();
    for (size_t i = 0; i < params.size(); ++i) {
      int n = static_cast<int>(i + 1);
      if (auto* text = std::get_if<std::string>(&params[i]))
        sqlite3_bind_text(s, n, text->data(), static_cast<int>(text->size()), SQLITE_TRANSIENT);
      else if (auto* d = std::get_if<double>(&params[i]))
        sqlite3_bind_double(s, n, *d);
      else
        sqlite3_bind_int64(s, n, std::get<int64_t>(params[i]));
    }
    return Status::ok();
  }
  sqlite3_stmt* get() const { return st_.get(); }
  int step() { return sqlite3_step(st_.get()); }
  std::string text(int col) const {
    const void* p = sqlite3_column_blob(st_.get(), col);
    int n = sqlite3_column_bytes(st_.get(), col);
    return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
  }
  int64_t int64(int col) const { return sqlite3_column_int64(st_.get(), col); }

 private:
  ShapedStmt st_;
};

const char* op_sql(Bound::Op op) {
  switch (op) {
    case Bound::Op::Lt: return " < ";
    case Bound::Op::Le: return " <= ";
    case Bound::Op::Gt: return " > ";
    case Bound::Op::Ge: return " >= ";
    case Bound::Op::Eq: return " = ";
  }
  return " = ";
}

Status where_clause(SqlBuilder& b, const SearchQuery& q, const std::string& alias, int depth, int* budget,
                    std::string* out);

// The kind compared as a literal when it is one of the server's own kind
// names (lower-case words): bound as a parameter, SQLite would test its value
// against the WHERE of the partial index search_index_by_range while
// planning, and a statement planned on a bound value is planned again (parsed
// again) every time that value is bound, defeating the statement cache.
std::string kind_sql(SqlBuilder& b, const std::string& kind) {
  bool word = kind.size() <= 32 &&
              std::all_of(kind.begin(), kind.end(), [](char ch) { return (ch >= 'a' && ch <= 'z') || ch == '-'; });
  return word ? "'" + kind + "'" : b.placeholder(kind);
}

// The rows of search_index (alias `s`) passing one IndexTest.
Status index_test_sql(SqlBuilder& b, const IndexTest& t, const std::string& s, int depth, int* budget,
                      std::string* out) {
  std::string sql = s + ".param = " + b.placeholder(t.param);
  if (!t.kind.empty() && !(b.estimate && t.bounds.empty())) sql += " AND " + s + ".kind = " + kind_sql(b, t.kind);
  if (t.system) sql += " AND " + s + ".system = " + b.placeholder(*t.system);
  switch (t.value_op) {
    case TextOp::Any: break;
    case TextOp::Equal: sql += " AND " + s + ".value = " + b.placeholder(t.value); break;
    case TextOp::StartsWith:
      // A range on the value index; 0xFF never occurs in UTF-8, so it bounds every continuation.
      sql += " AND " + s + ".value >= " + b.placeholder(t.value) + " AND " + s + ".value < " +
             b.placeholder(t.value + "\xff");
      break;
    case TextOp::Contains: sql += " AND instr(" + s + ".value, " + b.placeholder(t.value) + ") > 0"; break;
    case TextOp::EndsWith: {
      std::string p = b.placeholder(t.value);
      sql += " AND length(" + s + ".value) >= length(" + p + ") AND substr(" + s + ".value, length(" + s +
             ".value) - length(" + p + ") + 1) = " + p;
      break;
    }
    case TextOp::IsPrefixOf:
      sql += " AND " + s + ".value <> '' AND substr(" + b.placeholder(t.value) + ", 1, length(" + s + ".value)) = " +
             s + ".value";
      break;
  }
  if (!t.bounds.empty())
    // Word for word the WHERE of the partial index search_index_by_range (schema version 5).
    sql += " AND (" + s + ".kind = 'date' OR " + s + ".kind = 'number' OR " + s + ".kind = 'quantity' OR " + s +
           ".kind = 'composite')";
  for (const Bound& bound : t.bounds)
    sql += " AND " + s + (bound.column == Bound::Column::Low ? ".low" : ".high") + op_sql(bound.op) +
           b.placeholder(bound.number);
  if (t.target) {
    if (depth >= kMaxChainDepth) return invalid("chains are limited to " + std::to_string(kMaxChainDepth) + " levels");
    std::string c = b.alias("c");
    std::string inner;
    if (Status st = where_clause(b, *t.target, c, depth + 1, budget, &inner); !st) return st;
    sql += " AND " + s + ".system = " + b.placeholder(t.target->type) + " AND " + s + ".value IN (SELECT " + c +
           ".id FROM resource_current " + c + " WHERE " + inner + ")";
  }
  *out = std::move(sql);
  return Status::ok();
}

Status condition_sql(SqlBuilder& b, const Condition& cond, const SearchQuery& q, const std::string& a, int depth,
                     int* budget, std::string* out) {
  if (--*budget < 0) return invalid("too many search conditions (at most " + std::to_string(kMaxSearchConditions) + ")");
  std::string sql;
  switch (cond.kind) {
    case Condition::Kind::AnyOf: {
      if (cond.any_of.empty()) return invalid("a condition without values");
      if (b.correlated && depth == 0) {
        std::string s = b.alias("s");
        sql = "EXISTS(SELECT 1 FROM search_index " + s + " WHERE " + s + ".res_key = " + a + ".res_key AND (";
        for (size_t i = 0; i < cond.any_of.size(); ++i) {
          std::string test;
          if (Status st = index_test_sql(b, cond.any_of[i], s, depth, budget, &test); !st) return st;
          sql += (i ? ") OR (" : "(") + test;
        }
        sql += ")))";
        break;
      }
      // One uncorrelated subquery per condition: SQLite builds its key set
      // once, from the (type, param, value, system) index when it applies.
      // Matched by (type, id), the primary key of resource_current, so that
      // SQLite may equally drive the search from the index rows.
      // Several tests: their UNION wrapped in a plain subquery, which SQLite
      // can drive the search from (a bare compound makes it scan every
      // resource and test membership).
      bool keys = b.by_key && depth == 0;
      sql = (keys ? a + ".res_key" : "(" + a + ".type, " + a + ".id)") + " IN (" +
            std::string(cond.any_of.size() > 1 ? "SELECT * FROM (" : "");
      bool first = true;
      for (const IndexTest& t : cond.any_of) {
        std::string s = b.alias("s");
        std::string test;
        if (Status st = index_test_sql(b, t, s, depth, budget, &test); !st) return st;
        if (!first) sql += " UNION ";
        first = false;
        sql += "SELECT " + (keys ? s + ".res_key" : s + ".type, " + s + ".id") + " FROM search_index " + s + " WHERE " +
               (q.type.empty() ? std::string() : s + ".type = " + b.placeholder(q.type) + " AND ") + test;
      }
      sql += cond.any_of.size() > 1 ? "))" : ")";
      break;
    }
    case Condition::Kind::Id: {
      if (cond.ids.empty()) return invalid("_id without values");
      sql = a + ".id IN (";
      for (size_t i = 0; i < cond.ids.size(); ++i) sql += (i ? ", " : "") + b.placeholder(cond.ids[i]);
      sql += ")";
      break;
    }
    case Condition::Kind::LastUpdated: {
      if (cond.any_of.empty()) return invalid("_lastUpdated without values");
      std::string lv = b.alias("lv");
      sql = "EXISTS(SELECT 1 FROM resource_version " + lv + " WHERE " + lv + ".seq = " + a + ".seq AND (";
      for (size_t i = 0; i < cond.any_of.size(); ++i) {
        sql += i ? " OR (" : "(";
        std::string tests = "1";
        for (const Bound& bound : cond.any_of[i].bounds)
          tests += " AND " + lv + ".last_updated" + op_sql(bound.op) + b.placeholder(bound.number);
        sql += tests + ")";
      }
      sql += "))";
      break;
    }
    case Condition::Kind::Missing: {
      std::string s = b.alias("s");
      sql = "NOT EXISTS(SELECT 1 FROM search_index " + s + " WHERE " + s + ".res_key = " + a + ".res_key AND " + s +
            ".param = " + b.placeholder(cond.missing_param) + ")";
      break;
    }
    case Condition::Kind::Has: {
      if (!cond.has_query) return invalid("_has without criteria");
      if (q.type.empty()) return invalid("_has needs a resource type");
      if (depth >= kMaxChainDepth) return invalid("chains are limited to " + std::to_string(kMaxChainDepth) + " levels");
      std::string s = b.alias("s");
      std::string c = b.alias("c");
      std::string inner;
      if (Status st = where_clause(b, *cond.has_query, c, depth + 1, budget, &inner); !st) return st;
      sql = a + ".id IN (SELECT " + s + ".value FROM search_index " + s + " JOIN resource_current " + c + " ON " + c +
            ".type = " + s + ".type AND " + c + ".id = " + s + ".id WHERE " + s + ".type = " + b.placeholder(cond.has_type) + " AND " + s +
            ".param = " + b.placeholder(cond.has_param) + " AND " + s + ".kind = 'reference' AND " + s +
            ".system = " + b.placeholder(q.type) + " AND " + inner + ")";
      break;
    }
  }
  *out = cond.negate ? "NOT (" + sql + ")" : sql;
  return Status::ok();
}

// Current, non-deleted resources of the query's type(s) (alias `a`) meeting every condition.
Status where_clause(SqlBuilder& b, const SearchQuery& q, const std::string& a, int depth, int* budget,
                    std::string* out) {
  std::string sql = a + ".deleted = 0";
  if (!q.type.empty()) {
    sql += std::string(" AND ") + (depth == 0 && !b.walk ? "+" : "") + a + ".type = " + b.placeholder(q.type);
  } else if (!q.types.empty()) {
    sql += " AND " + a + ".type IN (";
    for (size_t i = 0; i < q.types.size(); ++i) sql += (i ? ", " : "") + b.placeholder(q.types[i]);
    sql += ")";
  }
  for (size_t i = 0; i < q.all_of.size(); ++i) {
    bool saved = b.correlated;
    if (depth == 0 && i < b.correlate.size()) b.correlated = b.correlated || b.correlate[i];
    std::string part;
    Status s = condition_sql(b, q.all_of[i], q, a, depth, budget, &part);
    b.correlated = saved;
    if (!s) return s;
    sql += " AND " + part;
  }
  *out = std::move(sql);
  return Status::ok();
}

// The creation-order term of a page's ORDER BY, on alias `a`. Unary plus
// keeps SQLite from using the key index for the order when conditions
// choose the rows (it would walk the whole type); a walk and a page by key
// read the key in order anyway.
std::string key_order_term(const SqlBuilder& b, const std::string& a) {
  return b.walk || b.by_key ? a + ".res_key" : "+" + a + ".res_key";
}

// `a`: the alias whose res_key the page is on (c, or k for a page by key).
std::string order_by(SqlBuilder& b, const SearchQuery& q, const std::string& a) {
  std::string sql;
  for (const SortKey& k : q.sort) {
    std::string expr;
    switch (k.source) {
      case SortKey::Source::Id: expr = "c.id"; break;
      case SortKey::Source::LastUpdated: expr = "v.last_updated"; break;
      case SortKey::Source::Index: {
        // A resource with several values sorts by its smallest ascending and
        // by its largest descending.
        std::string s = b.alias("s");
        const char* agg = k.descending ? "max" : "min";
        const char* col = k.numeric ? (k.descending ? "high" : "low") : "value";
        expr = std::string("(SELECT ") + agg + "(" + s + "." + col + ") FROM search_index " + s + " WHERE " + s +
               ".res_key = " + a + ".res_key AND " + s + ".param = " + b.placeholder(k.param) + ")";
        break;
      }
    }
    sql += expr + (k.descending ? " DESC NULLS LAST, " : " ASC NULLS LAST, ");
  }
  return sql + key_order_term(b, a);
}

void load(const SearchStmt& st, ResourceVersion* out) {
  out->type = st.text(0);
  out->id = st.text(1);
  out->version = st.int64(2);
  out->last_updated_us = st.int64(3);
  out->deleted = st.int64(4) != 0;
  out->method = st.text(5);
  out->json = st.text(6);
}

// Reads current resources by key; appends those not yet seen.
Status read_keys(Connection& c, const std::vector<int64_t>& keys, std::set<int64_t>* seen,
                 std::vector<std::pair<int64_t, ResourceVersion>>* out) {
  for (int64_t key : keys) {
    if (!seen->insert(key).second) continue;
    SearchStmt st;
    if (Status s = st.prepare(c, "SELECT v.type, v.id, v.version, v.last_updated, v.deleted, v.method, v.body, v.res_key "
                              "FROM resource_version v JOIN resource_current c ON c.type = v.type AND c.id = v.id "
                              "WHERE v.res_key = ?1 AND v.seq = c.seq AND c.deleted = 0",
                              {Param(key)});
        !s)
      return s;
    int rc = st.step();
    if (rc == SQLITE_ROW) {
      ResourceVersion v;
      load(st, &v);
      out->emplace_back(key, std::move(v));
    } else if (rc != SQLITE_DONE) {
      return error(c.db(), "reading an included resource");
    }
  }
  return Status::ok();
}

// Keys of the resources that `from` (type, key) include per one spec.
Status include_keys(Connection& c, const IncludeSpec& spec, const std::vector<std::pair<std::string, int64_t>>& from,
                    const std::vector<std::pair<std::string, std::string>>& from_ids, std::vector<int64_t>* out) {
  if (!spec.reverse) {
    for (const auto& [type, key] : from) {
      if (spec.source_type != "*" && type != spec.source_type) continue;
      std::vector<Param> params{Param(key)};
      std::string sql =
          "SELECT t.res_key FROM search_index s JOIN resource_current t ON t.type = s.system AND t.id = s.value "
          "WHERE s.res_key = ?1 AND s.kind = 'reference' AND t.deleted = 0";
      if (spec.param != "*") {
        params.emplace_back(spec.param);
        sql += " AND s.param = ?" + std::to_string(params.size());
      }
      if (!spec.target_type.empty()) {
        params.emplace_back(spec.target_type);
        sql += " AND s.system = ?" + std::to_string(params.size());
      }
      SearchStmt st;
      if (Status s = st.prepare(c, sql, params); !s) return s;
      int rc;
      while ((rc = st.step()) == SQLITE_ROW) out->push_back(st.int64(0));
      if (rc != SQLITE_DONE) return error(c.db(), "following _include");
    }
  } else {
    for (const auto& [type, id] : from_ids) {
      if (!spec.target_type.empty() && type != spec.target_type) continue;
      std::vector<Param> params{Param(type), Param(id)};
      std::string sql =
          "SELECT s.res_key FROM search_index s WHERE s.kind = 'reference' AND s.system = ?1 AND s.value = ?2";
      if (spec.source_type != "*") {
        params.emplace_back(spec.source_type);
        sql += " AND s.type = ?" + std::to_string(params.size());
      }
      if (spec.param != "*") {
        params.emplace_back(spec.param);
        sql += " AND s.param = ?" + std::to_string(params.size());
      }
      SearchStmt st;
      if (Status s = st.prepare(c, sql, params); !s) return s;
      int rc;
      while ((rc = st.step()) == SQLITE_ROW) out->push_back(st.int64(0));
      if (rc != SQLITE_DONE) return error(c.db(), "following _revinclude");
    }
  }
  return Status::ok();
}

// The condition that drives a page read from index rows alone (key_page_sql),
// or -1 when the search needs the resource tables to choose its page: a
// walk, a sort or a condition on ids or versions, or _has. Index rows
// exist only for the current version of resources not deleted (the storage
// replaces them on every write and keeps none for a delete marker), so their
// res_key alone names a current match.
int key_page_driver(const SearchQuery& q, const std::vector<bool>& unselective, bool walk) {
  if (walk || q.type.empty()) return -1;
  for (const SortKey& k : q.sort)
    if (k.source != SortKey::Source::Index) return -1;  // _id and _lastUpdated are not in the index rows
  int driver = -1;
  for (size_t i = 0; i < q.all_of.size(); ++i) {
    const Condition& cond = q.all_of[i];
    if (cond.kind == Condition::Kind::Missing) continue;
    if (cond.kind != Condition::Kind::AnyOf) return -1;
    bool probed = i < unselective.size() && unselective[i];
    if (driver < 0 && !cond.negate && !probed && !cond.any_of.empty()) driver = static_cast<int>(i);
  }
  return driver;
}

// FROM and WHERE of a page (creation order, or sorted by index params) taken from the index rows of
// the driving condition (alias k, its res_key only): no lookup of
// resource_current per candidate, and the other conditions tested on the
// res_key (key sets or probes, as judged). The driver's rows are made
// distinct: one resource may have several matching rows.
Status key_page_sql(SqlBuilder& b, const SearchQuery& q, size_t driver, std::string* from, std::string* where) {
  int budget = kMaxSearchConditions - 1;
  b.by_key = true;
  const Condition& d = q.all_of[driver];
  std::string rows;
  for (const IndexTest& t : d.any_of) {
    std::string s = b.alias("s");
    std::string test;
    if (Status st = index_test_sql(b, t, s, 0, &budget, &test); !st) return st;
    rows += rows.empty() ? "SELECT " + std::string(d.any_of.size() > 1 ? "" : "DISTINCT ") : " UNION SELECT ";
    rows += s + ".res_key FROM search_index " + s + " WHERE " + s + ".type = " + b.placeholder(q.type) + " AND " + test;
  }
  *from = "(" + rows + ") k";
  std::string sql = "1";
  for (size_t i = 0; i < q.all_of.size(); ++i) {
    if (i == driver) continue;
    b.correlated = i < b.correlate.size() && b.correlate[i];
    std::string part;
    Status st = condition_sql(b, q.all_of[i], q, "k", 0, &budget, &part);
    b.correlated = false;
    if (!st) return st;
    sql += " AND " + part;
  }
  *where = std::move(sql);
  return Status::ok();
}

// Ends a read transaction on scope exit so every statement of a search sees one snapshot.
class Snapshot {
 public:
  explicit Snapshot(Connection& c) : c_(c) { ok_ = step_cached("BEGIN"); }
  ~Snapshot() {
    if (ok_) step_cached("COMMIT");
  }
  bool ok() const { return ok_; }

 private:
  // BEGIN and COMMIT from the connection's statement cache, not parsed anew per search.
  bool step_cached(const std::string& sql) {
    sqlite3_stmt* raw = nullptr;
    if (!c_.prepare(sql, &raw)) return false;
    Stmt st(raw);
    return st.step() == SQLITE_DONE;
  }

  Connection& c_;
  bool ok_ = false;
};

// How many index rows a condition is worth counting before probing it per
// candidate instead: a probe reads the few rows of one resource, so a key
// set pays off only when it is not much bigger than the driving one.
constexpr int64_t kProbeCost = 16;
// A driver this small makes every other condition cheap to probe per
// candidate, whatever its own size: no need to count the others.
constexpr int64_t kSmallDriver = 64;
// The first bound of round two's counts (judge_conditions).
constexpr int64_t kMidCount = kSmallDriver * kProbeCost;

// How cheaply a condition's matching rows are counted from an index:
// 0 equality on the value, 1 a bounded range of the index (a closed range of
// low, a prefix of the value), 2 anything else (open ranges, substrings),
// which may scan many non-matching rows before meeting a match.
int judge_rank(const Condition& cond) {
  int rank = 0;
  for (const IndexTest& t : cond.any_of) {
    int r = 2;
    if (t.value_op == TextOp::Equal) {
      r = 0;
    } else if (t.value_op == TextOp::StartsWith) {
      r = 1;
    } else if (t.value_op == TextOp::Any) {
      bool above = false, below = false;
      for (const Bound& b : t.bounds) {
        if (b.column != Bound::Column::Low) continue;
        above |= b.op == Bound::Op::Ge || b.op == Bound::Op::Gt || b.op == Bound::Op::Eq;
        below |= b.op == Bound::Op::Le || b.op == Bound::Op::Lt || b.op == Bound::Op::Eq;
      }
      if (above && below) r = 1;
    }
    rank = std::max(rank, r);
  }
  return rank;
}

// Counts the index rows of the query's type matching condition `cond`, up to `limit`.
Status count_rows(Connection& c, const SearchQuery& q, const Condition& cond, int64_t limit, int64_t* out) {
  SqlBuilder b;
  b.estimate = true;
  int budget = kMaxSearchConditions;
  // One indexed lookup per alternative (UNION ALL), not one OR over several
  // params, which SQLite answers by scanning every index row of the type
  // (e.g. the compartment condition the policy adds: subject OR author ...).
  // Rows matching two alternatives count twice: an estimate is enough here.
  std::string rows;
  for (const IndexTest& t : cond.any_of) {
    std::string test;
    if (Status s = index_test_sql(b, t, "s", 0, &budget, &test); !s) return s;
    if (!rows.empty()) rows += " UNION ALL ";
    rows += "SELECT 1 FROM search_index s WHERE s.type = " + b.placeholder(q.type) + " AND " + test;
  }
  SearchStmt st;
  std::string sql = "SELECT count(*) FROM (SELECT 1 FROM (" + rows + ") LIMIT " +
                    b.placeholder(std::max<int64_t>(limit, 1)) + ")";
  if (Status s = st.prepare(c, sql, b.params()); !s) return s;
  if (st.step() != SQLITE_ROW) return error(c.db(), "judging a search condition");
  *out = st.int64(0);
  return Status::ok();
}

// Chooses how each top-level condition is evaluated: one small condition
// drives the search as a key set, and conditions much bigger than it are
// probed per candidate (correlated EXISTS: *unselective). First the cheaply
// counted conditions are counted up to kSmallDriver (stopping at one of at
// most kProbeCost rows); when one is below, it drives and nothing else is
// counted. Otherwise every plain condition is
// counted, each count stopping at walk_threshold and at kProbeCost times the
// smallest so far. When the page is in creation order and every condition
// matches at least walk_threshold rows, the plan walks resources in key order
// and stops at the page size (*walk).
Status judge_conditions(Connection& c, const SearchQuery& q, std::vector<bool>* unselective, bool* walk) {
  *walk = false;
  unselective->assign(q.all_of.size(), false);
  if (q.type.empty() || q.walk_threshold <= 0) return Status::ok();
  bool all = true;
  std::vector<size_t> order;  // plain index conditions
  for (size_t i = 0; i < q.all_of.size(); ++i) {
    const Condition& cond = q.all_of[i];
    if (cond.kind == Condition::Kind::Missing) continue;  // probed per resource anyway
    if (cond.kind != Condition::Kind::AnyOf || cond.negate || cond.any_of.empty()) {
      all = false;  // (an empty one is refused when the page's SQL is built)
      continue;
    }
    bool chained = false;
    for (const IndexTest& t : cond.any_of) chained |= t.target != nullptr;
    if (chained) {  // chains: judged selective, kept as key sets
      all = false;
      continue;
    }
    order.push_back(i);
  }
  std::vector<int> ranks(q.all_of.size(), 2);
  for (size_t i : order) ranks[i] = judge_rank(q.all_of[i]);
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return ranks[x] < ranks[y]; });

  // Round one: a small driver among the cheaply counted conditions.
  if (order.size() > 1 && q.walk_threshold > kSmallDriver) {
    size_t driver = order.size();
    int64_t smallest = kSmallDriver;
    for (size_t k = 0; k < order.size() && ranks[order[k]] < 2; ++k) {
      int64_t n = 0;
      if (Status s = count_rows(c, q, q.all_of[order[k]], smallest, &n); !s) return s;
      if (n < smallest) {
        smallest = n;
        driver = k;
      }
      // A driver of at most kProbeCost rows costs about as little as any
      // smaller one would: counting the others costs more than it could save.
      if (smallest <= kProbeCost) break;
    }
    if (driver < order.size()) {
      for (size_t k = 0; k < order.size(); ++k) (*unselective)[order[k]] = k != driver;
      return Status::ok();
    }
  }

  // Round two, first up to kMidCount each: a common token counted first
  // (gender=female, half of all Patients) no longer costs a count to
  // walk_threshold when a range after it is small. Only when every condition
  // reaches kMidCount are they counted on to walk_threshold.
  std::vector<int64_t> counts(q.all_of.size(), 0), limits(q.all_of.size(), 0);
  int64_t best = q.walk_threshold;
  for (int64_t ceiling : {std::min(kMidCount, q.walk_threshold), q.walk_threshold}) {
    best = ceiling;
    for (size_t i : order) {
      int64_t limit = best >= ceiling ? ceiling : std::min(ceiling, best * kProbeCost);
      if (Status s = count_rows(c, q, q.all_of[i], limit, &counts[i]); !s) return s;
      limits[i] = limit;
      best = std::min(best, counts[i]);
    }
    if (best < ceiling || ceiling == q.walk_threshold) break;
  }
  if (best >= q.walk_threshold) {
    for (size_t i : order) (*unselective)[i] = true;
    *walk = all && !order.empty() && q.sort.empty() && q.count > 0;
    return Status::ok();
  }
  // One driver (the first with the smallest count) stays a key set; others
  // stay key sets too unless probing them per driving row is cheaper.
  bool driver_chosen = false;
  for (size_t i : order) {
    if (!driver_chosen && counts[i] == best) {
      driver_chosen = true;
      continue;
    }
    (*unselective)[i] = counts[i] >= limits[i] || counts[i] > best * kProbeCost;
  }
  return Status::ok();
}

}  // namespace

Status run_search(Connection& c, const SearchQuery& q, SearchPage* out) {
  *out = SearchPage{};
  if (q.count < 0 || q.count > kMaxSearchPage)
    return invalid("page size must be between 0 and " + std::to_string(kMaxSearchPage));
  if (q.offset < 0) return invalid("negative page offset");

  Snapshot snapshot(c);
  if (!snapshot.ok()) return error(c.db(), "starting a search snapshot");

  if (q.want_total) {
    SqlBuilder b;
    int budget = kMaxSearchConditions;
    std::string where;
    if (Status s = where_clause(b, q, "c", 0, &budget, &where); !s) return s;
    SearchStmt st;
    if (Status s = st.prepare(c, "SELECT count(*) FROM resource_current c WHERE " + where, b.params()); !s) return s;
    if (st.step() != SQLITE_ROW) return error(c.db(), "counting search matches");
    out->total = st.int64(0);
  }
  if (q.count == 0) return Status::ok();

  // The page is chosen on keys only, then the bodies of its rows are read:
  // sorting whole bodies of every match would cost far more than the lookups.
  // Unselective conditions are probed per candidate; with creation order
  // and nothing selective, the resources are walked in key order and the
  // walk stops at the page size, instead of collecting and sorting matches.
  bool walk = false;
  std::vector<bool> unselective;
  if (Status s = judge_conditions(c, q, &unselective, &walk); !s) return s;
  SqlBuilder page;  // the page statement: conditions, then the cursor, order and limit
  page.correlate = std::move(unselective);
  page.walk = walk;
  int driver = key_page_driver(q, page.correlate, walk);
  bool by_key = driver >= 0;
  std::string sql;
  if (by_key) {
    std::string from, where;
    if (Status s = key_page_sql(page, q, static_cast<size_t>(driver), &from, &where); !s) return s;
    sql = "SELECT 0, k.res_key FROM " + from + " WHERE " + where;
  } else {
    int budget = kMaxSearchConditions;
    std::string where;
    if (Status s = where_clause(page, q, "c", 0, &budget, &where); !s) return s;
    sql = std::string("SELECT c.seq, c.res_key FROM resource_current c") +
          (walk ? " INDEXED BY resource_current_by_key" : "");
    bool needs_version = false;
    for (const SortKey& k : q.sort) needs_version |= k.source == SortKey::Source::LastUpdated;
    if (needs_version) sql += " JOIN resource_version v ON v.seq = c.seq";
    sql += " WHERE " + where;
  }
  const std::string alias = by_key ? "k" : "c";
  const std::string key = alias + ".res_key";
  if (q.after_key > 0) sql += " AND " + key + " > " + page.placeholder(q.after_key);
  // A previous page in creation order: the rows just below the key, read
  // backwards, then put back in order.
  bool backwards = q.before_key > 0 && q.sort.empty();
  if (backwards) {
    sql += " AND " + key + " < " + page.placeholder(q.before_key);
    sql += " ORDER BY " + key_order_term(page, alias) + " DESC";
  } else {
    sql += " ORDER BY " + order_by(page, q, alias);
  }
  sql += " LIMIT " + page.placeholder(int64_t{q.count} + 1);
  if (q.offset > 0) sql += " OFFSET " + page.placeholder(q.offset);
  std::vector<std::pair<int64_t, int64_t>> keys;  // (seq, res_key) in page order; seq 0 when by key
  {
    SearchStmt st;
    if (Status s = st.prepare(c, sql, page.params()); !s) return s;
    int rc;
    while ((rc = st.step()) == SQLITE_ROW) {
      if (static_cast<int>(keys.size()) == q.count) {
        out->more = true;  // the extra row only says that another page exists
        break;
      }
      keys.emplace_back(st.int64(0), st.int64(1));
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return error(c.db(), "running a search");
  }
  if (backwards) std::reverse(keys.begin(), keys.end());
  for (const auto& [seq, res_key] : keys) {
    sqlite3_stmt* raw = nullptr;
    // By key: the newest version, current by construction (see key_page_driver).
    if (Status s = c.prepare(by_key ? "SELECT type, id, version, last_updated, deleted, method, body FROM resource_version "
                                      "WHERE res_key = ?1 ORDER BY version DESC LIMIT 1"
                                    : "SELECT type, id, version, last_updated, deleted, method, body FROM resource_version "
                                      "WHERE seq = ?1",
                             &raw);
        !s)
      return s;
    Stmt st(raw);
    st.bind(1, by_key ? res_key : seq);
    if (st.step() != SQLITE_ROW) return error(c.db(), "reading a search match");
    if (st.int64(4) != 0) continue;  // never for an indexed resource; a delete marker is no match
    SearchMatch m;
    m.resource.type = st.text(0);
    m.resource.id = st.text(1);
    m.resource.version = st.int64(2);
    m.resource.last_updated_us = st.int64(3);
    m.resource.deleted = false;
    m.resource.method = st.text(5);
    m.resource.json = st.text(6);
    m.key = res_key;
    out->matches.push_back(std::move(m));
  }

  if (q.includes.empty() || out->matches.empty()) return Status::ok();
  std::set<int64_t> seen;
  std::vector<std::pair<std::string, int64_t>> frontier;
  std::vector<std::pair<std::string, std::string>> frontier_ids;
  for (const SearchMatch& m : out->matches) {
    seen.insert(m.key);
    frontier.emplace_back(m.resource.type, m.key);
    frontier_ids.emplace_back(m.resource.type, m.resource.id);
  }
  // Round 0 applies every spec to the matches; later rounds apply only the
  // :iterate specs to what the previous round added.
  for (int round = 0; round < 8 && !frontier.empty(); ++round) {
    std::vector<int64_t> keys;
    for (const IncludeSpec& spec : q.includes) {
      if (round > 0 && !spec.iterate) continue;
      if (Status s = include_keys(c, spec, frontier, frontier_ids, &keys); !s) return s;
    }
    std::vector<std::pair<int64_t, ResourceVersion>> added;
    if (Status s = read_keys(c, keys, &seen, &added); !s) return s;
    frontier.clear();
    frontier_ids.clear();
    for (auto& [key, v] : added) {
      if (static_cast<int>(out->included.size()) >= q.max_included) break;
      frontier.emplace_back(v.type, key);
      frontier_ids.emplace_back(v.type, v.id);
      out->included.push_back(std::move(v));
    }
  }
  return Status::ok();
}

}  // namespace espace::storage::sqlite
