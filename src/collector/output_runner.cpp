#include "collector/output_runner.h"

#include <pthread.h>

#include <algorithm>
#include <random>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/config_table.h"
#include "common/config_values.h"
#include "common/error.h"

namespace webtrap::collector {
namespace {

using Clock = std::chrono::steady_clock;

// Retry messages are logged at most this often per output; the others are
// counted and the count goes into the next line.
constexpr auto kRetryLogInterval = std::chrono::seconds(10);

// A batch that is not full is sent once no event arrived for
// flush_interval / kQuietShare.
constexpr int kQuietShare = 10;

// How often an idle runner refreshes its gauges, so the lag keeps growing
// while nothing is delivered.
constexpr auto kIdleRefresh = std::chrono::seconds(1);

// The maximum wait that a server's Retry-After hint may impose.
constexpr std::int64_t kMaxRetryAfterMs = 3600 * 1000;

// Returns `start + wait`, or the clock's max when the sum would overflow.
// The clock counts nanoseconds in 64 bits, so without the check a
// flush_interval longer than about 292 years wraps around to a deadline in
// the past, and partial batches go at once.
Clock::time_point addSaturated(Clock::time_point start, std::chrono::milliseconds wait) {
  const auto room =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::time_point::max() - start);
  return wait >= room ? Clock::time_point::max() : start + wait;
}

std::int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct OutputRunner::Metrics {
  Counter& delivered;
  Counter& retried;
  Counter& dead_lettered;
  Counter& failures;
  Gauge& queue_depth;
  Gauge& lag_seconds;
};

OutputRunnerOptions parseRunnerOptions(const YAML::Node& node, const std::string& section) {
  using namespace config_values;
  OutputRunnerOptions options;
  if (!node || node.IsNull()) {
    return options;
  }
  if (!node.IsMap()) {
    throw ConfigError(fmt::format("{}: expected a map of settings such as `batch_max_events: 1000`",
                                  section));
  }
  for (const auto& entry : node) {
    const std::string key = config_table::keyText(entry.first, std::string(section));
    const std::string path = section + "." + key;
    if (key == "batch_max_events") {
      options.batch_max_events =
          narrow<std::size_t>(parseUnsigned(scalarText(entry.second, path), path), path);
      if (options.batch_max_events == 0) {
        throw ConfigError(fmt::format("{}: must be at least 1", path));
      }
    } else if (key == "batch_max_bytes") {
      options.batch_max_bytes =
          narrow<std::size_t>(parseBytes(scalarText(entry.second, path), path), path);
      if (options.batch_max_bytes == 0) {
        throw ConfigError(fmt::format("{}: must be more than 0, such as 8MiB", path));
      }
    } else if (key == "flush_interval") {
      options.flush_interval =
          std::chrono::milliseconds(parseMilliseconds(scalarText(entry.second, path), path));
    } else if (key == "retry_initial") {
      options.retry_initial =
          std::chrono::milliseconds(parseMilliseconds(scalarText(entry.second, path), path));
      if (options.retry_initial.count() == 0) {
        throw ConfigError(fmt::format("{}: must be more than 0, such as 500ms", path));
      }
    } else if (key == "retry_max") {
      options.retry_max =
          std::chrono::milliseconds(parseMilliseconds(scalarText(entry.second, path), path));
    }
  }
  if (options.retry_max < options.retry_initial) {
    throw ConfigError(fmt::format("{}.retry_max ({} ms) is less than retry_initial ({} ms); raise "
                                  "retry_max or lower retry_initial",
                                  section, options.retry_max.count(),
                                  options.retry_initial.count()));
  }
  return options;
}

OutputRunner::OutputRunner(Store& store, std::unique_ptr<Output> output,
                           OutputRunnerOptions options, MetricsRegistry& metrics)
    : store_(store),
      output_(std::move(output)),
      name_(output_->name()),
      options_(options),
      retry_log_(kRetryLogInterval) {
  const std::string labels = fmt::format("output=\"{}\"", name_);
  metrics_.reset(new Metrics{
      metrics.counter("webtrap_collector_output_delivered_total",
                      "Events the output accepted", labels),
      metrics.counter("webtrap_collector_output_retried_total",
                      "Events sent again after a per-event retry result", labels),
      metrics.counter("webtrap_collector_output_dead_lettered_total",
                      "Events the output rejected, kept in the dead-letter store", labels),
      metrics.counter("webtrap_collector_output_failures_total",
                      "Batches that failed as a whole and were sent again", labels),
      metrics.gauge("webtrap_collector_output_queue_depth",
                    "Events stored after the output's cursor", labels),
      metrics.gauge("webtrap_collector_output_lag_seconds",
                    "Age by event time of the oldest event the output has not finished",
                    labels)});
  store_.registerOutput(name_);
  cursor_ = store_.cursor(name_);
}

OutputRunner::~OutputRunner() { stop(); }

void OutputRunner::start() {
  spdlog::info("output {}: started at seq {} ({} events queued)", name_, cursor_,
               std::max<std::int64_t>(0, store_.lastSeq() - cursor_));
  thread_ = std::thread([this] { run(); });
}

void OutputRunner::notify() {
  {
    std::lock_guard lock(mutex_);
    notified_ = true;
  }
  wake_.notify_one();
}

void OutputRunner::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !thread_.joinable()) {
      return;
    }
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
    spdlog::info("output {}: stopped at seq {}", name_, cursor());
  }
}

