// The only translation unit that includes Beast/Asio: every session, the
// acceptor, TLS and shutdown live here to keep build time down.
//
// Threads: io_threads run the io_context. Each connection has a strand; the
// acceptor, the grace timer and the signal set share a control strand.
// Handlers answer from any thread. Over TLS the answer is posted back to the
// session's strand; over plain TCP the answering thread writes it itself
// (non-blocking; what does not fit continues asynchronously) and arms the
// next read, under the session's answer mutex, which force-close and stop
// also take: the strand leaves the socket alone while a request is handled.
//
// Deadlines per connection (beast::tcp_stream expiry, an absolute deadline):
//   fresh connection:  request_timeout from accept until the request is read
//   keep-alive wait:   idle_timeout until the first byte of the next request,
//                      then request_timeout for the whole request
//   writing:           write_timeout for the part of a response that did
//                      not go out at once
#include "espace/net/server.h"

#include <pthread.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <limits>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <csignal>
#include <ctime>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace espace::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using boost::system::error_code;

namespace {

using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

constexpr size_t kFirstReadBytes = 4096;
// After an error answer the client may still be sending; reading (and
// discarding) a little before closing lets it see the answer instead of a
// reset. Bounded in bytes and time.
constexpr size_t kMaxDrainBytes = 1u << 20;
constexpr std::chrono::seconds kDrainTimeout{2};
// Connections over max_connections are answered 503 by short-lived sessions;
// beyond this many at once they are closed without an answer.
constexpr size_t kMaxRejecting = 64;

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// RFC 9110 IMF-fixdate, which origin servers with a clock must send. It
// changes once a second: each I/O thread formats it once per second.
const std::string& http_date_now() {
  thread_local std::time_t cached_second = -1;
  thread_local std::string cached;
  std::time_t t = std::time(nullptr);
  if (t == cached_second) return cached;
  std::tm tm{};
  gmtime_r(&t, &tm);
  // Names spelled out rather than strftime's %a/%b, which follow the locale.
  static const char* const kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char buf[64];
  int n = std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday % 7], tm.tm_mday,
                        kMonths[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  cached.assign(buf, n > 0 ? static_cast<size_t>(n) : 0);
  cached_second = t;
  return cached;
}

// The net layer answers a few errors itself, before any handler sees the
// request, with the same OperationOutcome rendering as every other layer.
http::Response outcome_response(int status, std::string_view code, std::string_view diagnostics) {
  http::Response r;
  r.status = status;
  r.headers.set("Content-Type", "application/fhir+json; charset=utf-8");
  fhir::Issue issue;
  issue.code = std::string(code);
  issue.diagnostics = std::string(diagnostics);
  r.body = fhir::outcome_json({issue});
  return r;
}


// Header values from handlers may carry client-supplied text (a Location with
// an id, say); CR, LF or NUL there would split the response.
bool is_safe_header_value(std::string_view s) {
  for (char c : s) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

// A malformed request (as opposed to a connection that ended or timed out).
bool is_parse_error(const error_code& ec) {
  if (ec.category() != bhttp::make_error_code(bhttp::error::bad_target).category()) return false;
  return ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message && ec != bhttp::error::need_more &&
         ec != bhttp::error::need_buffer;
}

class SessionBase : public std::enable_shared_from_this<SessionBase> {
 public:
  virtual ~SessionBase() = default;
  // Both post to the session's strand; callable from any thread.
  virtual void post_server_stopping() = 0;
  virtual void post_force_close() = 0;
  virtual void post_response(http::Response&& response) = 0;
};

// Owned by the Responder: answers at most once, and answers 500 when the
// handler drops the Responder without calling it.
class PendingResponse {
 public:
  explicit PendingResponse(std::shared_ptr<SessionBase> session) : session_(std::move(session)) {}
  ~PendingResponse() {
    if (!answered_.exchange(true)) {
      session_->post_response(
          outcome_response(500, "exception", "the request handler finished without producing a response"));
    }
  }
  void answer(http::Response&& response) {
    if (answered_.exchange(true)) return;
    session_->post_response(std::move(response));
  }

 private:
  std::shared_ptr<SessionBase> session_;
  std::atomic<bool> answered_{false};
};

}  // namespace

struct Server::Impl {
  ServerOptions options;
  http::Handler handler;
  AccessLog access_log;

