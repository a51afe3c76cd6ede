#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/error.h"
#include "common/metrics.h"
#include "probe/config.h"
#include "probe/spool.h"
#include "shipper/shipper_config.h"
#include "shipper/spool_reader.h"
#include "spool_fixture.h"
#include "temp_path.h"

namespace webtrap::shipper {
namespace {

namespace fs = std::filesystem;

class SpoolReaderTest : public SpoolFolderTest {
 protected:
  SpoolReaderTest() : SpoolFolderTest("webtrap-shipper-test") {}

  std::string offsetText() const {
    std::ifstream in(dir_ / "shipped.offset");
    std::stringstream content;
    content << in.rdbuf();
    return content.str();
  }
};

TEST(SegmentNames, RoundTrip) {
  EXPECT_EQ(segmentFileName(42), "segment-000000000042.ndjson");
  EXPECT_EQ(parseSegmentFileName("segment-000000000042.ndjson"), 42u);
  EXPECT_EQ(parseSegmentFileName("segment-0000000000x2.ndjson"), 0u);
  EXPECT_EQ(parseSegmentFileName("shipped.offset"), 0u);
}

TEST_F(SpoolReaderTest, ReadsWholeLinesAndPersistsOffset) {
  append(1, "{\"a\":1}\n{\"a\":2}\n");
  SpoolReader reader(dir_);
  reader.loadOffset();
  SpoolBatch batch = reader.next(100, 1 << 20);
  EXPECT_EQ(batch.records, 2u);
  EXPECT_EQ(batch.body, "{\"a\":1}\n{\"a\":2}\n");
  EXPECT_EQ(batch.end, (SpoolPosition{1, 16}));
  EXPECT_EQ(reader.backlogBytes(), 16u);

  ASSERT_TRUE(reader.commit(batch));
  EXPECT_EQ(offsetText(), "segment-000000000001.ndjson 16\n");
  EXPECT_EQ(reader.backlogBytes(), 0u);
  EXPECT_FALSE(fs::exists(dir_ / "shipped.offset.tmp"));
  EXPECT_EQ(reader.next(100, 1 << 20).records, 0u);
}

TEST_F(SpoolReaderTest, CurrentBacklogSeesNewRecords) {
  append(1, "{\"a\":1}\n");
  SpoolReader reader(dir_);
  reader.loadOffset();
  ASSERT_TRUE(reader.commit(reader.next(100, 1 << 20)));
  EXPECT_EQ(reader.backlogBytes(), 0u);
  EXPECT_EQ(reader.currentBacklogBytes(), 0u);

  // Records spooled after the last next(), in this segment and a new one.
  append(1, "{\"a\":2}\n");
  append(2, "{\"a\":3}\n");
  EXPECT_EQ(reader.backlogBytes(), 0u) << "backlogBytes() is as of the last next()";
  EXPECT_EQ(reader.currentBacklogBytes(), 16u);
}

TEST_F(SpoolReaderTest, UncommittedBatchIsReadAgain) {
  append(1, "{\"a\":1}\n");
  SpoolReader reader(dir_);
  reader.loadOffset();
  EXPECT_EQ(reader.next(100, 1 << 20).records, 1u);
  SpoolBatch again = reader.next(100, 1 << 20);
  EXPECT_EQ(again.records, 1u);
  EXPECT_EQ(again.body, "{\"a\":1}\n");
}

TEST_F(SpoolReaderTest, WaitsForPartialLastLine) {
  append(1, "{\"a\":1}\n{\"a\":");
  SpoolReader reader(dir_);
  reader.loadOffset();
  SpoolBatch first = reader.next(100, 1 << 20);
  EXPECT_EQ(first.records, 1u);
  EXPECT_EQ(first.end, (SpoolPosition{1, 8}));
  reader.commit(first);

  EXPECT_EQ(reader.next(100, 1 << 20).records, 0u);
  append(1, "2}\n");
  SpoolBatch second = reader.next(100, 1 << 20);
  EXPECT_EQ(second.records, 1u);
  EXPECT_EQ(second.body, "{\"a\":2}\n");
}

TEST_F(SpoolReaderTest, FollowsRotationAcrossSegments) {
  append(1, "one\n");
  append(2, "two\n");
  append(3, "three\n");
  SpoolReader reader(dir_);
  reader.loadOffset();
  SpoolBatch batch = reader.next(100, 1 << 20);
  EXPECT_EQ(batch.records, 3u);
  EXPECT_EQ(batch.body, "one\ntwo\nthree\n");
  EXPECT_EQ(batch.end, (SpoolPosition{3, 6}));
  reader.commit(batch);
  EXPECT_EQ(offsetText(), "segment-000000000003.ndjson 6\n");
}

TEST_F(SpoolReaderTest, MovesToNewSegmentOnlyAfterRotation) {
  append(1, "one\n");
  SpoolReader reader(dir_);
  reader.loadOffset();
  reader.commit(reader.next(100, 1 << 20));
  EXPECT_EQ(reader.next(100, 1 << 20).records, 0u);

  append(2, "two\n");
  SpoolBatch batch = reader.next(100, 1 << 20);
  EXPECT_EQ(batch.body, "two\n");
  EXPECT_EQ(batch.end, (SpoolPosition{2, 4}));
}

TEST_F(SpoolReaderTest, ShipsTornLineOfClosedSegment) {
  append(1, "one\ntor");
  SpoolReader reader(dir_);
  reader.loadOffset();
  SpoolBatch waiting = reader.next(100, 1 << 20);
  EXPECT_EQ(waiting.body, "one\n");

  // Once segment 2 exists, segment 1 is closed and its tail is final.
  append(2, "two\n");
  SpoolBatch batch = reader.next(100, 1 << 20);
  EXPECT_EQ(batch.records, 3u);
  EXPECT_EQ(batch.body, "one\ntor\ntwo\n");
  EXPECT_EQ(batch.end, (SpoolPosition{2, 4}));
}

TEST_F(SpoolReaderTest, BoundsBatchByRecordsAndBytes) {
  for (int i = 0; i < 10; ++i) {
    append(1, "0123456789\n");  // 11 bytes per line
  }
  SpoolReader reader(dir_);
  reader.loadOffset();
  SpoolBatch by_records = reader.next(3, 1 << 20);
  EXPECT_EQ(by_records.records, 3u);
  EXPECT_EQ(by_records.end, (SpoolPosition{1, 33}));

  SpoolBatch by_bytes = reader.next(100, 30);
  EXPECT_EQ(by_bytes.records, 2u);
  EXPECT_EQ(by_bytes.body.size(), 22u);

  reader.commit(by_bytes);
  SpoolBatch rest = reader.next(100, 1 << 20);
  EXPECT_EQ(rest.records, 8u);
}

TEST_F(SpoolReaderTest, ReturnsOverlongLineAlone) {
  std::string longer(100, 'x');
  append(1, longer + "\nshort\n");
  SpoolReader reader(dir_);
  reader.loadOffset();
  SpoolBatch batch = reader.next(100, 10);
  EXPECT_EQ(batch.records, 1u);
  EXPECT_EQ(batch.body, longer + "\n");
  EXPECT_EQ(batch.end, (SpoolPosition{1, 101}));
  reader.commit(batch);
  EXPECT_EQ(reader.next(100, 10).body, "short\n");
}

TEST_F(SpoolReaderTest, WaitsForOverlongPartialLine) {
  append(1, std::string(100, 'x'));
  SpoolReader reader(dir_);
  reader.loadOffset();
  EXPECT_EQ(reader.next(100, 10).records, 0u);
  append(1, "\n");
  EXPECT_EQ(reader.next(100, 10).records, 1u);
}

TEST_F(SpoolReaderTest, SkipsEmptyLines) {
  append(1, "one\n\n\ntwo\n");
  SpoolReader reader(dir_);
  reader.loadOffset();
  SpoolBatch batch = reader.next(100, 1 << 20);
  EXPECT_EQ(batch.records, 2u);
  EXPECT_EQ(batch.body, "one\ntwo\n");
  EXPECT_EQ(batch.end, (SpoolPosition{1, 10}));
}

TEST_F(SpoolReaderTest, ResumesFromPersistedOffset) {
  append(1, "one\ntwo\n");
  {
    SpoolReader reader(dir_);
    reader.loadOffset();
    reader.commit(reader.next(1, 1 << 20));
  }
  append(1, "three\n");
  SpoolReader restarted(dir_);
  restarted.loadOffset();
  EXPECT_EQ(restarted.position(), (SpoolPosition{1, 4}));
  SpoolBatch batch = restarted.next(100, 1 << 20);
  EXPECT_EQ(batch.body, "two\nthree\n");
}

TEST_F(SpoolReaderTest, IgnoresMalformedOffsetFile) {
  append(1, "one\n");
  std::ofstream(dir_ / "shipped.offset") << "garbage\n";
  SpoolReader reader(dir_);
  reader.loadOffset();
  EXPECT_EQ(reader.position(), (SpoolPosition{0, 0}));
  EXPECT_EQ(reader.next(100, 1 << 20).body, "one\n");
}

TEST_F(SpoolReaderTest, RestartsSegmentWhenOffsetIsPastItsEnd) {
  append(1, "one\n");
  std::ofstream(dir_ / "shipped.offset") << "segment-000000000001.ndjson 500\n";
  SpoolReader reader(dir_);
  reader.loadOffset();
  EXPECT_EQ(reader.next(100, 1 << 20).body, "one\n");
}

TEST_F(SpoolReaderTest, CountsLinesOfDeletedCurrentSegment) {
  append(1, "one\ntwo\nthree\n");
  append(2, "four\n");
  SpoolReader reader(dir_);
  reader.loadOffset();
  reader.commit(reader.next(1, 1 << 20));  // "one" shipped; segment 1 is open for reading

  fs::remove(segment(1));  // what the spool's disk cap does
  SpoolBatch batch = reader.next(100, 1 << 20);
  EXPECT_EQ(reader.droppedRecords(), 2u);
  EXPECT_EQ(batch.body, "four\n");
  EXPECT_EQ(batch.end, (SpoolPosition{2, 5}));
}

TEST_F(SpoolReaderTest, CountsDeletedSegmentsAhead) {
  append(1, "one\n");
  append(2, "a\nb\nc\n");
  append(3, "d\ne\n");
  append(4, "f\n");
  SpoolReader reader(dir_, /*count_ahead=*/true);
  reader.loadOffset();
  reader.commit(reader.next(1, 1 << 20));  // lists and counts segments 2 and 3

  fs::remove(segment(2));
  fs::remove(segment(3));
  SpoolBatch batch = reader.next(100, 1 << 20);
  EXPECT_EQ(reader.droppedRecords(), 5u);
  EXPECT_EQ(batch.body, "f\n");
}

TEST_F(SpoolReaderTest, SkipsUnknownDeletedSegmentsWithoutCounts) {
  append(1, "one\n");
  append(2, "a\n");
  append(3, "b\n");
  SpoolReader reader(dir_);
  reader.loadOffset();
  reader.commit(reader.next(1, 1 << 20));
  fs::remove(segment(2));
  SpoolBatch batch = reader.next(100, 1 << 20);
  EXPECT_EQ(batch.body, "b\n");
  EXPECT_EQ(reader.droppedRecords(), 0u);  // never read, so not counted here
}

TEST_F(SpoolReaderTest, FollowsSpoolNumberingRestart) {
  append(7, "old\n");
  SpoolReader reader(dir_);
  reader.loadOffset();
  reader.commit(reader.next(100, 1 << 20));

  // Every segment deleted, then the probe restarted with an empty spool.
  fs::remove(segment(7));
  EXPECT_EQ(reader.next(100, 1 << 20).records, 0u);
  append(1, "new\n");
  SpoolBatch batch = reader.next(100, 1 << 20);
  EXPECT_EQ(batch.body, "new\n");
  EXPECT_EQ(batch.end, (SpoolPosition{1, 4}));
}

TEST_F(SpoolReaderTest, PersistsPositionPastFinishedSegment) {
  append(1, "one\n");
  SpoolReader reader(dir_);
  reader.loadOffset();
  reader.commit(reader.next(100, 1 << 20));
  append(2, "");
  SpoolBatch empty = reader.next(100, 1 << 20);
  EXPECT_EQ(empty.records, 0u);
  EXPECT_EQ(reader.position(), (SpoolPosition{2, 0}));
}

// The spool deletes shipped segments first at its disk cap, which only works
// when it reads the offset file that the reader writes.
TEST_F(SpoolReaderTest, SpoolDeletesSegmentsShippedByReader) {
  MetricsRegistry metrics;
  probe::SpoolConfig config;
  config.dir = dir_;
  config.segment_bytes = 100;
  config.max_bytes = 400;
  config.fsync = probe::FsyncPolicy::kNever;
  config.on_full = probe::FullPolicy::kDropNew;
  std::string record(39, 'r');  // 40 bytes with the newline

  probe::Spool spool(config, metrics);
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(spool.append(record), probe::AppendResult::kWritten);
  }
  SpoolReader reader(dir_);
  reader.loadOffset();
  SpoolBatch batch = reader.next(1000, 1 << 20);
  EXPECT_EQ(batch.records, 10u);
  ASSERT_TRUE(reader.commit(batch));

