// Runs the shipper in its own processes next to `webtrap probe`.
//
// Why a separate process: once its ports are bound, the probe installs a
// seccomp filter with TSYNC that denies connect() and execve() to every
// thread of its process, and every process forked from it later inherits
// that filter. The shipper needs connect(), so it is forked before the
// filter goes in:
//
//   probe (seccomp: no connect, no execve)
//     └─ shipper supervisor (run_as user, seccomp: no execve)
//          └─ shipper worker: reads the spool, POSTs to the collector
//
// The supervisor starts its own process group, so the SIGINT of a Ctrl-C in
// a terminal reaches only the probe. The probe first spools the records of
// its inspection queue. Then it stops the shipper, whose worker sends those
// records in a final pass (stopAfterFinalPass).
//
// The supervisor only restarts the worker, with a backoff from 1s to 60s,
// when it exits or crashes. It exists because the probe itself cannot fork a
// new worker once its own filter is in place. Both children set
// PR_SET_PDEATHSIG, so they end when their parent ends, SIGKILL included.
//
// Metrics: the worker writes its counters (ShipperCounters, all lock-free
// std::atomic) into an anonymous MAP_SHARED mapping made before the fork, so
// the probe sees the same memory and survives worker restarts with the
// counts intact. The probe copies them into its MetricsRegistry once per
// second (ShipperMetrics::update), so its admin /metrics lags by up to 1s.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>

#include "shipper/shipper.h"

namespace webtrap::probe {
struct ProbeConfig;
}

namespace webtrap::shipper {

// How long the worker's final pass at the probe's stop may take. Below the
// supervisor's 5s grace before it kills the worker.
inline constexpr std::chrono::milliseconds kFinalPassLimit{3000};

class ShipperProcess {
 public:
  // Forks the supervisor, which drops privileges to config.run_as when
  // started as root. Call it while the process has a single thread and
  // before the probe's seccomp filter; config.shipper must have passed
  // resolveShipperConfig(). The supervisor closes `spool_lock_fd` (the
  // probe's lock on its spool folder, or -1) at once, so that a shipper left
  // running after a SIGKILL of its probe does not hold the lock. Returns in
  // the probe only.
  static std::unique_ptr<ShipperProcess> start(const probe::ProbeConfig& config,
                                               int spool_lock_fd);

  // Calls stop().
  ~ShipperProcess();

  ShipperProcess(const ShipperProcess&) = delete;
  ShipperProcess& operator=(const ShipperProcess&) = delete;

  const ShipperCounters& counters() const { return *counters_; }

  // Returns false, and logs once, when the supervisor has exited.
  bool checkRunning();

  // Stops the supervisor and its worker: SIGTERM, then SIGKILL after 10s.
  // Call stopAfterFinalPass() instead once the probe has spooled its last
  // records.
  void stop();

  // Like stop(), but the worker first sends the records left in the spool, for at
  // most kFinalPassLimit and without retries.
  void stopAfterFinalPass();

 private:
  ShipperProcess(pid_t supervisor, ShipperCounters* counters);

  pid_t supervisor_;
  ShipperCounters* counters_;  // in the shared mapping
  bool exited_ = false;
};

}  // namespace webtrap::shipper
