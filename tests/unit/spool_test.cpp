#include "probe/spool.h"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/error.h"

namespace webtrap::probe {
namespace {

namespace fs = std::filesystem;

// A fresh folder per test, removed afterwards.
class SpoolTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / ("webtrap-spool-test-" + std::to_string(::getpid()) + "-" +
                                     testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  SpoolConfig config(std::uint64_t segment_bytes, std::uint64_t max_bytes,
                     FullPolicy on_full = FullPolicy::kDropNew) const {
    SpoolConfig config;
    config.dir = dir_;
    config.segment_bytes = segment_bytes;
    config.max_bytes = max_bytes;
    config.fsync = FsyncPolicy::kNever;
    config.on_full = on_full;
    return config;
  }

  // Segment file names in write order.
  std::vector<std::string> segments() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir_)) {
      std::string name = entry.path().filename();
      if (name.starts_with("segment-")) {
        names.push_back(name);
      }
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  std::string read(const std::string& name) const {
    std::ifstream in(dir_ / name, std::ios::binary);
    std::stringstream content;
    content << in.rdbuf();
    return content.str();
  }

  std::string readAll() const {
    std::string all;
    for (const auto& name : segments()) {
      all += read(name);
    }
    return all;
  }

  void writeShippedOffset(const std::string& segment, std::uint64_t offset) const {
    fs::path temporary = dir_ / "shipped.offset.tmp";
    std::ofstream(temporary) << segment << ' ' << offset << '\n';
    fs::rename(temporary, dir_ / "shipped.offset");
  }

  std::uint64_t counter(const char* name, const char* labels = "") {
    return metrics_.counter(name, "", labels).value();
  }
  std::int64_t gauge(const char* name) { return metrics_.gauge(name, "").value(); }
  std::uint64_t droppedFull() {
    return counter("webtrap_spool_records_dropped_total", "reason=\"disk_full\"");
  }

  fs::path dir_;
  MetricsRegistry metrics_;
};

// A record of exactly `size` bytes, newline excluded, tagged with `index`.
std::string record(int index, std::size_t size = 9) {
  std::string text = "{\"n\":" + std::to_string(index);
  text.append(size - text.size() - 1, ' ');
  text.push_back('}');
  return text;
}

TEST(ShippedPosition, ParsesSegmentAndOffset) {
  auto position = parseShippedPosition("segment-000000000042.ndjson 1234\r\n");
  ASSERT_TRUE(position.has_value());
  EXPECT_EQ(position->segment, 42u);
  EXPECT_EQ(position->offset, 1234u);
}

TEST(ShippedPosition, RejectsMalformedContent) {
  EXPECT_FALSE(parseShippedPosition("").has_value());
  EXPECT_FALSE(parseShippedPosition("segment-000000000042.ndjson").has_value());
  EXPECT_FALSE(parseShippedPosition("segment-000000000042.ndjson 12x").has_value());
  EXPECT_FALSE(parseShippedPosition("segment-000000000042.ndjson -1").has_value());
  EXPECT_FALSE(parseShippedPosition("other.ndjson 12").has_value());
  EXPECT_FALSE(parseShippedPosition("segment-000000000042.ndjson  12").has_value());
}

TEST_F(SpoolTest, AppendsLinesAndCounts) {
  Spool spool(config(1 << 20, 1 << 30), metrics_);
  EXPECT_EQ(spool.append(record(1)), AppendResult::kWritten);
  EXPECT_EQ(spool.append(record(2)), AppendResult::kWritten);

  ASSERT_EQ(segments(), std::vector<std::string>{"segment-000000000001.ndjson"});
  EXPECT_EQ(read(segments()[0]), record(1) + "\n" + record(2) + "\n");
  EXPECT_EQ(counter("webtrap_spool_records_written_total"), 2u);
  EXPECT_EQ(counter("webtrap_spool_bytes_written_total"), 20u);
  EXPECT_EQ(gauge("webtrap_spool_bytes"), 20);
  EXPECT_EQ(gauge("webtrap_spool_full"), 0);
}

TEST_F(SpoolTest, NoSegmentBeforeFirstAppend) {
  { Spool spool(config(1 << 20, 1 << 30), metrics_); }
  EXPECT_TRUE(segments().empty());
  EXPECT_TRUE(fs::is_empty(dir_));
}

TEST_F(SpoolTest, RotatesPastSegmentBytes) {
  Spool spool(config(25, 1 << 30), metrics_);
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(spool.append(record(i)), AppendResult::kWritten);
  }
  // Two 10-byte lines fit in 25 bytes, the third starts a new segment.
  std::vector<std::string> expected = {"segment-000000000001.ndjson", "segment-000000000002.ndjson",
                                       "segment-000000000003.ndjson"};
  EXPECT_EQ(segments(), expected);
  EXPECT_EQ(read(expected[0]), record(0) + "\n" + record(1) + "\n");
  EXPECT_EQ(read(expected[2]), record(4) + "\n");
}

