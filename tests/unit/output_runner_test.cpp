#include "collector/output_runner.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>

#include "common/error.h"
#include "common/gzip.h"

namespace webtrap::collector {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// An output whose results come from a test-provided handler. It records the
// seqs and the time of each call.
class FakeOutput : public Output {
 public:
  using Handler = std::function<std::vector<ItemResult>(std::span<const StoredEvent>, int call)>;

  FakeOutput(std::string name, Handler handler)
      : name_(std::move(name)), handler_(std::move(handler)) {}

  std::string_view name() const override { return name_; }

  std::vector<ItemResult> send(std::span<const StoredEvent> batch) override {
    int call = 0;
    {
      std::lock_guard lock(mutex_);
      std::vector<std::int64_t> seqs;
      for (const auto& event : batch) {
        seqs.push_back(event.seq);
      }
      calls_.push_back(seqs);
      call_times_.push_back(Clock::now());
      call = static_cast<int>(calls_.size()) - 1;
    }
    return handler_(batch, call);
  }

  void flush() override { flushed_ = true; }

  OriginalForm originalForm() const override { return form_; }
  void setOriginalForm(OriginalForm form) { form_ = form; }

  std::vector<std::vector<std::int64_t>> calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }
  std::vector<Clock::time_point> callTimes() const {
    std::lock_guard lock(mutex_);
    return call_times_;
  }
  bool flushed() const { return flushed_; }

 private:
  std::string name_;
  Handler handler_;
  OriginalForm form_ = OriginalForm::kWhole;
  mutable std::mutex mutex_;
  std::vector<std::vector<std::int64_t>> calls_;
  std::vector<Clock::time_point> call_times_;
  std::atomic<bool> flushed_{false};
};

std::vector<ItemResult> allDelivered(std::span<const StoredEvent> batch) {
  return std::vector<ItemResult>(batch.size());
}

bool waitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (condition()) {
      return true;
    }
    std::this_thread::sleep_for(5ms);
  }
  return condition();
}

std::vector<NewEvent> makeEvents(const std::string& prefix, int count,
                                 std::int64_t timestamp_ms = 1000) {
  std::vector<NewEvent> events;
  for (int i = 0; i < count; ++i) {
    NewEvent event;
    event.event_id = prefix + std::to_string(i);
    event.timestamp_ms = timestamp_ms;
    event.sensor_id = "s1";
    event.source_ip = "198.51.100.4";
    event.document = "{\"id\":\"" + event.event_id + "\"}";
    events.push_back(event);
  }
  return events;
}

class OutputRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("webtrap-runner-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    StoreOptions options;
    options.path = dir_ / "store.sqlite";
    options.synchronous = "normal";
    store_ = std::make_unique<Store>(options);
    runner_options_.batch_max_events = 100;
    runner_options_.flush_interval = 10ms;
    runner_options_.retry_initial = 10ms;
    runner_options_.retry_max = 40ms;
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }

  std::uint64_t counter(const std::string& name, const std::string& output) {
    return metrics_.counter(name, "", "output=\"" + output + "\"").value();
  }
  std::int64_t gauge(const std::string& name, const std::string& output) {
    return metrics_.gauge(name, "", "output=\"" + output + "\"").value();
  }

  fs::path dir_;
  std::unique_ptr<Store> store_;
  MetricsRegistry metrics_;
  OutputRunnerOptions runner_options_;
};

