// Reads the probe's spool for the shipper: whole NDJSON lines from the
// persisted offset onwards, across segment rotation and segments deleted by
// the spool's disk cap.
//
// The offset file DIR/shipped.offset contains one line "<segment file name>
// <byte offset>": every byte before that offset of that segment, and every
// segment with a lower number, has been delivered. Only the shipper writes
// it, always through a temporary file, fsync, rename and an fsync of the
// folder, so a crash leaves either the old or the new offset. The spool reads
// it to delete shipped segments first when its disk cap is reached.
//
// The fingerprint file DIR/shipped.fingerprint pins the offset to the bytes
// it was taken from: "<segment file name> <byte offset> <inode> <head length>
// <head SHA-256> <tail length> <tail SHA-256>", where head is the first and
// tail the last bytes before the offset, at most 512 each. Before reading on
// from a committed offset, the reader checks the segment's inode and both
// digests. A segment that was replaced, or truncated in place and refilled
// (logrotate's copytruncate), fails the check even when it has grown past
// the offset again, and is read again from its start. The spool never reads
// this file. It is written before the offset file, so after a crash between
// the two writes its position differs from the offset's, and the reader
// falls back to comparing the segment's size with the offset.
//
// A segment is closed once a segment with a higher number exists, because
// the spool never reopens a segment. The reader relies on that: a last line
// without a newline is waited for in the newest segment, and shipped as it is
// (with a newline added) at the end of a closed segment.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "probe/spool.h"

namespace webtrap::shipper {

// A place in the spool: a segment number (as in segment-000000000042.ndjson)
// and a byte offset in that segment. Segment 0 does not exist and means
// "before the first segment".
struct SpoolPosition {
  std::uint64_t segment = 0;
  std::uint64_t offset = 0;

  bool operator==(const SpoolPosition&) const = default;
  auto operator<=>(const SpoolPosition&) const = default;
};

// The identity of a segment and digests of its bytes before a position:
// what the reader checks before it reads on from that position.
struct SpoolFingerprint {
  SpoolPosition position;  // segment 0: no fingerprint
  std::uint64_t inode = 0;
  std::uint64_t head_length = 0;  // bytes [0, head_length)
  std::string head_sha256;
  std::uint64_t tail_length = 0;  // bytes [position.offset - tail_length, position.offset)
  std::string tail_sha256;

  bool covers(const SpoolPosition& other) const {
    return position.segment != 0 && position == other;
  }
};

// Whole lines read from the spool, each ending in '\n', and the position
// right after the last one.
struct SpoolBatch {
  std::string body;
  std::uint64_t records = 0;
  SpoolPosition end;
  // Taken from the bytes this batch read, so that a segment rewritten while
  // the batch is being sent fails the check after the commit.
  SpoolFingerprint fingerprint;
};

// The spool owns its file names; the reader uses the same functions.
using probe::parseSegmentFileName;
using probe::segmentFileName;

class SpoolReader {
 public:
  // `count_ahead`: count the lines of closed segments not yet shipped, so
  // that a segment deleted by the spool's disk cap before it was read still
  // adds its exact record count to droppedRecords(). It costs one extra read
  // of those segments and only matters with spool.on_full: delete_oldest.
  explicit SpoolReader(std::filesystem::path dir, bool count_ahead = false);
  ~SpoolReader();

  SpoolReader(const SpoolReader&) = delete;
  SpoolReader& operator=(const SpoolReader&) = delete;

  // Reads DIR/shipped.offset and its fingerprint. A missing offset file
  // means nothing was shipped. A malformed one is logged and ignored, so
  // everything is sent again, and the collector removes the duplicates by
  // event id.
  void loadOffset();

  // Reads the next whole lines from the committed position: at most
  // `max_records` lines and `max_bytes` bytes, except that a single line
  // longer than `max_bytes` is returned alone. Empty lines are skipped. An
  // empty batch means that no whole line is waiting.
  SpoolBatch next(std::uint64_t max_records, std::uint64_t max_bytes);

  // Makes `batch.end` the committed position and persists it with its
  // fingerprint. Returns false (and logs) when the offset file could not be
  // written; the position still advances in memory and the next commit
  // tries again.
  bool commit(const SpoolBatch& batch);

  SpoolPosition position() const { return position_; }

  // Unshipped bytes in the spool, as of the last next().
  std::uint64_t backlogBytes() const { return backlog_bytes_; }

  // Unshipped bytes in the spool now, after the position: lists the
  // segments again, so it includes records appended since the last next().
  std::uint64_t currentBacklogBytes() const;

  // Records lost because the spool deleted their segment before they were
  // shipped, since this reader was made.
  std::uint64_t droppedRecords() const { return dropped_records_; }

  // Records read from the spool since this reader was made. A record read
  // again, because its batch failed or its segment was read again, counts
  // once, unless its segment was found truncated or replaced.
  std::uint64_t recordsRead() const { return records_read_; }

  // Times the current segment was found truncated in place or replaced,
  // and read again from its start.
  std::uint64_t truncations() const { return truncations_; }

  // Failed reads of a segment; the reader tries again on the next call.
  std::uint64_t readErrors() const { return read_errors_; }

  std::filesystem::path offsetPath() const { return dir_ / "shipped.offset"; }
  std::filesystem::path fingerprintPath() const { return dir_ / "shipped.fingerprint"; }

 private:
  void loadFingerprint();
  bool checkFingerprint();
  void restartSegment(const char* mismatch);
  const char* mismatchOf(int fd) const;
  SpoolFingerprint takeFingerprint(SpoolPosition end, const std::string& tail) const;
  void writeFingerprintFile();
  std::map<std::uint64_t, std::uint64_t> readSegmentSizes() const;
  void listSegments();
  void countAhead();
  void normalizePosition();
  void skipTo(std::uint64_t next_segment, bool current_lost, std::uint64_t lost, bool exact);
  bool openSegment(std::uint64_t number);
  void closeSegment();
  bool writeOffsetFile();
  std::uint64_t backlogOf(const std::map<std::uint64_t, std::uint64_t>& sizes) const;
  void updateBacklog();

  std::filesystem::path dir_;
  bool count_ahead_;
  SpoolPosition position_;
  std::map<std::uint64_t, std::uint64_t> sizes_;        // segment number -> bytes, from the listing
  std::map<std::uint64_t, std::uint64_t> previous_sizes_;  // the listing before
  std::map<std::uint64_t, std::uint64_t> line_counts_;  // closed segments ahead -> lines
  int fd_ = -1;
  std::uint64_t fd_segment_ = 0;
  std::uint64_t backlog_bytes_ = 0;
  std::uint64_t dropped_records_ = 0;
  SpoolFingerprint fingerprint_;  // of position_, when known
  SpoolPosition read_mark_;       // end of the furthest line counted in records_read_
  std::uint64_t records_read_ = 0;
  std::uint64_t truncations_ = 0;
  std::uint64_t read_errors_ = 0;
  std::string chunk_;
};

}  // namespace webtrap::shipper
