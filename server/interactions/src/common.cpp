#include "common.h"

#include <sys/random.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "espace/fhir/json.h"
#include "search/query.h"
#include "search/registry.h"

namespace espace::interactions {

std::string new_id() {
  unsigned char b[16];
  size_t got = 0;
  while (got < sizeof b) {
    ssize_t n = getrandom(b + got, sizeof b - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  b[6] = (b[6] & 0x0f) | 0x40;  // version 4
  b[8] = (b[8] & 0x3f) | 0x80;  // RFC 4122 variant
  return uuid_text(b);
}

std::string uuid_text(const unsigned char (&bytes)[16]) {
  static const char* hex = "0123456789abcdef";
  std::string s;
  s.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s.push_back('-');
    s.push_back(hex[bytes[i] >> 4]);
    s.push_back(hex[bytes[i] & 15]);
  }
  return s;
}

namespace {

std::tm utc_tm(int64_t us) {
  time_t secs = static_cast<time_t>(us / 1000000);
  if (us < 0 && us % 1000000) --secs;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return tm;
}

// Days since 1970-01-01 for a proleptic Gregorian date (no time zone).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool digits(std::string_view s, size_t pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

}  // namespace

std::string format_instant(int64_t us) {
  std::tm tm = utc_tm(us);
  int64_t frac = us % 1000000;
  if (frac < 0) frac += 1000000;
  const int year = tm.tm_year + 1900;
  if (year < 0 || year > 9999) {
    char wide[64];
    std::snprintf(wide, sizeof wide, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", year, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(frac));
    return wide;
  }
  // YYYY-MM-DDThh:mm:ss.uuuuuuZ written digit by digit: every stored version
  // and every AuditEvent carries one, and snprintf was a visible part of
  // building an event.
  char buf[27];
  auto put = [&buf](int at, int64_t value, int width) {
    for (int i = width - 1; i >= 0; --i, value /= 10) buf[at + i] = static_cast<char>('0' + value % 10);
  };
  put(0, year, 4);
  buf[4] = '-';
  put(5, tm.tm_mon + 1, 2);
  buf[7] = '-';
  put(8, tm.tm_mday, 2);
  buf[10] = 'T';
  put(11, tm.tm_hour, 2);
  buf[13] = ':';
  put(14, tm.tm_min, 2);
  buf[16] = ':';
  put(17, tm.tm_sec, 2);
  buf[19] = '.';
  put(20, frac, 6);
  buf[26] = 'Z';
  return std::string(buf, sizeof buf);
}

std::string format_http_date(int64_t us) {
  std::tm tm = utc_tm(us);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

bool parse_http_date(std::string_view text, int64_t* us) {
  // IMF-fixdate only (RFC 7231 §7.1.1.1 says recipients should accept the
  // obsolete forms too; clients in practice send this one).
  std::tm tm{};
  std::string s(text);
  const char* end = strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!end || *end) return false;
  int64_t days = days_from_civil(tm.tm_year + 1900, static_cast<unsigned>(tm.tm_mon + 1),
                                 static_cast<unsigned>(tm.tm_mday));
  *us = ((days * 24 + tm.tm_hour) * 60 + tm.tm_min) * 60 * 1000000LL + tm.tm_sec * 1000000LL;
  return true;
}

bool parse_fhir_datetime(std::string_view s, int64_t* us) {
  int year = 0, month = 1, day = 1, hour = 0, minute = 0, second = 0;
  int64_t micros = 0;
  if (!digits(s, 0, 4, &year)) return false;
  size_t pos = 4;
  if (pos < s.size()) {
    if (s[pos] != '-' || !digits(s, pos + 1, 2, &month) || month < 1 || month > 12) return false;
    pos += 3;
  }
  if (pos < s.size()) {
    if (s[pos] != '-' || !digits(s, pos + 1, 2, &day) || day < 1 || day > 31) return false;
    pos += 3;
  }
  int64_t offset_minutes = 0;
  if (pos < s.size()) {
    if (s[pos] != 'T' || !digits(s, pos + 1, 2, &hour) || s.size() < pos + 6 || s[pos + 3] != ':' ||
        !digits(s, pos + 4, 2, &minute))
      return false;
    pos += 6;
    if (pos < s.size() && s[pos] == ':') {
      if (!digits(s, pos + 1, 2, &second)) return false;
      pos += 3;
      if (pos < s.size() && s[pos] == '.') {
        ++pos;
        int64_t scale = 100000;
        size_t start = pos;
        while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) {
          if (scale > 0) micros += (s[pos] - '0') * scale;
          scale /= 10;
          ++pos;
        }
        if (pos == start) return false;
      }
    }
    if (hour > 23 || minute > 59 || second > 60) return false;
    if (pos < s.size()) {
      if (s[pos] == 'Z') {
        ++pos;
      } else if (s[pos] == '+' || s[pos] == '-') {
        int oh = 0, om = 0;
        if (!digits(s, pos + 1, 2, &oh) || s.size() < pos + 6 || s[pos + 3] != ':' || !digits(s, pos + 4, 2, &om))
          return false;
        offset_minutes = (oh * 60 + om) * (s[pos] == '-' ? -1 : 1);
        pos += 6;
      } else {
        return false;
      }
    }
  }
  if (pos != s.size()) return false;
  int64_t days = days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  int64_t secs = ((days * 24 + hour) * 60 + minute - offset_minutes) * 60 + second;
  *us = secs * 1000000 + micros;
  return true;
}

std::string make_etag(int64_t version) { return "W/\"" + std::to_string(version) + "\""; }

bool parse_etag(std::string_view t, int64_t* version) {
  if (t.substr(0, 2) == "W/") t.remove_prefix(2);
  if (t.size() >= 2 && t.front() == '"' && t.back() == '"') t = t.substr(1, t.size() - 2);
  if (t.empty() || t.size() > 18) return false;
  int64_t v = 0;
  for (char c : t) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    v = v * 10 + (c - '0');
  }
  *version = v;
  return true;
}

Status parse_if_match(std::string_view header, std::optional<int64_t>* out) {
  out->reset();
  if (header.empty()) return Status::ok();
  int64_t version = 0;
  if (!parse_etag(header, &version))
    return Status::error(ErrorCategory::Invalid, "invalid", "If-Match must be a version ETag such as W/\"3\"");
  *out = version;
  return Status::ok();
}

bool is_valid_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.')) return false;
  return true;
}

