// Recovery of the inspection journal at start: see recoverJournal() in
// probe/journal.h.
#include "probe/journal.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "collector/audit_record.h"
#include "common/error.h"
#include "common/file_io.h"
#include "probe/inspector.h"
#include "probe/journal_entry.h"
#include "probe/journal_lines.h"
#include "probe/record.h"

namespace webtrap::probe {

namespace {

using journal_lines::damagedCounter;
using journal_lines::inspectedCounter;
using journal_lines::listJournalFiles;
using journal_lines::oversizedFilesCounter;
using journal_lines::ParsedLine;
using journal_lines::parseLine;
using journal_lines::recoveredCounter;
using journal_lines::rejectedCounter;
using journal_lines::skippedFilesCounter;
using journal_lines::Uninspected;
using journal_lines::uninspectedCounter;

// Damaged lines, rejected entries and failed inspections, each logged one by
// one in a recovery. The rest are only counted.
constexpr std::uint64_t kDamagedLinesLogged = 10;

// Interval between two progress lines of a long recovery.
constexpr auto kProgressInterval = std::chrono::seconds(10);

// Reads a whole regular file of at most `max_bytes` bytes without following
// a symbolic link. Returns false, with errno set, when it cannot be read:
// ELOOP for a symbolic link, ENODEV for anything else that is not a regular
// file, and EFBIG for a file larger than `max_bytes` (its size is then in
// `size`). A sparse file counts at its apparent size.
bool readFile(const std::filesystem::path& path, std::uint64_t max_bytes, std::string& content,
              std::uint64_t& size) {
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
  size = static_cast<std::uint64_t>(info.st_size);
  if (size > max_bytes) {
    ::close(fd);
    errno = EFBIG;
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
    // A file that grows while it is read is held to the same limit.
    if (content.size() > max_bytes) {
      size = content.size();
      content.clear();
      ::close(fd);
      errno = EFBIG;
      return false;
    }
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
// the event `event_id`, with inspection status `status` and the recovered
// mark. Otherwise returns why not.
std::string checkRecord(std::string_view record, std::string_view event_id,
                        std::string_view status) {
  collector::DecodeResult decoded =
      collector::decodeAuditRecord(record, collector::RecordFormat::kWebtrap, "inspection journal");
  if (!decoded.ok) {
    return "the collector's decoder rejects its record: " + decoded.error;
  }
  if (decoded.record.event_id != event_id) {
    return fmt::format("its record has the event id '{}'", decoded.record.event_id);
  }
  if (decoded.record.inspection_status != status) {
    return fmt::format("its record has the inspection status '{}'",
                       decoded.record.inspection_status);
  }
  if (!decoded.record.inspection_recovered) {
    return "its record lacks webtrap.inspection.recovered";
  }
  return {};
}

// Adds the recovered mark to the record of an E line, unless it has it.
// Probes before the mark wrote these records with status "interrupted"
// right after the "inspection" key. Quotes inside JSON strings are
// escaped, so the searched bytes occur only as the object's own key and
// status. A record without them is left as it is, and checkRecord()
// rejects it.
void markLegacyRecord(std::string& record) {
  static constexpr std::string_view kStart = R"("inspection":{"status":"interrupted")";
  static constexpr std::string_view kMark = R"(,"recovered":true)";
  std::size_t at = record.find(kStart);
  if (at == std::string::npos) {
    return;
  }
  at += kStart.size();
  if (std::string_view(record).substr(at).starts_with(kMark)) {
    return;
  }
  record.insert(at, kMark);
}

// One entry's record, and whether and why it was left uninspected.
struct BuiltRecord {
  std::string record;
  bool inspected = false;
  Uninspected reason = Uninspected::kNoInspector;
  std::string failure;  // why the inspection failed, for kFailed
};

// Builds the records of the entries of one recovery, inspecting them with
// the options' inspection while the limit allows.
class RecordBuilder {
 public:
  explicit RecordBuilder(const RecoveryOptions& options)
      : options_(options), started_(std::chrono::steady_clock::now()) {}

  // Returns the record of an entry line of kind `kind` (kEntry or
  // kLegacyEntry) for the event `event_id`, whose payload after the event
  // id is `body`. `within_limit` is false for an entry past the first
  // max_inspections, which is recorded uninspected. Returns std::nullopt,
  // with the reason in `reason`, when the entry cannot be decoded or no
  // record of it is one the collector accepts.
  std::optional<BuiltRecord> build(char kind, std::string_view event_id, std::string_view body,
                                   bool within_limit, std::string& reason) {
    BuiltRecord built;
    if (kind == journal_lines::kLegacyEntry) {
      built.record = body;
      built.reason = Uninspected::kLegacyEntry;
      markLegacyRecord(built.record);
      reason = checkRecord(built.record, event_id, "interrupted");
      if (!reason.empty()) {
        return std::nullopt;
      }
      return built;
    }

    std::string entry_bytes;
    if (!journal_lines::unescapeEntry(body, entry_bytes)) {
      reason = "invalid escape sequence in the entry";
      return std::nullopt;
    }
    std::optional<JournalEntry> entry = decodeJournalEntry(entry_bytes, event_id, reason);
    if (!entry) {
      return std::nullopt;
    }
    if (!options_.inspect) {
      built.reason = Uninspected::kNoInspector;
    } else if (!within_limit ||
               std::chrono::steady_clock::now() - started_ >= options_.max_inspection_time) {
      built.reason = Uninspected::kLimit;
    } else {
      if (inspect(*entry, event_id, built)) {
        return built;
      }
    }

    InspectionResult interrupted = interruptedInspection();
    if (!built.failure.empty()) {
      interrupted.error += "; its inspection at the start failed: " + built.failure;
    }
    built.record =
        serializeRecord(entry->request, entry->response, entry->outcome, interrupted, entry->meta);
    reason = checkRecord(built.record, event_id, "interrupted");
    if (!reason.empty()) {
      return std::nullopt;
    }
    return built;
  }

 private:
  // Inspects `entry` and writes its record to `built` as a pipeline worker
  // does, with the recovered mark. Returns false, with the reason in
  // built.failure and the entry unchanged, when the inspection failed.
  bool inspect(JournalEntry& entry, std::string_view event_id, BuiltRecord& built) {
    built.reason = Uninspected::kFailed;
    const std::int64_t uninspected_us = entry.request.timings.inspection_us;
    try {
      InspectionResult result = options_.inspect(entry);
      if (result.status == InspectionStatus::kFailed) {
        built.failure = result.error.empty() ? "libmodsecurity failed" : result.error;
        return false;
      }
      result.recovered = true;
      RecordMeta meta = entry.meta;
      meta.engine_version = options_.engine_version;
      meta.components = options_.components;
      // The step Pipeline::runWorker takes between inspect() and the record.
      entry.request.timings.inspection_us = result.duration_us;
      std::string record =
          serializeRecord(entry.request, entry.response, entry.outcome, result, meta);
      std::string rejection = checkRecord(record, event_id, toString(result.status));
      if (!rejection.empty()) {
        entry.request.timings.inspection_us = uninspected_us;
        built.failure = "the inspected record is invalid: " + rejection;
        return false;
      }
      built.record = std::move(record);
      built.inspected = true;
      return true;
    } catch (const std::exception& error) {
      entry.request.timings.inspection_us = uninspected_us;
      built.failure = fmt::format("exception: {}", error.what());
      return false;
    }
  }

  const RecoveryOptions& options_;
  std::chrono::steady_clock::time_point started_;
};

// Entries built per thread before their records go to the spool.
constexpr std::size_t kEntriesPerThreadChunk = 32;

// One entry line of a journal file, and what build() made of it.
struct EntryWork {
  std::size_t offset = 0;
  char kind = 0;
  std::string_view event_id;
  std::string_view body;
  // True for the first max_inspections entry lines (R) of the recovery,
  // also those that then fail to decode. It is set in the journal's order
  // before the threads build the entries, so their timing does not choose
  // which entries are inspected.
  bool within_limit = false;
  std::optional<BuiltRecord> built;
  std::string rejection;
};

// Runs builder.build() for every item of `work`, on up to `threads`
// threads that take items in turn, so one slow inspection holds up no other.
void buildAll(RecordBuilder& builder, std::span<EntryWork> work, unsigned threads) {
  std::atomic<std::size_t> next = 0;

  // The first exception of any thread (std::bad_alloc, say) stops the
  // others from taking items and goes to the caller after they end, as it
  // did when one thread built every entry.
  std::mutex failure_mutex;
  std::exception_ptr failure;
  auto run = [&] {
    try {
      for (std::size_t i = next.fetch_add(1); i < work.size(); i = next.fetch_add(1)) {
        EntryWork& item = work[i];
        item.built =
            builder.build(item.kind, item.event_id, item.body, item.within_limit, item.rejection);
      }
    } catch (...) {
      next.store(work.size());
      std::lock_guard lock(failure_mutex);
      if (!failure) {
        failure = std::current_exception();
      }
    }
  };

  std::vector<std::thread> helpers;
  const std::size_t count = std::min<std::size_t>(threads, work.size());
  for (std::size_t i = 1; i < count; ++i) {
    helpers.emplace_back(run);
  }
  run();
  for (std::thread& helper : helpers) {
    helper.join();
  }

  if (failure) {
    std::rethrow_exception(failure);
  }
}

}  // namespace

namespace {

// Creates `dir` if needed and takes an exclusive flock(2) on it.
// `folder_kind` names the folder in errors, such as "inspection journal
// folder".
std::unique_ptr<FileHandle> lockFolder(const std::filesystem::path& dir,
                                       std::string_view folder_kind) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    throw ConfigError(fmt::format("{} '{}' cannot be created: {}; move away what has its name, "
                                  "or make spool.dir writable",
                                  folder_kind, dir.string(), error.message()));
  }
  auto handle = std::make_unique<FileHandle>(
      ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (handle->fd < 0) {
    throw ConfigError(fmt::format("{} '{}' cannot be opened: {}; move away what has its name, or "
                                  "make it readable",
                                  folder_kind, dir.string(), std::strerror(errno)));
  }
  if (::flock(handle->fd, LOCK_EX | LOCK_NB) != 0) {
    int lock_error = errno;
    if (lock_error == EWOULDBLOCK) {
      throw ConfigError(fmt::format("{} '{}' is locked by another process, most likely a probe "
                                    "running on the same spool.dir; give each probe its own "
                                    "spool.dir (--spool DIR)",
                                    folder_kind, dir.string()));
    }
    throw ConfigError(fmt::format("{} '{}' cannot be locked: {}; put spool.dir on a local file "
                                  "system that supports flock(2)",
                                  folder_kind, dir.string(), std::strerror(lock_error)));
  }
  return handle;
}

}  // namespace

std::unique_ptr<FileHandle> lockJournalDirectory(const std::filesystem::path& dir) {
  return lockFolder(dir, "inspection journal folder");
}

std::unique_ptr<FileHandle> lockSpoolDirectory(const std::filesystem::path& dir) {
  return lockFolder(dir, "spool folder");
}

std::uint64_t maxRecoveryFileBytes(std::uint64_t file_bytes, std::uint64_t body_capture_bytes) {
  return 2 * file_bytes + 4 * body_capture_bytes + (16ull << 20);
}

RecoveryOptions inspectingRecovery(Inspector& inspector, std::uint64_t max_inspections,
                                   std::uint64_t max_file_bytes) {
  RecoveryOptions options;
  options.inspect = [&inspector](const JournalEntry& entry) {
    return inspector.inspect(entry.request, entry.response, entry.outcome, entry.meta.event_id);
  };
  options.engine_version = inspector.engineVersion();
  options.components = inspector.components();
  options.max_inspections = max_inspections;
  options.max_file_bytes = max_file_bytes;
  return options;
}

JournalRecovery recoverJournal(const std::filesystem::path& dir, Spool& spool,
                               MetricsRegistry& metrics, const RecoveryOptions& options) {
  Counter& recovered_total = recoveredCounter(metrics);
  Counter& inspected_total = inspectedCounter(metrics);
  Counter& damaged_total = damagedCounter(metrics);
  Counter& rejected_total = rejectedCounter(metrics);
  Counter& skipped_files_total = skippedFilesCounter(metrics);
  Counter& oversized_files_total = oversizedFilesCounter(metrics);
  for (Uninspected reason : journal_lines::kUninspectedReasons) {
    uninspectedCounter(metrics, reason);
  }
  JournalRecovery result;
  std::error_code error;
  if (!std::filesystem::exists(dir, error)) {
    return result;
  }
  std::vector<std::uint64_t> numbers = listJournalFiles(dir);
  if (numbers.empty()) {
    return result;
  }
  const auto started = std::chrono::steady_clock::now();
  auto next_progress = started + kProgressInterval;
  spdlog::info("journal: recovering queued requests of the last run dir={} files={} "
               "inspection={} max_inspections={} max_file_bytes={}",
               dir.string(), numbers.size(), options.inspect ? "on" : "off",
               options.max_inspections, options.max_file_bytes);

  // Pass 1: the done ids. A done line always follows its entry, in the same
  // file or a later one, so every file is read before any entry is replayed.
  // Damaged lines and oversized files are counted in pass 2.
  std::unordered_set<std::string> done;
  std::string content;
  std::uint64_t size = 0;
  for (std::uint64_t number : numbers) {
    if (!readFile(dir / journalFileName(number), options.max_file_bytes, content, size)) {
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
  // NOTE: entries are inspected before the probe takes traffic, on
  // inspect_threads threads. 78 POSTs of 900 form fields took 3.5 s on one
  // thread in the integration test on a shared 2-CPU VM, so
  // max_inspection_time (pipeline.recovery_timeout, 10 s by default) bounds
  // the wait, and a queue of such requests past it comes back uninspected.
  RecordBuilder builder(options);
  std::uint64_t past_limit = 0;  // entries left uninspected by max_inspections
  std::uint64_t inspectable = 0;  // entry lines (R) met so far, in the journal's order
  std::vector<std::uint64_t> kept_files;
  for (std::uint64_t number : numbers) {
    std::filesystem::path path = dir / journalFileName(number);
    if (!readFile(path, options.max_file_bytes, content, size)) {
      int read_error = errno;
      kept_files.push_back(number);
      if (read_error == EFBIG) {
        ++result.oversized_files;
        oversized_files_total.inc();
        spdlog::error("journal: skipping {}: its size {} bytes is over the {} bytes recovery "
                      "reads, far more than the journal writes to one file; its queued requests "
                      "are not recovered, and the file is kept. Move it out of the journal "
                      "folder; the next start skips it again while it is there",
                      path.string(), size, options.max_file_bytes);
        continue;
      }
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
    // The entries of the file are built on several threads, then appended
    // to the spool in the file's order.
    std::vector<EntryWork> work;
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
      EntryWork& item = work.emplace_back();
      item.offset = offset;
      item.kind = parsed->kind;
      item.event_id = event_id;
      item.body = parsed->payload.substr(space + 1);
      if (parsed->kind == journal_lines::kEntry) {
        item.within_limit = inspectable < options.max_inspections;
        ++inspectable;
      }
    });
    // Built in chunks, so that only one chunk's records are in memory at once.
    const unsigned threads = std::max(1u, options.inspect_threads);
    const std::size_t chunk = kEntriesPerThreadChunk * threads;
    for (std::size_t first = 0; first < work.size(); first += chunk) {
      std::span<EntryWork> part =
          std::span<EntryWork>(work).subspan(first, std::min(chunk, work.size() - first));
      buildAll(builder, part, threads);
      for (EntryWork& item : part) {
        if (!item.built) {
          ++result.rejected;
          rejected_total.inc();
          if (result.rejected <= kDamagedLinesLogged) {
            spdlog::error(
                "journal: rejecting entry file={} offset={} event_id={} reason={}; "
                "this request has no record",
                path.string(), item.offset, item.event_id, item.rejection);
          }
          continue;
        }
        BuiltRecord& built = *item.built;
        if (built.inspected) {
          ++result.inspected;
          inspected_total.inc();
        } else {
          ++result.uninspected;
          uninspectedCounter(metrics, built.reason).inc();
          past_limit += built.reason == Uninspected::kLimit ? 1 : 0;
        }
        if (!built.inspected && built.reason == Uninspected::kFailed) {
          ++result.inspection_failed;
          if (result.inspection_failed <= kDamagedLinesLogged) {
            spdlog::error(
                "journal: inspecting recovered entry failed file={} offset={} "
                "event_id={} error={}; its record has status interrupted and no rule "
                "matches",
                path.string(), item.offset, item.event_id, built.failure);
          }
        }
        if (spool.append(built.record) == AppendResult::kWritten) {
          ++result.recovered;
          recovered_total.inc();
        } else {
          ++result.dropped;
        }
        auto now = std::chrono::steady_clock::now();
        if (now >= next_progress) {
          next_progress = now + kProgressInterval;
          spdlog::info(
              "journal: recovery in progress file={} recovered={} inspected={} "
              "elapsed_ms={}",
              path.string(), result.recovered, result.inspected,
              std::chrono::duration_cast<std::chrono::milliseconds>(now - started).count());
        }
        item.built.reset();
      }
    }
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
  if (result.inspection_failed > kDamagedLinesLogged) {
    spdlog::error("journal: {} more failed inspections of recovered entries without a log line",
                  result.inspection_failed - kDamagedLinesLogged);
  }
  if (past_limit > 0) {
    spdlog::warn("journal: {} recovered entries were not inspected, so their records have "
                 "status interrupted and no rule matches: a recovery inspects at most {} entries "
                 "(pipeline.queue_limit + pipeline.workers + limits.max_connections) for at "
                 "most {} ms (pipeline.recovery_timeout)",
                 past_limit, options.max_inspections, options.max_inspection_time.count());
  }
  bool lost = result.dropped > 0 || result.rejected > 0 || result.skipped_files > 0 ||
              result.oversized_files > 0 || result.inspection_failed > 0;
  auto log_level = lost ? spdlog::level::warn : spdlog::level::info;
  auto duration = std::chrono::steady_clock::now() - started;
  // Recovery does not read the spool, so it cannot tell which recovered
  // records were spooled before the kill without their done id.
  spdlog::log(log_level,
              "journal: recovery done files={} entries={} recovered={} skipped_done={} "
              "damaged_lines={} dropped_by_spool={} rejected={} legacy_entries={} "
              "skipped_files={} oversized_files={} inspected={} uninspected={} "
              "inspection_failures={} duration_ms={}; recovered may include records already "
              "spooled whose done id was not yet written, and the collector keeps one per "
              "event id",
              result.files, result.entries, result.recovered, result.skipped_done, result.damaged,
              result.dropped, result.rejected, result.legacy, result.skipped_files,
              result.oversized_files, result.inspected, result.uninspected,
              result.inspection_failed,
              std::chrono::duration_cast<std::chrono::milliseconds>(duration).count());
  return result;
}

}  // namespace webtrap::probe
