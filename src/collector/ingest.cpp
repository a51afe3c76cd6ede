#include "collector/ingest.h"

#include <chrono>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "collector/card_masking.h"
#include "collector/ecs.h"
#include "common/encoding.h"
#include "common/ndjson_lines.h"

namespace webtrap::collector {
namespace {

std::int64_t nowMilliseconds() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Dead letters keep at most this much of an undecodable record, so one huge
// broken line cannot fill the store twice.
constexpr std::size_t kDeadLetterPayloadBytes = 1 << 20;
// Maximum records of failed batches whose tagger output is kept for a retry.
constexpr std::size_t kMaxUncommittedOutputs = 65'536;

// Returns the first kDeadLetterPayloadBytes of an undecodable record, card
// numbers masked before the cut so that no cut-off number escapes the mask.
std::string maskDeadLetterPayload(std::string_view payload) {
  std::optional<std::string> masked = maskCardNumbersInJson(payload);
  std::string_view text = masked ? std::string_view(*masked) : payload;
  return std::string(text.substr(0, kDeadLetterPayloadBytes));
}

// The ECS document names inputs with a dash, the metrics with an underscore.
std::string documentInputName(InputKind input) {
  switch (input) {
    case InputKind::kProbe:
      return "probe";
    case InputKind::kModsecurityHttp:
      return "modsecurity-http";
    case InputKind::kFile:
      return "file";
  }
  return "probe";
}

}  // namespace

std::string_view inputLabel(InputKind input) {
  switch (input) {
    case InputKind::kProbe:
      return "probe";
    case InputKind::kModsecurityHttp:
      return "modsecurity_http";
    case InputKind::kFile:
      return "file";
  }
  return "probe";
}

DecodeOptions decodeOptionsFor(const IngestSource& source) {
  DecodeOptions options;
  options.format = source.format;
  options.origin = source.origin.empty() ? source.sensor_id : source.origin;
  switch (source.input) {
    case InputKind::kProbe:
      options.input = RecordInput::kProbeBatch;
      break;
    case InputKind::kModsecurityHttp:
      options.input = RecordInput::kModsecurityPost;
      break;
    case InputKind::kFile:
      options.input = RecordInput::kLine;
      break;
  }
  return options;
}

struct Ingest::Prepared {
  std::vector<NewEvent> events;
  std::vector<DeadLetter> rejected;
  std::size_t received = 0;
  // True when the request body may be stored in place of each document's
  // event.original. `whole_batch` turns false at the first line whose
  // original is not the line as received.
  bool by_reference = false;
  bool whole_batch = true;
  std::size_t line_bytes = 0;  // bytes of the record lines of the batch
  // The events of this batch that the tagger counted, by index in
  // `events`, with the tagger's output, kept for a retry when the batch
  // fails to commit.
  std::vector<std::pair<std::size_t, TaggerOutput>> counted;
};

namespace {

// A gzip body is stored only when it is about as large as what it stands
// for. Bytes outside the record lines (blank lines, padding), empty gzip
// members and stored deflate blocks are otherwise kept without being part
// of any document, and retention would not count them.
bool bodyFitsLines(std::string_view gzip, std::string_view text, std::size_t line_bytes,
                   std::size_t lines) {
  constexpr std::size_t kGzipOverheadBytes = 1024;
  const std::size_t line_ends = 2 * lines + 2;  // CR LF after each line, at most
  return text.size() <= line_bytes + line_ends && gzip.size() <= text.size() + kGzipOverheadBytes;
}

}  // namespace

Ingest::Ingest(Store& store, const Enricher& enricher, MetricsRegistry& metrics,
               std::function<void()> on_commit, BehaviourTagger* behaviour)
    : store_(store),
      enricher_(enricher),
      metrics_(metrics),
      on_commit_(std::move(on_commit)),
      behaviour_(behaviour),
      dead_letters_(metrics.counter("webtrap_collector_dead_letters_total",
                                    "Records put in the dead-letter store, by stage",
                                    "stage=\"ingest\"")),
      commit_failures_(metrics.counter("webtrap_collector_store_commit_failures_total",
                                       "Ingest batches the store could not commit (the sender "
                                       "got 503 and retries)")) {
  for (InputKind input : {InputKind::kProbe, InputKind::kModsecurityHttp, InputKind::kFile}) {
    std::string labels = fmt::format("input=\"{}\"", inputLabel(input));
    InputCounters& c = inputs_[static_cast<int>(input)];
    c.received = &metrics.counter("webtrap_collector_input_received_total",
                                  "Records received, by input", labels);
    c.stored = &metrics.counter("webtrap_collector_input_stored_total",
                                "New records committed to the store, by input", labels);
    c.duplicates = &metrics.counter("webtrap_collector_input_duplicates_total",
                                    "Records whose event id was already stored, by input",
                                    labels);
    c.rejected = &metrics.counter("webtrap_collector_input_rejected_total",
                                  "Records that could not be decoded (dead-lettered), by input",
                                  labels);
    c.bytes = &metrics.counter("webtrap_collector_input_bytes_total",
                               "Request body bytes received as sent (before gzip "
                               "decompression), by input",
                               labels);
  }
}

Ingest::InputCounters& Ingest::counters(InputKind input) {
  return inputs_[static_cast<int>(input)];
}

Ingest::SensorMetrics& Ingest::sensorMetrics(const std::string& sensor_id) {
  std::lock_guard lock(sensors_mutex_);
  auto found = sensors_.find(sensor_id);
  if (found != sensors_.end()) {
    return found->second;
  }
  std::string labels = fmt::format("sensor=\"{}\"", escapeLabelValue(sensor_id));
  SensorMetrics& m = sensors_[sensor_id];
  m.last_seen_seconds = &metrics_.gauge("webtrap_collector_sensor_last_seen_timestamp_seconds",
                                        "Unix time of the last record received from the sensor",
                                        labels);
  m.records = &metrics_.counter("webtrap_collector_sensor_records_total",
                                "Records received from the sensor (this process only)", labels);
  return m;
}

void Ingest::loadSensors() {
  for (const SensorInfo& sensor : store_.sensors()) {
    SensorMetrics& m = sensorMetrics(sensor.sensor_id);
    if (sensor.last_seen_ms > 0) {
      m.last_seen_seconds->set(sensor.last_seen_ms / 1000);
    }
  }
}

void Ingest::countBytes(InputKind input, std::uint64_t bytes) {
  counters(input).bytes->inc(bytes);
}

void Ingest::prepareOne(std::string_view json, std::size_t readable_after,
                        std::size_t line_offset, const IngestSource& source, std::int64_t now_ms,
                        Prepared& prepared) {
  ++prepared.received;
  prepared.line_bytes += json.size();
  DecodeOptions options = decodeOptionsFor(source);
  options.readable_after = readable_after;
  options.copy_unchanged_original = false;
  DecodeResult decoded = decodeAuditRecord(json, options);
  if (!decoded.ok) {
    DeadLetter letter;
    letter.output = "ingest";
    letter.reason = fmt::format("input={} sensor={}: {}", inputLabel(source.input),
                                source.sensor_id, decoded.error);
    letter.payload = maskDeadLetterPayload(json);
    letter.at_ms = now_ms;
    // A sender whose acknowledgement was lost sends the same record again.
    letter.record_key = sha256Hex(fmt::format("{}\n{}\n{}", inputLabel(source.input),
                                              source.sensor_id, json));
    prepared.rejected.push_back(std::move(letter));
    // The stored body would keep this line, unmasked, outside the
    // dead-letter store.
    prepared.whole_batch = false;
    return;
  }

  // The decoder may have changed the text (invalid UTF-8 replaced, card
  // numbers masked); then the record keeps its own original.
  if (!decoded.original_is_input) {
    prepareRecord(decoded.record, source, now_ms, prepared);
    return;
  }
  if (!(prepared.by_reference && prepared.whole_batch)) {
    decoded.record.original.assign(json);
  }
  prepareRecord(decoded.record, source, now_ms, prepared, json, line_offset);
}

void Ingest::prepareRecord(const AuditRecord& record, const IngestSource& source,
                           std::int64_t now_ms, Prepared& prepared, std::string_view line,
                           std::size_t line_offset) {
  GeoFacts geo = enricher_.lookup(record.client_ip);
  SensorFacts facts;
  facts.sensor_id = source.sensor_id.empty() ? record.sensor_id : source.sensor_id;
  facts.group = source.group.empty() ? record.sensor_group : source.group;
  facts.input = documentInputName(source.input);

  NewEvent event;
  event.event_id = record.event_id;
  event.timestamp_ms = record.timestamp_us / 1000;
  event.sensor_id = facts.sensor_id;
  event.source_ip = record.client_ip;
  // The tagger counts this record in its windows first, so its tags cover
  // the record itself and every earlier-arrived record of its keys.
  std::vector<OatTag> behaviour_tags;
  std::vector<OatVerdict> verdicts;
  // A record sent again (after a lost acknowledgement) is a duplicate that
  // the store drops, and must not count twice in the tagger's windows. The
  // retry of a batch that failed to commit gets the tags of its first count.
  bool counted = false;
  if (behaviour_ != nullptr) {
    if (recent_ids_.addIfNew(record.event_id)) {
      behaviour_tags = behaviour_->observe(record, now_ms, &verdicts);
      counted = true;
    } else {
      TaggerOutput earlier;
      counted = takeUncommittedOutput(record.event_id, earlier);
      if (counted) {
        behaviour_tags = std::move(earlier.tags);
        verdicts = std::move(earlier.verdicts);
      }
    }
  }
  // A record whose original is its line as received is built without it,
  // and the stored batch keeps the line.
  if (prepared.by_reference && prepared.whole_batch && line.data() != nullptr) {
    std::size_t original_at = 0;
    event.document =
        buildEcsDocument(record, geo, facts, now_ms, behaviour_tags, verdicts, &original_at);
    event.original_at = original_at;
    event.original_offset = line_offset;
    event.original_length = line.size();
  } else {
    prepared.whole_batch = false;
    event.document = buildEcsDocument(record, geo, facts, now_ms, behaviour_tags, verdicts);
  }
  if (counted) {
    prepared.counted.emplace_back(prepared.events.size(),
                                  TaggerOutput{std::move(behaviour_tags), std::move(verdicts)});
  }
  prepared.events.push_back(std::move(event));
}

void Ingest::keepUncommittedOutput(const std::string& event_id, TaggerOutput output) {
  std::lock_guard lock(uncommitted_mutex_);
  if (uncommitted_output_.size() >= kMaxUncommittedOutputs) {
    // NOTE: the retry of the record whose entry goes is neither counted
    // nor tagged by the tagger.
    uncommitted_output_.erase(uncommitted_output_.begin());
  }
  uncommitted_output_.insert_or_assign(event_id, std::move(output));
}

bool Ingest::takeUncommittedOutput(const std::string& event_id, TaggerOutput& output) {
  std::lock_guard lock(uncommitted_mutex_);
  auto found = uncommitted_output_.find(event_id);
  if (found == uncommitted_output_.end()) {
    return false;
  }
  output = std::move(found->second);
  uncommitted_output_.erase(found);
  return true;
}

IngestResult Ingest::commit(Prepared& prepared, const IngestSource& source,
                            std::int64_t now_ms, const OriginalBatch* batch) {
  InputCounters& c = counters(source.input);
  c.received->inc(prepared.received);

  IngestResult result;
  result.received = prepared.received;
  result.rejected = prepared.rejected.size();
  try {
    // The sensor's count shares the events' transaction, so a crash right
    // after the acknowledgement keeps both.
    std::optional<SensorNote> note;
    if (!source.sensor_id.empty() && prepared.received > 0) {
      note = SensorNote{source.sensor_id, now_ms, prepared.received};
    }
    // The dead letters share the events' transaction. A batch acknowledged
    // as "rejected" has its lines kept, and a failed commit keeps none of
    // them, so the sender's retry after the 503 does not store them twice.
    InsertSummary summary =
        store_.insert(prepared.events, prepared.rejected, note ? &*note : nullptr, batch,
                      source.file_offset);
    result.stored = summary.stored;
    result.duplicates = summary.duplicates;
    result.dead_letters = summary.dead_letters;
  } catch (const std::exception& error) {
    // The sender sends the batch again, and its retry takes these.
    for (auto& [index, output] : prepared.counted) {
      keepUncommittedOutput(prepared.events[index].event_id, std::move(output));
    }
    commit_failures_.inc();
    store_failing_.store(true);
    {
      std::lock_guard lock(error_mutex_);
      last_store_error_ = error.what();
    }
    spdlog::error("collector: store commit failed input={} sensor={} records={}: {}",
                  inputLabel(source.input), source.sensor_id, prepared.received, error.what());
    throw StoreUnavailable(error.what());
  }

  store_failing_.store(false);
  // A record sent again, or twice in its batch, has its letter already.
  if (result.dead_letters > 0) {
    spdlog::warn("collector: dead-lettered undecodable records input={} sensor={} count={} "
                 "already_stored={} first_reason=\"{}\"",
                 inputLabel(source.input), source.sensor_id, result.dead_letters,
                 prepared.rejected.size() - result.dead_letters,
                 prepared.rejected.front().reason);
  } else if (!prepared.rejected.empty()) {
    spdlog::info("collector: undecodable records already in the dead-letter store input={} "
                 "sensor={} count={}",
                 inputLabel(source.input), source.sensor_id, prepared.rejected.size());
  }
  c.stored->inc(result.stored);
  c.duplicates->inc(result.duplicates);
  c.rejected->inc(result.rejected);
  dead_letters_.inc(result.dead_letters);
  if (!source.sensor_id.empty() && prepared.received > 0) {
    SensorMetrics& m = sensorMetrics(source.sensor_id);
    m.last_seen_seconds->set(now_ms / 1000);
    m.records->inc(prepared.received);
  }
  if (result.stored > 0 && on_commit_) {
    on_commit_();
  }
  return result;
}

std::string Ingest::lastStoreError() const {
  std::lock_guard lock(error_mutex_);
  return last_store_error_;
}

IngestResult Ingest::ingestLines(std::string_view ndjson, const IngestSource& source,
                                 std::string_view gzip,
                                 std::shared_ptr<const std::string> shared_text) {
  std::int64_t now_ms = nowMilliseconds();
  Prepared prepared;
  prepared.by_reference = !gzip.empty() && !ndjson.empty();
  forEachRecordLine(ndjson, [&](std::string_view line) {
    // The next lines of the batch follow this one in memory, so the
    // decoder can parse most lines in place.
    std::size_t line_offset = static_cast<std::size_t>(line.data() - ndjson.data());
    std::size_t readable_after = ndjson.size() - line_offset - line.size();
    prepareOne(line, readable_after, line_offset, source, now_ms, prepared);
  });
  if (!prepared.by_reference) {
    return commit(prepared, source, now_ms);
  }
  if (prepared.whole_batch &&
      bodyFitsLines(gzip, ndjson, prepared.line_bytes, prepared.received)) {
    OriginalBatch batch{gzip, ndjson.size(), nullptr};
    if (shared_text != nullptr && std::string_view(*shared_text) == ndjson) {
      batch.text = std::move(shared_text);
    }
    return commit(prepared, source, now_ms, &batch);
  }
  // Some line cannot be kept by reference, or the body carries more than
  // its lines, so no line is: the documents get their originals back.
  std::string whole;
  for (NewEvent& event : prepared.events) {
    if (event.original_at == std::string::npos) {
      continue;
    }
    whole.clear();
    spliceOriginal(whole, event.document, event.original_at,
                   ndjson.substr(event.original_offset, event.original_length));
    event.document.swap(whole);
    event.original_at = std::string::npos;
  }
  return commit(prepared, source, now_ms);
}

IngestResult Ingest::ingestDecoded(std::span<const AuditRecord> records,
                                   std::vector<DeadLetter> rejected, const IngestSource& source) {
  std::int64_t now_ms = nowMilliseconds();
  Prepared prepared;
  prepared.received = records.size() + rejected.size();
  for (const AuditRecord& record : records) {
    prepareRecord(record, source, now_ms, prepared);
  }
  for (DeadLetter& letter : rejected) {
    letter.output = "ingest";
    letter.at_ms = now_ms;
    letter.payload = maskDeadLetterPayload(letter.payload);
    prepared.rejected.push_back(std::move(letter));
  }
  return commit(prepared, source, now_ms);
}

IngestResult Ingest::ingestRecord(std::string_view json, const IngestSource& source) {
  std::int64_t now_ms = nowMilliseconds();
  Prepared prepared;
  prepareOne(json, 0, 0, source, now_ms, prepared);
  return commit(prepared, source, now_ms);
}

}  // namespace webtrap::collector
