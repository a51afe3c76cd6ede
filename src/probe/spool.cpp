#include "probe/spool.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/file_io.h"

namespace webtrap::probe {

namespace {

constexpr std::string_view kSegmentPrefix = "segment-";
constexpr std::string_view kSegmentSuffix = ".ndjson";
constexpr std::string_view kShippedOffsetFile = "shipped.offset";
constexpr int kSegmentDigits = 12;

// Creating a segment skips names that already exist. This bounds the retries
// when something else keeps creating files with the spool's names.
constexpr int kMaxCreateAttempts = 1000;


// Counts the lines from `offset` to the end of a file, or returns 0 when it
// cannot be read.
std::uint64_t countLines(const std::filesystem::path& path, std::uint64_t offset) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return 0;
  }
  std::uint64_t lines = 0;
  char buffer[64 * 1024];
  off_t position = static_cast<off_t>(offset);
  while (true) {
    ssize_t got = ::pread(fd, buffer, sizeof buffer, position);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got <= 0) {
      break;
    }
    lines += static_cast<std::uint64_t>(std::count(buffer, buffer + got, '\n'));
    position += got;
  }
  ::close(fd);
  return lines;
}

// Owns a file descriptor. The open segment is shared with the fsync thread,
// so rotation never closes a descriptor that thread is syncing.
// Returns 0 when files can be created in `dir`, or the errno of the failure.
// O_TMPFILE tests this without a visible name; a named file is the fallback
// on file systems without it.
int checkWritable(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  if (fd >= 0) {
    ::close(fd);
    return 0;
  }
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
    return errno;
  }
  std::filesystem::path probe = dir / fmt::format(".write-test-{}", ::getpid());
  fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return errno;
  }
  ::close(fd);
  ::unlink(probe.c_str());
  return 0;
}

struct Segment {
  std::uint64_t number = 0;
  std::uint64_t bytes = 0;
  std::int64_t records = -1;  // -1 when found on disk at start, so unknown
};

struct ShippedOffset {
  bool valid = false;
  std::uint64_t segment = 0;
  std::uint64_t offset = 0;

  // Identity of the file last read, to re-read it only after it changed.
  bool exists = false;
  ino_t inode = 0;
  off_t size = 0;
  timespec modified{};
};

}  // namespace

std::string segmentFileName(std::uint64_t number) {
  return fmt::format("{}{:0{}}{}", kSegmentPrefix, number, kSegmentDigits, kSegmentSuffix);
}

std::uint64_t parseSegmentFileName(std::string_view name) {
  if (name.size() < kSegmentPrefix.size() + kSegmentDigits + kSegmentSuffix.size() ||
      !name.starts_with(kSegmentPrefix) || !name.ends_with(kSegmentSuffix)) {
    return 0;
  }
  std::string_view digits = name.substr(
      kSegmentPrefix.size(), name.size() - kSegmentPrefix.size() - kSegmentSuffix.size());
  std::uint64_t number = 0;
  auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), number);
  if (error != std::errc() || end != digits.data() + digits.size()) {
    return 0;
  }
  return number;
}

std::optional<ShippedPosition> parseShippedPosition(std::string_view content) {
  while (!content.empty() && (content.back() == '\n' || content.back() == '\r')) {
    content.remove_suffix(1);
  }
  std::size_t space = content.find(' ');
  if (space == std::string_view::npos) {
    return std::nullopt;
  }
  ShippedPosition position;
  position.segment = parseSegmentFileName(content.substr(0, space));
  std::string_view digits = content.substr(space + 1);
  auto [end, error] =
      std::from_chars(digits.data(), digits.data() + digits.size(), position.offset);
  if (position.segment == 0 || error != std::errc() || end != digits.data() + digits.size()) {
    return std::nullopt;
  }
  return position;
}

struct Spool::Impl {
  Impl(const SpoolConfig& spool_config, MetricsRegistry& metrics);

  AppendResult append(std::string_view record);
  void flush();
  void stop();