TEST_F(OutputRunnerTest, RetriesOnlyRetryItems) {
  store_->insert(makeEvents("e", 10));
  std::int64_t cursor_at_second_call = -1;
  auto output = std::make_unique<FakeOutput>("fake", [&](auto batch, int call) {
    std::vector<ItemResult> results(batch.size());
    if (call == 0) {
      results[2] = {Delivery::kRetry, "es_rejected_execution_exception"};
      results[6] = {Delivery::kRetry, "es_rejected_execution_exception"};
    } else if (call == 1) {
      cursor_at_second_call = store_->cursor("fake");
    }
    return results;
  });
  FakeOutput* fake = output.get();
  OutputRunner runner(*store_, std::move(output), runner_options_, metrics_);
  runner.start();
  ASSERT_TRUE(waitUntil([&] { return runner.cursor() == 10; }));
  runner.stop();

  auto calls = fake->calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].size(), 10u);
  std::vector<std::int64_t> retried = {3, 7};
  EXPECT_EQ(calls[1], retried);
  // The cursor stopped before the first unfinished event.
  EXPECT_EQ(cursor_at_second_call, 2);
  EXPECT_EQ(store_->cursor("fake"), 10);
  EXPECT_EQ(counter("webtrap_collector_output_delivered_total", "fake"), 10u);
  EXPECT_EQ(counter("webtrap_collector_output_retried_total", "fake"), 2u);
  EXPECT_EQ(counter("webtrap_collector_output_dead_lettered_total", "fake"), 0u);
  EXPECT_TRUE(fake->flushed());
}

TEST_F(OutputRunnerTest, RejectedGoesToDeadLetters) {
  store_->insert(makeEvents("r", 4));
  auto output = std::make_unique<FakeOutput>("fake", [](auto batch, int) {
    std::vector<ItemResult> results(batch.size());
    results[1] = {Delivery::kRejected, "mapper_parsing_exception: failed to parse [http]"};
    return results;
  });
  OutputRunner runner(*store_, std::move(output), runner_options_, metrics_);
  runner.start();
  ASSERT_TRUE(waitUntil([&] { return runner.cursor() == 4; }));
  runner.stop();

  ASSERT_EQ(store_->deadLetterCount(), 1u);
  DeadLetter letter = store_->deadLetters(1).at(0);
  EXPECT_EQ(letter.output, "fake");
  EXPECT_EQ(letter.event_id, "r1");
  EXPECT_EQ(letter.reason, "mapper_parsing_exception: failed to parse [http]");
  EXPECT_EQ(letter.payload, "{\"id\":\"r1\"}");
  EXPECT_EQ(counter("webtrap_collector_output_dead_lettered_total", "fake"), 1u);
  EXPECT_EQ(counter("webtrap_collector_output_delivered_total", "fake"), 3u);
}

// Stores `count` events whose originals are kept in one gzip batch, the
// lines {"n":0} to {"n":count-1}.
void insertBatch(Store& store, const std::string& prefix, int count) {
  std::string text;
  std::vector<NewEvent> events = makeEvents(prefix, count);
  for (int i = 0; i < count; ++i) {
    std::string line = "{\"n\":" + std::to_string(i) + "}";
    NewEvent& event = events[i];
    event.original_at = event.document.size() - 1;
    event.original_offset = text.size();
    event.original_length = line.size();
    text += line + "\n";
  }
  const std::string gzip = gzipCompress(text, 1);
  const OriginalBatch batch{gzip, text.size(), {}};
  store.insert(events, {}, nullptr, &batch);
}

TEST_F(OutputRunnerTest, DamagedBatchDeadLettersOnlyItsEvents) {
  insertBatch(*store_, "a", 3);  // seq 1-3
  insertBatch(*store_, "b", 3);  // seq 4-6, damaged below
  insertBatch(*store_, "c", 3);  // seq 7-9
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(store_->path().c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "DELETE FROM batches WHERE first_seq = 4", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);

  std::mutex mutex;
  std::vector<std::string> sent;
  auto output = std::make_unique<FakeOutput>("fake", [&](auto batch, int) {
    std::lock_guard lock(mutex);
    for (const StoredEvent& event : batch) {
      sent.push_back(event.document);
    }
    return std::vector<ItemResult>(batch.size());
  });
  OutputRunner runner(*store_, std::move(output), runner_options_, metrics_);
  runner.start();
  ASSERT_TRUE(waitUntil([&] { return runner.cursor() == 9; }));
  runner.stop();

  std::vector<std::string> expected;
  for (const std::string prefix : {"a", "c"}) {
    for (int i = 0; i < 3; ++i) {
      expected.push_back("{\"id\":\"" + prefix + std::to_string(i) + "\",\"original\":\"{\\\"n\\\":" +
                         std::to_string(i) + "}\"}");
    }
  }
  EXPECT_EQ(sent, expected);
  ASSERT_EQ(store_->deadLetterCount(), 3u);
  DeadLetter letter = store_->deadLetters(3).back();
  EXPECT_EQ(letter.event_id, "b0");
  EXPECT_EQ(letter.payload, "{\"id\":\"b0\"}");
  EXPECT_NE(letter.reason.find("original record is lost"), std::string::npos) << letter.reason;
  EXPECT_NE(letter.reason.find("batch 4"), std::string::npos) << letter.reason;
  EXPECT_EQ(counter("webtrap_collector_output_dead_lettered_total", "fake"), 3u);
  EXPECT_EQ(counter("webtrap_collector_output_delivered_total", "fake"), 6u);
}

