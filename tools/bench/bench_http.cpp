// bench_http: the load generator and the bare-Beast ceiling used by tools/bench/run.
//
//   bench_http hello --port 0 [--threads N]
//     A minimal Beast HTTP/1.1 keep-alive server on 127.0.0.1 answering every
//     request with {"hello":"world"}. It prints "listening PORT" once bound and
//     serves until SIGTERM or SIGINT. Its throughput is the ceiling that espace
//     is compared against, measured on the same machine in the same run.
//
//   bench_http load --port P [--host 127.0.0.1] [--connections C] [--threads T]
//                   [--duration S] [--warmup W] [--count N] [--timeout S]
//                   [--data DIR]... [--json] [--collect-ids FILE [--collect-type TYPE]]
//                   [--header-file FILE]... (--scenario FILE | --get PATH)...
//     C keep-alive connections, each sending its next request as soon as the
//     previous response arrives (a closed loop). One output line per scenario:
//     name, successful responses per second, p50 and p99 latency in ms, errors.
//
// Scenario files and templates are described in tools/bench/README.md.

#include <espace/fhir/status.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace espace::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using fhir::ErrorCategory;
using fhir::Status;

// Input files (scenarios, bodies, id lists) are read whole; this bounds them.
constexpr std::uintmax_t kMaxInputFileBytes = 64u << 20;
// Largest response body the client accepts: a transaction-response Bundle
// for a few hundred entries fits easily.
constexpr std::uint64_t kMaxResponseBody = 64u << 20;
// The hello server reads requests up to this size (transaction bodies are
// sent to it when the harness is tested without espace).
constexpr std::uint64_t kMaxHelloRequestBody = 16u << 20;
constexpr int kMaxConnections = 10000;
constexpr int kMaxThreads = 64;

Status invalid(std::string message) {
  return Status::error(ErrorCategory::Invalid, "invalid", std::move(message));
}

// ---------------------------------------------------------------------------
// Command line

class Args {
 public:
  Args(int argc, char** argv, int first) {
    for (int i = first; i < argc; ++i) items_.emplace_back(argv[i]);
  }
  bool done() const { return pos_ >= items_.size(); }
  std::string_view next() { return items_[pos_++]; }
  // The value following option `name`, or an error naming the option.
  Status value(std::string_view name, std::string* out) {
    if (done()) return invalid("option " + std::string(name) + " needs a value");
    *out = std::string(next());
    return Status::ok();
  }

 private:
  std::vector<std::string> items_;
  std::size_t pos_ = 0;
};

Status parse_int(std::string_view name, std::string_view text, std::int64_t min, std::int64_t max,
                 std::int64_t* out) {
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < min || v > max) {
    return invalid(std::string(name) + " must be an integer from " + std::to_string(min) + " to " +
                   std::to_string(max) + ", got '" + std::string(text) + "'");
  }
  *out = v;
  return Status::ok();
}

Status int_option(Args& args, std::string_view name, std::int64_t min, std::int64_t max, int* out) {
  std::string text;
  if (Status s = args.value(name, &text); !s) return s;
  std::int64_t v = 0;
  if (Status s = parse_int(name, text, min, max, &v); !s) return s;
  *out = static_cast<int>(v);
  return Status::ok();
}

// Seconds with an optional fraction, e.g. "10" or "0.5".
Status seconds_option(Args& args, std::string_view name, double max, double* out) {
  std::string text;
  if (Status s = args.value(name, &text); !s) return s;
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !(v >= 0) || v > max) {
    return invalid(std::string(name) + " must be a number of seconds from 0 to " +
                   std::to_string(static_cast<int>(max)) + ", got '" + text + "'");
  }
  *out = v;
  return Status::ok();
}