  bool openSegment();
  void closeSegment();
  bool makeRoom(std::uint64_t size);
  bool deleteOldest(bool count_unshipped);
  bool isShipped(const Segment& segment) const;
  std::uint64_t unshippedRecords(const Segment& segment) const;
  void refreshShippedOffset();
  std::uint64_t unshippedBytes();
  void forgetMissingSegments();
  bool writeRecord(std::string_view record);
  void syncFile(const std::shared_ptr<FileHandle>& file);
  void runSyncThread();

  AppendResult dropFull();
  AppendResult dropWriteError(int error, const char* operation);
  void noteSuccess();

  std::filesystem::path path(std::uint64_t number) const {
    return config.dir / segmentFileName(number);
  }

  SpoolConfig config;

  Counter& records_written;
  Counter& bytes_written;
  Counter& dropped_full;
  Counter& dropped_write_error;
  Counter& segments_deleted;
  Counter& write_errors;
  Counter& fsyncs;
  Gauge& spool_bytes;
  Gauge& full_gauge;

  std::mutex mutex;
  std::deque<Segment> segments;  // oldest first; the open segment is last
  std::shared_ptr<FileHandle> file;
  std::uint64_t next_number = 1;
  std::uint64_t total_bytes = 0;
  ShippedOffset shipped;

  bool full = false;
  std::uint64_t dropped_while_full = 0;
  bool failing = false;
  std::uint64_t failed_appends = 0;

  bool dirty = false;
  bool stopping = false;
  std::condition_variable wake_sync;
  std::thread sync_thread;
};

Spool::Impl::Impl(const SpoolConfig& spool_config, MetricsRegistry& metrics)
    : config(spool_config),
      records_written(
          metrics.counter("webtrap_spool_records_written_total", "Records appended to the spool.")),
      bytes_written(metrics.counter("webtrap_spool_bytes_written_total",
                                    "Bytes appended to the spool, newlines included.")),
      dropped_full(metrics.counter("webtrap_spool_records_dropped_total",
                                   "Records lost before shipping, by reason.",
                                   "reason=\"disk_full\"")),
      dropped_write_error(metrics.counter("webtrap_spool_records_dropped_total",
                                          "Records lost before shipping, by reason.",
                                          "reason=\"write_error\"")),
      segments_deleted(metrics.counter("webtrap_spool_segments_deleted_total",
                                       "Segments deleted to stay under the disk cap.")),
      write_errors(metrics.counter("webtrap_spool_write_errors_total",
                                   "Failed writes, fsyncs or segment creations.")),
      fsyncs(metrics.counter("webtrap_spool_fsyncs_total", "fdatasync calls on segments.")),
      spool_bytes(metrics.gauge("webtrap_spool_bytes", "Bytes in all spool segments.")),
      full_gauge(
          metrics.gauge("webtrap_spool_full",
                        "1 from a record dropped at the disk cap until the next is written.")) {
  if (config.segment_bytes == 0 || config.max_bytes == 0) {
    throw ConfigError(
        fmt::format("spool.segment_bytes ({}) and spool.max_bytes ({}) must be greater than 0",
                    config.segment_bytes, config.max_bytes));
  }
  if (config.fsync == FsyncPolicy::kInterval && config.fsync_interval_ms == 0) {
    throw ConfigError("spool.fsync_interval_ms is 0: set a positive interval or use fsync: always");
  }

  std::error_code error;
  std::filesystem::create_directories(config.dir, error);
  if (error) {
    throw ConfigError(fmt::format("spool.dir '{}' cannot be created: {}; choose a writable folder",
                                  config.dir.string(), error.message()));
  }

  // Resume after the highest segment number on disk.
  for (const auto& entry : std::filesystem::directory_iterator(config.dir, error)) {
    std::uint64_t number = parseSegmentFileName(entry.path().filename().native());
    if (number == 0 || !entry.is_regular_file(error)) {
      continue;
    }
    Segment segment;
    segment.number = number;
    segment.bytes = entry.file_size(error);
    segments.push_back(segment);
  }
  if (error) {
    throw ConfigError(
        fmt::format("spool.dir '{}' cannot be listed: {}", config.dir.string(), error.message()));
  }
  std::sort(segments.begin(), segments.end(),
            [](const Segment& a, const Segment& b) { return a.number < b.number; });
  for (const Segment& segment : segments) {
    total_bytes += segment.bytes;
  }
  if (!segments.empty()) {
    next_number = segments.back().number + 1;
  }

  if (int error = checkWritable(config.dir); error != 0) {
    throw ConfigError(fmt::format("spool.dir '{}' is not writable: {}; choose a writable folder",
                                  config.dir.string(), std::strerror(error)));
  }
  spool_bytes.set(static_cast<std::int64_t>(total_bytes));
  spdlog::info("spool: opened dir={} segments={} bytes={} next_segment={}", config.dir.string(),
               segments.size(), total_bytes, segmentFileName(next_number));

  if (config.fsync == FsyncPolicy::kInterval) {
    sync_thread = std::thread([this] { runSyncThread(); });
  }
}

