#include "shipper/shipper_process.h"

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "probe/config.h"
#include "probe/hardening.h"

namespace webtrap::shipper {
namespace {

constexpr auto kRestartInitial = std::chrono::seconds(1);
constexpr auto kRestartMax = std::chrono::seconds(60);
// A worker that ran this long counts as healthy, so the backoff starts over.
constexpr auto kHealthyRun = std::chrono::seconds(60);
constexpr auto kStopGrace = std::chrono::seconds(5);
static_assert(kFinalPassLimit < kStopGrace, "the final pass must end before the worker is killed");

// Set by SIGTERM or SIGINT in the supervisor and the worker.
std::atomic<bool> g_stop{false};

void onStopSignal(int) {
  g_stop.store(true);
}

void installStopHandlers() {
  struct sigaction action {};
  action.sa_handler = onStopSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: waitpid() returns EINTR on a stop
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

// Ends this process together with `parent`. Returns false when the parent
// is already gone.
bool followParent(pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
  return getppid() == parent;
}

// Switches to the probe's run_as user, as the probe does after binding.
// The spool folder is created and handed to that user first, because the
// probe creates it later, after this fork.
void dropPrivileges(const probe::ProbeConfig& config) {
  if (geteuid() != 0) {
    return;
  }
  std::string user = config.run_as.empty() ? "nobody" : config.run_as;
  struct passwd* entry = getpwnam(user.c_str());
  if (entry == nullptr || entry->pw_uid == 0) {
    throw ConfigError(fmt::format("run_as: user \"{}\" not found or root; name an existing "
                                  "unprivileged user",
                                  user));
  }
  std::error_code error;
  std::filesystem::create_directories(config.spool.dir, error);
  (void)::chown(config.spool.dir.c_str(), entry->pw_uid, entry->pw_gid);
  for (const char* name :
       {"shipped.offset", "shipped.fingerprint", "shipper.lock", "shipper-rejected.ndjson"}) {
    (void)::chown((config.spool.dir / name).c_str(), entry->pw_uid, entry->pw_gid);
  }
  if (setgroups(0, nullptr) != 0 || setgid(entry->pw_gid) != 0 || setuid(entry->pw_uid) != 0) {
    throw ConfigError(fmt::format("run_as: switching the shipper to user \"{}\" failed: {}", user,
                                  std::strerror(errno)));
  }
  if (setuid(0) == 0) {
    throw ConfigError("run_as: the shipper could regain root after dropping it; stopping");
  }
}

// The worker: ships until SIGTERM. Returns the exit code.
int runWorker(const probe::ProbeConfig& config, ShipperCounters& counters) {
  try {
    bool count_ahead = config.spool.on_full == probe::FullPolicy::kDeleteOldest;
    Shipper shipper(config.shipper, config.spool.dir, count_ahead, counters, g_stop);
    shipper.run();
    return 0;
  } catch (const std::exception& error) {
    spdlog::error("shipper: worker failed: {}", error.what());
    return 1;
  }
}

// Waits for `child`. On a stop request, forwards SIGTERM and keeps waiting,
// then SIGKILLs it after kStopGrace.
int waitForChild(pid_t child) {
  bool forwarded = false;
  auto deadline = std::chrono::steady_clock::time_point::max();
  while (true) {
    int status = 0;
    pid_t done = waitpid(child, &status, forwarded ? WNOHANG : 0);
    if (done == child) {
      return status;
    }
    if (done < 0 && errno != EINTR) {
      return 0;
    }
    if (g_stop.load() && !forwarded) {
      ::kill(child, SIGTERM);
      forwarded = true;
      deadline = std::chrono::steady_clock::now() + kStopGrace;
    }
    if (forwarded) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(child, SIGKILL);
        forwarded = false;  // wait without WNOHANG for the killed child
        continue;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

std::string describeStatus(int status) {
  if (WIFEXITED(status)) {
    return fmt::format("exit_code={}", WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return fmt::format("signal={}", WTERMSIG(status));
  }
  return fmt::format("status={}", status);
}

// The supervisor: starts the worker and restarts it until SIGTERM.
[[noreturn]] void runSupervisor(const probe::ProbeConfig& config, ShipperCounters& counters,
                                pid_t probe) {
  installStopHandlers();
  int code = 0;
  try {
    dropPrivileges(config);
    if (!followParent(probe)) {
      _exit(0);
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
      throw ConfigError(fmt::format("shipper: prctl(PR_SET_NO_NEW_PRIVS) failed: {}",
                                    std::strerror(errno)));
    }
    if (config.seccomp) {
      probe::denyExec();
    }
    spdlog::info("shipper: supervisor started pid={} uid={}", getpid(), getuid());

    auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(kRestartInitial);
    pid_t supervisor = getpid();
    while (!g_stop.load()) {
      auto started = std::chrono::steady_clock::now();
      pid_t worker = fork();
      if (worker < 0) {
        spdlog::error("shipper: fork of the worker failed: {}", std::strerror(errno));
      } else if (worker == 0) {
        if (!followParent(supervisor)) {
          _exit(0);
        }
        _exit(runWorker(config, counters));
      } else {
        int status = waitForChild(worker);
        if (g_stop.load()) {
          break;
        }
        if (std::chrono::steady_clock::now() - started >= kHealthyRun) {
          delay = std::chrono::duration_cast<std::chrono::milliseconds>(kRestartInitial);
        }
        spdlog::error("shipper: worker pid={} ended {}; restarting in {}ms", worker,
                      describeStatus(status), delay.count());
      }
      auto until = std::chrono::steady_clock::now() + delay;
      while (!g_stop.load() && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      delay = std::min(delay * 2,
                       std::chrono::duration_cast<std::chrono::milliseconds>(kRestartMax));
    }
    spdlog::info("shipper: supervisor stopped");
  } catch (const std::exception& error) {
    spdlog::error("shipper: supervisor failed: {}; records stay in the spool", error.what());
    code = 1;
  }
  spdlog::default_logger()->flush();
  _exit(code);
}

}  // namespace

std::unique_ptr<ShipperProcess> ShipperProcess::start(const probe::ProbeConfig& config,
                                                     int spool_lock_fd) {
  void* memory = mmap(nullptr, sizeof(ShipperCounters), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) {
    throw std::runtime_error(fmt::format("shipper: mmap of the shared counters failed: {}",
                                         std::strerror(errno)));
  }
  auto* counters = new (memory) ShipperCounters();

  spdlog::default_logger()->flush();
  pid_t probe = getpid();
  pid_t supervisor = fork();
  if (supervisor < 0) {
    int error = errno;
    munmap(memory, sizeof(ShipperCounters));
    throw std::runtime_error(fmt::format("shipper: fork failed: {}", std::strerror(error)));
  }
  if (supervisor == 0) {
    // A flock(2) lock lasts while any copy of its descriptor is open.
    if (spool_lock_fd >= 0) {
      ::close(spool_lock_fd);
    }
    // Its own process group: a terminal's Ctrl-C then stops only the probe,
    // which stops the shipper after spooling its last records. The group is
    // in the background of the probe's terminal, where a terminal with
    // `stty tostop` would stop it at its first log line with SIGTTOU;
    // ignoring that signal lets the write go through.
    setpgid(0, 0);
    signal(SIGTTOU, SIG_IGN);
    runSupervisor(config, *counters, probe);
  }
  // Also set here, so that a Ctrl-C right after the fork, before the child
  // runs, finds the supervisor already in its own group.
  setpgid(supervisor, supervisor);
  return std::unique_ptr<ShipperProcess>(new ShipperProcess(supervisor, counters));
}

ShipperProcess::ShipperProcess(pid_t supervisor, ShipperCounters* counters)
    : supervisor_(supervisor), counters_(counters) {}

ShipperProcess::~ShipperProcess() {
  stop();
  // The counters stay mapped: the probe's metrics may still read them.
}

bool ShipperProcess::checkRunning() {
  if (exited_) {
    return false;
  }
  int status = 0;
  if (waitpid(supervisor_, &status, WNOHANG) == supervisor_) {
    exited_ = true;
    // A clean exit means the supervisor was told to stop (a SIGTERM sent to
    // the whole process group reaches it too); anything else is a failure.
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    spdlog::log(clean ? spdlog::level::info : spdlog::level::err,
                "shipper: supervisor pid={} ended {}; records stay in the spool until the "
                "probe restarts or `webtrap ship` runs",
                supervisor_, describeStatus(status));
    return false;
  }
  return true;
}

void ShipperProcess::stopAfterFinalPass() {
  if (!exited_) {
    counters_->final_pass_ms.store(static_cast<std::uint32_t>(kFinalPassLimit.count()));
  }
  stop();
}

void ShipperProcess::stop() {
  if (exited_) {
    return;
  }
  ::kill(supervisor_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + kStopGrace * 2;
  int status = 0;
  while (waitpid(supervisor_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      spdlog::warn("shipper: supervisor pid={} did not stop within {}s; killing it", supervisor_,
                    std::chrono::duration_cast<std::chrono::seconds>(kStopGrace * 2).count());
      ::kill(supervisor_, SIGKILL);
      waitpid(supervisor_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  exited_ = true;
}

}  // namespace webtrap::shipper