Status read_file(const fs::path& path, std::string* out) {
  std::error_code ec;
  const std::uintmax_t size = fs::file_size(path, ec);
  if (ec) return invalid("cannot read " + path.string() + ": " + ec.message());
  if (size > kMaxInputFileBytes) {
    return invalid(path.string() + " is larger than " + std::to_string(kMaxInputFileBytes >> 20) + " MiB");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return invalid("cannot open " + path.string());
  std::string text(static_cast<std::size_t>(size), '\0');
  in.read(text.data(), static_cast<std::streamsize>(size));
  if (static_cast<std::uintmax_t>(in.gcount()) != size) return invalid("short read on " + path.string());
  *out = std::move(text);
  return Status::ok();
}

// Relative file names in scenarios are looked up in the --data directories
// first, then next to the scenario file (or in the working directory).
Status resolve(const std::vector<fs::path>& search_dirs, const std::string& name, fs::path* out) {
  fs::path p(name);
  if (p.is_absolute()) {
    *out = p;
    return Status::ok();
  }
  for (const fs::path& dir : search_dirs) {
    std::error_code ec;
    if (fs::is_regular_file(dir / p, ec)) {
      *out = dir / p;
      return Status::ok();
    }
  }
  std::string where;
  for (const fs::path& dir : search_dirs) where += (where.empty() ? "" : ", ") + dir.string();
  return invalid("file '" + name + "' not found in " + where);
}

// ---------------------------------------------------------------------------
// Templates: literal text with placeholders {i}, {uuid}, {id:FILE},
// {pick:FILE} and {rand:LO:HI}. Any other brace is literal, so JSON bodies
// need no escaping.

struct LineList {
  std::vector<std::string> lines;
};

struct Part {
  enum class Kind { Literal, Counter, Uuid, RoundRobin, Pick, Random };
  Kind kind = Kind::Literal;
  std::string text;                                     // Literal
  std::shared_ptr<const LineList> list;                 // RoundRobin, Pick
  std::shared_ptr<std::atomic<std::uint64_t>> cursor;   // RoundRobin: one per occurrence
  std::int64_t low = 0, high = 0;                       // Random
};

// What varies per request while rendering.
struct RenderContext {
  std::uint64_t counter = 0;  // the request's {i}
  std::mt19937_64* rng = nullptr;
};

class Template {
 public:
  void render(const RenderContext& ctx, std::string* out) const {
    for (const Part& p : parts_) {
      switch (p.kind) {
        case Part::Kind::Literal: out->append(p.text); break;
        case Part::Kind::Counter: append_number(ctx.counter, out); break;
        case Part::Kind::Uuid: append_uuid(*ctx.rng, out); break;
        case Part::Kind::RoundRobin: {
          const std::uint64_t n = p.cursor->fetch_add(1, std::memory_order_relaxed);
          out->append(p.list->lines[n % p.list->lines.size()]);
          break;
        }
        case Part::Kind::Pick: {
          std::uniform_int_distribution<std::size_t> d(0, p.list->lines.size() - 1);
          out->append(p.list->lines[d(*ctx.rng)]);
          break;
        }
        case Part::Kind::Random: {
          std::uniform_int_distribution<std::int64_t> d(p.low, p.high);
          append_number(d(*ctx.rng), out);
          break;
        }
      }
    }
  }
  std::vector<Part>& parts() { return parts_; }
  const std::vector<Part>& parts() const { return parts_; }

 private:
  template <typename Int>
  static void append_number(Int v, std::string* out) {
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out->append(buf, end);
  }
  // A random (version 4) UUID, lower case.
  static void append_uuid(std::mt19937_64& rng, std::string* out) {
    std::uint64_t hi = rng(), lo = rng();
    hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
    lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
    static constexpr char kHex[] = "0123456789abcdef";
    char buf[36];
    int j = 0;
    for (int i = 0; i < 32; ++i) {
      if (i == 8 || i == 12 || i == 16 || i == 20) buf[j++] = '-';
      const std::uint64_t word = i < 16 ? hi : lo;
      buf[j++] = kHex[(word >> (60 - 4 * (i % 16))) & 0xf];
    }
    out->append(buf, sizeof buf);
  }

  std::vector<Part> parts_;
};

// Loads line lists once per file, shared by every placeholder naming it.
class ListCache {
 public:
  Status get(const fs::path& path, std::shared_ptr<const LineList>* out) {
    const std::string key = fs::weakly_canonical(path).string();
    if (auto it = lists_.find(key); it != lists_.end()) {
      *out = it->second;
      return Status::ok();
    }
    std::string text;
    if (Status s = read_file(path, &text); !s) return s;
    auto list = std::make_shared<LineList>();
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || line[0] == '#') continue;  // blank lines and comments
      list->lines.push_back(std::move(line));
    }
    if (list->lines.empty()) return invalid(path.string() + " has no lines to use");
    lists_.emplace(key, list);
    *out = list;
    return Status::ok();
  }

 private:
  std::map<std::string, std::shared_ptr<const LineList>> lists_;
};

struct TemplateEnv {
  std::vector<fs::path> search_dirs;
  ListCache* lists = nullptr;
};

