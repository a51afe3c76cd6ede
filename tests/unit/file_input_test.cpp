#include "collector/file_input.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <sqlite3.h>

#include "collector/audit_time.h"
#include "collector/enrich.h"
#include "collector/ingest.h"
#include "common/error.h"
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

void append(const fs::path& path, const std::string& text) {
  std::ofstream stream(path, std::ios::binary | std::ios::app);
  stream << text;
}

// The number of file descriptors this process has open.
std::size_t openDescriptorCount() {
  std::size_t count = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator("/proc/self/fd")) {
    ++count;
  }
  return count;
}

class FileInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/webtrap-file-input-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    log_ = dir_ / "audit.log";
    StoreOptions store_options;
    store_options.path = dir_ / "store.sqlite";
    store_options.synchronous = "normal";
    store_ = std::make_unique<Store>(store_options);
  }

  void TearDown() override {
    input_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  FileInputOptions options() {
    FileInputOptions options;
    options.path = log_;
    options.sensor_id = "web1";
    options.group = "dmz";
    options.time_zone = findTimeZone("UTC");
    options.poll_interval_ms = 20;
    return options;
  }

  FileInput& makeInput(FileInputOptions input_options) {
    input_.reset();
    input_ = std::make_unique<FileInput>(
        std::move(input_options), *store_,
        [this](std::vector<AuditRecord>&& records, std::vector<RejectedLine>&& rejected,
               const FileInputOptions&, const FileOffsetNote& offset) {
          ++batches_;
          if (fail_next_) {
            fail_next_ = false;
            throw std::runtime_error("store unavailable");
          }
          for (AuditRecord& record : records) {
            ids_.push_back(record.transaction_id);
            last_record_ = record;
          }
          for (RejectedLine& line : rejected) {
            rejected_.push_back(std::move(line));
          }
          // The collector's handler commits the offset with the batch.
          store_->setFileOffset(offset.path, {offset.inode, offset.offset, offset.head});
        },
        metrics_);
    return *input_;
  }

  FileInput& makeInput() { return makeInput(options()); }

  fs::path dir_;
  fs::path log_;
  std::unique_ptr<Store> store_;
  MetricsRegistry metrics_;
  std::unique_ptr<FileInput> input_;
  std::vector<std::string> ids_;
  std::vector<RejectedLine> rejected_;
  AuditRecord last_record_;
  int batches_ = 0;
  bool fail_next_ = false;
};

using Ids = std::vector<std::string>;

TEST_F(FileInputTest, ReadsLinesAndSavesOffset) {
  append(log_, recordLine("a") + "\n" + recordLine("b") + "\n");
  FileInput& input = makeInput();
  EXPECT_EQ(input.pollOnce(), 2u);
  EXPECT_EQ(ids_, (Ids{"a", "b"}));
  auto saved = store_->fileOffset(log_.string());
  ASSERT_TRUE(saved.has_value());
  EXPECT_EQ(saved->offset, fs::file_size(log_));
  EXPECT_EQ(last_record_.sensor_id, "web1");
  EXPECT_EQ(last_record_.sensor_group, "dmz");
}

TEST_F(FileInputTest, ResumesFromSavedOffset) {
  append(log_, recordLine("a") + "\n");
  makeInput().pollOnce();
  append(log_, recordLine("b") + "\n");
  // A new input, as after a restart, starts where the first one stopped.
  makeInput().pollOnce();
  EXPECT_EQ(ids_, (Ids{"a", "b"}));
}

// A file deleted and created again while the collector is stopped can get
// the same inode number. Rewriting the file in place keeps its inode, and
// with other records past the saved offset its first bytes differ, so it is
// read from its beginning instead of from the old offset.
TEST_F(FileInputTest, NewFileWithSavedInodeReadWhole) {
  append(log_, recordLine("a") + "\n" + recordLine("b") + "\n");
  makeInput().pollOnce();
  input_.reset();
  {
    std::ofstream rewrite(log_, std::ios::binary | std::ios::trunc);
    rewrite << recordLine("c") + "\n" + recordLine("d") + "\n" + recordLine("e") + "\n";
  }
  makeInput().pollOnce();
  EXPECT_EQ(ids_, (Ids{"a", "b", "c", "d", "e"}));
}

TEST_F(FileInputTest, KeepsPartialLine) {
  std::string line = recordLine("a");
  append(log_, line.substr(0, 40));
  FileInput& input = makeInput();
  EXPECT_EQ(input.pollOnce(), 0u);
  EXPECT_TRUE(ids_.empty());
  EXPECT_EQ(store_->fileOffset(log_.string())->offset, 0u);
  append(log_, line.substr(40) + "\n");
  EXPECT_EQ(input.pollOnce(), 1u);
  EXPECT_EQ(ids_, Ids{"a"});
  EXPECT_TRUE(rejected_.empty());
}

TEST_F(FileInputTest, RejectedLinesReported) {
  append(log_, recordLine("a") + "\n{\"transaction\":{\"client_ip\":5}}\r\n\n" + recordLine("b") +
                   "\n");
  makeInput().pollOnce();
  EXPECT_EQ(ids_, (Ids{"a", "b"}));
  ASSERT_EQ(rejected_.size(), 1u);
  EXPECT_EQ(rejected_[0].offset, recordLine("a").size() + 1);
  EXPECT_EQ(rejected_[0].path, log_.string());
  EXPECT_EQ(rejected_[0].line, "{\"transaction\":{\"client_ip\":5}}");
  EXPECT_TRUE(rejected_[0].error.starts_with("transaction.client_ip")) << rejected_[0].error;
}

