#include "collector/dashboard_service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

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
    const std::string key = entry.first.as<std::string>();
    const std::string path = "dashboard." + key;
    if (key == "enabled") {
      options.enabled = config_values::parseBool(config_values::scalarText(entry.second, path), path);
    } else if (key == "index_path") {
      options.index_path = config_values::scalarText(entry.second, path);
    } else {
      throw ConfigError(fmt::format("{}: unknown key; valid keys are enabled and index_path", path));
    }
  }
  return options;
}

DashboardService::DashboardService(const DashboardOptions& options,
                                   const std::filesystem::path& state_dir,
                                   const std::string& admin_token, Store& store,
                                   MetricsRegistry& metrics) {
  if (admin_token.empty()) {
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
  http_ = std::make_unique<DashboardHttp>(*queries_, admin_token);
  spdlog::info("dashboard: index {}, served on the admin listener under /dashboard/",
               path.string());
}

DashboardService::~DashboardService() { stop(); }

void DashboardService::start() { runner_->start(); }

void DashboardService::stop() {
  if (http_) {
    http_->stopQueries();
  }
  if (runner_) {
    runner_->stop();
  }
}

}  // namespace webtrap::collector
