// The spool: records appended to size-rotated NDJSON segment files.
//
// Layout of the spool folder:
//   segment-000000000001.ndjson, segment-000000000002.ndjson, ...
//     One record per line. Names sort in write order. A segment is never
//     reopened: after a restart the spool starts the next number, so a
//     reader may treat every segment but the newest as closed.
//   shipped.offset
//     Written by the shipper, never by the spool: one line
//     "<segment file name> <byte offset>", meaning every byte before that
//     offset of that segment, and every segment with a lower number, has been
//     delivered. The shipper should replace the file atomically (write a
//     temporary file, then rename). Segments wholly before the offset are
//     "shipped": when the disk cap is reached, the spool deletes them first,
//     silently, under both full policies. Without the file nothing counts as
//     shipped.
//   inspection-journal/
//     The inspection queue's journal (probe/journal.h). The spool and the
//     shipper do not read it, and it does not count against max_bytes.
//
// Disk cap: before an append would take the segments past max_bytes, the
// spool deletes shipped segments. If that is not enough, kDropNew drops the
// new record and kDeleteOldest deletes the oldest segments, counting their
// unshipped records as dropped. A record larger than max_bytes is always
// dropped.
//
// Metrics: webtrap_spool_records_written_total, webtrap_spool_bytes_written_total,
// webtrap_spool_records_dropped_total{reason="disk_full"|"write_error"},
// webtrap_spool_segments_deleted_total, webtrap_spool_write_errors_total,
// webtrap_spool_fsyncs_total, webtrap_spool_bytes (gauge: bytes in all
// segments) and webtrap_spool_full (gauge: 1 from a new record dropped at
// the cap until the next record is written). Under kDeleteOldest the losses
// show in records_dropped_total only, because each append makes its room.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/metrics.h"

namespace webtrap::probe {

// Returns "segment-000000000042.ndjson" for 42.
std::string segmentFileName(std::uint64_t number);

// Returns the number in a segment file name, or 0 when the name is not one.
std::uint64_t parseSegmentFileName(std::string_view name);

// A shipper's position, as its offset file stores it: "<segment file> <offset>".
struct ShippedPosition {
  std::uint64_t segment = 0;
  std::uint64_t offset = 0;
};

// Parses the content of the shipper's offset file. Trailing line ends are
// ignored. Returns std::nullopt when the content is not in that form.
std::optional<ShippedPosition> parseShippedPosition(std::string_view content);

enum class FsyncPolicy {
  // fdatasync after every append, under the spool lock, so appends are
  // limited by disk flush latency (about 4 ms per 2 KB append on the
  // virtual disk of the build machine, against 3 us with kNever).
  kAlways,
  kInterval,  // a background thread fdatasyncs at most every fsync_interval_ms
  kNever,     // leave write-back to the kernel
};
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
  // Creates the folder if needed and counts the segments already there. The
  // first append creates a segment numbered after the last one found. Throws
  // ConfigError when the folder cannot be created or written, or when
  // segment_bytes, max_bytes or fsync_interval_ms is 0.
  Spool(const SpoolConfig& config, MetricsRegistry& metrics);
  ~Spool();

  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Appends one record and a newline with a single write, so a process crash
  // loses no acknowledged record (an OS crash may, unless fsync is kAlways).
  // Thread-safe. Write errors (ENOSPC, EIO) are counted and logged, never
  // thrown; a failed append is cut back off the segment so it keeps whole
  // lines.
  AppendResult append(std::string_view record);

  // Fsyncs the open segment, whatever the fsync policy.
  void flush();

  // Returns the bytes of the segments after the position in shipped.offset:
  // every segment's bytes when the file is missing or malformed. Thread-safe.
  // NOTE: a shipper that finds its segment rewritten reads it again from the
  // start, which this count does not see.
  std::uint64_t unshippedBytes();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace webtrap::probe
