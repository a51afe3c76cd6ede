#include "collector/file_input.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/config_table.h"
#include "common/config_values.h"
#include "common/error.h"

namespace webtrap::collector {

namespace {

constexpr std::size_t kReadChunkBytes = 256 * 1024;
// Bytes of an over-long line kept in its dead letter.
constexpr std::size_t kRejectedLineKeepBytes = 64 * 1024;
// Polls that must find the old file unchanged at its end, after the path
// was seen to name a new file, before the input moves to the new file: the
// writer may still append to the old one until it reopens its log.
constexpr int kRotationQuietPolls = 2;
// The inode saved with the file offset after the input finished a rotated
// file while the path named no regular file. Linux file systems such as ext4
// and tmpfs do not use inode number 0. The finished file's own number would
// be wrong, because the next file at the path may reuse it.
constexpr std::uint64_t kNoFileInode = 0;
// The maximum poll interval. condition_variable::wait_for counts in
// nanoseconds, so an interval of about 106,752 days or more overflows and
// the thread polls without waiting.
constexpr std::uint64_t kMaxPollIntervalMs = 3'600'000;
// The first bytes of a file saved with its offset. A file deleted and
// created again can get the same inode number, but rarely the same first
// bytes: audit records start with their time stamp and transaction id.
constexpr std::size_t kHeadBytes = 256;

// A failed system call on the file being read, as opposed to an error of
// the batch handler.
class FileError : public std::system_error {
 public:
  using std::system_error::system_error;
};

[[noreturn]] void throwErrno(const std::string& what) {
  throw FileError(errno, std::generic_category(), what);
}

// Opens `path` read-only if it names a regular file, and fills `info`.
// Returns -1 otherwise, with the reason in `problem`. A folder opens without
// error but cannot be read, and O_NONBLOCK keeps a FIFO from blocking the
// open (it has no effect on reads from a regular file).
// Returns true when the byte at `offset` can be read although the file's
// size ends there: a pseudo file whose size does not match its content.
bool sizeBelowContent(int fd, std::uint64_t offset) {
  char byte = 0;
  if (::pread(fd, &byte, 1, static_cast<off_t>(offset)) != 1) {
    return false;
  }
  struct stat again {};
  // A regular file that grew meanwhile has a size past `offset` now.
  return ::fstat(fd, &again) == 0 && static_cast<std::uint64_t>(again.st_size) <= offset;
}

int openRegularFile(const std::filesystem::path& path, struct stat& info, std::string& problem) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    problem = std::strerror(errno);
    return -1;
  }
  if (::fstat(fd, &info) != 0) {
    problem = fmt::format("fstat failed: {}", std::strerror(errno));
    ::close(fd);
    return -1;
  }
  if (!S_ISREG(info.st_mode)) {
    problem = S_ISDIR(info.st_mode) ? "it is a folder, not a file" : "it is not a regular file";
    ::close(fd);
    return -1;
  }
  if (info.st_size == 0 && sizeBelowContent(fd, 0)) {
    // Each poll would find the file shorter than what was read and read it
    // again from its beginning, storing its lines over and over.
    problem =
        "its size reads as 0 although it has content, as files in /proc and /sys do; the file "
        "input follows log files that grow on disk, so point it at such a file";
    ::close(fd);
    return -1;
  }
  return fd;
}

// Returns the offset of the first byte after the last newline before `end`
// (0 when the file has none), so that a line the writer has not finished is
// read whole once it is. It looks back at most `limit` bytes and returns
// `end` when they contain no newline, because that line is too long anyway.
std::uint64_t startOfLastLine(int fd, std::uint64_t end, std::uint64_t limit) {
  std::vector<char> buffer(64 * 1024);
  std::uint64_t position = end;
  while (position > 0 && end - position < limit) {
    std::uint64_t count =
        std::min<std::uint64_t>({buffer.size(), position, limit - (end - position)});
    ssize_t got = ::pread(fd, buffer.data(), count, static_cast<off_t>(position - count));
    if (got != static_cast<ssize_t>(count)) {
      return end;  // a read error or a file truncated meanwhile
    }
    for (std::uint64_t i = count; i > 0; --i) {
      if (buffer[i - 1] == '\n') {
        return position - count + i;
      }
    }
    position -= count;
  }
  return position == 0 ? 0 : end;
}

// Returns the first `length` bytes of the file, or fewer when it is shorter
// or a read fails.
std::string readHead(int fd, std::size_t length) {
  std::string head(length, '\0');
  ssize_t got = ::pread(fd, head.data(), length, 0);
  head.resize(got > 0 ? static_cast<std::size_t>(got) : 0);
  return head;
}

// A copy of the file that logrotate's copytruncate made before it truncated
// the file: its descriptor, inode and path.
struct TruncatedCopy {
  int fd = -1;
  std::uint64_t inode = 0;
  std::string path;
  std::int64_t created_ns = 0;  // see creationNanoseconds
};

// The conditions that a copy left by copytruncate must meet.
struct CopySearch {
  // The copy starts with these bytes. Empty for a file that had no line
  // when last seen, whose copy is then found by `since_ns` alone.
  std::string head;
  std::uint64_t min_size = 0;
  // When not 0: the copy was created and last written at or after this
  // real time in nanoseconds (see madeSince). A rotated file renamed
  // meanwhile has a new change time but keeps its old modification time, so
  // it does not match.
  std::int64_t since_ns = 0;
  std::uint64_t exclude_inode = 0;       // the truncated file itself
  // Copies read already, by inode number and creationNanoseconds. logrotate
  // with delaycompress deletes the old copy just before it makes the new
  // one, and ext4 gives the new copy the freed inode number, so the number
  // alone does not tell them apart.
  std::vector<CopyIdentity> exclude_copies;
};