Status parse_template_parts(std::string_view text, const TemplateEnv& env, std::string_view where, Template* out) {
  Template t;
  std::string literal;
  auto flush_literal = [&] {
    if (!literal.empty()) {
      Part p;
      p.text = std::move(literal);
      t.parts().push_back(std::move(p));
      literal.clear();
    }
  };
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] != '{') {
      literal.push_back(text[i++]);
      continue;
    }
    std::size_t j = i + 1;
    while (j < text.size() && text[j] >= 'a' && text[j] <= 'z') ++j;
    const std::string_view word = text.substr(i + 1, j - i - 1);
    const bool simple = j < text.size() && text[j] == '}';
    const bool with_arg = j < text.size() && text[j] == ':';
    Part p;
    if (simple && word == "i") {
      p.kind = Part::Kind::Counter;
    } else if (simple && word == "uuid") {
      p.kind = Part::Kind::Uuid;
    } else if (with_arg && (word == "id" || word == "pick" || word == "rand")) {
      const std::size_t close = text.find('}', j);
      if (close == std::string_view::npos) {
        return invalid(std::string(where) + ": placeholder {" + std::string(word) + ":... has no closing brace");
      }
      const std::string arg(text.substr(j + 1, close - j - 1));
      if (word == "rand") {
        const std::size_t colon = arg.find(':');
        if (colon == std::string::npos) return invalid(std::string(where) + ": {rand:LO:HI} needs two bounds");
        if (Status s = parse_int("{rand} low bound", arg.substr(0, colon), -(1LL << 53), 1LL << 53, &p.low); !s) {
          return s;
        }
        if (Status s = parse_int("{rand} high bound", arg.substr(colon + 1), p.low, 1LL << 53, &p.high); !s) {
          return s;
        }
        p.kind = Part::Kind::Random;
      } else {
        fs::path path;
        if (Status s = resolve(env.search_dirs, arg, &path); !s) return s;
        if (Status s = env.lists->get(path, &p.list); !s) return s;
        if (word == "id") {
          p.kind = Part::Kind::RoundRobin;
          p.cursor = std::make_shared<std::atomic<std::uint64_t>>(0);
        } else {
          p.kind = Part::Kind::Pick;
        }
      }
      j = close;
    } else {
      literal.push_back(text[i++]);
      continue;
    }
    flush_literal();
    t.parts().push_back(std::move(p));
    i = j + 1;
  }
  flush_literal();
  *out = std::move(t);
  return Status::ok();
}

// Errors name the template (file and part) they come from.
Status parse_template(std::string_view text, const TemplateEnv& env, std::string_view where, Template* out) {
  Status s = parse_template_parts(text, env, where, out);
  if (!s && s.message().rfind(where, 0) != 0) return invalid(std::string(where) + ": " + s.message());
  return s;
}

// A request target must not be able to break the request line or headers:
// no spaces or control characters in the literal text or in values from files.
Status check_target_template(const Template& t, std::string_view where) {
  auto bad = [](std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; });
  };
  if (t.parts().empty() || t.parts()[0].kind != Part::Kind::Literal || t.parts()[0].text[0] != '/') {
    return invalid(std::string(where) + ": the path must start with '/'");
  }
  for (const Part& p : t.parts()) {
    if (p.kind == Part::Kind::Literal && bad(p.text)) {
      return invalid(std::string(where) + ": the path contains a space or control character");
    }
    if (p.list) {
      for (std::size_t n = 0; n < p.list->lines.size(); ++n) {
        if (bad(p.list->lines[n])) {
          return invalid(std::string(where) + ": line " + std::to_string(n + 1) +
                         " of a file used in the path contains a space or control character");
        }
      }
    }
  }
  return Status::ok();
}

// ---------------------------------------------------------------------------
// Scenarios
//
// A scenario file is "key value" lines: name, method, path, header (repeatable),
// body-file; or a line "body" after which the rest of the file is the body.
// Blank lines and lines starting with '#' are ignored before the body.

struct Scenario {
  std::string name;
  std::string method = "GET";
  Template path;
  std::vector<std::string> headers;  // "Name: value"
  std::optional<Template> body;
};

Status check_token(std::string_view what, std::string_view s, std::string_view where) {
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == ':' ||
               c == '/' || c == '?' || c == '=' || c == '&';
      })) {
    return invalid(std::string(where) + ": " + std::string(what) + " '" + std::string(s) +
                   "' must be non-empty and use only letters, digits and - _ . : / ? = &");
  }
  return Status::ok();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

Status check_header(std::string_view header, std::string_view where) {
  const std::size_t colon = header.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return invalid(std::string(where) + ": header '" + std::string(header) + "' must look like 'Name: value'");
  }
  const std::string_view name = header.substr(0, colon);
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-')) {
      return invalid(std::string(where) + ": header name '" + std::string(name) + "' is not a token");
    }
  }
  for (std::string_view reserved : {"content-length", "transfer-encoding", "host", "connection"}) {
    if (beast::iequals(name, reserved)) {
      return invalid(std::string(where) + ": header " + std::string(name) + " is set by the load generator");
    }
  }
  for (char c : header) {
    if (c == '\r' || c == '\n' || c == '\0') return invalid(std::string(where) + ": header has a control character");
  }
  return Status::ok();
}