// Creates the next segment and makes it the open one. On failure `file` is
// null, errno is set, and appends are dropped until a later call succeeds.
bool Spool::Impl::openSegment() {
  for (int attempt = 0; attempt < kMaxCreateAttempts; ++attempt) {
    std::uint64_t number = next_number++;
    int fd = ::open(path(number).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0 && errno == EEXIST) {
      continue;
    }
    if (fd < 0) {
      return false;
    }
    file = std::make_shared<FileHandle>(fd);
    Segment segment;
    segment.number = number;
    segment.records = 0;
    segments.push_back(segment);

    // A new directory entry is only durable once the folder is synced.
    if (config.fsync != FsyncPolicy::kNever) {
      int dir_fd = ::open(config.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dir_fd >= 0) {
        ::fsync(dir_fd);
        ::close(dir_fd);
      }
    }
    return true;
  }
  errno = EEXIST;
  return false;
}

// Closes the open segment, synced unless fsync is kNever. The next append
// creates the next segment.
void Spool::Impl::closeSegment() {
  if (file && config.fsync != FsyncPolicy::kNever) {
    syncFile(file);
  }
  dirty = false;
  file.reset();
}

bool Spool::Impl::isShipped(const Segment& segment) const {
  if (!shipped.valid) {
    return false;
  }
  return segment.number < shipped.segment ||
         (segment.number == shipped.segment && shipped.offset >= segment.bytes);
}

std::uint64_t Spool::Impl::unshippedRecords(const Segment& segment) const {
  if (shipped.valid && segment.number == shipped.segment) {
    return countLines(path(segment.number), shipped.offset);
  }
  if (segment.records >= 0) {
    return static_cast<std::uint64_t>(segment.records);
  }
  return countLines(path(segment.number), 0);
}

// Re-reads shipped.offset when the file changed since the last read. The
// shipper may also have deleted shipped segments itself, so the segment list
// is checked against the folder at the same time.
void Spool::Impl::refreshShippedOffset() {
  std::filesystem::path offset_path = config.dir / kShippedOffsetFile;
  struct stat info {};
  if (::stat(offset_path.c_str(), &info) != 0) {
    shipped = ShippedOffset{};
    return;
  }
  if (shipped.exists && shipped.inode == info.st_ino && shipped.size == info.st_size &&
      shipped.modified.tv_sec == info.st_mtim.tv_sec &&
      shipped.modified.tv_nsec == info.st_mtim.tv_nsec) {
    return;
  }
  shipped = ShippedOffset{};
  shipped.exists = true;
  shipped.inode = info.st_ino;
  shipped.size = info.st_size;
  shipped.modified = info.st_mtim;

  char text[256];
  std::size_t length = 0;
  int fd = ::open(offset_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t got = ::read(fd, text, sizeof text);
    length = got > 0 ? static_cast<std::size_t>(got) : 0;
    ::close(fd);
  }
  std::string_view content(text, length);
  std::optional<ShippedPosition> position = parseShippedPosition(content);
  if (!position) {
    spdlog::warn("spool: ignoring malformed {} content='{}'; expected '<segment file> <offset>'",
                 offset_path.string(), fmt::format("{:.64}", content));
    return;
  }
  shipped.valid = true;
  shipped.segment = position->segment;
  shipped.offset = position->offset;
  forgetMissingSegments();
}