// Returns true when `head` starts like a file that gzip, bzip2, xz, lzma,
// zstd or lz4 wrote, which logrotate's compress and delaycompress leave
// beside the copies. Audit log lines never start with these bytes.
bool looksCompressed(std::string_view head) {
  constexpr std::string_view kMagics[] = {
      std::string_view("\x1f\x8b", 2),                  // gzip
      std::string_view("BZh", 3),                       // bzip2
      std::string_view("\xfd\x37\x7a\x58\x5a\x00", 6),  // xz
      std::string_view("\x5d\x00\x00", 3),              // lzma
      std::string_view("\x28\xb5\x2f\xfd", 4),          // zstd
      std::string_view("\x04\x22\x4d\x18", 4),          // lz4
  };
  return std::ranges::any_of(kMagics,
                             [&](std::string_view magic) { return head.starts_with(magic); });
}

std::int64_t nanoseconds(const struct timespec& time) {
  return static_cast<std::int64_t>(time.tv_sec) * 1'000'000'000 + time.tv_nsec;
}

// The real time as file systems stamp files (the coarse clock), in
// nanoseconds, so a file created after this call has a change time at or
// after it.
std::int64_t fileClockNanoseconds() {
  struct timespec now {};
  ::clock_gettime(CLOCK_REALTIME_COARSE, &now);
  return nanoseconds(now);
}

// Returns the birth time of the open file `fd` in nanoseconds, or 0 when
// its file system does not record one.
std::int64_t birthNanoseconds(int fd) {
  struct statx info {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_BTIME, &info) != 0 ||
      (info.stx_mask & STATX_BTIME) == 0) {
    return 0;
  }
  return static_cast<std::int64_t>(info.stx_btime.tv_sec) * 1'000'000'000 + info.stx_btime.tv_nsec;
}

// Returns `birth_ns` (from birthNanoseconds), or the change time in `info`
// when the file system records no birth time. Tells apart two files that
// had the same inode number one after the other.
std::int64_t creationNanoseconds(std::int64_t birth_ns, const struct stat& info) {
  return birth_ns != 0 ? birth_ns : nanoseconds(info.st_ctim);
}

// Returns true when the open file `fd` (`info` from fstat, `birth_ns` from
// birthNanoseconds) can be a copy
// that copytruncate made at or after `since_ns`. Such a copy was created
// and last written since then, by birth time where the file system records
// it and else by change time. It was last written no later than the
// truncated file (`truncated_mtime_ns`), and it is not compressed. NOTE: without birth times,
// another live log named like a copy passes when it was renamed or created since `since_ns`.
bool madeSince(int fd, const struct stat& info, std::int64_t birth_ns, std::int64_t since_ns,
               std::int64_t truncated_mtime_ns) {
  const std::int64_t mtime_ns = nanoseconds(info.st_mtim);
  if (nanoseconds(info.st_ctim) < since_ns || mtime_ns < since_ns ||
      (birth_ns != 0 && birth_ns < since_ns)) {
    return false;
  }
  if (mtime_ns > truncated_mtime_ns) {
    return false;
  }
  return !looksCompressed(readHead(fd, 8));
}

// Finds the copy that copytruncate left of `path` in the same folder: a
// regular file named like "audit.log.1" or "audit.log-20261206" that matches
// `search`. Compressed copies start with other bytes and are not found. When
// several match, the most recently modified wins a search by first bytes,
// and the least recently modified (then the earliest created) wins a search
// by time, because each copy was written once, before the next truncation.
// Returns fd -1 when none does.
TruncatedCopy findTruncatedCopy(const std::filesystem::path& path, const CopySearch& search) {
  TruncatedCopy best;
  if (search.head.empty() && search.since_ns == 0) {
    return best;
  }
  std::filesystem::path folder = path.parent_path();
  if (folder.empty()) {
    folder = ".";
  }
  // Found by time, a copy was last written before the file was truncated,
  // and so the file was written since `since_ns`. copytruncate leaves the
  // file at the path: a file renamed or deleted meanwhile left no copy.
  std::int64_t truncated_mtime_ns = 0;
  if (search.since_ns != 0) {
    struct stat truncated {};
    if (::stat(path.c_str(), &truncated) != 0 ||
        static_cast<std::uint64_t>(truncated.st_ino) != search.exclude_inode) {
      return best;
    }
    truncated_mtime_ns = nanoseconds(truncated.st_mtim);
    if (truncated_mtime_ns < search.since_ns) {
      return best;  // no line was written to the file, so none was copied
    }
  }
  const std::string base = path.filename().string();
  std::int64_t best_mtime_ns = 0;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(folder, error)) {
    const std::string name = entry.path().filename().string();
    if (name.size() <= base.size() || !name.starts_with(base) ||
        (name[base.size()] != '.' && name[base.size()] != '-')) {
      continue;
    }
    struct stat info {};
    std::string problem;
    int fd = openRegularFile(entry.path(), info, problem);
    if (fd < 0) {
      continue;
    }
    const std::int64_t mtime_ns = nanoseconds(info.st_mtim);
    const auto inode = static_cast<std::uint64_t>(info.st_ino);
    const auto size = static_cast<std::uint64_t>(info.st_size);
    const std::int64_t birth_ns = birthNanoseconds(fd);
    const bool recent =
        search.since_ns == 0 || madeSince(fd, info, birth_ns, search.since_ns, truncated_mtime_ns);
    const std::int64_t created_ns = creationNanoseconds(birth_ns, info);
    const bool read_already =
        std::ranges::any_of(search.exclude_copies, [&](const CopyIdentity& copy) {
          return copy.inode == inode && copy.created_ns == created_ns;
        });
    const bool matches = inode != search.exclude_inode && !read_already &&
                         size >= search.min_size && size > 0 && recent &&
                         (search.head.empty() || readHead(fd, search.head.size()) == search.head);
    bool better = best.fd < 0;
    if (!better && search.head.empty()) {
      better =
          mtime_ns < best_mtime_ns || (mtime_ns == best_mtime_ns && created_ns < best.created_ns);
    } else if (!better) {
      better = mtime_ns > best_mtime_ns;
    }
    if (!matches || !better) {
      ::close(fd);
      continue;
    }
    if (best.fd >= 0) {
      ::close(best.fd);
    }
    best = {fd, inode, entry.path().string(), created_ns};
    best_mtime_ns = mtime_ns;
  }
  return best;
}

