// Delivery channels (notify_channels.h). Asio operations run asynchronously on
// a private io_context driven up to a deadline, which is how a blocking call
// gets a timeout: a relay or receiver that stalls costs at most `timeout`.
#include "notify_channels.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <ctime>

namespace espace::interactions::notify {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;
using fhir::ErrorCategory;

namespace {

Status failed(const std::string& what) {
  return Status::error(ErrorCategory::Unavailable, "transient", "notification: " + what);
}

Status invalid(const std::string& what) {
  return Status::error(ErrorCategory::Invalid, "invalid", "notification: " + what);
}

// One connection whose every operation shares a deadline.
class TimedConnection {
 public:
  explicit TimedConnection(std::chrono::milliseconds timeout)
      : deadline_(std::chrono::steady_clock::now() + timeout) {}

  Status connect(const std::string& host, const std::string& port) {
    tcp::resolver resolver(ioc_);
    tcp::resolver::results_type endpoints;
    boost::system::error_code result = asio::error::would_block;
    resolver.async_resolve(host, port, [&](boost::system::error_code ec, tcp::resolver::results_type r) {
      result = ec;
      endpoints = std::move(r);
    });
    if (Status s = wait(result, "resolving the host", [&] { resolver.cancel(); }); !s) return s;
    result = asio::error::would_block;
    asio::async_connect(socket_, endpoints, [&](boost::system::error_code ec, const tcp::endpoint&) { result = ec; });
    return wait(result, "connecting", [&] { socket_.close(); });
  }

  template <class Start>
  Status run(const char* what, Start start) {
    boost::system::error_code result = asio::error::would_block;
    start([&](boost::system::error_code ec, std::size_t) { result = ec; });
    return wait(result, what, [&] { socket_.close(); });
  }

  tcp::socket& socket() { return socket_; }

 private:
  template <class Cancel>
  Status wait(boost::system::error_code& result, const char* what, Cancel cancel) {
    ioc_.restart();
    ioc_.run_until(deadline_);
    if (result == asio::error::would_block) {
      cancel();
      ioc_.restart();
      ioc_.run();  // lets the cancelled handler finish before `result` goes away
      return failed(std::string("timed out ") + what);
    }
    if (result) return failed(std::string(what) + ": " + result.message());
    return Status::ok();
  }

  asio::io_context ioc_;
  tcp::socket socket_{ioc_};
  std::chrono::steady_clock::time_point deadline_;
};

bool has_control(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

}  // namespace

Status parse_http_url(const std::string& url, HttpUrl* out) {
  const std::string scheme = "http://";
  if (url.rfind("https://", 0) == 0) return invalid("https endpoints are not supported (use http)");
  if (url.rfind(scheme, 0) != 0) return invalid("the endpoint is not an http:// URL");
  if (url.size() > 2048 || has_control(url) || url.find(' ') != std::string::npos)
    return invalid("the endpoint URL is malformed");
  size_t slash = url.find('/', scheme.size());
  std::string authority = url.substr(scheme.size(), slash == std::string::npos ? std::string::npos : slash - scheme.size());
  out->target = slash == std::string::npos ? "/" : url.substr(slash);
  if (authority.empty() || authority.find('@') != std::string::npos) return invalid("the endpoint URL has no usable host");
  size_t colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']') == std::string::npos) {
    out->host = authority.substr(0, colon);
    out->port = authority.substr(colon + 1);
    if (out->port.empty() || out->port.size() > 5 || out->port.find_first_not_of("0123456789") != std::string::npos)
      return invalid("the endpoint URL has a malformed port");
  } else {
    out->host = authority;
    out->port = "80";
  }
  if (out->host.empty()) return invalid("the endpoint URL has no host");
  return Status::ok();
}

Status http_deliver(const HttpDelivery& d, std::chrono::milliseconds timeout) {
  HttpUrl url;
  if (Status s = parse_http_url(d.url, &url); !s) return s;
  http::request<http::string_body> req;
  req.version(11);
  req.method_string(d.method);
  req.target(url.target);
  req.set(http::field::host, url.host + ":" + url.port);
  req.set(http::field::user_agent, "espace-notifier");
  req.set(http::field::connection, "close");
  for (const std::string& h : d.headers) {
    size_t colon = h.find(':');
    if (colon == std::string::npos || colon == 0 || has_control(h))
      return invalid("a channel header is not of the form 'Name: value'");
    std::string name = h.substr(0, colon);
    std::string value = h.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    if (name.find(' ') != std::string::npos) return invalid("a channel header name holds a space");
    req.insert(name, value);
  }
  if (!d.body.empty()) {
    req.set(http::field::content_type, d.content_type);
    req.body() = d.body;
  }
  req.prepare_payload();

  TimedConnection conn(timeout);
  if (Status s = conn.connect(url.host, url.port); !s) return s;
  if (Status s = conn.run("sending the notification",
                          [&](auto handler) { http::async_write(conn.socket(), req, handler); });
      !s)
    return s;
  boost::beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024);  // the answer is not used; a receiver cannot make us hold much
  if (Status s = conn.run("reading the receiver's answer",
                          [&](auto handler) { http::async_read(conn.socket(), buffer, parser, handler); });
      !s)
    return s;
  unsigned status = parser.get().result_int();
  if (status < 200 || status > 299) return failed("the receiver answered HTTP " + std::to_string(status));
  return Status::ok();
}