Status load_scenario(const fs::path& file, const std::vector<fs::path>& data_dirs, ListCache* lists, Scenario* out) {
  std::string text;
  if (Status s = read_file(file, &text); !s) return s;
  TemplateEnv env{data_dirs, lists};
  env.search_dirs.push_back(file.parent_path().empty() ? fs::path(".") : file.parent_path());
  Scenario sc;
  sc.name = file.stem().string();
  std::optional<std::string> path_text;
  std::optional<std::string> body_text;
  std::size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    const std::string_view line = trim(std::string_view(text).substr(pos, eol - pos));
    pos = eol + 1;
    ++line_no;
    const std::string where = file.string() + ":" + std::to_string(line_no);
    if (line.empty() || line[0] == '#') continue;
    if (line == "body") {
      if (body_text) return invalid(where + ": the body is given twice");
      body_text = pos < text.size() ? text.substr(pos) : std::string();
      while (!body_text->empty() && (body_text->back() == '\n' || body_text->back() == '\r')) body_text->pop_back();
      break;
    }
    const std::size_t space = line.find_first_of(" \t");
    const std::string_view key = line.substr(0, space);
    const std::string_view value = space == std::string_view::npos ? std::string_view() : trim(line.substr(space));
    if (key == "name") {
      if (Status s = check_token("name", value, where); !s) return s;
      sc.name = std::string(value);
    } else if (key == "method") {
      if (value.empty() || !std::all_of(value.begin(), value.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
        return invalid(where + ": method must be upper-case letters, e.g. GET or POST");
      }
      sc.method = std::string(value);
    } else if (key == "path") {
      path_text = std::string(value);
    } else if (key == "header") {
      if (Status s = check_header(value, where); !s) return s;
      sc.headers.emplace_back(value);
    } else if (key == "body-file") {
      if (body_text) return invalid(where + ": the body is given twice");
      fs::path body_path;
      if (Status s = resolve(env.search_dirs, std::string(value), &body_path); !s) return s;
      std::string body;
      if (Status s = read_file(body_path, &body); !s) return s;
      body_text = std::move(body);
    } else {
      return invalid(where + ": unknown key '" + std::string(key) +
                     "' (expected name, method, path, header, body-file or body)");
    }
  }
  if (!path_text) return invalid(file.string() + ": no 'path' line");
  if (Status s = parse_template(*path_text, env, file.string() + " path", &sc.path); !s) return s;
  if (Status s = check_target_template(sc.path, file.string()); !s) return s;
  if (body_text) {
    Template body;
    if (Status s = parse_template(*body_text, env, file.string() + " body", &body); !s) return s;
    sc.body = std::move(body);
  }
  *out = std::move(sc);
  return Status::ok();
}

// ---------------------------------------------------------------------------
// Latency histogram: log-linear buckets with 64 steps per power of two
// (under 1.6 % relative error), fixed memory however long the run.

class Histogram {
 public:
  static constexpr int kLinear = 128;
  static constexpr int kBuckets = kLinear + 64 * 58;

  void record(std::uint64_t ns) {
    ++counts_[index(ns)];
    ++total_;
    max_ = std::max(max_, ns);
  }
  void merge(const Histogram& other) {
    for (int i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    max_ = std::max(max_, other.max_);
  }
  std::uint64_t total() const { return total_; }
  std::uint64_t max() const { return max_; }
  // The value at quantile q (0..1): the middle of the bucket holding it.
  std::uint64_t quantile(double q) const {
    if (total_ == 0) return 0;
    const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total_)));
    std::uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= std::max<std::uint64_t>(rank, 1)) return std::min(middle(i), max_);
    }
    return max_;
  }

 private:
  static int index(std::uint64_t v) {
    if (v < kLinear) return static_cast<int>(v);
    const int shift = std::bit_width(v) - 7;  // v >> shift lies in [64, 128)
    return kLinear + (shift - 1) * 64 + static_cast<int>((v >> shift) - 64);
  }
  static std::uint64_t middle(int i) {
    if (i < kLinear) return static_cast<std::uint64_t>(i);
    const int shift = (i - kLinear) / 64 + 1;
    const std::uint64_t low = static_cast<std::uint64_t>((i - kLinear) % 64 + 64) << shift;
    return low + (std::uint64_t{1} << shift) / 2;
  }

  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t total_ = 0;
  std::uint64_t max_ = 0;
};

// ---------------------------------------------------------------------------
// Hello server: the ceiling.

class HelloSession : public std::enable_shared_from_this<HelloSession> {
 public:
  explicit HelloSession(tcp::socket socket) : stream_(std::move(socket)) {}
  void start() { read(); }

 private:
  void read() {
    parser_.emplace();
    parser_->body_limit(kMaxHelloRequestBody);
    stream_.expires_after(std::chrono::seconds(60));  // idle keep-alive connections are closed
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }
  void on_read(beast::error_code ec) {
    if (ec) return close();
    const http::request<http::string_body>& req = parser_->get();
    response_ = {};
    response_.result(http::status::ok);
    response_.version(req.version());
    response_.set(http::field::content_type, "application/json");
    response_.body() = R"({"hello":"world"})";
    response_.keep_alive(req.keep_alive());
    response_.prepare_payload();
    http::async_write(stream_, response_,
                      [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_write(ec); });
  }
  void on_write(beast::error_code ec) {
    if (ec || !response_.keep_alive()) return close();
    read();
  }
  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> response_;
};