std::string url_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

std::string query_string(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string q;
  for (const auto& [k, v] : params) {
    q += q.empty() ? '?' : '&';
    q += url_encode(k);
    q += '=';
    q += url_encode(v);
  }
  return q;
}

std::string link_url(const std::string& base, const std::string& path,
                     const std::vector<std::pair<std::string, std::string>>& params) {
  return base + path + query_string(params);
}

FhirResponse error_response(Status status) {
  FhirResponse r;
  r.error = std::move(status);
  return r;
}

FhirResponse error_response(ErrorCategory category, std::string issue_code, std::string diagnostics,
                            std::string expression) {
  return error_response(
      Status::error(category, std::move(issue_code), std::move(diagnostics), std::move(expression)));
}

namespace {
constexpr std::string_view kVersionMark = "V\x01";
constexpr std::string_view kTimeMark = "T\x01";
// How the writer escapes the marks: RapidJSON writes control characters as \u00XX.
constexpr std::string_view kVersionMarkJson = "\"versionId\":\"V\\u0001\"";
constexpr std::string_view kTimeMarkJson = "\"lastUpdated\":\"T\\u0001\"";
}  // namespace

Status PreparedBody::prepare(fhir::Node& resource, const std::string& id, PreparedBody* out) {
  if (!id.empty()) {
    Status s = fhir::set_primitive(resource, "id", id);
    if (!s) return s;
  }
  Status s = fhir::set_primitive(resource, "meta.versionId", std::string(kVersionMark));
  if (s) s = fhir::set_primitive(resource, "meta.lastUpdated", std::string(kTimeMark));
  if (!s) return s;
  out->json_ = fhir::write_json(resource);
  // The resource's own meta precedes every other complex element (only id,
  // which cannot hold quotes, comes before it), and a JSON string can never
  // contain an unescaped quote, so the first match is the resource's meta.
  size_t v = out->json_.find(kVersionMarkJson);
  size_t t = out->json_.find(kTimeMarkJson);
  if (v == std::string::npos || t == std::string::npos)
    return Status::error(ErrorCategory::Internal, "exception", "could not place meta in the stored resource");
  out->version_at_ = v + std::string_view("\"versionId\":\"").size();
  out->version_len_ = std::string_view("V\\u0001").size();
  out->time_at_ = t + std::string_view("\"lastUpdated\":\"").size();
  out->time_len_ = std::string_view("T\\u0001").size();
  return Status::ok();
}

