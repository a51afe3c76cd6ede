#include "collector/ndjson_output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/config_table.h"
#include "common/config_values.h"
#include "common/error.h"
#include "common/file_io.h"

namespace webtrap::collector {
namespace {

constexpr const char* kSection = "outputs.ndjson";

std::string errnoText(int error) { return std::system_category().message(error); }

std::filesystem::path rotatedPath(const std::filesystem::path& path, std::uint32_t number) {
  return path.string() + "." + std::to_string(number);
}

bool pathExists(const std::filesystem::path& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

void renameOrThrow(const std::filesystem::path& from, const std::filesystem::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    int error = errno;
    throw TransientError(fmt::format("ndjson output: renaming {} to {} failed: {}", from.string(),
                                     to.string(), errnoText(error)));
  }
}

// Makes the creation or renames of `file` durable.
void syncFolderOf(const std::filesystem::path& file) {
  syncFolder(file.has_parent_path() ? file.parent_path() : std::filesystem::path("."));
}

}  // namespace

NdjsonOutputOptions parseNdjsonOutputOptions(const YAML::Node& node) {
  using namespace config_values;
  if (!node || !node.IsMap()) {
    throw ConfigError(fmt::format("{}: expected a map such as `ndjson: {{path: var/events.ndjson}}`",
                                  kSection));
  }
  NdjsonOutputOptions options;
  bool has_path = false;
  for (const auto& entry : node) {
    const std::string key = config_table::keyText(entry.first, std::string(kSection));
    const std::string path = std::string(kSection) + "." + key;
    if (key == "path") {
      std::string text = scalarText(entry.second, path);
      if (text.empty()) {
        throw ConfigError(fmt::format("{}: is empty; give the file to append events to", path));
      }
      options.path = text;
      has_path = true;
    } else if (key == "rotate_size") {
      options.rotate_size = parseBytes(scalarText(entry.second, path), path);
    } else if (key == "rotate_keep") {
      options.rotate_keep =
          narrow<std::uint32_t>(parseUnsigned(scalarText(entry.second, path), path), path);
    } else if (key == "batch_max_events" || key == "batch_max_bytes" || key == "flush_interval" ||
               key == "retry_initial" || key == "retry_max") {
      // Runner keys, checked by parseRunnerOptions().
    } else {
      throw ConfigError(fmt::format(
          "{}: unknown key; valid keys are path, rotate_size, rotate_keep, batch_max_events, "
          "batch_max_bytes, flush_interval, retry_initial and retry_max",
          path));
    }
  }
  if (!has_path) {
    throw ConfigError(fmt::format("{}.path: missing; give the file to append events to, such as "
                                  "`path: var/collector/events.ndjson`",
                                  kSection));
  }
  return options;
}

NdjsonOutput::NdjsonOutput(NdjsonOutputOptions options) : options_(std::move(options)) {
  try {
    openFile();
  } catch (const TransientError& e) {
    throw ConfigError(fmt::format("{}.path: {}; check the path and the permissions of its folder",
                                  kSection, e.what()));
  }
  spdlog::info("ndjson output: appending to {} ({} bytes already there)", options_.path.string(),
               size_);
}

NdjsonOutput::~NdjsonOutput() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

void NdjsonOutput::openFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  const auto& path = options_.path;
  if (path.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) {
      throw TransientError(fmt::format("ndjson output: creating the folder {} failed: {}",
                                       path.parent_path().string(), ec.message()));
    }
  }
  int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    int error = errno;
    throw TransientError(
        fmt::format("ndjson output: opening {} failed: {}", path.string(), errnoText(error)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int error = errno;
    ::close(fd);
    throw TransientError(
        fmt::format("ndjson output: reading the size of {} failed: {}", path.string(),
                    errnoText(error)));
  }
  fd_ = fd;
  inode_ = st.st_ino;
  size_ = static_cast<std::uint64_t>(st.st_size);
  cutPartialLastLine();
  if (size_ == 0) {
    // A new file: make its name durable too, not only the lines fsynced
    // into it later.
    syncFolderOf(path);
  }
}