  // The spool is at its cap: appending more works only because the shipped
  // segments can be deleted.
  for (int i = 0; i < 9; ++i) {
    EXPECT_EQ(spool.append(record), probe::AppendResult::kWritten) << "append " << i;
  }
  EXPECT_FALSE(fs::exists(segment(1)));
  SpoolBatch rest = reader.next(1000, 1 << 20);
  EXPECT_EQ(rest.records, 9u);
  EXPECT_EQ(reader.droppedRecords(), 0u);
}

TEST(ShipperConfig, RejectsPlainHttpToRemoteHost) {
  ShipperConfig config;
  config.url = "http://collector.example:7380";
  config.token = "secret";
  try {
    resolveShipperConfig(config);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& error) {
    std::string message = error.what();
    EXPECT_NE(message.find("http://collector.example:7380"), std::string::npos) << message;
    EXPECT_NE(message.find("https://"), std::string::npos) << message;
  }
}

TEST(ShipperConfig, AcceptsPlainHttpToLoopback) {
  for (const char* url : {"http://127.0.0.1:7380", "http://[::1]:7380", "http://localhost:7380",
                          "http://127.8.9.10/"}) {
    ShipperConfig config;
    config.url = url;
    config.token = "secret";
    EXPECT_NO_THROW(resolveShipperConfig(config)) << url;
  }
}

TEST(ShipperConfig, RejectsOtherSchemesAndMissingToken) {
  ShipperConfig ftp;
  ftp.url = "ftp://127.0.0.1/";
  ftp.token = "secret";
  EXPECT_THROW(resolveShipperConfig(ftp), ConfigError);

  ShipperConfig no_token;
  no_token.url = "https://collector.example";
  EXPECT_THROW(resolveShipperConfig(no_token), ConfigError);

  ShipperConfig no_url;
  no_url.token = "secret";
  EXPECT_THROW(resolveShipperConfig(no_url), ConfigError);
}

TEST(ShipperConfig, ReadsTokenFile) {
  test_support::TempFile file("webtrap-token", "  s3cret\n");
  ShipperConfig config;
  config.url = "https://collector.example";
  config.token_file = file.path();
  resolveShipperConfig(config);
  EXPECT_EQ(config.token, "s3cret");

  config.token = "other";
  EXPECT_THROW(resolveShipperConfig(config), ConfigError);  // both set
}

// A token_file that names a FIFO or a device fails at once with the key,
// because reading a FIFO waits for a writer and /dev/zero never ends.
TEST(ShipperConfig, TokenFileMustBeRegularFile) {
  test_support::TempDir temp_dir("webtrap-token-fifo");
  fs::path fifo = temp_dir / "token";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const fs::path& path : {fifo, fs::path("/dev/zero")}) {
    ShipperConfig config;
    config.url = "https://collector.example";
    config.token_file = path;
    try {
      resolveShipperConfig(config);
      ADD_FAILURE() << "no ConfigError for " << path;
    } catch (const ConfigError& error) {
      EXPECT_NE(std::string(error.what()).find("shipper.token_file"), std::string::npos)
          << error.what();
      EXPECT_NE(std::string(error.what()).find("not a regular file"), std::string::npos)
          << error.what();
    }
  }
}

