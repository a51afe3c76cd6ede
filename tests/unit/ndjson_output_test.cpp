#include "collector/ndjson_output.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"

namespace webtrap::collector {
namespace {

namespace fs = std::filesystem;

std::vector<StoredEvent> makeBatch(std::int64_t first_seq, int count, std::size_t size = 50) {
  std::vector<StoredEvent> batch;
  for (int i = 0; i < count; ++i) {
    StoredEvent event;
    event.seq = first_seq + i;
    event.event_id = "id-" + std::to_string(event.seq);
    event.document = "{\"seq\":" + std::to_string(event.seq) + ",\"pad\":\"";
    if (event.document.size() + 2 < size) {
      event.document.append(size - event.document.size() - 2, 'x');
    }
    event.document += "\"}";
    batch.push_back(event);
  }
  return batch;
}

std::vector<std::string> readLines(const fs::path& path) {
  std::ifstream file(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(file, line)) {
    lines.push_back(line);
  }
  return lines;
}

std::string readAll(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

class NdjsonOutputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("webtrap-ndjson-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    options_.path = dir_ / "out" / "events.ndjson";
    options_.rotate_size = 0;
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
  NdjsonOutputOptions options_;
};

TEST_F(NdjsonOutputTest, AppendsOneLinePerEvent) {
  NdjsonOutput output(options_);
  auto batch = makeBatch(1, 3);
  auto results = output.send(batch);
  ASSERT_EQ(results.size(), 3u);
  for (const auto& result : results) {
    EXPECT_EQ(result.delivery, Delivery::kDelivered);
  }
  output.send(makeBatch(4, 2));

  auto lines = readLines(options_.path);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0], batch[0].document);
  EXPECT_EQ(lines[4].substr(0, 9), "{\"seq\":5,");
  EXPECT_EQ(readAll(options_.path).back(), '\n');
}

TEST_F(NdjsonOutputTest, AppendsToExistingFile) {
  {
    NdjsonOutput output(options_);
    output.send(makeBatch(1, 2));
  }
  NdjsonOutput output(options_);
  output.send(makeBatch(3, 1));
  EXPECT_EQ(readLines(options_.path).size(), 3u);
}

TEST_F(NdjsonOutputTest, CutsPartialLastLineAtOpen) {
  {
    NdjsonOutput output(options_);
    output.send(makeBatch(1, 2));
  }
  // What a process killed inside write() leaves: a batch cut mid-line.
  {
    std::ofstream file(options_.path, std::ios::binary | std::ios::app);
    file << "{\"seq\":3,\"pad\":\"xx";
  }
  NdjsonOutput output(options_);
  output.send(makeBatch(3, 1));

  auto lines = readLines(options_.path);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[1].substr(0, 9), "{\"seq\":2,");
  EXPECT_EQ(lines[2], makeBatch(3, 1)[0].document);
}

TEST_F(NdjsonOutputTest, CutsFileWithoutNewline) {
  fs::create_directories(options_.path.parent_path());
  {
    std::ofstream file(options_.path, std::ios::binary);
    file << std::string(10000, 'x');
  }
  NdjsonOutput output(options_);
  output.send(makeBatch(1, 1));

  auto lines = readLines(options_.path);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], makeBatch(1, 1)[0].document);
}

TEST_F(NdjsonOutputTest, RejectsDocumentWithNewline) {
  NdjsonOutput output(options_);
  auto batch = makeBatch(1, 3);
  batch[1].document = "{\"a\":1}\n{\"b\":2}";
  auto results = output.send(batch);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[0].delivery, Delivery::kDelivered);
  EXPECT_EQ(results[1].delivery, Delivery::kRejected);
  EXPECT_NE(results[1].reason.find("newline"), std::string::npos);
  EXPECT_EQ(results[2].delivery, Delivery::kDelivered);
  EXPECT_EQ(readLines(options_.path).size(), 2u);
}

TEST_F(NdjsonOutputTest, RotatesBySizeAndKeepsLimit) {
  options_.rotate_size = 1000;
  options_.rotate_keep = 2;
  NdjsonOutput output(options_);
  // Each batch is 4 lines of 100 bytes plus newlines: 404 bytes, so two fit
  // in one file and the third starts a new one.
  for (int batch = 0; batch < 8; ++batch) {
    output.send(makeBatch(batch * 4 + 1, 4, 100));
  }
  const fs::path rotated1 = options_.path.string() + ".1";
  const fs::path rotated2 = options_.path.string() + ".2";
  const fs::path rotated3 = options_.path.string() + ".3";
  ASSERT_TRUE(fs::exists(rotated1));
  ASSERT_TRUE(fs::exists(rotated2));
  EXPECT_FALSE(fs::exists(rotated3));
  EXPECT_LE(fs::file_size(options_.path), 1000u);
  EXPECT_LE(fs::file_size(rotated1), 1000u);

  // The newest lines are in PATH, the ones before them in PATH.1.
  auto current = readLines(options_.path);
  ASSERT_EQ(current.size(), 8u);
  EXPECT_EQ(current.back().substr(0, 10), "{\"seq\":32,");
  auto previous = readLines(rotated1);
  ASSERT_EQ(previous.size(), 8u);
  EXPECT_EQ(previous.back().substr(0, 10), "{\"seq\":24,");
  auto oldest = readLines(rotated2);
  ASSERT_EQ(oldest.size(), 8u);
  EXPECT_EQ(oldest.back().substr(0, 10), "{\"seq\":16,");
}