class HelloServer {
 public:
  HelloServer(asio::io_context& ioc, tcp::acceptor& acceptor) : ioc_(ioc), acceptor_(acceptor) {}
  void accept() {
    acceptor_.async_accept(asio::make_strand(ioc_), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;  // closed on shutdown
      if (!ec) {
        socket.set_option(tcp::no_delay(true), ec);
        std::make_shared<HelloSession>(std::move(socket))->start();
      }
      accept();
    });
  }

 private:
  asio::io_context& ioc_;
  tcp::acceptor& acceptor_;
};

int run_hello(Args& args) {
  int port = 0;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  while (!args.done()) {
    const std::string_view opt = args.next();
    Status s;
    if (opt == "--port") {
      s = int_option(args, opt, 0, 65535, &port);
    } else if (opt == "--threads") {
      s = int_option(args, opt, 1, kMaxThreads, &threads);
    } else {
      s = invalid("unknown option for hello: " + std::string(opt));
    }
    if (!s) {
      std::cerr << "bench_http hello: " << s.message() << "\n";
      return 2;
    }
  }
  asio::io_context ioc(threads);
  tcp::acceptor acceptor(ioc);
  beast::error_code ec;
  const tcp::endpoint endpoint(asio::ip::make_address_v4("127.0.0.1"), static_cast<unsigned short>(port));
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::cerr << "bench_http hello: cannot listen on 127.0.0.1:" << port << ": " << ec.message() << "\n";
    return 1;
  }
  HelloServer server(ioc, acceptor);
  server.accept();
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](beast::error_code, int) {
    beast::error_code ignored;
    acceptor.close(ignored);
    ioc.stop();
  });
  std::printf("listening %u\n", static_cast<unsigned>(acceptor.local_endpoint().port()));
  std::fflush(stdout);
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (std::thread& t : pool) t.join();
  return 0;
}

// ---------------------------------------------------------------------------
// Load generator

struct LoadOptions {
  std::string host = "127.0.0.1";
  int port = 0;
  int connections = 32;
  int threads = 1;
  double duration = 10;
  double warmup = 2;
  double timeout = 30;
  std::int64_t count = 0;  // > 0: send exactly this many requests, no warm-up
  bool json = false;
  std::vector<fs::path> data_dirs;
  std::string collect_ids_file;
  std::string collect_type;
  // Files of one "Name: value" line each, sent with every request (bearer
  // tokens: kept out of argv and of the scenario files).
  std::vector<std::string> header_files;
};

// State shared by every connection of one scenario run.
struct Run {
  const Scenario* scenario = nullptr;
  const LoadOptions* options = nullptr;
  tcp::endpoint endpoint;
  std::string host_header;
  Clock::time_point measure_from;
  Clock::time_point measure_until;
  Clock::time_point hard_stop;  // in-flight requests are abandoned after this
  std::atomic<std::uint64_t> next_counter{0};
  std::atomic<std::int64_t> tickets{0};  // --count mode: requests left to send
};

// Per-thread results, merged when the scenario ends.
struct Stats {
  Histogram latency;
  std::uint64_t ok = 0;
  std::uint64_t transport_errors = 0;
  std::map<int, std::uint64_t> statuses;
  std::vector<std::string> ids;  // --collect-ids
  void merge(Stats& other) {
    latency.merge(other.latency);
    ok += other.ok;
    transport_errors += other.transport_errors;
    for (auto& [code, n] : other.statuses) statuses[code] += n;
    ids.insert(ids.end(), std::make_move_iterator(other.ids.begin()), std::make_move_iterator(other.ids.end()));
  }
  std::uint64_t http_errors() const {
    std::uint64_t n = 0;
    for (auto& [code, count] : statuses) {
      if (code < 200 || code > 299) n += count;
    }
    return n;
  }
};

// "Patient/123/_history/1" or "http://host/base/Patient/123" -> type and id.
bool split_location(std::string_view location, std::string_view* type, std::string_view* id) {
  if (const std::size_t h = location.find("/_history/"); h != std::string_view::npos) location = location.substr(0, h);
  while (!location.empty() && location.back() == '/') location.remove_suffix(1);
  const std::size_t last = location.rfind('/');
  if (last == std::string_view::npos || last == 0 || last + 1 == location.size()) return false;
  *id = location.substr(last + 1);
  const std::string_view before = location.substr(0, last);
  const std::size_t prev = before.rfind('/');
  *type = prev == std::string_view::npos ? before : before.substr(prev + 1);
  return !type->empty();
}

void collect_location(std::string_view location, const std::string& wanted_type, std::vector<std::string>* ids) {
  std::string_view type, id;
  if (split_location(location, &type, &id) && (wanted_type.empty() || type == wanted_type)) ids->emplace_back(id);
}