TEST_F(SpoolTest, OversizedRecordGetsItsOwnSegment) {
  Spool spool(config(25, 1 << 30), metrics_);
  ASSERT_EQ(spool.append(record(0)), AppendResult::kWritten);
  ASSERT_EQ(spool.append(record(1, 100)), AppendResult::kWritten);
  ASSERT_EQ(spool.append(record(2)), AppendResult::kWritten);
  ASSERT_EQ(segments().size(), 3u);
  EXPECT_EQ(read(segments()[1]), record(1, 100) + "\n");
}

TEST_F(SpoolTest, RestartStartsNewSegment) {
  {
    Spool spool(config(1 << 20, 1 << 30), metrics_);
    spool.append(record(1));
  }
  {
    Spool spool(config(1 << 20, 1 << 30), metrics_);
    spool.append(record(2));
  }
  std::vector<std::string> expected = {"segment-000000000001.ndjson",
                                       "segment-000000000002.ndjson"};
  EXPECT_EQ(segments(), expected);
  EXPECT_EQ(read(expected[0]), record(1) + "\n");
  EXPECT_EQ(read(expected[1]), record(2) + "\n");
}

TEST_F(SpoolTest, RestartCountsExistingBytesAgainstCap) {
  {
    Spool spool(config(1 << 20, 30), metrics_);
    spool.append(record(1));
    spool.append(record(2));
  }
  MetricsRegistry fresh;
  Spool spool(config(1 << 20, 30), fresh);
  EXPECT_EQ(fresh.gauge("webtrap_spool_bytes", "").value(), 20);
  EXPECT_EQ(spool.append(record(3)), AppendResult::kWritten);
  EXPECT_EQ(spool.append(record(4)), AppendResult::kDropped);
}

TEST_F(SpoolTest, ResumesAfterHighestNumber) {
  fs::create_directories(dir_);
  std::ofstream(dir_ / "segment-000000000041.ndjson") << record(41) << '\n';
  std::ofstream(dir_ / "segment-000000000007.ndjson") << record(7) << '\n';
  std::ofstream(dir_ / "unrelated.txt") << "x";

  Spool spool(config(1 << 20, 1 << 30), metrics_);
  spool.append(record(42));
  EXPECT_EQ(read("segment-000000000042.ndjson"), record(42) + "\n");
  EXPECT_EQ(read("segment-000000000041.ndjson"), record(41) + "\n");
  EXPECT_EQ(gauge("webtrap_spool_bytes"), 30);
}