std::int64_t OutputRunner::cursor() const {
  std::lock_guard lock(mutex_);
  return cursor_;
}

void OutputRunner::run() {
  // Named for top -H and perf; Linux allows 15 characters.
  pthread_setname_np(pthread_self(), ("out-" + name_).substr(0, 15).c_str());
  // When the events of a batch that is not full were first seen, and when
  // the last of them arrived (the last seq then).
  bool pending = false;
  Clock::time_point first_pending;
  Clock::time_point last_arrival;
  std::int64_t pending_last_seq = 0;
  while (true) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) {
        break;
      }
    }

    // Every event up to this seq is committed, so an empty read past the
    // cursor means retention removed the events in between.
    const std::int64_t last_seq = store_.lastSeq();
    const std::int64_t from = cursor();
    std::vector<StoredEvent>& batch = batch_;
    // From here until endInFlight(), retention counts no event it removes
    // after the cursor as undelivered unless this runner leaves it
    // unfinished.
    store_.beginInFlight(name_, from);
    try {
      store_.readAfter(from, options_.batch_max_events, options_.batch_max_bytes, batch,
                       output_->originalForm());
    } catch (const std::exception& e) {
      store_.endInFlight(name_, {});
      logRetry(fmt::format("output {}: reading the store after seq {} failed: {}; retrying", name_,
                           from, e.what()));
      if (!sleepFor(options_.retry_initial)) {
        break;
      }
      continue;
    }
    if (batch.empty()) {
      store_.endInFlight(name_, {});
      if (last_seq > from) {
        advanceCursor(last_seq);
      }
      // Idle, so the cursor is written now: the next insert, which would
      // write a noted cursor, may be far off.
      persistCursor();
      updateGauges();
      pending = false;
      waitForEvents(Clock::now() + kIdleRefresh, 1);
      continue;
    }

    // An event whose original record went with a damaged batch cannot be
    // sent whole. The events before it are sent first; then it goes to the
    // dead-letter store, so that one damaged batch holds back nothing else.
    if (!batch.front().damage.empty()) {
      std::vector<std::int64_t> finished;
      for (const StoredEvent& event : batch) {
        if (event.damage.empty()) {
          break;
        }
        finished.push_back(event.seq);
      }
      const bool stored = deadLetterDamaged(batch);
      store_.endInFlight(name_, stored ? std::span<const std::int64_t>(finished)
                                       : std::span<const std::int64_t>());
      if (!stored) {
        break;
      }
      continue;
    }
    auto damaged = std::find_if(batch.begin(), batch.end(),
                                [](const StoredEvent& event) { return !event.damage.empty(); });
    if (damaged != batch.end()) {
      batch.erase(damaged, batch.end());
    }

    // A batch is full when it reached the event limit or when events stored
    // before the read were left out (the byte limit cut it). Otherwise wait
    // up to flush_interval from the first sight of these events, but only
    // while events keep arriving: once none came for a tenth of it (the end
    // of a burst, or a single probe batch), waiting longer only delays them.
    const bool full = batch.size() >= options_.batch_max_events || last_seq > batch.back().seq;
    if (!full) {
      const auto now = Clock::now();
      if (!pending) {
        pending = true;
        first_pending = now;
        last_arrival = now;
        pending_last_seq = last_seq;
      } else if (last_seq != pending_last_seq) {
        last_arrival = now;
        pending_last_seq = last_seq;
      }
      const auto deadline =
          std::min(addSaturated(first_pending, options_.flush_interval),
                   addSaturated(last_arrival, options_.flush_interval / kQuietShare));
      if (now < deadline) {
        // The batch is read again after the wait.
        store_.endInFlight(name_, {});
        updateGauges();
        waitForEvents(deadline, options_.batch_max_events);
        continue;
      }
    }
    pending = false;
    std::vector<std::int64_t> finished = sendBatch(batch);
    store_.endInFlight(name_, finished);
    updateGauges();
  }

  try {
    output_->flush();
  } catch (const std::exception& e) {
    spdlog::error("output {}: flush at stop failed: {}", name_, e.what());
  }
  persistCursor();
}