  // Declared before the io_context so that they outlive it: sessions owned by
  // handlers still queued when it is destroyed unregister on the way out.
  std::mutex sessions_mutex;
  std::unordered_map<SessionBase*, std::weak_ptr<SessionBase>> sessions;
  std::atomic<size_t> rejecting{0};
  std::atomic<bool> stopping{false};
  std::atomic<bool> stop_finished{false};
  std::mutex tls_mutex;
  std::shared_ptr<ssl::context> tls;
  std::function<void()> on_hup;
  uint16_t bound_port = 0;
  bool started = false;

  asio::io_context ioc;
  asio::strand<asio::io_context::executor_type> control{asio::make_strand(ioc)};
  tcp::acceptor acceptor{control};
  asio::steady_timer grace_timer{control};
  asio::steady_timer accept_retry_timer{control};
  std::optional<asio::signal_set> signals;
  asio::executor_work_guard<asio::io_context::executor_type> work{ioc.get_executor()};

  explicit Impl(int threads) : ioc(threads < 1 ? 1 : threads) {}

  fhir::Status load_tls(std::shared_ptr<ssl::context>* out);
  void do_accept();
  void on_accept(error_code ec, tcp::socket socket);
  void begin_stop();
  void finish_stop();
  void register_session(const std::shared_ptr<SessionBase>& s) {
    std::lock_guard<std::mutex> lock(sessions_mutex);
    sessions.emplace(s.get(), s);
  }
  void unregister_session(SessionBase* s) {
    bool last;
    {
      std::lock_guard<std::mutex> lock(sessions_mutex);
      sessions.erase(s);
      last = sessions.empty();
    }
    // Once stopping has finished nothing is posted: the io_context may be
    // being destroyed (sessions owned by queued handlers end here).
    if (last && stopping.load() && !stop_finished.load()) asio::post(control, [this] { finish_stop(); });
  }
  std::vector<std::shared_ptr<SessionBase>> live_sessions() {
    std::vector<std::shared_ptr<SessionBase>> out;
    std::lock_guard<std::mutex> lock(sessions_mutex);
    for (auto& [raw, weak] : sessions) {
      if (auto s = weak.lock()) out.push_back(std::move(s));
    }
    return out;
  }
  size_t session_count() {
    std::lock_guard<std::mutex> lock(sessions_mutex);
    return sessions.size();
  }
};

namespace {

template <class Stream>
class Session : public SessionBase {
 public:
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

  Session(Server::Impl& server, tcp::socket&& socket, std::string remote, bool reject,
          std::shared_ptr<ssl::context> tls)
      : server_(server),
        tls_(std::move(tls)),
        stream_(make_stream(std::move(socket), tls_.get())),
        remote_(std::move(remote)),
        reject_(reject) {}

  ~Session() override {
    if (reject_) server_.rejecting.fetch_sub(1);
    server_.unregister_session(this);
  }

  void start() {
    // One deadline covers the TLS handshake, the wait for the first byte and
    // the whole first request.
    lowest().expires_after(server_.options.request_timeout);
    deadline_set_ = true;
    if constexpr (kTls) {
      phase_ = Phase::Reading;
      stream_.async_handshake(ssl::stream_base::server,
                              [self = self()](error_code ec) { self->on_handshake(ec); });
    } else {
      // The answering thread's sendmsg must fail with would_block rather
      // than wait when the socket buffer is full (asynchronous operations are
      // unaffected).
      error_code ignored;
      lowest().socket().non_blocking(true, ignored);
      begin();
    }
  }

  // Every operation of a session runs on its strand, the first one included.
  void post_start() {
    asio::dispatch(lowest().get_executor(), [self = self()] { self->start(); });
  }

  void post_server_stopping() override {
    asio::post(lowest().get_executor(), [self = self()] {
      std::lock_guard<std::mutex> lock(self->answer_mutex_);
      self->on_server_stopping();
    });
  }
  void post_force_close() override {
    asio::post(lowest().get_executor(), [self = self()] {
      std::lock_guard<std::mutex> lock(self->answer_mutex_);
      self->close_now();
    });
  }
  void post_response(http::Response&& response) override {
    if constexpr (kTls) {
      // The TLS engine is only driven from the strand. dispatch: an answer
      // given on the strand itself (/health) is written at once.
      asio::dispatch(lowest().get_executor(), [self = self(), r = std::move(response)]() mutable {
        self->write_response(std::move(r), /*close_after=*/false);
      });
    } else {
      // Plain TCP: the answering thread (usually a worker) writes the
      // response itself and arms the next read, instead of waking an I/O
      // thread for it: one thread wake-up less per request. While a request
      // is being handled nothing on the strand touches the socket except
      // force-close and stop, which take the same mutex.
      std::lock_guard<std::mutex> lock(answer_mutex_);
      write_response(std::move(response), /*close_after=*/false);
    }
  }