TEST_F(SpoolTest, DropNewCountsAndRecovers) {
  // Three 10-byte lines fit under the cap, so the next ones are dropped.
  Spool spool(config(20, 30, FullPolicy::kDropNew), metrics_);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(spool.append(record(i)), AppendResult::kWritten);
  }
  EXPECT_EQ(spool.append(record(3)), AppendResult::kDropped);
  EXPECT_EQ(spool.append(record(4)), AppendResult::kDropped);
  EXPECT_EQ(droppedFull(), 2u);
  EXPECT_EQ(gauge("webtrap_spool_full"), 1);
  EXPECT_EQ(counter("webtrap_spool_segments_deleted_total"), 0u);
  EXPECT_EQ(readAll(), record(0) + "\n" + record(1) + "\n" + record(2) + "\n");

  // The shipper delivered the first segment, so it may go.
  writeShippedOffset("segment-000000000001.ndjson", 20);
  EXPECT_EQ(spool.append(record(5)), AppendResult::kWritten);
  EXPECT_EQ(droppedFull(), 2u);
  EXPECT_EQ(counter("webtrap_spool_segments_deleted_total"), 1u);
  EXPECT_EQ(gauge("webtrap_spool_full"), 0);
  EXPECT_FALSE(fs::exists(dir_ / "segment-000000000001.ndjson"));
  EXPECT_EQ(readAll(), record(2) + "\n" + record(5) + "\n");
}

TEST_F(SpoolTest, DropNewKeepsPartlyShippedSegment) {
  Spool spool(config(20, 30, FullPolicy::kDropNew), metrics_);
  for (int i = 0; i < 3; ++i) {
    spool.append(record(i));
  }
  writeShippedOffset("segment-000000000001.ndjson", 10);
  EXPECT_EQ(spool.append(record(3)), AppendResult::kDropped);
  EXPECT_TRUE(fs::exists(dir_ / "segment-000000000001.ndjson"));
  EXPECT_EQ(counter("webtrap_spool_segments_deleted_total"), 0u);
}

TEST_F(SpoolTest, DeleteOldestCountsUnshippedRecords) {
  Spool spool(config(20, 40, FullPolicy::kDeleteOldest), metrics_);
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(spool.append(record(i)), AppendResult::kWritten);
  }
  // The fifth line needs room: segment 1 (records 0 and 1) goes.
  EXPECT_EQ(spool.append(record(4)), AppendResult::kWritten);
  EXPECT_EQ(droppedFull(), 2u);
  EXPECT_EQ(counter("webtrap_spool_segments_deleted_total"), 1u);
  EXPECT_EQ(readAll(), record(2) + "\n" + record(3) + "\n" + record(4) + "\n");
  EXPECT_EQ(gauge("webtrap_spool_bytes"), 30);
}

TEST_F(SpoolTest, DeleteOldestSparesShippedFromCount) {
  Spool spool(config(20, 40, FullPolicy::kDeleteOldest), metrics_);
  for (int i = 0; i < 4; ++i) {
    spool.append(record(i));
  }
  writeShippedOffset("segment-000000000001.ndjson", 20);
  EXPECT_EQ(spool.append(record(4)), AppendResult::kWritten);
  EXPECT_EQ(droppedFull(), 0u);
  EXPECT_EQ(counter("webtrap_spool_segments_deleted_total"), 1u);
}

TEST_F(SpoolTest, DeleteOldestCountsOnlyPastOffset) {
  Spool spool(config(20, 40, FullPolicy::kDeleteOldest), metrics_);
  for (int i = 0; i < 4; ++i) {
    spool.append(record(i));
  }
  // Record 0 was shipped, record 1 was not.
  writeShippedOffset("segment-000000000001.ndjson", 10);
  EXPECT_EQ(spool.append(record(4)), AppendResult::kWritten);
  EXPECT_EQ(droppedFull(), 1u);
}

