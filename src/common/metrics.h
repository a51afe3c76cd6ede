// Counters and gauges exposed in the Prometheus text format.
//
// Each component declares its metrics once, in one list, and keeps the
// returned references: updates are lock-free atomics.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>

namespace webtrap {

class Counter {
 public:
  void inc(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class Gauge {
 public:
  void set(std::int64_t v) { value_.store(v, std::memory_order_relaxed); }
  void add(std::int64_t n) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> value_{0};
};

// Owns every metric of a process. Metrics live as long as the registry, and
// their addresses never change.
class MetricsRegistry {
 public:
  // `name` follows Prometheus naming (webtrap_<thing>_total for counters).
  // `labels` is the label set in text form, such as `listener="web"`, or empty.
  Counter& counter(std::string_view name, std::string_view help, std::string_view labels = {});
  Gauge& gauge(std::string_view name, std::string_view help, std::string_view labels = {});

  // Renders every metric in the Prometheus text exposition format 0.0.4.
  std::string render() const;

 private:
  struct Entry {
    std::string name;
    std::string help;
    std::string labels;
    bool is_counter = true;
    Counter counter;
    Gauge gauge;
  };

  Entry& add(std::string_view name, std::string_view help, std::string_view labels,
             bool is_counter);

  mutable std::mutex mutex_;
  std::deque<Entry> entries_;  // deque keeps element addresses stable
};

// Returns `value` escaped for a label value in the text format (backslash,
// double quote and newline), because sensor ids and paths may contain them.
std::string escapeLabelValue(std::string_view value);

}  // namespace webtrap