std::string PreparedBody::finalize(int64_t version, int64_t last_updated_us) const {
  std::string v = std::to_string(version);
  std::string t = format_instant(last_updated_us);
  std::string out;
  out.reserve(json_.size() + v.size() + t.size());
  // versionId precedes lastUpdated in Meta's element order.
  out.append(json_, 0, version_at_);
  out.append(v);
  out.append(json_, version_at_ + version_len_, time_at_ - version_at_ - version_len_);
  out.append(t);
  out.append(json_, time_at_ + time_len_, std::string::npos);
  return out;
}

std::vector<storage::IndexEntry> index_entries(const fhir::Definitions& defs, const fhir::Node& resource) {
  return search::Registry::get(defs).index(resource);
}

bool split_query(std::string_view query, std::vector<std::pair<std::string, std::string>>* params) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (part.empty()) continue;
    size_t eq = part.find('=');
    auto decode = [](std::string_view s, bool* ok) {
      std::string r;
      for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%') {
          if (i + 2 >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + 1])) ||
              !std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
            *ok = false;
            return r;
          }
          r.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
          i += 2;
        } else {
          r.push_back(s[i] == '+' ? ' ' : s[i]);
        }
      }
      return r;
    };
    bool ok = true;
    std::string name = decode(part.substr(0, eq), &ok);
    std::string value = eq == std::string_view::npos ? std::string() : decode(part.substr(eq + 1), &ok);
    if (!ok) return false;
    params->emplace_back(std::move(name), std::move(value));
  }
  return true;
}

Status resolve_criteria(const Services& services, const std::string& type, std::string_view query,
                        std::vector<std::string>* ids) {
  if (!query.empty() && query.front() == '?') query.remove_prefix(1);
  std::vector<std::pair<std::string, std::string>> params;
  if (!split_query(query, &params))
    return Status::error(ErrorCategory::Invalid, "invalid", "malformed percent-encoding in the conditional criteria");
  return resolve_criteria(services, type, params, ids);
}

Status resolve_criteria(const Services& services, const std::string& type,
                        const std::vector<std::pair<std::string, std::string>>& params,
                        std::vector<std::string>* ids) {
  ids->clear();
  std::vector<std::pair<std::string, std::string>> criteria;
  for (const auto& p : params)
    if (p.first != "_format" && p.first != "_pretty") criteria.push_back(p);
  if (criteria.empty())
    return Status::error(ErrorCategory::Invalid, "invalid", "conditional interaction without any criteria");
  search::ParseContext ctx;
  ctx.registry = &search::Registry::get(*services.defs);
  ctx.defs = services.defs;
  ctx.limits = services.limits;
  search::ParsedSearch parsed;
  if (Status s = search::parse_search(ctx, type, criteria, &parsed); !s) return s;
  if (!parsed.query.includes.empty() || !parsed.query.sort.empty())
    return Status::error(ErrorCategory::Invalid, "invalid", "conditional criteria take search parameters only");
  // Callers only need to tell none, one and several apart, but the ids are
  // reported; a bounded page keeps a runaway criteria cheap.
  parsed.query.count = 1000;
  storage::SearchPage page;
  if (Status s = services.store->search(parsed.query, &page); !s) return s;
  for (const auto& m : page.matches) ids->push_back(m.resource.id);
  return Status::ok();
}

