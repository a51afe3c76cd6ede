#include "collector/store.h"

#include "collector/dashboard_sqlite.h"
#include "collector/ecs.h"
#include "collector/retention.h"
#include "common/gzip.h"
#include "sqlite_rows.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

namespace webtrap::collector {
namespace {

namespace fs = std::filesystem;

std::int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

NewEvent makeEvent(const std::string& id, std::size_t size = 100, std::int64_t timestamp = 1000) {
  NewEvent event;
  event.event_id = id;
  event.timestamp_ms = timestamp;
  event.sensor_id = "sensor-a";
  event.source_ip = "192.0.2.7";
  event.document = "{\"id\":\"" + id + "\",\"pad\":\"";
  if (event.document.size() + 2 < size) {
    event.document.append(size - event.document.size() - 2, 'x');
  }
  event.document += "\"}";
  return event;
}

std::vector<NewEvent> makeEvents(const std::string& prefix, int count, std::size_t size = 100) {
  std::vector<NewEvent> events;
  for (int i = 0; i < count; ++i) {
    events.push_back(makeEvent(prefix + std::to_string(i), size));
  }
  return events;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("webtrap-store-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    options_.path = dir_ / "store.sqlite";
    options_.synchronous = "normal";
    options_.retention_max_age_ms = 0;
    options_.retention_max_bytes = 0;
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
  StoreOptions options_;
};

TEST_F(StoreTest, InsertCountsDuplicates) {
  Store store(options_);
  auto first = makeEvents("e", 3);
  InsertSummary summary = store.insert(first);
  EXPECT_EQ(summary.stored, 3u);
  EXPECT_EQ(summary.duplicates, 0u);

  std::vector<NewEvent> second = {makeEvent("e1"), makeEvent("e9")};
  summary = store.insert(second);
  EXPECT_EQ(summary.stored, 1u);
  EXPECT_EQ(summary.duplicates, 1u);

  EXPECT_EQ(store.eventCount(), 4u);
  EXPECT_EQ(store.lastSeq(), 4);
  EXPECT_EQ(store.duplicateCount(), 1u);
  EXPECT_EQ(store.sizeBytes(), 400u);
}

// A new store, its WAL and the dashboard index keep attackers' requests,
// so only the collector's user may read them.
TEST_F(StoreTest, NewFilesArePrivate) {
  const mode_t old_mask = ::umask(022);
  {
    Store store(options_);
    store.insert(makeEvents("p", 2));
    dashboard::Database index(dir_ / "dashboard.sqlite", false);
    index.exec("CREATE TABLE t (x)");
    for (const char* name : {"store.sqlite", "store.sqlite-wal", "dashboard.sqlite"}) {
      struct stat info {};
      ASSERT_EQ(::stat((dir_ / name).c_str(), &info), 0) << name;
      EXPECT_EQ(info.st_mode & 0777, 0600u) << name;
    }
  }
  ::umask(old_mask);
}

// A store path that is a symbolic link to a file not there yet gets a
// private file too: opening with O_EXCL failed on the link, and SQLite
// created the target with the umask's mode 0644.
TEST_F(StoreTest, NewStoreThroughLinkIsPrivate) {
  const mode_t old_mask = ::umask(022);
  std::filesystem::create_directories(dir_ / "real");
  std::filesystem::create_symlink(dir_ / "real" / "store.sqlite", dir_ / "link.sqlite");
  StoreOptions options = options_;
  options.path = dir_ / "link.sqlite";
  {
    Store store(options);
    store.insert(makeEvents("l", 1));
  }
  struct stat info {};
  ASSERT_EQ(::stat((dir_ / "real" / "store.sqlite").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  ::umask(old_mask);
}

TEST_F(StoreTest, DuplicateInsideOneBatch) {
  Store store(options_);
  std::vector<NewEvent> events = {makeEvent("a"), makeEvent("a"), makeEvent("b")};
  InsertSummary summary = store.insert(events);
  EXPECT_EQ(summary.stored, 2u);
  EXPECT_EQ(summary.duplicates, 1u);
  auto stored = store.readAfter(0, 10, 1 << 20);
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[0].seq, 1);
  EXPECT_EQ(stored[1].seq, 2);
}

TEST_F(StoreTest, ReopenShowsCommittedData) {
  auto events = makeEvents("r", 5, 300);
  {
    Store store(options_);
    store.insert(events);
  }
  Store store(options_);
  EXPECT_EQ(store.eventCount(), 5u);
  EXPECT_EQ(store.sizeBytes(), 1500u);
  EXPECT_EQ(store.lastSeq(), 5);
  auto stored = store.readAfter(0, 100, 1 << 20);
  ASSERT_EQ(stored.size(), 5u);
  for (std::size_t i = 0; i < stored.size(); ++i) {
    EXPECT_EQ(stored[i].seq, static_cast<std::int64_t>(i + 1));
    EXPECT_EQ(stored[i].event_id, events[i].event_id);
    EXPECT_EQ(stored[i].document, events[i].document);
    EXPECT_EQ(stored[i].sensor_id, "sensor-a");
    EXPECT_EQ(stored[i].timestamp_ms, 1000);
  }
  // A duplicate of an event stored before the restart is still caught.
  std::vector<NewEvent> again = {events[2]};
  EXPECT_EQ(store.insert(again).duplicates, 1u);
}

TEST_F(StoreTest, FullSynchronousInsertWorks) {
  options_.synchronous = "full";
  Store store(options_);
  auto events = makeEvents("f", 3);
  EXPECT_EQ(store.insert(events).stored, 3u);
}

TEST_F(StoreTest, FullSynchronousConcurrentInserts) {
  // Under synchronous=full a group's leader syncs the WAL after releasing
  // the write lock while the next group commits, so every insert must
  // still return its own counts.
  options_.synchronous = "full";
  Store store(options_);
  constexpr int kThreads = 8;
  constexpr int kBatches = 20;
  std::atomic<std::size_t> stored{0};
  std::atomic<std::size_t> duplicates{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int b = 0; b < kBatches; ++b) {
        // Half of each batch is shared by every thread, so duplicates
        // cross groups.
        const std::string prefix = "t" + std::to_string(t) + "b" + std::to_string(b) + "-";
        std::vector<NewEvent> events = makeEvents(prefix, 5, 500);
        auto shared = makeEvents("shared" + std::to_string(b) + "-", 5, 500);
        events.insert(events.end(), shared.begin(), shared.end());
        try {
          InsertSummary summary = store.insert(events);
          stored += summary.stored;
          duplicates += summary.duplicates;
        } catch (const StoreError&) {
          ++failures;
        }
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(failures.load(), 0);
  // Each thread's own events, plus one copy of each shared batch.
  const std::size_t expected = kThreads * kBatches * 5 + kBatches * 5;
  EXPECT_EQ(stored.load(), expected);
  EXPECT_EQ(duplicates.load(), static_cast<std::size_t>((kThreads - 1) * kBatches * 5));
  EXPECT_EQ(store.eventCount(), expected);
  EXPECT_EQ(store.lastSeq(), static_cast<std::int64_t>(expected));
}

TEST_F(StoreTest, FullSynchronousKeepsCursorsAndOffsets) {
  options_.synchronous = "full";
  {
    Store store(options_);
    store.insert(makeEvents("f", 3));
    store.registerOutput("es");
    store.setCursor("es", 2);
    store.setFileOffset("/var/log/a.json", {9, 99, {}});
    // An insert after the relaxed writes still commits under full.
    EXPECT_EQ(store.insert(makeEvents("g", 1)).stored, 1u);
  }
  Store store(options_);
  EXPECT_EQ(store.cursor("es"), 2);
  ASSERT_TRUE(store.fileOffset("/var/log/a.json").has_value());
  EXPECT_EQ(store.fileOffset("/var/log/a.json")->offset, 99u);
  EXPECT_EQ(store.eventCount(), 4u);
}

TEST_F(StoreTest, InsertWithDeadLettersInOneCall) {
  Store store(options_);
  std::vector<DeadLetter> letters = {{0, "ingest", "", "line 2: invalid JSON", "{oops", 0, {}},
                                     {0, "ingest", "", "line 5: invalid JSON", "]", 0, {}}};
  auto events = makeEvents("d", 2);
  InsertSummary summary = store.insert(events, letters);
  EXPECT_EQ(summary.stored, 2u);
  EXPECT_EQ(store.deadLetterCount(), 2u);

  // Dead letters alone are stored too.
  summary = store.insert({}, std::span<const DeadLetter>(letters.data(), 1));
  EXPECT_EQ(summary.stored, 0u);
  EXPECT_EQ(store.deadLetterCount(), 3u);

  store.addDeadLetters(letters);
  EXPECT_EQ(store.deadLetterCount(), 5u);
  EXPECT_EQ(store.deadLetters(1).at(0).payload, "]");
}

TEST_F(StoreTest, InvalidSynchronousRejected) {
  options_.synchronous = "sometimes";
  try {
    Store store(options_);
    FAIL() << "expected a StoreError";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("sometimes"), std::string::npos) << e.what();
  }
}

TEST_F(StoreTest, CursorsPersist) {
  {
    Store store(options_);
    store.insert(makeEvents("c", 10));
    store.registerOutput("elasticsearch");
    store.registerOutput("ndjson");
    EXPECT_EQ(store.cursor("elasticsearch"), 0);
    store.setCursor("elasticsearch", 7);
    store.setCursor("ndjson", 3);
  }
  Store store(options_);
  EXPECT_EQ(store.cursor("elasticsearch"), 7);
  EXPECT_EQ(store.cursor("ndjson"), 3);
  EXPECT_EQ(store.cursor("unknown"), 0);
  // Registering again keeps the cursor.
  store.registerOutput("elasticsearch");
  EXPECT_EQ(store.cursor("elasticsearch"), 7);
  std::vector<std::string> expected = {"elasticsearch", "ndjson"};
  EXPECT_EQ(store.outputs(), expected);
}

TEST_F(StoreTest, NotedCursorNeverMovesBackAndPersists) {
  {
    Store store(options_);
    store.insert(makeEvents("n", 10));
    store.registerOutput("es");
    store.noteCursor("es", 6);
    store.noteCursor("es", 4);
    EXPECT_EQ(store.cursor("es"), 6);
    // A cursor set outright replaces a noted one.
    store.setCursor("es", 5);
    EXPECT_EQ(store.cursor("es"), 5);
    store.noteCursor("es", 8);
    EXPECT_EQ(store.cursor("es"), 8);
  }
  Store store(options_);
  EXPECT_EQ(store.cursor("es"), 8);
}

TEST_F(StoreTest, CursorsNotedDuringInsertsAreAllWritten) {
  options_.synchronous = "full";
  constexpr int kWriters = 4;
  constexpr int kBatches = 30;
  std::int64_t last_noted = 0;
  {
    Store store(options_);
    store.registerOutput("es");
    std::atomic<bool> writing{true};
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) {
      writers.emplace_back([&store, w] {
        for (int b = 0; b < kBatches; ++b) {
          store.insert(makeEvents("w" + std::to_string(w) + "b" + std::to_string(b) + "-", 50));
        }
      });
    }
    // Notes taken while the writers insert: each is seen at once and none
    // goes back, whichever write ends up storing it.
    std::thread noter([&] {
      while (writing.load()) {
        const std::int64_t seq = store.lastSeq();
        store.noteCursor("es", seq);
        EXPECT_GE(store.cursor("es"), seq);
        last_noted = std::max(last_noted, seq);
      }
    });
    for (auto& writer : writers) {
      writer.join();
    }
    writing = false;
    noter.join();
    EXPECT_EQ(store.cursor("es"), last_noted);
  }
  Store store(options_);
  EXPECT_GT(last_noted, 0);
  EXPECT_EQ(store.cursor("es"), last_noted);
}

TEST_F(StoreTest, NotedCursorSeenWhileAWriteStoresIt) {
  constexpr int kWriters = 3;
  constexpr int kBatches = 40;
  Store store(options_);
  store.registerOutput("es");
  std::atomic<bool> writing{true};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&store, w] {
      for (int b = 0; b < kBatches; ++b) {
        store.insert(makeEvents("m" + std::to_string(w) + "b" + std::to_string(b) + "-", 200));
      }
    });
  }