 private:
  enum class Phase { Idle, Reading, Handling, Writing, Closing };

  static Stream make_stream(tcp::socket&& socket, ssl::context* tls) {
    if constexpr (kTls) {
      return Stream(std::move(socket), *tls);
    } else {
      (void)tls;
      return Stream(std::move(socket));
    }
  }

  std::shared_ptr<Session> self() { return std::static_pointer_cast<Session>(shared_from_this()); }
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

  void on_handshake(error_code ec) {
    if (ec) return close_now();
    begin();
  }

  void begin() {
    if (reject_) {
      note_request_start();
      http::Response r = outcome_response(503, "throttled", "the server has too many open connections");
      r.headers.set("Retry-After", "1");
      return write_response(std::move(r), /*close_after=*/true);
    }
    wait_for_request();
  }

  void wait_for_request() {
    if (closed_) return;
    if (server_.stopping.load()) return close_now();
    phase_ = Phase::Idle;
    if (buffer_.size() > 0) return read_header();  // the next request already began
    if (!deadline_set_) lowest().expires_after(server_.options.idle_timeout);
    stream_.async_read_some(buffer_.prepare(kFirstReadBytes), [self = self()](error_code ec, size_t n) {
      self->on_first_bytes(ec, n);
    });
  }

  void on_first_bytes(error_code ec, size_t n) {
    if (closed_) return;
    if (ec) return close_now();  // idle timeout, peer closed, or stopping
    buffer_.commit(n);
    read_header();
  }

