// `webtrap probe`: runs a probe until SIGINT or SIGTERM.
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <fstream>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/logging.h"
#include "common/config_environment.h"
#include "common/error.h"
#include "probe/baits.h"
#include "probe/config.h"
#include "probe/hardening.h"
#include "probe/inspector.h"
#include "probe/journal.h"
#include "probe/persona.h"
#include "probe/pipeline.h"
#include "probe/server.h"
#include "probe/spool.h"
#include "probe/tls.h"
#include "shipper/shipper_process.h"

namespace webtrap::cli {
namespace {

struct ProbeOptions {
  std::string config_path;
  std::vector<std::string> listen;
  std::vector<std::string> listen_tls;
  std::vector<std::string> listen_bait;
  std::string spool_dir;
  std::string state_dir;
  std::string sensor_id;
  std::string admin_listen;
  std::string ports_file;
  int paranoia_level = 0;
  std::string log_level = "info";
  bool check_only = false;
  bool print_reference = false;
};

// Listeners when neither the configuration nor the command line names any:
// everything on loopback, so a first run exposes nothing.
void addDefaultListeners(probe::ProbeConfig& config) {
  auto add = [&](const std::string& address, const std::string& name, bool tls, bool bait) {
    auto listener = probe::parseListenAddress(address, "default listener");
    listener.name = name;
    listener.tls = tls;
    listener.bait = bait;
    config.listeners.push_back(listener);
  };
  add("127.0.0.1:8080", "http", false, false);
  add("[::1]:8080", "http-v6", false, false);
  add("127.0.0.1:8443", "https", true, false);
  add("127.0.0.1:8888", "bait-8888", false, true);
}

void applyOverrides(const ProbeOptions& options, probe::ProbeConfig& config) {
  bool replace = !options.listen.empty() || !options.listen_tls.empty() ||
                 !options.listen_bait.empty();
  if (replace) {
    config.listeners.clear();
  }
  auto add = [&](const std::string& text, const char* flag, bool tls, bool bait) {
    auto listener = probe::parseListenAddress(text, flag);
    listener.tls = tls;
    listener.bait = bait;
    listener.name = fmt::format("{}{}", bait ? "bait-" : (tls ? "https-" : "http-"),
                                config.listeners.size());
    config.listeners.push_back(listener);
  };
  for (const auto& text : options.listen) add(text, "--listen", false, false);
  for (const auto& text : options.listen_tls) add(text, "--listen-tls", true, false);
  for (const auto& text : options.listen_bait) add(text, "--listen-bait", false, true);
  if (config.listeners.empty()) {
    addDefaultListeners(config);
  }

  if (!options.spool_dir.empty()) config.spool.dir = options.spool_dir;
  if (!options.state_dir.empty()) config.state_dir = options.state_dir;
  if (!options.sensor_id.empty()) config.sensor_id = options.sensor_id;
  if (!options.admin_listen.empty()) {
    config.admin_listen = options.admin_listen == "off" ? "" : options.admin_listen;
    if (!config.admin_listen.empty()) {
      probe::parseListenAddress(config.admin_listen, "--admin-listen");
    }
  }
  if (options.paranoia_level != 0) config.inspector.paranoia_level = options.paranoia_level;
}

// Logs a warning for each key that a WEBTRAP__ variable set and a
// command-line option replaces, so the variable is not dropped unnoticed.
void warnReplacedVariables(const ProbeOptions& options) {
  bool listen = !options.listen.empty() || !options.listen_tls.empty() ||
                !options.listen_bait.empty();
  const std::vector<std::pair<std::string, const char*>> replaced = {
      {listen ? "listeners" : "", "--listen"},
      {options.spool_dir.empty() ? "" : "spool.dir", "--spool"},
      {options.state_dir.empty() ? "" : "state_dir", "--state-dir"},
      {options.sensor_id.empty() ? "" : "sensor.id", "--sensor-id"},
      {options.admin_listen.empty() ? "" : "admin.listen", "--admin-listen"},
      {options.paranoia_level == 0 ? "" : "modsecurity.paranoia_level", "--paranoia-level"},
  };
  for (const auto& item :
       config_environment::readOverrides(config_environment::processEnvironment())) {
    for (const auto& [key, option] : replaced) {
      if (item.key == key) {
        spdlog::warn("probe: {} from {} is replaced by {} on the command line; unset the "
                     "variable or leave out the option",
                     item.key, item.variable, option);
      }
    }
  }
}

// Switches to an unprivileged user after the ports are bound. The spool and
// state folders are handed to that user so it can go on writing them.
void dropPrivileges(const probe::ProbeConfig& config) {
  if (geteuid() != 0) {
    return;
  }
  std::string user = config.run_as.empty() ? "nobody" : config.run_as;
  struct passwd* entry = getpwnam(user.c_str());
  if (entry == nullptr) {
    throw ConfigError(fmt::format("run_as: user \"{}\" not found; create it or name an existing "
                                  "unprivileged user",
                                  user));
  }
  if (entry->pw_uid == 0) {
    throw ConfigError(fmt::format("run_as: user \"{}\" is root; name an unprivileged user", user));
  }
  for (const auto& dir : {config.spool.dir, config.state_dir}) {
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      (void)::chown(it->path().c_str(), entry->pw_uid, entry->pw_gid);
    }
    (void)::chown(dir.c_str(), entry->pw_uid, entry->pw_gid);
  }