  // One thread notes ever higher cursors while this one reads them. A note
  // that an insert is storing must stay visible until that insert commits.
  std::atomic<std::int64_t> noted{0};
  std::thread noter([&] {
    while (writing.load()) {
      store.noteCursor("es", noted.load() + 1);
      noted.fetch_add(1);
    }
  });
  std::int64_t seen = 0;
  int moved_back = 0;
  while (store.lastSeq() < kWriters * kBatches * 200) {
    const std::int64_t cursor = store.cursor("es");
    if (cursor < seen) {
      ++moved_back;
    }
    seen = std::max(seen, cursor);
  }
  for (auto& writer : writers) {
    writer.join();
  }
  writing = false;
  noter.join();

  EXPECT_EQ(moved_back, 0);
  EXPECT_GT(seen, 0);
  EXPECT_EQ(store.cursor("es"), noted.load());
}

TEST_F(StoreTest, RetentionWritesNotedCursorsFirst) {
  options_.retention_max_age_ms = 1000;
  Store store(options_);
  store.registerOutput("es");
  store.insert(makeEvents("old", 4));
  const std::int64_t stored = nowMs();
  // Noted, and written at once or by retention; either way the output
  // finished these events, so their removal counts none as undelivered.
  store.noteCursor("es", 4);
  RetentionSummary summary = store.enforceRetention(stored + 1000 + 30);
  EXPECT_EQ(summary.removed, 4u);
  EXPECT_TRUE(summary.removed_undelivered.empty());
  EXPECT_EQ(store.cursor("es"), 4);
}

