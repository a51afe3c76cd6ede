// The built-in dashboard as one collector component: its configuration
// section (`dashboard`), the index file and the output that fills it, the
// queries and the HTTP handler that the admin listener calls.
#pragma once

#include <filesystem>
#include <memory>

#include <yaml-cpp/yaml.h>

#include "collector/dashboard_http.h"
#include "collector/dashboard_index.h"
#include "collector/dashboard_queries.h"
#include "collector/login_limiter.h"
#include "collector/output_runner.h"
#include "collector/store.h"
#include "common/metrics.h"

namespace webtrap::collector {

struct DashboardOptions {
  bool enabled = false;
  std::filesystem::path index_path;  // empty: <state_dir>/dashboard.sqlite
  // The limit of every admin token check on the admin listener, also when
  // the dashboard is off (see AdminTokenGuard).
  LoginLimitOptions login_limits;
};

// Parses the `dashboard` section: `enabled` (bool), `index_path`,
// `login_max_failures`, `login_window` (a duration of whole seconds) and
// `login_max_clients`. A null node gives the defaults (disabled). Throws
// ConfigError.
DashboardOptions parseDashboardOptions(const YAML::Node& node);

class DashboardService {
 public:
  // Opens the index. `token_guard` checks the admin token and must be the
  // admin listener's own guard. Throws ConfigError when it is null (no
  // admin.token), because the dashboard is never served open.
  DashboardService(const DashboardOptions& options, const std::filesystem::path& state_dir,
                   std::shared_ptr<AdminTokenGuard> token_guard, Store& store,
                   MetricsRegistry& metrics);
  ~DashboardService();
  DashboardService(const DashboardService&) = delete;
  DashboardService& operator=(const DashboardService&) = delete;

  void start();  // starts the output that fills the index
  void notify();  // wakes that output: the store has new events
  // Stops the query workers and the output. The collector calls it after
  // its I/O threads stop and before their io_context goes.
  void stop();
  DashboardHttp& http() { return *http_; }

 private:
  std::unique_ptr<DashboardIndex> index_;
  std::unique_ptr<OutputRunner> runner_;
  std::unique_ptr<DashboardQueries> queries_;
  std::unique_ptr<DashboardHttp> http_;
};

}  // namespace webtrap::collector