// A kill right after a batch's commit loses nothing and repeats nothing:
// the offset is in the commit, so the next start does not read the lines
// again, and the rejected line stays one dead letter.
TEST_F(FileInputTest, OffsetCommittedWithBatch) {
  append(log_, recordLine("a") + "\n{\"transaction\":{\"client_ip\":5}}\n");
  Enricher enricher(EnrichOptions{});
  Ingest ingest(*store_, enricher, metrics_, [] {});
  bool killed = false;
  FileBatchHandler committing = [&](std::vector<AuditRecord>&& records,
                                    std::vector<RejectedLine>&& rejected,
                                    const FileInputOptions& input, const FileOffsetNote& offset) {
    IngestSource source;
    source.input = InputKind::kFile;
    source.sensor_id = input.sensor_id;
    source.origin = input.path.string();
    source.file_offset = &offset;
    std::vector<DeadLetter> letters;
    for (RejectedLine& line : rejected) {
      DeadLetter letter;
      letter.reason = line.error;
      letter.payload = line.line;
      letters.push_back(std::move(letter));
    }
    ingest.ingestDecoded(records, std::move(letters), source);
    if (!killed) {
      killed = true;
      throw std::runtime_error("killed after the commit");
    }
  };
  {
    FileInput first(options(), *store_, committing, metrics_);
    EXPECT_THROW(first.pollOnce(), std::runtime_error);
  }
  FileInput restarted(options(), *store_, committing, metrics_);
  restarted.pollOnce();
  EXPECT_EQ(store_->eventCount(), 1u);
  EXPECT_EQ(store_->deadLetterCount(), 1u);
}

TEST_F(FileInputTest, FailedBatchReadAgain) {
  append(log_, recordLine("a") + "\n");
  FileInput& input = makeInput();
  fail_next_ = true;
  EXPECT_THROW(input.pollOnce(), std::runtime_error);
  EXPECT_TRUE(ids_.empty());
  EXPECT_EQ(store_->fileOffset(log_.string())->offset, 0u);
  input.pollOnce();
  EXPECT_EQ(ids_, Ids{"a"});
}

TEST_F(FileInputTest, FollowsRotation) {
  append(log_, recordLine("a") + "\n");
  FileInput& input = makeInput();
  input.pollOnce();
  fs::rename(log_, dir_ / "audit.log.1");
  // The writer still appends to the old file until it reopens its log.
  append(dir_ / "audit.log.1", recordLine("b") + "\n" + recordLine("c"));
  append(log_, recordLine("d") + "\n");
  for (int i = 0; i < 4; ++i) {
    input.pollOnce();
  }
  // The old file's last line had no newline: it is complete all the same.
  EXPECT_EQ(ids_, (Ids{"a", "b", "c", "d"}));
  // The saved offset now belongs to the new file.
  struct stat info {};
  ASSERT_EQ(::stat(log_.c_str(), &info), 0);
  EXPECT_EQ(store_->fileOffset(log_.string())->inode, static_cast<std::uint64_t>(info.st_ino));
}

