// Starts the real `espace serve` binary on an ephemeral loopback port with a
// fresh database, for integration tests.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace espace::testing {

class ServerProcess {
 public:
  // Starts `espace serve --port 0 --auth none` on a new temporary database
  // (or on `db` when given) plus `extra_args`; waits until it listens.
  // `--relaxed-profiles` is added unless extra_args holds "--strict-profiles"
  // (understood here, not passed on): then the French profiles are required.
  explicit ServerProcess(std::vector<std::string> extra_args = {}, std::string db = {});
  ~ServerProcess();  // SIGTERM, wait, remove the temporary directory
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  uint16_t port() const { return port_; }
  const std::string& db_path() const { return db_; }
  const std::string& dir() const { return dir_; }
  // The server's stderr so far (access log and messages).
  std::string log() const;
  // Sends a signal and waits for the exit; returns the wait status.
  int stop(int signal_number);
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }  // for signals that do not stop it (SIGHUP)

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string dir_, db_, log_path_;
  bool own_dir_ = true;
};

// Runs the espace binary with arguments, returns its exit status; stdout and
// stderr are captured into *out / *err when given.
int run_espace(const std::vector<std::string>& args, std::string* out = nullptr, std::string* err = nullptr);

}  // namespace espace::testing
