// Recovery of the inspection journal with the real Inspector
// (libmodsecurity 3.0.9 and Debian's CRS 3.3.4): recovered entries are
// inspected, failures keep status "interrupted", and oversized files are
// skipped.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <simdjson.h>

#include "probe/inspector.h"
#include "probe/journal.h"
#include "probe/journal_entry.h"
#include "probe/journal_lines.h"
#include "probe/record.h"
#include "probe/spool.h"
#include "spool_records.h"

namespace webtrap::probe {
namespace {

namespace fs = std::filesystem;

const fs::path kSourceDir = WEBTRAP_SOURCE_DIR;

// A UUIDv7 text, as the collector's decoder requires of an event id.
std::string eventId(int i) {
  std::string digits = std::to_string(i);
  return "01938f5e-1c2a-7abc-8def-" + std::string(12 - digits.size(), '0') + digits;
}

// Request i: a GET with a sqlmap-like UNION query and sqlmap's User-Agent,
// as a burst of sqlmap requests leaves them in the queue.
JournalEntry attack(int i) {
  JournalEntry entry;
  CapturedRequest& request = entry.request;
  request.connection_id = "c-" + std::to_string(i);
  request.client = {"203.0.113.7", static_cast<std::uint16_t>(40000 + i)};
  request.server = {"127.0.0.1", 8080};
  request.listener = "web";
  request.parsed = true;
  request.method = "GET";
  request.target = "/item.php?id=" + std::to_string(i) +
                   "%27%20UNION%20ALL%20SELECT%20NULL%2CCONCAT%280x71%2Cuser%28%29%29--%20-";
  request.http_version = "1.1";
  request.request_line = "GET " + request.target + " HTTP/1.1";
  request.headers = {{"Host", "shop.example"},
                     {"User-Agent", "sqlmap/1.7.2#stable (https://sqlmap.org)"},
                     {"Accept", "*/*"}};
  request.body_sha256 = "";
  request.received_at = std::chrono::system_clock::time_point(std::chrono::seconds(1796385600));
  request.timings = {100, -1, -1, -1};
  entry.response.headers = {{"Server", "Apache"}, {"Content-Type", "text/html"}};
  entry.response.body = "<html><body>Not Found</body></html>";
  entry.response.status = 404;
  entry.outcome.route = "not_found";
  entry.outcome.route_kind = "not_found";
  entry.meta.event_id = eventId(i);
  entry.meta.sensor_id = "sensor-1";
  entry.meta.persona = "wordpress";
  entry.meta.engine_version = "engine of the killed run";
  return entry;
}

std::string encoded(const JournalEntry& entry) {
  std::string out;
  encodeJournalEntry(out, entry.request, entry.response, entry.outcome, entry.meta);
  return out;
}

std::vector<std::string> ruleIds(simdjson::dom::element record) {
  std::vector<std::string> ids;
  for (simdjson::dom::element id : record.at_pointer("/webtrap/inspection/rule_ids").get_array()) {
    ids.emplace_back(std::string_view(id.get_string()));
  }
  return ids;
}

// The status of a record that was inspected: "cached" when an earlier test
// inspected the same request with the shared inspector.
bool isInspectedStatus(simdjson::dom::element record) {
  std::string_view status = record.at_pointer("/webtrap/inspection/status").get_string();
  return status == "complete" || status == "cached";
}

bool hasSqliRule(const std::vector<std::string>& ids) {
  return std::any_of(ids.begin(), ids.end(),
                     [](const std::string& id) { return id.starts_with("942"); });
}

class JournalRecoveryTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    metrics_ = new MetricsRegistry();
    InspectorConfig config;
    config.webtrap_rules = kSourceDir / "rules";
    inspector_ = new Inspector(config, *metrics_);
  }
  static void TearDownTestSuite() {
    delete inspector_;
    delete metrics_;
  }

  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("webtrap-journal-recovery-test-" + std::to_string(::getpid()) + "-" +
            testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    journal_dir_ = journalDirectory(dir_);
    fs::create_directories(journal_dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Options that inspect with the shared real Inspector.
  static RecoveryOptions inspecting(std::uint64_t max_inspections = 100,
                                    std::uint64_t max_file_bytes = 64 << 20) {
    return inspectingRecovery(*inspector_, max_inspections, max_file_bytes);
  }

  void writeJournalFile(std::uint64_t number, const std::string& lines) {
    std::ofstream(journal_dir_ / journalFileName(number), std::ios::binary) << lines;
  }

  // Writes the entries of attack(0) to attack(count - 1) to journal file 1.
  void writeAttackEntries(int count) {
    std::string lines;
    for (int i = 0; i < count; ++i) {
      lines += journal_lines::makeEntryLine(eventId(i), encoded(attack(i)));
    }
    writeJournalFile(1, lines);
  }

  // Recovers with `options`, the default logger writing to log_.
  JournalRecovery recover(MetricsRegistry& metrics, const RecoveryOptions& options) {
    SpoolConfig config;
    config.dir = dir_;
    config.fsync = FsyncPolicy::kNever;
    Spool spool(config, metrics);
    return withCapturedLog(log_,
                           [&] { return recoverJournal(journal_dir_, spool, metrics, options); });
  }

  std::vector<std::string> spoolRecords() const { return readSpoolRecords(dir_); }

  static MetricsRegistry* metrics_;
  static Inspector* inspector_;
  fs::path dir_;
  fs::path journal_dir_;
  std::string log_;
};

MetricsRegistry* JournalRecoveryTest::metrics_ = nullptr;
Inspector* JournalRecoveryTest::inspector_ = nullptr;

TEST_F(JournalRecoveryTest, RecoveredEntriesCarryRuleMatches) {
  writeAttackEntries(3);

  MetricsRegistry metrics;
  JournalRecovery result = recover(metrics, inspecting());
  EXPECT_EQ(result.recovered, 3u);
  EXPECT_EQ(result.inspected, 3u);
  EXPECT_EQ(result.uninspected, 0u);
  EXPECT_EQ(metrics.counter("webtrap_journal_records_inspected_total", "").value(), 3u);
  EXPECT_EQ(metrics.counter("webtrap_journal_records_uninspected_total", "",
                            R"(reason="failed")").value(),
            0u);
  EXPECT_NE(log_.find("inspected=3 uninspected=0 inspection_failures=0 duration_ms="),
            std::string::npos)
      << log_;

  std::vector<std::string> records = spoolRecords();
  ASSERT_EQ(records.size(), 3u);
  simdjson::dom::parser parser;
  for (int i = 0; i < 3; ++i) {
    simdjson::dom::element record = parser.parse(records[static_cast<std::size_t>(i)]);
    EXPECT_EQ(std::string_view(record.at_pointer("/webtrap/event_id").get_string()), eventId(i));
    EXPECT_TRUE(isInspectedStatus(record)) << records[static_cast<std::size_t>(i)];
    EXPECT_TRUE(record.at_pointer("/webtrap/inspection/recovered").get_bool().value());
    EXPECT_TRUE(record.at_pointer("/webtrap/inspection/error").error());
    EXPECT_GT(record.at_pointer("/webtrap/inspection/anomaly_score").get_int64().value(), 0);
    EXPECT_GE(record.at_pointer("/webtrap/timings/inspection_us").get_int64().value(), 0);

    // The same rule ids as the live inspection of the same request.
    JournalEntry entry = attack(i);
    InspectionResult live =
        inspector_->inspect(entry.request, entry.response, entry.outcome, eventId(i));
    std::vector<std::string> live_ids;
    for (const RuleMatch& match : live.matches) {
      if (std::find(live_ids.begin(), live_ids.end(), match.id) == live_ids.end()) {
        live_ids.push_back(match.id);
      }
    }
    std::vector<std::string> ids = ruleIds(record);
    EXPECT_TRUE(hasSqliRule(ids)) << records[static_cast<std::size_t>(i)];
    EXPECT_EQ(ids, live_ids);
    // The producer is the inspector that matched, not the killed run's.
    EXPECT_EQ(std::string_view(record.at_pointer("/transaction/producer/modsecurity").get_string()),
              inspector_->engineVersion());
  }
}

TEST_F(JournalRecoveryTest, FailedInspectionKeepsInterrupted) {
  writeJournalFile(1, journal_lines::makeEntryLine(eventId(0), encoded(attack(0))) +
                          journal_lines::makeEntryLine(eventId(1), encoded(attack(1))) +
                          journal_lines::makeEntryLine(eventId(2), encoded(attack(2))));
  RecoveryOptions options = inspecting();
  RecoveryInspect real = options.inspect;
  options.inspect = [real](const JournalEntry& entry) {
    if (entry.meta.event_id == eventId(0)) {
      throw std::runtime_error("rule engine out of memory");
    }
    if (entry.meta.event_id == eventId(1)) {
      InspectionResult failed;
      failed.status = InspectionStatus::kFailed;
      failed.error = "libmodsecurity processRequestBody failed";
      return failed;
    }
    return real(entry);
  };

  MetricsRegistry metrics;
  JournalRecovery result = recover(metrics, options);
  EXPECT_EQ(result.recovered, 3u);
  EXPECT_EQ(result.inspected, 1u);
  EXPECT_EQ(result.uninspected, 2u);
  EXPECT_EQ(result.inspection_failed, 2u);
  EXPECT_EQ(result.rejected, 0u);
  EXPECT_EQ(metrics.counter("webtrap_journal_records_uninspected_total", "",
                            R"(reason="failed")").value(),
            2u);
  EXPECT_NE(log_.find("inspecting recovered entry failed"), std::string::npos) << log_;
  EXPECT_NE(log_.find("event_id=" + eventId(0) + " error=exception: rule engine out of memory"),
            std::string::npos)
      << log_;
  EXPECT_NE(log_.find("event_id=" + eventId(1) + " error=libmodsecurity processRequestBody"),
            std::string::npos)
      << log_;

  std::vector<std::string> records = spoolRecords();
  ASSERT_EQ(records.size(), 3u);
  simdjson::dom::parser parser;
  const char* failures[] = {"rule engine out of memory", "processRequestBody failed"};
  for (int i = 0; i < 2; ++i) {
    simdjson::dom::element record = parser.parse(records[static_cast<std::size_t>(i)]);
    EXPECT_EQ(std::string_view(record.at_pointer("/webtrap/inspection/status").get_string()),
              "interrupted");
    EXPECT_TRUE(record.at_pointer("/webtrap/inspection/recovered").get_bool().value());
    EXPECT_TRUE(ruleIds(record).empty());
    EXPECT_TRUE(record.at_pointer("/webtrap/timings/inspection_us").is_null());
    std::string error(std::string_view(record.at_pointer("/webtrap/inspection/error").get_string()));
    EXPECT_NE(error.find("inspection journal"), std::string::npos) << error;
    EXPECT_NE(error.find(failures[i]), std::string::npos) << error;
    // The killed run's producer stays on a record that was not inspected.
    EXPECT_EQ(std::string_view(record.at_pointer("/transaction/producer/modsecurity").get_string()),
              "engine of the killed run");
  }
  simdjson::dom::element inspected = parser.parse(records[2]);
  EXPECT_TRUE(isInspectedStatus(inspected)) << records[2];
  EXPECT_TRUE(hasSqliRule(ruleIds(inspected)));
}

// A probe before the recovered mark wrote whole records in E lines: they
// have no inputs to inspect, so they stay interrupted and get the mark.
TEST_F(JournalRecoveryTest, SeveralThreadsKeepJournalOrder) {
  // More than one chunk of 32 entries per thread.
  constexpr int kEntries = 150;
  writeAttackEntries(kEntries);
  RecoveryOptions options = inspecting(kEntries);
  options.inspect_threads = 4;
  RecoveryInspect real = options.inspect;
  std::mutex mutex;
  std::set<std::thread::id> threads;
  options.inspect = [&](const JournalEntry& entry) {
    {
      std::lock_guard lock(mutex);
      threads.insert(std::this_thread::get_id());
    }
    // Long enough that more than one thread takes entries.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return real(entry);
  };

  MetricsRegistry metrics;
  JournalRecovery result = recover(metrics, options);
  EXPECT_EQ(result.recovered, static_cast<std::uint64_t>(kEntries));
  EXPECT_EQ(result.inspected, static_cast<std::uint64_t>(kEntries));
  EXPECT_GT(threads.size(), 1u);
  EXPECT_LE(threads.size(), 4u);

  std::vector<std::string> records = spoolRecords();
  ASSERT_EQ(records.size(), static_cast<std::size_t>(kEntries));
  simdjson::dom::parser parser;
  for (int i = 0; i < kEntries; ++i) {
    simdjson::dom::element record = parser.parse(records[static_cast<std::size_t>(i)]);
    EXPECT_EQ(std::string_view(record.at_pointer("/webtrap/event_id").get_string()), eventId(i));
    EXPECT_TRUE(isInspectedStatus(record)) << records[static_cast<std::size_t>(i)];
  }
}

TEST_F(JournalRecoveryTest, ThreadedLimitInspectsFirstEntries) {
  // Entry kLimit - 1 has a large body, so the other threads decode the
  // small entries after it first. They must still not take its inspection.
  constexpr int kEntries = 16;
  constexpr int kLimit = 6;
  std::string lines;
  for (int i = 0; i < kEntries; ++i) {
    JournalEntry entry = attack(i);
    if (i == kLimit - 1) {
      entry.request.method = "POST";
      entry.request.body = std::string(4 << 20, '\x01');
      entry.request.body_size = entry.request.body.size();
    }
    lines += journal_lines::makeEntryLine(eventId(i), encoded(entry));
  }
  writeJournalFile(1, lines);
  RecoveryOptions options = inspecting(kLimit);
  options.inspect_threads = 4;

  MetricsRegistry metrics;
  JournalRecovery result = recover(metrics, options);
  EXPECT_EQ(result.recovered, static_cast<std::uint64_t>(kEntries));
  EXPECT_EQ(result.inspected, static_cast<std::uint64_t>(kLimit));
  std::vector<std::string> records = spoolRecords();
  ASSERT_EQ(records.size(), static_cast<std::size_t>(kEntries));
  simdjson::dom::parser parser;
  for (int i = 0; i < kEntries; ++i) {
    simdjson::dom::element record = parser.parse(records[static_cast<std::size_t>(i)]);
    EXPECT_EQ(isInspectedStatus(record), i < kLimit) << "entry " << i;
  }
}

TEST_F(JournalRecoveryTest, ThreadExceptionReachesCaller) {
  // An exception that is not a std::exception passes the inspection's own
  // catch, as a failure outside it would. On a helper thread it must reach
  // the caller instead of ending the process.
  constexpr int kEntries = 40;
  writeAttackEntries(kEntries);
  RecoveryOptions options = inspecting(kEntries);
  options.inspect_threads = 4;
  options.inspect = [](const JournalEntry& entry) -> InspectionResult {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (entry.meta.event_id == eventId(30)) {
      throw 30;
    }
    return InspectionResult{};
  };
  MetricsRegistry metrics;
  SpoolConfig config;
  config.dir = dir_;
  config.fsync = FsyncPolicy::kNever;
  Spool spool(config, metrics);
  EXPECT_THROW(recoverJournal(journal_dir_, spool, metrics, options), int);
}

TEST_F(JournalRecoveryTest, LegacyEntryStaysInterrupted) {
  JournalEntry entry = attack(0);
  InspectionResult old_interrupted = interruptedInspection();
  old_interrupted.recovered = false;
  std::string old_record =
      serializeRecord(entry.request, entry.response, entry.outcome, old_interrupted, entry.meta);
  ASSERT_EQ(old_record.find("\"recovered\""), std::string::npos);
  writeJournalFile(1, journal_lines::makeLine(journal_lines::kLegacyEntry, eventId(0), old_record));

  MetricsRegistry metrics;
  JournalRecovery result = recover(metrics, inspecting());
  EXPECT_EQ(result.recovered, 1u);
  EXPECT_EQ(result.inspected, 0u);
  EXPECT_EQ(result.inspection_failed, 0u);
  EXPECT_EQ(metrics.counter("webtrap_journal_records_uninspected_total", "",
                            R"(reason="legacy_entry")").value(),
            1u);
  EXPECT_EQ(spoolRecords(), (std::vector<std::string>{serializeInterruptedRecord(entry)}));
}

TEST_F(JournalRecoveryTest, InspectionTimeLimitLeavesRestInterrupted) {
  writeAttackEntries(3);

  // No time to inspect: every entry comes back uninspected, none is lost.
  RecoveryOptions options = inspecting();
  options.max_inspection_time = std::chrono::milliseconds(0);
  MetricsRegistry metrics;
  JournalRecovery result = recover(metrics, options);
  EXPECT_EQ(result.recovered, 3u);
  EXPECT_EQ(result.inspected, 0u);
  EXPECT_EQ(result.uninspected, 3u);
  EXPECT_EQ(metrics.counter("webtrap_journal_records_uninspected_total", "",
                            R"(reason="limit")").value(),
            3u);
  EXPECT_NE(log_.find("for at most 0 ms"), std::string::npos) << log_;
  std::vector<std::string> records = spoolRecords();
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0], serializeInterruptedRecord(attack(0)));
}