RecordFormat parseFormatKey(const YAML::Node& node, const std::string& key) {
  std::string text = config_values::scalarText(node, key);
  auto format = parseRecordFormat(text);
  if (!format) {
    throw ConfigError(fmt::format("{}: invalid format \"{}\"; use auto, webtrap, modsec3 or modsec2",
                                  key, text));
  }
  return *format;
}

FileInputOptions parseOneFileInput(const YAML::Node& node, const std::string& prefix) {
  if (!node.IsMap()) {
    throw ConfigError(fmt::format("{}: expected a map such as {{path: /var/log/modsec_audit.json}}",
                                  prefix));
  }
  FileInputOptions options;
  bool has_path = false;
  for (const auto& entry : node) {
    std::string name = config_table::keyText(entry.first, prefix);
    std::string key = prefix + "." + name;
    const YAML::Node& value = entry.second;
    if (name == "path") {
      std::string path = config_values::scalarText(value, key);
      if (path.empty()) {
        throw ConfigError(key + ": empty; give the audit log file to read");
      }
      options.path = path;
      has_path = true;
    } else if (name == "format") {
      options.format = parseFormatKey(value, key);
    } else if (name == "sensor_id") {
      options.sensor_id = config_values::scalarText(value, key);
    } else if (name == "group") {
      options.group = config_values::scalarText(value, key);
    } else if (name == "timezone") {
      options.timezone = config_values::scalarText(value, key);
      options.time_zone = findTimeZone(options.timezone);
      if (options.time_zone == nullptr) {
        throw ConfigError(fmt::format(
            "{}: unknown time zone \"{}\"; give a name from /usr/share/zoneinfo such as "
            "Europe/Berlin or UTC",
            key, options.timezone));
      }
    } else if (name == "poll_interval") {
      options.poll_interval_ms =
          config_values::parseMilliseconds(config_values::scalarText(value, key), key);
      if (options.poll_interval_ms == 0) {
        throw ConfigError(key + ": must be more than 0, such as 1s or 250ms");
      }
      if (options.poll_interval_ms > kMaxPollIntervalMs) {
        throw ConfigError(key + ": must be at most 1h, such as 1s or 250ms");
      }
    } else if (name == "start_at") {
      std::string text = config_values::scalarText(value, key);
      if (text != "beginning" && text != "end") {
        throw ConfigError(fmt::format("{}: invalid value \"{}\"; use beginning or end", key, text));
      }
      options.start_at_end = text == "end";
    } else if (name == "max_record_size") {
      options.max_record_bytes =
          config_values::parseBytes(config_values::scalarText(value, key), key);
      if (options.max_record_bytes < 1024) {
        throw ConfigError(key + ": must be at least 1KiB; audit records are often 2 to 10 KiB");
      }
    } else {
      throw ConfigError(fmt::format(
          "{}: unknown key; the keys of a file input are path, format, sensor_id, group, "
          "timezone, poll_interval, start_at and max_record_size",
          key));
    }
  }
  if (!has_path) {
    throw ConfigError(prefix + ".path: missing; give the audit log file to read");
  }
  return options;
}

// The path with symbolic links, "." and ".." resolved as far as it exists,
// or only its "." and ".." when resolving fails (for example on a folder
// that cannot be searched).
std::string resolvedPath(const std::filesystem::path& path) {
  std::error_code error;
  std::filesystem::path resolved = std::filesystem::weakly_canonical(path, error);
  if (error) {
    resolved = path.lexically_normal();
  }
  return resolved.string();
}

}  // namespace

std::vector<FileInputOptions> parseFileInputs(const YAML::Node& node) {
  std::vector<FileInputOptions> inputs;
  if (!node || node.IsNull()) {
    return inputs;
  }
  if (!node.IsSequence()) {
    throw ConfigError("inputs.files: expected a list of files, each with at least `path:`");
  }
  // Paths are compared resolved, because two spellings of one file would
  // store each record twice: the configured path is part of the event id.
  std::map<std::string, std::size_t> resolved_paths;
  for (std::size_t i = 0; i < node.size(); ++i) {
    std::string prefix = fmt::format("inputs.files[{}]", i);
    FileInputOptions options = parseOneFileInput(node[i], prefix);
    auto [it, inserted] = resolved_paths.emplace(resolvedPath(options.path), i);
    if (!inserted) {
      throw ConfigError(fmt::format(
          "{}.path: \"{}\" is listed twice: inputs.files[{}].path \"{}\" names the same file; "
          "list each file once",
          prefix, options.path.string(), it->second, inputs[it->second].path.string()));
    }
    inputs.push_back(std::move(options));
  }
  return inputs;
}