Status apply_write(storage::WriteTxn& txn, const WriteOp& op, WriteOutcome* out) {
  std::optional<storage::ResourceVersion> current;
  Status s = txn.current(op.type, op.id, &current);
  if (!s) return s;
  bool exists = current && !current->deleted;
  if (op.if_match) {
    if (!current || current->version != *op.if_match)
      return Status::error(ErrorCategory::PreconditionFailed, "conflict",
                           "version conflict: If-Match expected version " + std::to_string(*op.if_match) +
                               (current ? ", current is " + std::to_string(current->version) : ", resource does not exist"));
  }
  if (op.kind == WriteOp::Kind::Create && current)
    return Status::error(ErrorCategory::Conflict, "duplicate", "a resource with this id already exists");
  storage::ResourceVersion v;
  v.type = op.type;
  v.id = op.id;
  v.version = current ? current->version + 1 : 1;
  v.last_updated_us = txn.now_us();
  v.method = op.method;
  if (op.kind == WriteOp::Kind::Delete) {
    if (!exists) {
      out->status = 204;
      out->wrote = false;
      out->version = current ? current->version : 0;
      return Status::ok();
    }
    v.deleted = true;
    s = txn.put(v, {});
    if (!s) return s;
    out->status = 204;
  } else {
    v.json = op.body.finalize(v.version, v.last_updated_us);
    s = txn.put(v, op.index);
    if (!s) return s;
    out->status = exists ? 200 : 201;
    out->json = std::move(v.json);
  }
  out->wrote = true;
  out->version = v.version;
  out->last_updated_us = v.last_updated_us;
  return Status::ok();
}

std::string resource_url(const std::string& base, const std::string& type, const std::string& id) {
  return base + "/" + type + "/" + id;
}

std::string version_url(const std::string& base, const std::string& type, const std::string& id, int64_t version) {
  return resource_url(base, type, id) + "/_history/" + std::to_string(version);
}

std::string informational_outcome(const std::string& text) {
  fhir::Issue issue;
  issue.severity = fhir::Severity::Information;
  issue.code = "informational";
  issue.diagnostics = text;
  return fhir::outcome_json({issue});
}

FhirResponse write_response(const FhirRequest& request, const WriteOp& op, const WriteOutcome& outcome) {
  FhirResponse r;
  r.status = outcome.status;
  if (outcome.version > 0) r.etag = make_etag(outcome.version);
  if (outcome.wrote) r.last_modified = format_http_date(outcome.last_updated_us);
  if (op.kind != WriteOp::Kind::Delete && outcome.wrote)
    r.location = version_url(request.base_url, op.type, op.id, outcome.version);
  if (op.kind == WriteOp::Kind::Delete) {
    if (request.prefer_return == PreferReturn::OperationOutcome) {
      r.status = 200;
      r.json = informational_outcome(outcome.wrote ? "deleted" : "nothing to delete");
    }
    return r;
  }
  switch (request.prefer_return) {
    case PreferReturn::Representation: r.json = outcome.json; break;
    case PreferReturn::Minimal: break;
    case PreferReturn::OperationOutcome:
      r.json = informational_outcome(outcome.status == 201 ? "created" : "updated");
      break;
  }
  return r;
}

FhirResponse existing_resource_response(const Services& services, const FhirRequest& request,
                                        const std::string& type, const std::string& id) {
  storage::ResourceVersion v;
  Status s = services.store->read(type, id, &v);
  if (!s) return error_response(std::move(s));
  FhirResponse r;
  r.status = 200;
  r.etag = make_etag(v.version);
  r.last_modified = format_http_date(v.last_updated_us);
  r.location = version_url(request.base_url, type, id, v.version);
  if (request.prefer_return == PreferReturn::Representation) r.json = std::move(v.json);
  if (request.prefer_return == PreferReturn::OperationOutcome)
    r.json = informational_outcome("a matching resource exists; nothing was created");
  return r;
}

Status check_body_type(const FhirRequest& request) {
  if (!request.resource)
    return Status::error(ErrorCategory::Invalid, "required", "this interaction needs a resource in the body");
  std::string_view type = fhir::resource_type(*request.resource);
  if (type != request.type)
    return Status::error(ErrorCategory::Invalid, "invalid",
                         "the body is a " + std::string(type) + " but the URL names " + request.type, "resourceType");
  return Status::ok();
}

}  // namespace espace::interactions