TEST_F(OutputRunnerTest, OriginalsApartDeadLetterWhole) {
  insertBatch(*store_, "p", 3);
  std::mutex mutex;
  std::vector<std::string> stripped;
  std::vector<std::string> whole;
  auto output = std::make_unique<FakeOutput>("fake", [&](auto batch, int) {
    std::lock_guard lock(mutex);
    std::vector<ItemResult> results(batch.size());
    for (std::size_t i = 0; i < batch.size(); ++i) {
      stripped.push_back(batch[i].document);
      whole.push_back(wholeDocument(batch[i]));
      if (batch[i].event_id == "p1") {
        results[i] = {Delivery::kRejected, "mapping error"};
      }
    }
    return results;
  });
  output->setOriginalForm(OriginalForm::kApart);
  OutputRunner runner(*store_, std::move(output), runner_options_, metrics_);
  runner.start();
  ASSERT_TRUE(waitUntil([&] { return runner.cursor() == 3; }));
  runner.stop();

  std::vector<std::string> expected_stripped;
  std::vector<std::string> expected_whole;
  for (int i = 0; i < 3; ++i) {
    const std::string id = "p" + std::to_string(i);
    expected_stripped.push_back("{\"id\":\"" + id + "\"}");
    expected_whole.push_back("{\"id\":\"" + id + "\",\"original\":\"{\\\"n\\\":" +
                             std::to_string(i) + "}\"}");
  }
  EXPECT_EQ(stripped, expected_stripped);
  EXPECT_EQ(whole, expected_whole);
  // The dead-letter store keeps the whole document, original included.
  ASSERT_EQ(store_->deadLetterCount(), 1u);
  DeadLetter letter = store_->deadLetters(1).back();
  EXPECT_EQ(letter.event_id, "p1");
  EXPECT_EQ(letter.payload, expected_whole[1]);
}

TEST_F(OutputRunnerTest, TransientErrorBacksOffAndResends) {
  store_->insert(makeEvents("t", 5));
  auto output = std::make_unique<FakeOutput>("fake", [](auto batch, int call) {
    if (call < 2) {
      throw TransientError("HTTP 429 Too Many Requests", 150);
    }
    return allDelivered(batch);
  });
  FakeOutput* fake = output.get();
  OutputRunner runner(*store_, std::move(output), runner_options_, metrics_);
  runner.start();
  ASSERT_TRUE(waitUntil([&] { return runner.cursor() == 5; }));
  runner.stop();

  auto calls = fake->calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0], calls[1]);
  EXPECT_EQ(calls[1], calls[2]);
  auto times = fake->callTimes();
  // retry_after_ms of 150 outweighs retry_max of 40 ms.
  EXPECT_GE(times[1] - times[0], 150ms);
  EXPECT_GE(times[2] - times[1], 150ms);
  EXPECT_EQ(counter("webtrap_collector_output_failures_total", "fake"), 2u);
  EXPECT_EQ(counter("webtrap_collector_output_delivered_total", "fake"), 5u);
}

