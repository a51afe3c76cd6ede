#include "shipper/spool_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <system_error>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/encoding.h"

namespace webtrap::shipper {
namespace {

constexpr std::size_t kReadStep = 64 * 1024;
// Bytes at the start of a segment and before an offset that a fingerprint
// covers. They end with the last record shipped, so a segment rewritten with
// other records fails the check unless both records end in the same bytes.
constexpr std::uint64_t kFingerprintBytes = 512;

// Reads up to `length` bytes at `offset`, retrying short reads. Returns the
// bytes read, or -1 with errno set.
ssize_t readAt(int fd, char* buffer, std::size_t length, std::uint64_t offset) {
  std::size_t done = 0;
  while (done < length) {
    ssize_t got = ::pread(fd, buffer + done, length - done, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got < 0) {
      return -1;
    }
    if (got == 0) {
      break;
    }
    done += static_cast<std::size_t>(got);
  }
  return static_cast<ssize_t>(done);
}

// Counts the lines from `offset` to the end of the file, a last line without
// a newline included.
std::uint64_t countLines(int fd, std::uint64_t offset) {
  std::uint64_t lines = 0;
  char buffer[kReadStep];
  char last = '\n';
  while (true) {
    ssize_t got = readAt(fd, buffer, sizeof buffer, offset);
    if (got <= 0) {
      break;
    }
    lines += static_cast<std::uint64_t>(std::count(buffer, buffer + got, '\n'));
    last = buffer[got - 1];
    offset += static_cast<std::uint64_t>(got);
  }
  return last == '\n' ? lines : lines + 1;
}

std::uint64_t fileSize(int fd) {
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    return 0;
  }
  return static_cast<std::uint64_t>(info.st_size);
}

std::uint64_t fileInode(int fd) {
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    return 0;
  }
  return static_cast<std::uint64_t>(info.st_ino);
}

// Returns the SHA-256 of bytes [offset, offset + length), or an empty string
// when the file is shorter.
std::string digestAt(int fd, std::uint64_t offset, std::uint64_t length) {
  std::string bytes(length, '\0');
  ssize_t got = readAt(fd, bytes.data(), length, offset);
  if (got < 0 || static_cast<std::uint64_t>(got) != length) {
    return {};
  }
  return sha256Hex(bytes);
}

bool parseNumber(std::string_view text, std::uint64_t& value) {
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return error == std::errc() && end == text.data() + text.size() && !text.empty();
}

bool isSha256Hex(std::string_view text) {
  return text.size() == 64 && text.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

}  // namespace


SpoolReader::SpoolReader(std::filesystem::path dir, bool count_ahead)
    : dir_(std::move(dir)), count_ahead_(count_ahead) {}

SpoolReader::~SpoolReader() {
  closeSegment();
}

void SpoolReader::loadOffset() {
  position_ = SpoolPosition{};
  int fd = ::open(offsetPath().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT) {
      spdlog::error("shipper: cannot read {}: {}; shipping from the oldest segment",
                    offsetPath().string(), std::strerror(errno));
    }
    return;
  }
  char text[256];
  ssize_t got = readAt(fd, text, sizeof text, 0);
  ::close(fd);
  std::string_view content(text, got > 0 ? static_cast<std::size_t>(got) : 0);
  std::optional<probe::ShippedPosition> shipped = probe::parseShippedPosition(content);
  if (!shipped) {
    spdlog::warn("shipper: ignoring malformed {} content='{:.64}'; expected '<segment file> "
                 "<offset>'; shipping from the oldest segment",
                 offsetPath().string(), content);
    return;
  }
  position_ = SpoolPosition{shipped->segment, shipped->offset};
  read_mark_ = position_;
  spdlog::info("shipper: resuming at segment={} offset={}", segmentFileName(shipped->segment),
               shipped->offset);
  loadFingerprint();
}