struct FileInput::Counters {
  Counter* lines = nullptr;
  Counter* rejected = nullptr;
  Counter* bytes = nullptr;
  Counter* rotations = nullptr;
  Counter* truncations = nullptr;
  Counter* copies = nullptr;
  Counter* errors = nullptr;
  Gauge* offset = nullptr;
  Gauge* cannot_open = nullptr;
};

// The file being read. Offsets are byte positions in that file.
struct FileInput::OpenFile {
  int fd = -1;
  std::uint64_t inode = 0;
  std::string path;               // the configured path, or a rotated file's own path
  std::uint64_t committed = 0;    // handed over and saved in the store
  std::uint64_t batch_end = 0;    // end of the last line in the current batch
  std::uint64_t read_offset = 0;  // next byte read() returns
  std::string pending;            // bytes from pending_offset not yet split into lines
  std::uint64_t pending_offset = 0;
  std::size_t scanned = 0;        // leading bytes of `pending` known to hold no newline
  bool skipping = false;          // dropping the rest of an over-long line
  bool rotated = false;           // the path names another file now
  // A copy that copytruncate made: logrotate wrote it whole before it
  // truncated the file, and nothing appends to it.
  bool complete = false;
  std::string head;               // the file's first bytes, up to kHeadBytes
  // While `head` is empty: the file clock (fileClockNanoseconds) just before
  // the file was last seen without a line. Lines in a copy made after it
  // were written after it, so such a copy contains only unread lines.
  std::int64_t empty_at_ns = 0;
  // The empty_at_ns last saved in the store. It is saved again only when
  // the folder changed since, because a copy made later changes the folder.
  std::int64_t empty_saved_ns = 0;
  // For a complete copy: the inode number of the file it was copied from.
  std::uint64_t truncated_inode = 0;
  int quiet_polls = 0;            // polls at the end of a rotated file
  std::vector<char> buffer;

  ~OpenFile() {
    if (fd >= 0) {
      ::close(fd);
    }
  }
};

FileInput::FileInput(FileInputOptions options, Store& store, FileBatchHandler handler,
                     MetricsRegistry& metrics)
    : options_(std::move(options)),
      key_(options_.path.string()),
      store_(store),
      handler_(std::move(handler)),
      counters_(std::make_unique<Counters>()) {
  if (options_.time_zone == nullptr && !options_.timezone.empty()) {
    options_.time_zone = findTimeZone(options_.timezone);
    if (options_.time_zone == nullptr) {
      throw ConfigError(fmt::format("file input {}: unknown time zone \"{}\"; give a name from "
                                    "/usr/share/zoneinfo such as Europe/Berlin or UTC",
                                    key_, options_.timezone));
    }
  }
  std::string labels = fmt::format("path=\"{}\"", escapeLabelValue(key_));
  counters_->lines = &metrics.counter("webtrap_collector_file_lines_total",
                                      "Lines read from the audit log file", labels);
  counters_->rejected = &metrics.counter("webtrap_collector_file_rejected_total",
                                         "Lines that could not be decoded", labels);
  counters_->bytes = &metrics.counter("webtrap_collector_file_bytes_total",
                                      "Bytes read from the audit log file", labels);
  counters_->rotations = &metrics.counter("webtrap_collector_file_rotations_total",
                                          "Times the path was found to name a new file", labels);
  counters_->truncations = &metrics.counter(
      "webtrap_collector_file_truncations_total",
      "Times the file was found truncated: shorter than the offset read, or with other first "
      "bytes", labels);
  counters_->copies = &metrics.counter(
      "webtrap_collector_file_truncated_copies_total",
      "Times the rest of a truncated file was read from the copy that logrotate's copytruncate "
      "made of it",
      labels);
  counters_->errors = &metrics.counter("webtrap_collector_file_errors_total",
                                       "Read errors and batches the collector failed to commit",
                                       labels);
  counters_->cannot_open = &metrics.gauge(
      "webtrap_collector_file_open_failing",
      "1 while the path names no readable regular file (missing, a folder, no permission), "
      "else 0",
      labels);
  counters_->offset = &metrics.gauge("webtrap_collector_file_offset_bytes",
                                     "Byte offset committed in the file being read", labels);
}

FileInput::~FileInput() { stop(); }

void FileInput::start() {
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

void FileInput::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void FileInput::run() {
  spdlog::info("file input {}: started, format {}, polling every {} ms", key_,
               formatName(options_.format), options_.poll_interval_ms);
  std::uint64_t failures = 0;
  while (!stopping_) {
    try {
      pollOnce();
      if (failures > 0) {
        spdlog::info("file input {}: reading again after {} failed attempts", key_, failures);
      }
      failures = 0;
    } catch (const std::exception& error) {
      ++failures;
      counters_->errors->inc();
      // The first failures, then one in 60, so an outage does not flood the log.
      if (failures <= 3 || failures % 60 == 0) {
        spdlog::error("file input {}: {} (attempt {}); retrying from offset {} every {} ms", key_,
                      error.what(), failures, file_ ? file_->committed : 0,
                      options_.poll_interval_ms);
      }
    }
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, std::chrono::milliseconds(options_.poll_interval_ms),
                   [this] { return stopping_.load(); });
  }
  spdlog::info("file input {}: stopped at offset {}", key_, file_ ? file_->committed : 0);
}

