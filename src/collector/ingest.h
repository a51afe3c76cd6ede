// The ingest path shared by every input: decode each record, enrich it,
// build its ECS document, commit the batch to the store, wake the output
// runners, and count all of it. A caller gets its result only after the
// commit, so an acknowledgement never covers a record that a crash could lose.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "collector/audit_record.h"
#include "collector/behaviour.h"
#include "collector/enrich.h"
#include "collector/recent_ids.h"
#include "collector/store.h"
#include "common/metrics.h"

namespace webtrap::collector {

enum class InputKind { kProbe, kModsecurityHttp, kFile };

// The `input` metric label: "probe", "modsecurity_http" or "file".
std::string_view inputLabel(InputKind input);

// The sender of a batch, from the sensor's enrolment (token) or the input's
// configuration.
struct IngestSource {
  InputKind input = InputKind::kProbe;
  RecordFormat format = RecordFormat::kAuto;
  std::string sensor_id;
  std::string group;
  // Origin of the records, part of derived event ids (see decodeAuditRecord).
  // File inputs set the file path. Empty means sensor_id.
  std::string origin;
  // A file input's offset past the batch's lines, committed with the batch.
  const FileOffsetNote* file_offset = nullptr;
};

// Returns the options that decode the records of `source`: its format, its
// origin and how its input frames records. The options point into `source`.
DecodeOptions decodeOptionsFor(const IngestSource& source);

struct IngestResult {
  std::size_t received = 0;
  std::size_t stored = 0;
  std::size_t duplicates = 0;
  std::size_t rejected = 0;      // undecodable
  std::size_t dead_letters = 0;  // of the rejected, those new to the dead-letter store
};

// Thrown when the store cannot take the batch (disk full, I/O error, locked
// database). Nothing of the batch was committed; the sender should retry.
struct StoreUnavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Ingest {
 public:
  // `on_commit` runs after every commit that stored new events, to wake the
  // output runners. It must not block. `behaviour`, when set, is called with
  // every decoded record before its document is built and must outlive this.
  Ingest(Store& store, const Enricher& enricher, MetricsRegistry& metrics,
         std::function<void()> on_commit, BehaviourTagger* behaviour = nullptr);

  // Ingests NDJSON text: one record per line, empty lines skipped. Thread
  // safe; concurrent calls decode in parallel and commit one by one.
  // `gzip`, when not empty, is the request body that inflated to `ndjson`.
  // When every line decodes to a record whose original is the line itself,
  // the store keeps that body once in place of an escaped copy of each
  // line in its document (see OriginalBatch). `shared_text`, when given,
  // owns the text that `ndjson` views, and the store may keep it cached.
  IngestResult ingestLines(std::string_view ndjson, const IngestSource& source,
                           std::string_view gzip = {},
                           std::shared_ptr<const std::string> shared_text = nullptr);

  // Ingests one JSON record (the whole text, newlines allowed).
  IngestResult ingestRecord(std::string_view json, const IngestSource& source);

  // Ingests records an input decoded itself (the file input), with the
  // lines it could not decode as dead letters.
  IngestResult ingestDecoded(std::span<const AuditRecord> records,
                             std::vector<DeadLetter> rejected, const IngestSource& source);

  // Counts `bytes` received by `input` (called by the server with body sizes
  // as received, before decompression).
  void countBytes(InputKind input, std::uint64_t bytes);

  // True when the last commit failed (the store rejected a write), until a
  // later commit succeeds.
  bool storeFailing() const { return store_failing_.load(); }
  std::string lastStoreError() const;

  // The behavioural tagger, or nullptr when there is none.
  const BehaviourTagger* behaviour() const { return behaviour_; }

  // Loads the per-sensor gauges from the store, so sensors seen before a
  // restart stay visible.
  void loadSensors();

 private:
  struct InputCounters {
    Counter* received = nullptr;
    Counter* stored = nullptr;
    Counter* duplicates = nullptr;
    Counter* rejected = nullptr;
    Counter* bytes = nullptr;
  };
  struct SensorMetrics {
    Gauge* last_seen_seconds = nullptr;
    Counter* records = nullptr;
  };

  struct Prepared;
  // `readable_after`: bytes after `json` that the decoder may read (see
  // DecodeOptions::readable_after).
  // `line_offset`: where `json` starts in the batch text, when the batch
  // may be stored by reference (Prepared::by_reference is set).
  void prepareOne(std::string_view json, std::size_t readable_after, std::size_t line_offset,
                  const IngestSource& source, std::int64_t now_ms, Prepared& prepared);
  // `line`, when given, is the record's original exactly as received, at
  // `line_offset` in the batch text; `record.original` may then be empty.
  void prepareRecord(const AuditRecord& record, const IngestSource& source, std::int64_t now_ms,
                     Prepared& prepared, std::string_view line = {}, std::size_t line_offset = 0);
  IngestResult commit(Prepared& prepared, const IngestSource& source, std::int64_t now_ms,
                      const OriginalBatch* batch = nullptr);
  InputCounters& counters(InputKind input);
  SensorMetrics& sensorMetrics(const std::string& sensor_id);

  Store& store_;
  const Enricher& enricher_;
  MetricsRegistry& metrics_;
  std::function<void()> on_commit_;
  BehaviourTagger* behaviour_;
  // Ids of the events the tagger counted lately: about 10 MiB, and four
  // minutes of records at 1,000 records/s.
  RecentIds recent_ids_{262'144};
  // The tagger's output for a record of a batch that failed to commit, kept
  // for the sender's retry: the tagger counted the record already.
  struct TaggerOutput {
    std::vector<OatTag> tags;
    std::vector<OatVerdict> verdicts;
  };
  void keepUncommittedOutput(const std::string& event_id, TaggerOutput output);
  bool takeUncommittedOutput(const std::string& event_id, TaggerOutput& output);
  std::mutex uncommitted_mutex_;
  std::unordered_map<std::string, TaggerOutput> uncommitted_output_;
  InputCounters inputs_[3];
  Counter& dead_letters_;
  Counter& commit_failures_;
  std::atomic<bool> store_failing_{false};
  mutable std::mutex error_mutex_;
  std::string last_store_error_;
  std::mutex sensors_mutex_;
  std::map<std::string, SensorMetrics> sensors_;
};

}  // namespace webtrap::collector
