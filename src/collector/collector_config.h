// The collector's configuration: loaded from one YAML file at start,
// validated, then shared read-only by every thread. The collector's own keys
// are declared in one option table. The sections that belong to inputs,
// enrichment and outputs are handed to those components' parse functions.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "collector/store.h"
#include "collector/trusted_proxies.h"

namespace webtrap::collector {

struct ListenAddress {
  std::string host;  // numeric IPv4 or IPv6 address, without brackets
  std::uint16_t port = 0;
};

// Parses "127.0.0.1:7380" or "[::1]:7380"; throws ConfigError naming `key`.
ListenAddress parseListenAddress(const std::string& text, const std::string& key);

struct IngestTlsOptions {
  std::filesystem::path certificate;  // PEM chain; empty: plain HTTP
  std::filesystem::path private_key;
  std::filesystem::path client_ca;    // PEM bundle used to verify client certificates
  bool require_client_certificate = false;
};

struct IngestLimits {
  std::uint64_t max_body_bytes = 32ULL << 20;           // as received (compressed)
  std::uint64_t max_decompressed_bytes = 256ULL << 20;  // after gzip
  std::uint64_t max_record_bytes = 16ULL << 20;         // one record, after gzip
  std::uint32_t read_timeout_ms = 30000;  // one whole request
  std::uint32_t idle_timeout_ms = 60000;  // keep-alive connection between requests
  // One ingest request head, from the accept (after the TLS handshake) or,
  // on a kept-alive connection, from the request's first byte.
  std::uint32_t header_timeout_ms = 10000;
  std::uint32_t max_connections = 1024;
  // Ingest requests of one sensor whose bodies are being received at once,
  // so a sensor with slow bodies cannot take every ingest slot.
  std::uint32_t max_slots_per_sensor = 8;
  // Minimum rate of an ingest body in bytes per second: once
  // min_body_rate_grace_ms has passed since the body started, it must have
  // received at least this rate times the time past the grace period, or it
  // is cut. 0 turns the check off.
  std::uint64_t min_body_rate = 1024;
  std::uint32_t min_body_rate_grace_ms = 10000;
};

// The shortest admin.token accepted with an admin listener on an address
// other than loopback.
inline constexpr std::size_t kMinNetworkAdminTokenLength = 16;

struct CollectorConfig {
  std::string listen = "127.0.0.1:7380";
  IngestTlsOptions tls;
  std::string admin_listen = "127.0.0.1:9102";  // empty: no admin listener
  std::string admin_token;                      // empty: /metrics and /healthz are open
  TrustedProxies admin_trusted_proxies;         // empty: X-Forwarded-For is ignored
  std::filesystem::path state_dir = "var/collector";
  StoreOptions store;  // store.path defaults to <state_dir>/store.sqlite
  IngestLimits limits;
  std::uint32_t io_threads = 2;
  std::uint32_t retention_interval_ms = 60000;

  bool probe_input = true;
  bool modsecurity_http_input = true;

  // Sections parsed by the components that own them. Each node is validated
  // at load by that component's parse function and kept for it; a missing
  // section is a null node.
  YAML::Node file_inputs;    // inputs.files
  YAML::Node enrich;         // enrich
  YAML::Node elasticsearch;  // outputs.elasticsearch
  YAML::Node ndjson;         // outputs.ndjson
  YAML::Node stix;           // outputs.stix (STIX 2.1 bundles)
  YAML::Node misp_feed;      // outputs.misp_feed
  YAML::Node misp;           // outputs.misp (the MISP REST output)
  YAML::Node behaviour;      // behaviour (the behavioural OAT tagger)
  YAML::Node dashboard;      // dashboard (the built-in dashboard)

  std::filesystem::path source;  // the file loaded; empty for the built-in default

  // "listen from WEBTRAP__LISTEN" for each key set from the environment:
  // names only, for the start log.
  std::vector<std::string> environment_keys;
};

// Loads `path`, or the built-in default when `path` is empty, with the
// WEBTRAP__ variables of `environment` (NAME=VALUE strings) written over the
// file's keys before validation (see common/config_environment.h). Throws
// ConfigError naming the key, the value and the fix, and the variable when
// the key came from the environment.
CollectorConfig loadCollectorConfig(const std::filesystem::path& path,
                                    const std::vector<std::string>& environment = {});

// Parses YAML text, for tests; `name` stands for the file name in errors.
CollectorConfig parseCollectorConfig(const std::string& yaml_text, const std::string& name,
                                     const std::vector<std::string>& environment = {});

// Every key as a Markdown table, the body of docs/collector-configuration.md.
std::string collectorConfigurationReference();

}  // namespace webtrap::collector