TEST(ShipperConfig, ParsesProbeYamlSection) {
  test_support::TempFile file("webtrap-shipper-yaml",
                              "shipper:\n"
                              "  url: https://collector.example:7380\n"
                              "  token: abc\n"
                              "  batch_max_records: 250\n"
                              "  batch_max_bytes: 2MiB\n"
                              "  interval: 250ms\n"
                              "  retry_initial: 1s\n"
                              "  retry_max: 2m\n"
                              "  gzip: false\n");
  probe::ProbeConfig config = probe::loadProbeConfig(file);
  EXPECT_TRUE(config.shipper.isEnabled());
  EXPECT_EQ(config.shipper.url, "https://collector.example:7380");
  EXPECT_EQ(config.shipper.token, "abc");
  EXPECT_EQ(config.shipper.batch_max_records, 250u);
  EXPECT_EQ(config.shipper.batch_max_bytes, 2u << 20);
  EXPECT_EQ(config.shipper.interval_ms, 250u);
  EXPECT_EQ(config.shipper.retry_initial_ms, 1000u);
  EXPECT_EQ(config.shipper.retry_max_ms, 120000u);
  EXPECT_FALSE(config.shipper.gzip);
}

TEST(ShipperConfig, EnabledFollowsUrlAndFlag) {
  ShipperConfig config;
  EXPECT_FALSE(config.isEnabled());
  config.url = "https://collector.example";
  EXPECT_TRUE(config.isEnabled());
  config.enabled = false;
  EXPECT_FALSE(config.isEnabled());
}

