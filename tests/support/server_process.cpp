#include "server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace espace::testing {

namespace {
std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string make_temp_dir() {
  char tmpl[] = "/tmp/espace-test-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}
}  // namespace

ServerProcess::ServerProcess(std::vector<std::string> extra_args, std::string db) {
  dir_ = make_temp_dir();
  db_ = db.empty() ? dir_ + "/espace.db" : db;
  log_path_ = dir_ + "/server.log";
  std::string port_file = dir_ + "/port";
  std::vector<std::string> args = {ESPACE_BINARY, "serve", "--port", "0", "--port-file", port_file, "--db", db_,
                                   "--auth", "none"};
  // Generic tests run plain FHIR resources: the French profiles are lifted
  // unless the test asks for them with the harness-only "--strict-profiles".
  bool strict = false;
  for (auto& a : extra_args) {
    if (a == "--strict-profiles") strict = true;
    else args.push_back(a);
  }
  if (!strict) args.push_back("--relaxed-profiles");
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    std::string text = slurp(port_file);
    if (!text.empty()) {
      port_ = static_cast<uint16_t>(std::stoi(text));
      return;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("espace serve exited at start-up: " + slurp(log_path_));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop(SIGKILL);
  throw std::runtime_error("espace serve did not start within 30 s: " + slurp(log_path_));
}

std::string ServerProcess::log() const { return slurp(log_path_); }

int ServerProcess::stop(int signal_number) {
  if (pid_ <= 0) return -1;
  kill(pid_, signal_number);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    // Bounded wait, then force.
    for (int i = 0; i < 500; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (pid_ > 0) stop(SIGKILL);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

int run_espace(const std::vector<std::string>& args, std::string* out, std::string* err) {
  char out_tmpl[] = "/tmp/espace-out-XXXXXX";
  char err_tmpl[] = "/tmp/espace-err-XXXXXX";
  int out_fd = mkstemp(out_tmpl);
  int err_fd = mkstemp(err_tmpl);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    std::vector<std::string> full = {ESPACE_BINARY};
    for (auto& a : args) full.push_back(a);
    std::vector<char*> argv;
    for (auto& a : full) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ::close(out_fd);
  ::close(err_fd);
  if (out) *out = slurp(out_tmpl);
  if (err) *err = slurp(err_tmpl);
  unlink(out_tmpl);
  unlink(err_tmpl);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace espace::testing
