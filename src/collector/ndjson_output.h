// An output that appends each event's document as one line to a file, for
// users who feed other tools (jq, Vector, Filebeat, a SIEM's file reader).
//
// Durability: each batch is written with one write() and fdatasync()ed
// before send() reports it delivered. A failed or short write is cut back
// off the file, so the file holds only whole lines, and the batch is
// reported as a TransientError to be sent again. A partial last line that a
// crash inside write() left is cut off when the file is opened, and its
// batch, never reported delivered, is sent again.
//
// Rotation by size: before a batch would take the file past rotate_size,
// the output renames PATH.(N-1) to PATH.N, ..., PATH to PATH.1, and opens a
// new PATH. It keeps rotate_keep rotated files and deletes older ones
// (rotate_keep 0 keeps them all). A batch larger than rotate_size still
// goes into one file. rotate_size 0 turns rotation off.
//
// External rotation (logrotate without copytruncate, or a user moving the
// file) needs no signal. Before each batch the output compares the inode of
// PATH with that of the open file, and reopens PATH when they differ or PATH
// is gone.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <yaml-cpp/yaml.h>

#include "collector/stored_event.h"

namespace webtrap::collector {

struct NdjsonOutputOptions {
  std::filesystem::path path;
  std::uint64_t rotate_size = 1ULL << 30;  // 0: never rotate
  std::uint32_t rotate_keep = 10;          // rotated files kept; 0: keep all
};

// Parses `outputs.ndjson`: path (required), rotate_size, rotate_keep. The
// runner keys (batch_max_events, ...) are accepted and left to
// parseRunnerOptions(); any other key is a ConfigError.
NdjsonOutputOptions parseNdjsonOutputOptions(const YAML::Node& node);

class NdjsonOutput : public Output {
 public:
  // Creates the parent folder if needed and opens the file for appending.
  // Throws ConfigError when the file cannot be opened.
  explicit NdjsonOutput(NdjsonOutputOptions options);
  ~NdjsonOutput() override;

  NdjsonOutput(const NdjsonOutput&) = delete;
  NdjsonOutput& operator=(const NdjsonOutput&) = delete;

  std::string_view name() const override { return "ndjson"; }

  // Returns kDelivered for every event once the lines are on disk, and
  // kRejected for a document that contains a newline (it would split the
  // line). Throws TransientError when the write or fsync fails.
  std::vector<ItemResult> send(std::span<const StoredEvent> batch) override;

 private:
  void openFile();
  // Cuts the file back to its last newline, dropping what a stop inside
  // write() left of an unreported batch.
  void cutPartialLastLine();
  void reopenIfMoved();
  void rotate();

  NdjsonOutputOptions options_;
  int fd_ = -1;
  std::uint64_t inode_ = 0;
  std::uint64_t size_ = 0;
};

}  // namespace webtrap::collector