  void read_header() {
    phase_ = Phase::Reading;
    if (!deadline_set_) {
      lowest().expires_after(server_.options.request_timeout);
      deadline_set_ = true;
    }
    parser_.emplace();
    parser_->body_limit(static_cast<std::uint64_t>(server_.options.max_body_bytes));
    parser_->header_limit(static_cast<std::uint32_t>(
        std::min<size_t>(server_.options.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             [self = self()](error_code ec, size_t n) { self->on_header(ec, n); });
  }

  void on_header(error_code ec, size_t n) {
    bytes_in_ += n;
    if (closed_) return;
    if (ec) return on_read_error(ec);
    auto& req = parser_->get();
    if (parser_->is_done()) return on_request();
    auto expect = req[bhttp::field::expect];
    if (http::header_name_equals(expect, "100-continue")) {
      // The client waits for this before sending the body.
      continue_response_.emplace(bhttp::status::continue_, req.version());
      bhttp::async_write(stream_, *continue_response_, [self = self()](error_code ec2, size_t written) {
        self->bytes_out_ += written;
        if (self->closed_) return;
        if (ec2) return self->close_now();
        self->read_body();
      });
      return;
    }
    read_body();
  }

  void read_body() {
    bhttp::async_read(stream_, buffer_, *parser_, [self = self()](error_code ec, size_t n) {
      self->bytes_in_ += n;
      if (self->closed_) return;
      if (ec) return self->on_read_error(ec);
      self->on_request();
    });
  }

  void note_request_start() {
    received_us_ = now_us();
    // The request line may have been parsed even when the headers failed
    // (a body over the limit is detected while finishing the header).
    if (parser_ && !parser_->get().method_string().empty()) {
      // assign: the connection's previous request left the capacity.
      method_.assign(parser_->get().method_string());
      std::string_view target = parser_->get().target();
      path_.assign(target.substr(0, target.find('?')));
    } else {
      method_.clear();
      path_.clear();
    }
  }

  void on_read_error(error_code ec) {
    note_request_start();
    if (ec == bhttp::error::body_limit) {
      return write_response(outcome_response(413, "too-costly",
                                             "the request body exceeds the limit of " +
                                                 std::to_string(server_.options.max_body_bytes) + " bytes"),
                            true);
    }
    if (ec == bhttp::error::header_limit) {
      return write_response(outcome_response(431, "too-costly",
                                             "the request line and headers exceed the limit of " +
                                                 std::to_string(server_.options.max_header_bytes) + " bytes"),
                            true);
    }
    // Connection-level endings (peer closed, partial message, timeout,
    // stopping) get no answer: there is no request to answer.
    if (!is_parse_error(ec)) return close_now();
    return write_response(outcome_response(400, "structure", "the HTTP request is malformed"), true);
  }

  void on_request() {
    lowest().expires_never();
    deadline_set_ = false;
    phase_ = Phase::Handling;
    note_request_start();
    auto& req = parser_->get();
    keep_alive_ = req.keep_alive();
    is_head_ = req.method() == bhttp::verb::head;

    http::Request request;
    request.method = method_;
    request.target = std::string(req.target());
    if (!http::parse_target(request.target, &request.path, &request.query)) {
      parser_.reset();
      return write_response(
          outcome_response(400, "structure", "the request target is malformed (bad percent-encoding or NUL)"),
          false);
    }
    size_t field_count = 0;
    for (auto it = req.begin(); it != req.end(); ++it) ++field_count;
    request.headers.reserve(field_count);
    for (const auto& field : req) {
      request.headers.add(std::string(field.name_string()), std::string(field.value()));
    }
    request.body = std::move(req.body());
    request.remote_address = remote_;
    request.keep_alive = keep_alive_;
    request.received_us = received_us_;
    parser_.reset();

    auto pending = std::make_shared<PendingResponse>(shared_from_this());
    http::Responder responder = [pending](http::Response&& response) { pending->answer(std::move(response)); };
    try {
      server_.handler(std::move(request), std::move(responder));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "espace: request handler threw: %s\n", e.what());
      pending->answer(outcome_response(500, "exception", "internal error while handling the request"));
    } catch (...) {
      pending->answer(outcome_response(500, "exception", "internal error while handling the request"));
    }
  }

  // Runs on the strand, or (plain TCP, while a request is handled) on the
  // answering thread under answer_mutex_.
  void write_response(http::Response&& r, bool close_after) {
    if (closed_ || phase_ == Phase::Writing || phase_ == Phase::Closing) return;
    phase_ = Phase::Writing;
    close_after_ = close_after_ || close_after;
    int status = r.status;
    if (status < 100 || status > 599) {
      r = outcome_response(500, "exception", "the handler produced an invalid status code");
      status = 500;
    }
    const bool keep = keep_alive_ && !close_after_ && !server_.stopping.load();
    const bool no_body = status < 200 || status == 204 || status == 304;
    // HEAD: the length of the body a GET would get, without the body.
    const std::optional<size_t> content_length = no_body ? std::optional<size_t>() : r.body.size();
    body_.clear();
    if (!no_body && !is_head_) body_.swap(r.body);
    format_head(status, r.headers, content_length, keep);
    status_ = status;
    sent_ = 0;
    if constexpr (!kTls) {
      // Usually the whole response fits in the socket buffer: one sendmsg,
      // no asynchronous operation.
      error_code ec;
      while (sent_ < head_.size() + body_.size()) {
        size_t n = lowest().socket().write_some(unsent(), ec);
        if (ec) break;
        sent_ += n;
      }
      if (!ec) return on_write(error_code(), sent_, keep);
      if (ec != asio::error::would_block && ec != asio::error::try_again) return on_write(ec, sent_, keep);
    }
    lowest().expires_after(server_.options.write_timeout);
    if constexpr (kTls) {
      // One buffer. Beast's TLS stream writes only the first buffer of a
      // large sequence per step, and once the head was sent that first buffer
      // was its empty remainder: the zero-byte step ended the write, and a
      // body of a few KB or more was never sent. The copy costs little next to
      // the encryption.
      body_.insert(0, head_);
      head_.clear();
      asio::async_write(stream_, asio::buffer(body_), [self = self(), keep](error_code ec, size_t n) {
        self->on_write(ec, n, keep);
      });
      return;
    }
    asio::async_write(stream_, unsent(), [self = self(), keep](error_code ec, size_t n) {
      self->on_write(ec, self->sent_ + n, keep);
    });
  }

  // Status line and header fields, as Beast's serializer wrote them: the
  // handler's fields in order (minus those the connection owns), then Server,
  // Date, Connection and Content-Length.
  void format_head(int status, const http::Headers& headers, std::optional<size_t> content_length, bool keep) {
    head_.clear();
    head_ += "HTTP/1.1 ";
    char digits[24];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, status);
    (void)ec;
    head_.append(digits, end);
    head_ += ' ';
    const auto reason = bhttp::obsolete_reason(static_cast<bhttp::status>(status));
    head_.append(reason.data(), reason.size());
    head_ += "\r\n";
    bool has_date = false;
    for (const auto& [name, value] : headers.items()) {
      if (http::header_name_equals(name, "Content-Length") || http::header_name_equals(name, "Transfer-Encoding") ||
          http::header_name_equals(name, "Connection") || http::header_name_equals(name, "Server")) {
        continue;
      }
      if (!http::is_token(name) || !is_safe_header_value(value)) continue;
      has_date = has_date || http::header_name_equals(name, "Date");
      head_ += name;
      head_ += ": ";
      head_ += value;
      head_ += "\r\n";
    }
    head_ += "Server: espace\r\n";
    if (!has_date) {
      head_ += "Date: ";
      head_ += http_date_now();
      head_ += "\r\n";
    }
    if (!keep) head_ += "Connection: close\r\n";
    if (content_length) {
      head_ += "Content-Length: ";
      auto [len_end, len_ec] = std::to_chars(digits, digits + sizeof digits, *content_length);
      (void)len_ec;
      head_.append(digits, len_end);
      head_ += "\r\n";
    }
    head_ += "\r\n";
  }