TEST_F(FileInputTest, RotationWhileStopped) {
  append(log_, recordLine("a") + "\n");
  makeInput().pollOnce();
  input_.reset();
  append(log_, recordLine("b") + "\n");
  fs::rename(log_, dir_ / "audit.log.1");
  append(log_, recordLine("c") + "\n");
  FileInput& input = makeInput();
  for (int i = 0; i < 3; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a", "b", "c"}));
}

TEST_F(FileInputTest, FollowsTruncation) {
  append(log_, recordLine("a") + "\n" + recordLine("b") + "\n");
  FileInput& input = makeInput();
  input.pollOnce();
  fs::resize_file(log_, 0);
  append(log_, recordLine("c") + "\n");
  input.pollOnce();
  EXPECT_EQ(ids_, (Ids{"a", "b", "c"}));
}

TEST_F(FileInputTest, TruncatedAndRefilledBetweenPolls) {
  append(log_, recordLine("a") + "\n");
  FileInput& input = makeInput();
  input.pollOnce();
  // Longer than before, so the size alone does not show the truncation.
  fs::resize_file(log_, 0);
  append(log_, recordLine("bb") + "\n" + recordLine("c") + "\n");
  input.pollOnce();
  EXPECT_EQ(ids_, (Ids{"a", "bb", "c"}));
  EXPECT_EQ(metrics_.counter("webtrap_collector_file_truncations_total", "",
                             "path=\"" + log_.string() + "\"").value(),
            1u);
}

TEST_F(FileInputTest, CopytruncateReadsRestOfCopy) {
  append(log_, recordLine("a") + "\n");
  FileInput& input = makeInput();
  input.pollOnce();
  // Written after the last poll, then copied and truncated by logrotate.
  append(log_, recordLine("b") + "\n" + recordLine("c") + "\n");
  fs::copy_file(log_, dir_ / "audit.log.1");
  fs::resize_file(log_, 0);
  append(log_, recordLine("d") + "\n");
  for (int i = 0; i < 3; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a", "b", "c", "d"}));
  // A copytruncate is a truncation, not a rotation.
  EXPECT_EQ(
      metrics_
          .counter("webtrap_collector_file_rotations_total", "", "path=\"" + log_.string() + "\"")
          .value(),
      0u);
  EXPECT_EQ(metrics_
                .counter("webtrap_collector_file_truncated_copies_total", "",
                         "path=\"" + log_.string() + "\"")
                .value(),
            1u);
  // The saved offset belongs to the file at the path again.
  struct stat info {};
  ASSERT_EQ(::stat(log_.c_str(), &info), 0);
  EXPECT_EQ(store_->fileOffset(log_.string())->inode, static_cast<std::uint64_t>(info.st_ino));
}

TEST_F(FileInputTest, CopytruncateRefilledReadsDatedCopy) {
  append(log_, recordLine("a") + "\n");
  FileInput& input = makeInput();
  input.pollOnce();
  append(log_, recordLine("b") + "\n");
  fs::copy_file(log_, dir_ / "audit.log-20261206");
  // Refilled past the old size before the next poll.
  fs::resize_file(log_, 0);
  append(log_, recordLine("cc") + "\n" + recordLine("dd") + "\n" + recordLine("ee") + "\n");
  for (int i = 0; i < 3; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a", "b", "cc", "dd", "ee"}));
}

TEST_F(FileInputTest, CopyWithOtherFirstBytesIgnored) {
  append(log_, recordLine("a") + "\n");
  FileInput& input = makeInput();
  input.pollOnce();
  append(log_, recordLine("b") + "\n");
  // An older rotated file, long enough, but of other content.
  append(dir_ / "audit.log.1",
         recordLine("x") + "\n" + recordLine("y") + "\n" + recordLine("z") + "\n");
  fs::resize_file(log_, 0);
  append(log_, recordLine("c") + "\n");
  for (int i = 0; i < 3; ++i) {
    input.pollOnce();
  }
  // "b" was only in the truncated part, and no copy has it.
  EXPECT_EQ(ids_, (Ids{"a", "c"}));
}

TEST_F(FileInputTest, CopytruncateWhileStopped) {
  append(log_, recordLine("a") + "\n");
  makeInput().pollOnce();
  input_.reset();
  append(log_, recordLine("b") + "\n");
  fs::copy_file(log_, dir_ / "audit.log.1");
  fs::resize_file(log_, 0);
  append(log_, recordLine("c") + "\n");
  FileInput& input = makeInput();
  for (int i = 0; i < 3; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a", "b", "c"}));
}

TEST_F(FileInputTest, CopytruncateReadsFileInSamePoll) {
  append(log_, recordLine("a") + "\n");
  FileInput& input = makeInput();
  input.pollOnce();
  append(log_, recordLine("b") + "\n");
  fs::copy_file(log_, dir_ / "audit.log.1");
  fs::resize_file(log_, 0);
  append(log_, recordLine("c") + "\n");
  // The copy is complete, so the poll that finds it reads the file too.
  input.pollOnce();
  EXPECT_EQ(ids_, (Ids{"a", "b", "c"}));
  struct stat info {};
  ASSERT_EQ(::stat(log_.c_str(), &info), 0);
  EXPECT_EQ(store_->fileOffset(log_.string())->inode, static_cast<std::uint64_t>(info.st_ino));
}

// The file had no line at the last poll, so it has no first bytes to find
// its copy by: the copy is the one made since that poll.
TEST_F(FileInputTest, CopytruncateOfEmptyFileReadsCopy) {
  append(log_, "");
  FileInput& input = makeInput();
  input.pollOnce();
  append(log_, recordLine("a") + "\n" + recordLine("b") + "\n");
  fs::copy_file(log_, dir_ / "audit.log.1");
  fs::resize_file(log_, 0);
  append(log_, recordLine("c") + "\n");
  for (int i = 0; i < 3; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a", "b", "c"}));
  const std::string label = "path=\"" + log_.string() + "\"";
  EXPECT_EQ(metrics_.counter("webtrap_collector_file_truncated_copies_total", "", label).value(),
            1u);
  EXPECT_EQ(metrics_.counter("webtrap_collector_file_truncations_total", "", label).value(), 1u);
  struct stat info {};
  ASSERT_EQ(::stat(log_.c_str(), &info), 0);
  EXPECT_EQ(store_->fileOffset(log_.string())->inode, static_cast<std::uint64_t>(info.st_ino));
}

// Truncated to empty again after the copy: the copy is read once, not at
// every poll that finds the file empty.
TEST_F(FileInputTest, CopytruncateToEmptyReadsCopyOnce) {
  append(log_, "");
  FileInput& input = makeInput();
  input.pollOnce();
  append(log_, recordLine("a") + "\n");
  fs::copy_file(log_, dir_ / "audit.log.1");
  fs::resize_file(log_, 0);
  for (int i = 0; i < 4; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a"}));
  // The next copytruncate of the empty file, a day later, with logrotate's
  // renaming.
  fs::last_write_time(dir_ / "audit.log.1",
                      fs::file_time_type::clock::now() - std::chrono::hours(24));
  fs::rename(dir_ / "audit.log.1", dir_ / "audit.log.2");
  append(log_, recordLine("b") + "\n");
  fs::copy_file(log_, dir_ / "audit.log.1");
  fs::resize_file(log_, 0);
  for (int i = 0; i < 4; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a", "b"}));
}

// Renaming an old rotated file gives it a new change time, but not a new
// modification time, so it is not taken for a copy made since the last poll.
TEST_F(FileInputTest, RenamedOldCopyOfEmptyFileIgnored) {
  append(dir_ / "audit.log.1", recordLine("x") + "\n");
  fs::last_write_time(dir_ / "audit.log.1",
                      fs::file_time_type::clock::now() - std::chrono::hours(1));
  append(log_, "");
  FileInput& input = makeInput();
  input.pollOnce();
  fs::rename(dir_ / "audit.log.1", dir_ / "audit.log.2");
  append(log_, recordLine("a") + "\n");
  for (int i = 0; i < 3; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a"}));
}

// logrotate with delaycompress compresses the previous copy after it made
// the new one, so the compressed file is newer. It starts with other bytes
// than any line and must not be read in place of the new copy.
TEST_F(FileInputTest, CompressedFileNotTakenForCopy) {
  append(log_, "");
  FileInput& input = makeInput();
  input.pollOnce();
  append(log_, recordLine("a") + "\n");
  fs::copy_file(log_, dir_ / "audit.log.1");
  fs::resize_file(log_, 0);
  const std::string gzip_member("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage\n", 18);
  append(dir_ / "audit.log.2.gz", gzip_member);
  fs::last_write_time(dir_ / "audit.log.2.gz",
                      fs::last_write_time(dir_ / "audit.log.1") + std::chrono::milliseconds(10));
  for (int i = 0; i < 3; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a"}));
  EXPECT_TRUE(rejected_.empty());
}

// logrotate with delaycompress compresses the copy read last and deletes it
// just before it makes the next copy, which then gets the freed inode
// number on ext4. The next copy is still read.
TEST_F(FileInputTest, CopyWithReadCopysInodeRead) {
  append(log_, "");
  FileInput& input = makeInput();
  input.pollOnce();
  append(log_, recordLine("a") + "\n");
  fs::copy_file(log_, dir_ / "audit.log.1");
  fs::resize_file(log_, 0);
  for (int i = 0; i < 3; ++i) {
    input.pollOnce();
  }
  ASSERT_EQ(ids_, (Ids{"a"}));
  struct stat first_copy {};
  ASSERT_EQ(::stat((dir_ / "audit.log.1").c_str(), &first_copy), 0);

  fs::rename(dir_ / "audit.log.1", dir_ / "audit.log.2");
  append(dir_ / "audit.log.2.gz", std::string("\x1f\x8b\x08\x00", 4));
  fs::remove(dir_ / "audit.log.2");
  append(log_, recordLine("b") + "\n");
  fs::copy_file(log_, dir_ / "audit.log.1");
  fs::resize_file(log_, 0);
  struct stat second_copy {};
  ASSERT_EQ(::stat((dir_ / "audit.log.1").c_str(), &second_copy), 0);
  if (second_copy.st_ino != first_copy.st_ino) {
    GTEST_SKIP() << "the file system gave the second copy a new inode number";
  }
  for (int i = 0; i < 3; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a", "b"}));
}

// Another live log in the folder whose name starts with the file's name is
// no copy: the file itself was not written since the last poll.
TEST_F(FileInputTest, NeighbourLogOfQuietEmptyFileIgnored) {
  append(log_, "");
  // The file's modification time is then before the first poll, also on
  // the coarse clock that stamps files.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  FileInput& input = makeInput();
  input.pollOnce();
  append(dir_ / "audit.log.json", recordLine("x") + "\n");
  for (int i = 0; i < 3; ++i) {
    input.pollOnce();
  }
  EXPECT_TRUE(ids_.empty());
  EXPECT_TRUE(rejected_.empty());
}

// The file got a line without a copytruncate, and an older live log beside
// it was written too. The other log existed before the last poll, so it is
// not a copy made since then.
TEST_F(FileInputTest, OlderNeighbourLogNotTakenForCopy) {
  append(dir_ / "audit.log.json", recordLine("x") + "\n");
  append(log_, "");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  FileInput& input = makeInput();
  input.pollOnce();
  append(dir_ / "audit.log.json", recordLine("y") + "\n");
  append(log_, recordLine("a") + "\n");
  // Any change of the folder, here an unrelated new file.
  append(dir_ / "unrelated.txt", "x");
  for (int i = 0; i < 3; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a"}));
}

// Rotated by renaming while it had no line at the last poll: the path names
// a new file, so nothing was copied, and a log created beside it meanwhile
// is no copy. The renamed file is finished first.
TEST_F(FileInputTest, RenamedEmptyFileNotSearchedForCopy) {
  append(log_, "");
  FileInput& input = makeInput();
  input.pollOnce();
  append(dir_ / "audit.log.json", recordLine("x") + "\n");
  append(log_, recordLine("a") + "\n");
  fs::rename(log_, dir_ / "audit.log.1");
  append(log_, recordLine("b") + "\n");
  for (int i = 0; i < 4; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a", "b"}));
}

TEST_F(FileInputTest, TwoCopytruncatesOnePollApart) {
  append(log_, recordLine("a") + "\n");
  FileInput& input = makeInput();
  input.pollOnce();
  append(log_, recordLine("b") + "\n");
  fs::copy_file(log_, dir_ / "audit.log.1");
  fs::resize_file(log_, 0);
  append(log_, recordLine("c") + "\n");
  input.pollOnce();
  // The next rotation: "c" and "d" are only in the new audit.log.1.
  fs::rename(dir_ / "audit.log.1", dir_ / "audit.log.2");
  append(log_, recordLine("d") + "\n");
  fs::copy_file(log_, dir_ / "audit.log.1");
  fs::resize_file(log_, 0);
  append(log_, recordLine("e") + "\n");
  for (int i = 0; i < 3; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a", "b", "c", "d", "e"}));
  EXPECT_TRUE(rejected_.empty());
}

// Longer than a tick of the clock that stamps files (CLOCK_REALTIME_COARSE,
// 1 to 10 ms), so that files written before and after it get different
// times, as logrotate runs a poll interval apart do.
void waitFileClockTick() {
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
}

// Empty when the collector stopped: the copy is found by the time saved
// with the offset.
TEST_F(FileInputTest, CopytruncateOfEmptyFileWhileStopped) {
  append(log_, "");
  makeInput().pollOnce();
  input_.reset();
  append(log_, recordLine("a") + "\n" + recordLine("b") + "\n");
  fs::copy_file(log_, dir_ / "audit.log.1");
  fs::resize_file(log_, 0);
  append(log_, recordLine("c") + "\n");
  FileInput& input = makeInput();
  for (int i = 0; i < 3; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a", "b", "c"}));
  const std::string label = "path=\"" + log_.string() + "\"";
  EXPECT_EQ(metrics_.counter("webtrap_collector_file_truncated_copies_total", "", label).value(),
            1u);
  struct stat info {};
  ASSERT_EQ(::stat(log_.c_str(), &info), 0);
  EXPECT_EQ(store_->fileOffset(log_.string())->inode, static_cast<std::uint64_t>(info.st_ino));
}

// Read to its end when the collector stopped, then appended to, copied and
// truncated to empty: the copy is found by the first bytes saved.
TEST_F(FileInputTest, CopytruncateOfReadFileWhileStopped) {
  append(log_, recordLine("a") + "\n");
  makeInput().pollOnce();
  input_.reset();
  append(log_, recordLine("b") + "\n");
  fs::copy_file(log_, dir_ / "audit.log.1");
  fs::resize_file(log_, 0);
  FileInput& input = makeInput();
  for (int i = 0; i < 3; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a", "b"}));
  append(log_, recordLine("c") + "\n");
  input.pollOnce();
  EXPECT_EQ(ids_, (Ids{"a", "b", "c"}));
}

// A copy read before the stop was made before the time saved then, so the
// next start does not read it again.
TEST_F(FileInputTest, CopyReadBeforeStopNotReadAgain) {
  append(log_, "");
  FileInput& first = makeInput();
  first.pollOnce();
  append(log_, recordLine("a") + "\n");
  fs::copy_file(log_, dir_ / "audit.log.1");
  fs::resize_file(log_, 0);
  for (int i = 0; i < 3; ++i) {
    first.pollOnce();
  }
  ASSERT_EQ(ids_, (Ids{"a"}));
  input_.reset();
  waitFileClockTick();
  append(log_, recordLine("b") + "\n");
  FileInput& input = makeInput();
  for (int i = 0; i < 3; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a", "b"}));
}

// Files beside an empty file that existed when the collector stopped are no
// copies, also when they were written while it was stopped.
TEST_F(FileInputTest, OlderFilesNotCopiesAtStart) {
  append(dir_ / "audit.log.1", recordLine("x") + "\n");
  fs::last_write_time(dir_ / "audit.log.1",
                      fs::file_time_type::clock::now() - std::chrono::hours(1));
  append(dir_ / "audit.log.json", recordLine("y") + "\n");
  append(log_, "");
  // The files are then older than the first poll, also on the file clock.
  waitFileClockTick();
  makeInput().pollOnce();
  input_.reset();
  waitFileClockTick();
  append(dir_ / "audit.log.json", recordLine("z") + "\n");
  append(log_, recordLine("a") + "\n");
  FileInput& input = makeInput();
  for (int i = 0; i < 3; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a"}));
}

// logrotate run twice between two polls of an empty file: the first copy
// was renamed to audit.log.2. Both copies are read, the older first.
TEST_F(FileInputTest, TwoCopytruncatesOfEmptyFileInOnePoll) {
  append(log_, "");
  FileInput& input = makeInput();
  input.pollOnce();
  append(log_, recordLine("a") + "\n");
  fs::copy_file(log_, dir_ / "audit.log.1");
  fs::resize_file(log_, 0);
  waitFileClockTick();
  fs::rename(dir_ / "audit.log.1", dir_ / "audit.log.2");
  append(log_, recordLine("b") + "\n");
  fs::copy_file(log_, dir_ / "audit.log.1");
  fs::resize_file(log_, 0);
  append(log_, recordLine("c") + "\n");
  for (int i = 0; i < 4; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a", "b", "c"}));
  const std::string label = "path=\"" + log_.string() + "\"";
  EXPECT_EQ(metrics_.counter("webtrap_collector_file_truncated_copies_total", "", label).value(),
            2u);
  EXPECT_EQ(metrics_.counter("webtrap_collector_file_truncations_total", "", label).value(), 2u);
}

// The same with lines read before: the first copy is read from the offset
// read, the second from its beginning, then the file.
TEST_F(FileInputTest, TwoCopytruncatesInOnePoll) {
  append(log_, recordLine("a") + "\n");
  FileInput& input = makeInput();
  input.pollOnce();
  append(log_, recordLine("b") + "\n");
  fs::copy_file(log_, dir_ / "audit.log.1");
  fs::resize_file(log_, 0);
  waitFileClockTick();
  fs::rename(dir_ / "audit.log.1", dir_ / "audit.log.2");
  append(log_, recordLine("c") + "\n");
  fs::copy_file(log_, dir_ / "audit.log.1");
  fs::resize_file(log_, 0);
  append(log_, recordLine("d") + "\n");
  for (int i = 0; i < 4; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a", "b", "c", "d"}));
  EXPECT_TRUE(rejected_.empty());
  const std::string label = "path=\"" + log_.string() + "\"";
  EXPECT_EQ(metrics_.counter("webtrap_collector_file_truncated_copies_total", "", label).value(),
            2u);
  EXPECT_EQ(metrics_.counter("webtrap_collector_file_truncations_total", "", label).value(), 2u);
  struct stat info {};
  ASSERT_EQ(::stat(log_.c_str(), &info), 0);
  EXPECT_EQ(store_->fileOffset(log_.string())->inode, static_cast<std::uint64_t>(info.st_ino));
}

// Empty when the collector stopped, then rotated twice: both copies are
// read in the order they were made.
TEST_F(FileInputTest, TwoCopytruncatesOfEmptyFileWhileStopped) {
  append(log_, "");
  makeInput().pollOnce();
  input_.reset();
  append(log_, recordLine("a") + "\n");
  fs::copy_file(log_, dir_ / "audit.log-20261206");
  fs::resize_file(log_, 0);
  waitFileClockTick();
  append(log_, recordLine("b") + "\n");
  fs::copy_file(log_, dir_ / "audit.log-20261207");
  fs::resize_file(log_, 0);
  FileInput& input = makeInput();
  for (int i = 0; i < 4; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a", "b"}));
}

// The saved offset names a rotated file's inode, and the file with that
// inode now has other content: the number was reused, or a hand-made
// rotation copied the log onto the old copy. Its bytes past the saved offset
// belong to another file and must not be read as the rest of the old one.
TEST_F(FileInputTest, RotatedInodeWithOtherFirstBytesSkipped) {
  append(log_, recordLine("a") + "\n" + recordLine("b") + "\n");
  makeInput().pollOnce();
  input_.reset();
  const fs::path rotated = dir_ / "audit.log.1";
  fs::rename(log_, rotated);
  {
    // Rewritten in place, so it keeps its inode, and longer than before.
    std::ofstream stream(rotated, std::ios::binary | std::ios::trunc);
    for (const char* id : {"x", "y", "z", "w"}) {
      stream << recordLine(id) << "\n";
    }
  }
  append(log_, recordLine("c") + "\n");
  FileInput& input = makeInput();
  for (int i = 0; i < 3; ++i) {
    input.pollOnce();
  }
  EXPECT_EQ(ids_, (Ids{"a", "b", "c"}));
  EXPECT_TRUE(rejected_.empty());
}

TEST_F(FileInputTest, AppendsAfterShortHeadNotTruncation) {
  // A file shorter than the compared first bytes, then appended to.
  append(log_, "\n");
  FileInput& input = makeInput();
  input.pollOnce();
  append(log_, recordLine("a") + "\n");
  input.pollOnce();
  append(log_, recordLine("b") + "\n");
  input.pollOnce();
  EXPECT_EQ(ids_, (Ids{"a", "b"}));
}

TEST_F(FileInputTest, PseudoFileRefused) {
  // /proc files report size 0 and have content.
  FileInputOptions input_options = options();
  input_options.path = "/proc/self/status";
  FileInput& input = makeInput(input_options);
  EXPECT_EQ(input.pollOnce(), 0u);
  EXPECT_EQ(input.pollOnce(), 0u);
  EXPECT_TRUE(rejected_.empty());
  EXPECT_FALSE(store_->fileOffset("/proc/self/status").has_value());
}

TEST_F(FileInputTest, TruncatedWhileStopped) {
  append(log_, recordLine("a") + "\n" + recordLine("b") + "\n");
  makeInput().pollOnce();
  input_.reset();
  fs::resize_file(log_, 0);
  append(log_, recordLine("c") + "\n");
  makeInput().pollOnce();
  EXPECT_EQ(ids_, (Ids{"a", "b", "c"}));
}

TEST_F(FileInputTest, StoreReadErrorClosesFile) {
  append(log_, recordLine("a") + "\n");
  FileInput& input = makeInput();
  // Reading the saved offset now fails, as on a store read error.
  execSql(dir_ / "store.sqlite", "DROP TABLE file_offsets");
  // The first failure may open store files, such as another reader connection.
  EXPECT_ANY_THROW(input.pollOnce());
  std::size_t before = openDescriptorCount();
  for (int i = 0; i < 5; ++i) {
    EXPECT_ANY_THROW(input.pollOnce());
  }
  EXPECT_EQ(openDescriptorCount(), before);
  EXPECT_TRUE(ids_.empty());
}

TEST_F(FileInputTest, StartAtEnd) {
  append(log_, recordLine("old") + "\n");
  FileInputOptions input_options = options();
  input_options.start_at_end = true;
  FileInput& input = makeInput(input_options);
  input.pollOnce();
  append(log_, recordLine("new") + "\n");
  input.pollOnce();
  EXPECT_EQ(ids_, Ids{"new"});
}

TEST_F(FileInputTest, StartAtEndMidLine) {
  // The writer is in the middle of a line when the input starts.
  std::string line = recordLine("mid");
  append(log_, recordLine("old") + "\n" + line.substr(0, 40));
  FileInputOptions input_options = options();
  input_options.start_at_end = true;
  FileInput& input = makeInput(input_options);
  input.pollOnce();
  append(log_, line.substr(40) + "\n" + recordLine("new") + "\n");
  input.pollOnce();
  EXPECT_EQ(ids_, (Ids{"mid", "new"}));
  EXPECT_TRUE(rejected_.empty());
}

TEST_F(FileInputTest, OverlongLineRejected) {
  FileInputOptions input_options = options();
  input_options.max_record_bytes = 1024;
  append(log_, std::string(3000, 'x'));
  FileInput& input = makeInput(input_options);
  input.pollOnce();
  ASSERT_EQ(rejected_.size(), 0u);  // handed over with the next batch
  append(log_, std::string(3000, 'y') + "\n" + recordLine("a") + "\n");
  input.pollOnce();
  EXPECT_EQ(ids_, Ids{"a"});
  ASSERT_EQ(rejected_.size(), 1u);
  EXPECT_EQ(rejected_[0].offset, 0u);
  EXPECT_TRUE(rejected_[0].error.find("max_record_size") != std::string::npos);
  EXPECT_EQ(store_->fileOffset(log_.string())->offset, fs::file_size(log_));
}

TEST_F(FileInputTest, OverlongCompleteLineRejected) {
  // A long line that arrives whole, with its newline, in one read.
  FileInputOptions input_options = options();
  input_options.max_record_bytes = 1024;
  std::string line = recordLine(std::string(3000, 'x'));
  append(log_, line + "\n" + recordLine("a") + "\n");
  makeInput(input_options).pollOnce();
  ASSERT_EQ(ids_.size(), 1u);
  EXPECT_EQ(ids_[0], "a");
  ASSERT_EQ(rejected_.size(), 1u);
  EXPECT_EQ(rejected_[0].offset, 0u);
  EXPECT_NE(rejected_[0].error.find("max_record_size"), std::string::npos) << rejected_[0].error;
  EXPECT_TRUE(rejected_[0].line == line);
  EXPECT_EQ(store_->fileOffset(log_.string())->offset, fs::file_size(log_));
}

TEST_F(FileInputTest, BatchesBounded) {
  FileInputOptions input_options = options();
  input_options.batch_max_records = 3;
  std::string text;
  for (int i = 0; i < 10; ++i) {
    text += recordLine(std::to_string(i)) + "\n";
  }
  append(log_, text);
  makeInput(input_options).pollOnce();
  EXPECT_EQ(ids_.size(), 10u);
  EXPECT_EQ(batches_, 4);
}

TEST_F(FileInputTest, BatchesBoundedByBytes) {
  FileInputOptions input_options = options();
  std::string text;
  for (int i = 0; i < 10; ++i) {
    text += recordLine(std::to_string(i)) + "\n";
  }
  // Each line has the same length, and three of them reach the limit.
  input_options.batch_max_bytes = recordLine("0").size() * 5 / 2;
  append(log_, text);
  makeInput(input_options).pollOnce();
  EXPECT_EQ(ids_.size(), 10u);
  EXPECT_EQ(batches_, 4);
}

TEST_F(FileInputTest, MissingFileWaits) {
  FileInput& input = makeInput();
  const std::string labels = "path=\"" + log_.string() + "\"";
  EXPECT_EQ(input.pollOnce(), 0u);
  EXPECT_EQ(metrics_.gauge("webtrap_collector_file_open_failing", "", labels).value(), 1);
  append(log_, recordLine("a") + "\n");
  EXPECT_EQ(input.pollOnce(), 1u);
  EXPECT_EQ(metrics_.gauge("webtrap_collector_file_open_failing", "", labels).value(), 0);
}

TEST_F(FileInputTest, FolderAtPathWaits) {
  fs::create_directory(log_);
  FileInput& input = makeInput();
  EXPECT_EQ(input.pollOnce(), 0u);
  EXPECT_EQ(input.pollOnce(), 0u);
  EXPECT_FALSE(store_->fileOffset(log_.string()).has_value());
  fs::remove(log_);
  append(log_, recordLine("a") + "\n");
  EXPECT_EQ(input.pollOnce(), 1u);
  EXPECT_EQ(ids_, Ids{"a"});
}

TEST_F(FileInputTest, PathReplacedByFolder) {
  append(log_, recordLine("a") + "\n");
  FileInput& input = makeInput();
  input.pollOnce();
  fs::remove(log_);
  fs::create_directory(log_);
  // The old file is finished after the quiet polls, and the folder is
  // never opened as the new file.
  for (int i = 0; i < 4; ++i) {
    EXPECT_NO_THROW(input.pollOnce()) << "poll " << i;
  }
  fs::remove(log_);
  append(log_, recordLine("b") + "\n" + recordLine("c") + "\n");
  input.pollOnce();
  EXPECT_EQ(ids_, (Ids{"a", "b", "c"}));
  struct stat info {};
  ASSERT_EQ(::stat(log_.c_str(), &info), 0);
  auto saved = store_->fileOffset(log_.string());
  ASSERT_TRUE(saved.has_value());
  EXPECT_EQ(saved->inode, static_cast<std::uint64_t>(info.st_ino));
  EXPECT_EQ(saved->offset, fs::file_size(log_));
}

TEST_F(FileInputTest, FinishedFileOffsetForgotten) {
  append(log_, recordLine("a") + "\n");
  FileInput& input = makeInput();
  input.pollOnce();
  struct stat old_file {};
  ASSERT_EQ(::stat(log_.c_str(), &old_file), 0);
  fs::rename(log_, dir_ / "audit.log.1");
  for (int i = 0; i < 4; ++i) {
    input.pollOnce();
  }
  // The next file at the path may get the finished file's inode number, and
  // must not be read from the finished file's offset then.
  auto saved = store_->fileOffset(log_.string());
  ASSERT_TRUE(saved.has_value());
  EXPECT_NE(saved->inode, static_cast<std::uint64_t>(old_file.st_ino));
  EXPECT_EQ(saved->offset, 0u);

  // The same holds across a restart, also with start_at: end.
  FileInputOptions input_options = options();
  input_options.start_at_end = true;
  FileInput& restarted = makeInput(input_options);
  EXPECT_EQ(restarted.pollOnce(), 0u);
  append(log_, recordLine("b") + "\n");
  EXPECT_EQ(restarted.pollOnce(), 1u);
  EXPECT_EQ(ids_, (Ids{"a", "b"}));
}

TEST_F(FileInputTest, TimeZoneByName) {
  FileInputOptions input_options = options();
  input_options.time_zone = nullptr;
  input_options.timezone = "America/New_York";
  append(log_, recordLine("a") + "\n");
  makeInput(input_options).pollOnce();
  // 15:41:52 in New York is 20:41:52 UTC.
  std::int64_t expected = (daysFromCivil(2026, 12, 4) * 86400 + 20 * 3600 + 41 * 60 + 52);
  EXPECT_EQ(last_record_.timestamp_us, expected * 1000000);

  input_options.timezone = "Nowhere/City";
  EXPECT_THROW(makeInput(input_options), ConfigError);
}

TEST_F(FileInputTest, ThreadPicksUpAppends) {
  FileInput& input = makeInput();
  input.start();
  append(log_, recordLine("a") + "\n");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (store_->fileOffset(log_.string()).value_or(Store::FileOffset{}).offset == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  input.stop();
  EXPECT_EQ(ids_, Ids{"a"});
}

TEST_F(FileInputTest, SameFileThroughSymlinkListedTwice) {
  fs::create_directory(dir_ / "real");
  fs::create_directory_symlink(dir_ / "real", dir_ / "link");
  YAML::Node node;
  node.push_back(YAML::Load("{path: " + (dir_ / "real" / "a.log").string() + "}"));
  node.push_back(YAML::Load("{path: " + (dir_ / "link" / "a.log").string() + "}"));
  try {
    parseFileInputs(node);
    ADD_FAILURE() << "no error for a file listed through a symlinked folder";
  } catch (const ConfigError& error) {
    EXPECT_TRUE(std::string(error.what()).starts_with("inputs.files[1].path: "))
        << error.what();
    EXPECT_NE(std::string(error.what()).find("is listed twice"), std::string::npos)
        << error.what();
  }
}

TEST(FileInputConfig, ParsesEveryKey) {
  YAML::Node node = YAML::Load(R"(
- {path: /var/log/a.json, format: modsec2, sensor_id: web1, group: dmz,
   timezone: Europe/Berlin, poll_interval: 250ms, start_at: end, max_record_size: 1MiB}
- {path: /var/log/b.json}
)");
  std::vector<FileInputOptions> inputs = parseFileInputs(node);
  ASSERT_EQ(inputs.size(), 2u);
  EXPECT_EQ(inputs[0].path, "/var/log/a.json");
  EXPECT_EQ(inputs[0].format, RecordFormat::kModsec2);
  EXPECT_EQ(inputs[0].sensor_id, "web1");
  EXPECT_EQ(inputs[0].group, "dmz");
  EXPECT_EQ(inputs[0].timezone, "Europe/Berlin");
  EXPECT_EQ(inputs[0].time_zone, findTimeZone("Europe/Berlin"));
  EXPECT_EQ(inputs[0].poll_interval_ms, 250u);
  EXPECT_TRUE(inputs[0].start_at_end);
  EXPECT_EQ(inputs[0].max_record_bytes, 1u << 20);
  EXPECT_EQ(inputs[1].format, RecordFormat::kAuto);
  EXPECT_EQ(inputs[1].time_zone, nullptr);
  EXPECT_FALSE(inputs[1].start_at_end);
  // The default that docs/collector.md and docs/audit-decoders.md give.
  EXPECT_EQ(inputs[1].poll_interval_ms, 1000u);
  EXPECT_TRUE(parseFileInputs(YAML::Node()).empty());
}

TEST(FileInputConfig, ErrorsNameTheKey) {
  struct Case {
    const char* yaml;
    const char* message;
  };
  const Case cases[] = {
      {"- {path: /a, colour: red}", "inputs.files[0].colour: unknown key"},
      {"- {format: auto}", "inputs.files[0].path: missing"},
      {"- {path: /a, timezone: Mars/Base}", "inputs.files[0].timezone: unknown time zone"},
      {"- {path: /a, format: modsec4}", "inputs.files[0].format: invalid format \"modsec4\""},
      {"- {path: /a}\n- {path: /a}", "inputs.files[1].path: \"/a\" is listed twice"},
      {"- {path: /a/b}\n- {path: /a//b}", "inputs.files[1].path: \"/a//b\" is listed twice"},
      {"- {path: /a/b}\n- {path: /a/./c/../b}",
       "inputs.files[1].path: \"/a/./c/../b\" is listed twice"},
      {"- {path: /a, poll_interval: 5}", "inputs.files[0].poll_interval"},
      {"- {path: /a, poll_interval: 200000d}", "inputs.files[0].poll_interval: must be at most"},
      {"- {path: /a, start_at: middle}", "inputs.files[0].start_at: invalid value"},
      {"- {path: /a, max_record_size: 10}", "inputs.files[0].max_record_size: must be"},
      {"{path: /a}", "inputs.files: expected a list"},
      {"- /a", "inputs.files[0]: expected a map"},
  };
  for (const Case& c : cases) {
    try {
      parseFileInputs(YAML::Load(c.yaml));
      ADD_FAILURE() << "no error for " << c.yaml;
    } catch (const ConfigError& error) {
      EXPECT_TRUE(std::string(error.what()).starts_with(c.message))
          << "expected '" << c.message << "', got '" << error.what() << "'";
    }
  }
}

}  // namespace
}  // namespace webtrap::collector
