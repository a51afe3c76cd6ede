// Builds the document the collector stores and sends: Elastic Common Schema
// fields from a decoded audit record plus its enrichment, with the original
// record kept whole in event.original.
#pragma once

#include <cstdint>
#include <string>

#include "collector/audit_record.h"
#include "collector/enrich.h"

namespace webtrap::collector {

struct SensorFacts {
  std::string sensor_id;  // observer.name; from the record or the sender's enrolment
  std::string group;      // observer.group? see docs/ecs.md
  std::string input;      // "probe", "modsecurity-http", "file"
};

// Returns one JSON object (no trailing newline). Always valid JSON and valid
// UTF-8, whatever bytes the record holds.
std::string buildEcsDocument(const AuditRecord& record, const GeoFacts& geo,
                             const SensorFacts& sensor, std::int64_t ingest_ms);

}  // namespace webtrap::collector
