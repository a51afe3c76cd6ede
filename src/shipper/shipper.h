// The shipper: sends the probe's spool to a collector's POST /v1/records in
// gzip NDJSON batches and persists its offset after every acknowledged batch.
//
// Delivery is at least once. A batch counts as delivered only on a 200 whose
// JSON acknowledgement parses. Until then the offset stays where it was, so
// a crash or restart of either side sends the batch again and the collector
// removes the duplicates by event id.
//
// Responses:
//   200       advance and persist the offset.
//   401, 403  the token or client certificate is wrong: log it, retry every
//             retry_max, never drop.
//   413       halve the batch; a single record that is still too large is
//             written to DIR/shipper-rejected.ndjson and skipped.
//   429, 5xx, connection errors and every other status: retry with
//             exponential backoff and full jitter (a random wait between 0
//             and min(retry_max, retry_initial * 2^attempt)), or after the
//             Retry-After delay when the collector sends one.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>

#include "shipper/shipper_config.h"

namespace webtrap {
class MetricsRegistry;
}

namespace webtrap::shipper {

// Kinds of error that the shipper counts, one label value each.
enum class ShipperError : std::size_t {
  kConnection,              // no HTTP response: refused, reset, DNS or TLS failure
  kTimeout,                 // no complete response within shipper.timeout
  kUnauthorized,            // 401 or 403
  kTooLarge,                // 413
  kThrottled,               // 429
  kServerError,             // 5xx
  kOtherStatus,             // any other status but 200
  kInvalidAcknowledgement,  // 200 whose body is not the acknowledgement
  kOffsetWrite,             // shipped.offset could not be written
  kSpoolRead,               // a segment could not be read
  kSpoolTruncated,          // a segment was truncated or replaced and is read again
};
inline constexpr std::size_t kShipperErrorKinds = 11;
static_assert(static_cast<std::size_t>(ShipperError::kSpoolTruncated) + 1 == kShipperErrorKinds,
              "kShipperErrorKinds must count every ShipperError");

// The label value of `kind` in webtrap_shipper_errors_total.
const char* shipperErrorLabel(ShipperError kind);

// The shipper's metrics as plain atomics. They are lock-free, so they also
// work in a MAP_SHARED mapping that the probe reads from another process.
struct ShipperCounters {
  std::atomic<std::uint64_t> records_read{0};  // see SpoolReader::recordsRead()
  std::atomic<std::uint64_t> records_sent{0};
  std::atomic<std::uint64_t> batches_sent{0};
  std::atomic<std::uint64_t> bytes_sent{0};  // request bodies, after compression
  std::atomic<std::uint64_t> retries{0};
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint64_t> dropped{0};  // records lost to the spool's disk cap
  // Records the collector rejected as too large even alone, saved to
  // DIR/shipper-rejected.ndjson and skipped.
  std::atomic<std::uint64_t> rejected{0};
  std::atomic<std::int64_t> backlog_bytes{0};
  std::atomic<std::int64_t> last_success_seconds{0};
  std::atomic<std::uint64_t> errors[kShipperErrorKinds] = {};
  // Not a metric: set by the probe before it stops the shipper. When above
  // 0, the worker sends the records left in the spool once more, for at most this
  // many milliseconds and without retries, before it exits.
  std::atomic<std::uint32_t> final_pass_ms{0};

  void countError(ShipperError kind) {
    errors[static_cast<std::size_t>(kind)].fetch_add(1, std::memory_order_relaxed);
  }
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::int64_t>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

// Copies ShipperCounters into a MetricsRegistry as the webtrap_shipper_*
// metrics. Call update() before each render; the counters only ever grow.
class ShipperMetrics {
 public:
  explicit ShipperMetrics(MetricsRegistry& registry);
  ~ShipperMetrics();
  void update(const ShipperCounters& counters);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class Shipper {
 public:
  // `spool_dir`: the probe's spool folder. `count_ahead`: see SpoolReader.
  // `stop`: set from another thread or a signal handler to end run().
  // Throws ConfigError when libcurl cannot be set up, or when another
  // shipper already ships this spool.
  Shipper(const ShipperConfig& config, std::filesystem::path spool_dir, bool count_ahead,
          ShipperCounters& counters, const std::atomic<bool>& stop);
  ~Shipper();

  Shipper(const Shipper&) = delete;
  Shipper& operator=(const Shipper&) = delete;

  // Ships until `stop` is set. With `until_idle`, returns as soon as no
  // whole line is waiting.
  void run(bool until_idle = false);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace webtrap::shipper
