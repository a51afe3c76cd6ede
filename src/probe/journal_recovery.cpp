// Recovery of the inspection journal at start: see recoverJournal() in
// probe/journal.h.
#include "probe/journal.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
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

#include "collector/audit_record.h"
#include "common/error.h"
#include "common/file_io.h"
#include "probe/journal_entry.h"
#include "probe/journal_lines.h"

namespace webtrap::probe {

namespace {

using journal_lines::damagedCounter;
using journal_lines::listJournalFiles;
using journal_lines::ParsedLine;
using journal_lines::parseLine;
using journal_lines::recoveredCounter;
using journal_lines::rejectedCounter;
using journal_lines::skippedFilesCounter;

// Damaged lines, and rejected entries, logged one by one in a recovery. The
// rest are only counted.
constexpr std::uint64_t kDamagedLinesLogged = 10;

// Reads a whole regular file without following a symbolic link. Returns
// false, with errno set, when it cannot be read: ELOOP for a symbolic link
// and ENODEV for anything else that is not a regular file.
// NOTE: no size limit applies, so a file far larger than the writer's
// file_bytes (put there by hand, or a sparse file) is read into memory
// whole. The writer's own files stay near file_bytes plus one entry line,
// and an entry line has no fixed maximum size, so no limit is set here.
bool readFile(const std::filesystem::path& path, std::string& content) {
  // O_NONBLOCK keeps a FIFO named like a journal file from blocking the
  // start. It does not change reads of a regular file.
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    int error = errno;
    ::close(fd);
    errno = error;
    return false;
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    errno = ENODEV;
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

// Returns whether a failed readFile() skipped the file for its type.
bool isSkippedType(int error) { return error == ELOOP || error == ENODEV; }

// Returns an empty string when `record` is one the collector accepts, for
// the event `event_id`, with inspection status "interrupted". Otherwise
// returns why not.
std::string checkRecord(std::string_view record, std::string_view event_id) {
  collector::DecodeResult decoded =
      collector::decodeAuditRecord(record, collector::RecordFormat::kWebtrap, "inspection journal");
  if (!decoded.ok) {
    return "the collector's decoder rejects its record: " + decoded.error;
  }
  if (decoded.record.event_id != event_id) {
    return fmt::format("its record has the event id '{}'", decoded.record.event_id);
  }
  if (decoded.record.inspection_status != "interrupted") {
    return fmt::format("its record has the inspection status '{}'",
                       decoded.record.inspection_status);
  }
  return {};
}

// Returns the record of an entry line of kind `kind` (kEntry or
// kLegacyEntry) for the event `event_id`, whose payload after the event id
// is `body`. Returns std::nullopt, with the reason in `reason`, when the
// entry cannot be decoded or its record is not one the collector accepts.
std::optional<std::string> recordOfEntry(char kind, std::string_view event_id,
                                         std::string_view body, std::string& reason) {
  std::string record;
  if (kind == journal_lines::kLegacyEntry) {
    record = body;
  } else {
    std::string entry;
    if (!journal_lines::unescapeEntry(body, entry)) {
      reason = "invalid escape sequence in the entry";
      return std::nullopt;
    }
    std::optional<JournalEntry> decoded = decodeJournalEntry(entry, event_id, reason);
    if (!decoded) {
      return std::nullopt;
    }
    record = serializeInterruptedRecord(*decoded);
  }
  reason = checkRecord(record, event_id);
  if (!reason.empty()) {
    return std::nullopt;
  }
  return record;
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
  Counter& rejected_total = rejectedCounter(metrics);
  Counter& skipped_files_total = skippedFilesCounter(metrics);
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
      if (!parsed || parsed->kind != journal_lines::kDone) {
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
  std::vector<std::uint64_t> kept_files;
  for (std::uint64_t number : numbers) {
    std::filesystem::path path = dir / journalFileName(number);
    if (!readFile(path, content)) {
      int read_error = errno;
      kept_files.push_back(number);
      if (isSkippedType(read_error)) {
        ++result.skipped_files;
        skipped_files_total.inc();
        spdlog::warn("journal: skipping {}: {}; recovery reads only regular files, and leaves "
                     "this one in place; move it out of the journal folder",
                     path.string(),
                     read_error == ELOOP ? "it is a symbolic link" : "it is not a regular file");
        continue;
      }
      // NOTE: the file is kept, so the next start tries again, but its
      // entries are not in this run's spool.
      spdlog::error("journal: reading {} failed: {}; its queued requests are not recovered, "
                    "and the file is kept for the next start",
                    path.string(), std::strerror(read_error));
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
      if (parsed->kind == journal_lines::kDone) {
        return;
      }
      ++result.entries;
      if (parsed->kind == journal_lines::kLegacyEntry) {
        ++result.legacy;
      }
      std::size_t space = parsed->payload.find(' ');
      std::string_view event_id = parsed->payload.substr(0, space);
      if (done.contains(std::string(event_id))) {
        ++result.skipped_done;
        return;
      }
      std::string rejection;
      std::optional<std::string> record =
          recordOfEntry(parsed->kind, event_id, parsed->payload.substr(space + 1), rejection);
      if (!record) {
        ++result.rejected;
        rejected_total.inc();
        if (result.rejected <= kDamagedLinesLogged) {
          spdlog::error("journal: rejecting entry file={} offset={} event_id={} reason={}; "
                        "this request has no record",
                        path.string(), offset, event_id, rejection);
        }
        return;
      }
      if (spool.append(*record) == AppendResult::kWritten) {
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
    if (std::find(kept_files.begin(), kept_files.end(), number) != kept_files.end()) {
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
  if (result.rejected > kDamagedLinesLogged) {
    spdlog::error("journal: {} more entries rejected without a log line",
                  result.rejected - kDamagedLinesLogged);
  }
  bool lost = result.dropped > 0 || result.rejected > 0 || result.skipped_files > 0;
  auto log_level = lost ? spdlog::level::warn : spdlog::level::info;
  // Recovery does not read the spool, so it cannot tell which recovered
  // records were spooled before the kill without their done id.
  spdlog::log(log_level,
              "journal: recovery done files={} entries={} recovered={} skipped_done={} "
              "damaged_lines={} dropped_by_spool={} rejected={} legacy_entries={} "
              "skipped_files={}; recovered may include records already spooled whose done id "
              "was not yet written, and the collector keeps one per event id",
              result.files, result.entries, result.recovered, result.skipped_done, result.damaged,
              result.dropped, result.rejected, result.legacy, result.skipped_files);
  return result;
}

}  // namespace webtrap::probe