  // What is left to send of head_ and body_.
  std::array<asio::const_buffer, 2> unsent() const {
    if (sent_ < head_.size())
      return {asio::buffer(head_.data() + sent_, head_.size() - sent_), asio::buffer(body_)};
    size_t skip = sent_ - head_.size();
    return {asio::const_buffer(), asio::buffer(body_.data() + skip, body_.size() - skip)};
  }

  void on_write(error_code ec, size_t n, bool keep) {
    bytes_out_ += n;
    log_access();
    std::string().swap(body_);
    if (closed_) return;
    if (ec) return close_now();
    if (!keep) return graceful_close();
    phase_ = Phase::Idle;
    wait_for_request();
  }

  void log_access() {
    if (server_.access_log) {
      AccessLogEntry e;
      e.method = method_;
      e.path = path_;
      e.status = status_;
      e.bytes_in = bytes_in_;
      e.bytes_out = bytes_out_;
      e.duration_us = now_us() - received_us_;
      e.remote = remote_;
      try {
        server_.access_log(e);
      } catch (...) {
        // A failing log sink must not take the connection down.
      }
    }
    bytes_in_ = 0;
    bytes_out_ = 0;
  }

  void on_server_stopping() {
    // Only a connection waiting for its next request is closed now; one in
    // the middle of a request finishes it (the answer says Connection: close).
    if (phase_ == Phase::Idle) close_now();
  }

  void graceful_close() {
    phase_ = Phase::Closing;
    if constexpr (kTls) {
      lowest().expires_after(kDrainTimeout);
      stream_.async_shutdown([self = self()](error_code) { self->close_now(); });
    } else {
      error_code ignored;
      lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
      if (!close_after_) return close_now();  // the request was read completely: nothing to drain
      lowest().expires_after(kDrainTimeout);
      drain();
    }
  }

  void drain() {
    lowest().async_read_some(asio::buffer(drain_buffer_), [self = self()](error_code ec, size_t n) {
      self->drained_ += n;
      if (ec || self->closed_ || self->drained_ > kMaxDrainBytes) return self->close_now();
      self->drain();
    });
  }

  void close_now() {
    if (closed_) return;
    closed_ = true;
    phase_ = Phase::Closing;
    error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
    lowest().close();
  }

  Server::Impl& server_;
  std::shared_ptr<ssl::context> tls_;  // keeps the context alive across a reload
  Stream stream_;
  std::string remote_;
  bool reject_;

  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::optional<bhttp::response<bhttp::empty_body>> continue_response_;
  // The response being written: its head (status line and fields), its body
  // and how many bytes of both went out.
  std::string head_, body_;
  size_t sent_ = 0;
  // Held by a thread other than the strand while it writes a response and
  // arms the next read (plain TCP), and by the strand's force-close and stop.
  std::mutex answer_mutex_;
  char drain_buffer_[4096];
  size_t drained_ = 0;