void SpoolReader::loadFingerprint() {
  fingerprint_ = SpoolFingerprint{};
  if (position_.offset == 0) {
    return;
  }
  int fd = ::open(fingerprintPath().c_str(), O_RDONLY | O_CLOEXEC);
  char text[512];
  ssize_t got = fd >= 0 ? readAt(fd, text, sizeof text, 0) : -1;
  if (fd >= 0) {
    ::close(fd);
  }
  std::string_view content(text, got > 0 ? static_cast<std::size_t>(got) : 0);
  while (!content.empty() && (content.back() == '\n' || content.back() == '\r')) {
    content.remove_suffix(1);
  }
  std::vector<std::string_view> fields;
  while (!content.empty()) {
    std::size_t space = content.find(' ');
    fields.push_back(content.substr(0, space));
    content.remove_prefix(space == std::string_view::npos ? content.size() : space + 1);
  }

  SpoolFingerprint loaded;
  bool valid = fields.size() == 7;
  if (valid) {
    loaded.position.segment = parseSegmentFileName(fields[0]);
    valid = loaded.position.segment != 0 && parseNumber(fields[1], loaded.position.offset) &&
            parseNumber(fields[2], loaded.inode) && parseNumber(fields[3], loaded.head_length) &&
            isSha256Hex(fields[4]) && parseNumber(fields[5], loaded.tail_length) &&
            isSha256Hex(fields[6]) && loaded.head_length <= loaded.position.offset &&
            loaded.tail_length <= loaded.position.offset &&
            loaded.head_length <= kFingerprintBytes && loaded.tail_length <= kFingerprintBytes;
  }
  if (!valid || !loaded.covers(position_)) {
    // NOTE: without a fingerprint, a segment truncated in place is noticed
    // only while it is shorter than the offset.
    spdlog::warn("shipper: {} is missing, malformed or for another offset; a segment truncated "
                 "in place and refilled past offset={} before this start goes unnoticed",
                 fingerprintPath().string(), position_.offset);
    return;
  }
  loaded.head_sha256 = fields[4];
  loaded.tail_sha256 = fields[6];
  fingerprint_ = std::move(loaded);
}

// Returns why the open segment `fd` no longer matches the fingerprint of the
// committed position, or nullptr when it does.
const char* SpoolReader::mismatchOf(int fd) const {
  if (fingerprint_.inode != 0 && fileInode(fd) != fingerprint_.inode) {
    return "replaced by another file";
  }
  if (digestAt(fd, 0, fingerprint_.head_length) != fingerprint_.head_sha256 ||
      digestAt(fd, fingerprint_.position.offset - fingerprint_.tail_length,
               fingerprint_.tail_length) != fingerprint_.tail_sha256) {
    return "truncated or rewritten in place";
  }
  return nullptr;
}

// Reads the current segment again from its start when it is no longer the
// file, or no longer has the bytes, that the committed offset was taken from.
// Returns true when it moved the position back to the segment's start.
bool SpoolReader::checkFingerprint() {
  if (position_.offset == 0 || !fingerprint_.covers(position_) ||
      !sizes_.contains(position_.segment)) {
    return false;
  }
  int fd = ::open((dir_ / segmentFileName(position_.segment)).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return false;  // deleted since the listing: normalizePosition() counts it next time
  }
  const char* mismatch = mismatchOf(fd);
  ::close(fd);
  if (mismatch == nullptr) {
    return false;
  }
  restartSegment(mismatch);
  return true;
}

// Moves the position back to the start of its segment, which no longer
// contains the bytes that the committed offset was taken from.
void SpoolReader::restartSegment(const char* mismatch) {
  // Records appended after the truncation are read from the start. Those
  // that were past the offset when the segment was truncated are gone.
  spdlog::warn("shipper: segment={} was {} since offset={} was committed; shipping it again "
               "from the start, and records it held past that offset are lost",
               segmentFileName(position_.segment), mismatch, position_.offset);
  ++truncations_;
  closeSegment();
  position_.offset = 0;
  fingerprint_ = SpoolFingerprint{};
  read_mark_ = position_;
}

