// Plain HTTP values: case-insensitive headers and request-target parsing.
#include "espace/http/message.h"

#include <algorithm>

namespace espace::http {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]);
    unsigned char y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') x = static_cast<unsigned char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<unsigned char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool header_name_equals(std::string_view a, std::string_view b) { return iequals(a, b); }

void Headers::remove(std::string_view name) {
  items_.erase(std::remove_if(items_.begin(), items_.end(),
                              [&](const auto& item) { return iequals(item.first, name); }),
               items_.end());
}

void Headers::set(std::string_view name, std::string value) {
  remove(name);
  items_.emplace_back(std::string(name), std::move(value));
}

const std::string* Headers::find(std::string_view name) const {
  for (const auto& item : items_) {
    if (iequals(item.first, name)) return &item.second;
  }
  return nullptr;
}

std::string percent_decode(std::string_view s, bool plus_is_space, bool* ok) {
  std::string out;
  out.reserve(s.size());
  bool good = true;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      int hi = i + 2 < s.size() ? hex_value(s[i + 1]) : -1;
      int lo = i + 2 < s.size() ? hex_value(s[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        good = false;
        break;
      }
      char decoded = static_cast<char>(hi * 16 + lo);
      // An embedded NUL would truncate the value in C APIs further down
      // (SQLite, libxml2); no legitimate FHIR parameter needs one.
      if (decoded == '\0') {
        good = false;
        break;
      }
      out.push_back(decoded);
      i += 2;
    } else if (c == '\0') {
      good = false;
      break;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  if (ok) *ok = good;
  if (!good) out.clear();
  return out;
}

std::string percent_encode(std::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0x0F]);
    }
  }
  return out;
}

bool parse_target(std::string_view target, std::string* path,
                  std::vector<std::pair<std::string, std::string>>* query) {
  if (path) path->clear();
  if (query) query->clear();
  // absolute-form ("http://host/path?q") must be accepted by HTTP/1.1 servers;
  // the authority is irrelevant to routing, so it is dropped.
  for (std::string_view scheme : {std::string_view("http://"), std::string_view("https://")}) {
    if (target.size() >= scheme.size() && iequals(target.substr(0, scheme.size()), scheme)) {
      target.remove_prefix(scheme.size());
      size_t slash = target.find_first_of("/?");
      if (slash == std::string_view::npos) {
        target = "/";
      } else if (target[slash] == '?') {
        return false;  // "http://host?q" has no path to route
      } else {
        target.remove_prefix(slash);
      }
      break;
    }
  }
  if (target.empty() || target.front() != '/') return false;
  // A fragment never reaches a server in a well-formed request; ignore it.
  size_t hash = target.find('#');
  if (hash != std::string_view::npos) target = target.substr(0, hash);

  size_t qmark = target.find('?');
  std::string_view raw_path = target.substr(0, qmark);
  std::string_view raw_query = qmark == std::string_view::npos ? std::string_view() : target.substr(qmark + 1);

  // An encoded '/' would let a client smuggle extra path segments past the
  // router (e.g. "/Patient/1%2F_history"); no FHIR path segment contains one.
  for (size_t i = 0; i + 2 < raw_path.size(); ++i) {
    if (raw_path[i] == '%' && raw_path[i + 1] == '2' && (raw_path[i + 2] == 'F' || raw_path[i + 2] == 'f')) {
      return false;
    }
  }
  bool ok = true;
  std::string decoded_path = percent_decode(raw_path, /*plus_is_space=*/false, &ok);
  if (!ok) return false;

  std::vector<std::pair<std::string, std::string>> params;
  size_t pos = 0;
  while (pos <= raw_query.size() && !raw_query.empty()) {
    size_t amp = raw_query.find('&', pos);
    std::string_view piece = raw_query.substr(pos, amp == std::string_view::npos ? std::string_view::npos : amp - pos);
    if (!piece.empty()) {
      size_t eq = piece.find('=');
      std::string_view raw_name = piece.substr(0, eq);
      std::string_view raw_value = eq == std::string_view::npos ? std::string_view() : piece.substr(eq + 1);
      std::string name = percent_decode(raw_name, true, &ok);
      if (!ok) return false;
      std::string value = percent_decode(raw_value, true, &ok);
      if (!ok) return false;
      params.emplace_back(std::move(name), std::move(value));
    }
    if (amp == std::string_view::npos) break;
    pos = amp + 1;
  }
  if (path) *path = std::move(decoded_path);
  if (query) *query = std::move(params);
  return true;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

}  // namespace espace::http