TEST_F(OutputRunnerTest, NewRunnerResumesAfterCursor) {
  store_->insert(makeEvents("a", 5));
  {
    OutputRunner runner(*store_, std::make_unique<FakeOutput>("fake", [](auto b, int) {
                          return allDelivered(b);
                        }),
                        runner_options_, metrics_);
    runner.start();
    ASSERT_TRUE(waitUntil([&] { return runner.cursor() == 5; }));
  }
  EXPECT_EQ(store_->cursor("fake"), 5);

  store_->insert(makeEvents("b", 5));
  auto output = std::make_unique<FakeOutput>("fake", [](auto b, int) { return allDelivered(b); });
  FakeOutput* fake = output.get();
  OutputRunner runner(*store_, std::move(output), runner_options_, metrics_);
  EXPECT_EQ(runner.cursor(), 5);
  runner.start();
  ASSERT_TRUE(waitUntil([&] { return runner.cursor() == 10; }));
  runner.stop();
  auto calls = fake->calls();
  ASSERT_EQ(calls.size(), 1u);
  std::vector<std::int64_t> expected = {6, 7, 8, 9, 10};
  EXPECT_EQ(calls[0], expected);
}

TEST_F(OutputRunnerTest, TwoOutputsAtDifferentPaces) {
  store_->insert(makeEvents("p", 30));
  auto fast_output =
      std::make_unique<FakeOutput>("fast", [](auto b, int) { return allDelivered(b); });
  auto slow_output = std::make_unique<FakeOutput>("slow", [](auto b, int) {
    std::this_thread::sleep_for(30ms);
    return allDelivered(b);
  });
  FakeOutput* fast = fast_output.get();
  FakeOutput* slow = slow_output.get();
  OutputRunnerOptions slow_options = runner_options_;
  slow_options.batch_max_events = 3;
  OutputRunner fast_runner(*store_, std::move(fast_output), runner_options_, metrics_);
  OutputRunner slow_runner(*store_, std::move(slow_output), slow_options, metrics_);
  fast_runner.start();
  slow_runner.start();

  ASSERT_TRUE(waitUntil([&] { return fast_runner.cursor() == 30; }));
  EXPECT_LT(slow_runner.cursor(), 30);
  ASSERT_TRUE(waitUntil([&] { return slow_runner.cursor() == 30; }));
  fast_runner.stop();
  slow_runner.stop();

  for (FakeOutput* fake : {fast, slow}) {
    std::vector<std::int64_t> seen;
    for (const auto& call : fake->calls()) {
      seen.insert(seen.end(), call.begin(), call.end());
    }
    ASSERT_EQ(seen.size(), 30u) << fake->name();
    for (std::size_t i = 0; i < seen.size(); ++i) {
      EXPECT_EQ(seen[i], static_cast<std::int64_t>(i + 1)) << fake->name();
    }
  }
  EXPECT_EQ(slow->calls().size(), 10u);
  EXPECT_EQ(store_->cursor("fast"), 30);
  EXPECT_EQ(store_->cursor("slow"), 30);
}

TEST_F(OutputRunnerTest, StopDuringBackoffIsPrompt) {
  store_->insert(makeEvents("s", 3));
  auto output = std::make_unique<FakeOutput>("fake", [](auto, int) -> std::vector<ItemResult> {
    throw TransientError("connection refused", 60000);
  });
  FakeOutput* fake = output.get();
  OutputRunner runner(*store_, std::move(output), runner_options_, metrics_);
  runner.start();
  ASSERT_TRUE(waitUntil([&] { return !fake->calls().empty(); }));
  const auto before = Clock::now();
  runner.stop();
  EXPECT_LT(Clock::now() - before, 1s);
  EXPECT_EQ(fake->calls().size(), 1u);
  EXPECT_EQ(store_->cursor("fake"), 0);
}

