// The file input: tails a ModSecurity audit log (one JSON record per line:
// libmodsecurity v3 SecAuditLogType Serial, mod_security2 JSON, or probe
// spool records), decodes each line and hands the records to the collector
// core. The byte offset is persisted in the store only after the core has
// committed the records, so delivery is at least once. A crash between the
// commit and the offset update reads those lines again, and their event ids
// make them duplicates.
//
// It notices rotation (the path names a new inode: the old file is read to
// its end first, also across a restart, as long as it stays in the same
// folder) and truncation (the file became shorter than the offset, read
// on from logrotate's copy when the copy is found), and
// keeps an incomplete last line until its newline arrives. While the path
// names no regular file (missing, or a folder), it waits and logs the reason
// once.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "collector/audit_record.h"
#include "collector/store.h"
#include "common/metrics.h"

namespace webtrap::collector {

struct FileInputOptions {
  std::filesystem::path path;
  RecordFormat format = RecordFormat::kAuto;
  // Set on records that do not name their own sensor (ModSecurity records).
  std::string sensor_id;
  std::string group;
  // Zone of libmodsecurity v3 time stamps, which carry none: the `timezone`
  // key, resolved at parse time (or by FileInput when only the name is set);
  // nullptr means the collector's local zone.
  std::string timezone;
  const TimeZone* time_zone = nullptr;
  std::uint64_t poll_interval_ms = 1000;
  // Where to start in a file with no saved offset: at its beginning (every
  // record already there is read) or at its end (only new records, and a
  // last line the writer has not finished yet).
  bool start_at_end = false;
  // A line longer than this is rejected without being buffered whole.
  std::uint64_t max_record_bytes = 16ULL << 20;
  // Records handed to the core per call, at most.
  std::size_t batch_max_records = 1000;
  // Line bytes handed to the core per call. A batch is handed over once its
  // lines reach this size, so it contains at most this plus one line. A limit
  // by records alone would let 1,000 lines of up to max_record_bytes each
  // (16 GiB by default) into one batch.
  std::uint64_t batch_max_bytes = 32ULL << 20;
};

// Parses `inputs.files`: a list of maps with the keys path (required),
// format (auto|webtrap|modsec3|modsec2), sensor_id, group, timezone,
// poll_interval, start_at (beginning|end) and max_record_size. Throws
// ConfigError naming the key, the value and the fix.
std::vector<FileInputOptions> parseFileInputs(const YAML::Node& node);

// A line that could not be decoded, for the dead-letter store.
struct RejectedLine {
  std::string path;          // the file it was read from (a rotated file's own path)
  std::uint64_t offset = 0;  // byte offset of the line's first byte in that file
  std::string error;         // names the field, as DecodeResult::error
  std::string line;          // the line as read, without its newline
};

// Receives the records of one batch, with the lines that were rejected and
// the input's offset past them. It must return only after all three are
// committed in one transaction (Store::insert's file_offset), so that a
// crash cannot keep the batch and lose the offset, which would store its
// dead letters twice when the lines are read again. It throws when nothing
// was committed, and the file input then reads the batch again after the
// poll interval.
using FileBatchHandler = std::function<void(
    std::vector<AuditRecord>&& records, std::vector<RejectedLine>&& rejected,
    const FileInputOptions& input, const FileOffsetNote& offset)>;

// A copytruncate copy by inode number and birth or change time, which a
// later copy with the same inode number differs in.
struct CopyIdentity {
  std::uint64_t inode = 0;
  std::int64_t created_ns = 0;
};

class FileInput {
 public:
  FileInput(FileInputOptions options, Store& store, FileBatchHandler handler,
            MetricsRegistry& metrics);
  ~FileInput();  // stops the thread
  FileInput(const FileInput&) = delete;
  FileInput& operator=(const FileInput&) = delete;

  // Starts a thread that polls the file every poll interval.
  void start();
  // Stops the thread after its current batch.
  void stop();