TEST_F(SpoolTest, UnshippedBytesFollowOffset) {
  {
    Spool spool(config(20, 1000), metrics_);
    spool.append(record(0));
    spool.append(record(1));
  }
  // Segment 1 is from before the restart, segment 2 from this run.
  MetricsRegistry fresh;
  Spool spool(config(20, 1000), fresh);
  spool.append(record(2));
  spool.append(record(3));
  ASSERT_EQ(segments().size(), 2u);
  EXPECT_EQ(spool.unshippedBytes(), 40u) << "without shipped.offset nothing is shipped";

  writeShippedOffset("segment-000000000001.ndjson", 10);
  EXPECT_EQ(spool.unshippedBytes(), 30u);
  writeShippedOffset("segment-000000000002.ndjson", 10);
  EXPECT_EQ(spool.unshippedBytes(), 10u);
  spool.append(record(4));
  EXPECT_EQ(spool.unshippedBytes(), 20u);
  writeShippedOffset("segment-000000000003.ndjson", 10);
  EXPECT_EQ(spool.unshippedBytes(), 0u);

  std::ofstream(dir_ / "shipped.offset") << "segment-000000000002.ndjson ten\n";
  EXPECT_EQ(spool.unshippedBytes(), 50u) << "a malformed offset counts every byte";
}

TEST_F(SpoolTest, DeleteOldestCountsSegmentsFromBeforeRestart) {
  {
    Spool spool(config(20, 40, FullPolicy::kDeleteOldest), metrics_);
    for (int i = 0; i < 4; ++i) {
      spool.append(record(i));
    }
  }
  MetricsRegistry fresh;
  Spool spool(config(20, 40, FullPolicy::kDeleteOldest), fresh);
  EXPECT_EQ(spool.append(record(4)), AppendResult::kWritten);
  EXPECT_EQ(
      fresh.counter("webtrap_spool_records_dropped_total", "", "reason=\"disk_full\"").value(), 2u);
}

TEST_F(SpoolTest, DeleteOldestClosesSingleSegment) {
  // One segment contains everything, so it must be closed before it can go.
  Spool spool(config(1 << 20, 30, FullPolicy::kDeleteOldest), metrics_);
  for (int i = 0; i < 3; ++i) {
    spool.append(record(i));
  }
  EXPECT_EQ(spool.append(record(3)), AppendResult::kWritten);
  EXPECT_EQ(droppedFull(), 3u);
  EXPECT_EQ(readAll(), record(3) + "\n");
  EXPECT_EQ(segments(), std::vector<std::string>{"segment-000000000002.ndjson"});
}

TEST_F(SpoolTest, RecordLargerThanCapDropped) {
  Spool spool(config(1 << 20, 30, FullPolicy::kDeleteOldest), metrics_);
  spool.append(record(0));
  EXPECT_EQ(spool.append(record(1, 100)), AppendResult::kDropped);
  EXPECT_EQ(droppedFull(), 1u);
  EXPECT_EQ(readAll(), record(0) + "\n");
}

TEST_F(SpoolTest, MalformedShippedOffsetIgnored) {
  Spool spool(config(20, 30, FullPolicy::kDropNew), metrics_);
  for (int i = 0; i < 3; ++i) {
    spool.append(record(i));
  }
  std::ofstream(dir_ / "shipped.offset") << "segment-000000000001.ndjson twenty\n";
  EXPECT_EQ(spool.append(record(3)), AppendResult::kDropped);
  EXPECT_TRUE(fs::exists(dir_ / "segment-000000000001.ndjson"));
}

TEST_F(SpoolTest, FsyncAlwaysSyncsEachAppend) {
  SpoolConfig settings = config(1 << 20, 1 << 30);
  settings.fsync = FsyncPolicy::kAlways;
  Spool spool(settings, metrics_);
  for (int i = 0; i < 5; ++i) {
    spool.append(record(i));
  }
  EXPECT_EQ(counter("webtrap_spool_fsyncs_total"), 5u);
}

TEST_F(SpoolTest, FsyncNeverLeavesItToKernel) {
  Spool spool(config(20, 1 << 30), metrics_);
  for (int i = 0; i < 5; ++i) {
    spool.append(record(i));
  }
  EXPECT_EQ(counter("webtrap_spool_fsyncs_total"), 0u);
  spool.flush();
  EXPECT_EQ(counter("webtrap_spool_fsyncs_total"), 1u);
}