// Ids from a create's Location header and from every "location" member of a
// transaction-response Bundle (entry.response.location).
void collect_ids(const http::response<http::string_body>& res, const std::string& wanted_type,
                 std::vector<std::string>* ids) {
  if (auto it = res.find(http::field::location); it != res.end()) {
    collect_location(std::string_view(it->value().data(), it->value().size()), wanted_type, ids);
  }
  const std::string_view body = res.body();
  constexpr std::string_view kKey = "\"location\"";
  for (std::size_t at = body.find(kKey); at != std::string_view::npos; at = body.find(kKey, at + 1)) {
    std::size_t p = at + kKey.size();
    while (p < body.size() && (body[p] == ' ' || body[p] == '\t' || body[p] == '\n' || body[p] == '\r')) ++p;
    if (p >= body.size() || body[p] != ':') continue;
    ++p;
    while (p < body.size() && (body[p] == ' ' || body[p] == '\t' || body[p] == '\n' || body[p] == '\r')) ++p;
    if (p >= body.size() || body[p] != '"') continue;
    const std::size_t end = body.find('"', p + 1);
    if (end == std::string_view::npos) break;
    collect_location(body.substr(p + 1, end - p - 1), wanted_type, ids);
  }
}

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::io_context& ioc, Run& run, Stats& stats, std::uint64_t seed)
      : run_(run), stats_(stats), stream_(ioc), retry_(ioc), rng_(seed) {}

  void start() { connect(); }

 private:
  void connect() {
    if (finished()) return;
    stream_.expires_at(std::min(Clock::now() + timeout(), run_.hard_stop));
    stream_.async_connect(run_.endpoint, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->fail();
      beast::error_code ignored;
      self->stream_.socket().set_option(tcp::no_delay(true), ignored);
      self->send();
    });
  }

  bool finished() const {
    const Clock::time_point now = Clock::now();
    return now >= run_.measure_until || now >= run_.hard_stop;
  }

  void send() {
    if (finished()) return close();
    if (run_.options->count > 0 && run_.tickets.fetch_sub(1, std::memory_order_relaxed) <= 0) return close();
    render_request();
    sent_at_ = Clock::now();
    stream_.expires_at(std::min(sent_at_ + timeout(), run_.hard_stop));
    asio::async_write(stream_, asio::buffer(request_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->fail();
      self->read();
    });
  }

  void read() {
    parser_.emplace();
    parser_->body_limit(kMaxResponseBody);
    http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->fail();
      self->on_response();
    });
  }

  void on_response() {
    const Clock::time_point now = Clock::now();
    const http::response<http::string_body>& res = parser_->get();
    const int code = static_cast<int>(res.result_int());
    if (in_window(now)) {
      ++stats_.statuses[code];
      if (code >= 200 && code <= 299) {
        ++stats_.ok;
        stats_.latency.record(static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(now - sent_at_).count()));
        if (!run_.options->collect_ids_file.empty()) collect_ids(res, run_.options->collect_type, &stats_.ids);
      }
    }
    if (!res.keep_alive()) {
      reset_socket();
      return connect();
    }
    send();
  }

  bool in_window(Clock::time_point t) const { return t >= run_.measure_from && t < run_.measure_until; }

  // A failed connect, write or read: counted, then a fresh connection after a
  // short pause so a refusing server does not turn this into a busy loop.
  // Failures after the window count too: they are requests of the window that
  // never got an answer (abandoned at the hard stop).
  void fail() {
    if (Clock::now() >= run_.measure_from) ++stats_.transport_errors;
    reset_socket();
    if (finished()) return;
    retry_.expires_after(std::chrono::milliseconds(20));
    retry_.async_wait([self = shared_from_this()](beast::error_code) { self->connect(); });
  }

  void reset_socket() {
    beast::error_code ignored;
    stream_.socket().close(ignored);  // async_connect opens it again
    buffer_.clear();
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  Clock::duration timeout() const {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(run_.options->timeout));
  }

  void render_request() {
    const Scenario& sc = *run_.scenario;
    RenderContext ctx{run_.next_counter.fetch_add(1, std::memory_order_relaxed), &rng_};
    body_.clear();
    if (sc.body) sc.body->render(ctx, &body_);
    request_.clear();
    request_.append(sc.method).append(" ");
    sc.path.render(ctx, &request_);
    request_.append(" HTTP/1.1\r\nHost: ").append(run_.host_header).append("\r\n");
    bool has_content_type = false;
    for (const std::string& h : sc.headers) {
      request_.append(h).append("\r\n");
      if (beast::iequals(std::string_view(h).substr(0, h.find(':')), "content-type")) has_content_type = true;
    }
    if (sc.body) {
      if (!has_content_type) request_.append("Content-Type: application/fhir+json\r\n");
      request_.append("Content-Length: ").append(std::to_string(body_.size())).append("\r\n");
    }
    request_.append("\r\n").append(body_);
  }

  Run& run_;
  Stats& stats_;
  beast::tcp_stream stream_;
  asio::steady_timer retry_;
  std::mt19937_64 rng_;
  beast::flat_buffer buffer_;
  std::optional<http::response_parser<http::string_body>> parser_;
  std::string request_;
  std::string body_;
  Clock::time_point sent_at_;
};