TEST(ShipperConfig, RejectsUnknownShipperKey) {
  test_support::TempFile file("webtrap-shipper-key", "shipper:\n  urll: https://collector.example\n");
  try {
    probe::loadProbeConfig(file);
    ADD_FAILURE() << "expected a ConfigError";
  } catch (const ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find("shipper.urll"), std::string::npos) << error.what();
  }
}

TEST(ShipperConfig, RejectsRetryInitialAboveMax) {
  ShipperConfig config;
  config.url = "https://collector.example";
  config.token = "secret";
  config.retry_initial_ms = 5000;
  config.retry_max_ms = 1000;
  EXPECT_THROW(resolveShipperConfig(config), ConfigError);
}

TEST(ShipperConfig, ParsesProxyKey) {
  test_support::TempFile file("webtrap-shipper-proxy",
                              "shipper:\n"
                              "  url: https://collector.example:7380\n"
                              "  token: abc\n"
                              "  proxy: http://proxy.example:3128\n");
  probe::ProbeConfig config = probe::loadProbeConfig(file);
  EXPECT_EQ(config.shipper.proxy, "http://proxy.example:3128");
  EXPECT_NO_THROW(resolveShipperConfig(config.shipper));
}

TEST(ShipperConfig, ProxyDefaultsToNone) {
  ShipperConfig config;
  EXPECT_TRUE(config.proxy.empty());
  EXPECT_EQ(proxyForLog(config.proxy), "none");
}