TEST_F(OutputRunnerTest, PartialBatchGoesOnceInputIsQuiet) {
  runner_options_.flush_interval = 1000ms;
  runner_options_.batch_max_events = 5;
  auto output = std::make_unique<FakeOutput>("fake", [](auto b, int) { return allDelivered(b); });
  FakeOutput* fake = output.get();
  OutputRunner runner(*store_, std::move(output), runner_options_, metrics_);
  runner.start();

  // No event follows these two, so they go a tenth of flush_interval later.
  const auto partial_stored = Clock::now();
  store_->insert(makeEvents("p", 2));
  runner.notify();
  ASSERT_TRUE(waitUntil([&] { return runner.cursor() == 2; }));
  EXPECT_GE(fake->callTimes().at(0) - partial_stored, 90ms);
  EXPECT_LT(fake->callTimes().at(0) - partial_stored, 600ms);

  // A full batch goes at once when notify() reports it.
  const auto full_stored = Clock::now();
  store_->insert(makeEvents("f", 5));
  runner.notify();
  ASSERT_TRUE(waitUntil([&] { return runner.cursor() == 7; }));
  EXPECT_LT(fake->callTimes().at(1) - full_stored, 250ms);
  runner.stop();
}

TEST_F(OutputRunnerTest, PartialBatchWaitsWhileEventsArrive) {
  runner_options_.flush_interval = 400ms;
  runner_options_.batch_max_events = 1000;
  auto output = std::make_unique<FakeOutput>("fake", [](auto b, int) { return allDelivered(b); });
  FakeOutput* fake = output.get();
  OutputRunner runner(*store_, std::move(output), runner_options_, metrics_);
  runner.start();

  // One event every 10 ms, well inside the quiet time of 40 ms: the batch
  // keeps waiting until flush_interval has passed since its first event.
  const auto first_stored = Clock::now();
  int inserted = 0;
  while (Clock::now() - first_stored < 600ms) {
    store_->insert(makeEvents("t" + std::to_string(inserted) + "-", 1));
    ++inserted;
    runner.notify();
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(waitUntil([&] { return runner.cursor() == inserted; }));
  ASSERT_FALSE(fake->calls().empty());
  EXPECT_GE(fake->callTimes().at(0) - first_stored, 350ms);
  EXPECT_GE(fake->calls().at(0).size(), 10u);
  runner.stop();
}

TEST_F(OutputRunnerTest, PartialBatchWaitsForHugeFlushInterval) {
  // About 295 years: in the clock's nanoseconds, start + flush_interval
  // would overflow and wrap around to a deadline in the past.
  runner_options_.flush_interval = std::chrono::milliseconds(9'300'000'000'000);
  runner_options_.batch_max_events = 5;
  auto output = std::make_unique<FakeOutput>("fake", [](auto b, int) { return allDelivered(b); });
  FakeOutput* fake = output.get();
  OutputRunner runner(*store_, std::move(output), runner_options_, metrics_);
  runner.start();

  store_->insert(makeEvents("h", 2));
  runner.notify();
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(fake->calls().empty());

  // A full batch still goes at once, and stop() ends the wait.
  store_->insert(makeEvents("i", 3));
  runner.notify();
  ASSERT_TRUE(waitUntil([&] { return runner.cursor() == 5; }));
  const auto before = Clock::now();
  runner.stop();
  EXPECT_LT(Clock::now() - before, 1s);
}

TEST_F(OutputRunnerTest, RetryWaitsForHugeRetryMax) {
  // About 24,600 years, far past the 292 years after which the clock's
  // nanoseconds overflow, so the first backoff delay is almost surely that
  // long too.
  runner_options_.retry_initial = std::chrono::milliseconds(777'600'000'000'000);
  runner_options_.retry_max = runner_options_.retry_initial;
  runner_options_.batch_max_events = 2;
  auto output = std::make_unique<FakeOutput>("busy", [](auto b, int) {
    return std::vector<ItemResult>(b.size(), {Delivery::kRetry, "busy"});
  });
  FakeOutput* fake = output.get();
  OutputRunner runner(*store_, std::move(output), runner_options_, metrics_);
  runner.start();
  store_->insert(makeEvents("r", 2));
  runner.notify();
  ASSERT_TRUE(waitUntil([&] { return !fake->calls().empty(); }));
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(fake->calls().size(), 1u);
  const auto before = Clock::now();
  runner.stop();
  EXPECT_LT(Clock::now() - before, 1s);
}

TEST_F(OutputRunnerTest, GaugesShowDepthAndLag) {
  store_->insert(makeEvents("g", 4, nowMs() - 5000));
  auto output = std::make_unique<FakeOutput>("stuck", [](auto b, int) {
    return std::vector<ItemResult>(b.size(), {Delivery::kRetry, "busy"});
  });
  OutputRunner runner(*store_, std::move(output), runner_options_, metrics_);
  runner.start();
  ASSERT_TRUE(waitUntil([&] {
    return counter("webtrap_collector_output_retried_total", "stuck") >= 8;
  }));
  EXPECT_EQ(gauge("webtrap_collector_output_queue_depth", "stuck"), 4);
  EXPECT_GE(gauge("webtrap_collector_output_lag_seconds", "stuck"), 5);
  EXPECT_EQ(runner.cursor(), 0);
  runner.stop();
}

TEST_F(OutputRunnerTest, SkipsEventsRemovedByRetention) {
  StoreOptions options;
  options.path = dir_ / "retained.sqlite";
  options.synchronous = "normal";
  options.retention_max_age_ms = 1;
  options.retention_max_bytes = 0;
  Store store(options);
  store.insert(makeEvents("old", 6));
  auto output = std::make_unique<FakeOutput>("fake", [](auto b, int) { return allDelivered(b); });
  FakeOutput* fake = output.get();
  OutputRunner runner(store, std::move(output), runner_options_, metrics_);
  ASSERT_EQ(runner.cursor(), 0);

  // Retention removes every event after the runner read its cursor.
  EXPECT_EQ(store.enforceRetention(nowMs() + 60000).removed, 6u);
  runner.start();
  // Everything was removed: the runner moves its cursor past the gap.
  ASSERT_TRUE(waitUntil([&] { return runner.cursor() == 6; }));
  EXPECT_TRUE(fake->calls().empty());

  store.insert(makeEvents("new", 2));
  runner.notify();
  ASSERT_TRUE(waitUntil([&] { return runner.cursor() == 8; }));
  runner.stop();
  auto calls = fake->calls();
  ASSERT_EQ(calls.size(), 1u);
  std::vector<std::int64_t> expected = {7, 8};
  EXPECT_EQ(calls[0], expected);
  EXPECT_EQ(gauge("webtrap_collector_output_queue_depth", "fake"), 0);
}

TEST(ParseRunnerOptions, ReadsRunnerKeysOnly) {
  YAML::Node node = YAML::Load(R"(
url: http://127.0.0.1:9200
batch_max_events: 250
batch_max_bytes: 2MiB
flush_interval: 200ms
retry_initial: 1s
retry_max: 2m
)");
  OutputRunnerOptions options = parseRunnerOptions(node, "outputs.elasticsearch");
  EXPECT_EQ(options.batch_max_events, 250u);
  EXPECT_EQ(options.batch_max_bytes, 2u << 20);
  EXPECT_EQ(options.flush_interval, 200ms);
  EXPECT_EQ(options.retry_initial, 1s);
  EXPECT_EQ(options.retry_max, 120s);
}

TEST(ParseRunnerOptions, DefaultsWithoutKeys) {
  OutputRunnerOptions defaults;
  OutputRunnerOptions options = parseRunnerOptions(YAML::Load("path: x"), "outputs.ndjson");
  EXPECT_EQ(options.batch_max_events, defaults.batch_max_events);
  EXPECT_EQ(options.retry_max, defaults.retry_max);
}

TEST(ParseRunnerOptions, RejectsBadValues) {
  const std::pair<const char*, const char*> cases[] = {
      {"batch_max_events: 0", "outputs.ndjson.batch_max_events"},
      {"batch_max_events: many", "outputs.ndjson.batch_max_events"},
      {"batch_max_bytes: 0", "outputs.ndjson.batch_max_bytes"},
      {"flush_interval: 5", "outputs.ndjson.flush_interval"},
      {"retry_initial: 0ms", "outputs.ndjson.retry_initial"},
      {"{retry_initial: 10s, retry_max: 1s}", "outputs.ndjson.retry_max"},
  };
  for (const auto& [yaml, key] : cases) {
    try {
      parseRunnerOptions(YAML::Load(yaml), "outputs.ndjson");
      ADD_FAILURE() << "expected a ConfigError for " << yaml;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace webtrap::collector
