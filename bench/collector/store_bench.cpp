// Measures the SQLite store alone: insert throughput in batches, readAfter
// throughput, both at once (one reader following the writers, as an output
// runner does), and an OutputRunner draining the store into the NDJSON
// output. Not part of the build or the test suite.
//
// Build and run from the source folder:
//   c++ -O2 -std=c++20 -Isrc bench/collector/store_bench.cpp src/collector/store.cpp \
//       src/collector/output_runner.cpp src/collector/ndjson_output.cpp \
//       src/common/metrics.cpp src/common/config_values.cpp \
//       -lsqlite3 -lspdlog -lfmt -lyaml-cpp -pthread -o /tmp/store_bench
//   /tmp/store_bench --dir /tmp/store-bench --events 200000 --batch 500 \
//       --synchronous full --writers 2
//
// Documents are random JSON of 1.5 to 5 KB (3.25 KB on average), generated
// before the clock starts. Event ids are time-ordered, like the UUIDv7 ids
// the probe writes.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>

#include <spdlog/spdlog.h>

#include "collector/ndjson_output.h"
#include "collector/output_runner.h"
#include "collector/store.h"

using webtrap::collector::NdjsonOutput;
using webtrap::collector::NdjsonOutputOptions;
using webtrap::collector::NewEvent;
using webtrap::collector::OutputRunner;
using webtrap::collector::OutputRunnerOptions;
using webtrap::collector::Store;
using webtrap::collector::StoreOptions;
using Clock = std::chrono::steady_clock;

namespace {

struct Settings {
  std::filesystem::path dir = "/tmp/webtrap-store-bench";
  std::size_t events = 200000;
  std::size_t batch = 500;
  std::string synchronous = "full";
  int writers = 1;
  // Documents are 0.46 to 1.54 times this size, uniformly (1,500 to 5,000
  // bytes at the default).
  std::size_t doc_bytes = 3250;
};

Settings parseArguments(int argc, char** argv) {
  Settings settings;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string key = argv[i];
    std::string value = argv[i + 1];
    if (key == "--dir") {
      settings.dir = value;
    } else if (key == "--events") {
      settings.events = std::stoul(value);
    } else if (key == "--batch") {
      settings.batch = std::stoul(value);
    } else if (key == "--synchronous") {
      settings.synchronous = value;
    } else if (key == "--writers") {
      settings.writers = std::stoi(value);
    } else if (key == "--doc-bytes") {
      settings.doc_bytes = std::stoul(value);
    } else {
      std::fprintf(stderr, "unknown option %s\n", key.c_str());
      std::exit(2);
    }
  }
  return settings;
}

std::vector<NewEvent> makeEvents(std::size_t count, std::uint64_t seed, std::size_t doc_bytes) {
  std::mt19937_64 random(seed);
  std::uniform_int_distribution<std::size_t> size_distribution(doc_bytes * 1500 / 3250,
                                                               doc_bytes * 5000 / 3250);
  const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/=&?%";
  std::vector<NewEvent> events(count);
  for (std::size_t i = 0; i < count; ++i) {
    NewEvent& event = events[i];
    char id[64];
    std::snprintf(id, sizeof id, "0193a0b4-%04zx-7%03zx-8%03x-%012llx", (i >> 24) & 0xffff,
                  (i >> 12) & 0xfff, static_cast<unsigned>(seed & 0xfff),
                  static_cast<unsigned long long>(i));
    event.event_id = id;
    event.timestamp_ms = 1764849600000LL + static_cast<std::int64_t>(i);
    event.sensor_id = "sensor-" + std::to_string(i % 8);
    event.source_ip = "203.0.113." + std::to_string(i % 250);
    std::size_t size = size_distribution(random);
    event.document = "{\"event\":{\"id\":\"" + event.event_id + "\"},\"http\":{\"body\":\"";
    while (event.document.size() + 3 < size) {
      event.document.push_back(alphabet[random() % (sizeof alphabet - 1)]);
    }
    event.document += "\"}}";
  }
  return events;
}

double seconds(Clock::duration duration) {
  return std::chrono::duration<double>(duration).count();
}

