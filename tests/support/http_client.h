// A small blocking HTTP/1.1 client over POSIX sockets for integration tests:
// no Beast here, so the tests exercise the server as any outside client would.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace espace::testing {

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // First header of that name (case-insensitive), or "".
  std::string header(const std::string& name) const;
};

class HttpClient {
 public:
  HttpClient(std::string host, uint16_t port) : host_(std::move(host)), port_(port) {}
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request on the kept-alive connection (reconnecting when the
  // server closed it) and reads the whole response. Throws std::runtime_error
  // on connection failure or a malformed response.
  HttpResponse request(const std::string& method, const std::string& target, const std::string& body = "",
                       const std::vector<std::pair<std::string, std::string>>& headers = {});
  HttpResponse get(const std::string& target, const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    return request("GET", target, "", headers);
  }
  // Sends raw bytes and returns everything the server answers until it
  // closes or `timeout_ms` passes (for malformed-input tests).
  std::string raw(const std::string& bytes, int timeout_ms = 3000);
  void close();

 private:
  void connect();
  std::string host_;
  uint16_t port_;
  int fd_ = -1;
  std::string buffered_;
};

}  // namespace espace::testing