  // Reads everything new once and hands it over; returns the number of
  // lines handled (records and rejected). The thread calls this; tests may
  // call it directly instead of starting the thread. Throws what the
  // handler throws.
  std::size_t pollOnce();

  const FileInputOptions& options() const { return options_; }

  // The input's state as GET /healthz shows it.
  struct Status {
    std::string path;           // the configured path
    bool open_failing = false;  // the value of webtrap_collector_file_open_failing
    std::string open_error;     // why the path cannot be opened; empty while it can
    std::uint64_t offset = 0;   // committed byte offset in the file being read
  };
  // Returns the state. Safe to call from any thread while the input runs.
  Status status() const;

 private:
  struct Counters;
  struct OpenFile;

  bool openPath();
  void reportOpenProblem(const std::string& problem);
  void clearOpenProblem();
  void discardUncommitted();
  void closeIfReplaced();
  bool openFresh();
  // Opens the file of a saved offset that the path no longer names, found
  // by its inode in the same folder, unless its first bytes differ from
  // `head`. Returns false when there is no such file.
  bool openRotatedRemainder(std::uint64_t inode, std::uint64_t offset, const std::string& head);
  bool adoptFile(int fd, std::uint64_t inode, const std::string& path, std::uint64_t offset,
                 bool rotated);
  void closeFile();
  std::size_t readAvailable();
  void takeLines(std::size_t& handled);
  void rejectOverlong(std::string_view line, std::uint64_t offset);
  void rejectLongLine();
  void decodeLine(std::string_view line, std::uint64_t offset);
  void flushBatch();
  bool checkRotation();
  // Starts the open file again when its first bytes changed since read.
  void checkFirstBytes();
  // For a file that had no line when last seen: reads the copy that a
  // copytruncate made since then, if there is one.
  void checkCopyOfEmptyFile();
  // Reads the open file again from its beginning after it was truncated,
  // after the rest of logrotate's copy of it when there is one.
  void restartFile();
  // Opens the copy that copytruncate made of a file starting with `head`
  // (see findTruncatedCopy) at `offset`, as a rotated file. Returns false
  // when there is none.
  // With an empty `head`, the copy is the oldest one created and written at
  // or after `since_ns` (see CopySearch), and not a copy read already.
  bool openTruncatedCopy(const std::string& head, std::uint64_t offset,
                         std::uint64_t truncated_inode, bool skipping, std::int64_t since_ns = 0);
  // After a copy was read to its end: opens, from its beginning, the oldest
  // copy made of the same file since that copy was last written
  // (`since_ns`), which exists when the file was truncated again meanwhile.
  // Returns false when there is none.
  bool openLaterCopy(std::uint64_t truncated_inode, std::int64_t since_ns);
  // Finds and opens a copy for the two functions above.
  bool openCopy(const std::string& head, std::uint64_t offset, std::uint64_t truncated_inode,
                bool skipping, std::int64_t since_ns);
  // Saves the offset of the empty file at the path with its
  // OpenFile::empty_saved_ns.
  void saveEmptyFileOffset();
  // Returns the time to save as empty_at_ns for a file seen empty at
  // `seen_at_ns`: that time, or just after the creation of the copy read
  // last when that is later.
  std::int64_t savedEmptyTime(std::int64_t seen_at_ns) const;
  void run();

  FileInputOptions options_;
  std::string key_;  // the path as the store key and metric label
  Store& store_;
  FileBatchHandler handler_;
  std::unique_ptr<Counters> counters_;
  std::unique_ptr<OpenFile> file_;
  // The copytruncate copies read since the input last found a truncation,
  // and the one read last before it, which a search by time could find
  // again within one tick of the file clock.
  std::vector<CopyIdentity> read_copies_;

  std::vector<AuditRecord> records_;
  std::vector<RejectedLine> rejected_;
  std::uint64_t batch_bytes_ = 0;  // line bytes in records_ and rejected_

  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<bool> stopping_{false};
  mutable std::mutex open_problem_mutex_;  // guards open_problem_ for status()
  std::string open_problem_;  // why the path could not be opened, as last logged
};

}  // namespace webtrap::collector