TEST_F(StoreTest, RetentionSeesCursorNotedDuringPass) {
  options_.retention_max_age_ms = 1000;
  Store store(options_);
  store.registerOutput("es");
  store.insert(makeEvents("late", 4));
  const std::int64_t stored = nowMs();

  // A second connection holds SQLite's write lock, so the pass waits in its
  // BEGIN IMMEDIATE after it has taken the store's write lock.
  sqlite3* holder = nullptr;
  ASSERT_EQ(sqlite3_open(options_.path.c_str(), &holder), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(holder, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  store.beginInFlight("es", 0);
  RetentionSummary summary;
  std::thread pass([&] { summary = store.enforceRetention(stored + 1000 + 30); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));

  // Meanwhile the output delivers the 4 events: it notes its cursor, which
  // the pass holds the lock to write, and ends its send.
  store.noteCursor("es", 4);
  const std::vector<std::int64_t> finished = {1, 2, 3, 4};
  store.endInFlight("es", finished);
  ASSERT_EQ(sqlite3_exec(holder, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  pass.join();
  sqlite3_close(holder);

  EXPECT_EQ(summary.removed, 4u);
  EXPECT_TRUE(summary.removed_undelivered.empty());
  EXPECT_TRUE(store.retentionTotals().removed_undelivered.empty());
  EXPECT_EQ(store.cursor("es"), 4);
}

TEST_F(StoreTest, ReadAfterRespectsBounds) {
  Store store(options_);
  store.insert(makeEvents("b", 20, 1000));

  auto by_count = store.readAfter(0, 5, 1 << 20);
  ASSERT_EQ(by_count.size(), 5u);
  EXPECT_EQ(by_count.front().seq, 1);
  EXPECT_EQ(by_count.back().seq, 5);

  auto after = store.readAfter(15, 100, 1 << 20);
  ASSERT_EQ(after.size(), 5u);
  EXPECT_EQ(after.front().seq, 16);
  EXPECT_EQ(after.back().seq, 20);

  auto by_bytes = store.readAfter(0, 100, 3500);
  EXPECT_EQ(by_bytes.size(), 3u);

  // One event is returned even when it alone exceeds the byte budget.
  auto oversized = store.readAfter(0, 100, 10);
  ASSERT_EQ(oversized.size(), 1u);
  EXPECT_EQ(oversized[0].seq, 1);

  EXPECT_TRUE(store.readAfter(20, 100, 1 << 20).empty());
  EXPECT_TRUE(store.readAfter(0, 0, 1 << 20).empty());
}

TEST_F(StoreTest, ReadAfterIntoReusedVector) {
  Store store(options_);
  store.insert(makeEvents("v", 10, 1000));

  std::vector<StoredEvent> events;
  store.readAfter(0, 6, 1 << 20, events);
  ASSERT_EQ(events.size(), 6u);
  EXPECT_EQ(events.front().seq, 1);
  EXPECT_EQ(events.back().event_id, "v5");

  // A shorter read drops the entries it does not fill.
  store.readAfter(6, 100, 1 << 20, events);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events.front().seq, 7);
  EXPECT_EQ(events.front().event_id, "v6");
  EXPECT_EQ(events.front().sensor_id, "sensor-a");
  EXPECT_EQ(events.front().document, makeEvent("v6", 1000).document);
  EXPECT_EQ(events.back().seq, 10);

  store.readAfter(10, 100, 1 << 20, events);
  EXPECT_TRUE(events.empty());
}

TEST_F(StoreTest, TimestampAfterFindsNextEvent) {
  Store store(options_);
  std::vector<NewEvent> events = {makeEvent("t1", 100, 5000), makeEvent("t2", 100, 7000)};
  store.insert(events);
  EXPECT_EQ(store.timestampAfter(0), 5000);
  EXPECT_EQ(store.timestampAfter(1), 7000);
  EXPECT_EQ(store.timestampAfter(2), std::nullopt);
}

TEST_F(StoreTest, DeadLettersKeepPayloadBytes) {
  Store store(options_);
  EXPECT_EQ(store.deadLetterCount(), 0u);
  const std::string raw("not json \xff\xfe\x00 end", 17);
  store.addDeadLetter({0, "ingest", "", "line 3 is not JSON", raw, 1234, {}});
  store.addDeadLetter({0, "elasticsearch", "id-9", "mapper_parsing_exception", "{}", 0, {}});
  EXPECT_EQ(store.deadLetterCount(), 2u);

  auto letters = store.deadLetters(10);
  ASSERT_EQ(letters.size(), 2u);
  // Newest first.
  EXPECT_EQ(letters[0].output, "elasticsearch");
  EXPECT_EQ(letters[0].event_id, "id-9");
  EXPECT_EQ(letters[0].reason, "mapper_parsing_exception");
  EXPECT_GT(letters[0].at_ms, 0);
  EXPECT_EQ(letters[1].output, "ingest");
  EXPECT_EQ(letters[1].payload, raw);
  EXPECT_EQ(letters[1].at_ms, 1234);
  EXPECT_GT(letters[0].id, letters[1].id);

  EXPECT_EQ(store.deadLetters(1).size(), 1u);
}

TEST_F(StoreTest, SensorsFoundByTokenHash) {
  const std::string hash_a(64, 'a');
  const std::string hash_b(64, 'b');
  {
    Store store(options_);
    store.enrolSensor(
        {.sensor_id = "web1", .group = "dmz", .token_sha256 = hash_a, .enrolled_ms = 100});
    store.enrolSensor(
        {.sensor_id = "web2", .group = "lan", .token_sha256 = hash_b, .enrolled_ms = 200});

    auto found = store.findSensorByTokenHash(hash_a);
    ASSERT_TRUE(found.has_value());
    EXPECT_EQ(found->sensor_id, "web1");
    EXPECT_EQ(found->group, "dmz");
    EXPECT_EQ(found->enrolled_ms, 100);
    EXPECT_EQ(found->last_seen_ms, 0);
    EXPECT_FALSE(store.findSensorByTokenHash(std::string(64, 'c')).has_value());

    // Pending updates show at once, before any write.
    store.noteSensorSeen("web1", 5000, 10);
    store.noteSensorSeen("web1", 4000, 5);
    found = store.findSensorByTokenHash(hash_a);
    ASSERT_TRUE(found.has_value());
    EXPECT_EQ(found->last_seen_ms, 5000);
    EXPECT_EQ(found->records, 15u);

    // An insert writes them with its transaction.
    store.insert(makeEvents("s", 1));
    store.noteSensorSeen("web1", 6000, 1);
  }
  Store store(options_);
  auto list = store.sensors();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].sensor_id, "web1");
  EXPECT_EQ(list[0].last_seen_ms, 6000);
  EXPECT_EQ(list[0].records, 16u);
  EXPECT_EQ(list[0].token_sha256, hash_a);
  EXPECT_EQ(list[1].sensor_id, "web2");
  EXPECT_EQ(list[1].records, 0u);

  // Enrolling the same id again replaces its token.
  store.enrolSensor({.sensor_id = "web1",
                     .group = "dmz",
                     .token_sha256 = std::string(64, 'd'),
                     .enrolled_ms = 300});
  EXPECT_FALSE(store.findSensorByTokenHash(hash_a).has_value());
  EXPECT_TRUE(store.findSensorByTokenHash(std::string(64, 'd')).has_value());
  EXPECT_EQ(store.sensors().size(), 2u);
}

// `collector enrol` runs beside a collector that keeps writing the sensor's
// count, so the count it read before enrolling may be stale by the time it
// writes.
TEST_F(StoreTest, EnrolAgainKeepsCountsWrittenMeanwhile) {
  Store store(options_);
  store.enrolSensor({.sensor_id = "web1", .group = "dmz", .token_sha256 = std::string(64, 'a')});
  store.noteSensorSeen("web1", 5000, 40);
  store.insert(makeEvents("s", 1));

  store.enrolSensor({.sensor_id = "web1",
                     .group = "lan",
                     .token_sha256 = std::string(64, 'b'),
                     .last_seen_ms = 1000,
                     .records = 0});
  auto found = store.findSensorByTokenHash(std::string(64, 'b'));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->records, 40u);
  EXPECT_EQ(found->last_seen_ms, 5000);
  EXPECT_EQ(found->group, "lan");
  EXPECT_FALSE(store.findSensorByTokenHash(std::string(64, 'a')).has_value());
}

