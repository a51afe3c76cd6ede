#include "collector/retention.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace webtrap::collector {
namespace {

std::int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

RetentionTask::RetentionTask(Store& store, MetricsRegistry& metrics,
                             std::chrono::milliseconds interval)
    : store_(store),
      metrics_(metrics),
      interval_(interval),
      removed_(metrics.counter("webtrap_collector_retention_removed_total",
                               "Events removed from the store by the age or size limit")),
      dead_letters_removed_(metrics.counter(
          "webtrap_collector_retention_dead_letters_removed_total",
          "Dead letters removed because they passed a tenth of store.retention.max_size")),
      errors_(metrics.counter("webtrap_collector_retention_errors_total",
                              "Retention runs that failed")) {
  // Start the counters from the totals in the store, so they keep counting
  // across restarts. The registry is fresh at start, so its values are 0.
  RetentionSummary totals = store_.retentionTotals();
  if (removed_.value() < totals.removed) {
    removed_.inc(totals.removed - removed_.value());
  }
  if (dead_letters_removed_.value() < totals.dead_letters_removed) {
    dead_letters_removed_.inc(totals.dead_letters_removed - dead_letters_removed_.value());
  }
  for (const auto& [output, count] : totals.removed_undelivered) {
    Counter& counter = undeliveredCounter(output);
    if (counter.value() < count) {
      counter.inc(count - counter.value());
    }
  }
}

RetentionTask::~RetentionTask() { stop(); }

Counter& RetentionTask::undeliveredCounter(const std::string& output) {
  auto it = undelivered_.find(output);
  if (it != undelivered_.end()) {
    return *it->second;
  }
  Counter& counter = metrics_.counter(
      "webtrap_collector_retention_removed_undelivered_total",
      "Events removed by the retention limits before this output delivered them",
      fmt::format("output=\"{}\"", output));
  undelivered_.emplace(output, &counter);
  return counter;
}

void RetentionTask::start() {
  spdlog::info("retention: started, every {} ms", interval_.count());
  thread_ = std::thread([this] {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      lock.unlock();
      runOnce(nowMs());
      lock.lock();
      wake_.wait_for(lock, interval_, [this] { return stopping_; });
    }
  });
}

void RetentionTask::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) {
      return;
    }
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
    spdlog::info("retention: stopped");
  }
}

RetentionSummary RetentionTask::runOnce(std::int64_t now_ms) {
  std::lock_guard run_lock(run_mutex_);
  RetentionSummary summary;
  try {
    summary = store_.enforceRetention(now_ms);
  } catch (const std::exception& e) {
    errors_.inc();
    spdlog::error("retention: removing old events failed: {}", e.what());
    return summary;
  }
  removed_.inc(summary.removed);
  dead_letters_removed_.inc(summary.dead_letters_removed);
  if (summary.dead_letters_removed > 0) {
    spdlog::warn(
        "retention: removed the {} oldest dead letters, because dead letters may take "
        "a tenth of store.retention.max_size",
        summary.dead_letters_removed);
  }
  for (const auto& [output, count] : summary.removed_undelivered) {
    undeliveredCounter(output).inc(count);
  }
  for (const auto& [output, count] : summary.late_undelivered) {
    undeliveredCounter(output).inc(count);
  }
  if (summary.removed > 0) {
    std::string undelivered;
    for (const auto& [output, count] : summary.removed_undelivered) {
      undelivered += fmt::format(" {}={}", output, count);
    }
    if (summary.removed_undelivered.empty()) {
      spdlog::info("retention: removed {} events; every output had delivered them",
                   summary.removed);
    } else {
      spdlog::warn("retention: removed {} events; not yet delivered by:{}", summary.removed,
                   undelivered);
    }
  }
  return summary;
}

}  // namespace webtrap::collector