std::size_t FileInput::pollOnce() {
  try {
    if (!file_ && !openPath()) {
      return 0;
    }
    checkFirstBytes();
    std::size_t handled = 0;
    while (true) {
      handled += readAvailable();
      flushBatch();
      if (stopping_ || !checkRotation()) {
        break;
      }
    }
    return handled;
  } catch (const FileError&) {
    discardUncommitted();
    closeIfReplaced();
    throw;
  } catch (...) {
    discardUncommitted();
    throw;
  }
}

void FileInput::discardUncommitted() {
  // Nothing after `committed` was handed over: read it again next time.
  records_.clear();
  rejected_.clear();
  batch_bytes_ = 0;
  if (file_) {
    OpenFile& file = *file_;
    file.pending.clear();
    file.scanned = 0;
    file.skipping = false;
    file.pending_offset = file.read_offset = file.batch_end = file.committed;
    if (::lseek(file.fd, static_cast<off_t>(file.committed), SEEK_SET) < 0) {
      closeFile();
    }
  }
}

void FileInput::closeIfReplaced() {
  if (!file_) {
    return;
  }
  struct stat opened {};
  struct stat current {};
  if (::fstat(file_->fd, &opened) == 0 && ::stat(options_.path.c_str(), &current) == 0 &&
      current.st_ino == opened.st_ino && current.st_dev == opened.st_dev) {
    return;  // still the file at the path: read it again from `committed`
  }
  spdlog::warn("file input {}: reading {} failed and the path now names another file or none; "
               "closing it and opening the path again",
               key_, file_->path);
  closeFile();
}

void FileInput::reportOpenProblem(const std::string& problem) {
  std::lock_guard lock(open_problem_mutex_);
  counters_->cannot_open->set(1);
  // Logged when the reason changes, not on every poll.
  if (problem != open_problem_) {
    spdlog::warn("file input {}: cannot open: {}; trying again every {} ms", key_, problem,
                 options_.poll_interval_ms);
    open_problem_ = problem;
  }
}

void FileInput::clearOpenProblem() {
  std::lock_guard lock(open_problem_mutex_);
  open_problem_.clear();
  counters_->cannot_open->set(0);
}

FileInput::Status FileInput::status() const {
  Status status;
  status.path = key_;
  {
    std::lock_guard lock(open_problem_mutex_);
    status.open_failing = counters_->cannot_open->value() != 0;
    status.open_error = open_problem_;
  }
  status.offset = static_cast<std::uint64_t>(counters_->offset->value());
  return status;
}

bool FileInput::openPath() {
  struct stat info {};
  std::string problem;
  int fd = openRegularFile(options_.path, info, problem);
  if (fd < 0) {
    reportOpenProblem(problem);
    return false;
  }
  clearOpenProblem();
  auto inode = static_cast<std::uint64_t>(info.st_ino);
  auto size = static_cast<std::uint64_t>(info.st_size);

  std::uint64_t offset = 0;
  std::optional<Store::FileOffset> saved;
  try {
    saved = store_.fileOffset(key_);
  } catch (...) {
    ::close(fd);  // the next poll opens the file again
    throw;
  }
  if (saved && saved->inode == kNoFileInode) {
    // The previous file was read to its end, so this one was created after
    // it and is read whole, also with start_at: end.
    offset = 0;
  } else if (saved && saved->inode == inode) {
    // A file deleted and created again while the collector was stopped can
    // get the same inode number (ext4 reuses it at once), so its first
    // bytes are compared too. NOTE: offsets saved before the store kept
    // them have no head, and then only a size below the offset shows it.
    offset = saved->offset;
    std::string change;
    if (!saved->head.empty() && readHead(fd, saved->head.size()) != saved->head) {
      change = fmt::format(
          "the file has the saved inode number {} but other first bytes, so it "
          "was truncated or is a new file",
          inode);
    } else if (offset > size) {
      change = fmt::format(
          "the file is shorter ({} bytes) than the saved offset {}, so it was "
          "truncated",
          size, offset);
      counters_->truncations->inc();
    }
    // A file without a line when it was saved has no first bytes to find its
    // copy by, so the copy is found by when it was made.
    const std::int64_t since = saved->head.empty() ? saved->empty_at_ns : 0;
    if (change.empty() && since != 0 && openTruncatedCopy({}, offset, inode, false, since)) {
      spdlog::info("file input {}: copied and truncated while the collector was stopped", key_);
      counters_->truncations->inc();
      ::close(fd);
      return true;
    }
    if (!change.empty()) {
      // With copytruncate, the lines after the saved offset are in the copy,
      // which is routine. Without a copy they are lost.
      if (openTruncatedCopy(saved->head, saved->offset, inode, false, since)) {
        spdlog::info("file input {}: {} while the collector was stopped", key_, change);
        ::close(fd);
        return true;
      }
      spdlog::warn(
          "file input {}: {}, and no copy of it was found; reading it from its "
          "beginning, so lines written after offset {} and before the change are lost",
          key_, change, saved->offset);
      offset = 0;
    }
  } else if (saved) {
    // The path names another file than the saved offset: it was rotated
    // while the collector was stopped. Finish the old file first.
    ::close(fd);
    if (openRotatedRemainder(saved->inode, saved->offset, saved->head)) {
      return true;
    }
    spdlog::warn("file input {}: the file of the saved offset (inode {}) is gone; reading the "
                 "current file from its beginning",
                 key_, saved->inode);
    return openFresh();
  } else if (options_.start_at_end) {
    offset = startOfLastLine(fd, size, options_.max_record_bytes);
  }
  return adoptFile(fd, inode, key_, offset, false);
}

