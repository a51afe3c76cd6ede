// Shared by every subcommand; the file name ends in _command.cpp so that the
// build collects it with the commands.
#include "cli/logging.h"

#include <CLI/CLI.hpp>
#include <fmt/ranges.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace webtrap::cli {

void setupLogging(const std::string& level) {
  auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") {
    throw CLI::ValidationError("--log-level", "unknown level \"" + level +
                                                  "\"; use trace, debug, info, warn or error");
  }
  auto logger = spdlog::stderr_logger_mt("webtrap");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %l %v", spdlog::pattern_time_type::utc);
  logger->set_level(parsed);
  spdlog::set_default_logger(logger);
}

void logEnvironmentKeys(std::string_view program, const std::vector<std::string>& keys) {
  if (!keys.empty()) {
    spdlog::info("{}: configuration keys set from the environment: {}", program,
                 fmt::join(keys, ", "));
  }
}

}  // namespace webtrap::cli
