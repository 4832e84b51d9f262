#include "http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <strings.h>

namespace espace::testing {

std::string HttpResponse::header(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (strcasecmp(k.c_str(), name.c_str()) == 0) return v;
  return {};
}

HttpClient::~HttpClient() { close(); }

void HttpClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buffered_.clear();
}

void HttpClient::connect() {
  close();
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd_ < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  ::inet_pton(AF_INET, host_.c_str(), &addr.sin_addr);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close();
    throw std::runtime_error("connect failed");
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

namespace {

void send_all(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) throw std::runtime_error("send failed");
    sent += static_cast<size_t>(n);
  }
}

// Reads more bytes into buf; false on EOF.
bool read_more(int fd, std::string& buf, int timeout_ms = 30000) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) throw std::runtime_error("timed out waiting for the server");
  char tmp[65536];
  ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
  if (n <= 0) return false;
  buf.append(tmp, static_cast<size_t>(n));
  return true;
}

}  // namespace

HttpResponse HttpClient::request(const std::string& method, const std::string& target, const std::string& body,
                                 const std::vector<std::pair<std::string, std::string>>& headers) {
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: " + host_ + ":" + std::to_string(port_) + "\r\n";
  bool has_content_type = false;
  for (const auto& [k, v] : headers) {
    req += k + ": " + v + "\r\n";
    if (strcasecmp(k.c_str(), "Content-Type") == 0) has_content_type = true;
  }
  if (!body.empty() && !has_content_type) req += "Content-Type: application/fhir+json\r\n";
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH")
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n";
  req += body;

  for (int attempt = 0; attempt < 2; ++attempt) {
    if (fd_ < 0) connect();
    try {
      send_all(fd_, req);
      // Head.
      size_t head_end;
      while ((head_end = buffered_.find("\r\n\r\n")) == std::string::npos)
        if (!read_more(fd_, buffered_)) throw std::runtime_error("closed before the response head");
      std::string head = buffered_.substr(0, head_end);
      buffered_.erase(0, head_end + 4);
      HttpResponse r;
      size_t line_end = head.find("\r\n");
      std::string status_line = head.substr(0, line_end);
      if (status_line.rfind("HTTP/1.1 ", 0) != 0) throw std::runtime_error("bad status line: " + status_line);
      r.status = std::stoi(status_line.substr(9, 3));
      size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
      while (pos < head.size()) {
        size_t e = head.find("\r\n", pos);
        std::string line = head.substr(pos, e == std::string::npos ? std::string::npos : e - pos);
        size_t colon = line.find(':');
        if (colon != std::string::npos) {
          std::string v = line.substr(colon + 1);
          while (!v.empty() && v.front() == ' ') v.erase(0, 1);
          r.headers.emplace_back(line.substr(0, colon), v);
        }
        if (e == std::string::npos) break;
        pos = e + 2;
      }
      // Body: Content-Length or chunked (no body for 204/304 or HEAD).
      if (method != "HEAD" && r.status != 204 && r.status != 304) {
        std::string te = r.header("Transfer-Encoding");
        if (strcasecmp(te.c_str(), "chunked") == 0) {
          while (true) {
            size_t le;
            while ((le = buffered_.find("\r\n")) == std::string::npos)
              if (!read_more(fd_, buffered_)) throw std::runtime_error("closed in chunk size");
            size_t size = std::stoul(buffered_.substr(0, le), nullptr, 16);
            buffered_.erase(0, le + 2);
            while (buffered_.size() < size + 2)
              if (!read_more(fd_, buffered_)) throw std::runtime_error("closed in chunk");
            r.body.append(buffered_, 0, size);
            buffered_.erase(0, size + 2);
            if (size == 0) break;
          }
        } else {
          std::string cl = r.header("Content-Length");
          size_t len = cl.empty() ? 0 : std::stoul(cl);
          while (buffered_.size() < len)
            if (!read_more(fd_, buffered_)) throw std::runtime_error("closed in body");
          r.body = buffered_.substr(0, len);
          buffered_.erase(0, len);
        }
      }
      if (strcasecmp(r.header("Connection").c_str(), "close") == 0) close();
      return r;
    } catch (const std::runtime_error&) {
      // A kept-alive connection the server already closed: retry once on a new one.
      bool fresh = attempt == 0 && buffered_.empty();
      close();
      if (!fresh) throw;
    }
  }
  throw std::runtime_error("unreachable");
}

std::string HttpClient::raw(const std::string& bytes, int timeout_ms) {
  connect();
  send_all(fd_, bytes);
  std::string out;
  try {
    while (read_more(fd_, out, timeout_ms)) {
    }
  } catch (const std::runtime_error&) {
    // Timed out: return what arrived.
  }
  close();
  return out;
}

}  // namespace espace::testing
