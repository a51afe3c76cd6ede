#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace webtrap::cli {

// Sends logs to stderr as "UTC-time level message". Throws CLI::ValidationError
// on an unknown level name.
void setupLogging(const std::string& level);

// Logs which configuration keys came from environment variables, as
// "key from VARIABLE" (names only, never values). Logs nothing for none.
void logEnvironmentKeys(std::string_view program, const std::vector<std::string>& keys);

}  // namespace webtrap::cli