bool FileInput::openFresh() {
  struct stat info {};
  std::string problem;
  int fd = openRegularFile(options_.path, info, problem);
  if (fd < 0) {
    reportOpenProblem(problem);  // openPath tries again on the next poll
    return false;
  }
  clearOpenProblem();
  return adoptFile(fd, static_cast<std::uint64_t>(info.st_ino), key_, 0, false);
}

bool FileInput::openRotatedRemainder(std::uint64_t inode, std::uint64_t offset,
                                     const std::string& head) {
  std::filesystem::path folder = options_.path.parent_path();
  if (folder.empty()) {
    folder = ".";
  }
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(folder, error)) {
    struct stat info {};
    if (::stat(entry.path().c_str(), &info) != 0 || !S_ISREG(info.st_mode) ||
        static_cast<std::uint64_t>(info.st_ino) != inode) {
      continue;
    }
    if (static_cast<std::uint64_t>(info.st_size) < offset) {
      return false;  // the same inode number, reused by an unrelated file
    }
    int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return false;
    }
    if (!head.empty() && readHead(fd, head.size()) != head) {
      // The inode number was freed and reused, or the file was rewritten in
      // place (`cp audit.log audit.log.1` onto an earlier copy), so the
      // saved offset does not belong to its content.
      spdlog::warn("file input {}: {} has the saved inode number {} but other first bytes, so "
                   "it is another file; not reading it from the saved offset {}",
                   key_, entry.path().string(), inode, offset);
      ::close(fd);
      return false;
    }
    spdlog::info("file input {}: rotated while stopped; reading the rest of {} first", key_,
                 entry.path().string());
    return adoptFile(fd, inode, entry.path().string(), offset, true);
  }
  return false;
}

bool FileInput::adoptFile(int fd, std::uint64_t inode, const std::string& path,
                          std::uint64_t offset, bool rotated) {
  if (::lseek(fd, static_cast<off_t>(offset), SEEK_SET) < 0) {
    int saved_errno = errno;
    ::close(fd);
    errno = saved_errno;
    throwErrno("lseek " + path);
  }
  file_ = std::make_unique<OpenFile>();
  OpenFile& file = *file_;
  file.fd = fd;
  file.inode = inode;
  file.path = path;
  file.committed = file.batch_end = file.read_offset = file.pending_offset = offset;
  file.rotated = rotated;
  // A file found rotated at start is complete: no writer has it open.
  file.quiet_polls = rotated ? kRotationQuietPolls - 1 : 0;
  file.buffer.resize(kReadChunkBytes);
  const std::int64_t seen_at = fileClockNanoseconds();
  file.head = readHead(fd, kHeadBytes);
  if (file.head.empty() && !rotated) {
    file.empty_at_ns = seen_at;
    file.empty_saved_ns = savedEmptyTime(seen_at);
  }
  // Saved at once, so a restart resumes in this file (and, for start_at
  // end, does not skip what was written meanwhile).
  store_.setFileOffset(key_, {inode, offset, file.head, file.empty_saved_ns});
  counters_->offset->set(static_cast<std::int64_t>(offset));
  spdlog::info("file input {}: reading {} (inode {}) from offset {}", key_, path, inode, offset);
  return true;
}

void FileInput::closeFile() { file_.reset(); }

std::size_t FileInput::readAvailable() {
  OpenFile& file = *file_;
  std::size_t handled = 0;
  while (!stopping_) {
    ssize_t count = ::read(file.fd, file.buffer.data(), file.buffer.size());
    if (count < 0) {
      if (errno == EINTR) {
        continue;
      }
      throwErrno("read " + file.path);
    }
    if (count == 0) {
      break;
    }
    counters_->bytes->inc(static_cast<std::uint64_t>(count));
    file.read_offset += static_cast<std::uint64_t>(count);
    file.quiet_polls = 0;
    file.pending.append(file.buffer.data(), static_cast<std::size_t>(count));
    takeLines(handled);
  }
  return handled;
}

void FileInput::takeLines(std::size_t& handled) {
  OpenFile& file = *file_;
  std::size_t start = 0;
  while (true) {
    std::size_t newline = file.pending.find('\n', std::max(start, file.scanned));
    if (newline == std::string::npos) {
      break;
    }
    std::string_view line(file.pending.data() + start, newline - start);
    if (file.skipping) {
      file.skipping = false;  // the end of an over-long line, already rejected
    } else if (line.size() > options_.max_record_bytes) {
      // A line whose newline came in the same read was never checked while incomplete.
      rejectOverlong(line, file.pending_offset + start);
      ++handled;
    } else {
      decodeLine(line, file.pending_offset + start);
      batch_bytes_ += line.size();
      ++handled;
    }
    start = newline + 1;
    file.batch_end = file.pending_offset + start;
    if (records_.size() + rejected_.size() >= options_.batch_max_records ||
        batch_bytes_ >= options_.batch_max_bytes) {
      flushBatch();
    }
  }
  file.pending.erase(0, start);
  file.pending_offset += start;
  file.scanned = file.pending.size();
  if (!file.skipping && file.pending.size() > options_.max_record_bytes) {
    rejectLongLine();
    ++handled;
  } else if (file.skipping) {
    file.pending_offset += file.pending.size();
    file.pending.clear();
    file.scanned = 0;
  }
}

