// ModSecurity inspection: one shared rule set, one transaction per request.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/metrics.h"
#include "probe/capture.h"
#include "probe/inspection.h"
#include "probe/response.h"

namespace webtrap::probe {

struct InspectorConfig {
  std::filesystem::path crs_setup = "/etc/modsecurity/crs/crs-setup.conf";
  std::filesystem::path crs_rules = "/usr/share/modsecurity-crs/rules";
  std::filesystem::path webtrap_rules;  // folder with webtrap's own .conf files
  std::vector<std::filesystem::path> extra_rules;  // loaded after CRS setup, before CRS rules
  int paranoia_level = 1;
  std::uint64_t body_limit = 1 << 20;  // bytes given to ModSecurity
  std::size_t cache_entries = 8192;    // 0 turns the result cache off
  MatchDetailLimits match_limits;      // rule match text kept per request
};

class Inspector {
 public:
  // Loads every rule once. Throws ConfigError with the rule file and the
  // libmodsecurity parse error.
  Inspector(const InspectorConfig& config, MetricsRegistry& metrics);
  ~Inspector();

  // Runs every phase on a fresh transaction and reads back all rule
  // messages. Thread-safe. Never throws for any request content.
  InspectionResult inspect(const CapturedRequest& request, const PersonaResponse& response,
                           const RouteOutcome& outcome, const std::string& transaction_id);

  // The producer object of the audit layout: libmodsecurity version and the
  // rule set components (such as OWASP_CRS/3.3.4).
  const std::string& engineVersion() const;
  const std::vector<std::string>& components() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace webtrap::probe
