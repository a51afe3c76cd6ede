// The inspection journal: a copy on disk of every request that waits in the
// inspection queue, so that a probe killed with SIGKILL, or one that
// crashes, loses none of them. The next start inspects the copies whose
// inspected record never reached the spool and appends their records to
// the spool, marked webtrap.inspection.recovered.
//
// Layout: the folder <spool.dir>/inspection-journal contains the files
// 000000000001.journal, 000000000002.journal, ... (numbered in write
// order, with more digits past 999999999999). Each line is "<kind> <crc> <payload>\n", where <crc> is the CRC-32
// (zlib's polynomial and crc32() value) of <payload> in 8 lowercase hex
// digits, and <kind> is
//   R  an entry. Payload "<event id> <escaped entry>": a request written
//      before its response is sent (queued or shed). The entry contains the
//      inputs of its audit record in binary (probe/journal_entry.h), with
//      each backslash and newline byte escaped. The I/O thread only copies
//      bytes to write it, and recovery inspects the request and builds
//      the record from it (see recoverJournal()).
//   D  done ids. Payload "<event id> <event id> ...": requests whose
//      inspected record was appended to the spool.
//   E  an entry written by probes before the R entry: "<event id> <record>",
//      the whole record as JSON. Recovery still reads these, so a journal
//      left by such a probe loses nothing at an upgrade. Probes of that
//      version count R lines as damaged, so a downgrade loses the entries.
// A line without its newline, or whose CRC does not match, is damaged (the
// process died during the write, or the disk lost a page). Recovery skips
// it, logs it and counts it. A damaged D line can only cause duplicates.
// An entry with a valid CRC that cannot be decoded (for example a format
// byte from a newer probe) or whose record the collector's decoder rejects
// is rejected: skipped, logged and counted, and its file is still deleted.
// Recovery opens files with O_NOFOLLOW, and skips, logs, counts and keeps a
// symbolic link or anything else that is not a regular file, and a file
// larger than RecoveryOptions::max_file_bytes.
//
// Bounds: a file is closed once it passes file_bytes, and deleted once
// every entry in it and in every older file is done. Workers take jobs in
// queue order, so the journal stays near the bytes of the queued requests
// plus one or two files. Under "interval" and "always", done files go only
// at a commit, so a flood of shed requests adds up to one fsync_interval of
// their entries. NOTE: one request whose inspection takes long keeps its
// file and every newer file until it is done.
//
// Durability: lines are written with write(2), so after a SIGKILL the page
// cache keeps them. Under spool.fsync "never", done ids are written in
// batches of kDoneBatch, and at once when no entry is pending. Under
// "interval" and "always", a thread commits every fsync_interval: it fsyncs
// the spool, then writes the done ids collected before that fsync and
// deletes the finished files. So a done id never reaches the disk before
// the record it names. Only under "always" does it also fsync the journal.
// NOTE: under "interval", a power loss can therefore take queued requests
// whose entries the kernel had not yet written back (its dirty page expiry,
// 30 s by default on Linux), where the spool loses one interval.
// After a SIGKILL, recovery appends again the records that were spooled
// but not yet committed as done (at most one interval, or one batch, of
// them). The collector keeps one document per event id, so these
// duplicates are harmless.
//
// Metrics: webtrap_journal_entries_total, webtrap_journal_records_recovered_total,
// webtrap_journal_records_inspected_total,
// webtrap_journal_records_uninspected_total{reason=...},
// webtrap_journal_lines_damaged_total, webtrap_journal_entries_rejected_total,
// webtrap_journal_files_skipped_total, webtrap_journal_files_oversized_total,
// webtrap_journal_write_errors_total,
// webtrap_journal_bytes (gauge: bytes in the journal files) and
// webtrap_journal_pending (gauge: entries whose record is not yet spooled).
// The probe adds webtrap_journal_enabled (gauge: 0 when the journal is off,
// or when lockJournalDirectory(), recovery or the journal's start failed and
// the probe runs without it).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/file_io.h"
#include "common/metrics.h"
#include "probe/inspection.h"
#include "probe/spool.h"