std::uint64_t Spool::Impl::unshippedBytes() {
  std::lock_guard lock(mutex);
  refreshShippedOffset();
  std::uint64_t bytes = 0;
  for (const Segment& segment : segments) {
    if (!shipped.valid || segment.number > shipped.segment) {
      bytes += segment.bytes;
    } else if (segment.number == shipped.segment) {
      bytes += segment.bytes - std::min(segment.bytes, shipped.offset);
    }
  }
  return bytes;
}

void Spool::Impl::forgetMissingSegments() {
  std::size_t closed = file ? segments.size() - 1 : segments.size();
  for (std::size_t i = 0; i < closed;) {
    if (::access(path(segments[i].number).c_str(), F_OK) != 0 && errno == ENOENT) {
      total_bytes -= std::min(total_bytes, segments[i].bytes);
      segments.erase(segments.begin() + static_cast<std::ptrdiff_t>(i));
      --closed;
    } else {
      ++i;
    }
  }
  spool_bytes.set(static_cast<std::int64_t>(total_bytes));
}

// Deletes the oldest segment, closing it first when it is the open one.
// Returns false when nothing could be deleted.
bool Spool::Impl::deleteOldest(bool count_unshipped) {
  if (segments.empty()) {
    return false;
  }
  if (file && segments.size() == 1) {
    if (segments.front().bytes == 0) {
      return false;
    }
    closeSegment();
  }
  Segment oldest = segments.front();
  std::filesystem::path oldest_path = path(oldest.number);
  std::uint64_t lost = count_unshipped && !isShipped(oldest) ? unshippedRecords(oldest) : 0;
  if (::unlink(oldest_path.c_str()) != 0 && errno != ENOENT) {
    int error = errno;
    write_errors.inc();
    spdlog::error("spool: segment deletion failed segment={} error={}", oldest_path.string(),
                  std::strerror(error));
    return false;
  }
  segments.pop_front();
  total_bytes -= std::min(total_bytes, oldest.bytes);
  spool_bytes.set(static_cast<std::int64_t>(total_bytes));
  segments_deleted.inc();
  if (lost > 0) {
    dropped_full.inc(lost);
    spdlog::warn("spool: disk cap reached, deleted unshipped segment={} records={} max_bytes={}",
                 segmentFileName(oldest.number), lost, config.max_bytes);
  }
  return true;
}

// Frees room for `size` more bytes under the cap. Returns false when the
// record must be dropped.
bool Spool::Impl::makeRoom(std::uint64_t size) {
  auto fits = [&] { return total_bytes + size <= config.max_bytes; };
  if (fits()) {
    return true;
  }
  if (size > config.max_bytes) {
    return false;
  }

  refreshShippedOffset();
  while (!fits() && !segments.empty() && isShipped(segments.front())) {
    if (!deleteOldest(false)) {
      break;
    }
  }
  if (fits() || config.on_full == FullPolicy::kDropNew) {
    return fits();
  }
  while (!fits()) {
    if (!deleteOldest(true)) {
      break;
    }
  }
  return fits();
}

bool Spool::Impl::writeRecord(std::string_view record) {
  Segment& current = segments.back();
  char newline = '\n';
  iovec parts[2] = {{const_cast<char*>(record.data()), record.size()}, {&newline, 1}};
  std::size_t total = record.size() + 1;
  std::size_t written = 0;

  while (written < total) {
    // Skip what a short write already took.
    iovec rest[2];
    int count = 0;
    std::size_t skip = written;
    for (const iovec& part : parts) {
      if (skip >= part.iov_len) {
        skip -= part.iov_len;
        continue;
      }
      rest[count].iov_base = static_cast<char*>(part.iov_base) + skip;
      rest[count].iov_len = part.iov_len - skip;
      skip = 0;
      ++count;
    }
    ssize_t got = ::writev(file->fd, rest, count);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got <= 0) {
      int error = got < 0 ? errno : EIO;
      // Cut a torn line back off, so the segment keeps whole records. When
      // that fails too, the segment is closed and readers see one torn line
      // at its end.
      if (written > 0 && ::ftruncate(file->fd, static_cast<off_t>(current.bytes)) != 0) {
        current.bytes += written;
        total_bytes += written;
        closeSegment();
      }
      errno = error;
      return false;
    }
    written += static_cast<std::size_t>(got);
  }

  current.bytes += total;
  current.records += 1;
  total_bytes += total;
  return true;
}