// CPU seconds (user + system) of the whole process so far.
double cpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  Settings settings = parseArguments(argc, argv);
  spdlog::set_level(spdlog::level::warn);
  std::filesystem::remove_all(settings.dir);

  StoreOptions options;
  options.path = settings.dir / "store.sqlite";
  options.synchronous = settings.synchronous;
  options.retention_max_age_ms = 0;
  options.retention_max_bytes = 0;

  std::vector<NewEvent> events = makeEvents(settings.events, 1, settings.doc_bytes);
  std::size_t total_bytes = 0;
  for (const auto& event : events) {
    total_bytes += event.document.size();
  }
  std::printf("%zu events, %.1f MiB of documents, batches of %zu, synchronous=%s, %d writer(s)\n",
              settings.events, total_bytes / 1048576.0, settings.batch,
              settings.synchronous.c_str(), settings.writers);

  Store store(options);

  // Phase 1: writers only. Each writer takes every writers-th batch.
  auto insert_all = [&](const std::vector<NewEvent>& source) {
    std::vector<std::thread> threads;
    for (int w = 0; w < settings.writers; ++w) {
      threads.emplace_back([&, w] {
        for (std::size_t start = w * settings.batch; start < source.size();
             start += settings.batch * settings.writers) {
          std::size_t count = std::min(settings.batch, source.size() - start);
          store.insert(std::span<const NewEvent>(source.data() + start, count));
        }
      });
    }
    for (auto& thread : threads) {
      thread.join();
    }
  };
  auto started = Clock::now();
  double cpu_started = cpuSeconds();
  insert_all(events);
  double insert_seconds = seconds(Clock::now() - started);
  double insert_cpu = cpuSeconds() - cpu_started;
  std::printf("insert:            %8.0f events/s  %6.1f MiB/s  (%.2f s, %.2f CPU s, %.1f us CPU/event)\n",
              settings.events / insert_seconds, total_bytes / 1048576.0 / insert_seconds,
              insert_seconds, insert_cpu, insert_cpu * 1e6 / settings.events);

  // Phase 2: one reader over everything, in output-sized batches.
  started = Clock::now();
  cpu_started = cpuSeconds();
  std::int64_t cursor = 0;
  std::size_t read = 0;
  while (true) {
    auto batch = store.readAfter(cursor, 1000, 8u << 20);
    if (batch.empty()) {
      break;
    }
    read += batch.size();
    cursor = batch.back().seq;
  }
  double read_seconds = seconds(Clock::now() - started);
  double read_cpu = cpuSeconds() - cpu_started;
  std::printf("readAfter:         %8.0f events/s  %6.1f MiB/s  (%.2f s, %.1f us CPU/event, %zu events)\n",
              read / read_seconds, total_bytes / 1048576.0 / read_seconds, read_seconds,
              read_cpu * 1e6 / read, read);

  // Phase 3: writers and one reader at once, as in the collector.
  std::vector<NewEvent> more = makeEvents(settings.events, 2, settings.doc_bytes);
  const std::int64_t target = store.lastSeq() + static_cast<std::int64_t>(more.size());
  started = Clock::now();
  cpu_started = cpuSeconds();
  std::thread reader([&] {
    while (cursor < target) {
      auto batch = store.readAfter(cursor, 1000, 8u << 20);
      if (batch.empty()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
      cursor = batch.back().seq;
    }
  });
  insert_all(more);
  double write_done = seconds(Clock::now() - started);
  reader.join();
  double both_seconds = seconds(Clock::now() - started);
  double both_cpu = cpuSeconds() - cpu_started;
  std::printf("insert + reader:   %8.0f events/s stored (%.2f s), reader done after %.2f s "
              "(%.1f us CPU/event, both)\n",
              settings.events / write_done, write_done, both_seconds,
              both_cpu * 1e6 / settings.events);
  // Phase 4: an output runner with default batching drains everything into
  // the NDJSON output, which fsyncs each batch.
  NdjsonOutputOptions ndjson;
  ndjson.path = settings.dir / "events.ndjson";
  ndjson.rotate_size = 0;
  webtrap::MetricsRegistry metrics;
  OutputRunner runner(store, std::make_unique<NdjsonOutput>(ndjson), OutputRunnerOptions{},
                      metrics);
  const std::int64_t last = store.lastSeq();
  started = Clock::now();
  cpu_started = cpuSeconds();
  runner.start();
  while (runner.cursor() < last) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  double drain_seconds = seconds(Clock::now() - started);
  double drain_cpu = cpuSeconds() - cpu_started;
  runner.stop();
  std::printf("runner -> ndjson:  %8.0f events/s  (%.2f s, %.1f us CPU/event, %lld events)\n",
              last / drain_seconds, drain_seconds, drain_cpu * 1e6 / last,
              static_cast<long long>(last));

  std::printf("file size: %.1f MiB for %.1f MiB of documents\n",
              std::filesystem::file_size(options.path) / 1048576.0,
              store.sizeBytes() / 1048576.0);
  return 0;
}
