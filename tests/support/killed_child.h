// A child process killed with SIGKILL mid-work, for durability tests: the
// child reports each acknowledged write as a line on a pipe, and the parent
// kills it once enough lines have arrived. Every line read (those already in
// the pipe at the kill included) was acknowledged before the kill.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace espace::testing {

struct KilledChild {
  std::vector<std::string> lines;  // reported lines, without their newline
  bool enough = false;             // kill_after lines arrived (not a 30 s timeout or an early exit)
  bool killed = false;             // it died of our SIGKILL, not of anything else
};

// Runs `child(report_fd)` in a forked process (it must end with _exit and
// write whole lines shorter than PIPE_BUF), kills it after `kill_after`
// lines plus a random delay of up to 3 ms when `jitter` is given.
inline KilledChild run_until_killed(const std::function<void(int report_fd)>& child, long kill_after,
                                    std::mt19937* jitter) {
  KilledChild out;
  int fds[2];
  if (pipe(fds) != 0) return out;
  pid_t pid = fork();
  if (pid < 0) return out;
  if (pid == 0) {
    close(fds[0]);
    child(fds[1]);
    _exit(0);
  }
  close(fds[1]);
  std::string pending;
  // Reads what is there within timeout_ms; false at a timeout or the end.
  auto read_some = [&](int timeout_ms) {
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[4096];
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) return false;
    pending.append(buf, static_cast<size_t>(n));
    for (size_t at; (at = pending.find('\n')) != std::string::npos; pending.erase(0, at + 1))
      out.lines.push_back(pending.substr(0, at));
    return true;
  };
  while (static_cast<long>(out.lines.size()) < kill_after)
    if (!read_some(30000)) break;
  out.enough = static_cast<long>(out.lines.size()) >= kill_after;
  if (jitter) std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 3000)(*jitter)));
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  while (read_some(0)) {
  }
  close(fds[0]);
  out.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  return out;
}

}  // namespace espace::testing