TEST_F(StoreTest, RevokedSensorKeepsRowAndToken) {
  const std::string hash(64, 'a');
  {
    Store store(options_);
    store.enrolSensor({.sensor_id = "web1",
                       .group = "dmz",
                       .token_sha256 = hash,
                       .enrolled_ms = 100,
                       .certificate_sha256 = std::string(64, 'f'),
                       .certificate_cn = "web1.sensors"});
    store.noteSensorSeen("web1", 5000, 3);
    store.insert(makeEvents("s", 1));
    EXPECT_TRUE(store.revokeSensor("web1", 7000));
    // A second revocation keeps the first time.
    EXPECT_TRUE(store.revokeSensor("web1", 9000));
    EXPECT_FALSE(store.revokeSensor("web2", 7000));
  }
  Store store(options_);
  auto found = store.findSensorByTokenHash(hash);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->revoked_ms, 7000);
  EXPECT_EQ(found->records, 3u);
  EXPECT_EQ(found->certificate_sha256, std::string(64, 'f'));
  EXPECT_EQ(found->certificate_cn, "web1.sensors");
  EXPECT_EQ(store.eventCount(), 1u);

  // Enrolling the id again lifts the revocation.
  store.enrolSensor({.sensor_id = "web1", .group = "dmz", .token_sha256 = std::string(64, 'b')});
  auto enrolled = store.findSensorByTokenHash(std::string(64, 'b'));
  ASSERT_TRUE(enrolled.has_value());
  EXPECT_EQ(enrolled->revoked_ms, 0);
  EXPECT_FALSE(store.findSensorByTokenHash(hash).has_value());
}

TEST_F(StoreTest, FileOffsetsPersist) {
  {
    Store store(options_);
    EXPECT_FALSE(store.fileOffset("/var/log/audit.json").has_value());
    store.setFileOffset("/var/log/audit.json", {42, 1000, {}});
    store.setFileOffset("/var/log/audit.json", {42, 2500, {}});
    store.setFileOffset("/var/log/other.json", {7, 10, {}});
  }
  Store store(options_);
  auto offset = store.fileOffset("/var/log/audit.json");
  ASSERT_TRUE(offset.has_value());
  EXPECT_EQ(offset->inode, 42u);
  EXPECT_EQ(offset->offset, 2500u);
  offset = store.fileOffset("/var/log/other.json");
  ASSERT_TRUE(offset.has_value());
  EXPECT_EQ(offset->offset, 10u);
}

TEST_F(StoreTest, FileOffsetEmptyTimePersists) {
  {
    Store store(options_);
    store.setFileOffset("/var/log/audit.json", {42, 0, {}, 1'765'000'000'123'456'789});
  }
  Store store(options_);
  auto offset = store.fileOffset("/var/log/audit.json");
  ASSERT_TRUE(offset.has_value());
  EXPECT_EQ(offset->empty_at_ns, 1'765'000'000'123'456'789);
}

// A store of schema version 6 has no empty_at_ns column. Its offsets load
// with the time unknown (0), and the upgraded store keeps new times.
TEST_F(StoreTest, FileOffsetOfVersionSixLoads) {
  {
    Store store(options_);
    store.setFileOffset("/var/log/audit.json", {42, 2500, "{\"transaction\"", 0});
  }
  execSql(options_.path, "ALTER TABLE file_offsets DROP COLUMN empty_at_ns");
  execSql(options_.path, "PRAGMA user_version=6");
  {
    Store store(options_);
    auto offset = store.fileOffset("/var/log/audit.json");
    ASSERT_TRUE(offset.has_value());
    EXPECT_EQ(offset->inode, 42u);
    EXPECT_EQ(offset->offset, 2500u);
    EXPECT_EQ(offset->head, "{\"transaction\"");
    EXPECT_EQ(offset->empty_at_ns, 0);
    store.setFileOffset("/var/log/other.json", {7, 0, {}, 99});
  }
  Store store(options_);
  auto offset = store.fileOffset("/var/log/other.json");
  ASSERT_TRUE(offset.has_value());
  EXPECT_EQ(offset->empty_at_ns, 99);
}

TEST_F(StoreTest, RetentionByAgeCountsUndelivered) {
  options_.retention_max_age_ms = 1000;
  {
    Store store(options_);
    store.registerOutput("fast");
    store.registerOutput("slow");
    store.insert(makeEvents("old", 4));
    const std::int64_t old_stored = nowMs();
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    store.insert(makeEvents("new", 3));
    store.setCursor("fast", 5);
    store.setCursor("slow", 1);

    // Only the first batch is older than the limit at this time.
    RetentionSummary summary = store.enforceRetention(old_stored + 1000 + 30);
    EXPECT_EQ(summary.removed, 4u);
    ASSERT_EQ(summary.removed_undelivered.size(), 1u);
    EXPECT_EQ(summary.removed_undelivered[0].first, "slow");
    EXPECT_EQ(summary.removed_undelivered[0].second, 3u);
    EXPECT_EQ(store.eventCount(), 3u);
    EXPECT_EQ(store.sizeBytes(), 300u);

    // The cursor behind the gap moved to the last removed seq.
    EXPECT_EQ(store.cursor("slow"), 4);
    EXPECT_EQ(store.cursor("fast"), 5);
    auto left = store.readAfter(0, 100, 1 << 20);
    ASSERT_EQ(left.size(), 3u);
    EXPECT_EQ(left[0].event_id, "new0");

    // Nothing more is old enough.
    EXPECT_EQ(store.enforceRetention(old_stored + 1000 + 30).removed, 0u);
  }
  Store store(options_);
  RetentionSummary totals = store.retentionTotals();
  EXPECT_EQ(totals.removed, 4u);
  ASSERT_EQ(totals.removed_undelivered.size(), 1u);
  EXPECT_EQ(totals.removed_undelivered[0].first, "slow");
  EXPECT_EQ(totals.removed_undelivered[0].second, 3u);
  EXPECT_EQ(store.eventCount(), 3u);
}

TEST_F(StoreTest, RetentionBySizeRemovesOldestFirst) {
  options_.retention_max_bytes = 4500;
  Store store(options_);
  store.registerOutput("es");
  store.insert(makeEvents("z", 10, 1000));
  store.setCursor("es", 2);

  RetentionSummary summary = store.enforceRetention(nowMs());
  EXPECT_EQ(summary.removed, 6u);
  ASSERT_EQ(summary.removed_undelivered.size(), 1u);
  EXPECT_EQ(summary.removed_undelivered[0].second, 4u);
  EXPECT_EQ(store.eventCount(), 4u);
  EXPECT_EQ(store.sizeBytes(), 4000u);
  auto left = store.readAfter(0, 100, 1 << 20);
  ASSERT_EQ(left.size(), 4u);
  EXPECT_EQ(left.front().seq, 7);
  EXPECT_EQ(store.cursor("es"), 6);
}