namespace webtrap::probe {

class Inspector;
struct JournalEntry;

struct JournalConfig {
  std::filesystem::path dir;               // the journal's own folder
  std::uint64_t file_bytes = 8ull << 20;   // a file is closed past this size
  FsyncPolicy fsync = FsyncPolicy::kInterval;  // the spool's policy
  std::uint32_t fsync_interval_ms = 1000;
};

// Done ids buffered before one D line is written under FsyncPolicy::kNever.
inline constexpr std::size_t kDoneBatch = 64;

// Returns the journal folder of a spool folder: <spool_dir>/inspection-journal.
std::filesystem::path journalDirectory(const std::filesystem::path& spool_dir);

// Returns "000000000042.journal" for 42.
std::string journalFileName(std::uint64_t number);

// Returns the size past which recovery skips a journal file, for a writer
// with `file_bytes` and a probe that keeps `body_capture_bytes` of each
// body. The writer closes a file once it passes file_bytes, so its files
// stay below file_bytes plus one entry line. An entry line contains the
// captured body, the request head (at most limits.max_header_bytes, 64 KiB
// by default, twice: raw and parsed) and the persona's response body, and
// its escaping can double each byte. The limit is 2 * file_bytes
// + 4 * body_capture_bytes + 16 MiB, 36 MiB at the defaults.
// NOTE: a persona response body larger than about 6 MiB could make a valid
// file pass it. Persona files are at most 1 MiB, but a page's {{path}},
// {{host}} and {{user_agent}} put request bytes in, HTML-escaped (up to six
// times longer), so a custom page with many of them could get there. The
// shipped personas take under 160 KiB each, and no page of theirs uses such
// a variable more than 5 times.
std::uint64_t maxRecoveryFileBytes(std::uint64_t file_bytes, std::uint64_t body_capture_bytes);

// Inspects the request of a recovered entry. A throw, or a result with
// status kFailed, counts as a failed inspection.
using RecoveryInspect = std::function<InspectionResult(const JournalEntry& entry)>;

struct RecoveryOptions {
  // Empty: every entry is recorded uninspected, with status "interrupted".
  RecoveryInspect inspect;
  // transaction.producer of the records that `inspect` inspected: the
  // inspector's engine version and rule set components. Records left
  // uninspected keep those of the run that wrote the entry.
  std::string engine_version;
  std::vector<std::string> components;
  // Entries inspected at most. The rest are recorded uninspected, so that a
  // journal left by several unclean stops cannot hold the start for long.
  std::uint64_t max_inspections = 4096;
  // Time spent inspecting at most. Entries after it are recorded
  // uninspected, so that large requests (45 ms each for a POST of 900 form
  // fields) cannot hold the start for minutes either.
  std::chrono::milliseconds max_inspection_time{10000};
  // Threads that build and inspect the entries of a file at once; `inspect`
  // must then be safe to call from several threads, as Inspector::inspect
  // is. The records still go to the spool in the journal's order.
  unsigned inspect_threads = 1;
  // Journal files larger than this are skipped, counted, logged and kept.
  std::uint64_t max_file_bytes = maxRecoveryFileBytes(8ull << 20, 1ull << 20);
};

// Returns options that inspect each entry with `inspector`, the probe's live
// instance, through the same Inspector::inspect() call a pipeline worker
// makes, and that name its engine and rule sets in the records.
RecoveryOptions inspectingRecovery(Inspector& inspector, std::uint64_t max_inspections,
                                   std::uint64_t max_file_bytes);

// Counts of one recovery.
struct JournalRecovery {
  std::uint64_t files = 0;      // journal files read
  std::uint64_t entries = 0;    // whole entry lines read
  std::uint64_t recovered = 0;  // records appended to the spool
  // Of the records built, those inspected at recovery and those recorded
  // uninspected with status "interrupted". Counted before the spool stores
  // them, so they add up to recovered plus dropped.
  std::uint64_t inspected = 0;
  std::uint64_t uninspected = 0;
  // Entries whose inspection threw, returned status kFailed or gave a
  // record the collector's decoder rejects. They count as uninspected.
  std::uint64_t inspection_failed = 0;
  // Entries skipped because a done line names them. An entry whose record
  // was spooled but whose done id was not yet written counts as recovered,
  // and its record is then in the spool twice.
  std::uint64_t skipped_done = 0;
  std::uint64_t dropped = 0;    // records the spool did not store (disk cap, write error)
  std::uint64_t damaged = 0;    // damaged lines skipped
  // Entries with a valid CRC skipped because they could not be decoded or
  // gave a record that the collector's decoder rejects.
  std::uint64_t rejected = 0;
  std::uint64_t legacy = 0;     // entries of the earlier whole-record format read
  // Files named like journal files skipped because they are symbolic links
  // or not regular files. They are left in the folder.
  std::uint64_t skipped_files = 0;
  // Files skipped because they are larger than
  // RecoveryOptions::max_file_bytes. They are left in the folder.
  std::uint64_t oversized_files = 0;
};

// Appends to `spool` the record of every entry in the journal files of
// `dir` that no done line names, fsyncs the spool, then deletes the files
// it read.
// Each entry is inspected with `options.inspect` (the first
// max_inspections entries in journal order), and its record is the one a
// pipeline worker writes, with webtrap.inspection.recovered true. An entry
// that cannot be inspected (an E line has no inputs, the inspection failed,
// the limit was reached, or there is no `inspect`) is recorded with status
// "interrupted", marked recovered, without rule matches. Failures are
// logged and counted, and recovery goes on.
// Run it before the probe takes traffic and before an InspectionJournal
// opens `dir`. A missing folder is an empty journal. Damaged lines,
// rejected entries and skipped files are logged and counted instead of
// thrown. Throws ConfigError when the folder exists but cannot be listed.
JournalRecovery recoverJournal(const std::filesystem::path& dir, Spool& spool,
                               MetricsRegistry& metrics, const RecoveryOptions& options = {});

// Creates the journal folder `dir` if needed and takes an exclusive
// flock(2) on it, so that a second probe started on the same spool.dir
// neither recovers nor deletes the files of a running one. The lock lasts
// until the returned handle is destroyed or the process exits (a SIGKILL
// too). Throws ConfigError, naming `dir` and the fix, when the folder cannot
// be created or opened (for example because a file has its name) or when
// another process holds the lock.
std::unique_ptr<FileHandle> lockJournalDirectory(const std::filesystem::path& dir);

// Creates the spool folder `dir` if needed and takes the same kind of lock
// on it. A second probe started on the same spool.dir then stops at its
// start, instead of writing into the running probe's spool under that
// probe's sensor. Throws ConfigError, naming `dir` and the fix.
std::unique_ptr<FileHandle> lockSpoolDirectory(const std::filesystem::path& dir);

class InspectionJournal {
 public:
  // Creates the folder if needed. Run recoverJournal() on it first: files
  // left in it (those a recovery could not delete) are not touched, and new
  // files are numbered after them. Throws ConfigError when the folder
  // cannot be created, or when file_bytes or, under kInterval,
  // fsync_interval_ms is 0.
  InspectionJournal(const JournalConfig& config, Spool& spool, MetricsRegistry& metrics);

  // Calls close().
  ~InspectionJournal();

  InspectionJournal(const InspectionJournal&) = delete;
  InspectionJournal& operator=(const InspectionJournal&) = delete;

  // Appends an entry line for a request about to be queued, with `entry`
  // from encodeJournalEntry() (any bytes). Returns the ticket to pass to
  // markDone(), or 0 when the write failed. A failure is counted and logged,
  // and the request is then not protected. Thread-safe.
  std::uint64_t append(std::string_view event_id, std::string_view entry);

  // Notes that the record of the entry `ticket` is in the spool (or was
  // dropped by it), so recovery must not append it. A ticket of 0 is
  // ignored. Thread-safe.
  void markDone(std::uint64_t ticket, std::string_view event_id);

  // Writes the done ids collected so far and deletes finished files, after
  // an fsync of the spool unless the policy is kNever.
  void commit();

  // Commits, then deletes every journal file when no entry is pending, so
  // that a clean stop leaves nothing to recover. Entries still pending stay
  // on disk for the next start, with a warning. Call it after the last
  // markDone(). Later appends open a new file.
  void close();

  // Entries appended and not yet marked done.
  std::uint64_t pendingEntries() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace webtrap::probe
