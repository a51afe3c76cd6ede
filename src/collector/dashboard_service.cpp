#include "collector/dashboard_service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/config_table.h"
#include "common/config_values.h"
#include "common/error.h"

namespace webtrap::collector {

DashboardOptions parseDashboardOptions(const YAML::Node& node) {
  DashboardOptions options;
  if (!node || node.IsNull()) {
    return options;
  }
  if (!node.IsMap()) {
    throw ConfigError("dashboard: expected a map such as `dashboard: {enabled: true}`");
  }
  for (const auto& entry : node) {
    const std::string key = config_table::keyText(entry.first, "dashboard");
    const std::string path = "dashboard." + key;
    if (key == "enabled") {
      options.enabled = config_values::parseBool(config_values::scalarText(entry.second, path), path);
    } else if (key == "index_path") {
      options.index_path = config_values::scalarText(entry.second, path);
    } else if (key == "login_max_failures") {
      options.login_limits.max_failures = config_values::narrow<std::uint32_t>(
          config_values::parseUnsigned(config_values::scalarText(entry.second, path), path),
          path);
    } else if (key == "login_window") {
      const std::string text = config_values::scalarText(entry.second, path);
      const std::uint64_t ms = config_values::parseMilliseconds(text, path);
      if (ms < 1000 || ms % 1000 != 0) {
        throw ConfigError(fmt::format("{}: \"{}\" is not a whole number of seconds of at least "
                                      "1 s; use a value such as 300s or 5m",
                                      path, text));
      }
      options.login_limits.window = std::chrono::seconds(ms / 1000);
    } else if (key == "login_max_clients") {
      const std::uint64_t clients =
          config_values::parseUnsigned(config_values::scalarText(entry.second, path), path);
      if (clients == 0) {
        throw ConfigError(fmt::format("{}: must be at least 1; it bounds the client addresses "
                                      "whose failed logins are remembered",
                                      path));
      }
      options.login_limits.max_clients = config_values::narrow<std::size_t>(clients, path);
    } else {
      throw ConfigError(fmt::format("{}: unknown key; valid keys are enabled, index_path, "
                                    "login_max_failures, login_window and login_max_clients",
                                    path));
    }
  }
  return options;
}

DashboardService::DashboardService(const DashboardOptions& options,
                                   const std::filesystem::path& state_dir,
                                   std::shared_ptr<AdminTokenGuard> token_guard, Store& store,
                                   MetricsRegistry& metrics) {
  if (!token_guard) {
    throw ConfigError(
        "dashboard.enabled: the dashboard needs admin.token, because it shows records to "
        "whoever can reach the admin listener; set admin.token or disable the dashboard");
  }
  std::filesystem::path path =
      options.index_path.empty() ? state_dir / "dashboard.sqlite" : options.index_path;
  index_ = std::make_unique<DashboardIndex>(path);
  auto output = std::make_unique<DashboardIndexOutput>(*index_, store);
  OutputRunnerOptions runner_options;
  runner_options.batch_max_events = 5000;
  runner_options.flush_interval = std::chrono::milliseconds(200);
  runner_ = std::make_unique<OutputRunner>(store, std::move(output), runner_options, metrics);
  queries_ = std::make_unique<DashboardQueries>(path, store);
  http_ = std::make_unique<DashboardHttp>(*queries_, std::move(token_guard),
                                          DashboardHttp::kQueryThreads,
                                          DashboardHttp::kMaxQueuedQueries, &metrics);
  spdlog::info("dashboard: index {}, served on the admin listener under /dashboard/",
               path.string());
}

DashboardService::~DashboardService() { stop(); }

void DashboardService::start() { runner_->start(); }

void DashboardService::notify() { runner_->notify(); }

void DashboardService::stop() {
  if (http_) {
    http_->stopQueries();
  }
  if (runner_) {
    runner_->stop();
  }
}

}  // namespace webtrap::collector
