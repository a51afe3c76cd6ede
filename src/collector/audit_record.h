// An audit record decoded from any producer the collector accepts: a webtrap
// probe, libmodsecurity v3 (JSON file or its HTTPS audit log type) or
// mod_security2 (JSON). Every later stage (enrichment, the ECS document, the
// outputs) reads this one shape, never the producer's own layout.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace webtrap::collector {

enum class RecordFormat {
  kAuto,      // decoder picks from the record's shape
  kWebtrap,   // probe record: libmodsecurity v3 layout plus the `webtrap` object
  kModsec3,   // libmodsecurity v3 JSON audit record
  kModsec2,   // mod_security2 JSON audit record (a different layout)
};

std::string_view formatName(RecordFormat format);  // "webtrap", "modsec3", ...

struct HeaderField {
  std::string name;   // as sent, case kept
  std::string value;
};

struct RuleMessage {
  std::string rule_id;   // "942100"; empty when the producer gave none
  std::string message;   // "SQL Injection Attack Detected via libinjection"
  std::string data;      // matched data
  std::string severity;  // as the producer wrote it: "2" or "CRITICAL"
  std::string file;
  std::string line;
  std::string version;   // rule set version, such as "OWASP_CRS/3.3.4"
  std::vector<std::string> tags;
};

struct AuditRecord {
  RecordFormat format = RecordFormat::kAuto;

  // Globally unique id, the deduplication key and the Elasticsearch _id. For
  // webtrap records it is webtrap.event_id. For ModSecurity records, whose own
  // ids are not globally unique, it is derived from the record's bytes and its
  // origin, so reading the same record twice gives the same id.
  std::string event_id;
  std::string transaction_id;  // the producer's own id

  std::int64_t timestamp_us = 0;  // UTC, microseconds since the epoch

  std::string client_ip;
  std::uint16_t client_port = 0;
  std::string server_ip;
  std::uint16_t server_port = 0;

  std::string method;
  std::string uri;           // as requested: path and query
  std::string http_version;  // "1.1"
  std::string host;
  std::vector<HeaderField> request_headers;   // wire order, duplicates kept
  std::string request_body;                   // bytes as decoded
  std::optional<std::uint64_t> request_body_bytes;  // full size when known

  int response_status = 0;
  std::vector<HeaderField> response_headers;

  std::vector<RuleMessage> messages;

  std::string producer_version;  // "ModSecurity v3.0.9 (Linux)"
  std::string connector;         // "ModSecurity-nginx v1.0.3"
  std::string secrules_engine;   // "DetectionOnly"
  std::vector<std::string> components;  // rule sets, such as "OWASP_CRS/3.3.4"

  // What the probe adds (empty for ModSecurity records).
  std::string sensor_id;
  std::string sensor_group;
  std::string persona;
  std::vector<std::string> bait_hits;
  std::vector<std::string> tags;

  // The record as received, as valid UTF-8 JSON text: kept whole in the
  // stored document (event.original), so nothing the producer wrote is lost.
  std::string original;
};

struct DecodeResult {
  bool ok = false;
  AuditRecord record;
  std::string error;  // why the record was rejected, naming the field
};

// Decodes one JSON audit record. `origin` names where it came from (a file
// path, a sensor id) and takes part in derived event ids. Never throws on bad
// input: a record that cannot be decoded gives ok = false and an error.
DecodeResult decodeAuditRecord(std::string_view json, RecordFormat format,
                               std::string_view origin);

}  // namespace webtrap::collector
