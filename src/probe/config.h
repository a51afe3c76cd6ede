// The probe's configuration: loaded from YAML once at start, validated, then
// shared read-only by every thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "probe/inspector.h"
#include "probe/spool.h"
#include "shipper/shipper_config.h"

namespace webtrap::probe {

struct ListenerConfig {
  std::string name;
  std::string address;  // numeric IPv4 or IPv6 address, without brackets
  std::uint16_t port = 0;
  bool tls = false;
  bool bait = false;     // an extra port that no real user visits
  std::string persona;   // empty: the probe's default persona
};

struct TlsConfig {
  std::filesystem::path certificate;  // PEM chain; empty: self-signed, made at first start
  std::filesystem::path private_key;
};

// Limits against abusive clients. The defaults follow Apache 2.4's defaults
// where Apache has one, so that the persona behaves like the server it
// imitates.
struct LimitsConfig {
  // Request line plus header block read per request. It is larger than
  // Apache's LimitRequestFieldSize (8190) on purpose. The persona responds to
  // oversized fields as Apache does, but the probe still reads and inspects
  // them, because exploits such as Citrix Bleed send 20 KiB headers.
  std::uint32_t max_header_bytes = 65536;
  std::uint32_t max_header_count = 100;     // Apache LimitRequestFields
  std::uint64_t max_body_bytes = 64ull << 20;  // read and hashed; past this the connection closes
  std::uint32_t read_timeout_ms = 20000;    // Apache RequestReadTimeout header=20
  std::uint32_t idle_timeout_ms = 5000;     // Apache KeepAliveTimeout 5
  std::uint32_t max_requests_per_connection = 101;  // Apache's MaxKeepAliveRequests 100, plus the first
  std::uint32_t max_connections = 1024;
  std::uint32_t max_connections_per_source = 32;
};

struct PipelineConfig {
  std::uint32_t workers = 2;           // inspection threads
  std::uint32_t queue_limit = 4096;    // requests waiting for inspection
  std::uint64_t queue_max_bytes = 256ull << 20;  // their captured bytes
  int worker_nice = 10;  // inspection threads yield the CPU to the threads that respond
  std::uint32_t drain_timeout_ms = 5000;  // inspection time on stop; the rest is shed
  // Inspection time for the requests recovered from the journal at the start.
  // The rest are recorded uninspected (status interrupted).
  std::uint32_t recovery_timeout_ms = 10000;
  bool journal = true;  // journal queued requests so that a SIGKILL loses none
};

struct ProbeConfig {
  std::string sensor_id;
  std::string sensor_group = "default";
  std::string persona = "apache-debian-php";
  std::filesystem::path personas_dir;
  std::filesystem::path state_dir = "var/state";
  std::string run_as;  // user to switch to after binding when started as root
  std::string admin_listen = "127.0.0.1:9101";  // empty: no admin listener
  std::uint32_t io_threads = 1;
  std::uint64_t body_capture_bytes = 1 << 20;  // body bytes kept in the record
  bool seccomp = true;  // deny connect() and execve() once the ports are bound

  std::vector<ListenerConfig> listeners;
  TlsConfig tls;
  LimitsConfig limits;
  InspectorConfig inspector;
  PipelineConfig pipeline;
  SpoolConfig spool;
  shipper::ShipperConfig shipper;

  // "shipper.url from WEBTRAP__SHIPPER__URL" for each key set from the
  // environment: names only, for the start log.
  std::vector<std::string> environment_keys;
};

// Loads `path`, or the built-in defaults when `path` is empty, with the
// WEBTRAP__ variables of `environment` (NAME=VALUE strings) written over the
// file's keys before validation (see common/config_environment.h). Throws
// ConfigError naming the key, the value and the fix, for unknown keys too,
// and the variable when the key came from the environment.
ProbeConfig loadProbeConfig(const std::filesystem::path& path,
                            const std::vector<std::string>& environment = {});

// Parses YAML text as loadProbeConfig() parses a file; `name` is the file
// name in errors. Used by tests and the fuzz target.
ProbeConfig parseProbeConfig(const std::string& yaml_text, const std::string& name,
                             const std::vector<std::string>& environment = {});

// Parses "ADDR:PORT", "[V6]:PORT" or "PORT" into a listener. Throws
// ConfigError naming `what` (the key or flag).
ListenerConfig parseListenAddress(const std::string& text, const std::string& what);

// Describes every configuration key (type, default, meaning) in Markdown.
std::string configurationReference();

// Finds the folder with webtrap's data (personas/, rules/): the source tree
// when run from a build, else the installed share folder.
std::filesystem::path dataDirectory();

}  // namespace webtrap::probe