void FileInput::rejectOverlong(std::string_view line, std::uint64_t offset) {
  RejectedLine& rejected = rejected_.emplace_back();
  rejected.path = file_->path;
  rejected.offset = offset;
  rejected.error = fmt::format(
      "record: the line is longer than max_record_size ({} bytes); only its first {} bytes are "
      "kept here. Raise max_record_size if such records are expected",
      options_.max_record_bytes, kRejectedLineKeepBytes);
  rejected.line = line.substr(0, kRejectedLineKeepBytes);
  batch_bytes_ += rejected.line.size();
  counters_->lines->inc();
  counters_->rejected->inc();
}

void FileInput::rejectLongLine() {
  OpenFile& file = *file_;
  rejectOverlong(file.pending, file.pending_offset);
  // NOTE: the saved offset stays before this line until its newline arrives,
  // so a restart in between rejects it a second time.
  file.skipping = true;
  file.pending_offset += file.pending.size();
  file.pending.clear();
  file.scanned = 0;
}

void FileInput::decodeLine(std::string_view line, std::uint64_t offset) {
  if (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
  }
  if (line.find_first_not_of(" \t") == std::string_view::npos) {
    return;
  }
  counters_->lines->inc();
  DecodeOptions decode;
  decode.format = options_.format;
  // The configured path, not a rotated file's name, so that a record read
  // through either name gets the same event id.
  decode.origin = key_;
  decode.time_zone = options_.time_zone;
  DecodeResult result = decodeAuditRecord(line, decode);
  if (!result.ok) {
    counters_->rejected->inc();
    RejectedLine& rejected = rejected_.emplace_back();
    rejected.path = file_->path;
    rejected.offset = offset;
    rejected.error = std::move(result.error);
    rejected.line.assign(line);
    return;
  }
  AuditRecord& record = result.record;
  if (record.sensor_id.empty()) {
    record.sensor_id = options_.sensor_id;
  }
  if (record.sensor_group.empty()) {
    record.sensor_group = options_.group;
  }
  records_.push_back(std::move(record));
}

void FileInput::flushBatch() {
  OpenFile& file = *file_;
  if (file.batch_end == file.committed) {
    return;
  }
  if (file.head.size() < kHeadBytes) {
    file.head = readHead(file.fd, kHeadBytes);  // the file was shorter when it was opened
  }
  FileOffsetNote offset{key_, file.inode, file.batch_end, file.head};
  if (!records_.empty() || !rejected_.empty()) {
    handler_(std::move(records_), std::move(rejected_), options_, offset);
    records_.clear();
    rejected_.clear();
  } else {
    // Only blank lines: nothing to commit but the offset.
    store_.setFileOffset(key_, {offset.inode, offset.offset, offset.head});
  }
  batch_bytes_ = 0;
  file.committed = file.batch_end;
  counters_->offset->set(static_cast<std::int64_t>(file.committed));
}

void FileInput::checkFirstBytes() {
  OpenFile& file = *file_;
  if (file.rotated) {
    return;
  }
  if (file.head.empty()) {
    checkCopyOfEmptyFile();
    return;
  }
  if (readHead(file.fd, file.head.size()) == file.head) {
    return;
  }
  // Truncated and written past the old offset again since the last poll:
  // the size does not show it, the first bytes do. Checked before reading,
  // which would otherwise go on from the old offset in the new text.
  // NOTE: a new file that starts with the same kHeadBytes looks unchanged.
  // A routine copytruncate ends here too, so this is no warning.
  spdlog::info(
      "file input {}: its first bytes changed or are gone, so it was truncated; "
      "reading from the beginning",
      key_);
  restartFile();
}

void FileInput::checkCopyOfEmptyFile() {
  OpenFile& file = *file_;
  const std::int64_t now = fileClockNanoseconds();
  const std::int64_t since = file.empty_at_ns;
  // The file had no line when last seen, so it has no first bytes to find
  // its copy by. Creating a copy changes the folder, so the folder is read
  // only when it changed since then.
  std::filesystem::path folder = options_.path.parent_path();
  struct stat info {};
  const bool folder_known = since != 0 && ::stat(folder.empty() ? "." : folder.c_str(), &info) == 0;
  const std::int64_t folder_mtime_ns = folder_known ? nanoseconds(info.st_mtim) : 0;
  if (folder_known && folder_mtime_ns >= since &&
      openTruncatedCopy({}, file.pending_offset, file.inode, file.skipping, since)) {
    counters_->truncations->inc();
    return;
  }
  if (file.read_offset != 0) {
    return;
  }
  file.empty_at_ns = now;
  // While the folder stays unchanged, no copy was made since the saved
  // time, so it excludes the same files at the next start as `now` would,
  // and the store is not written at every poll.
  if (!folder_known || folder_mtime_ns >= file.empty_saved_ns) {
    file.empty_saved_ns = savedEmptyTime(now);
    saveEmptyFileOffset();
  }
}

std::int64_t FileInput::savedEmptyTime(std::int64_t seen_at_ns) const {
  // After a restart no copy is known as read, so the time must be past the
  // creation of the copy read last, which can fall in the same tick of the
  // file clock as `seen_at_ns`.
  if (read_copies_.empty()) {
    return seen_at_ns;
  }
  return std::max(seen_at_ns, read_copies_.back().created_ns + 1);
}

void FileInput::saveEmptyFileOffset() {
  const OpenFile& file = *file_;
  store_.setFileOffset(key_, {file.inode, file.committed, file.head, file.empty_saved_ns});
}