// Fingerprints `end` in the open segment. `tail` contains the last bytes
// before `end` as they were read, so a change after that read fails the next
// check. The head is read from the file unless `tail` covers it.
SpoolFingerprint SpoolReader::takeFingerprint(SpoolPosition end, const std::string& tail) const {
  SpoolFingerprint fingerprint;
  fingerprint.position = end;
  fingerprint.inode = fileInode(fd_);
  fingerprint.tail_length = tail.size();
  fingerprint.tail_sha256 = sha256Hex(tail);
  fingerprint.head_length = std::min(kFingerprintBytes, end.offset);
  if (tail.size() >= end.offset) {
    fingerprint.head_sha256 = sha256Hex(std::string_view(tail).substr(0, fingerprint.head_length));
  } else {
    fingerprint.head_sha256 = digestAt(fd_, 0, fingerprint.head_length);
  }
  if (fingerprint.head_sha256.empty()) {
    return SpoolFingerprint{};
  }
  return fingerprint;
}

std::map<std::uint64_t, std::uint64_t> SpoolReader::readSegmentSizes() const {
  std::map<std::uint64_t, std::uint64_t> sizes;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, error)) {
    std::uint64_t number = parseSegmentFileName(entry.path().filename().native());
    if (number == 0) {
      continue;
    }
    std::error_code size_error;
    std::uint64_t size = entry.file_size(size_error);
    if (!size_error) {
      sizes[number] = size;
    }
  }
  return sizes;
}

void SpoolReader::listSegments() {
  previous_sizes_ = std::move(sizes_);
  sizes_ = readSegmentSizes();
}

// Counts the lines of the closed segments ahead of the position once, so
// that their loss can be counted exactly if the spool deletes them.
void SpoolReader::countAhead() {
  if (!count_ahead_ || sizes_.empty()) {
    return;
  }
  std::uint64_t newest = sizes_.rbegin()->first;
  for (const auto& [number, size] : sizes_) {
    if (number <= position_.segment || number == newest || line_counts_.contains(number)) {
      continue;
    }
    int fd = ::open((dir_ / segmentFileName(number)).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      continue;
    }
    line_counts_[number] = countLines(fd, 0);
    ::close(fd);
  }
}

// Moves the committed position past what no longer needs reading: the end
// of a closed segment, and segments that the spool deleted.
void SpoolReader::normalizePosition() {
  while (!sizes_.empty()) {
    auto current = sizes_.find(position_.segment);
    if (current == sizes_.end()) {
      auto following = sizes_.upper_bound(position_.segment);
      if (following == sizes_.end()) {
        // The spool deletes the oldest segments first, so lower segments
        // without this one mean that it lost every segment and restarted
        // its numbering from 1 (a probe restart with an empty spool). The
        // lower segments are then new records.
        if (position_.segment != 0 && sizes_.begin()->first < position_.segment) {
          spdlog::warn("shipper: segment={} is gone and only lower segments exist; the spool "
                       "numbers from 1 again, shipping from segment={}",
                       segmentFileName(position_.segment),
                       segmentFileName(sizes_.begin()->first));
          closeSegment();
          position_ = SpoolPosition{sizes_.begin()->first, 0};
          read_mark_ = position_;
          line_counts_.clear();
          continue;
        }
        return;
      }
      if (position_.segment == 0) {
        position_ = SpoolPosition{following->first, 0};
        continue;
      }
      // The current segment is gone: the spool's disk cap deleted it.
      std::uint64_t lost = 0;
      bool exact = true;
      auto previous = previous_sizes_.find(position_.segment);
      if (fd_ >= 0 && fd_segment_ == position_.segment) {
        lost += countLines(fd_, position_.offset);
      } else if (previous != previous_sizes_.end() && previous->second <= position_.offset) {
        // It was shipped to its end before the spool deleted it.
      } else if (position_.offset == 0 && line_counts_.contains(position_.segment)) {
        lost += line_counts_[position_.segment];
      } else {
        exact = false;
      }
      skipTo(following->first, true, lost, exact);
      continue;
    }

    std::uint64_t size = current->second;
    auto following = std::next(current);
    bool closed = following != sizes_.end();
    if (position_.offset > size) {
      // The spool never shrinks a segment below a committed line, so this
      // offset does not belong to this file. Shipping it again from the
      // start only causes duplicates, which the collector removes.
      // NOTE: if the spool restarted its numbering and already reached this
      // number again, the lower new segments are skipped as shipped.
      spdlog::warn("shipper: offset {} is past the end of segment={} (size {}); shipping that "
                   "segment again from the start",
                   position_.offset, segmentFileName(position_.segment), size);
      ++truncations_;
      closeSegment();
      position_.offset = 0;
      read_mark_ = position_;
      return;
    }
    if (!closed || position_.offset < size) {
      return;
    }
    if (following->first == position_.segment + 1) {
      position_ = SpoolPosition{following->first, 0};
      continue;
    }
    skipTo(following->first, false, 0, true);
  }
}