bool OutputRunner::deadLetterDamaged(const std::vector<StoredEvent>& batch) {
  std::vector<DeadLetter> letters;
  for (const StoredEvent& event : batch) {
    if (event.damage.empty()) {
      break;
    }
    letters.push_back(DeadLetter{0, name_, event.event_id,
                                 "the event's original record is lost: " + event.damage,
                                 wholeDocument(event), nowMs(), {}});
  }
  const std::int64_t first = batch.front().seq;
  const std::int64_t last = batch[letters.size() - 1].seq;
  try {
    store_.addDeadLetters(letters);
  } catch (const std::exception& e) {
    logRetry(fmt::format("output {}: storing the dead letters of {} events (seq {}-{}) failed: "
                         "{}; retrying",
                         name_, letters.size(), first, last, e.what()));
    return sleepFor(options_.retry_initial);
  }
  metrics_->dead_lettered.inc(letters.size());
  spdlog::error("output {}: dead-lettered {} events (seq {} to {}) whose original records are "
                "lost: {}",
                name_, letters.size(), first, last, batch.front().damage);
  advanceCursor(last);
  updateGauges();
  return true;
}

std::vector<std::int64_t> OutputRunner::sendBatch(std::vector<StoredEvent>& batch) {
  const std::int64_t batch_last = batch.back().seq;
  // The seqs of `batch` without those of `unfinished`, in order.
  auto finishedSeqs = [&batch](std::span<const StoredEvent> unfinished) {
    std::vector<std::int64_t> seqs;
    std::size_t next = 0;
    for (const StoredEvent& event : batch) {
      if (next < unfinished.size() && unfinished[next].seq == event.seq) {
        ++next;
        continue;
      }
      seqs.push_back(event.seq);
    }
    return seqs;
  };
  // The first attempt sends `batch` in place. Events to send again are
  // moved into `retry_events`, which later attempts send.
  std::vector<StoredEvent> retry_events;
  std::span<StoredEvent> remaining(batch);
  int attempt = 0;
  while (!remaining.empty()) {
    std::vector<ItemResult> results;
    try {
      results = output_->send(remaining);
    } catch (const TransientError& e) {
      metrics_->failures.inc();
      auto delay = backoffDelay(attempt++, e.retry_after_ms);
      logRetry(fmt::format("output {}: sending {} events (seq {}-{}) failed: {}; retrying in {} ms",
                           name_, remaining.size(), remaining.front().seq, remaining.back().seq,
                           e.what(), delay.count()));
      if (!sleepFor(delay)) {
        return finishedSeqs(remaining);
      }
      continue;
    } catch (const std::exception& e) {
      // An output should throw only TransientError. Anything else is a bug
      // or an unexpected condition: retry the batch rather than lose it.
      metrics_->failures.inc();
      auto delay = backoffDelay(attempt++, 0);
      spdlog::error("output {}: sending {} events (seq {}-{}) failed with an unexpected error: {}; "
                    "retrying in {} ms",
                    name_, remaining.size(), remaining.front().seq, remaining.back().seq, e.what(),
                    delay.count());
      if (!sleepFor(delay)) {
        return finishedSeqs(remaining);
      }
      continue;
    }
    if (results.size() != remaining.size()) {
      metrics_->failures.inc();
      auto delay = backoffDelay(attempt++, 0);
      spdlog::error("output {}: send() returned {} results for {} events; retrying the batch in {} "
                    "ms",
                    name_, results.size(), remaining.size(), delay.count());
      if (!sleepFor(delay)) {
        return finishedSeqs(remaining);
      }
      continue;
    }

    std::vector<StoredEvent> again;
    std::vector<DeadLetter> letters;
    std::vector<std::size_t> rejected;
    std::string first_reason;
    for (std::size_t i = 0; i < remaining.size(); ++i) {
      StoredEvent& event = remaining[i];
      const ItemResult& result = results[i];
      switch (result.delivery) {
        case Delivery::kDelivered:
          metrics_->delivered.inc();
          break;
        case Delivery::kRejected:
          letters.push_back(
              DeadLetter{0, name_, event.event_id, result.reason, wholeDocument(event), nowMs(), {}});
          rejected.push_back(i);
          break;
        case Delivery::kRetry:
          metrics_->retried.inc();
          if (first_reason.empty()) {
            first_reason = result.reason;
          }
          again.push_back(std::move(event));
          break;
      }
    }
    if (!letters.empty()) {
      try {
        store_.addDeadLetters(letters);
        metrics_->dead_lettered.inc(letters.size());
      } catch (const std::exception& e) {
        // Without their dead letters the events are not finished: send them
        // again, so they are rejected (and recorded) on a later attempt.
        spdlog::error("output {}: storing {} dead letters (first event {}) failed: {}", name_,
                      letters.size(), letters.front().event_id, e.what());
        for (std::size_t i : rejected) {
          again.push_back(std::move(remaining[i]));
        }
        std::sort(again.begin(), again.end(),
                  [](const StoredEvent& a, const StoredEvent& b) { return a.seq < b.seq; });
      }
    }

    // Everything before the first unfinished event is finished.
    advanceCursor(again.empty() ? batch_last : again.front().seq - 1);
    retry_events = std::move(again);
    remaining = retry_events;
    if (remaining.empty()) {
      break;
    }
    auto delay = backoffDelay(attempt++, 0);
    logRetry(fmt::format("output {}: {} events to retry (first reason: {}); retrying in {} ms",
                         name_, remaining.size(), first_reason.empty() ? "none given" : first_reason,
                         delay.count()));
    updateGauges();
    if (!sleepFor(delay)) {
      return finishedSeqs(remaining);
    }
  }
  return finishedSeqs({});
}

