#include "tests/tools/sim_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace echelon {
namespace sim {

std::string RunfilesPath(const std::string& workspace_relative) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir != nullptr ? srcdir : ".", "/",
                      workspace != nullptr ? workspace : "echelon", "/",
                      workspace_relative);
}

std::string SimBinaryPath() {
  if (const char* bin = std::getenv("UPSTREAM_SIM_BIN")) return bin;
  return RunfilesPath("tools/upstream_sim/upstream_sim");
}

absl::StatusOr<std::unique_ptr<SimProcess>> SimProcess::Start(
    const Options& options) {
  const bool sim = options.binary.empty();
  const std::string binary = sim ? SimBinaryPath() : options.binary;
  if (access(binary.c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat("binary not found at ", binary));
  }
  std::vector<std::string> args = {binary};
  if (sim) {
    args.push_back("--port=0");
    args.push_back("--host=127.0.0.1");
    if (!options.scenario.empty()) {
      args.push_back(absl::StrCat("--scenario=", options.scenario));
    }
  }
  args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(fds[1]);

  // Read stdout until the "LISTENING <port>" line.
  std::string line;
  int port = -1;
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(options.startup_timeout_ms);
  while (port < 0) {
    int left =
        static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                             deadline - std::chrono::steady_clock::now())
                             .count());
    if (left <= 0) break;
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, left) <= 0) continue;
    char c;
    ssize_t n = read(fds[0], &c, 1);
    if (n <= 0) break;  // the process exited
    if (c != '\n') {
      line.push_back(c);
      continue;
    }
    const std::string& prefix = options.listening_prefix;
    if (line.rfind(prefix, 0) == 0) {
      port = std::atoi(line.c_str() + prefix.size());
    }
    line.clear();
  }
  close(fds[0]);
  std::unique_ptr<SimProcess> process(new SimProcess(pid, port));
  if (port <= 0) {
    return absl::InternalError(absl::StrCat(
        binary, " did not print '", options.listening_prefix, "<port>'"));
  }
  return process;
}

std::string SimProcess::base_url() const {
  return absl::StrCat("http://127.0.0.1:", port_);
}

int SimProcess::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  for (int i = 0; i < 500; ++i) {
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return -1;
}

SimProcess::~SimProcess() { Stop(); }

}  // namespace sim
}  // namespace echelon