// Moves to the start of `next_segment`. `lost` records of the current
// segment were lost (`exact`: that count is known) when `current_lost`; the
// segments numbered in between were deleted unread.
void SpoolReader::skipTo(std::uint64_t next_segment, bool current_lost, std::uint64_t lost,
                         bool exact) {
  std::uint64_t from = current_lost ? position_.segment : position_.segment + 1;
  for (std::uint64_t number = position_.segment + 1; number < next_segment; ++number) {
    auto counted = line_counts_.find(number);
    if (counted != line_counts_.end()) {
      lost += counted->second;
    } else {
      exact = false;
    }
  }
  if (lost > 0 || !exact) {
    if (exact) {
      spdlog::warn("shipper: the spool deleted unshipped segments at its disk cap from={} "
                   "up_to={} records_lost={}",
                   segmentFileName(from), segmentFileName(next_segment - 1), lost);
    } else {
      spdlog::warn("shipper: the spool deleted unshipped segments at its disk cap from={} "
                   "up_to={} records_lost=at least {}; the segments never read are counted "
                   "in the probe's webtrap_spool_records_dropped_total",
                   segmentFileName(from), segmentFileName(next_segment - 1), lost);
    }
  }
  dropped_records_ += lost;
  if (fd_segment_ < next_segment) {
    closeSegment();
  }
  position_ = SpoolPosition{next_segment, 0};
  line_counts_.erase(line_counts_.begin(), line_counts_.lower_bound(next_segment));
}

bool SpoolReader::openSegment(std::uint64_t number) {
  if (fd_ >= 0 && fd_segment_ == number) {
    return true;
  }
  closeSegment();
  int fd = ::open((dir_ / segmentFileName(number)).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  fd_ = fd;
  fd_segment_ = number;
  return true;
}

void SpoolReader::closeSegment() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
  fd_ = -1;
  fd_segment_ = 0;
}

std::uint64_t SpoolReader::backlogOf(const std::map<std::uint64_t, std::uint64_t>& sizes) const {
  std::uint64_t backlog = 0;
  for (const auto& [number, size] : sizes) {
    if (number > position_.segment) {
      backlog += size;
    } else if (number == position_.segment) {
      backlog += size - std::min(size, position_.offset);
    }
  }
  return backlog;
}

void SpoolReader::updateBacklog() {
  backlog_bytes_ = backlogOf(sizes_);
}

std::uint64_t SpoolReader::currentBacklogBytes() const {
  return backlogOf(readSegmentSizes());
}