TEST_F(StoreTest, RetentionInFlightCountsOnlyUnfinished) {
  options_.retention_max_bytes = 4500;
  Store store(options_);
  store.registerOutput("es");
  store.insert(makeEvents("f", 10, 1000));
  store.setCursor("es", 2);

  // The output has read seqs 3 to 5 when retention removes seqs 1 to 6.
  store.beginInFlight("es", 2);
  RetentionSummary summary = store.enforceRetention(nowMs());
  EXPECT_EQ(summary.removed, 6u);
  ASSERT_EQ(summary.removed_undelivered.size(), 0u);

  // It delivered 3 and 5, not 4; seq 6 it never read.
  const std::vector<std::int64_t> finished = {3, 5};
  store.endInFlight("es", finished);
  RetentionSummary totals = store.retentionTotals();
  ASSERT_EQ(totals.removed_undelivered.size(), 1u);
  EXPECT_EQ(totals.removed_undelivered[0].first, "es");
  EXPECT_EQ(totals.removed_undelivered[0].second, 2u);

  // The next pass reports the late count once, for the metric.
  summary = store.enforceRetention(nowMs());
  ASSERT_EQ(summary.late_undelivered.size(), 1u);
  EXPECT_EQ(summary.late_undelivered[0].second, 2u);
  EXPECT_TRUE(store.enforceRetention(nowMs()).late_undelivered.empty());

  // Without a send in flight, removals count at once again.
  store.insert(makeEvents("g", 3, 1000));
  summary = store.enforceRetention(nowMs());
  EXPECT_EQ(summary.removed, 3u);
  ASSERT_EQ(summary.removed_undelivered.size(), 1u);
  EXPECT_EQ(summary.removed_undelivered[0].second, 3u);
}

TEST_F(StoreTest, RetentionSpansSeveralChunks) {
  options_.retention_max_bytes = 1000 * 100;
  Store store(options_);
  store.registerOutput("idle");
  for (int batch = 0; batch < 12; ++batch) {
    store.insert(makeEvents("k" + std::to_string(batch) + "-", 1000, 100));
  }
  RetentionSummary summary = store.enforceRetention(nowMs());
  EXPECT_EQ(summary.removed, 11000u);
  ASSERT_EQ(summary.removed_undelivered.size(), 1u);
  EXPECT_EQ(summary.removed_undelivered[0].second, 11000u);
  EXPECT_EQ(store.eventCount(), 1000u);
  EXPECT_EQ(store.cursor("idle"), 11000);
}

TEST_F(StoreTest, SeqNotReusedAfterRemovingAll) {
  options_.retention_max_age_ms = 1;
  {
    Store store(options_);
    store.insert(makeEvents("a", 5));
    EXPECT_EQ(store.enforceRetention(nowMs() + 10000).removed, 5u);
    EXPECT_EQ(store.eventCount(), 0u);
  }
  Store store(options_);
  EXPECT_EQ(store.lastSeq(), 5);
  store.insert(makeEvents("b", 1));
  auto events = store.readAfter(0, 10, 1 << 20);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].seq, 6);
}

TEST_F(StoreTest, RetentionRemovesOldDeadLetters) {
  options_.retention_max_age_ms = 1000;
  Store store(options_);
  const std::int64_t now = nowMs();
  store.addDeadLetter({0, "ingest", "", "old", "x", now - 5000, {}});
  store.addDeadLetter({0, "ingest", "", "recent", "y", now, {}});
  store.enforceRetention(now);
  auto letters = store.deadLetters(10);
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].reason, "recent");
}

TEST_F(StoreTest, RetentionCapsDeadLetterBytes) {
  // Dead letters may take a tenth of max_size: 100 bytes here.
  options_.retention_max_bytes = 1000;
  Store store(options_);
  const std::int64_t now = nowMs();
  for (int i = 0; i < 5; ++i) {
    store.addDeadLetter({0, "ingest", "", "letter " + std::to_string(i), std::string(40, 'x'),
                         now, {}});
  }
  RetentionSummary summary = store.enforceRetention(now);
  EXPECT_EQ(summary.dead_letters_removed, 3u);
  auto letters = store.deadLetters(10);
  ASSERT_EQ(letters.size(), 2u);
  std::vector<std::string> reasons{letters[0].reason, letters[1].reason};
  std::sort(reasons.begin(), reasons.end());
  EXPECT_EQ(reasons, (std::vector<std::string>{"letter 3", "letter 4"}));
  EXPECT_EQ(store.enforceRetention(now).dead_letters_removed, 0u);
  EXPECT_EQ(store.retentionTotals().dead_letters_removed, 3u);
}

TEST_F(StoreTest, ReaderFollowsConcurrentWriter) {
  Store store(options_);
  constexpr int kBatches = 50;
  constexpr int kPerBatch = 100;
  std::thread writer([&] {
    for (int batch = 0; batch < kBatches; ++batch) {
      store.insert(makeEvents("w" + std::to_string(batch) + "-", kPerBatch, 500));
    }
  });

  std::int64_t cursor = 0;
  std::size_t seen = 0;
  bool in_order = true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (seen < kBatches * kPerBatch && std::chrono::steady_clock::now() < deadline) {
    auto events = store.readAfter(cursor, 64, 1 << 20);
    for (const auto& event : events) {
      if (event.seq != cursor + 1) {
        in_order = false;
      }
      cursor = event.seq;
      ++seen;
    }
  }
  writer.join();
  EXPECT_TRUE(in_order);
  EXPECT_EQ(seen, static_cast<std::size_t>(kBatches * kPerBatch));
  EXPECT_EQ(store.lastSeq(), kBatches * kPerBatch);
}

TEST_F(StoreTest, ConcurrentInsertsGetDistinctSeqs) {
  Store store(options_);
  constexpr int kThreads = 4;
  constexpr int kBatches = 25;
  std::atomic<std::size_t> stored{0};
  std::atomic<std::size_t> duplicates{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int batch = 0; batch < kBatches; ++batch) {
        // Every thread also sends one id that all threads share.
        auto events = makeEvents("t" + std::to_string(t) + "-" + std::to_string(batch) + "-", 20);
        events.push_back(makeEvent("shared-" + std::to_string(batch)));
        InsertSummary summary = store.insert(events);
        stored += summary.stored;
        duplicates += summary.duplicates;
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }

  const std::size_t expected = kThreads * kBatches * 20 + kBatches;
  EXPECT_EQ(stored.load(), expected);
  EXPECT_EQ(duplicates.load(), static_cast<std::size_t>((kThreads - 1) * kBatches));
  EXPECT_EQ(store.eventCount(), expected);
  auto events = store.readAfter(0, expected + 10, 1ULL << 30);
  ASSERT_EQ(events.size(), expected);
  for (std::size_t i = 0; i < events.size(); ++i) {
    ASSERT_EQ(events[i].seq, static_cast<std::int64_t>(i + 1));
  }
}

