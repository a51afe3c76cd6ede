#include "probe/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/file_io.h"
#include "common/log_throttle.h"
#include "probe/journal_lines.h"

namespace webtrap::probe {

namespace {

using journal_lines::damagedCounter;
using journal_lines::listJournalFiles;
using journal_lines::makeEntryLine;
using journal_lines::makeLine;
using journal_lines::recoveredCounter;
using journal_lines::rejectedCounter;
using journal_lines::skippedFilesCounter;

constexpr int kMaxCreateAttempts = 1000;

struct JournalFile {
  std::uint64_t bytes = 0;
  std::uint64_t pending = 0;  // entries not yet marked done
};

}  // namespace

struct InspectionJournal::Impl {
  Impl(const JournalConfig& journal_config, Spool& journal_spool, MetricsRegistry& metrics);

  std::uint64_t append(std::string_view event_id, std::string_view entry);
  void markDone(std::uint64_t ticket, std::string_view event_id);
  void commit();
  void close();
  void stop();

  bool openFile();
  void closeFile();
  bool writeLine(const std::string& line);
  void writeDoneLocked(const std::string& ids);
  std::vector<std::uint64_t> takeFinishedLocked();
  void deleteFiles(const std::vector<std::uint64_t>& numbers);
  void syncFile(const std::shared_ptr<FileHandle>& handle);
  void countWriteError(int error, const char* operation);
  void updateGauges();
  void runSyncThread();

  std::filesystem::path path(std::uint64_t number) const {
    return config.dir / journalFileName(number);
  }

  // Whether journal lines are fdatasynced, at each commit and when a file
  // is closed. Only under kAlways, because an fdatasync of the file that the
  // I/O threads append to stalls their writes. In one measurement at 3,000
  // GET/s on loopback (bench/constant_rate_load.cpp, shared 2-CPU VM), p99
  // response time was about 1.1 ms with it and 0.5 ms without.
  bool syncsData() const { return config.fsync == FsyncPolicy::kAlways; }

  JournalConfig config;
  Spool& spool;

  Counter& entries_total;
  Counter& write_errors;
  Gauge& bytes_gauge;
  Gauge& pending_gauge;

  mutable std::mutex mutex;
  std::map<std::uint64_t, JournalFile> files;  // this run's files, oldest first
  std::shared_ptr<FileHandle> file;            // the open file, the last in `files`
  std::uint64_t current = 0;                   // its number, 0 when none is open
  std::uint64_t next_number = 1;
  std::uint64_t total_bytes = 0;
  std::uint64_t total_pending = 0;
  std::string done_ids;  // space-separated, not yet written
  std::size_t done_count = 0;
  LogThrottle error_log{std::chrono::seconds(10)};

