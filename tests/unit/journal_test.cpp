#include "probe/journal.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/error.h"
#include "probe/journal_entry.h"
#include "probe/journal_lines.h"
#include "probe/spool.h"
#include "spool_records.h"

namespace webtrap::probe {
namespace {

namespace fs = std::filesystem;

// A fresh spool folder per test, with the journal folder inside it.
class JournalTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("webtrap-journal-test-" + std::to_string(::getpid()) + "-" +
            testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    journal_dir_ = journalDirectory(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  SpoolConfig spoolConfig() const {
    SpoolConfig config;
    config.dir = dir_;
    config.fsync = FsyncPolicy::kNever;
    return config;
  }

  JournalConfig journalConfig(FsyncPolicy fsync = FsyncPolicy::kNever,
                              std::uint64_t file_bytes = 1 << 20) const {
    JournalConfig config;
    config.dir = journal_dir_;
    config.file_bytes = file_bytes;
    config.fsync = fsync;
    config.fsync_interval_ms = 3600 * 1000;  // tests commit by hand
    return config;
  }

  // Runs `work` with a spool and a journal in a child process that then
  // kills itself with SIGKILL, as the OOM killer would, so no destructor
  // runs.
  void runAndKill(const std::function<void(Spool&, InspectionJournal&)>& work,
                  std::uint64_t file_bytes = 1 << 20) {
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      MetricsRegistry metrics;
      auto* spool = new Spool(spoolConfig(), metrics);
      auto* journal =
          new InspectionJournal(journalConfig(FsyncPolicy::kNever, file_bytes), *spool, metrics);
      work(*spool, *journal);
      ::kill(::getpid(), SIGKILL);
      ::_exit(1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status));
    ASSERT_EQ(WTERMSIG(status), SIGKILL);
  }

  // Recovers the journal into the spool, as a new start does.
  JournalRecovery recover(MetricsRegistry& metrics) {
    Spool spool(spoolConfig(), metrics);
    return recoverJournal(journal_dir_, spool, metrics);
  }

  // Runs recover() with the default logger writing to `log`.
  JournalRecovery recoverLogged(MetricsRegistry& metrics, std::string& log) {
    return withCapturedLog(log, [&] { return recover(metrics); });
  }

  // The records in the spool segments, in write order.
  std::vector<std::string> spoolRecords() const { return readSpoolRecords(dir_); }

  std::vector<fs::path> journalFiles() const {
    std::vector<fs::path> files;
    if (!fs::exists(journal_dir_)) {
      return files;
    }
    for (const auto& entry : fs::directory_iterator(journal_dir_)) {
      files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    return files;
  }

  std::uint64_t journalBytes() const {
    std::uint64_t bytes = 0;
    for (const auto& file : journalFiles()) {
      bytes += fs::file_size(file);
    }
    return bytes;
  }

  static std::string readFile(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream content;
    content << in.rdbuf();
    return content.str();
  }

  // Request i: a POST to /journal-test/<i>/ whose body is `body_bytes`
  // bytes, with the bytes that the line escaping changes.
  static JournalEntry sample(int i, std::size_t body_bytes) {
    JournalEntry sample;
    CapturedRequest& request = sample.request;
    request.connection_id = "c-" + std::to_string(i);
    request.client = {"203.0.113.7", static_cast<std::uint16_t>(40000 + i)};
    request.server = {"127.0.0.1", 8080};
    request.listener = "web";
    request.parsed = true;
    request.method = "POST";
    request.target = "/journal-test/" + std::to_string(i) + "/";
    request.http_version = "1.1";
    request.request_line = "POST " + request.target + " HTTP/1.1";
    request.headers = {{"Host", "shop.example"}, {"User-Agent", "a\\b"}};
    request.body = "a=1\nb=\\2";
    request.body.resize(std::max(body_bytes, request.body.size()), 'p');
    request.body_size = request.body.size();
    request.body_sha256 = std::string(64, '0');
    request.received_at = std::chrono::system_clock::time_point(std::chrono::seconds(1796385600));
    request.timings = {100, 150, -1, -1};
    sample.response.headers = {{"Server", "Apache"}};
    sample.response.body = "<html>\n</html>";
    sample.outcome.route = "page";
    sample.outcome.route_kind = "page";
    sample.meta.event_id = eventId(i);
    sample.meta.sensor_id = "sensor-1";
    sample.meta.persona = "wordpress";
    return sample;
  }

  // The journal entry of request i.
  static std::string entry(int i, std::size_t body_bytes = 0) {
    JournalEntry request = sample(i, body_bytes);
    std::string encoded;
    encodeJournalEntry(encoded, request.request, request.response, request.outcome, request.meta);
    return encoded;
  }

  // The record that recovery writes for entry(i, body_bytes).
  static std::string record(int i, std::size_t body_bytes = 0) {
    return serializeInterruptedRecord(sample(i, body_bytes));
  }

  // A UUIDv7 text, as the collector's decoder requires of an event id.
  static std::string eventId(int i) {
    std::string digits = std::to_string(i);
    return "01938f5e-1c2a-7abc-8def-" + std::string(12 - digits.size(), '0') + digits;
  }

  fs::path dir_;
  fs::path journal_dir_;
};

TEST_F(JournalTest, RecoveryAppendsEntriesNotDone) {
  runAndKill([](Spool& spool, InspectionJournal& journal) {
    std::uint64_t tickets[3];
    for (int i = 0; i < 3; ++i) {
      tickets[i] = journal.append(eventId(i), entry(i));
    }
    spool.append(record(0));
    journal.markDone(tickets[0], eventId(0));
    spool.append(record(2));
    journal.markDone(tickets[2], eventId(2));
    journal.commit();
  });
  ASSERT_FALSE(journalFiles().empty());
  ASSERT_EQ(spoolRecords().size(), 2u);

  MetricsRegistry metrics;
  JournalRecovery result = recover(metrics);
  EXPECT_EQ(result.entries, 3u);
  EXPECT_EQ(result.recovered, 1u);
  EXPECT_EQ(result.damaged, 0u);
  EXPECT_EQ(spoolRecords(), (std::vector<std::string>{record(0), record(2), record(1)}));
  EXPECT_EQ(metrics.counter("webtrap_journal_records_recovered_total", "").value(), 1u);
  EXPECT_TRUE(journalFiles().empty());
}

TEST_F(JournalTest, DoneIdsNotCommittedAreReplayed) {
  // Done ids wait for a batch, so after a kill their records come twice.
  runAndKill([](Spool& spool, InspectionJournal& journal) {
    std::uint64_t first = journal.append(eventId(0), entry(0));
    journal.append(eventId(1), entry(1));
    spool.append(record(0));
    journal.markDone(first, eventId(0));
  });
  MetricsRegistry metrics;
  JournalRecovery result = recover(metrics);
  EXPECT_EQ(result.recovered, 2u);
  EXPECT_EQ(spoolRecords(), (std::vector<std::string>{record(0), record(0), record(1)}));
}

// Recovery does not read the spool, so its line counts the entries skipped
// for a done id, and a record spooled without its done id is recovered.
TEST_F(JournalTest, RecoveryLogCountsSkippedDoneEntries) {
  runAndKill([](Spool& spool, InspectionJournal& journal) {
    std::uint64_t committed = journal.append(eventId(0), entry(0));
    std::uint64_t uncommitted = journal.append(eventId(1), entry(1));
    journal.append(eventId(2), entry(2));
    spool.append(record(0));
    journal.markDone(committed, eventId(0));
    journal.commit();
    spool.append(record(1));
    journal.markDone(uncommitted, eventId(1));
  });
  MetricsRegistry metrics;
  std::string log;
  JournalRecovery result = recoverLogged(metrics, log);

  EXPECT_EQ(result.entries, 3u);
  EXPECT_EQ(result.skipped_done, 1u);
  EXPECT_EQ(result.recovered, 2u);
  EXPECT_NE(log.find("entries=3 recovered=2 skipped_done=1 "), std::string::npos) << log;
  EXPECT_EQ(log.find("already_spooled"), std::string::npos) << log;
  EXPECT_EQ(spoolRecords(),
            (std::vector<std::string>{record(0), record(1), record(1), record(2)}));
}

TEST_F(JournalTest, FullDoneBatchIsWrittenWithoutCommit) {
  const int total = static_cast<int>(kDoneBatch) + 6;
  runAndKill([total](Spool&, InspectionJournal& journal) {
    std::vector<std::uint64_t> tickets;
    for (int i = 0; i < total; ++i) {
      tickets.push_back(journal.append(eventId(i), entry(i)));
    }
    for (int i = 0; i < static_cast<int>(kDoneBatch); ++i) {
      journal.markDone(tickets[static_cast<std::size_t>(i)], eventId(i));
    }
  });
  MetricsRegistry metrics;
  JournalRecovery result = recover(metrics);
  EXPECT_EQ(result.entries, static_cast<std::uint64_t>(total));
  EXPECT_EQ(result.recovered, 6u);
  std::vector<std::string> expected;
  for (int i = static_cast<int>(kDoneBatch); i < total; ++i) {
    expected.push_back(record(i));
  }
  EXPECT_EQ(spoolRecords(), expected);
}

TEST_F(JournalTest, DoneIdsWrittenWhenNothingPending) {
  runAndKill([](Spool&, InspectionJournal& journal) {
    std::uint64_t ticket = journal.append(eventId(0), entry(0));
    journal.markDone(ticket, eventId(0));
  });
  MetricsRegistry metrics;
  EXPECT_EQ(recover(metrics).recovered, 0u);
  EXPECT_TRUE(spoolRecords().empty());
}

TEST_F(JournalTest, TruncatedLastLineSkippedAndCounted) {
  runAndKill([](Spool&, InspectionJournal& journal) {
    for (int i = 0; i < 3; ++i) {
      journal.append(eventId(i), entry(i));
    }
  });
  std::vector<fs::path> files = journalFiles();
  ASSERT_EQ(files.size(), 1u);
  // Cut the last entry in the middle, as a kill during its write would.
  fs::resize_file(files[0], fs::file_size(files[0]) - 5);

  MetricsRegistry metrics;
  JournalRecovery result = recover(metrics);
  EXPECT_EQ(result.damaged, 1u);
  EXPECT_EQ(result.recovered, 2u);
  EXPECT_EQ(spoolRecords(), (std::vector<std::string>{record(0), record(1)}));
  EXPECT_EQ(metrics.counter("webtrap_journal_lines_damaged_total", "").value(), 1u);
  EXPECT_TRUE(journalFiles().empty());
}

TEST_F(JournalTest, CorruptedLineSkippedAndCounted) {
  runAndKill([](Spool&, InspectionJournal& journal) {
    for (int i = 0; i < 3; ++i) {
      journal.append(eventId(i), entry(i));
    }
  });
  std::vector<fs::path> files = journalFiles();
  ASSERT_EQ(files.size(), 1u);
  std::string content = readFile(files[0]);
  std::size_t middle = content.find("/journal-test/1/");
  ASSERT_NE(middle, std::string::npos);
  content[middle + 2] = 'X';
  std::ofstream(files[0], std::ios::binary | std::ios::trunc) << content;

  MetricsRegistry metrics;
  JournalRecovery result = recover(metrics);
  EXPECT_EQ(result.damaged, 1u);
  EXPECT_EQ(spoolRecords(), (std::vector<std::string>{record(0), record(2)}));
}

TEST_F(JournalTest, GarbageFileDoesNotFailRecovery) {
  fs::create_directories(journal_dir_);
  std::ofstream(journal_dir_ / journalFileName(1), std::ios::binary)
      << std::string(100, '\0') << "\nE zzzzzzzz id {}\nD\n";
  MetricsRegistry metrics;
  JournalRecovery result = recover(metrics);
  EXPECT_EQ(result.damaged, 3u);
  EXPECT_EQ(result.recovered, 0u);
  EXPECT_TRUE(journalFiles().empty());
}

// Files left by probes that wrote the whole record in an E line.
TEST_F(JournalTest, LegacyEntryLinesAreRecovered) {
  fs::create_directories(journal_dir_);
  std::ofstream(journal_dir_ / journalFileName(1), std::ios::binary)
      << journal_lines::makeLine(journal_lines::kLegacyEntry, eventId(0), record(0))
      << journal_lines::makeLine(journal_lines::kLegacyEntry, eventId(1), record(1))
      << journal_lines::makeLine(journal_lines::kDone, eventId(0), {});
  MetricsRegistry metrics;
  JournalRecovery result = recover(metrics);
  EXPECT_EQ(result.entries, 2u);
  EXPECT_EQ(result.legacy, 2u);
  EXPECT_EQ(result.skipped_done, 1u);
  EXPECT_EQ(result.recovered, 1u);
  EXPECT_EQ(result.rejected, 0u);
  EXPECT_EQ(spoolRecords(), (std::vector<std::string>{record(1)}));
  EXPECT_TRUE(journalFiles().empty());
}

// A journal left by an earlier probe and then appended to by this one, as
// after an upgrade whose recovery could not delete the old file: E and R
// lines in one file, done lines naming both kinds across files.
TEST_F(JournalTest, MixedLegacyAndCompactEntriesRecovered) {
  fs::create_directories(journal_dir_);
  std::ofstream(journal_dir_ / journalFileName(1), std::ios::binary)
      << journal_lines::makeLine(journal_lines::kLegacyEntry, eventId(0), record(0))
      << journal_lines::makeEntryLine(eventId(1), entry(1))
      << journal_lines::makeLine(journal_lines::kLegacyEntry, eventId(2), record(2))
      << journal_lines::makeEntryLine(eventId(3), entry(3));
  std::ofstream(journal_dir_ / journalFileName(2), std::ios::binary)
      << journal_lines::makeLine(journal_lines::kDone, eventId(0) + " " + eventId(3), {})
      << journal_lines::makeEntryLine(eventId(4), entry(4, 3000));
  MetricsRegistry metrics;
  JournalRecovery result = recover(metrics);
  EXPECT_EQ(result.entries, 5u);
  EXPECT_EQ(result.legacy, 2u);
  EXPECT_EQ(result.skipped_done, 2u);
  EXPECT_EQ(result.recovered, 3u);
  EXPECT_EQ(result.rejected, 0u);
  EXPECT_EQ(result.damaged, 0u);
  EXPECT_EQ(spoolRecords(), (std::vector<std::string>{record(1), record(2), record(4, 3000)}));
  EXPECT_TRUE(journalFiles().empty());
}

TEST_F(JournalTest, UnreadableEntriesRejectedAndCounted) {
  std::string newer_format = entry(1);
  newer_format[0] = static_cast<char>(kJournalEntryFormat + 1);
  std::string truncated = entry(2);
  truncated.resize(truncated.size() - 3);
  fs::create_directories(journal_dir_);
  std::ofstream(journal_dir_ / journalFileName(1), std::ios::binary)
      << journal_lines::makeEntryLine(eventId(0), entry(0))
      << journal_lines::makeEntryLine(eventId(1), newer_format)
      << journal_lines::makeEntryLine(eventId(2), truncated)
      // A well-formed E line whose record is not an audit record.
      << journal_lines::makeLine(journal_lines::kLegacyEntry, eventId(3), "{\"record\":3}")
      // A valid record under another entry's event id.
      << journal_lines::makeLine(journal_lines::kLegacyEntry, eventId(4), record(5))
      << journal_lines::makeEntryLine(eventId(6), entry(6));

  MetricsRegistry metrics;
  std::string log;
  JournalRecovery result = recoverLogged(metrics, log);

  EXPECT_EQ(result.entries, 6u);
  EXPECT_EQ(result.rejected, 4u);
  EXPECT_EQ(result.damaged, 0u);
  EXPECT_EQ(result.recovered, 2u);
  EXPECT_EQ(spoolRecords(), (std::vector<std::string>{record(0), record(6)}));
  EXPECT_EQ(metrics.counter("webtrap_journal_entries_rejected_total", "").value(), 4u);
  EXPECT_NE(log.find("event_id=" + eventId(1) + " reason=unknown entry format 2"), std::string::npos) << log;
  EXPECT_NE(log.find("event_id=" + eventId(2) + " reason=the entry ends inside a field"), std::string::npos)
      << log;
  EXPECT_NE(log.find("event_id=" + eventId(3) + " reason=the collector's decoder rejects"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("event_id=" + eventId(4) + " reason=its record has the event id '" + eventId(5) + "'"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("rejected=4 "), std::string::npos) << log;
  EXPECT_TRUE(journalFiles().empty());
}

TEST_F(JournalTest, SymlinkNamedLikeJournalFileSkipped) {
  // The link points at a valid journal file outside the folder, so only
  // O_NOFOLLOW keeps recovery from reading it.
  fs::create_directories(journal_dir_);
  fs::path outside = dir_ / "outside.journal";
  std::ofstream(outside, std::ios::binary) << journal_lines::makeEntryLine(eventId(9), entry(9));
  fs::create_symlink(outside, journal_dir_ / journalFileName(2));
  std::ofstream(journal_dir_ / journalFileName(3), std::ios::binary)
      << journal_lines::makeEntryLine(eventId(0), entry(0));

  MetricsRegistry metrics;
  JournalRecovery result = recover(metrics);
  EXPECT_EQ(result.skipped_files, 1u);
  EXPECT_EQ(result.files, 1u);
  EXPECT_EQ(result.recovered, 1u);
  EXPECT_EQ(spoolRecords(), (std::vector<std::string>{record(0)}));
  EXPECT_EQ(metrics.counter("webtrap_journal_files_skipped_total", "").value(), 1u);
  EXPECT_TRUE(fs::is_symlink(journal_dir_ / journalFileName(2)));
  EXPECT_FALSE(fs::exists(journal_dir_ / journalFileName(3)));
  EXPECT_TRUE(fs::exists(outside));
}

TEST_F(JournalTest, MissingFolderIsEmptyJournal) {
  MetricsRegistry metrics;
  JournalRecovery result = recover(metrics);
  EXPECT_EQ(result.files, 0u);
  EXPECT_EQ(result.recovered, 0u);
  EXPECT_FALSE(fs::exists(journal_dir_));
}

TEST_F(JournalTest, RotationKeepsJournalBounded) {
  const std::uint64_t file_bytes = 8192;
  MetricsRegistry metrics;
  Spool spool(spoolConfig(), metrics);
  InspectionJournal journal(journalConfig(FsyncPolicy::kNever, file_bytes), spool, metrics);

  // Steady load: up to 8 requests queued at any time, 2,000 in all.
  std::vector<std::pair<std::uint64_t, int>> queued;
  std::uint64_t max_bytes = 0;
  std::size_t max_files = 0;
  for (int i = 0; i < 2000; ++i) {
    std::uint64_t ticket = journal.append(eventId(i), entry(i, 150));
    ASSERT_NE(ticket, 0u);
    queued.emplace_back(ticket, i);
    if (queued.size() == 8) {
      for (const auto& [done_ticket, id] : queued) {
        spool.append(record(id));
        journal.markDone(done_ticket, eventId(id));
      }
      queued.clear();
    }
    max_bytes = std::max(max_bytes, journalBytes());
    max_files = std::max(max_files, journalFiles().size());
  }
  // The open file and the one before it, each past file_bytes by at most
  // its last entry and one done line.
  EXPECT_LE(max_bytes, 2 * file_bytes + 1024);
  EXPECT_LE(max_files, 2u);
  EXPECT_EQ(metrics.counter("webtrap_journal_entries_total", "").value(), 2000u);

  for (const auto& [done_ticket, id] : queued) {
    journal.markDone(done_ticket, eventId(id));
  }
  EXPECT_EQ(journal.pendingEntries(), 0u);
  journal.close();
  EXPECT_TRUE(journalFiles().empty());
  EXPECT_EQ(metrics.gauge("webtrap_journal_bytes", "").value(), 0);
}

TEST_F(JournalTest, PendingEntryKeepsItsFileAfterRotation) {
  const std::uint64_t file_bytes = 1024;
  MetricsRegistry metrics;
  Spool spool(spoolConfig(), metrics);
  auto journal = std::make_unique<InspectionJournal>(
      journalConfig(FsyncPolicy::kNever, file_bytes), spool, metrics);
  std::uint64_t stuck = journal->append(eventId(0), entry(0, 200));
  for (int i = 1; i < 50; ++i) {
    std::uint64_t ticket = journal->append(eventId(i), entry(i, 200));
    journal->markDone(ticket, eventId(i));
  }
  EXPECT_TRUE(fs::exists(journal_dir_ / journalFileName(stuck)));
  EXPECT_EQ(journal->pendingEntries(), 1u);

  // A stop with an entry pending keeps the files for the next start.
  journal->close();
  EXPECT_FALSE(journalFiles().empty());
  journal.reset();
  JournalRecovery result = recoverJournal(journal_dir_, spool, metrics);
  EXPECT_EQ(result.recovered, 1u);
  EXPECT_EQ(spoolRecords(), (std::vector<std::string>{record(0, 200)}));
}

TEST_F(JournalTest, CleanCloseLeavesNothingToRecover) {
  MetricsRegistry metrics;
  Spool spool(spoolConfig(), metrics);
  {
    InspectionJournal journal(journalConfig(), spool, metrics);
    for (int i = 0; i < 10; ++i) {
      std::uint64_t ticket = journal.append(eventId(i), entry(i));
      spool.append(record(i));
      journal.markDone(ticket, eventId(i));
    }
    journal.close();
    EXPECT_TRUE(journalFiles().empty());
  }
  JournalRecovery result = recoverJournal(journal_dir_, spool, metrics);
  EXPECT_EQ(result.files, 0u);
  EXPECT_EQ(spoolRecords().size(), 10u);
}

TEST_F(JournalTest, IntervalPolicyFsyncsSpoolBeforeDoneIds) {
  MetricsRegistry metrics;
  Spool spool(spoolConfig(), metrics);
  InspectionJournal journal(journalConfig(FsyncPolicy::kInterval), spool, metrics);
  std::uint64_t ticket = journal.append(eventId(0), entry(0));
  journal.append(eventId(1), entry(1));
  spool.append(record(0));
  journal.markDone(ticket, eventId(0));

  std::vector<fs::path> files = journalFiles();
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(readFile(files[0]).find("\nD "), std::string::npos)
      << "done ids are written before the spool's fsync";
  Counter& fsyncs = metrics.counter("webtrap_spool_fsyncs_total", "");
  std::uint64_t before = fsyncs.value();
  journal.commit();
  EXPECT_EQ(fsyncs.value(), before + 1);
  EXPECT_NE(readFile(files[0]).find("\nD "), std::string::npos);
}

TEST_F(JournalTest, RecoveryKeepsLeftFilesNumbering) {
  // Files that a recovery could not delete stay, and a new journal numbers its
  // files after them.
  fs::create_directories(journal_dir_);
  std::ofstream(journal_dir_ / journalFileName(7), std::ios::binary) << "";
  MetricsRegistry metrics;
  Spool spool(spoolConfig(), metrics);
  InspectionJournal journal(journalConfig(), spool, metrics);
  EXPECT_EQ(journal.append(eventId(0), entry(0)), 8u);
}

TEST_F(JournalTest, LockRejectsSecondHolder) {
  std::unique_ptr<FileHandle> first = lockJournalDirectory(journal_dir_);
  ASSERT_TRUE(fs::is_directory(journal_dir_));
  try {
    lockJournalDirectory(journal_dir_);
    FAIL() << "a second lock on the journal folder was granted";
  } catch (const ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find("locked by another process"), std::string::npos)
        << error.what();
    EXPECT_NE(std::string(error.what()).find(journal_dir_.string()), std::string::npos)
        << error.what();
  }
  first.reset();
  EXPECT_NE(lockJournalDirectory(journal_dir_), nullptr);
}

TEST_F(JournalTest, SpoolLockRejectsSecondProbe) {
  const fs::path spool_dir = dir_ / "spool";
  std::unique_ptr<FileHandle> first = lockSpoolDirectory(spool_dir);
  ASSERT_TRUE(fs::is_directory(spool_dir));
  // The journal folder inside it has a lock of its own.
  EXPECT_NE(lockJournalDirectory(spool_dir / "inspection-journal"), nullptr);
  try {
    lockSpoolDirectory(spool_dir);
    FAIL() << "a second lock on the spool folder was granted";
  } catch (const ConfigError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("spool folder '" + spool_dir.string() + "'"), std::string::npos)
        << message;
    EXPECT_NE(message.find("give each probe its own spool.dir"), std::string::npos) << message;
  }
  first.reset();
  EXPECT_NE(lockSpoolDirectory(spool_dir), nullptr);
}

TEST_F(JournalTest, LockOnFileNamesPath) {
  fs::create_directories(dir_);
  std::ofstream(journal_dir_, std::ios::binary) << "not a folder";
  try {
    lockJournalDirectory(journal_dir_);
    FAIL() << "a file in place of the journal folder was locked";
  } catch (const ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find(journal_dir_.string()), std::string::npos)
        << error.what();
    EXPECT_NE(std::string(error.what()).find("move away"), std::string::npos) << error.what();
  }
  EXPECT_TRUE(fs::is_regular_file(journal_dir_));
}

TEST(JournalFileName, IsNumberedAndPadded) {
  EXPECT_EQ(journalFileName(42), "000000000042.journal");
  EXPECT_EQ(journalDirectory("/var/spool/webtrap"),
            fs::path("/var/spool/webtrap/inspection-journal"));
}

}  // namespace
}  // namespace webtrap::probe
