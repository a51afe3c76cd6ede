// Helpers for tests that recover the inspection journal into a spool: the
// records the spool's segments contain, and the log lines of a call.
#pragma once

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace webtrap::probe {

// Returns the records in the spool segments of `dir`, in write order.
inline std::vector<std::string> readSpoolRecords(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> segments;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().filename().native().starts_with("segment-")) {
      segments.push_back(entry.path());
    }
  }
  std::sort(segments.begin(), segments.end());
  std::vector<std::string> records;
  for (const auto& segment : segments) {
    std::ifstream in(segment, std::ios::binary);
    std::string line;
    while (std::getline(in, line)) {
      records.push_back(line);
    }
  }
  return records;
}

// Runs `call` with the default logger writing to `log`, and returns what
// `call` returns.
template <typename Call>
auto withCapturedLog(std::string& log, Call&& call) {
  std::ostringstream captured;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(captured)));
  auto result = call();
  spdlog::set_default_logger(previous);
  log = captured.str();
  return result;
}

}  // namespace webtrap::probe