void NdjsonOutput::cutPartialLastLine() {
  // A process killed inside write() can leave the start of a batch without
  // its last newline. That batch was never reported delivered, so the runner
  // sends it again, and the partial line is cut here before the resend.
  if (size_ == 0) {
    return;
  }
  std::uint64_t end = size_;
  char chunk[4096];
  while (end > 0) {
    std::size_t length = static_cast<std::size_t>(std::min<std::uint64_t>(end, sizeof chunk));
    ssize_t n = ::pread(fd_, chunk, length, static_cast<off_t>(end - length));
    if (n != static_cast<ssize_t>(length)) {
      spdlog::error("ndjson output: reading the end of {} failed: {}; a partial last line, if "
                    "any, stays",
                    options_.path.string(), n < 0 ? errnoText(errno) : "short read");
      return;
    }
    if (end == size_ && chunk[length - 1] == '\n') {
      return;
    }
    const char* newline = static_cast<const char*>(::memrchr(chunk, '\n', length));
    if (newline != nullptr) {
      end -= length - static_cast<std::size_t>(newline - chunk) - 1;
      break;
    }
    end -= length;
  }
  if (::ftruncate(fd_, static_cast<off_t>(end)) != 0 || ::fdatasync(fd_) != 0) {
    throw TransientError(fmt::format("ndjson output: cutting the partial last line of {} failed: {}",
                                     options_.path.string(), errnoText(errno)));
  }
  spdlog::warn("ndjson output: cut a partial last line of {} bytes from {} (left by a stop "
               "during a write; its events are sent again)",
               size_ - end, options_.path.string());
  size_ = end;
}

void NdjsonOutput::reopenIfMoved() {
  struct stat st {};
  if (fd_ >= 0 && ::stat(options_.path.c_str(), &st) == 0 && st.st_ino == inode_) {
    return;
  }
  if (fd_ >= 0) {
    spdlog::info("ndjson output: {} was moved or removed by another program; opening a new file",
                 options_.path.string());
  }
  openFile();
}

void NdjsonOutput::rotate() {
  const auto& path = options_.path;
  ::close(fd_);
  fd_ = -1;

  std::uint32_t top = options_.rotate_keep;
  if (top == 0) {
    // Keep them all: shift every numbered file up by one.
    top = 1;
    while (pathExists(rotatedPath(path, top))) {
      ++top;
    }
  } else if (pathExists(rotatedPath(path, top))) {
    std::error_code ec;
    std::filesystem::remove(rotatedPath(path, top), ec);
    if (ec) {
      spdlog::warn("ndjson output: deleting the oldest rotated file {} failed: {}",
                   rotatedPath(path, top).string(), ec.message());
    }
  }
  for (std::uint32_t number = top; number > 1; --number) {
    if (pathExists(rotatedPath(path, number - 1))) {
      renameOrThrow(rotatedPath(path, number - 1), rotatedPath(path, number));
    }
  }
  renameOrThrow(path, rotatedPath(path, 1));
  syncFolderOf(path);
  spdlog::info("ndjson output: rotated {} to {}", path.string(), rotatedPath(path, 1).string());
  openFile();
}

std::vector<ItemResult> NdjsonOutput::send(std::span<const StoredEvent> batch) {
  reopenIfMoved();

  std::vector<ItemResult> results(batch.size());
  std::string buffer;
  std::size_t total = 0;
  for (const auto& event : batch) {
    total += event.document.size() + 1;
  }
  buffer.reserve(total);
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const std::string& document = batch[i].document;
    if (document.find('\n') != std::string::npos) {
      results[i] = {Delivery::kRejected, "the document contains a newline, which would split "
                                         "its NDJSON line"};
      continue;
    }
    buffer.append(document);
    buffer.push_back('\n');
  }
  if (buffer.empty()) {
    return results;
  }

  if (options_.rotate_size > 0 && size_ > 0 && size_ + buffer.size() > options_.rotate_size) {
    rotate();
  }

  const std::uint64_t size_before = size_;
  int error = writeAll(fd_, buffer);
  if (error == 0 && ::fdatasync(fd_) != 0) {
    error = errno;
  }
  if (error != 0) {
    // Cut the partial batch off, so a resend does not leave a broken or
    // doubled line behind.
    if (::ftruncate(fd_, static_cast<off_t>(size_before)) != 0) {
      spdlog::error("ndjson output: cutting {} back to {} bytes after a failed write failed: {}",
                    options_.path.string(), size_before, errnoText(errno));
    }
    throw TransientError(fmt::format("ndjson output: writing {} bytes to {} failed: {}",
                                     buffer.size(), options_.path.string(), errnoText(error)));
  }
  size_ += buffer.size();
  return results;
}

}  // namespace webtrap::collector
