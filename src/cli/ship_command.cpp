// `webtrap ship`: sends a probe's spool to the collector from a process of
// its own, for setups that run the shipper apart from the probe (for
// example with shipper.enabled: false and a separate service unit).
#include <signal.h>

#include <atomic>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/logging.h"
#include "common/error.h"
#include "probe/config.h"
#include "probe/hardening.h"
#include "shipper/shipper.h"
#include "shipper/shipper_process.h"

namespace webtrap::cli {
namespace {

struct ShipOptions {
  std::string config_path;
  std::string spool_dir;
  std::string log_level = "info";
  bool until_idle = false;
};

std::atomic<bool> g_ship_stop{false};

void onShipStop(int) {
  g_ship_stop.store(true);
}

int runShip(const ShipOptions& options) {
  setupLogging(options.log_level);
  probe::ProbeConfig config = probe::loadProbeConfig(options.config_path);
  if (!options.spool_dir.empty()) {
    config.spool.dir = options.spool_dir;
  }
  shipper::resolveShipperConfig(config.shipper);

  struct sigaction action {};
  action.sa_handler = onShipStop;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);
  if (config.seccomp) {
    probe::denyExec();
  }

  shipper::ShipperCounters counters;
  bool count_ahead = config.spool.on_full == probe::FullPolicy::kDeleteOldest;
  shipper::Shipper shipper(config.shipper, config.spool.dir, count_ahead, counters, g_ship_stop);
  shipper.run(options.until_idle);
  return 0;
}

}  // namespace

void addShipCommand(CLI::App& app, CommandRunner& runner) {
  auto options = std::make_shared<ShipOptions>();
  CLI::App* command =
      app.add_subcommand("ship", "Send a probe's spool to the collector (the shipper alone)");
  command->add_option("--config", options->config_path,
                      "The probe's YAML configuration file; its shipper and spool sections are "
                      "used")
      ->required()
      ->check(CLI::ExistingFile);
  command->add_option("--spool", options->spool_dir, "Spool folder, replacing spool.dir");
  command->add_option("--log-level", options->log_level, "trace, debug, info, warn or error");
  command->add_flag("--until-idle", options->until_idle,
                    "Exit once every whole record in the spool has been acknowledged");
  command->callback([options, &runner] { runner = [options] { return runShip(*options); }; });
}

}  // namespace webtrap::cli
