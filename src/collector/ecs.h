// Builds the document the collector stores and sends: Elastic Common Schema
// fields from a decoded audit record plus its enrichment, with the original
// record kept whole in event.original.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "collector/audit_record.h"
#include "collector/behaviour.h"
#include "collector/enrich.h"

namespace webtrap::collector {

// The ECS release whose field definitions the document follows (ecs.version).
inline constexpr std::string_view kEcsVersion = "9.4.0";

// http.request.body.content contains at most this many bytes of the body, cut
// at a UTF-8 character boundary; webtrap.request.body_content_truncated marks
// a cut. The whole body stays in event.original.
inline constexpr std::size_t kEcsBodyContentMaxBytes = 8192;

struct SensorFacts {
  // observer.name. When empty, the record's own sensor id is used.
  std::string sensor_id;
  // webtrap.sensor.group (ECS has no observer group field). When empty, the
  // record's own sensor group is used.
  std::string group;
  std::string input;  // webtrap.input: "probe", "modsecurity-http", "file"
};

// Returns one JSON object (no trailing newline). Always valid JSON and valid
// UTF-8, whatever bytes the record holds. docs/ecs.md lists the fields, and
// docs/ecs-document-schema.json is the document's JSON Schema.
// `ingest_ms` (milliseconds since the epoch) becomes event.ingested, and
// @timestamp too when the record has no timestamp. `behaviour_tags` are the
// collector's behavioural OAT tags for the record (BehaviourTagger). They are
// merged with the record's own tags into threat.technique.* and
// webtrap.oat[], one entry per OAT id (ecs_threat.h). `verdicts`, the
// verdicts of the record's window keys after it, become webtrap.oat_verdicts[].
// When `original_at` is given, event.original is left out and *original_at
// is set to the offset where spliceOriginal() puts it back. The store uses
// this to keep the original records of a batch once, outside the documents.
std::string buildEcsDocument(const AuditRecord& record, const GeoFacts& geo,
                             const SensorFacts& sensor, std::int64_t ingest_ms,
                             std::span<const OatTag> behaviour_tags = {},
                             std::span<const OatVerdict> verdicts = {},
                             std::size_t* original_at = nullptr);

// Appends to `out` the document that buildEcsDocument() would have built with
// event.original: `stripped` (built with `original_at`) with `original` put
// back at `original_at`. The result is byte for byte the full document.
void spliceOriginal(std::string& out, std::string_view stripped, std::size_t original_at,
                    std::string_view original);
// An upper bound, for reserving, of the bytes spliceOriginal() appends for a
// JSON record as original (escaping anything else may need more).
std::size_t splicedBytes(std::size_t stripped_bytes, std::size_t original_bytes);

}  // namespace webtrap::collector