  if (setgroups(0, nullptr) != 0 || setgid(entry->pw_gid) != 0 || setuid(entry->pw_uid) != 0) {
    throw ConfigError(fmt::format("run_as: switching to user \"{}\" failed: {}", user,
                                  std::strerror(errno)));
  }
  // The spool was checked as root. A parent folder such as one made by
  // mktemp (mode 0700) can hide it from the new user, so check again.
  int probe_fd = ::open(config.spool.dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  if (probe_fd < 0) {
    throw ConfigError(fmt::format("spool.dir: user \"{}\" cannot write \"{}\" ({}); make the "
                                  "folder and every folder above it accessible to that user, or "
                                  "set run_as",
                                  user, config.spool.dir.string(), std::strerror(errno)));
  }
  ::close(probe_fd);

  if (setuid(0) == 0) {
    throw ConfigError("run_as: the process could regain root after dropping it; refusing to run");
  }
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  spdlog::info("probe: switched to user={} uid={}", user, entry->pw_uid);
}

void writePortsFile(const std::string& path, const std::map<std::string, std::uint16_t>& ports) {
  std::string json = "{";
  for (const auto& [name, port] : ports) {
    json += fmt::format("{}\"{}\": {}", json.size() > 1 ? ", " : "", name, port);
  }
  json += "}\n";
  std::string temporary = path + ".tmp";
  std::ofstream(temporary) << json;
  std::filesystem::rename(temporary, path);
}

int runProbe(const ProbeOptions& options) {
  setupLogging(options.log_level);
  if (options.print_reference) {
    fmt::print("{}", probe::configurationReference());
    return 0;
  }

  probe::ProbeConfig config =
      probe::loadProbeConfig(options.config_path, config_environment::processEnvironment());
  logEnvironmentKeys("probe", config.environment_keys);
  warnReplacedVariables(options);
  applyOverrides(options, config);

  // A second probe on the same spool.dir stops here, before anything
  // touches the spool. Its shipper, which would hand the folder to its own
  // run_as user, is not forked yet.
  std::unique_ptr<FileHandle> spool_lock = probe::lockSpoolDirectory(config.spool.dir);

  // The shipper is forked next, while this process has one thread and no
  // seccomp filter yet, because the filter below denies connect().
  std::unique_ptr<shipper::ShipperProcess> shipper_process;
  if (config.shipper.isEnabled()) {
    try {
      shipper::resolveShipperConfig(config.shipper);
    } catch (const ConfigError& error) {
      // The shipper keys are checked after loading, so the variables that set
      // them are named here.
      throw config_environment::nameVariables(
          error, config_environment::readOverrides(config_environment::processEnvironment()));
    }
    shipper_process = shipper::ShipperProcess::start(config, spool_lock->fd);
  }

  MetricsRegistry metrics;
  std::optional<shipper::ShipperMetrics> shipper_metrics;
  if (shipper_process) {
    shipper_metrics.emplace(metrics);
  }
  spdlog::info("probe: starting version={} sensor={} persona={} paranoia_level={} listeners={}",
               WEBTRAP_VERSION, config.sensor_id, config.persona,
               config.inspector.paranoia_level, config.listeners.size());

  // Personas, one per name used by a listener.
  std::map<std::string, std::unique_ptr<probe::Persona>> loaded;
  probe::ProbeServices services;
  for (const auto& listener : config.listeners) {
    std::string name = listener.persona.empty() ? config.persona : listener.persona;
    if (!loaded.contains(name)) {
      loaded[name] = probe::Persona::load(config.personas_dir / name);
    }
    services.personas[listener.name] = loaded[name].get();
  }

  std::filesystem::create_directories(config.state_dir);
  probe::Baits baits(probe::BaitsConfig{config.state_dir / "bait-secret"}, metrics);
  probe::Inspector inspector(config.inspector, metrics);
  probe::Spool spool(config.spool, metrics);
  // Requests that a SIGKILL left in the last run's inspection queue go to
  // the spool before any new request, also when the journal is now off.
  // Recovery inspects them with this inspector, as the workers would have.
  // At a kill, at most queue_limit + workers + max_connections requests wait
  // for inspection (queued, being inspected, or between the journal write
  // and the queue). Recovery inspects at most that many entries, and only
  // during pipeline.recovery_timeout, so the start time is bounded. It
  // records the rest uninspected.
  // NOTE: entries of records already spooled whose done id was not yet
  // written (up to one fsync_interval of shed requests) count against it.
  // A journal folder that cannot be used does not stop the probe: it runs
  // without the journal, logs the error and sets webtrap_journal_enabled to 0.
  std::filesystem::path journal_dir = probe::journalDirectory(config.spool.dir);
  std::unique_ptr<FileHandle> journal_lock;
  std::optional<probe::InspectionJournal> journal;
  std::uint64_t journal_records_recovered = 0;
  Gauge& journal_enabled = metrics.gauge(
      "webtrap_journal_enabled",
      "1 while the inspection journal protects queued requests, 0 when it is off or failed.");
  try {
    journal_lock = probe::lockJournalDirectory(journal_dir);
    probe::JournalConfig writer_config;
    probe::RecoveryOptions recovery = probe::inspectingRecovery(
        inspector,
        std::uint64_t{config.pipeline.queue_limit} + config.pipeline.workers +
            config.limits.max_connections,
        probe::maxRecoveryFileBytes(writer_config.file_bytes, config.body_capture_bytes));
    // As many threads as the pipeline's inspection workers, which the
    // probe does not start before recovery ends.
    recovery.inspect_threads = config.pipeline.workers;
    recovery.max_inspection_time =
        std::chrono::milliseconds(config.pipeline.recovery_timeout_ms);
    journal_records_recovered =
        probe::recoverJournal(journal_dir, spool, metrics, recovery).recovered;
    if (config.pipeline.journal) {
      probe::JournalConfig journal_config;
      journal_config.dir = journal_dir;
      journal_config.fsync = config.spool.fsync;
      journal_config.fsync_interval_ms = config.spool.fsync_interval_ms;
      journal.emplace(journal_config, spool, metrics);
      journal_enabled.set(1);
    }
  } catch (const ConfigError& error) {
    spdlog::error("journal: {}. The probe runs without the inspection journal, so a SIGKILL "
                  "loses the requests still queued for inspection",
                  error.what());
  }

  probe::RecordMeta meta;
  meta.sensor_id = config.sensor_id;
  meta.sensor_group = config.sensor_group;
  meta.persona = config.persona;
  meta.product = loaded.at(config.persona.empty() ? loaded.begin()->first : config.persona)
                     ->product();
  meta.engine_version = inspector.engineVersion();
  meta.components = inspector.components();
  probe::Pipeline pipeline(config.pipeline, inspector, spool, meta, metrics,
                           journal ? &*journal : nullptr);

  std::optional<boost::asio::ssl::context> tls;
  bool any_tls = std::any_of(config.listeners.begin(), config.listeners.end(),
                             [](const auto& listener) { return listener.tls; });
  if (any_tls) {
    tls.emplace(probe::makeServerContext(config.tls, config.state_dir, config.sensor_id));
  }

  probe::ConnectionLimiter limiter(config.limits.max_connections,
                                   config.limits.max_connections_per_source);
  probe::ServerMetrics server_metrics(metrics);
  services.config = &config;
  services.baits = &baits;
  services.pipeline = &pipeline;
  services.limiter = &limiter;
  services.metrics = &server_metrics;
  services.tls = tls ? &*tls : nullptr;

  boost::asio::io_context io;
  probe::Server server(io, services);
  server.bind();
  // The ports file is written while still privileged, because it may sit in
  // a folder that the run_as user cannot write.
  if (!options.ports_file.empty()) {
    writePortsFile(options.ports_file, server.boundPorts());
  }
  dropPrivileges(config);
  if (config.seccomp) {
    probe::denyOutboundAndExec();
  }
  server.start();
  spdlog::info("probe: ready spool={} admin={}", config.spool.dir.string(),
               config.admin_listen.empty() ? "off" : config.admin_listen);

  // Copies the shipper's shared counters into the metrics once per second,
  // until io.stop() ends the chain.
  boost::asio::steady_timer shipper_timer(io);
  std::function<void()> refresh_shipper = [&] {
    shipper_metrics->update(shipper_process->counters());
    shipper_process->checkRunning();
    shipper_timer.expires_after(std::chrono::seconds(1));
    shipper_timer.async_wait([&](const boost::system::error_code& ec) {
      if (!ec) {
        refresh_shipper();
      }
    });
  };
  if (shipper_process) {
    refresh_shipper();
  }

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  boost::asio::steady_timer grace(io);
  signals.async_wait([&](const boost::system::error_code& ec, int signal) {
    if (ec) {
      return;
    }
    spdlog::info("probe: stopping signal={}", signal);
    server.stopAccepting();
    // Connections in flight get a moment to finish their requests.
    grace.expires_after(std::chrono::seconds(1));
    grace.async_wait([&](const boost::system::error_code&) { io.stop(); });
  });

  std::vector<std::thread> threads;
  for (std::uint32_t i = 1; i < config.io_threads; ++i) {
    threads.emplace_back([&io] { io.run(); });
  }
  io.run();
  for (auto& thread : threads) {
    thread.join();
  }

  pipeline.drain();
  // The drain spools the records of the inspection queue; the shipper's
  // final pass sends them. A shipper stopped by a signal of its own (kill
  // of every process) has none, so the unshipped bytes are counted once
  // both are done.
  if (shipper_process) {
    shipper_process->stopAfterFinalPass();
  }
  // records_written counts this run's requests, journal_records_recovered
  // the records of the last run that its journal added to the spool at start.
  spdlog::info("probe: stopped requests={} records_written={} journal_records_recovered={} "
               "parse_errors={} unshipped_bytes={}",
               server_metrics.requests.value(),
               metrics.counter("webtrap_records_written_total", "").value(),
               journal_records_recovered, server_metrics.parse_errors.value(),
               spool.unshippedBytes());
  return 0;
}

}  // namespace

void addProbeCommand(CLI::App& app, CommandRunner& runner) {
  auto options = std::make_shared<ProbeOptions>();
  CLI::App* command = app.add_subcommand("probe", "Run a web honeypot probe");
  command->add_option("--config", options->config_path, "YAML configuration file")
      ->check(CLI::ExistingFile);
  command->add_option("--listen", options->listen,
                      "Plain HTTP listener ADDR:PORT or [V6]:PORT; repeatable; replaces the "
                      "configured listeners");
  command->add_option("--listen-tls", options->listen_tls,
                      "TLS listener ADDR:PORT; repeatable; replaces the configured listeners");
  command->add_option("--listen-bait", options->listen_bait,
                      "Bait listener ADDR:PORT (a port no real user visits); repeatable; "
                      "replaces the configured listeners");
  command->add_option("--spool", options->spool_dir, "Folder for the NDJSON record segments");
  command->add_option("--state-dir", options->state_dir,
                      "Folder for the bait secret and the self-signed certificate");
  command->add_option("--sensor-id", options->sensor_id, "Sensor id written into every record");
  command->add_option("--admin-listen", options->admin_listen,
                      "Admin listener ADDR:PORT for /metrics and /healthz, or off");
  command->add_option("--paranoia-level", options->paranoia_level, "CRS paranoia level, 1 to 4")
      ->check(CLI::Range(1, 4));
  command->add_option("--ports-file", options->ports_file,
                      "Write the bound port of each listener to this JSON file once ready");
  command->add_option("--log-level", options->log_level, "trace, debug, info, warn or error");
  command->add_flag("--config-reference", options->print_reference,
                    "Print every configuration key as a Markdown table and exit");
  command->callback([options, &runner] { runner = [options] { return runProbe(*options); }; });
}

}  // namespace webtrap::cli
