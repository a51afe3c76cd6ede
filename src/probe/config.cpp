#include "probe/config.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <functional>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "common/config_environment.h"
#include "common/config_table.h"
#include "common/config_values.h"
#include "common/error.h"

namespace webtrap::probe {
namespace {

using config_values::narrow;
using config_values::parseBool;
using config_values::parseBytes;
using config_values::parseMilliseconds;
using config_values::parseUnsigned;
using config_values::scalarText;

using Apply = std::function<void(ProbeConfig&, const std::string&)>;
using Option = config_table::Option<Apply>;

Apply setString(std::string ProbeConfig::*member) {
  return [member](ProbeConfig& c, const std::string& v) { c.*member = v; };
}

const std::vector<Option>& options() {
  static const std::vector<Option> kOptions = {
      {"sensor.id", "string", "host name", "Sensor id written into every record.",
       setString(&ProbeConfig::sensor_id)},
      {"sensor.group", "string", "default",
       "Sensor group, used to aggregate events from several probes.",
       setString(&ProbeConfig::sensor_group)},
      {"persona", "string", "apache-debian-php",
       "Default persona: a folder name under personas_dir.", setString(&ProbeConfig::persona)},
      {"personas_dir", "path", "<data>/personas", "Folder that holds the persona folders.",
       [](ProbeConfig& c, const std::string& v) { c.personas_dir = v; }},
      {"state_dir", "path", "var/state",
       "Folder for the bait secret and the generated TLS certificate.",
       [](ProbeConfig& c, const std::string& v) { c.state_dir = v; }},
      {"run_as", "string", "nobody when started as root",
       "User to switch to after binding the ports. Ignored when not started as root.",
       setString(&ProbeConfig::run_as)},
      {"admin.listen", "address", "127.0.0.1:9101",
       "Address of the admin listener serving /metrics and /healthz. Empty turns it off.",
       setString(&ProbeConfig::admin_listen)},
      {"io_threads", "count", "1", "Threads that accept connections and answer requests.",
       [](ProbeConfig& c, const std::string& v) {
         c.io_threads = narrow<std::uint32_t>(parseUnsigned(v, "io_threads"), "io_threads");
       }},
      {"capture.body_bytes", "size", "1MiB",
       "Body bytes kept in each record; longer bodies are truncated and flagged, but hashed "
       "whole.",
       [](ProbeConfig& c, const std::string& v) {
         c.body_capture_bytes = parseBytes(v, "capture.body_bytes");
       }},
      {"hardening.seccomp", "bool", "true",
       "After binding, deny connect() and execve() to every thread, so no request or rule can "
       "open an outbound connection or run a program.",
       [](ProbeConfig& c, const std::string& v) {
         c.seccomp = parseBool(v, "hardening.seccomp");
       }},
      {"tls.certificate", "path", "self-signed",
       "PEM certificate chain for TLS listeners. When empty, a self-signed certificate is "
       "made in state_dir at first start.",
       [](ProbeConfig& c, const std::string& v) { c.tls.certificate = v; }},
      {"tls.private_key", "path", "self-signed", "PEM private key for tls.certificate.",
       [](ProbeConfig& c, const std::string& v) { c.tls.private_key = v; }},
      {"limits.max_header_bytes", "size", "64KiB",
       "Request line plus header block read and inspected; larger heads are recorded and get "
       "the persona's 400 answer.",
       [](ProbeConfig& c, const std::string& v) {
         c.limits.max_header_bytes = narrow<std::uint32_t>(
             parseBytes(v, "limits.max_header_bytes"), "limits.max_header_bytes");
       }},
      {"limits.max_header_count", "count", "100", "Header fields per request.",
       [](ProbeConfig& c, const std::string& v) {
         c.limits.max_header_count = narrow<std::uint32_t>(
             parseUnsigned(v, "limits.max_header_count"), "limits.max_header_count");
       }},
      {"limits.max_body_bytes", "size", "64MiB",
       "Body bytes read per request; past this the request is recorded and the connection "
       "closed.",
       [](ProbeConfig& c, const std::string& v) {
         c.limits.max_body_bytes = parseBytes(v, "limits.max_body_bytes");
       }},
      {"limits.read_timeout", "duration", "20s",
       "Time allowed to receive one whole request, against slow senders.",
       [](ProbeConfig& c, const std::string& v) {
         c.limits.read_timeout_ms = narrow<std::uint32_t>(
             parseMilliseconds(v, "limits.read_timeout"), "limits.read_timeout");
       }},
      {"limits.idle_timeout", "duration", "5s",
       "Time an idle keep-alive connection stays open.",
       [](ProbeConfig& c, const std::string& v) {
         c.limits.idle_timeout_ms = narrow<std::uint32_t>(
             parseMilliseconds(v, "limits.idle_timeout"), "limits.idle_timeout");
       }},
      {"limits.max_requests_per_connection", "count", "101",
       "Requests per connection; Apache's MaxKeepAliveRequests 100 allows 101 with the first.",
       [](ProbeConfig& c, const std::string& v) {
         c.limits.max_requests_per_connection =
             narrow<std::uint32_t>(parseUnsigned(v, "limits.max_requests_per_connection"),
                                   "limits.max_requests_per_connection");
       }},
      {"limits.max_connections", "count", "1024", "Open connections over all listeners.",
       [](ProbeConfig& c, const std::string& v) {
         c.limits.max_connections = narrow<std::uint32_t>(
             parseUnsigned(v, "limits.max_connections"), "limits.max_connections");
       }},
      {"limits.max_connections_per_source", "count", "32", "Open connections from one address.",
       [](ProbeConfig& c, const std::string& v) {
         c.limits.max_connections_per_source =
             narrow<std::uint32_t>(parseUnsigned(v, "limits.max_connections_per_source"),
                                   "limits.max_connections_per_source");
       }},
      {"modsecurity.paranoia_level", "1-4", "1", "CRS paranoia level.",
       [](ProbeConfig& c, const std::string& v) {
         auto level = parseUnsigned(v, "modsecurity.paranoia_level");
         if (level < 1 || level > 4) {
           throw ConfigError(fmt::format("modsecurity.paranoia_level: invalid value {}; use 1, 2, "
                                         "3 or 4",
                                         level));
         }
         c.inspector.paranoia_level = static_cast<int>(level);
       }},
      {"modsecurity.crs_setup", "path", "/etc/modsecurity/crs/crs-setup.conf",
       "CRS setup file, loaded before the rules.",
       [](ProbeConfig& c, const std::string& v) { c.inspector.crs_setup = v; }},
      {"modsecurity.crs_rules", "path", "/usr/share/modsecurity-crs/rules",
       "Folder with the CRS rule files.",
       [](ProbeConfig& c, const std::string& v) { c.inspector.crs_rules = v; }},
      {"modsecurity.webtrap_rules", "path", "<data>/rules",
       "Folder with webtrap's honeytrap and gap rules.",
       [](ProbeConfig& c, const std::string& v) { c.inspector.webtrap_rules = v; }},
      {"modsecurity.extra_rules", "list of paths", "none",
       "Further rule files, loaded after the CRS setup and before the CRS rules.", nullptr},
      {"modsecurity.cache_entries", "count", "8192",
       "Inspection results kept for requests with identical bytes; 0 turns the cache off.",
       [](ProbeConfig& c, const std::string& v) {
         c.inspector.cache_entries = parseUnsigned(v, "modsecurity.cache_entries");
       }},
      {"modsecurity.match_string_max_bytes", "size", "2KiB",
       "Bytes kept of each rule message's message, data, match and reference text in a record, "
       "at least 128. Longer text ends in \" [truncated by webtrap from N bytes]\".",
       [](ProbeConfig& c, const std::string& v) {
         std::uint64_t bytes = parseBytes(v, "modsecurity.match_string_max_bytes");
         if (bytes < kMinTruncatedBytes) {
           throw ConfigError(fmt::format(
               "modsecurity.match_string_max_bytes: invalid value {}; use at least {} bytes, "
               "room for the truncation marker",
               v, kMinTruncatedBytes));
         }
         c.inspector.match_limits.max_string_bytes = bytes;
       }},
      {"modsecurity.match_details_max_bytes", "size", "64KiB",
       "Estimated JSON bytes of all rule messages in one record. Past it, repeated messages of a "
       "rule are dropped and each further rule keeps one message with 256 bytes per text; "
       "inspection.details_cut counts what was cut.",
       [](ProbeConfig& c, const std::string& v) {
         c.inspector.match_limits.max_total_bytes =
             parseBytes(v, "modsecurity.match_details_max_bytes");
       }},
      {"pipeline.workers", "count", "2", "Inspection threads.",
       [](ProbeConfig& c, const std::string& v) {
         c.pipeline.workers =
             narrow<std::uint32_t>(parseUnsigned(v, "pipeline.workers"), "pipeline.workers");
         if (c.pipeline.workers == 0) {
           throw ConfigError("pipeline.workers: invalid value 0; use at least 1");
         }
       }},
      {"pipeline.queue_limit", "count", "4096",
       "Requests waiting for inspection. When full, requests are recorded uninspected (shed).",
       [](ProbeConfig& c, const std::string& v) {
         c.pipeline.queue_limit = narrow<std::uint32_t>(parseUnsigned(v, "pipeline.queue_limit"),
                                                        "pipeline.queue_limit");
       }},
      {"pipeline.queue_max_bytes", "size", "256MiB", "Captured bytes waiting for inspection.",
       [](ProbeConfig& c, const std::string& v) {
         c.pipeline.queue_max_bytes = parseBytes(v, "pipeline.queue_max_bytes");
       }},
      {"pipeline.worker_nice", "0-19", "10",
       "Nice value of the inspection threads, so that answering requests comes first.",
       [](ProbeConfig& c, const std::string& v) {
         auto nice = parseUnsigned(v, "pipeline.worker_nice");
         if (nice > 19) {
           throw ConfigError(fmt::format("pipeline.worker_nice: invalid value {}; use 0 to 19",
                                         nice));
         }
         c.pipeline.worker_nice = static_cast<int>(nice);
       }},
      {"pipeline.drain_timeout", "duration", "5s",
       "On stop, time to inspect queued requests; the rest are recorded uninspected (shed).",
       [](ProbeConfig& c, const std::string& v) {
         c.pipeline.drain_timeout_ms = narrow<std::uint32_t>(
             parseMilliseconds(v, "pipeline.drain_timeout"), "pipeline.drain_timeout");
       }},
      {"pipeline.recovery_timeout", "duration", "10s",
       "At start, time to inspect the requests recovered from the inspection journal. The rest "
       "are recorded uninspected (status interrupted). The probe takes no traffic before the "
       "recovery ends.",
       [](ProbeConfig& c, const std::string& v) {
         c.pipeline.recovery_timeout_ms = narrow<std::uint32_t>(
             parseMilliseconds(v, "pipeline.recovery_timeout"), "pipeline.recovery_timeout");
       }},
      {"pipeline.journal", "bool", "true",
       "Write each request that waits for inspection to a journal in spool.dir, so that the "
       "next start inspects and records the requests a SIGKILL or crash left uninspected "
       "(webtrap.inspection.recovered true). A journal left by an earlier run is recovered "
       "even when false.",
       [](ProbeConfig& c, const std::string& v) {
         c.pipeline.journal = parseBool(v, "pipeline.journal");
       }},
      {"spool.dir", "path", "var/spool",
       "Folder of the NDJSON record segments. One probe per folder: a second probe started on it "
       "stops with an error.",
       [](ProbeConfig& c, const std::string& v) { c.spool.dir = v; }},
      {"spool.segment_bytes", "size", "64MiB", "Segment size before rotation.",
       [](ProbeConfig& c, const std::string& v) {
         c.spool.segment_bytes = parseBytes(v, "spool.segment_bytes");
       }},
      {"spool.max_bytes", "size", "1GiB", "Disk cap over all segments.",
       [](ProbeConfig& c, const std::string& v) {
         c.spool.max_bytes = parseBytes(v, "spool.max_bytes");
       }},
      {"spool.fsync", "always|interval|never", "interval",
       "When records reach the disk: after each record, every fsync_interval, or when the "
       "kernel decides.",
       [](ProbeConfig& c, const std::string& v) {
         if (v == "always") {
           c.spool.fsync = FsyncPolicy::kAlways;
         } else if (v == "interval") {
           c.spool.fsync = FsyncPolicy::kInterval;
         } else if (v == "never") {
           c.spool.fsync = FsyncPolicy::kNever;
         } else {
           throw ConfigError(fmt::format("spool.fsync: invalid value \"{}\"; use always, interval "
                                         "or never",
                                         v));
         }
       }},
      {"spool.fsync_interval", "duration", "1s", "Time between fsyncs with spool.fsync: interval.",
       [](ProbeConfig& c, const std::string& v) {
         c.spool.fsync_interval_ms = narrow<std::uint32_t>(
             parseMilliseconds(v, "spool.fsync_interval"), "spool.fsync_interval");
       }},
      {"spool.on_full", "drop_new|delete_oldest", "drop_new",
       "What happens at the disk cap: drop new records, or delete the oldest segments. Both "
       "count every record lost.",
       [](ProbeConfig& c, const std::string& v) {
         if (v == "drop_new") {
           c.spool.on_full = FullPolicy::kDropNew;
         } else if (v == "delete_oldest") {
           c.spool.on_full = FullPolicy::kDeleteOldest;
         } else {
           throw ConfigError(fmt::format("spool.on_full: invalid value \"{}\"; use drop_new or "
                                         "delete_oldest",
                                         v));
         }
       }},
      {"shipper.enabled", "bool", "true when shipper.url is set",
       "Fork a shipper process that sends the spool to the collector. Set false to run "
       "`webtrap ship` separately instead.",
       [](ProbeConfig& c, const std::string& v) {
         c.shipper.enabled = parseBool(v, "shipper.enabled");
       }},
      {"shipper.url", "URL", "none",
       "Collector address, such as https://collector.example:7380; batches go to its "
       "/v1/records path. Plain http:// is accepted only to a loopback host.",
       [](ProbeConfig& c, const std::string& v) { c.shipper.url = v; }},
      {"shipper.token", "string", "none",
       "Sensor token sent as `Authorization: Bearer`. Prefer token_file.",
       [](ProbeConfig& c, const std::string& v) { c.shipper.token = v; }},
      {"shipper.token_file", "path", "none",
       "Regular file of at most 64 KiB that contains the sensor token, read at start (before "
       "dropping privileges).",
       [](ProbeConfig& c, const std::string& v) { c.shipper.token_file = v; }},
      {"shipper.ca_file", "path", "system CA bundle",
       "PEM CA bundle that verifies the collector's certificate.",
       [](ProbeConfig& c, const std::string& v) { c.shipper.ca_file = v; }},
      {"shipper.client_certificate", "path", "none",
       "PEM client certificate for collectors that require mutual TLS.",
       [](ProbeConfig& c, const std::string& v) { c.shipper.client_certificate = v; }},
      {"shipper.client_key", "path", "none",
       "PEM private key of shipper.client_certificate, when not in the same file.",
       [](ProbeConfig& c, const std::string& v) { c.shipper.client_key = v; }},
      {"shipper.proxy", "URL", "none",
       "Proxy for a collector that is not on a loopback host, such as "
       "http://proxy.example:3128 (schemes http, https, socks4, socks4a, socks5, socks5h). "
       "Unset: no proxy, and the environment's http_proxy, https_proxy, all_proxy and "
       "no_proxy are ignored.",
       [](ProbeConfig& c, const std::string& v) { c.shipper.proxy = v; }},
      {"shipper.batch_max_records", "count", "1000", "Records per batch.",
       [](ProbeConfig& c, const std::string& v) {
         c.shipper.batch_max_records = narrow<std::uint32_t>(
             parseUnsigned(v, "shipper.batch_max_records"), "shipper.batch_max_records");
       }},
      {"shipper.batch_max_bytes", "size", "4MiB",
       "Uncompressed bytes per batch; a single longer record is sent alone.",
       [](ProbeConfig& c, const std::string& v) {
         c.shipper.batch_max_bytes = parseBytes(v, "shipper.batch_max_bytes");
       }},
      {"shipper.interval", "duration", "1s",
       "Time between looks at the spool when every record has been shipped.",
       [](ProbeConfig& c, const std::string& v) {
         c.shipper.interval_ms = narrow<std::uint32_t>(parseMilliseconds(v, "shipper.interval"),
                                                       "shipper.interval");
       }},
      {"shipper.retry_initial", "duration", "500ms",
       "First retry bound after a failure; it doubles per failure, and each wait is a random "
       "time below the bound (full jitter).",
       [](ProbeConfig& c, const std::string& v) {
         c.shipper.retry_initial_ms = narrow<std::uint32_t>(
             parseMilliseconds(v, "shipper.retry_initial"), "shipper.retry_initial");
       }},
      {"shipper.retry_max", "duration", "60s",
       "Largest retry bound; also the wait between attempts while the collector rejects the "
       "token. A Retry-After from the collector takes precedence.",
       [](ProbeConfig& c, const std::string& v) {
         c.shipper.retry_max_ms = narrow<std::uint32_t>(
             parseMilliseconds(v, "shipper.retry_max"), "shipper.retry_max");
       }},
      {"shipper.timeout", "duration", "60s",
       "Time allowed for one POST, connecting included.",
       [](ProbeConfig& c, const std::string& v) {
         c.shipper.timeout_ms = narrow<std::uint32_t>(parseMilliseconds(v, "shipper.timeout"),
                                                      "shipper.timeout");
       }},
      {"shipper.gzip", "bool", "true", "Compress batches with gzip (Content-Encoding: gzip).",
       [](ProbeConfig& c, const std::string& v) {
         c.shipper.gzip = parseBool(v, "shipper.gzip");
       }},
  };
  return kOptions;
}

const std::set<std::string> kListenerKeys = {"name", "address", "tls", "bait", "persona"};

void applyListeners(ProbeConfig& config, const YAML::Node& node) {
  if (!node.IsSequence()) {
    throw ConfigError("listeners: expected a list of listeners, each with at least `address: "
                      "127.0.0.1:8080`");
  }
  for (std::size_t i = 0; i < node.size(); ++i) {
    const YAML::Node& item = node[i];
    std::string where = fmt::format("listeners[{}]", i);
    if (!item.IsMap()) {
      throw ConfigError(where + ": expected a map with `address:` and optional name, tls, bait, "
                                "persona");
    }
    for (const auto& entry : item) {
      std::string key = config_table::keyText(entry.first, where);
      if (!kListenerKeys.contains(key)) {
        throw ConfigError(fmt::format("{}.{}: unknown key; known keys are name, address, tls, "
                                      "bait, persona",
                                      where, key));
      }
    }
    if (!item["address"]) {
      throw ConfigError(where + ".address: missing; add `address: 127.0.0.1:8080`");
    }
    ListenerConfig listener =
        parseListenAddress(scalarText(item["address"], where + ".address"), where + ".address");
    if (item["name"]) {
      listener.name = scalarText(item["name"], where + ".name");
    }
    if (item["tls"]) {
      listener.tls = parseBool(scalarText(item["tls"], where + ".tls"), where + ".tls");
    }
    if (item["bait"]) {
      listener.bait = parseBool(scalarText(item["bait"], where + ".bait"), where + ".bait");
    }
    if (item["persona"]) {
      listener.persona = scalarText(item["persona"], where + ".persona");
    }
    if (listener.name.empty()) {
      listener.name = fmt::format("{}-{}", listener.tls ? "tls" : "http", listener.port);
    }
    config.listeners.push_back(std::move(listener));
  }
}

// Parses one key: the listener list, the extra rule files or a scalar
// option. Returns false for any other key.
bool applyKey(ProbeConfig& config, const std::string& key, const YAML::Node& value) {
  if (key == "listeners") {
    applyListeners(config, value);
    return true;
  }
  if (key == "modsecurity.extra_rules") {
    if (!value.IsSequence()) {
      throw ConfigError("modsecurity.extra_rules: expected a list of rule file paths");
    }
    for (const auto& path : value) {
      config.inspector.extra_rules.emplace_back(scalarText(path, key));
    }
    return true;
  }
  return config_table::applyScalarOption(options(), key, value, config);
}

// The kind of each key for environment overrides: the two lists, the
// options of the table and their groups.
config_environment::KeyKind probeKeyKind(const std::string& key) {
  using config_environment::KeyKind;
  if (key == "listeners" || key == "modsecurity.extra_rules") {
    return KeyKind::kList;
  }
  if (config_table::findOption(options(), key) != nullptr) {
    return KeyKind::kValue;
  }
  if (config_table::hasGroup(options(), key)) {
    return KeyKind::kMap;
  }
  return KeyKind::kUnknown;
}

std::string hostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') {
    return "probe";
  }
  return name;
}

}  // namespace