TEST_F(SpoolTest, FsyncIntervalBatchesAppends) {
  SpoolConfig settings = config(1 << 20, 1 << 30);
  settings.fsync = FsyncPolicy::kInterval;
  settings.fsync_interval_ms = 10;
  Spool spool(settings, metrics_);
  for (int i = 0; i < 100; ++i) {
    spool.append(record(i));
  }
  // Wait for the background sync, bounded at 10 s.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (counter("webtrap_spool_fsyncs_total") == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_GE(counter("webtrap_spool_fsyncs_total"), 1u);
  EXPECT_LT(counter("webtrap_spool_fsyncs_total"), 100u);
}

TEST_F(SpoolTest, FsyncIntervalWaitsForInterval) {
  SpoolConfig settings = config(1 << 20, 1 << 30);
  settings.fsync = FsyncPolicy::kInterval;
  settings.fsync_interval_ms = 600000;
  {
    Spool spool(settings, metrics_);
    spool.append(record(0));
    EXPECT_EQ(counter("webtrap_spool_fsyncs_total"), 0u);
  }
  // Closing the spool syncs what the interval had not.
  EXPECT_EQ(counter("webtrap_spool_fsyncs_total"), 1u);
}

// RLIMIT_FSIZE makes the kernel fail writes past a size with EFBIG, a real
// write error without filling a disk.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::signal(SIGXFSZ, SIG_IGN);
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    rlimit limit = saved_;
    limit.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &limit);
  }
  ~FileSizeLimit() { ::setrlimit(RLIMIT_FSIZE, &saved_); }

 private:
  rlimit saved_{};
};

TEST_F(SpoolTest, WriteErrorCountedAndLineCutBack) {
  Spool spool(config(1 << 20, 1 << 30), metrics_);
  spool.append(record(0));
  {
    // Room for 5 more bytes: the write is torn, then fails.
    FileSizeLimit limit(15);
    EXPECT_EQ(spool.append(record(1)), AppendResult::kDropped);
    EXPECT_EQ(spool.append(record(2)), AppendResult::kDropped);
  }
  EXPECT_EQ(counter("webtrap_spool_write_errors_total"), 2u);
  EXPECT_EQ(counter("webtrap_spool_records_dropped_total", "reason=\"write_error\""), 2u);
  EXPECT_EQ(read(segments()[0]), record(0) + "\n");

  EXPECT_EQ(spool.append(record(3)), AppendResult::kWritten);
  EXPECT_EQ(readAll(), record(0) + "\n" + record(3) + "\n");
  EXPECT_EQ(gauge("webtrap_spool_bytes"), 20);
}

TEST_F(SpoolTest, ConcurrentAppendsKeepWholeLines) {
  Spool spool(config(4096, 1 << 30), metrics_);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&spool, t] {
      for (int i = 0; i < 1000; ++i) {
        spool.append(record(t * 1000 + i, 64));
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  std::istringstream lines(readAll());
  std::string line;
  std::set<std::string> seen;
  while (std::getline(lines, line)) {
    ASSERT_EQ(line.size(), 64u);
    seen.insert(line);
  }
  EXPECT_EQ(seen.size(), 4000u);
  EXPECT_EQ(counter("webtrap_spool_records_written_total"), 4000u);
}

TEST_F(SpoolTest, UnwritableDirIsConfigError) {
  fs::create_directories(dir_);
  std::ofstream(dir_ / "file") << "x";
  SpoolConfig settings = config(1 << 20, 1 << 30);
  settings.dir = dir_ / "file" / "spool";
  EXPECT_THROW(Spool(settings, metrics_), ConfigError);
}

TEST_F(SpoolTest, ZeroSizesAreConfigError) {
  EXPECT_THROW(Spool(config(0, 1 << 30), metrics_), ConfigError);
  EXPECT_THROW(Spool(config(1 << 20, 0), metrics_), ConfigError);
  SpoolConfig settings = config(1 << 20, 1 << 30);
  settings.fsync = FsyncPolicy::kInterval;
  settings.fsync_interval_ms = 0;
  EXPECT_THROW(Spool(settings, metrics_), ConfigError);
}

}  // namespace
}  // namespace webtrap::probe