SpoolBatch SpoolReader::next(std::uint64_t max_records, std::uint64_t max_bytes) {
  max_records = std::max<std::uint64_t>(max_records, 1);
  max_bytes = std::max<std::uint64_t>(max_bytes, 1);
  listSegments();
  checkFingerprint();
  normalizePosition();
  countAhead();
  updateBacklog();

  SpoolBatch batch;
  batch.end = position_;
  SpoolPosition cursor = position_;
  // The last bytes consumed in the cursor's segment, at most
  // kFingerprintBytes, for the fingerprint of batch.end.
  std::string recent;
  auto consume = [&recent](const char* bytes, std::size_t length) {
    if (length >= kFingerprintBytes) {
      recent.assign(bytes + length - kFingerprintBytes, kFingerprintBytes);
      return;
    }
    recent.append(bytes, length);
    if (recent.size() > kFingerprintBytes) {
      recent.erase(0, recent.size() - kFingerprintBytes);
    }
  };
  auto setEnd = [&] {
    batch.end = cursor;
    batch.fingerprint = takeFingerprint(cursor, recent);
  };
  // Counts a line once, unless it starts before the furthest line counted.
  std::uint64_t fresh = 0;
  auto countRead = [&](std::uint64_t line_offset) {
    if (SpoolPosition{cursor.segment, line_offset} >= read_mark_) {
      ++fresh;
    }
  };
  while (batch.records < max_records && batch.body.size() < max_bytes) {
    auto current = sizes_.find(cursor.segment);
    if (current == sizes_.end() || !openSegment(cursor.segment)) {
      break;
    }
    // Whether the segment is closed is decided before reading it, so that a
    // line still being written is never taken for a torn one.
    auto following = std::next(current);
    bool closed = following != sizes_.end();
    std::uint64_t size = fileSize(fd_);

    if (cursor.offset >= size) {
      // A gap in the numbers means deleted segments, which
      // normalizePosition() counts on the next call.
      if (!closed || following->first != cursor.segment + 1) {
        break;
      }
      cursor = SpoolPosition{following->first, 0};
      recent.clear();
      continue;
    }

    std::uint64_t budget = max_bytes - batch.body.size();
    std::uint64_t want = std::min(size - cursor.offset, budget);
    // The first read at the committed offset also reads the fingerprinted
    // bytes before it. If they changed, the segment was truncated and
    // refilled after the check above, and the bytes at the offset are new.
    // NOTE: no test makes the rewrite land between the check and this read.
    std::uint64_t overlap = 0;
    if (cursor == position_ && fingerprint_.covers(position_) &&
        fingerprint_.tail_length <= position_.offset) {
      overlap = fingerprint_.tail_length;
    }
    chunk_.resize(overlap + want);
    ssize_t got_signed = readAt(fd_, chunk_.data(), overlap + want, cursor.offset - overlap);
    if (overlap > 0) {
      if (got_signed < static_cast<ssize_t>(overlap) ||
          sha256Hex(std::string_view(chunk_.data(), overlap)) != fingerprint_.tail_sha256) {
        restartSegment("truncated or rewritten in place");
        SpoolBatch restarted;
        restarted.end = position_;
        return restarted;
      }
      chunk_.erase(0, overlap);
      got_signed -= static_cast<ssize_t>(overlap);
    }
    if (got_signed <= 0) {
      if (got_signed < 0) {
        spdlog::error("shipper: reading segment={} failed: {}", segmentFileName(cursor.segment),
                      std::strerror(errno));
        ++read_errors_;
      }
      break;
    }
    std::size_t got = static_cast<std::size_t>(got_signed);

    std::size_t consumed = 0;
    while (consumed < got && batch.records < max_records) {
      const char* start = chunk_.data() + consumed;
      const void* newline = std::memchr(start, '\n', got - consumed);
      if (newline == nullptr) {
        break;
      }
      std::size_t length = static_cast<const char*>(newline) - start;
      if (length > 0) {
        batch.body.append(start, length + 1);
        ++batch.records;
        countRead(cursor.offset + consumed);
      }
      consumed += length + 1;
    }
    consume(chunk_.data(), consumed);
    cursor.offset += consumed;
    if (consumed > 0) {
      setEnd();
    }
    std::size_t tail = got - consumed;
    if (batch.records >= max_records || tail == 0) {
      continue;
    }

    bool at_end = cursor.offset + tail >= size;
    if (at_end) {
      if (!closed) {
        break;  // the newest segment: the rest of this line is still coming
      }
      // A closed segment that ends without a newline, such as a write torn
      // by a crash. The line is shipped as it is; the collector stores what
      // it cannot decode as a dead letter.
      spdlog::warn("shipper: segment={} ends without a newline; shipping its last {} bytes as "
                   "one line",
                   segmentFileName(cursor.segment), tail);
      batch.body.append(chunk_.data() + consumed, tail);
      batch.body.push_back('\n');
      ++batch.records;
      countRead(cursor.offset);
      consume(chunk_.data() + consumed, tail);
      cursor.offset = size;
      setEnd();
      continue;
    }
    if (batch.records > 0) {
      break;  // the batch is full
    }

    // One line longer than max_bytes: read on until its newline and return
    // it alone.
    std::string line(chunk_.data() + consumed, tail);
    std::uint64_t read_offset = cursor.offset + tail;
    bool complete = false;
    while (read_offset < size) {
      std::size_t step = static_cast<std::size_t>(std::min<std::uint64_t>(kReadStep,
                                                                           size - read_offset));
      std::size_t old_length = line.size();
      line.resize(old_length + step);
      ssize_t more = readAt(fd_, line.data() + old_length, step, read_offset);
      if (more <= 0) {
        line.resize(old_length);
        break;
      }
      line.resize(old_length + static_cast<std::size_t>(more));
      const void* newline =
          std::memchr(line.data() + old_length, '\n', static_cast<std::size_t>(more));
      if (newline != nullptr) {
        line.resize(static_cast<const char*>(newline) - line.data());
        complete = true;
        break;
      }
      read_offset += static_cast<std::uint64_t>(more);
    }
    if (!complete && !(closed && cursor.offset + line.size() >= size)) {
      break;  // still being written
    }
    countRead(cursor.offset);
    cursor.offset += line.size() + (complete ? 1 : 0);
    consume(line.data(), line.size());
    if (complete) {
      consume("\n", 1);
    }
    line.push_back('\n');
    batch.body += line;
    ++batch.records;
    setEnd();
    break;
  }
  records_read_ += fresh;
  read_mark_ = std::max(read_mark_, batch.end);
  return batch;
}

