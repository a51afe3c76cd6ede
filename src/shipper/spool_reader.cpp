#include "shipper/spool_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace webtrap::shipper {
namespace {

constexpr std::size_t kReadStep = 64 * 1024;

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
  while (!content.empty() && (content.back() == '\n' || content.back() == '\r')) {
    content.remove_suffix(1);
  }

  std::size_t space = content.find(' ');
  std::uint64_t segment = 0;
  std::uint64_t offset = 0;
  if (space != std::string_view::npos) {
    segment = parseSegmentFileName(content.substr(0, space));
    std::string_view digits = content.substr(space + 1);
    auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), offset);
    if (error != std::errc() || end != digits.data() + digits.size()) {
      segment = 0;
    }
  }
  if (segment == 0) {
    spdlog::warn("shipper: ignoring malformed {} content='{:.64}'; expected '<segment file> "
                 "<offset>'; shipping from the oldest segment",
                 offsetPath().string(), content);
    return;
  }
  position_ = SpoolPosition{segment, offset};
  spdlog::info("shipper: resuming at segment={} offset={}", segmentFileName(segment), offset);
}

void SpoolReader::listSegments() {
  previous_sizes_ = std::move(sizes_);
  sizes_.clear();
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, error)) {
    std::uint64_t number = parseSegmentFileName(entry.path().filename().native());
    if (number == 0) {
      continue;
    }
    std::error_code size_error;
    std::uint64_t size = entry.file_size(size_error);
    if (!size_error) {
      sizes_[number] = size;
    }
  }
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
      position_.offset = 0;
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

void SpoolReader::updateBacklog() {
  backlog_bytes_ = 0;
  for (const auto& [number, size] : sizes_) {
    if (number > position_.segment) {
      backlog_bytes_ += size;
    } else if (number == position_.segment) {
      backlog_bytes_ += size - std::min(size, position_.offset);
    }
  }
}

SpoolBatch SpoolReader::next(std::uint64_t max_records, std::uint64_t max_bytes) {
  max_records = std::max<std::uint64_t>(max_records, 1);
  max_bytes = std::max<std::uint64_t>(max_bytes, 1);
  listSegments();
  normalizePosition();
  countAhead();
  updateBacklog();

  SpoolBatch batch;
  batch.end = position_;
  SpoolPosition cursor = position_;
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
      continue;
    }

    std::uint64_t budget = max_bytes - batch.body.size();
    std::uint64_t want = std::min(size - cursor.offset, budget);
    chunk_.resize(want);
    ssize_t got_signed = readAt(fd_, chunk_.data(), want, cursor.offset);
    if (got_signed <= 0) {
      if (got_signed < 0) {
        spdlog::error("shipper: reading segment={} failed: {}", segmentFileName(cursor.segment),
                      std::strerror(errno));
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
      }
      consumed += length + 1;
    }
    cursor.offset += consumed;
    if (consumed > 0) {
      batch.end = cursor;
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
      cursor.offset = size;
      batch.end = cursor;
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
    cursor.offset += line.size() + (complete ? 1 : 0);
    line.push_back('\n');
    batch.body += line;
    ++batch.records;
    batch.end = cursor;
    break;
  }
  return batch;
}

bool SpoolReader::commit(const SpoolBatch& batch) {
  position_ = batch.end;
  updateBacklog();
  if (position_.segment == 0) {
    return true;
  }
  return writeOffsetFile();
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
