#include "collector/sensor_token.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/error.h"

namespace webtrap::collector {

std::string parseSensorToken(std::string_view text, const std::string& origin) {
  auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!text.empty() && is_space(text.front())) {
    text.remove_prefix(1);
  }
  while (!text.empty() && is_space(text.back())) {
    text.remove_suffix(1);
  }
  bool hex = text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
               return std::isxdigit(static_cast<unsigned char>(c)) != 0;
             });
  if (!hex) {
    // The text may be a mistyped secret, so the message gives only its length.
    throw ConfigError(fmt::format("{}: invalid token ({} characters after trimming white space); "
                                  "give the 64 hex digits that `webtrap collector enrol` printed "
                                  "or wrote with --token-file",
                                  origin, text.size()));
  }
  return std::string(text);
}

namespace {

// A token file is 65 bytes; reading stops past this, so a wrong path such as
// /dev/zero cannot fill the memory.
constexpr std::size_t kMaxTokenFileBytes = 4096;

std::string readAtMost(std::istream& input) {
  std::string text(kMaxTokenFileBytes + 1, '\0');
  input.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(input.gcount()));
  return text;
}

}  // namespace

std::string readSensorToken(const std::string& path, std::istream& input) {
  if (path == "-") {
    return parseSensorToken(readAtMost(input), "--existing-token-file - (standard input)");
  }
  std::error_code error;
  std::filesystem::file_status status = std::filesystem::status(path, error);
  if (!error && std::filesystem::is_directory(status)) {
    throw ConfigError(fmt::format("--existing-token-file {}: is a folder; give the token file "
                                  "of the sensor, such as the probe's shipper.token_file",
                                  path));
  }
  using std::filesystem::perms;
  if (!error && (status.permissions() & perms::others_read) != perms::none) {
    // Enrol goes on, because the file can be tightened later without a new
    // token.
    spdlog::warn("--existing-token-file {}: the token file is readable by other users (mode "
                 "{:04o}); run chmod 600 {} so that only its owner can read the sensor token",
                 path, static_cast<unsigned>(status.permissions() & perms::mask), path);
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    throw ConfigError(fmt::format("--existing-token-file {}: cannot read the file; give the "
                                  "token file of the sensor, such as the probe's "
                                  "shipper.token_file, or - to read standard input",
                                  path));
  }
  return parseSensorToken(readAtMost(file), "--existing-token-file " + path);
}

}  // namespace webtrap::collector
