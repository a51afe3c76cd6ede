#include "collector/ingest.h"

#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "ingest_fixture.h"

namespace webtrap::collector {
namespace {

namespace fs = std::filesystem;

// A libmodsecurity v3 record whose unique_id is `id`.
std::string recordLine(const std::string& id) {
  return R"({"transaction":{"client_ip":"203.0.113.9","time_stamp":"Fri Dec  4 15:41:52 2026",)"
         R"("client_port":51000,"unique_id":")" +
         id + R"(","request":{"method":"GET","uri":"/)" + id + R"(","headers":{}}}})";
}

// Runs one SQL statement on the store file through a connection of its own.
void execSql(const fs::path& database, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(database.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  char* error = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  std::string message = error != nullptr ? error : "";
  sqlite3_free(error);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << sql << ": " << message;
}

class IngestTest : public IngestFixture {
 protected:
  IngestTest() : IngestFixture("webtrap-ingest-test", source()) {}

  static IngestSource source() {
    IngestSource source;
    source.input = InputKind::kProbe;
    source.format = RecordFormat::kModsec3;
    source.sensor_id = "s1";
    return source;
  }

  std::uint64_t deadLetterCounter() {
    return metrics_.counter("webtrap_collector_dead_letters_total", "", "stage=\"ingest\"")
        .value();
  }
};

TEST_F(IngestTest, DeadLettersStoredAndCounted) {
  IngestResult result = ingest_->ingestLines(recordLine("a") + "\n{\"broken\": 1}\n", source_);
  EXPECT_EQ(result.received, 2u);
  EXPECT_EQ(result.stored, 1u);
  EXPECT_EQ(result.rejected, 1u);
  EXPECT_EQ(store_->eventCount(), 1u);
  EXPECT_EQ(store_->deadLetterCount(), 1u);
  EXPECT_EQ(deadLetterCounter(), 1u);
}

TEST_F(IngestTest, FailedCommitKeepsNoDeadLetters) {
  // Every event insert fails, as on a full disk, while the dead-letter
  // table still takes rows.
  execSql(store_->path(), "CREATE TRIGGER fail_events BEFORE INSERT ON events "
                          "BEGIN SELECT RAISE(ABORT, 'injected failure'); END;");
  std::string batch = recordLine("a") + "\n{\"broken\": 1}\n";
  for (int attempt = 0; attempt < 3; ++attempt) {
    EXPECT_THROW(ingest_->ingestLines(batch, source_), StoreUnavailable) << attempt;
  }
  EXPECT_TRUE(ingest_->storeFailing());
  EXPECT_EQ(store_->eventCount(), 0u);
  EXPECT_EQ(store_->deadLetterCount(), 0u);
  EXPECT_EQ(deadLetterCounter(), 0u);

  // The sender's retry after the failures stores the batch once.
  execSql(store_->path(), "DROP TRIGGER fail_events;");
  IngestResult result = ingest_->ingestLines(batch, source_);
  EXPECT_EQ(result.stored, 1u);
  EXPECT_EQ(result.rejected, 1u);
  EXPECT_FALSE(ingest_->storeFailing());
  EXPECT_EQ(store_->eventCount(), 1u);
  EXPECT_EQ(store_->deadLetterCount(), 1u);
  EXPECT_EQ(deadLetterCounter(), 1u);
}

}  // namespace
}  // namespace webtrap::collector
