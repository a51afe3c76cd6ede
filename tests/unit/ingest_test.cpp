#include "collector/ingest.h"

#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "common/gzip.h"
#include "ingest_fixture.h"
#include "sqlite_rows.h"

namespace webtrap::collector {
namespace {

namespace fs = std::filesystem;

// A libmodsecurity v3 record whose unique_id is `id`.
std::string recordLine(const std::string& id) {
  return R"({"transaction":{"client_ip":"203.0.113.9","time_stamp":"Fri Dec  4 15:41:52 2026",)"
         R"("client_port":51000,"unique_id":")" +
         id + R"(","request":{"method":"GET","uri":"/)" + id + R"(","headers":{}}}})";
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

TEST_F(IngestTest, ResentBatchKeepsOneDeadLetter) {
  // A sender whose acknowledgement was lost sends the same batch again.
  std::string batch = recordLine("a") + "\n{\"broken\": 1}\n";
  ingest_->ingestLines(batch, source_);
  IngestResult result = ingest_->ingestLines(batch, source_);
  EXPECT_EQ(result.duplicates, 1u);
  EXPECT_EQ(result.rejected, 1u);
  EXPECT_EQ(result.dead_letters, 0u);
  EXPECT_EQ(store_->deadLetterCount(), 1u);
  EXPECT_EQ(deadLetterCounter(), 1u);

  // The same line from another sensor is another record.
  IngestSource other = source_;
  other.sensor_id = "s2";
  result = ingest_->ingestLines("{\"broken\": 1}\n", other);
  EXPECT_EQ(result.dead_letters, 1u);
  EXPECT_EQ(store_->deadLetterCount(), 2u);
  EXPECT_EQ(deadLetterCounter(), 2u);
}

// Returns what the default logger wrote while `call` ran.
template <typename Call>
std::string capturedLog(Call&& call) {
  std::ostringstream captured;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(captured)));
  call();
  spdlog::set_default_logger(previous);
  return captured.str();
}

