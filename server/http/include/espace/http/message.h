// HTTP request and response as plain values, independent of Beast, so that
// everything above the net layer compiles without Beast headers.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace espace::http {

// Header names compare case-insensitively; repeated headers keep their order.
class Headers {
 public:
  void add(std::string name, std::string value) { items_.emplace_back(std::move(name), std::move(value)); }
  void reserve(size_t count) { items_.reserve(count); }
  void set(std::string_view name, std::string value);  // replaces every header of that name
  void remove(std::string_view name);                   // drops every header of that name
  // First value of that header, or nullptr.
  const std::string* find(std::string_view name) const;
  std::string_view get(std::string_view name) const {
    const std::string* v = find(name);
    return v ? std::string_view(*v) : std::string_view();
  }
  const std::vector<std::pair<std::string, std::string>>& items() const { return items_; }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

struct Request {
  std::string method;             // "GET", "POST", ...
  std::string target;             // raw request target: "/Patient/1?_format=json"
  std::string path;               // decoded path without query: "/Patient/1"
  // Decoded query parameters in order; a name may repeat.
  std::vector<std::pair<std::string, std::string>> query;
  Headers headers;
  std::string body;
  std::string remote_address;     // peer IP, for audit (never logged with patient data)
  bool keep_alive = true;
  // Monotonic time the request was fully read, microseconds (for the access log).
  int64_t received_us = 0;
};

struct Response {
  int status = 200;
  Headers headers;
  std::string body;
};

// Splits a target into path and decoded query parameters; false when the
// percent-encoding is malformed.
bool parse_target(std::string_view target, std::string* path,
                  std::vector<std::pair<std::string, std::string>>* query);
std::string percent_decode(std::string_view s, bool plus_is_space, bool* ok);
// Encodes everything but RFC 3986 unreserved characters.
std::string percent_encode(std::string_view s);

// An RFC 9110 token (header names, media type parts, parameter names).
bool is_token(std::string_view s);
// ASCII case-insensitive comparison, as header names compare.
bool header_name_equals(std::string_view a, std::string_view b);

// The entry point the net layer calls for every request. It must call
// `respond` exactly once, from any thread.
using Responder = std::function<void(Response&&)>;
using Handler = std::function<void(Request&&, Responder)>;

}  // namespace espace::http