TEST_F(NdjsonOutputTest, RotateKeepZeroKeepsAll) {
  options_.rotate_size = 500;
  options_.rotate_keep = 0;
  NdjsonOutput output(options_);
  for (int batch = 0; batch < 5; ++batch) {
    output.send(makeBatch(batch * 4 + 1, 4, 100));
  }
  std::size_t lines = readLines(options_.path).size();
  for (int number = 1; number <= 4; ++number) {
    fs::path rotated = options_.path.string() + "." + std::to_string(number);
    ASSERT_TRUE(fs::exists(rotated)) << rotated;
    lines += readLines(rotated).size();
  }
  EXPECT_EQ(lines, 20u);
  EXPECT_EQ(readLines(options_.path.string() + ".4").front().substr(0, 9), "{\"seq\":1,");
}

TEST_F(NdjsonOutputTest, ReopensAfterExternalRotation) {
  NdjsonOutput output(options_);
  output.send(makeBatch(1, 2));
  const fs::path moved = dir_ / "out" / "events.ndjson.old";
  fs::rename(options_.path, moved);

  output.send(makeBatch(3, 2));
  ASSERT_TRUE(fs::exists(options_.path));
  auto fresh = readLines(options_.path);
  ASSERT_EQ(fresh.size(), 2u);
  EXPECT_EQ(fresh[0].substr(0, 9), "{\"seq\":3,");
  EXPECT_EQ(readLines(moved).size(), 2u);

  // Removed outright: the next batch creates the file again.
  fs::remove(options_.path);
  output.send(makeBatch(5, 1));
  EXPECT_EQ(readLines(options_.path).size(), 1u);
}

// docs/collector.md and docs/collector-store.md promise that the output
// creates a missing folder of its path at start and whenever it reopens it.
TEST_F(NdjsonOutputTest, CreatesMissingFolders) {
  options_.path = dir_ / "a" / "b" / "events.ndjson";
  NdjsonOutput output(options_);
  EXPECT_TRUE(fs::is_directory(dir_ / "a" / "b"));
  output.send(makeBatch(1, 1));

  // The folder removed while the output runs is made again for the next batch.
  fs::remove_all(dir_ / "a");
  output.send(makeBatch(2, 1));
  auto lines = readLines(options_.path);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], makeBatch(2, 1)[0].document);
}

TEST_F(NdjsonOutputTest, UncreatableFolderIsConfigError) {
  fs::create_directories(dir_);
  { std::ofstream blocker(dir_ / "file"); }
  options_.path = dir_ / "file" / "events.ndjson";  // a folder cannot be made below a file
  try {
    NdjsonOutput output(options_);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find("outputs.ndjson.path"), std::string::npos)
        << error.what();
  }
}

TEST_F(NdjsonOutputTest, WriteFailureIsTransient) {
  if (!fs::exists("/dev/full")) {
    GTEST_SKIP() << "/dev/full is missing";
  }
  // /dev/full fails every write with ENOSPC and keeps its inode, so the
  // output writes to it without reopening.
  options_.path = "/dev/full";
  NdjsonOutput output(options_);
  try {
    output.send(makeBatch(1, 2));
    FAIL() << "expected a TransientError";
  } catch (const TransientError& e) {
    EXPECT_NE(std::string(e.what()).find("/dev/full"), std::string::npos) << e.what();
  }
}

TEST_F(NdjsonOutputTest, UnopenableFileIsConfigError) {
  fs::create_directories(dir_);
  options_.path = dir_;  // a folder cannot be opened for writing
  EXPECT_THROW(NdjsonOutput output(options_), ConfigError);
}

TEST(ParseNdjsonOutputOptions, ReadsKeys) {
  auto options = parseNdjsonOutputOptions(YAML::Load(R"(
path: /var/lib/webtrap/events.ndjson
rotate_size: 64MiB
rotate_keep: 3
batch_max_events: 500
flush_interval: 1s
)"));
  EXPECT_EQ(options.path, "/var/lib/webtrap/events.ndjson");
  EXPECT_EQ(options.rotate_size, 64u << 20);
  EXPECT_EQ(options.rotate_keep, 3u);
}

TEST(ParseNdjsonOutputOptions, RejectsBadInput) {
  const std::pair<const char*, const char*> cases[] = {
      {"rotate_size: 1GiB", "outputs.ndjson.path"},
      {"{path: a.ndjson, colour: red}", "outputs.ndjson.colour"},
      {"{path: a.ndjson, rotate_size: big}", "outputs.ndjson.rotate_size"},
      {"{path: a.ndjson, rotate_keep: -1}", "outputs.ndjson.rotate_keep"},
      {"{path: ''}", "outputs.ndjson.path"},
      {"[a, b]", "outputs.ndjson"},
  };
  for (const auto& [yaml, key] : cases) {
    try {
      parseNdjsonOutputOptions(YAML::Load(yaml));
      ADD_FAILURE() << "expected a ConfigError for " << yaml;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace webtrap::collector
