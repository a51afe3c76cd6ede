// The spool reader against segments that are truncated in place
// (copytruncate-style rotation) or replaced, then refilled past the
// committed offset before the reader looks again. Comparing the size with the
// offset cannot see either case, so every record written after the
// truncation up to the old offset used to be skipped.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "shipper/spool_reader.h"
#include "spool_fixture.h"

namespace webtrap::shipper {
namespace {

namespace fs = std::filesystem;

class SpoolTruncationTest : public SpoolFolderTest {
 protected:
  SpoolTruncationTest() : SpoolFolderTest("webtrap-spool-truncation") {}

  // Empties the segment and writes `text`, keeping the inode, as logrotate's
  // copytruncate does before the writer appends again.
  void truncateAndWrite(std::uint64_t number, const std::string& text) const {
    ino_t before = inode(number);
    std::ofstream(segment(number), std::ios::trunc | std::ios::binary) << text;
    ASSERT_EQ(inode(number), before) << "the truncation must keep the file";
  }

  // Replaces the segment with a new file of the same name.
  void replace(std::uint64_t number, const std::string& text) const {
    fs::path temporary = dir_ / "replacement.tmp";
    std::ofstream(temporary, std::ios::binary) << text;
    fs::rename(temporary, segment(number));
  }

  ino_t inode(std::uint64_t number) const {
    struct stat info {};
    ::stat(segment(number).c_str(), &info);
    return info.st_ino;
  }

  // `count` NDJSON records of about 60 bytes, each with a unique id.
  static std::string records(const std::string& prefix, int count) {
    std::string text;
    for (int i = 0; i < count; ++i) {
      text += "{\"webtrap\":{\"event_id\":\"" + prefix + "-" + std::to_string(i) +
              "\"},\"padding\":\"xxxxxxxxxx\"}\n";
    }
    return text;
  }

  // Reads and commits batches until none is left, and returns their bodies.
  static std::string drain(SpoolReader& reader) {
    std::string all;
    while (true) {
      SpoolBatch batch = reader.next(1000, 1 << 20);
      if (batch.records == 0) {
        return all;
      }
      all += batch.body;
      EXPECT_TRUE(reader.commit(batch));
    }
  }
};

TEST_F(SpoolTruncationTest, RefilledPastOffsetIsReadFromStart) {
  append(1, records("old", 10));
  SpoolReader reader(dir_);
  reader.loadOffset();
  ASSERT_EQ(drain(reader), records("old", 10));

  // Refilled past the old offset before the next poll.
  std::string refill = records("new", 15);
  truncateAndWrite(1, refill);
  ASSERT_GT(refill.size(), records("old", 10).size());

  EXPECT_EQ(drain(reader), refill);
  EXPECT_EQ(reader.truncations(), 1u);
}

TEST_F(SpoolTruncationTest, RefilledToSameSizeIsReadFromStart) {
  append(1, records("aaa", 10));
  SpoolReader reader(dir_);
  reader.loadOffset();
  drain(reader);

  std::string refill = records("bbb", 10);
  truncateAndWrite(1, refill);
  ASSERT_EQ(refill.size(), records("aaa", 10).size());

  EXPECT_EQ(drain(reader), refill);
}

TEST_F(SpoolTruncationTest, RefilledPastOffsetIsDetectedAfterRestart) {
  append(1, records("old", 10));
  {
    SpoolReader reader(dir_);
    reader.loadOffset();
    drain(reader);
  }

  std::string refill = records("new", 15);
  truncateAndWrite(1, refill);

  SpoolReader restarted(dir_);
  restarted.loadOffset();
  EXPECT_EQ(drain(restarted), refill);
}

TEST_F(SpoolTruncationTest, ReplacedSegmentIsReadFromStart) {
  append(1, records("old", 10));
  SpoolReader reader(dir_);
  reader.loadOffset();
  drain(reader);

  std::string refill = records("new", 15);
  replace(1, refill);

  EXPECT_EQ(drain(reader), refill);
}

TEST_F(SpoolTruncationTest, TruncationDuringBatchInFlightIsDetected) {
  append(1, records("old", 10));
  SpoolReader reader(dir_);
  reader.loadOffset();
  SpoolBatch in_flight = reader.next(1000, 1 << 20);
  ASSERT_EQ(in_flight.records, 10u);

  // The file changes while the batch is being sent; the batch's records
  // were still delivered, so the commit is kept.
  std::string refill = records("new", 15);
  truncateAndWrite(1, refill);
  ASSERT_TRUE(reader.commit(in_flight));

  EXPECT_EQ(drain(reader), refill);
}

TEST_F(SpoolTruncationTest, AppendsAfterRestartAreNotReadAgain) {
  append(1, records("one", 10));
  {
    SpoolReader reader(dir_);
    reader.loadOffset();
    drain(reader);
  }
  append(1, records("two", 5));

  SpoolReader restarted(dir_);
  restarted.loadOffset();
  EXPECT_EQ(drain(restarted), records("two", 5));
  EXPECT_EQ(restarted.truncations(), 0u);
}

TEST_F(SpoolTruncationTest, FingerprintOfOtherPositionIsIgnored) {
  append(1, records("one", 10));
  {
    SpoolReader reader(dir_);
    reader.loadOffset();
    drain(reader);
  }
  // An offset file newer than its fingerprint, as after a crash between the
  // two renames: the reader falls back to the size check and resumes.
  std::uint64_t size = fs::file_size(segment(1));
  std::ofstream(dir_ / "shipped.offset") << segmentFileName(1) << " " << size - 30 << "\n";
  append(1, records("two", 2));

  SpoolReader restarted(dir_);
  restarted.loadOffset();
  SpoolBatch batch = restarted.next(1000, 1 << 20);
  EXPECT_EQ(batch.end, (SpoolPosition{1, fs::file_size(segment(1))}));
  EXPECT_EQ(restarted.truncations(), 0u);
}

TEST_F(SpoolTruncationTest, OversizedFingerprintLengthsAreIgnored) {
  append(1, records("one", 10));
  // A corrupt pair of files whose fingerprint claims to cover 100 TB before
  // the offset. The reader must not try to read and hash that much.
  const std::string huge = "99999999999999";
  const std::string digest(64, '0');
  std::ofstream(dir_ / "shipped.offset") << segmentFileName(1) << " " << huge << "\n";
  std::ofstream(dir_ / "shipped.fingerprint")
      << segmentFileName(1) << " " << huge << " " << inode(1) << " " << huge << " " << digest
      << " 512 " << digest << "\n";

  SpoolReader reader(dir_);
  reader.loadOffset();
  EXPECT_EQ(drain(reader), records("one", 10));
  EXPECT_EQ(reader.truncations(), 1u);
}

TEST_F(SpoolTruncationTest, CountsRecordsReadOncePerPosition) {
  append(1, records("one", 10));
  SpoolReader reader(dir_);
  reader.loadOffset();
  SpoolBatch first = reader.next(4, 1 << 20);
  ASSERT_EQ(first.records, 4u);
  EXPECT_EQ(reader.recordsRead(), 4u);

  // A batch read again after a failed send is not counted again, but the
  // records past it are.
  SpoolBatch again = reader.next(6, 1 << 20);
  ASSERT_EQ(again.records, 6u);
  EXPECT_EQ(reader.recordsRead(), 6u);
  ASSERT_TRUE(reader.commit(again));
  drain(reader);
  EXPECT_EQ(reader.recordsRead(), 10u);
}

}  // namespace
}  // namespace webtrap::shipper