struct Result {
  std::string name;
  int connections = 0;
  double seconds = 0;
  Stats stats;
};

Result run_scenario(const Scenario& scenario, const LoadOptions& options, const tcp::endpoint& endpoint) {
  Run run;
  run.scenario = &scenario;
  run.options = &options;
  run.endpoint = endpoint;
  run.host_header = options.host + ":" + std::to_string(options.port);
  const auto secs = [](double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  const Clock::time_point start = Clock::now();
  const double warmup = options.count > 0 ? 0 : options.warmup;
  run.measure_from = start + secs(warmup);
  run.measure_until = run.measure_from + secs(options.duration);
  // Requests still unanswered a few seconds after the end are abandoned (and
  // not counted), so a stuck server cannot keep the run going.
  run.hard_stop = run.measure_until + secs(std::min(options.timeout, 5.0));
  run.tickets = options.count;

  const int threads = std::min(options.threads, options.connections);
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::vector<Stats> stats(static_cast<std::size_t>(threads));
  for (int t = 0; t < threads; ++t) contexts.push_back(std::make_unique<asio::io_context>(1));
  std::random_device seed_source;
  const std::uint64_t base_seed = (static_cast<std::uint64_t>(seed_source()) << 32) ^ seed_source();
  for (int c = 0; c < options.connections; ++c) {
    const int t = c % threads;
    std::make_shared<Connection>(*contexts[t], run, stats[t], base_seed + static_cast<std::uint64_t>(c))->start();
  }
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back([&, t] { contexts[t]->run(); });
  contexts[0]->run();
  for (std::thread& th : pool) th.join();
  const Clock::time_point end = Clock::now();

  Result result;
  result.name = scenario.name;
  result.connections = options.connections;
  // In --count mode the run ends when the last response arrives.
  result.seconds = options.count > 0 ? std::chrono::duration<double>(std::min(end, run.measure_until) - start).count()
                                     : options.duration;
  for (Stats& s : stats) result.stats.merge(s);
  return result;
}

double ms(std::uint64_t ns) { return static_cast<double>(ns) / 1e6; }

void print_text(const Result& r) {
  const Stats& s = r.stats;
  const double rate = r.seconds > 0 ? static_cast<double>(s.ok) / r.seconds : 0;
  std::printf("%-24s %10.0f %9.3f %9.3f %8llu\n", r.name.c_str(), rate, ms(s.latency.quantile(0.50)),
              ms(s.latency.quantile(0.99)), static_cast<unsigned long long>(s.http_errors() + s.transport_errors));
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
      out += buf;
    } else {
      out.push_back(c);
    }
  }
  return out + "\"";
}

void print_json(const Result& r) {
  const Stats& s = r.stats;
  const double rate = r.seconds > 0 ? static_cast<double>(s.ok) / r.seconds : 0;
  std::string statuses;
  for (auto& [code, n] : s.statuses) {
    statuses += (statuses.empty() ? "\"" : ",\"") + std::to_string(code) + "\":" + std::to_string(n);
  }
  std::printf(
      "{\"name\":%s,\"connections\":%d,\"seconds\":%.3f,\"ok\":%llu,\"req_per_s\":%.1f,"
      "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"errors\":%llu,"
      "\"transport_errors\":%llu,\"status\":{%s}}\n",
      json_string(r.name).c_str(), r.connections, r.seconds, static_cast<unsigned long long>(s.ok), rate,
      ms(s.latency.quantile(0.50)), ms(s.latency.quantile(0.90)), ms(s.latency.quantile(0.99)), ms(s.latency.max()),
      static_cast<unsigned long long>(s.http_errors() + s.transport_errors),
      static_cast<unsigned long long>(s.transport_errors), statuses.c_str());
}

// `order` receives (is_get, scenario file or path) in command-line order.
Status parse_load_args(Args& args, LoadOptions* o, std::vector<std::pair<int, std::string>>* order) {
  while (!args.done()) {
    const std::string_view opt = args.next();
    Status s;
    std::string text;
    if (opt == "--host") {
      s = args.value(opt, &o->host);
    } else if (opt == "--port") {
      s = int_option(args, opt, 1, 65535, &o->port);
    } else if (opt == "--connections") {
      s = int_option(args, opt, 1, kMaxConnections, &o->connections);
    } else if (opt == "--threads") {
      s = int_option(args, opt, 1, kMaxThreads, &o->threads);
    } else if (opt == "--duration") {
      s = seconds_option(args, opt, 3600, &o->duration);
    } else if (opt == "--warmup") {
      s = seconds_option(args, opt, 600, &o->warmup);
    } else if (opt == "--timeout") {
      s = seconds_option(args, opt, 600, &o->timeout);
    } else if (opt == "--count") {
      if (s = args.value(opt, &text); s) s = parse_int(opt, text, 1, 1LL << 40, &o->count);
    } else if (opt == "--json") {
      o->json = true;
    } else if (opt == "--data") {
      if (s = args.value(opt, &text); s) o->data_dirs.emplace_back(text);
    } else if (opt == "--collect-ids") {
      s = args.value(opt, &o->collect_ids_file);
    } else if (opt == "--collect-type") {
      s = args.value(opt, &o->collect_type);
    } else if (opt == "--header-file") {
      if (s = args.value(opt, &text); s) o->header_files.push_back(text);
    } else if (opt == "--scenario" || opt == "--get") {
      if (s = args.value(opt, &text); s) order->emplace_back(opt == "--get" ? 1 : 0, text);
    } else {
      s = invalid("unknown option for load: " + std::string(opt));
    }
    if (!s) return s;
  }
  if (o->port == 0) return invalid("--port is required");
  if (order->empty()) return invalid("give at least one --scenario FILE or --get PATH");
  if (o->duration <= 0) return invalid("--duration must be more than 0 seconds");
  if (o->timeout <= 0) return invalid("--timeout must be more than 0 seconds");
  return Status::ok();
}