  bool dirty = false;
  bool stopping = false;
  std::condition_variable wake_sync;
  std::thread sync_thread;
};

InspectionJournal::Impl::Impl(const JournalConfig& journal_config, Spool& journal_spool,
                              MetricsRegistry& metrics)
    : config(journal_config),
      spool(journal_spool),
      entries_total(metrics.counter(
          "webtrap_journal_entries_total",
          "Requests written to the inspection journal before their response (queued or shed).")),
      write_errors(metrics.counter(
          "webtrap_journal_write_errors_total",
          "Failed inspection journal writes; each leaves a queued request unprotected.")),
      bytes_gauge(metrics.gauge("webtrap_journal_bytes", "Bytes in this run's journal files.")),
      pending_gauge(metrics.gauge("webtrap_journal_pending",
                                  "Journal entries whose record is not yet in the spool.")) {
  // Register the recovery counters too, so /metrics shows them as 0.
  recoveredCounter(metrics);
  journal_lines::inspectedCounter(metrics);
  for (journal_lines::Uninspected reason : journal_lines::kUninspectedReasons) {
    journal_lines::uninspectedCounter(metrics, reason);
  }
  damagedCounter(metrics);
  rejectedCounter(metrics);
  skippedFilesCounter(metrics);
  journal_lines::oversizedFilesCounter(metrics);
  if (config.file_bytes == 0) {
    throw ConfigError("inspection journal: file_bytes is 0; use a positive size");
  }
  if (config.fsync == FsyncPolicy::kInterval && config.fsync_interval_ms == 0) {
    throw ConfigError(
        "spool.fsync_interval is 0: set a positive interval or use spool.fsync: always");
  }
  std::error_code error;
  std::filesystem::create_directories(config.dir, error);
  if (error) {
    throw ConfigError(fmt::format("inspection journal folder '{}' cannot be created: {}; make "
                                  "spool.dir writable or set pipeline.journal: false",
                                  config.dir.string(), error.message()));
  }
  // Files left by a recovery that could not delete them are kept for the
  // next recovery. This run numbers its files after them.
  std::vector<std::uint64_t> left = listJournalFiles(config.dir);
  if (!left.empty()) {
    next_number = left.back() + 1;
  }
  if (config.fsync != FsyncPolicy::kNever) {
    sync_thread = std::thread([this] { runSyncThread(); });
  }
}

bool InspectionJournal::Impl::openFile() {
  for (int attempt = 0; attempt < kMaxCreateAttempts; ++attempt) {
    std::uint64_t number = next_number++;
    int fd = ::open(path(number).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC,
                    0640);
    if (fd < 0 && errno == EEXIST) {
      continue;
    }
    if (fd < 0) {
      return false;
    }
    file = std::make_shared<FileHandle>(fd);
    current = number;
    files[number] = JournalFile{};
    if (config.fsync != FsyncPolicy::kNever) {
      syncFolder(config.dir);
    }
    return true;
  }
  errno = EEXIST;
  return false;
}

// Closes the open file, synced unless the policy is kNever. Its entries
// stay pending in `files`.
void InspectionJournal::Impl::closeFile() {
  if (file && syncsData()) {
    syncFile(file);
  }
  file.reset();
  current = 0;
}

bool InspectionJournal::Impl::writeLine(const std::string& line) {
  JournalFile& target = files[current];
  int error = writeAll(file->fd, line);
  if (error == 0) {
    target.bytes += line.size();
    total_bytes += line.size();
    if (syncsData()) {
      dirty = true;
    }
    return true;
  }
  // Cut a torn line back off, so the next line does not join it. When that
  // fails, the file is closed: recovery then finds one damaged line at its
  // end.
  if (::ftruncate(file->fd, static_cast<off_t>(target.bytes)) != 0) {
    struct stat info {};
    if (::fstat(file->fd, &info) == 0 && static_cast<std::uint64_t>(info.st_size) > target.bytes) {
      total_bytes += static_cast<std::uint64_t>(info.st_size) - target.bytes;
      target.bytes = static_cast<std::uint64_t>(info.st_size);
    }
    closeFile();
  }
  errno = error;
  return false;
}

void InspectionJournal::Impl::countWriteError(int error, const char* operation) {
  write_errors.inc();
  if (error_log.admit()) {
    spdlog::error("journal: {} failed in {}: {}; queued requests are not protected against a "
                  "kill until writes work again (lines left out of this log: {})",
                  operation, config.dir.string(), std::strerror(error),
                  error_log.takeSuppressed());
  }
}

void InspectionJournal::Impl::updateGauges() {
  bytes_gauge.set(static_cast<std::int64_t>(total_bytes));
  pending_gauge.set(static_cast<std::int64_t>(total_pending));
}

std::uint64_t InspectionJournal::Impl::append(std::string_view event_id,
                                              std::string_view entry) {
  std::string line = makeEntryLine(event_id, entry);
  std::lock_guard lock(mutex);
  if (file && files[current].bytes > 0 &&
      files[current].bytes + line.size() > config.file_bytes) {
    closeFile();
  }
  if (!file && !openFile()) {
    countWriteError(errno, "file creation");
    return 0;
  }
  if (!writeLine(line)) {
    countWriteError(errno, "write");
    updateGauges();
    return 0;
  }
  std::uint64_t ticket = current;
  files[ticket].pending += 1;
  total_pending += 1;
  entries_total.inc();
  updateGauges();
  return ticket;
}

// Removes from `files` the closed files that may go: every entry in them
// and in every older file is done. Done lines name entries of the same or
// an older file, so no file goes before the entries its done lines name.
std::vector<std::uint64_t> InspectionJournal::Impl::takeFinishedLocked() {
  std::vector<std::uint64_t> finished;
  for (auto it = files.begin(); it != files.end();) {
    if ((file && it->first == current) || it->second.pending > 0) {
      break;
    }
    finished.push_back(it->first);
    total_bytes -= std::min(total_bytes, it->second.bytes);
    it = files.erase(it);
  }
  return finished;
}

void InspectionJournal::Impl::deleteFiles(const std::vector<std::uint64_t>& numbers) {
  for (std::uint64_t number : numbers) {
    if (::unlink(path(number).c_str()) != 0 && errno != ENOENT) {
      countWriteError(errno, "deletion of a finished file");
    }
  }
}

void InspectionJournal::Impl::writeDoneLocked(const std::string& ids) {
  if (ids.empty()) {
    return;
  }
  if (!file && !openFile()) {
    countWriteError(errno, "file creation");
    return;
  }
  if (!writeLine(makeLine(journal_lines::kDone, ids, {}))) {
    // Only duplicates follow: recovery appends these records again.
    countWriteError(errno, "write of done ids");
  }
}

void InspectionJournal::Impl::markDone(std::uint64_t ticket, std::string_view event_id) {
  if (ticket == 0) {
    return;
  }
  std::vector<std::uint64_t> finished;
  {
    std::lock_guard lock(mutex);
    auto it = files.find(ticket);
    if (it != files.end() && it->second.pending > 0) {
      it->second.pending -= 1;
      total_pending -= 1;
    }
    if (!done_ids.empty()) {
      done_ids += ' ';
    }
    done_ids += event_id;
    done_count += 1;
    if (config.fsync == FsyncPolicy::kNever && (done_count >= kDoneBatch || total_pending == 0)) {
      writeDoneLocked(done_ids);
      done_ids.clear();
      done_count = 0;
      finished = takeFinishedLocked();
    }
    updateGauges();
  }
  deleteFiles(finished);
}

void InspectionJournal::Impl::commit() {
  std::string ids;
  std::vector<std::uint64_t> finished;
  {
    std::lock_guard lock(mutex);
    ids.swap(done_ids);
    done_count = 0;
    finished = takeFinishedLocked();
  }
  // The records that `ids` name, and the entries of `finished`, were
  // appended to the spool before this point, so this fsync covers them.
  if (config.fsync != FsyncPolicy::kNever && (!ids.empty() || !finished.empty())) {
    spool.flush();
  }
  std::shared_ptr<FileHandle> handle;
  {
    std::lock_guard lock(mutex);
    writeDoneLocked(ids);
    if (dirty) {
      handle = file;
      dirty = false;
    }
    updateGauges();
  }
  if (handle) {
    syncFile(handle);
  }
  deleteFiles(finished);
}

void InspectionJournal::Impl::close() {
  commit();
  std::vector<std::uint64_t> numbers;
  {
    std::lock_guard lock(mutex);
    if (total_pending > 0) {
      spdlog::warn("journal: closed with {} entries pending; the next start appends them to "
                   "the spool",
                   total_pending);
      return;
    }
    file.reset();
    current = 0;
    for (const auto& [number, state] : files) {
      numbers.push_back(number);
    }
    files.clear();
    total_bytes = 0;
    dirty = false;
    updateGauges();
  }
  deleteFiles(numbers);
  if (!numbers.empty() && config.fsync != FsyncPolicy::kNever) {
    syncFolder(config.dir);
  }
}

void InspectionJournal::Impl::syncFile(const std::shared_ptr<FileHandle>& handle) {
  if (::fdatasync(handle->fd) != 0) {
    countWriteError(errno, "fdatasync");
  }
}

void InspectionJournal::Impl::runSyncThread() {
  const auto interval = std::chrono::milliseconds(config.fsync_interval_ms);
  std::unique_lock lock(mutex);
  while (!stopping) {
    wake_sync.wait_for(lock, interval, [this] { return stopping; });
    if (stopping) {
      break;
    }
    lock.unlock();
    commit();
    lock.lock();
  }
}

void InspectionJournal::Impl::stop() {
  {
    std::lock_guard lock(mutex);
    stopping = true;
  }
  wake_sync.notify_all();
  if (sync_thread.joinable()) {
    sync_thread.join();
  }
}

InspectionJournal::InspectionJournal(const JournalConfig& config, Spool& spool,
                                     MetricsRegistry& metrics)
    : impl_(std::make_unique<Impl>(config, spool, metrics)) {}

InspectionJournal::~InspectionJournal() {
  impl_->stop();
  impl_->close();
}

std::uint64_t InspectionJournal::append(std::string_view event_id, std::string_view entry) {
  return impl_->append(event_id, entry);
}

void InspectionJournal::markDone(std::uint64_t ticket, std::string_view event_id) {
  impl_->markDone(ticket, event_id);
}

void InspectionJournal::commit() { impl_->commit(); }

void InspectionJournal::close() { impl_->close(); }

std::uint64_t InspectionJournal::pendingEntries() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->total_pending;
}

}  // namespace webtrap::probe