TEST_F(IngestTest, DeadLetterLogCountsStoredLetters) {
  // One line twice in a batch is one record, so one letter.
  std::string batch = "{\"broken\": 1}\n{\"broken\": 1}\n{\"broken\": 2}\n";
  std::string first = capturedLog([&] { ingest_->ingestLines(batch, source_); });
  EXPECT_NE(first.find("dead-lettered undecodable records input=probe sensor=s1 count=2 "),
            std::string::npos)
      << first;
  // The batch sent again stores no letter, and the log must not claim one.
  std::string again = capturedLog([&] { ingest_->ingestLines(batch, source_); });
  EXPECT_EQ(again.find("dead-lettered"), std::string::npos) << again;
  EXPECT_NE(again.find("already in the dead-letter store"), std::string::npos) << again;
  EXPECT_EQ(store_->deadLetterCount(), 2u);
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

std::int64_t batchRows(const fs::path& database) { return countRows(database, "batches"); }

// The stored documents, in order, without event.ingested, which differs
// from one ingest to the next.
std::vector<std::string> documentsWithoutIngestTime(const Store& store) {
  static const std::regex ingested(R"re("ingested":"[^"]*")re");
  std::vector<std::string> documents;
  for (const StoredEvent& event : store.readAfter(0, 1000, 1 << 24)) {
    documents.push_back(std::regex_replace(event.document, ingested, R"("ingested":"")"));
  }
  return documents;
}

// The same batch ingested with its gzip body into this test's store and
// without it into a second store must give the same documents.
class IngestBatchTest : public IngestTest {
 protected:
  std::vector<std::string> documentsWithoutBatch(const std::string& text) {
    StoreOptions options;
    options.path = dir_ / "inline.sqlite";
    options.synchronous = "normal";
    Store store(options);
    MetricsRegistry metrics;
    Ingest ingest(store, *enricher_, metrics, [] {});
    ingest.ingestLines(text, source_);
    EXPECT_EQ(batchRows(options.path), 0);
    return documentsWithoutIngestTime(store);
  }
};

TEST_F(IngestBatchTest, GzipBatchStoredOnceWithWholeDocuments) {
  // A CRLF line end, an escaped quote and a two-byte UTF-8 letter.
  std::string text = recordLine("a") + "\r\n" + recordLine("b\\\"q") + "\n\n" +
                     recordLine("caf\xc3\xa9") + "\n";
  std::string gzip = gzipCompress(text, 6);
  IngestResult result = ingest_->ingestLines(text, source_, gzip);
  EXPECT_EQ(result.stored, 3u);
  EXPECT_EQ(batchRows(store_->path()), 1);

  std::vector<std::string> documents = documentsWithoutIngestTime(*store_);
  ASSERT_EQ(documents.size(), 3u);
  EXPECT_EQ(documents, documentsWithoutBatch(text));
  EXPECT_NE(documents[1].find(R"("original":"{\"transaction\")"), std::string::npos)
      << documents[1];

  // A resend is all duplicates and stores no second body.
  result = ingest_->ingestLines(text, source_, gzip);
  EXPECT_EQ(result.duplicates, 3u);
  EXPECT_EQ(batchRows(store_->path()), 1);
}

TEST_F(IngestBatchTest, ChangedOrRejectedLineKeepsOriginalsInDocuments) {
  // The card number is masked, so that record's original is not its line,
  // and the stored body would keep the number. A line that cannot be
  // decoded would stay in the body unmasked too.
  const std::vector<std::string> odd_lines = {
      R"({"transaction":{"client_ip":"203.0.113.9","time_stamp":"Fri Dec  4 15:41:52 2026",)"
      R"("client_port":51000,"unique_id":"card","request":{"method":"GET",)"
      R"("uri":"/pay?n=4111111111111111","headers":{}}}})",
      R"({"broken": 1})"};
  for (const std::string& odd : odd_lines) {
    TearDown();
    SetUp();
    std::string text = recordLine("a") + "\n" + odd + "\n" + recordLine("b") + "\n";
    ingest_->ingestLines(text, source_, gzipCompress(text, 6));
    EXPECT_EQ(batchRows(store_->path()), 0) << odd;
    std::vector<std::string> documents = documentsWithoutIngestTime(*store_);
    EXPECT_EQ(documents, documentsWithoutBatch(text)) << odd;
    for (const std::string& document : documents) {
      EXPECT_NE(document.find(R"("original":")"), std::string::npos) << document;
      EXPECT_EQ(document.find("4111111111111111"), std::string::npos) << document;
    }
  }
}

TEST_F(IngestBatchTest, PaddedBodyKeepsOriginalsInDocuments) {
  // Bytes that belong to no document: blank lines between the records, and
  // empty gzip members after them.
  std::string padded = recordLine("a") + "\n" + std::string(4096, '\n') + recordLine("b") + "\n";
  std::string text = recordLine("c") + "\n" + recordLine("d") + "\n";
  std::string empty_members;
  for (int i = 0; i < 100; ++i) {
    empty_members += gzipCompress("", 1);
  }
  ingest_->ingestLines(padded, source_, gzipCompress(padded, 6));
  ingest_->ingestLines(text, source_, gzipCompress(text, 6) + empty_members);
  EXPECT_EQ(batchRows(store_->path()), 0);
  EXPECT_EQ(store_->eventCount(), 4u);
  for (const std::string& document : documentsWithoutIngestTime(*store_)) {
    EXPECT_NE(document.find(R"("original":")"), std::string::npos) << document;
  }

  // The same lines with CRLF ends and one blank line are kept by reference.
  std::string crlf = recordLine("e") + "\r\n\r\n" + recordLine("f") + "\r\n";
  ingest_->ingestLines(crlf, source_, gzipCompress(crlf, 6));
  EXPECT_EQ(batchRows(store_->path()), 1);
}

}  // namespace
}  // namespace webtrap::collector
