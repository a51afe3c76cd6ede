// Shared by every subcommand; the file name ends in _command.cpp so that the
// build collects it with the commands.
#include "cli/logging.h"

#include <CLI/CLI.hpp>
#include <fmt/ranges.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "common/config_environment.h"

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
  for (const std::string& name :
       config_environment::findMisspelledVariables(config_environment::processEnvironment())) {
    spdlog::warn("{}: the environment variable {} sets nothing, because a variable that sets "
                 "a key starts with exactly WEBTRAP__ (two underscores, upper case); rename "
                 "it, such as WEBTRAP__SHIPPER__URL, or unset it",
                 program, name);
  }
}

}  // namespace webtrap::cli