bool OutputRunner::waitForEvents(Clock::time_point deadline, std::size_t min_events) {
  std::unique_lock lock(mutex_);
  return wake_.wait_until(lock, deadline, [&] {
    if (stopping_) {
      return true;
    }
    if (!notified_) {
      return false;
    }
    notified_ = false;
    return store_.lastSeq() - cursor_ >= static_cast<std::int64_t>(min_events);
  });
}

bool OutputRunner::sleepFor(std::chrono::milliseconds delay) {
  // wait_for would add `delay` to the clock's time and wrap around past
  // about 292 years, so a huge retry_max could end the wait at once.
  const auto deadline = addSaturated(Clock::now(), delay);
  std::unique_lock lock(mutex_);
  wake_.wait_until(lock, deadline, [this] { return stopping_; });
  return !stopping_;
}

std::chrono::milliseconds OutputRunner::backoffDelay(int attempt, std::int64_t retry_after_ms) {
  // Full jitter: uniform in [0, min(retry_max, retry_initial * 2^attempt)].
  const int shift = std::min(attempt, 30);
  const std::int64_t initial = options_.retry_initial.count();
  const std::int64_t max = options_.retry_max.count();
  std::int64_t ceiling = initial > (max >> shift) ? max : initial << shift;
  ceiling = std::max<std::int64_t>(ceiling, 1);

  thread_local std::mt19937_64 generator{std::random_device{}()};
  std::uniform_int_distribution<std::int64_t> distribution(0, ceiling);
  std::int64_t delay = distribution(generator);
  delay = std::max(delay, std::min(retry_after_ms, kMaxRetryAfterMs));
  return std::chrono::milliseconds(delay);
}

void OutputRunner::advanceCursor(std::int64_t seq) {
  {
    std::lock_guard lock(mutex_);
    if (seq <= cursor_) {
      return;
    }
    cursor_ = seq;
  }
  try {
    // Without waiting: an insert's commit can hold the store for
    // milliseconds, and the output would wait for it after every send.
    store_.noteCursor(name_, seq);
  } catch (const std::exception& e) {
    // The runner goes on from its own cursor. After a crash it would resend
    // from the last persisted one, which outputs tolerate (at-least-once).
    spdlog::error("output {}: persisting the cursor at seq {} failed: {}", name_, seq, e.what());
  }
}

void OutputRunner::persistCursor() {
  try {
    store_.flushCursors();
  } catch (const std::exception& e) {
    spdlog::error("output {}: persisting the cursor at seq {} failed: {}", name_, cursor(),
                  e.what());
  }
}

void OutputRunner::updateGauges() {
  const std::int64_t from = cursor();
  metrics_->queue_depth.set(std::max<std::int64_t>(0, store_.lastSeq() - from));
  try {
    std::optional<std::int64_t> oldest = store_.timestampAfter(from);
    std::int64_t lag_ms = oldest ? std::max<std::int64_t>(0, nowMs() - *oldest) : 0;
    metrics_->lag_seconds.set(lag_ms / 1000);
  } catch (const std::exception& e) {
    spdlog::warn("output {}: reading the oldest event time failed: {}", name_, e.what());
  }
}

void OutputRunner::logRetry(const std::string& message) {
  if (!retry_log_.admit()) {
    return;
  }
  std::uint64_t suppressed = retry_log_.takeSuppressed();
  if (suppressed > 0) {
    spdlog::warn("{} ({} similar messages suppressed)", message, suppressed);
  } else {
    spdlog::warn("{}", message);
  }
}

}  // namespace webtrap::collector