TEST_F(JournalRecoveryTest, InspectionLimitLeavesRestInterrupted) {
  writeAttackEntries(4);

  MetricsRegistry metrics;
  JournalRecovery result = recover(metrics, inspecting(2));
  EXPECT_EQ(result.recovered, 4u);
  EXPECT_EQ(result.inspected, 2u);
  EXPECT_EQ(result.uninspected, 2u);
  EXPECT_EQ(result.inspection_failed, 0u);
  EXPECT_EQ(metrics.counter("webtrap_journal_records_uninspected_total", "",
                            R"(reason="limit")").value(),
            2u);
  EXPECT_NE(log_.find("2 recovered entries were not inspected"), std::string::npos) << log_;
  EXPECT_NE(log_.find("inspects at most 2 entries"), std::string::npos) << log_;
  std::vector<std::string> records = spoolRecords();
  ASSERT_EQ(records.size(), 4u);
  EXPECT_EQ(records[2], serializeInterruptedRecord(attack(2)));
  EXPECT_EQ(records[3], serializeInterruptedRecord(attack(3)));
}

TEST_F(JournalRecoveryTest, WithoutInspectorRecordsInterrupted) {
  writeJournalFile(1, journal_lines::makeEntryLine(eventId(0), encoded(attack(0))));
  MetricsRegistry metrics;
  JournalRecovery result = recover(metrics, RecoveryOptions{});
  EXPECT_EQ(result.uninspected, 1u);
  EXPECT_EQ(metrics.counter("webtrap_journal_records_uninspected_total", "",
                            R"(reason="no_inspector")").value(),
            1u);
  EXPECT_EQ(spoolRecords(), (std::vector<std::string>{serializeInterruptedRecord(attack(0))}));
}