int run_load(Args& args) {
  LoadOptions options;
  std::vector<std::pair<int, std::string>> order;
  if (Status s = parse_load_args(args, &options, &order); !s) {
    std::cerr << "bench_http load: " << s.message() << "\n";
    return 2;
  }
  // Only loopback addresses: the harness measures a server on this machine and
  // must not be pointed at anyone else's.
  beast::error_code ec;
  const std::string address_text = options.host == "localhost" ? "127.0.0.1" : options.host;
  const asio::ip::address address = asio::ip::make_address(address_text, ec);
  if (ec || !address.is_loopback()) {
    std::cerr << "bench_http load: --host must be a loopback IP address such as 127.0.0.1, got '" << options.host
              << "'\n";
    return 2;
  }
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(options.port));

  ListCache lists;
  std::vector<Scenario> scenarios;
  for (const auto& [is_get, text] : order) {
    Scenario sc;
    if (is_get) {
      TemplateEnv env{options.data_dirs, &lists};
      env.search_dirs.emplace_back(".");
      sc.name = "GET:" + text;
      Status s = parse_template(text, env, "--get " + text, &sc.path);
      if (s) s = check_target_template(sc.path, "--get " + text);
      if (!s) {
        std::cerr << "bench_http load: " << s.message() << "\n";
        return 2;
      }
    } else if (Status s = load_scenario(text, options.data_dirs, &lists, &sc); !s) {
      std::cerr << "bench_http load: " << s.message() << "\n";
      return 2;
    }
    scenarios.push_back(std::move(sc));
  }

  for (const std::string& file : options.header_files) {
    std::ifstream in(file);
    std::string line;
    while (in && (line.empty() || line[0] == '#')) std::getline(in, line);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    Status s = line.empty() ? invalid("--header-file " + file + ": no header line") : check_header(line, "--header-file " + file);
    if (!s) {
      std::cerr << "bench_http load: " << s.message() << "\n";
      return 2;
    }
    for (Scenario& sc : scenarios) sc.headers.push_back(line);
  }

  std::vector<std::string> collected;
  bool any_errors = false;
  if (!options.json) std::printf("%-24s %10s %9s %9s %8s\n", "# scenario", "req/s", "p50_ms", "p99_ms", "errors");
  for (const Scenario& sc : scenarios) {
    Result r = run_scenario(sc, options, endpoint);
    if (options.json) {
      print_json(r);
    } else {
      print_text(r);
    }
    std::fflush(stdout);
    if (r.stats.http_errors() + r.stats.transport_errors > 0) any_errors = true;
    collected.insert(collected.end(), r.stats.ids.begin(), r.stats.ids.end());
  }
  if (!options.collect_ids_file.empty()) {
    std::ofstream out(options.collect_ids_file, std::ios::trunc);
    for (const std::string& id : collected) out << id << "\n";
    if (!out) {
      std::cerr << "bench_http load: cannot write " << options.collect_ids_file << "\n";
      return 1;
    }
  }
  // Errors are in the output already; the exit code lets scripts notice them too.
  return any_errors ? 3 : 0;
}

int usage() {
  std::cerr << "usage: bench_http hello --port PORT [--threads N]\n"
               "       bench_http load --port PORT [--host 127.0.0.1] [--connections C] [--threads T]\n"
               "                       [--duration S] [--warmup S] [--count N] [--timeout S] [--json]\n"
               "                       [--data DIR]... [--collect-ids FILE [--collect-type TYPE]]\n"
               "                       [--header-file FILE]... (--scenario FILE | --get PATH)...\n";
  return 2;
}

}  // namespace
}  // namespace espace::bench

int main(int argc, char** argv) {
  if (argc < 2) return espace::bench::usage();
  const std::string_view mode = argv[1];
  espace::bench::Args args(argc, argv, 2);
  if (mode == "hello") return espace::bench::run_hello(args);
  if (mode == "load") return espace::bench::run_load(args);
  return espace::bench::usage();
}
