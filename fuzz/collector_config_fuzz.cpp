// Fuzzes the collector's configuration loader with arbitrary YAML text, and
// with WEBTRAP__ environment variables written over it. Loading parses every
// section that another component owns (inputs, enrich, outputs, behaviour),
// and the dashboard section is parsed as `webtrap collector` does at start.
// The loader must accept the input or throw ConfigError with a message. Any
// other exception escapes, so libFuzzer reports it as a crash.
//
// Input: as for probe_config_fuzz, the YAML text, optionally followed by the
// comment line "#webtrap-fuzz-environment" and NAME=VALUE lines.
#include <cstdint>

#include "collector/collector_config.h"
#include "collector/dashboard_service.h"
#include "common/error.h"
#include "config_fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  webtrap::fuzz::ConfigInput input = webtrap::fuzz::splitConfigInput(data, size);
  try {
    webtrap::collector::CollectorConfig config =
        webtrap::collector::parseCollectorConfig(input.yaml, "fuzz.yaml", input.environment);
    webtrap::collector::parseDashboardOptions(config.dashboard);
  } catch (const webtrap::ConfigError& error) {
    webtrap::fuzz::checkConfigError(error, "collector_config_fuzz");
  }
  return 0;
}
