// Shared by the configuration loader fuzz targets: splits a fuzz input into
// YAML text and environment variables, and checks a ConfigError.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace webtrap::fuzz {

// The comment line that ends the YAML text of an input. Every line after it
// is one NAME=VALUE environment entry.
inline constexpr std::string_view kEnvironmentMarker = "\n#webtrap-fuzz-environment\n";

struct ConfigInput {
  std::string yaml;
  std::vector<std::string> environment;
};

inline ConfigInput splitConfigInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  ConfigInput input;
  std::size_t marker = text.find(kEnvironmentMarker);
  if (marker == std::string_view::npos) {
    input.yaml = std::string(text);
    return input;
  }
  input.yaml = std::string(text.substr(0, marker + 1));
  std::string_view rest = text.substr(marker + kEnvironmentMarker.size());
  while (!rest.empty()) {
    std::size_t end = rest.find('\n');
    input.environment.emplace_back(rest.substr(0, end));
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
  }
  return input;
}

// Aborts when a rejection has no message, because an operator could not
// tell which key to fix.
inline void checkConfigError(const ConfigError& error, const char* target) {
  if (std::string_view(error.what()).empty()) {
    std::fprintf(stderr, "%s: ConfigError without a message\n", target);
    std::abort();
  }
}

}  // namespace webtrap::fuzz