bool is_plain_mail_address(const std::string& address) {
  if (address.empty() || address.size() > 254) return false;
  size_t at = address.find('@');
  if (at == std::string::npos || at == 0 || at + 1 == address.size() || address.find('@', at + 1) != std::string::npos)
    return false;
  for (unsigned char c : address)
    if (c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == '(' || c == ')' || c == ',' || c == ';' || c == '"' ||
        c == '\\')
      return false;
  return true;
}

namespace {

// RFC 5322 date of now, for the Date header.
std::string mail_date() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return buf;
}

class SmtpDialogue {
 public:
  explicit SmtpDialogue(TimedConnection& conn) : conn_(conn) {}

  // Reads one reply (continuation lines "250-..." up to "250 ...") and
  // checks its code is one of `accepted` (first digits compared).
  Status expect(std::initializer_list<int> accepted, const char* step) {
    for (int lines = 0; lines < 100; ++lines) {
      if (Status s = conn_.run(step, [&](auto handler) {
            asio::async_read_until(conn_.socket(), buffer_, "\r\n", handler);
          });
          !s)
        return s;
      std::istream in(&buffer_);
      std::string line;
      std::getline(in, line);
      if (line.size() < 3) return failed(std::string("malformed SMTP reply while ") + step);
      int code = std::atoi(line.substr(0, 3).c_str());
      if (line.size() > 3 && line[3] == '-') continue;
      for (int a : accepted)
        if (code == a) return Status::ok();
      return failed(std::string("the SMTP relay answered ") + std::to_string(code) + " while " + step);
    }
    return failed(std::string("the SMTP relay's reply is too long while ") + step);
  }

  Status send(const std::string& text, const char* step) {
    return conn_.run(step, [&](auto handler) { asio::async_write(conn_.socket(), asio::buffer(text), handler); });
  }

 private:
  TimedConnection& conn_;
  asio::streambuf buffer_{64 * 1024};
};

}  // namespace

Status smtp_send(const std::string& host, uint16_t port, const Mail& mail, std::chrono::milliseconds timeout) {
  if (host.empty()) return invalid("no SMTP relay is configured (serve --smtp-relay host:port)");
  if (!is_plain_mail_address(mail.from) || !is_plain_mail_address(mail.to))
    return invalid("a mail address is not a plain local@domain address");
  TimedConnection conn(timeout);
  if (Status s = conn.connect(host, std::to_string(port)); !s) return s;
  SmtpDialogue smtp(conn);
  std::string message = "From: <" + mail.from + ">\r\nTo: <" + mail.to + ">\r\nSubject: " + mail.subject +
                        "\r\nDate: " + mail_date() +
                        "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n";
  // Dot-stuffing (RFC 5321 4.5.2): a line starting with '.' gets another.
  std::string text = mail.text;
  size_t line_start = 0;
  while (line_start < text.size()) {
    if (text[line_start] == '.') message += '.';
    size_t end = text.find("\r\n", line_start);
    if (end == std::string::npos) {
      message += text.substr(line_start) + "\r\n";
      break;
    }
    message += text.substr(line_start, end + 2 - line_start);
    line_start = end + 2;
  }
  message += ".\r\n";
  Status s = smtp.expect({220}, "waiting for the greeting");
  if (s) s = smtp.send("EHLO espace\r\n", "sending EHLO");
  if (s) s = smtp.expect({250}, "greeting the relay");
  if (s) s = smtp.send("MAIL FROM:<" + mail.from + ">\r\n", "sending MAIL FROM");
  if (s) s = smtp.expect({250}, "giving the sender");
  if (s) s = smtp.send("RCPT TO:<" + mail.to + ">\r\n", "sending RCPT TO");
  if (s) s = smtp.expect({250, 251}, "giving the recipient");
  if (s) s = smtp.send("DATA\r\n", "sending DATA");
  if (s) s = smtp.expect({354}, "starting the message");
  if (s) s = smtp.send(message, "sending the message");
  if (s) s = smtp.expect({250}, "ending the message");
  if (!s) return s;
  // The relay has accepted the mail; a failed goodbye changes nothing.
  if (smtp.send("QUIT\r\n", "sending QUIT")) (void)smtp.expect({221}, "saying goodbye");
  return Status::ok();
}

}  // namespace espace::interactions::notify