// A file past max_file_bytes is not read: its entries and done ids are
// ignored, it stays in the folder, and the files around it are recovered.
TEST_F(JournalRecoveryTest, OversizedFileSkippedAndCounted) {
  writeJournalFile(1, journal_lines::makeEntryLine(eventId(0), encoded(attack(0))));
  // A done line for entry 2 in the oversized file, which recovery must not
  // see, and a sparse tail past the limit.
  writeJournalFile(2, journal_lines::makeEntryLine(eventId(1), encoded(attack(1))) +
                          journal_lines::makeLine(journal_lines::kDone, eventId(2), {}));
  fs::resize_file(journal_dir_ / journalFileName(2), 1ull << 30);
  writeJournalFile(3, journal_lines::makeEntryLine(eventId(2), encoded(attack(2))));

  const std::uint64_t limit = 64 * 1024;
  MetricsRegistry metrics;
  JournalRecovery result = recover(metrics, inspecting(100, limit));
  EXPECT_EQ(result.oversized_files, 1u);
  EXPECT_EQ(result.files, 2u);
  EXPECT_EQ(result.skipped_done, 0u);
  EXPECT_EQ(result.recovered, 2u);
  EXPECT_EQ(result.inspected, 2u);
  EXPECT_EQ(metrics.counter("webtrap_journal_files_oversized_total", "").value(), 1u);
  EXPECT_NE(log_.find(journalFileName(2) + ": its size 1073741824 bytes is over the 65536 bytes"),
            std::string::npos)
      << log_;
  EXPECT_NE(log_.find("oversized_files=1 "), std::string::npos) << log_;
  EXPECT_TRUE(fs::exists(journal_dir_ / journalFileName(2)));
  EXPECT_FALSE(fs::exists(journal_dir_ / journalFileName(1)));
  EXPECT_FALSE(fs::exists(journal_dir_ / journalFileName(3)));

  std::vector<std::string> records = spoolRecords();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_NE(records[0].find(eventId(0)), std::string::npos);
  EXPECT_NE(records[1].find(eventId(2)), std::string::npos);
}