TEST_F(StoreTest, CorruptFileNamesPathAndFix) {
  fs::create_directories(dir_);
  {
    std::ofstream file(options_.path, std::ios::binary);
    for (int i = 0; i < 512; ++i) {
      file << "this is not a database ";
    }
  }
  try {
    Store store(options_);
    FAIL() << "expected a StoreError";
  } catch (const StoreError& e) {
    std::string message = e.what();
    EXPECT_NE(message.find(options_.path.string()), std::string::npos) << message;
    EXPECT_NE(message.find("not a SQLite database"), std::string::npos) << message;
    EXPECT_NE(message.find("mv "), std::string::npos) << message;
    EXPECT_FALSE(e.retryable());
  }
}

TEST_F(StoreTest, UnwritableFolderNamesPath) {
  if (::geteuid() == 0) {
    GTEST_SKIP() << "root can write anywhere";
  }
  fs::create_directories(dir_);
  fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec);
  options_.path = dir_ / "sub" / "store.sqlite";
  try {
    Store store(options_);
    ADD_FAILURE() << "expected a StoreError";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find((dir_ / "sub").string()), std::string::npos) << e.what();
  }
  fs::permissions(dir_, fs::perms::owner_all);
}

TEST_F(StoreTest, RetentionTaskCountsAcrossRestarts) {
  options_.retention_max_bytes = 300;
  {
    Store store(options_);
    MetricsRegistry metrics;
    RetentionTask task(store, metrics);
    store.registerOutput("es");
    store.insert(makeEvents("a", 5));
    store.setCursor("es", 1);
    RetentionSummary summary = task.runOnce(nowMs());
    EXPECT_EQ(summary.removed, 2u);
    EXPECT_EQ(metrics.counter("webtrap_collector_retention_removed_total", "").value(), 2u);
    EXPECT_EQ(metrics
                  .counter("webtrap_collector_retention_removed_undelivered_total", "",
                           "output=\"es\"")
                  .value(),
              1u);
  }
  // A new process starts its counters from the totals in the store.
  Store store(options_);
  MetricsRegistry metrics;
  RetentionTask task(store, metrics, std::chrono::milliseconds(20));
  EXPECT_EQ(metrics.counter("webtrap_collector_retention_removed_total", "").value(), 2u);
  EXPECT_EQ(metrics
                .counter("webtrap_collector_retention_removed_undelivered_total", "",
                         "output=\"es\"")
                .value(),
            1u);

  // The timer thread enforces the limit on its own.
  store.insert(makeEvents("b", 2));
  task.start();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (store.eventCount() > 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  task.stop();
  EXPECT_EQ(store.eventCount(), 3u);
  EXPECT_EQ(metrics.counter("webtrap_collector_retention_removed_total", "").value(), 4u);
  EXPECT_EQ(metrics.counter("webtrap_collector_retention_errors_total", "").value(), 0u);
}

// Returns the WAL size in frames as reported by a passive checkpoint on a
// separate connection. Retries every 50 ms while the store's checkpoint
// thread holds the checkpoint lock (SQLITE_BUSY), and returns -1 after about
// 5 s of that or when the checkpoint fails.
int walFrames(const fs::path& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    sqlite3_close_v2(db);
    return -1;
  }
  // A connection opens the WAL on its first read. Before that, a
  // checkpoint reports -1 frames.
  sqlite3_exec(db, "SELECT count(*) FROM sqlite_schema", nullptr, nullptr, nullptr);
  int log_frames = -1;
  int rc = SQLITE_BUSY;
  for (int attempt = 0; attempt < 100 && rc == SQLITE_BUSY; ++attempt) {
    if (attempt > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    int copied_frames = -1;
    rc = sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log_frames,
                                   &copied_frames);
  }
  sqlite3_close_v2(db);
  return rc == SQLITE_OK ? log_frames : -1;
}

