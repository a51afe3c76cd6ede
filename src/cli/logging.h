#pragma once

#include <string>

namespace webtrap::cli {

// Sends logs to stderr as "UTC-time level message". Throws CLI::ValidationError
// on an unknown level name.
void setupLogging(const std::string& level);

}  // namespace webtrap::cli