void Spool::Impl::syncFile(const std::shared_ptr<FileHandle>& handle) {
  if (::fdatasync(handle->fd) == 0) {
    fsyncs.inc();
    return;
  }
  int error = errno;
  write_errors.inc();
  spdlog::error("spool: fdatasync failed dir={} error={}", config.dir.string(),
                std::strerror(error));
}

AppendResult Spool::Impl::dropFull() {
  dropped_full.inc();
  if (!full) {
    full = true;
    full_gauge.set(1);
    spdlog::warn("spool: disk cap reached, dropping new records dir={} max_bytes={} bytes={}",
                 config.dir.string(), config.max_bytes, total_bytes);
  }
  ++dropped_while_full;
  return AppendResult::kDropped;
}

AppendResult Spool::Impl::dropWriteError(int error, const char* operation) {
  write_errors.inc();
  dropped_write_error.inc();
  if (!failing) {
    failing = true;
    spdlog::error("spool: {} failed, dropping records until it recovers dir={} error={}", operation,
                  config.dir.string(), std::strerror(error));
  }
  ++failed_appends;
  return AppendResult::kDropped;
}

void Spool::Impl::noteSuccess() {
  if (full) {
    full = false;
    full_gauge.set(0);
    spdlog::info("spool: below the disk cap again, records dropped meanwhile={}",
                 dropped_while_full);
    dropped_while_full = 0;
  }
  if (failing) {
    failing = false;
    spdlog::info("spool: writes recovered, records dropped meanwhile={}", failed_appends);
    failed_appends = 0;
  }
}

AppendResult Spool::Impl::append(std::string_view record) {
  std::unique_lock lock(mutex);
  const std::uint64_t size = record.size() + 1;

  if (!makeRoom(size)) {
    return dropFull();
  }
  if (file && segments.back().bytes > 0 && segments.back().bytes + size > config.segment_bytes) {
    closeSegment();
  }
  if (!file && !openSegment()) {
    return dropWriteError(errno, "segment creation");
  }
  if (!writeRecord(record)) {
    return dropWriteError(errno, "write");
  }

  records_written.inc();
  bytes_written.inc(size);
  spool_bytes.set(static_cast<std::int64_t>(total_bytes));
  noteSuccess();

  if (config.fsync == FsyncPolicy::kAlways) {
    syncFile(file);
  } else if (config.fsync == FsyncPolicy::kInterval) {
    dirty = true;
  }
  return AppendResult::kWritten;
}

void Spool::Impl::flush() {
  std::shared_ptr<FileHandle> handle;
  {
    std::lock_guard lock(mutex);
    handle = file;
    dirty = false;
  }
  if (handle) {
    syncFile(handle);
  }
}

// Syncs outside the lock, so appends never wait for the disk.
void Spool::Impl::runSyncThread() {
  const auto interval = std::chrono::milliseconds(config.fsync_interval_ms);
  std::unique_lock lock(mutex);
  while (!stopping) {
    wake_sync.wait_for(lock, interval, [this] { return stopping; });
    if (!dirty || !file) {
      continue;
    }
    std::shared_ptr<FileHandle> handle = file;
    dirty = false;
    lock.unlock();
    syncFile(handle);
    lock.lock();
  }
}

void Spool::Impl::stop() {
  {
    std::lock_guard lock(mutex);
    stopping = true;
  }
  wake_sync.notify_all();
  if (sync_thread.joinable()) {
    sync_thread.join();
  }
  if (config.fsync != FsyncPolicy::kNever && dirty && file) {
    flush();
  }
}

Spool::Spool(const SpoolConfig& config, MetricsRegistry& metrics)
    : impl_(std::make_unique<Impl>(config, metrics)) {}

Spool::~Spool() {
  impl_->stop();
}

AppendResult Spool::append(std::string_view record) {
  return impl_->append(record);
}

void Spool::flush() {
  impl_->flush();
}

std::uint64_t Spool::unshippedBytes() {
  return impl_->unshippedBytes();
}

}  // namespace webtrap::probe