TEST_F(StoreTest, CheckpointRunsInBackground) {
  // The store's WAL hook replaces SQLite's automatic checkpoint, so only the
  // background checkpoint thread can copy these 8 batches (about 4 MB of
  // documents) into the database file.
  options_.checkpoint_pages = 4;
  options_.checkpoint_blocking_pages = 400;
  Store store(options_);
  const auto empty_size = fs::file_size(options_.path);
  for (int batch = 0; batch < 8; ++batch) {
    store.insert(makeEvents("w" + std::to_string(batch) + "-", 64, 8000));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (fs::file_size(options_.path) < empty_size + (3u << 20) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GE(fs::file_size(options_.path), empty_size + (3u << 20));
  EXPECT_EQ(store.eventCount(), 512u);
}

TEST_F(StoreTest, HeldReaderDoesNotFailInserts) {
  options_.checkpoint_pages = 4;
  options_.checkpoint_blocking_pages = 16;
  Store store(options_);
  store.insert(makeEvents("first", 8, 8000));

  // A reader holding a snapshot keeps every later frame in the WAL.
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open_v2(options_.path.c_str(), &reader, SQLITE_OPEN_READONLY, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM events;", nullptr, nullptr, nullptr),
            SQLITE_OK);
  // Inserts go on while the reader stays: a blocking checkpoint gives up
  // after 1 s, well before the writer's 5 s busy timeout.
  for (int batch = 0; batch < 6; ++batch) {
    EXPECT_NO_THROW(store.insert(makeEvents("held" + std::to_string(batch) + "-", 64, 8000)));
  }
  const int held_frames = walFrames(options_.path);
  EXPECT_GT(held_frames, options_.checkpoint_blocking_pages);

  sqlite3_exec(reader, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_close_v2(reader);

  // Without readers, a checkpoint copies every frame, and the next commit
  // starts the WAL over from its beginning.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  int frames = held_frames;
  while (frames >= held_frames && std::chrono::steady_clock::now() < deadline) {
    store.insert(makeEvents("after" + std::to_string(frames) + "-" +
                                std::to_string(std::chrono::steady_clock::now()
                                                   .time_since_epoch()
                                                   .count()) +
                                "-",
                            4, 8000));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    frames = walFrames(options_.path);
  }
  EXPECT_LT(frames, held_frames);
  EXPECT_GE(frames, 0);
}

TEST_F(StoreTest, InvalidCheckpointPagesRejected) {
  options_.checkpoint_pages = 0;
  EXPECT_THROW(Store store(options_), StoreError);
  options_.checkpoint_pages = 10;
  options_.checkpoint_blocking_pages = 5;
  EXPECT_THROW(Store store(options_), StoreError);
}

// An event whose document leaves out event.original, which is line
// `line` of `text` (lines end with a newline).
NewEvent referencedEvent(const std::string& id, const std::string& text, int line) {
  NewEvent event = makeEvent(id);
  event.document = "{\"event\":{\"id\":\"" + id + "\"},\"n\":1}";
  event.original_at = event.document.find("}");
  std::size_t start = 0;
  for (int i = 0; i < line; ++i) {
    start = text.find('\n', start) + 1;
  }
  event.original_offset = start;
  event.original_length = text.find('\n', start) - start;
  return event;
}

std::string wholeDocument(const std::string& id, std::string_view original) {
  std::string out;
  std::string stripped = "{\"event\":{\"id\":\"" + id + "\"},\"n\":1}";
  spliceOriginal(out, stripped, stripped.find("}"), original);
  return out;
}

std::int64_t batchRows(const fs::path& database) { return countRows(database, "batches"); }

// Replaces every stored batch body with a gzip header alone, which does not
// inflate.
void damageBatchBodies(const fs::path& database) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(database.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE batches SET body = x'1f8b00'", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
}

TEST(SpliceOriginal, GivesTheDocumentBuiltWithTheOriginal) {
  std::string out = "prefix ";
  spliceOriginal(out, R"({"event":{"kind":"alert"},"x":1})", 24, "{\"a\":\"\xc3\xa9\\n\"}\t");
  EXPECT_EQ(out,
            R"(prefix {"event":{"kind":"alert","original":"{\"a\":\"é\\n\"}\u0009"},"x":1})");
}

TEST_F(StoreTest, BatchOriginalsPutBackOnRead) {
  Store store(options_);
  const std::string text = "{\"a\":1}\n{\"b\":\"\\\"q\\\"\"}\n{\"c\":\"\xc3\xa9\"}\n";
  const std::string gzip = gzipCompress(text, 6);
  const OriginalBatch batch{gzip, text.size(), {}};
  std::vector<NewEvent> events = {referencedEvent("r0", text, 0), referencedEvent("r1", text, 1),
                                  makeEvent("inline"), referencedEvent("r2", text, 2)};
  InsertSummary summary = store.insert(events, {}, nullptr, &batch);
  EXPECT_EQ(summary.stored, 4u);
  EXPECT_EQ(batchRows(options_.path), 1);

  auto read = store.readAfter(0, 100, 1 << 20);
  ASSERT_EQ(read.size(), 4u);
  EXPECT_EQ(read[0].document, wholeDocument("r0", "{\"a\":1}"));
  EXPECT_EQ(read[1].document, wholeDocument("r1", "{\"b\":\"\\\"q\\\"\"}"));
  EXPECT_EQ(read[2].document, events[2].document);
  EXPECT_EQ(read[3].document, wholeDocument("r2", "{\"c\":\"\xc3\xa9\"}"));
  auto found = store.findEvent("r1");
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->document, read[1].document);

  // A resent batch stores nothing, not even its body.
  summary = store.insert(events, {}, nullptr, &batch);
  EXPECT_EQ(summary.duplicates, 4u);
  EXPECT_EQ(batchRows(options_.path), 1);

  // An event without its original needs the batch.
  std::vector<NewEvent> orphan = {referencedEvent("r9", text, 0)};
  EXPECT_THROW(store.insert(orphan), std::invalid_argument);
  EXPECT_EQ(store.eventCount(), 4u);
}

TEST_F(StoreTest, BatchOriginalsApartOnRequest) {
  Store store(options_);
  const std::string text = "{\"a\":1}\n{\"b\":\"\\\"q\\\"\"}\n";
  const std::string gzip = gzipCompress(text, 6);
  const OriginalBatch batch{gzip, text.size(), {}};
  std::vector<NewEvent> events = {referencedEvent("r0", text, 0), makeEvent("inline"),
                                  referencedEvent("r1", text, 1)};
  store.insert(events, {}, nullptr, &batch);

  const auto whole = store.readAfter(0, 100, 1 << 20);
  std::vector<StoredEvent> apart;
  store.readAfter(0, 100, 1 << 20, apart, OriginalForm::kApart);
  ASSERT_EQ(whole.size(), 3u);
  ASSERT_EQ(apart.size(), 3u);
  EXPECT_EQ(apart[0].document, events[0].document);
  EXPECT_EQ(apart[0].original, "{\"a\":1}");
  EXPECT_EQ(apart[0].original_at, events[0].original_at);
  EXPECT_EQ(apart[1].original_at, std::string::npos);
  EXPECT_EQ(apart[2].original, "{\"b\":\"\\\"q\\\"\"}");
  for (std::size_t i = 0; i < whole.size(); ++i) {
    EXPECT_EQ(wholeDocument(apart[i]), whole[i].document) << i;
    EXPECT_EQ(whole[i].original_at, std::string::npos) << i;
    std::string appended = "x";
    appendWholeDocument(appended, apart[i]);
    EXPECT_EQ(appended, "x" + whole[i].document) << i;
  }

  // Reading into the same vector again, whole, clears what was kept apart.
  store.readAfter(0, 100, 1 << 20, apart);
  ASSERT_EQ(apart.size(), 3u);
  for (std::size_t i = 0; i < whole.size(); ++i) {
    EXPECT_EQ(apart[i].document, whole[i].document) << i;
    EXPECT_EQ(apart[i].original_at, std::string::npos) << i;
    EXPECT_EQ(apart[i].original_text, nullptr) << i;
  }
}

TEST_F(StoreTest, ManyBatchesReadFromSeveralThreads) {
  // More batches than the store keeps inflated, read in an order that
  // jumps between them, from two threads at once.
  Store store(options_);

  constexpr int kBatches = 7;
  std::vector<std::string> texts;
  for (int b = 0; b < kBatches; ++b) {
    std::string text;
    for (int line = 0; line < 3; ++line) {
      text += "{\"batch\":" + std::to_string(b) + ",\"line\":" + std::to_string(line) + "}\n";
    }
    texts.push_back(text);
    const std::string gzip = gzipCompress(text, 1);
    const OriginalBatch batch{gzip, text.size(), {}};
    std::vector<NewEvent> events;
    for (int line = 0; line < 3; ++line) {
      events.push_back(referencedEvent("b" + std::to_string(b) + "l" + std::to_string(line),
                                       text, line));
    }
    store.insert(events, {}, nullptr, &batch);
  }

  std::atomic<int> wrong{0};
  auto readAll = [&](int offset) {
    for (int round = 0; round < 20; ++round) {
      for (int i = 0; i < kBatches * 3; ++i) {
        int b = (i * 5 + offset + round) % kBatches;
        int line = i % 3;
        std::string id = "b" + std::to_string(b) + "l" + std::to_string(line);
        auto event = store.findEvent(id);
        std::string original =
            "{\"batch\":" + std::to_string(b) + ",\"line\":" + std::to_string(line) + "}";
        if (!event || event->document != wholeDocument(id, original)) {
          ++wrong;
        }
      }
    }
  };

  std::thread other(readAll, 3);
  readAll(0);
  other.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(store.readAfter(0, 100, 1 << 20).size(), static_cast<std::size_t>(kBatches * 3));
}

TEST_F(StoreTest, UpgradeAddsOnlyMissingColumns) {
  // A version 3 store has no batch columns; a store whose version number
  // was set back to 3 has them already. Both open as version 4.
  fs::create_directories(dir_);
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(options_.path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "CREATE TABLE events (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL "
                           "UNIQUE, timestamp_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL, "
                           "sensor_id TEXT NOT NULL, source_ip TEXT NOT NULL, size INTEGER NOT "
                           "NULL, document TEXT NOT NULL); "
                           "INSERT INTO events VALUES(1, 'old', 1, 1, 's', '192.0.2.1', 2, '{}'); "
                           "PRAGMA user_version=3;",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  for (int round = 0; round < 2; ++round) {
    {
      Store store(options_);
      auto read = store.readAfter(0, 10, 1 << 20);
      ASSERT_EQ(read.size(), 1u) << round;
      EXPECT_EQ(read[0].document, "{}");
    }
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(options_.path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=3", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  EXPECT_EQ(countRows(options_.path, "batches"), 0);
}

TEST_F(StoreTest, RetentionRemovesBatchesNoEventUses) {
  // Each event counts 26 bytes of document, 14 of `,"original":""` and its
  // original's length as received: 49, 49, 51 and 50 bytes.
  options_.retention_max_bytes = 50;
  Store store(options_);
  store.registerOutput("es");
  const std::string first = "{\"one\":1}\n{\"two\":2}\n";
  const std::string second = "{\"three\":3}\n{\"four\":4}\n";
  const std::string first_gzip = gzipCompress(first, 1);
  const std::string second_gzip = gzipCompress(second, 1);
  const OriginalBatch first_batch{first_gzip, first.size(), {}};
  const OriginalBatch second_batch{second_gzip, second.size(), {}};
  store.insert(std::vector<NewEvent>{referencedEvent("a", first, 0), referencedEvent("b", first, 1)},
               {}, nullptr, &first_batch);
  store.insert(
      std::vector<NewEvent>{referencedEvent("c", second, 0), referencedEvent("d", second, 1)}, {},
      nullptr, &second_batch);
  ASSERT_EQ(batchRows(options_.path), 2);

  // The second batch's last event stays, so its batch stays too.
  RetentionSummary summary = store.enforceRetention(nowMs());
  EXPECT_EQ(summary.removed, 3u);
  EXPECT_EQ(batchRows(options_.path), 1);
  auto left = store.readAfter(0, 100, 1 << 20);
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].document, wholeDocument("d", "{\"four\":4}"));
  EXPECT_EQ(store.sizeBytes(), 50u);
}

TEST_F(StoreTest, InsertedBatchTextReadWithoutInflating) {
  const std::string text = "{\"a\":1}\n{\"b\":2}\n";
  const std::string gzip = gzipCompress(text, 6);
  Store store(options_);
  OriginalBatch batch{gzip, text.size(), std::make_shared<const std::string>(text)};
  store.insert(std::vector<NewEvent>{referencedEvent("a", text, 0), referencedEvent("b", text, 1)},
               {}, nullptr, &batch);

  // With the stored body damaged, only the text cached by the insert can
  // give the originals back.
  ASSERT_NO_FATAL_FAILURE(damageBatchBodies(options_.path));
  auto read = store.readAfter(0, 10, 1 << 20);
  ASSERT_EQ(read.size(), 2u);
  EXPECT_EQ(read[0].damage, "");
  EXPECT_EQ(read[0].document, wholeDocument("a", "{\"a\":1}"));
  EXPECT_EQ(read[1].document, wholeDocument("b", "{\"b\":2}"));

  // A store opened afresh has no cached text, so it reads the damaged body.
  Store reopened(options_);
  auto again = reopened.readAfter(0, 10, 1 << 20);
  ASSERT_EQ(again.size(), 2u);
  EXPECT_NE(again[0].damage, "");
}

TEST_F(StoreTest, BatchTextOfOtherSizeNotCached) {
  const std::string text = "{\"a\":1}\n";
  const std::string gzip = gzipCompress(text, 6);
  Store store(options_);
  // A text that is not the one the body inflates to is not trusted.
  OriginalBatch batch{gzip, text.size(), std::make_shared<const std::string>("{\"z\":9}")};
  store.insert(std::vector<NewEvent>{referencedEvent("a", text, 0)}, {}, nullptr, &batch);
  auto read = store.readAfter(0, 10, 1 << 20);
  ASSERT_EQ(read.size(), 1u);
  EXPECT_EQ(read[0].document, wholeDocument("a", "{\"a\":1}"));
}

TEST_F(StoreTest, BatchCacheCountsCapacity) {
  // A short text in a string whose capacity is more than the cache's whole
  // budget (32 MiB) is not cached, so a damaged body cannot be read back.
  const std::string text = "{\"a\":1}\n";
  const std::string gzip = gzipCompress(text, 6);
  auto shared = std::make_shared<std::string>(text);
  shared->reserve((32u << 20) + 1);
  Store store(options_);
  OriginalBatch batch{gzip, text.size(), shared};
  store.insert(std::vector<NewEvent>{referencedEvent("a", text, 0)}, {}, nullptr, &batch);
  ASSERT_NO_FATAL_FAILURE(damageBatchBodies(options_.path));
  auto read = store.readAfter(0, 10, 1 << 20);
  ASSERT_EQ(read.size(), 1u);
  EXPECT_NE(read[0].damage, "");
}

TEST_F(StoreTest, DamagedBatchNamesEventAndBatch) {
  const std::string text = "{\"a\":1}\n{\"b\":2}\n";
  {
    Store store(options_);
    const std::string gzip = gzipCompress(text, 6);
    const OriginalBatch batch{gzip, text.size(), {}};
    store.insert(std::vector<NewEvent>{makeEvent("whole")});
    store.insert(std::vector<NewEvent>{referencedEvent("a", text, 0), referencedEvent("b", text, 1)},
                 {}, nullptr, &batch);
    store.insert(std::vector<NewEvent>{makeEvent("after")});
  }
  ASSERT_NO_FATAL_FAILURE(damageBatchBodies(options_.path));

  // The read goes on past the damaged batch: its events come with the
  // reason and the stored document, the others whole.
  Store store(options_);
  auto read = store.readAfter(0, 10, 1 << 20);
  ASSERT_EQ(read.size(), 4u);
  EXPECT_EQ(read[0].damage, "");
  EXPECT_EQ(read[0].document, makeEvent("whole").document);
  for (int i : {1, 2}) {
    EXPECT_NE(read[i].damage.find("batch 2 (of event 2) does not inflate"), std::string::npos)
        << read[i].damage;
    EXPECT_EQ(read[i].document.find("original"), std::string::npos) << read[i].document;
  }
  EXPECT_EQ(read[3].damage, "");
  EXPECT_EQ(read[3].document, makeEvent("after").document);
  auto found = store.findEvent("b");
  ASSERT_TRUE(found.has_value());
  EXPECT_FALSE(found->damage.empty());
}

TEST_F(StoreTest, ReadStopsAtByteBudgetOfWholeDocuments) {
  // The size column counts each original unescaped, so these documents
  // are larger than their size column, and the read must still keep to
  // its budget.
  std::string text;
  std::vector<NewEvent> events;
  for (int i = 0; i < 4; ++i) {
    std::string line(100, '"');
    NewEvent event = makeEvent("q" + std::to_string(i));
    event.document = "{\"event\":{\"id\":\"q" + std::to_string(i) + "\"}}";
    event.original_at = event.document.size() - 2;
    event.original_offset = text.size();
    event.original_length = line.size();
    text += line + "\n";
    events.push_back(event);
  }
  Store store(options_);
  const std::string gzip = gzipCompress(text, 6);
  const OriginalBatch batch{gzip, text.size(), {}};
  store.insert(events, {}, nullptr, &batch);
  // Each document is 235 bytes and counts 135: the second fits the budget
  // by its size but not by its document.
  auto read = store.readAfter(0, 10, 400);
  std::size_t bytes = 0;
  for (const StoredEvent& event : read) {
    bytes += event.document.size();
  }
  EXPECT_EQ(read.size(), 1u);
  EXPECT_LE(bytes, 400u);
}

}  // namespace
}  // namespace webtrap::collector
