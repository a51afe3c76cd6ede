// Fuzzes the probe's configuration loader with arbitrary YAML text, and with
// WEBTRAP__ environment variables written over it. The loader must accept
// the input or throw ConfigError with a message. Any other exception
// escapes, so libFuzzer reports it as a crash.
//
// Input: the YAML text, optionally followed by the comment line
// "#webtrap-fuzz-environment" and then NAME=VALUE lines, one per variable.
// The marker is a YAML comment, so a seed with variables is still the file
// it was taken from.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/error.h"
#include "config_fuzz_input.h"
#include "probe/config.h"
#include "shipper/shipper_config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  webtrap::fuzz::ConfigInput input = webtrap::fuzz::splitConfigInput(data, size);
  try {
    webtrap::probe::ProbeConfig config =
        webtrap::probe::parseProbeConfig(input.yaml, "fuzz.yaml", input.environment);
    // `webtrap probe` and `webtrap ship` check the shipper keys next.
    if (config.shipper.isEnabled()) {
      webtrap::shipper::resolveShipperConfig(config.shipper);
    }
  } catch (const webtrap::ConfigError& error) {
    webtrap::fuzz::checkConfigError(error, "probe_config_fuzz");
  }
  return 0;
}
