// Audit records read back by client port: a tail of an NDJSON file or of a
// folder of *.ndjson segments, in the libmodsecurity v3 JSON audit layout
// that both webtrap's probe and nginx with ModSecurity write.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace webtrap::replay {

struct AuditRecord {
  std::string client_ip;
  int client_port = -1;
  int http_code = 0;  // 0 when the record has no response part
  std::string unique_id;
  std::vector<std::string> rule_ids;  // messages' ruleId values, in record order
  // The record's messages rendered one per line the way libmodsecurity writes
  // them to an error log: `... [id "942100"] [msg "..."] [data "..."] ...`.
  // ftw's log_contains patterns are written against that form.
  std::string log_text;
};

// Parses one NDJSON line. Returns nullopt when the line is not JSON or has no
// `transaction` object with a client port.
std::optional<AuditRecord> parseAuditRecord(std::string_view line);

// Strips the IPv4-mapped prefix so that "::ffff:127.0.0.1" equals "127.0.0.1".
std::string normalizeAddress(std::string_view address);

class RecordIndex {
 public:
  // `path` is one file or a folder of *.ndjson files. Content present when the
  // index starts is skipped: only records written afterwards count.
  explicit RecordIndex(std::filesystem::path path,
                       std::chrono::milliseconds poll_interval = std::chrono::milliseconds(5));
  ~RecordIndex();

  RecordIndex(const RecordIndex&) = delete;
  RecordIndex& operator=(const RecordIndex&) = delete;

  // Reads everything appended so far and returns a mark. Records read after
  // this call have a higher sequence number, so a caller that takes the mark
  // before sending a request never matches an older record from a reused port.
  std::uint64_t mark();

  // Waits for the first record after `mark` from `client_ip`:`client_port`,
  // until `deadline`.
  std::optional<AuditRecord> waitFor(const std::string& client_ip, std::uint16_t client_port,
                                     std::uint64_t mark,
                                     std::chrono::steady_clock::time_point deadline);

  // Lines that were not audit records (not JSON, or no transaction).
  std::uint64_t skippedLines() const;

 private:
  struct FileState {
    std::uint64_t offset = 0;
    std::uint64_t inode = 0;
    std::string partial;  // bytes after the last newline, waiting for the rest of the line
  };
  struct Entry {
    std::uint64_t sequence;
    AuditRecord record;
  };

  void pollLoop();
  void pollFiles();  // callers hold poll_mutex_
  void readAppended(const std::filesystem::path& file, FileState& state);
  std::vector<std::filesystem::path> listFiles() const;

  const std::filesystem::path path_;
  const bool is_folder_;
  const std::chrono::milliseconds poll_interval_;

  std::mutex poll_mutex_;  // serializes file reading between the poller and mark()
  std::map<std::filesystem::path, FileState> files_;

  mutable std::mutex mutex_;  // guards everything below
  std::condition_variable changed_;
  // NOTE: entries stay until the index is destroyed, so a target that writes
  // many unrelated records during a run grows this map with them.
  std::unordered_map<std::uint16_t, std::vector<Entry>> by_port_;
  std::uint64_t sequence_ = 0;
  std::uint64_t skipped_lines_ = 0;
  bool stopping_ = false;

  std::thread poller_;
};

}  // namespace webtrap::replay
