// Recovery of the inspection journal at start: see recoverJournal() in
// probe/journal.h.
#include "probe/journal.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <system_error>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/file_io.h"
#include "probe/journal_lines.h"

namespace webtrap::probe {

namespace {

using journal_lines::damagedCounter;
using journal_lines::listJournalFiles;
using journal_lines::ParsedLine;
using journal_lines::parseLine;
using journal_lines::recoveredCounter;

// Damaged lines logged one by one in a recovery; the rest are only counted.
constexpr std::uint64_t kDamagedLinesLogged = 10;

// Reads a whole file. Returns false, with errno set, when it cannot be read.
bool readFile(const std::filesystem::path& path, std::string& content) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  content.clear();
  char buffer[64 * 1024];
  while (true) {
    ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got < 0) {
      int error = errno;
      ::close(fd);
      errno = error;
      return false;
    }
    if (got == 0) {
      break;
    }
    content.append(buffer, static_cast<std::size_t>(got));
  }
  ::close(fd);
  return true;
}

// Calls `visit(offset, line, whole)` for each line of `content`, without its
// newline. A last line without a newline is passed with `whole` false.
template <typename Visit>
void forEachLine(std::string_view content, Visit visit) {
  std::size_t start = 0;
  while (start < content.size()) {
    std::size_t end = content.find('\n', start);
    if (end == std::string_view::npos) {
      visit(start, content.substr(start), false);
      return;
    }
    visit(start, content.substr(start, end - start), true);
    start = end + 1;
  }
}

}  // namespace

std::unique_ptr<FileHandle> lockJournalDirectory(const std::filesystem::path& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    throw ConfigError(fmt::format("inspection journal folder '{}' cannot be created: {}; move "
                                  "away what has its name, or make spool.dir writable",
                                  dir.string(), error.message()));
  }
  auto handle = std::make_unique<FileHandle>(
      ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (handle->fd < 0) {
    throw ConfigError(fmt::format("inspection journal folder '{}' cannot be opened: {}; move "
                                  "away what has its name, or make it readable",
                                  dir.string(), std::strerror(errno)));
  }
  if (::flock(handle->fd, LOCK_EX | LOCK_NB) != 0) {
    int lock_error = errno;
    if (lock_error == EWOULDBLOCK) {
      throw ConfigError(fmt::format("inspection journal folder '{}' is locked by another process, "
                                    "most likely a probe running on the same spool.dir; give "
                                    "each probe its own spool.dir",
                                    dir.string()));
    }
    throw ConfigError(fmt::format("inspection journal folder '{}' cannot be locked: {}; put "
                                  "spool.dir on a local file system that supports flock(2)",
                                  dir.string(), std::strerror(lock_error)));
  }
  return handle;
}

JournalRecovery recoverJournal(const std::filesystem::path& dir, Spool& spool,
                               MetricsRegistry& metrics) {
  Counter& recovered_total = recoveredCounter(metrics);
  Counter& damaged_total = damagedCounter(metrics);
  JournalRecovery result;
  std::error_code error;
  if (!std::filesystem::exists(dir, error)) {
    return result;
  }
  std::vector<std::uint64_t> numbers = listJournalFiles(dir);
  if (numbers.empty()) {
    return result;
  }
  spdlog::info("journal: recovering queued requests of the last run dir={} files={}",
               dir.string(), numbers.size());

  // Pass 1: the done ids. A done line always follows its entry, in the same
  // file or a later one, so every file is read before any entry is replayed.
  // Damaged lines are counted in pass 2.
  std::unordered_set<std::string> done;
  std::string content;
  for (std::uint64_t number : numbers) {
    if (!readFile(dir / journalFileName(number), content)) {
      continue;
    }
    forEachLine(content, [&](std::size_t, std::string_view line, bool whole) {
      const char* reason = nullptr;
      std::optional<ParsedLine> parsed = whole ? parseLine(line, reason) : std::nullopt;
      if (!parsed || parsed->kind != 'D') {
        return;
      }
      std::string_view ids = parsed->payload;
      while (!ids.empty()) {
        std::size_t space = ids.find(' ');
        done.emplace(ids.substr(0, space));
        ids = space == std::string_view::npos ? std::string_view() : ids.substr(space + 1);
      }
    });
  }

  // Pass 2: every entry that no done line names goes to the spool.
  std::vector<std::uint64_t> unreadable;
  for (std::uint64_t number : numbers) {
    std::filesystem::path path = dir / journalFileName(number);
    if (!readFile(path, content)) {
      int read_error = errno;
      // NOTE: the file is kept, so the next start tries again, but its
      // entries are not in this run's spool.
      spdlog::error("journal: reading {} failed: {}; its queued requests are not recovered, "
                    "and the file is kept for the next start",
                    path.string(), std::strerror(read_error));
      unreadable.push_back(number);
      continue;
    }
    ++result.files;
    forEachLine(content, [&](std::size_t offset, std::string_view line, bool whole) {
      const char* reason = "line without its newline (the write was cut short)";
      std::optional<ParsedLine> parsed = whole ? parseLine(line, reason) : std::nullopt;
      if (!parsed) {
        ++result.damaged;
        damaged_total.inc();
        if (result.damaged <= kDamagedLinesLogged) {
          spdlog::warn("journal: skipping damaged line file={} offset={} bytes={} reason={}",
                       path.string(), offset, line.size(), reason);
        }
        return;
      }
      if (parsed->kind != 'E') {
        return;
      }
      ++result.entries;
      std::size_t space = parsed->payload.find(' ');
      std::string event_id(parsed->payload.substr(0, space));
      if (done.contains(event_id)) {
        ++result.skipped_done;
        return;
      }
      if (spool.append(parsed->payload.substr(space + 1)) == AppendResult::kWritten) {
        ++result.recovered;
        recovered_total.inc();
      } else {
        ++result.dropped;
      }
    });
  }

  // The recovered records must be on disk before their journal goes.
  spool.flush();
  for (std::uint64_t number : numbers) {
    if (std::find(unreadable.begin(), unreadable.end(), number) != unreadable.end()) {
      continue;
    }
    std::filesystem::path path = dir / journalFileName(number);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      spdlog::error("journal: deleting {} failed: {}; the next start recovers its requests "
                    "again, as duplicates",
                    path.string(), std::strerror(errno));
    }
  }
  syncFolder(dir);

  if (result.damaged > kDamagedLinesLogged) {
    spdlog::warn("journal: {} more damaged lines skipped without a log line",
                 result.damaged - kDamagedLinesLogged);
  }
  auto log_level = result.dropped > 0 ? spdlog::level::warn : spdlog::level::info;
  // Recovery does not read the spool, so it cannot tell which recovered
  // records were spooled before the kill without their done id.
  spdlog::log(log_level,
              "journal: recovery done files={} entries={} recovered={} skipped_done={} "
              "damaged_lines={} dropped_by_spool={}; recovered may include records already spooled "
              "whose done id was not yet written, and the collector keeps one per event id",
              result.files, result.entries, result.recovered, result.skipped_done, result.damaged,
              result.dropped);
  return result;
}

}  // namespace webtrap::probe
