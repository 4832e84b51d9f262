// The HTTP/1.1 server (Boost.Beast, optional TLS). Beast stays inside
// server.cpp: this header exposes plain types only.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "espace/fhir/status.h"
#include "espace/http/message.h"

namespace espace::net {

struct ServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 8080;  // 0 = ephemeral, see Server::port()
  int io_threads = 2;
  size_t max_body_bytes = 64u << 20;
  size_t max_header_bytes = 16u << 10;
  // The whole request, body included, must arrive within this (slowloris);
  // on a fresh connection the clock starts at accept.
  std::chrono::seconds request_timeout{30};
  // A keep-alive connection waiting for its next request closes after this.
  std::chrono::seconds idle_timeout{75};
  // The whole response must be written within this.
  std::chrono::seconds write_timeout{60};
  // stop() lets in-flight requests finish for at most this long.
  std::chrono::seconds shutdown_grace{10};
  size_t max_connections = 4096;
  // TLS (OpenSSL) when both are set: PEM certificate chain and private key.
  std::string tls_cert_file, tls_key_file;
};

struct AccessLogEntry {
  std::string_view method;  // empty when the request line could not be parsed
  std::string_view path;    // raw path without the query string: the query may hold patient data
  int status = 0;
  size_t bytes_in = 0;      // request bytes read (head and body)
  size_t bytes_out = 0;     // response bytes written
  int64_t duration_us = 0;  // from the request fully read to the response fully written
  std::string_view remote;  // peer address
};
using AccessLog = std::function<void(const AccessLogEntry&)>;

class Server {
 public:
  // `handler` is called on an I/O thread for every complete request; it should
  // hand the work to a worker pool and answer through the Responder from any
  // thread. A Responder dropped without being called answers 500. The
  // handler's tasks must be finished before the Server is destroyed.
  // `access_log` is called after each response is written, on an I/O thread
  // or on the thread that answered (plain TCP): it must be thread-safe.
  Server(ServerOptions options, http::Handler handler, AccessLog access_log = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Loads TLS material, binds and listens. Errors: bad address, port taken,
  // unreadable certificate or key.
  fhir::Status start();
  uint16_t port() const;  // the bound port, after start()

  // Runs the I/O threads (this one included); returns once stop() completed.
  void run();

  // Graceful stop, callable from any thread: stop accepting, close idle
  // keep-alive connections, let in-flight requests finish (at most
  // shutdown_grace), then run() returns.
  void stop();

  // SIGTERM / SIGINT -> stop(); SIGHUP -> on_hup (e.g. reload_tls). Call
  // after start() and before run().
  void stop_on_signals(std::function<void()> on_hup = {});

  // Reloads the certificate and key files; new connections use them, open
  // ones keep the old ones. The old material stays on failure.
  fhir::Status reload_tls();

  size_t connection_count() const;

  struct Impl;  // opaque; public only so server.cpp's session classes can name it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace espace::net
