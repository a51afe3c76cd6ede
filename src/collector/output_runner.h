// Runs one Output on its own thread against the Store.
//
// The runner reads batches after the output's cursor and sends them. A batch
// that is not full waits for more events while they keep coming: up to
// flush_interval, and no longer than a tenth of it after the last new event. Delivered and rejected
// events are finished (rejected ones go to the dead-letter store with the
// reason). kRetry events are sent again, alone, after a backoff with full
// jitter: a random delay between 0 and min(retry_max, retry_initial * 2^n).
// A TransientError backs off the same way, for at least the server's
// retry_after_ms, and resends the whole batch. The cursor is persisted only
// past finished events, and is written with the store's next write, so a
// crash resends the batch in flight and those finished since that write
// (at-least-once; outputs remove duplicates by event id).
//
// Metrics, each with the label output="NAME":
//   webtrap_collector_output_delivered_total, _retried_total (events sent
//   again), _dead_lettered_total, _failures_total (send() calls that threw),
//   webtrap_collector_output_queue_depth (gauge: last seq - cursor) and
//   webtrap_collector_output_lag_seconds (gauge: now - event time of the
//   oldest unfinished event, 0 when none).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <yaml-cpp/yaml.h>

#include "collector/store.h"
#include "collector/stored_event.h"
#include "common/log_throttle.h"
#include "common/metrics.h"

namespace webtrap::collector {

struct OutputRunnerOptions {
  std::size_t batch_max_events = 1000;
  std::size_t batch_max_bytes = 8u << 20;
  std::chrono::milliseconds flush_interval{1000};
  std::chrono::milliseconds retry_initial{500};
  std::chrono::milliseconds retry_max{60000};
};

// Parses the runner keys of an output section (batch_max_events,
// batch_max_bytes, flush_interval, retry_initial, retry_max) and skips the
// others, which the output's own parser checks. `section` is the key path
// used in error messages, such as "outputs.elasticsearch". Throws ConfigError.
OutputRunnerOptions parseRunnerOptions(const YAML::Node& node, const std::string& section);

class OutputRunner {
 public:
  // Registers the output's cursor in the store. The runner owns the output.
  OutputRunner(Store& store, std::unique_ptr<Output> output, OutputRunnerOptions options,
               MetricsRegistry& metrics);
  ~OutputRunner();  // calls stop()

  OutputRunner(const OutputRunner&) = delete;
  OutputRunner& operator=(const OutputRunner&) = delete;

  // Starts the thread. Call once.
  void start();

  // Wakes the runner after new events were stored. Cheap; safe from any
  // thread.
  void notify();

  // Lets an ongoing send() finish, handles its results, calls
  // Output::flush() and joins the thread. A backoff wait ends at once, and
  // the events still unfinished are sent again by the next runner. Safe to
  // call more than once.
  void stop();

  // The seq of the last event this runner finished with.
  std::int64_t cursor() const;

  Output& output() { return *output_; }

 private:
  struct Metrics;

  void run();
  // Sends `batch` until every event is finished or the runner stops. On
  // the path without retries the events are left in place, so run() reuses
  // their strings for the next read. Returns the sorted seqs of the events
  // it finished (delivered or dead-lettered): all of `batch`, unless the
  // runner stopped first.
  std::vector<std::int64_t> sendBatch(std::vector<StoredEvent>& batch);
  // Dead-letters the events at the front of `batch` whose damage is set
  // and moves the cursor past them. Returns false when the runner stops
  // while waiting to retry a failed write.
  bool deadLetterDamaged(const std::vector<StoredEvent>& batch);
  // Waits until a notify() finds at least `min_events` events after the
  // cursor, or until the deadline or stop().
  bool waitForEvents(std::chrono::steady_clock::time_point deadline, std::size_t min_events);
  bool sleepFor(std::chrono::milliseconds delay);  // false when stopped
  std::chrono::milliseconds backoffDelay(int attempt, std::int64_t retry_after_ms);
  void advanceCursor(std::int64_t seq);  // notes it in the store without waiting
  void persistCursor();                  // writes noted cursors, waiting if needed
  void updateGauges();
  void logRetry(const std::string& message);

  Store& store_;
  std::unique_ptr<Output> output_;
  std::string name_;
  OutputRunnerOptions options_;
  std::unique_ptr<Metrics> metrics_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool notified_ = false;
  std::int64_t cursor_ = 0;
  std::thread thread_;

  // The batch being sent. Used by the runner thread alone, and kept between
  // batches so its strings keep their capacity.
  std::vector<StoredEvent> batch_;

  LogThrottle retry_log_;
};

}  // namespace webtrap::collector