bool FileInput::openTruncatedCopy(const std::string& head, std::uint64_t offset,
                                  std::uint64_t truncated_inode, bool skipping,
                                  std::int64_t since_ns) {
  // A new truncation: of the copies read before, only the last one can
  // still match a search by time.
  if (read_copies_.size() > 1) {
    read_copies_.erase(read_copies_.begin(), read_copies_.end() - 1);
  }
  return openCopy(head, offset, truncated_inode, skipping, since_ns);
}

bool FileInput::openLaterCopy(std::uint64_t truncated_inode, std::int64_t since_ns) {
  if (!openCopy({}, 0, truncated_inode, false, since_ns)) {
    return false;
  }
  // Each later copy was made by one more truncation.
  counters_->truncations->inc();
  return true;
}

bool FileInput::openCopy(const std::string& head, std::uint64_t offset,
                         std::uint64_t truncated_inode, bool skipping, std::int64_t since_ns) {
  CopySearch search;
  search.head = head;
  search.min_size = offset;
  search.since_ns = since_ns;
  search.exclude_inode = truncated_inode;
  // Found by time alone, a copy read already could match again within one
  // tick of the file clock.
  if (head.empty()) {
    search.exclude_copies = read_copies_;
  }
  TruncatedCopy copy = findTruncatedCopy(options_.path, search);
  if (copy.fd < 0) {
    return false;
  }
  spdlog::info("file input {}: truncated; reading its copy {} from offset {} first", key_,
               copy.path, offset);
  counters_->copies->inc();
  read_copies_.push_back({copy.inode, copy.created_ns});
  adoptFile(copy.fd, copy.inode, copy.path, offset, true);
  file_->skipping = skipping;
  file_->complete = true;
  file_->truncated_inode = truncated_inode;
  return true;
}

void FileInput::restartFile() {
  OpenFile& file = *file_;
  counters_->truncations->inc();
  // The lines written after the last read are only in logrotate's copy.
  // Once the copy is read to its end, checkRotation() opens the path again.
  const std::string head = file.head;
  const std::uint64_t inode = file.inode;
  // A file without a line when last seen has no first bytes, so its copy is
  // known by when it was made.
  const std::int64_t since = head.empty() ? file.empty_at_ns : 0;
  if (openTruncatedCopy(head, file.pending_offset, inode, file.skipping, since)) {
    return;
  }
  if (::lseek(file.fd, 0, SEEK_SET) < 0) {
    throwErrno("lseek " + file.path);
  }
  file.pending.clear();
  file.scanned = 0;
  file.skipping = false;
  file.committed = file.batch_end = file.read_offset = file.pending_offset = 0;
  const std::int64_t seen_at = fileClockNanoseconds();
  file.head = readHead(file.fd, kHeadBytes);
  file.empty_at_ns = file.head.empty() ? seen_at : 0;
  file.empty_saved_ns = file.head.empty() ? savedEmptyTime(seen_at) : 0;
  store_.setFileOffset(key_, {file.inode, 0, file.head, file.empty_saved_ns});
  counters_->offset->set(0);
}

bool FileInput::checkRotation() {
  OpenFile& file = *file_;
  struct stat opened {};
  if (::fstat(file.fd, &opened) != 0) {
    throwErrno("fstat " + file.path);
  }
  if (!file.rotated && static_cast<std::uint64_t>(opened.st_size) < file.read_offset) {
    // copytruncate: the writer starts over at offset 0 of the same file.
    spdlog::warn("file input {}: truncated from {} to {} bytes; reading from the beginning", key_,
                 file.read_offset, opened.st_size);
    restartFile();
    return true;
  }

  struct stat current {};
  bool same_file = ::stat(options_.path.c_str(), &current) == 0 &&
                   static_cast<std::uint64_t>(current.st_ino) == file.inode &&
                   current.st_dev == opened.st_dev;
  if (same_file) {
    file.rotated = false;
    return false;
  }
  if (!file.rotated) {
    file.rotated = true;
    file.quiet_polls = 0;
    spdlog::info("file input {}: the path names a new file; finishing {} first", key_,
                 file.path);
  }
  // A complete copy gets no more lines, so waiting at its end would only
  // leave the file's new lines unread for a poll interval. A second
  // truncation meanwhile would move them into a copy that the input cannot
  // find, because it starts with other first bytes.
  if (!file.complete && ++file.quiet_polls < kRotationQuietPolls) {
    return false;
  }
  // The old file is complete. A last line without a newline will never get
  // one, so it is decoded as it is.
  if (!file.pending.empty() && !file.skipping) {
    decodeLine(file.pending, file.pending_offset);
    file.batch_end = file.read_offset;
    flushBatch();
  }
  // A copytruncate copy was counted as a truncation.
  if (!file.complete) {
    counters_->rotations->inc();
  }
  spdlog::info("file input {}: finished {} at offset {}", key_, file.path, file.read_offset);
  const bool was_copy = file.complete;
  const std::uint64_t truncated_inode = file.truncated_inode;
  const std::int64_t copy_mtime_ns = nanoseconds(opened.st_mtim);
  closeFile();
  // The file may have been truncated again after this copy was made, so
  // its lines since then are in a later copy. NOTE: a copy reopened after a
  // restart (openRotatedRemainder) is not marked complete, so the later
  // copies of that chain are not searched for.
  if (was_copy && openLaterCopy(truncated_inode, copy_mtime_ns)) {
    return true;
  }
  if (openFresh()) {
    return true;
  }
  store_.setFileOffset(key_, {kNoFileInode, 0, {}});
  counters_->offset->set(0);
  return false;
}

}  // namespace webtrap::collector