std::filesystem::path dataDirectory() {
  if (const char* env = std::getenv("WEBTRAP_DATA_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  std::filesystem::path source = WEBTRAP_SOURCE_DIR;
  if (std::filesystem::exists(source / "personas")) {
    return source;
  }
  return "/usr/share/webtrap";
}

ListenerConfig parseListenAddress(const std::string& text, const std::string& what) {
  config_values::HostPort parsed = config_values::parseHostPort(text, what, 8080, "127.0.0.1");
  ListenerConfig listener;
  listener.address = parsed.host;
  listener.port = parsed.port;
  listener.name = fmt::format("http-{}", parsed.port);
  return listener;
}

namespace {

// Reads the configuration out of `root`, the parsed document named `name` in
// messages, with `overrides` written over it.
ProbeConfig parseRoot(YAML::Node root, const std::string& name,
                      const std::vector<config_environment::Override>& overrides) {
  ProbeConfig config;
  config.sensor_id = hostName();
  config.personas_dir = dataDirectory() / "personas";
  config.inspector.webtrap_rules = dataDirectory() / "rules";
  config.spool.dir = "var/spool";

  config.environment_keys = config_environment::parseWithOverrides(
      root, overrides, config_environment::Schema{probeKeyKind, "probe"}, name, [&] {
        config_table::KeyWalk walk{
            .apply = [&](const std::string& key,
                         const YAML::Node& value) { return applyKey(config, key, value); },
            .is_group =
                [](const std::string& key) { return config_table::hasGroup(options(), key); },
            .program = "probe",
            // A group written with no value, such as `tls:` alone, is an
            // error in probe files.
            .allow_empty_group = false,
        };
        config_table::walkTopLevel(root, name, walk);

        config.inspector.body_limit = config.body_capture_bytes;
        if (!config.admin_listen.empty()) {
          parseListenAddress(config.admin_listen, "admin.listen");
        }
      });
  return config;
}

}  // namespace

ProbeConfig loadProbeConfig(const std::filesystem::path& path,
                            const std::vector<std::string>& environment) {
  // The variables are checked before the file is read, so a bad variable
  // name is reported first.
  std::vector<config_environment::Override> overrides =
      config_environment::readOverrides(environment);
  if (path.empty()) {
    return parseRoot(YAML::Node(), "built-in default", overrides);
  }
  return parseRoot(config_table::loadYamlFile(path), path.string(), overrides);
}

ProbeConfig parseProbeConfig(const std::string& yaml_text, const std::string& name,
                             const std::vector<std::string>& environment) {
  std::vector<config_environment::Override> overrides =
      config_environment::readOverrides(environment);
  return parseRoot(config_table::parseYamlText(yaml_text, name), name, overrides);
}

std::string configurationReference() {
  std::string out =
      config_table::referenceHeader() +
      "| listeners | list | loopback: 127.0.0.1:8080, [::1]:8080, TLS 127.0.0.1:8443, bait 127.0.0.1:8888 | Each item: `address` (ADDR:PORT, [V6]:PORT), `name`, "
      "`tls` (true/false), `bait` (true for an extra port no real user visits), `persona`. |\n";
  out += config_table::referenceRows(options());
  return out;
}

}  // namespace webtrap::probe