  Phase phase_ = Phase::Idle;
  bool deadline_set_ = false;
  bool closed_ = false;
  bool close_after_ = false;
  bool keep_alive_ = false;
  bool is_head_ = false;

  // For the access log of the current request.
  std::string method_, path_;
  int status_ = 0;
  size_t bytes_in_ = 0, bytes_out_ = 0;
  int64_t received_us_ = 0;
};

}  // namespace

fhir::Status Server::Impl::load_tls(std::shared_ptr<ssl::context>* out) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  error_code ec;
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                       ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use |
                       ssl::context::no_compression,
                   ec);
  if (!ec) ctx->use_certificate_chain_file(options.tls_cert_file, ec);
  if (ec) {
    return fhir::Status::error(fhir::ErrorCategory::Internal, "exception",
                               "cannot load the TLS certificate chain '" + options.tls_cert_file + "': " + ec.message());
  }
  ctx->use_private_key_file(options.tls_key_file, ssl::context::pem, ec);
  if (ec) {
    return fhir::Status::error(fhir::ErrorCategory::Internal, "exception",
                               "cannot load the TLS private key '" + options.tls_key_file + "': " + ec.message());
  }
  *out = std::move(ctx);
  return fhir::Status::ok();
}

void Server::Impl::do_accept() {
  acceptor.async_accept(asio::make_strand(ioc),
                        [this](error_code ec, tcp::socket socket) { on_accept(ec, std::move(socket)); });
}

void Server::Impl::on_accept(error_code ec, tcp::socket socket) {
  if (stopping.load() || !acceptor.is_open()) return;
  if (ec) {
    // Typically EMFILE/ENFILE: back off briefly rather than spin.
    accept_retry_timer.expires_after(std::chrono::milliseconds(50));
    accept_retry_timer.async_wait([this](error_code wait_ec) {
      if (!wait_ec) do_accept();
    });
    return;
  }
  error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  auto endpoint = socket.remote_endpoint(ignored);
  std::string remote = ignored ? std::string() : endpoint.address().to_string();

  const size_t open = session_count() - rejecting.load();
  bool reject = false;
  if (open >= options.max_connections) {
    if (rejecting.load() >= kMaxRejecting) {
      socket.close(ignored);
      return do_accept();
    }
    reject = true;
    rejecting.fetch_add(1);
  }
  std::shared_ptr<ssl::context> ctx;
  {
    std::lock_guard<std::mutex> lock(tls_mutex);
    ctx = tls;
  }
  if (ctx) {
    auto s = std::make_shared<Session<TlsStream>>(*this, std::move(socket), std::move(remote), reject, ctx);
    register_session(s);
    s->post_start();
  } else {
    auto s = std::make_shared<Session<PlainStream>>(*this, std::move(socket), std::move(remote), reject, nullptr);
    register_session(s);
    s->post_start();
  }
  do_accept();
}

void Server::Impl::begin_stop() {
  if (stopping.exchange(true)) return;
  error_code ignored;
  acceptor.close(ignored);
  accept_retry_timer.cancel();
  if (signals) signals->cancel(ignored);
  auto live = live_sessions();
  if (live.empty()) return finish_stop();
  for (auto& s : live) s->post_server_stopping();
  grace_timer.expires_after(options.shutdown_grace);
  grace_timer.async_wait([this](error_code ec) {
    if (ec) return;  // cancelled: everything finished in time
    for (auto& s : live_sessions()) s->post_force_close();
    finish_stop();
  });
}

void Server::Impl::finish_stop() {
  if (stop_finished.exchange(true)) return;
  grace_timer.cancel();
  if (signals) {
    error_code ignored;
    signals->cancel(ignored);
  }
  // Without the guard, run() returns once the remaining handlers are done.
  work.reset();
}

Server::Server(ServerOptions options, http::Handler handler, AccessLog access_log)
    : impl_(std::make_unique<Impl>(options.io_threads)) {
  impl_->options = std::move(options);
  impl_->handler = std::move(handler);
  impl_->access_log = std::move(access_log);
}