bool SpoolReader::commit(const SpoolBatch& batch) {
  position_ = batch.end;
  if (batch.fingerprint.covers(position_)) {
    fingerprint_ = batch.fingerprint;
  } else if (!fingerprint_.covers(position_)) {
    fingerprint_ = SpoolFingerprint{};
  }
  updateBacklog();
  if (position_.segment == 0) {
    return true;
  }
  writeFingerprintFile();
  return writeOffsetFile();
}

// Written without fsync: a fingerprint lost in a crash only makes the next
// start fall back to the size check, and the offset file's folder fsync
// follows right after.
void SpoolReader::writeFingerprintFile() {
  if (!fingerprint_.covers(position_) || position_.offset == 0) {
    ::unlink(fingerprintPath().c_str());
    return;
  }
  std::string text = fmt::format("{} {} {} {} {} {} {}\n", segmentFileName(position_.segment),
                                 position_.offset, fingerprint_.inode, fingerprint_.head_length,
                                 fingerprint_.head_sha256, fingerprint_.tail_length,
                                 fingerprint_.tail_sha256);
  std::filesystem::path temporary = dir_ / "shipped.fingerprint.tmp";
  int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool written = fd >= 0 && ::write(fd, text.data(), text.size()) ==
                                static_cast<ssize_t>(text.size());
  int error = errno;
  if (fd >= 0) {
    ::close(fd);
  }
  if (!written || ::rename(temporary.c_str(), fingerprintPath().c_str()) != 0) {
    error = written ? errno : error;
    spdlog::error("shipper: writing {} failed: {}; after a restart, a segment truncated in "
                  "place is noticed only while it is shorter than the offset",
                  fingerprintPath().string(), std::strerror(error));
  }
}

bool SpoolReader::writeOffsetFile() {
  std::string text = fmt::format("{} {}\n", segmentFileName(position_.segment), position_.offset);
  std::filesystem::path temporary = dir_ / "shipped.offset.tmp";
  auto fail = [&](const char* step) {
    spdlog::error("shipper: {} of {} failed: {}; the offset is kept in memory and written again "
                  "after the next batch",
                  step, temporary.string(), std::strerror(errno));
    return false;
  };

  // World-readable: the spool reads this file, possibly as another user
  // (such as a probe running as nobody next to `webtrap ship` run as root).
  int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return fail("open");
  }
  bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  if (!written || ::fsync(fd) != 0) {
    int error = errno;
    ::close(fd);
    errno = error;
    return fail(written ? "fsync" : "write");
  }
  ::close(fd);
  if (::rename(temporary.c_str(), offsetPath().c_str()) != 0) {
    return fail("rename");
  }
  // The rename is durable only once the folder is synced.
  int dir_fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
  return true;
}

}  // namespace webtrap::shipper
