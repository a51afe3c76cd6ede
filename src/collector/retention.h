// Runs Store::enforceRetention() on a timer and exposes what it removed.
//
// Metrics: webtrap_collector_retention_removed_total and
// webtrap_collector_retention_removed_undelivered_total{output="NAME"}.
// Both start from the totals kept in the store, so they survive restarts.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "collector/store.h"
#include "common/metrics.h"

namespace webtrap::collector {

class RetentionTask {
 public:
  RetentionTask(Store& store, MetricsRegistry& metrics,
                std::chrono::milliseconds interval = std::chrono::minutes(1));
  ~RetentionTask();  // calls stop()

  RetentionTask(const RetentionTask&) = delete;
  RetentionTask& operator=(const RetentionTask&) = delete;

  // Starts a thread that calls runOnce() now and then every interval.
  void start();
  void stop();

  // Enforces retention once and updates the counters. Errors are logged and
  // counted in webtrap_collector_retention_errors_total, not thrown.
  RetentionSummary runOnce(std::int64_t now_ms);

 private:
  Counter& undeliveredCounter(const std::string& output);

  Store& store_;
  MetricsRegistry& metrics_;
  std::chrono::milliseconds interval_;
  Counter& removed_;
  Counter& dead_letters_removed_;
  Counter& errors_;
  std::mutex run_mutex_;  // serializes runOnce() and guards undelivered_
  std::map<std::string, Counter*> undelivered_;

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace webtrap::collector
