#include "common/metrics.h"

#include <map>
#include <vector>

#include <fmt/format.h>

namespace webtrap {

std::string escapeLabelValue(std::string_view value) {
  std::string escaped;
  for (char c : value) {
    if (c == '\\' || c == '"') {
      escaped += '\\';
      escaped += c;
    } else if (c == '\n') {
      escaped += "\\n";
    } else {
      escaped += c;
    }
  }
  return escaped;
}

Counter& MetricsRegistry::counter(std::string_view name, std::string_view help,
                                  std::string_view labels) {
  return add(name, help, labels, true).counter;
}

Gauge& MetricsRegistry::gauge(std::string_view name, std::string_view help,
                              std::string_view labels) {
  return add(name, help, labels, false).gauge;
}

MetricsRegistry::Entry& MetricsRegistry::add(std::string_view name, std::string_view help,
                                             std::string_view labels, bool is_counter) {
  std::lock_guard lock(mutex_);
  for (auto& entry : entries_) {
    if (entry.name == name && entry.labels == labels) {
      return entry;
    }
  }
  auto& entry = entries_.emplace_back();
  entry.name = name;
  entry.help = help;
  entry.labels = labels;
  entry.is_counter = is_counter;
  return entry;
}

std::string MetricsRegistry::render() const {
  std::lock_guard lock(mutex_);

  // The format wants one HELP and TYPE block per name, with every label set
  // of that name beneath it.
  std::map<std::string, std::vector<const Entry*>> by_name;
  for (const auto& entry : entries_) {
    by_name[entry.name].push_back(&entry);
  }

  std::string out;
  for (const auto& [name, group] : by_name) {
    const Entry& first = *group.front();
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, first.help,
                   name, first.is_counter ? "counter" : "gauge");
    for (const Entry* entry : group) {
      std::string value = entry->is_counter ? std::to_string(entry->counter.value())
                                            : std::to_string(entry->gauge.value());
      if (entry->labels.empty()) {
        fmt::format_to(std::back_inserter(out), "{} {}\n", name, value);
      } else {
        fmt::format_to(std::back_inserter(out), "{}{{{}}} {}\n", name, entry->labels, value);
      }
    }
  }
  return out;
}

}  // namespace webtrap
