// Sensor tokens as `webtrap collector enrol` makes them: 32 random bytes
// written as 64 lowercase hex digits. The collector keeps only their SHA-256.
#pragma once

#include <istream>
#include <string>
#include <string_view>

namespace webtrap::collector {

// Checks `text`, the content of a token file, and returns the token without
// the surrounding white space (a file written by enrol ends in a newline).
// Throws ConfigError naming `origin` unless it is 64 hex digits.
std::string parseSensorToken(std::string_view text, const std::string& origin);

// Reads a token from the file at `path`, or from `input` when `path` is
// "-". Throws ConfigError when the file cannot be read or contains no valid
// token.
std::string readSensorToken(const std::string& path, std::istream& input);

}  // namespace webtrap::collector