// A writer numbers its files after any file left in the folder, so a
// leftover 999999999999.journal makes it write 1000000000000.journal. That
// file must be recovered, while a second name for an existing number is
// not a journal file.
TEST_F(JournalRecoveryTest, FileNumberPastTwelveDigitsRecovered) {
  fs::create_directory(journal_dir_ / journalFileName(999'999'999'999));
  writeJournalFile(1'000'000'000'000, journal_lines::makeEntryLine(eventId(0), encoded(attack(0))));
  std::ofstream(journal_dir_ / "0000000000002.journal", std::ios::binary)
      << journal_lines::makeEntryLine(eventId(1), encoded(attack(1)));
  EXPECT_EQ(journalFileName(1'000'000'000'000), "1000000000000.journal");

  MetricsRegistry metrics;
  JournalRecovery result = recover(metrics, inspecting());
  EXPECT_EQ(result.files, 1u);
  EXPECT_EQ(result.recovered, 1u);
  EXPECT_EQ(result.skipped_files, 1u);
  EXPECT_FALSE(fs::exists(journal_dir_ / "1000000000000.journal"));
  EXPECT_TRUE(fs::exists(journal_dir_ / "0000000000002.journal"));
  std::vector<std::string> records = spoolRecords();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_NE(records[0].find(eventId(0)), std::string::npos);
}

TEST(JournalRecoveryLimit, FileLimitHasHeadroom) {
  // 2 * 8 MiB + 4 * 1 MiB + 16 MiB at the defaults.
  EXPECT_EQ(maxRecoveryFileBytes(8ull << 20, 1ull << 20), 36ull << 20);
  EXPECT_EQ(RecoveryOptions{}.max_file_bytes, 36ull << 20);
  // A full 64 MiB body, every byte escaped to two, still fits.
  EXPECT_GT(maxRecoveryFileBytes(8ull << 20, 64ull << 20), (8ull << 20) + 2 * (64ull << 20));
}

}  // namespace
}  // namespace webtrap::probe
