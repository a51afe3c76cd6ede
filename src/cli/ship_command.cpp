// `webtrap ship`: sends a probe's spool to the collector from a process of
// its own, for setups that run the shipper apart from the probe (for
// example with shipper.enabled: false and a separate service unit).
#include <signal.h>

#include <atomic>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/logging.h"
#include "common/admin_listener.h"
#include "common/config_environment.h"
#include "common/config_values.h"
#include "common/error.h"
#include "common/metrics.h"
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
  std::string metrics_listen = "127.0.0.1:9103";
  bool until_idle = false;
};

std::atomic<bool> g_ship_stop{false};

void onShipStop(int) {
  g_ship_stop.store(true);
}

// Serves the shipper's counters on /metrics and /healthz from a thread of
// its own while the shipper runs on the calling thread.
class ShipMetricsServer {
 public:
  ShipMetricsServer(const std::string& listen, const shipper::ShipperCounters& counters)
      : metrics_(registry_) {
    config_values::HostPort parsed =
        config_values::parseHostPort(listen, "--metrics-listen", 9103, "127.0.0.1");
    listener_ = std::make_shared<AdminListener>(
        openAcceptor(io_, parsed.host, parsed.port, "--metrics-listen"), registry_,
        [this, &counters] { metrics_.update(counters); });
    spdlog::info("ship: serving /metrics and /healthz address={} port={}", parsed.host,
                 listener_->port());
    listener_->start();
    thread_ = std::thread([this] { io_.run(); });
  }

  ~ShipMetricsServer() {
    io_.stop();
    thread_.join();
    listener_->close();
    spdlog::info("ship: metrics listener stopped");
  }

  ShipMetricsServer(const ShipMetricsServer&) = delete;
  ShipMetricsServer& operator=(const ShipMetricsServer&) = delete;

 private:
  boost::asio::io_context io_;
  MetricsRegistry registry_;
  shipper::ShipperMetrics metrics_;
  std::shared_ptr<AdminListener> listener_;
  std::thread thread_;
};

int runShip(const ShipOptions& options) {
  setupLogging(options.log_level);
  probe::ProbeConfig config =
      probe::loadProbeConfig(options.config_path, config_environment::processEnvironment());
  logEnvironmentKeys("ship", config.environment_keys);
  if (!options.spool_dir.empty()) {
    for (const auto& item :
         config_environment::readOverrides(config_environment::processEnvironment())) {
      if (item.key == "spool.dir") {
        spdlog::warn("ship: spool.dir from {} is replaced by --spool on the command line; "
                     "unset the variable or leave out the option",
                     item.variable);
      }
    }
    config.spool.dir = options.spool_dir;
  }
  try {
    shipper::resolveShipperConfig(config.shipper);
  } catch (const ConfigError& error) {
    // The shipper keys are checked after loading, so the variables that set
    // them are named here.
    throw config_environment::nameVariables(
        error, config_environment::readOverrides(config_environment::processEnvironment()));
  }

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
  // The shipper takes the spool's lock first, so that a second shipper on
  // the same spool stops before it binds the metrics address.
  shipper::Shipper shipper(config.shipper, config.spool.dir, count_ahead, counters, g_ship_stop);
  std::unique_ptr<ShipMetricsServer> metrics_server;
  if (options.metrics_listen != "off" && !options.metrics_listen.empty()) {
    metrics_server = std::make_unique<ShipMetricsServer>(options.metrics_listen, counters);
  }
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
  command->add_option("--metrics-listen", options->metrics_listen,
                      "ADDR:PORT, [V6]:PORT or PORT serving GET /metrics (Prometheus text) and "
                      "GET /healthz; port 0 picks a free port; off turns it off")
      ->capture_default_str();
  command->add_flag("--until-idle", options->until_idle,
                    "Exit once every whole record in the spool has been acknowledged");
  command->callback([options, &runner] { runner = [options] { return runShip(*options); }; });
}

}  // namespace webtrap::cli