TEST(ShipperConfig, AcceptsProxySchemes) {
  for (const char* proxy : {"http://proxy.example:3128", "https://proxy.example",
                            "socks5h://user:pw@10.0.0.1:1080", "socks4://[2001:db8::1]:1080"}) {
    ShipperConfig config;
    config.url = "https://collector.example:7380";
    config.token = "secret";
    config.proxy = proxy;
    EXPECT_NO_THROW(resolveShipperConfig(config)) << proxy;
  }
}

TEST(ShipperConfig, RejectsInvalidProxy) {
  for (const char* proxy : {"proxy.example:3128", "ftp://proxy.example", "http://"}) {
    ShipperConfig config;
    config.url = "https://collector.example:7380";
    config.token = "secret";
    config.proxy = proxy;
    try {
      resolveShipperConfig(config);
      ADD_FAILURE() << "expected a ConfigError for " << proxy;
    } catch (const ConfigError& error) {
      EXPECT_NE(std::string(error.what()).find("shipper.proxy"), std::string::npos)
          << error.what();
    }
  }
}

TEST(ShipperConfig, RejectsProxyForLoopbackUrl) {
  for (const char* url : {"http://127.0.0.1:7380", "https://localhost:7380", "http://[::1]"}) {
    ShipperConfig config;
    config.url = url;
    config.token = "secret";
    config.proxy = "http://proxy.example:3128";
    try {
      resolveShipperConfig(config);
      ADD_FAILURE() << "expected a ConfigError for " << url;
    } catch (const ConfigError& error) {
      std::string message = error.what();
      EXPECT_NE(message.find("shipper.proxy"), std::string::npos) << message;
      EXPECT_NE(message.find("loopback"), std::string::npos) << message;
    }
  }
}

TEST(ShipperConfig, ProxyForLogHidesPassword) {
  EXPECT_EQ(proxyForLog("http://user:s3cret@proxy.example:3128"), "http://proxy.example:3128");
  EXPECT_EQ(proxyForLog("socks5h://proxy.example"), "socks5h://proxy.example");
}

TEST(ShipperConfig, RecordsUrl) {
  EXPECT_EQ(recordsUrl("https://c:7380"), "https://c:7380/v1/records");
  EXPECT_EQ(recordsUrl("https://c:7380/"), "https://c:7380/v1/records");
  EXPECT_EQ(recordsUrl("https://c/v1/records"), "https://c/v1/records");
}

}  // namespace
}  // namespace webtrap::shipper
