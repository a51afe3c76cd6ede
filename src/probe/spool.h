// The spool: records appended to size-rotated NDJSON segment files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string_view>

#include "common/metrics.h"

namespace webtrap::probe {

enum class FsyncPolicy { kAlways, kInterval, kNever };
enum class FullPolicy { kDropNew, kDeleteOldest };

struct SpoolConfig {
  std::filesystem::path dir;
  std::uint64_t segment_bytes = 64ull << 20;
  std::uint64_t max_bytes = 1ull << 30;  // disk cap over all segments
  FsyncPolicy fsync = FsyncPolicy::kInterval;
  std::uint32_t fsync_interval_ms = 1000;
  FullPolicy on_full = FullPolicy::kDropNew;
};

enum class AppendResult { kWritten, kDropped };

class Spool {
 public:
  // Creates the folder if needed and resumes after the last segment. Throws
  // ConfigError when the folder cannot be created or written.
  Spool(const SpoolConfig& config, MetricsRegistry& metrics);
  ~Spool();

  // Appends one record and a newline. Thread-safe.
  AppendResult append(std::string_view record);

  // Writes buffered data and fsyncs the open segment.
  void flush();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace webtrap::probe