Server::~Server() {
  // Sessions still queued in the io_context are destroyed with it (members
  // are destroyed in reverse order; the registry outlives the io_context).
}

fhir::Status Server::start() {
  Impl& s = *impl_;
  if (s.started) return fhir::Status::error(fhir::ErrorCategory::Internal, "exception", "the server is already started");
  const bool want_tls = !s.options.tls_cert_file.empty() || !s.options.tls_key_file.empty();
  if (want_tls) {
    if (s.options.tls_cert_file.empty() || s.options.tls_key_file.empty()) {
      return fhir::Status::error(fhir::ErrorCategory::Invalid, "required",
                                 "TLS needs both a certificate file and a key file");
    }
    std::shared_ptr<ssl::context> ctx;
    fhir::Status st = s.load_tls(&ctx);
    if (!st) return st;
    std::lock_guard<std::mutex> lock(s.tls_mutex);
    s.tls = std::move(ctx);
  }
  error_code ec;
  auto address = asio::ip::make_address(s.options.address, ec);
  if (ec) {
    return fhir::Status::error(fhir::ErrorCategory::Invalid, "value",
                               "'" + s.options.address + "' is not an IP address to listen on");
  }
  tcp::endpoint endpoint(address, s.options.port);
  const std::string where = s.options.address + ":" + std::to_string(s.options.port);
  auto fail = [&](const char* what) {
    error_code ignored;
    s.acceptor.close(ignored);
    return fhir::Status::error(fhir::ErrorCategory::Internal, "exception",
                               std::string("cannot ") + what + " " + where + ": " + ec.message());
  };
  s.acceptor.open(endpoint.protocol(), ec);
  if (ec) return fail("open a socket for");
  s.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) return fail("configure the socket for");
  s.acceptor.bind(endpoint, ec);
  if (ec) return fail("bind");
  s.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen on");
  s.bound_port = s.acceptor.local_endpoint(ec).port();
  s.started = true;
  asio::post(s.control, [impl = impl_.get()] { impl->do_accept(); });
  return fhir::Status::ok();
}

uint16_t Server::port() const { return impl_->bound_port; }

void Server::run() {
  Impl& s = *impl_;
  if (!s.started) return;
  auto run_loop = [&s] {
    while (true) {
      try {
        s.ioc.run();
        return;
      } catch (const std::exception& e) {
        // A throwing completion handler must not end the server.
        std::fprintf(stderr, "espace: I/O thread caught: %s\n", e.what());
      }
    }
  };
  std::vector<std::thread> extra;
  for (int i = 1; i < s.options.io_threads; ++i)
    extra.emplace_back([&run_loop] {
      pthread_setname_np(pthread_self(), "espace-io");  // the calling thread keeps its own name
      run_loop();
    });
  run_loop();
  for (auto& t : extra) t.join();
}

void Server::stop() {
  asio::post(impl_->control, [impl = impl_.get()] { impl->begin_stop(); });
}

void Server::stop_on_signals(std::function<void()> on_hup) {
  Impl& s = *impl_;
  asio::post(s.control, [impl = impl_.get(), on_hup = std::move(on_hup)]() mutable {
    if (impl->stopping.load()) return;
    impl->on_hup = std::move(on_hup);
    impl->signals.emplace(impl->control, SIGINT, SIGTERM, SIGHUP);
    struct Waiter {
      Impl* impl;
      void operator()(error_code ec, int signal_number) const {
        if (ec) return;
        if (signal_number == SIGHUP) {
          if (impl->on_hup) impl->on_hup();
          impl->signals->async_wait(*this);
          return;
        }
        impl->begin_stop();
      }
    };
    impl->signals->async_wait(Waiter{impl});
  });
}

fhir::Status Server::reload_tls() {
  Impl& s = *impl_;
  if (s.options.tls_cert_file.empty() || s.options.tls_key_file.empty()) {
    return fhir::Status::error(fhir::ErrorCategory::Invalid, "required", "the server was not configured for TLS");
  }
  std::shared_ptr<ssl::context> ctx;
  fhir::Status st = s.load_tls(&ctx);
  if (!st) return st;
  std::lock_guard<std::mutex> lock(s.tls_mutex);
  s.tls = std::move(ctx);
  return fhir::Status::ok();
}

size_t Server::connection_count() const { return impl_->session_count(); }

}  // namespace espace::net
