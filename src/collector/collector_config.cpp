#include "collector/collector_config.h"

#include <algorithm>
#include <charconv>
#include <functional>
#include <string_view>

#include <boost/asio/ip/address.hpp>
#include <fmt/format.h>

#include "collector/behaviour.h"
#include "collector/collector_sections.h"
#include "common/config_environment.h"
#include "common/config_table.h"
#include "common/config_values.h"
#include "common/error.h"

namespace webtrap::collector {
namespace {

using config_values::narrow;
using config_values::parseBool;
using config_values::parseBytes;
using config_values::parseMilliseconds;
using config_values::parseUnsigned;
using config_values::scalarText;

using Apply = std::function<void(CollectorConfig&, const std::string&)>;

using Option = config_table::Option<Apply>;

// A section handed whole to the component that owns it.
struct Section {
  const char* key;
  const char* type;
  const char* description;
  YAML::Node CollectorConfig::*member;
};

// Throws ConfigError unless `value` (written as `text` in the file) lies in
// [min, max]. `allowed` states the range in the units of the file.
void requireRange(std::uint64_t value, std::uint64_t min, std::uint64_t max, const char* key,
                  const std::string& text, const char* allowed) {
  if (value < min || value > max) {
    throw ConfigError(fmt::format("{}: invalid value {}; use {}", key, text, allowed));
  }
}

// A connection timeout, from 100ms to 1h.
std::uint32_t parseTimeout(const std::string& text, const char* key) {
  auto milliseconds = parseMilliseconds(text, key);
  requireRange(milliseconds, 100, 3'600'000, key, text, "a duration from 100ms to 1h");
  return static_cast<std::uint32_t>(milliseconds);
}

// A transfer rate in bytes per second, written as a size with an optional
// "/s": 1024, 1KiB or 1KiB/s. Throws ConfigError naming `key`.
std::uint64_t parseRate(const std::string& text, const char* key) {
  std::string size = text;
  if (size.size() > 2 && size.ends_with("/s")) {
    size.resize(size.size() - 2);
  }
  try {
    return parseBytes(size, key);
  } catch (const ConfigError&) {
    throw ConfigError(
        fmt::format("{}: invalid rate \"{}\"; use bytes per second with an "
                    "optional unit, such as 512/s or 1KiB/s (units: KiB, MiB, GiB)",
                    key, text));
  }
}

constexpr const char* kTrustedProxiesKey = "admin.trusted_proxies";

Apply setBool(bool CollectorConfig::*member, const char* key) {
  return [member, key](CollectorConfig& c, const std::string& v) { c.*member = parseBool(v, key); };
}

const std::vector<Option>& options() {
  static const std::vector<Option> kOptions = {
      {"listen", "address", "127.0.0.1:7380",
       "Ingest listener (ADDR:PORT or [V6]:PORT) for POST /v1/records and POST /v1/modsecurity. "
       "HTTPS when tls.certificate is set.",
       [](CollectorConfig& c, const std::string& v) {
         parseListenAddress(v, "listen");
         c.listen = v;
       }},
      {"tls.certificate", "path", "none (plain HTTP)",
       "PEM certificate chain of the ingest listener. Plain HTTP is meant for loopback only.",
       [](CollectorConfig& c, const std::string& v) { c.tls.certificate = v; }},
      {"tls.private_key", "path", "none", "PEM private key for tls.certificate.",
       [](CollectorConfig& c, const std::string& v) { c.tls.private_key = v; }},
      {"tls.client_ca", "path", "none",
       "PEM bundle of the CA that signs sensor client certificates (mutual TLS). To accept a "
       "sensor's token only with its own certificate, enrol it with --client-certificate.",
       [](CollectorConfig& c, const std::string& v) { c.tls.client_ca = v; }},
      {"tls.require_client_certificate", "bool", "false",
       "Reject TLS connections without a client certificate signed by tls.client_ca. The "
       "sensor token is still required.",
       [](CollectorConfig& c, const std::string& v) {
         c.tls.require_client_certificate = parseBool(v, "tls.require_client_certificate");
       }},
      {"admin.listen", "address", "127.0.0.1:9102",
       "Admin listener serving GET /metrics and GET /healthz. Empty turns it off.",
       [](CollectorConfig& c, const std::string& v) {
         if (!v.empty()) {
           parseListenAddress(v, "admin.listen");
         }
         c.admin_listen = v;
       }},
      {"admin.token", "string", "none",
       "When set, the admin listener requires `Authorization: Bearer TOKEN`. Wrong tokens on "
       "any admin route count against one limit per client address (dashboard.login_*). With "
       "admin.listen on an address other than loopback, or with admin.trusted_proxies set, at "
       "least 16 characters.",
       [](CollectorConfig& c, const std::string& v) { c.admin_token = v; }},
      // A list: applyKey() parses it, and this setter gets only a missing
      // value or a single value written where the list belongs.
      {kTrustedProxiesKey, "address list", "[] (X-Forwarded-For ignored)",
       "Addresses or CIDR networks of reverse proxies in front of the admin listener. For a "
       "request from one of them, wrong admin tokens count against the right-most "
       "X-Forwarded-For address that is not itself listed, and from any other peer the header "
       "is ignored. A header entry there that is not an address counts the proxy. List only "
       "your proxies, because a listed address can name any client.",
       [](CollectorConfig& c, const std::string& v) {
         if (!v.empty()) {
           throw ConfigError(fmt::format("{}: expected a list, found \"{}\"; write it as `{}: "
                                         "[{}]`",
                                         kTrustedProxiesKey, v, kTrustedProxiesKey, v));
         }
         c.admin_trusted_proxies = {};
       }},
      {"state_dir", "path", "var/collector", "Folder of the store when store.path is not set.",
       [](CollectorConfig& c, const std::string& v) { c.state_dir = v; }},
      {"io_threads", "count", "2",
       "Threads that accept connections and answer requests, from 1 to 256.",
       [](CollectorConfig& c, const std::string& v) {
         auto threads = parseUnsigned(v, "io_threads");
         requireRange(threads, 1, 256, "io_threads", v, "a count from 1 to 256");
         c.io_threads = static_cast<std::uint32_t>(threads);
       }},
      {"store.path", "path", "<state_dir>/store.sqlite",
       "SQLite file of the durable queue and embedded store (WAL mode).",
       [](CollectorConfig& c, const std::string& v) { c.store.path = v; }},
      {"store.synchronous", "full|normal", "full",
       "full: every commit is on disk before the sender gets its acknowledgement (survives "
       "power loss). normal: survives a crash of the collector, may lose the last commits on "
       "power loss.",
       [](CollectorConfig& c, const std::string& v) {
         if (v != "full" && v != "normal") {
           throw ConfigError(fmt::format("store.synchronous: invalid value \"{}\"; use full or "
                                         "normal",
                                         v));
         }
         c.store.synchronous = v;
       }},
      {"store.retention.max_age", "duration", "30d",
       "Events older than this are removed; 0s keeps them without an age limit.",
       [](CollectorConfig& c, const std::string& v) {
         c.store.retention_max_age_ms = static_cast<std::int64_t>(
             parseMilliseconds(v, "store.retention.max_age"));
       }},
      {"store.retention.max_size", "size", "10GiB",
       "Oldest events are removed while the store is larger than this; 0 turns the limit off. "
       "Events an output has not delivered yet are removed only past this limit, and counted.",
       [](CollectorConfig& c, const std::string& v) {
         c.store.retention_max_bytes = parseBytes(v, "store.retention.max_size");
       }},
      {"store.retention.interval", "duration", "1m", "Time between two retention passes.",
       [](CollectorConfig& c, const std::string& v) {
         c.retention_interval_ms = narrow<std::uint32_t>(
             parseMilliseconds(v, "store.retention.interval"), "store.retention.interval");
         if (c.retention_interval_ms == 0) {
           throw ConfigError("store.retention.interval: invalid value 0s; use at least 1s");
         }
       }},
      {"limits.max_body_bytes", "size", "32MiB",
       "Request body as received (gzip or not); larger requests get 413. From 1KiB to 4GiB.",
       [](CollectorConfig& c, const std::string& v) {
         auto bytes = parseBytes(v, "limits.max_body_bytes");
         requireRange(bytes, 1ULL << 10, 4ULL << 30, "limits.max_body_bytes", v,
                      "a size from 1KiB to 4GiB");
         c.limits.max_body_bytes = bytes;
       }},
      {"limits.max_decompressed_bytes", "size", "256MiB",
       "Body size after gzip decompression; a batch that inflates past this gets 413.",
       [](CollectorConfig& c, const std::string& v) {
         c.limits.max_decompressed_bytes = parseBytes(v, "limits.max_decompressed_bytes");
       }},
      {"limits.max_record_bytes", "size", "16MiB",
       "One record (one NDJSON line of a batch, or one POST /v1/modsecurity body), after gzip "
       "decompression and without line ends. A longer record goes to the dead-letter store "
       "with the reason and is counted as rejected, and the rest of its batch is stored. From "
       "1KiB; the file input's own limit is its max_record_size.",
       [](CollectorConfig& c, const std::string& v) {
         auto bytes = parseBytes(v, "limits.max_record_bytes");
         requireRange(bytes, 1ULL << 10, ~0ULL, "limits.max_record_bytes", v,
                      "a size of at least 1KiB");
         c.limits.max_record_bytes = bytes;
       }},
      {"limits.read_timeout", "duration", "30s",
       "Time allowed to receive one whole request, from 100ms to 1h.",
       [](CollectorConfig& c, const std::string& v) {
         c.limits.read_timeout_ms = parseTimeout(v, "limits.read_timeout");
       }},
      {"limits.idle_timeout", "duration", "60s",
       "Time an idle keep-alive connection stays open, from 100ms to 1h.",
       [](CollectorConfig& c, const std::string& v) {
         c.limits.idle_timeout_ms = parseTimeout(v, "limits.idle_timeout");
       }},
      {"limits.header_timeout", "duration", "10s",
       "Time allowed to receive an ingest request head (request line and header fields), "
       "from the accept (after the TLS handshake) or, on a kept-alive connection, from the "
       "request's first byte, so idle time counts only towards limits.idle_timeout. A "
       "connection whose head is late is closed. From 100ms to 1h. At or above "
       "limits.read_timeout, the read timeout ends a slow head on a new connection first; on a "
       "kept-alive connection this timeout still applies.",
       [](CollectorConfig& c, const std::string& v) {
         c.limits.header_timeout_ms = parseTimeout(v, "limits.header_timeout");
       }},
      {"limits.max_connections", "count", "1024",
       "Open connections on the ingest listener; further connections are closed at once. From "
       "1 to 1048576, and it must fit under the open-file limit (RLIMIT_NOFILE).",
       [](CollectorConfig& c, const std::string& v) {
         auto connections = parseUnsigned(v, "limits.max_connections");
         requireRange(connections, 1, 1ULL << 20, "limits.max_connections", v,
                      "a count from 1 to 1048576");
         c.limits.max_connections = static_cast<std::uint32_t>(connections);
       }},
      {"limits.max_slots_per_sensor", "count", "8",
       "Ingest requests of one sensor token whose bodies are being received at once, out of "
       "the collector's 32 ingest slots; a further request with that token gets 503 with "
       "Retry-After, so one sensor sending bodies slowly cannot take every slot. From 1 to "
       "1048576; 32 or more turns this limit off.",
       [](CollectorConfig& c, const std::string& v) {
         auto slots = parseUnsigned(v, "limits.max_slots_per_sensor");
         requireRange(slots, 1, 1ULL << 20, "limits.max_slots_per_sensor", v,
                      "a count from 1 to 1048576");
         c.limits.max_slots_per_sensor = static_cast<std::uint32_t>(slots);
       }},
      {"limits.min_body_rate", "size/s", "1KiB/s",
       "Minimum rate of an ingest request body: once limits.min_body_rate_grace has passed "
       "since the body started, a body with fewer bytes received than this rate times the time "
       "past the grace period is cut (its connection closed, its slot freed). Stops senders "
       "that hold ingest slots by sending bodies a byte at a time. From 0 (off) to 1GiB/s.",
       [](CollectorConfig& c, const std::string& v) {
         auto rate = parseRate(v, "limits.min_body_rate");
         requireRange(rate, 0, 1ULL << 30, "limits.min_body_rate", v,
                      "a rate from 0 (no minimum) to 1GiB/s, such as 1KiB/s");
         c.limits.min_body_rate = rate;
       }},
      {"limits.min_body_rate_grace", "duration", "10s",
       "Time from the start of an ingest request body before limits.min_body_rate applies. "
       "From 1s to 1h; at or above limits.read_timeout the rate is never checked.",
       [](CollectorConfig& c, const std::string& v) {
         auto grace = parseMilliseconds(v, "limits.min_body_rate_grace");
         requireRange(grace, 1000, 3'600'000, "limits.min_body_rate_grace", v,
                      "a duration from 1s to 1h");
         c.limits.min_body_rate_grace_ms = static_cast<std::uint32_t>(grace);
       }},
      {"inputs.probe.enabled", "bool", "true", "Accept probe batches on POST /v1/records.",
       setBool(&CollectorConfig::probe_input, "inputs.probe.enabled")},
      {"inputs.modsecurity_http.enabled", "bool", "true",
       "Accept libmodsecurity `SecAuditLogType HTTPS` records on POST /v1/modsecurity.",
       setBool(&CollectorConfig::modsecurity_http_input, "inputs.modsecurity_http.enabled")},
  };
  return kOptions;
}

const std::vector<Section>& sections() {
  static const std::vector<Section> kSections = {
      {"inputs.files", "list",
       "Audit log files to tail, each `{path, format, sensor_id, group, timezone, "
       "poll_interval, start_at, max_record_size}`; see docs/audit-decoders.md.",
       &CollectorConfig::file_inputs},
      {"enrich", "map",
       "GeoIP databases: `geoip_city`, `geoip_asn` (MaxMind DB files); see docs/collector.md.",
       &CollectorConfig::enrich},
      {"outputs.elasticsearch", "map",
       "Elasticsearch or OpenSearch output, with the runner keys; see docs/collector.md.",
       &CollectorConfig::elasticsearch},
      {"outputs.ndjson", "map",
       "NDJSON file output (`path`, `rotate_size`), with the runner keys; see docs/collector.md.",
       &CollectorConfig::ndjson},
      {"outputs.stix", "map",
       "STIX 2.1 bundle output (`path`, `sightings`, `serve`, event grouping and tags), with "
       "the runner keys; see docs/stix.md.",
       &CollectorConfig::stix},
      {"outputs.misp_feed", "map",
       "Static MISP feed output (`path`, event grouping and tags), with the runner keys; see "
       "docs/misp.md.",
       &CollectorConfig::misp_feed},
      {"outputs.misp", "map",
       "MISP REST output (`url`, `api_key_env`, `state_path`, `publish`, event grouping and "
       "tags), with the runner keys; see docs/misp.md.",
       &CollectorConfig::misp},
      {"behaviour", "map",
       "Behavioural OAT tagger: window, key cap and thresholds, listed as `behaviour.*` below.",
       &CollectorConfig::behaviour},
      {"dashboard", "map",
       "Built-in dashboard on the admin listener (`enabled`, `index_path`); needs admin.token. "
       "Its `login_max_failures`, `login_window` and `login_max_clients` limit wrong admin "
       "tokens on every admin route, also with the dashboard off. See docs/dashboard.md.",
       &CollectorConfig::dashboard},
  };
  return kSections;
}

bool isSectionPrefix(const std::string& key) {
  return config_table::hasGroup(options(), key) ||
         std::any_of(sections().begin(), sections().end(), [&](const Section& section) {
           return config_table::isInGroup(section.key, key);
         });
}

// The kind of each key for environment overrides. Keys inside a section
// are checked by the section's owner during validation, so only its lists
// are named here.
config_environment::KeyKind collectorKeyKind(const std::string& key) {
  using config_environment::KeyKind;
  if (key == kTrustedProxiesKey) {
    return KeyKind::kList;
  }
  if (config_table::findOption(options(), key) != nullptr) {
    return KeyKind::kValue;
  }
  if (key == "outputs.elasticsearch.urls" || key == "behaviour.session_cookies") {
    return KeyKind::kList;
  }
  for (const Section& section : sections()) {
    if (key == section.key) {
      return std::string_view(section.type) == "list" ? KeyKind::kList : KeyKind::kMap;
    }
    // A list section, such as inputs.files, has no keys to address.
    if (config_table::isInGroup(key, section.key)) {
      return std::string_view(section.type) == "map" ? KeyKind::kChecked : KeyKind::kUnknown;
    }
  }
  if (isSectionPrefix(key)) {
    return KeyKind::kMap;
  }
  return KeyKind::kUnknown;
}

// Parses one key: a section is kept whole for its owner, and an option is
// parsed at once. Returns false for any other key.
bool applyKey(CollectorConfig& config, const std::string& key, const YAML::Node& value) {
  if (key == kTrustedProxiesKey && value.IsMap()) {
    throw ConfigError(fmt::format("{}: expected a list, found a map; write it as `{}: "
                                  "[10.0.0.5, 192.0.2.0/24]`",
                                  key, key));
  }
  if (key == kTrustedProxiesKey && value.IsSequence()) {
    std::vector<std::string> entries;
    for (std::size_t i = 0; i < value.size(); ++i) {
      if (!value[i].IsScalar()) {
        const char* found = value[i].IsSequence() ? "a list"
                            : value[i].IsMap()    ? "a map"
                                                  : "an empty entry";
        throw ConfigError(fmt::format("{}[{}]: expected an address or a CIDR network, found {}; "
                                      "write one address or network per entry, as in `{}: "
                                      "[10.0.0.5, 10.0.0.0/8]`",
                                      key, i, found, key));
      }
      entries.push_back(value[i].Scalar());
    }
    config.admin_trusted_proxies = TrustedProxies::parse(entries, key);
    return true;
  }
  const auto& all_sections = sections();
  auto section = std::find_if(all_sections.begin(), all_sections.end(),
                              [&](const Section& s) { return key == s.key; });
  if (section != all_sections.end()) {
    config.*(section->member) = value;
    return true;
  }
  return config_table::applyScalarOption(options(), key, value, config);
}

// Whether `listen` (admin.listen, a numeric address) is a loopback address,
// also in its IPv4-mapped IPv6 form such as [::ffff:127.0.0.1].
bool listensOnLoopback(const std::string& listen) {
  ListenAddress address = parseListenAddress(listen, "admin.listen");
  boost::system::error_code error;
  boost::asio::ip::address ip = boost::asio::ip::make_address(address.host, error);
  if (error) {
    return false;
  }
  if (ip.is_v6() && ip.to_v6().is_v4_mapped()) {
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, ip.to_v6()).is_loopback();
  }
  return ip.is_loopback();
}

// The per-address limit on wrong admin tokens does not stop guesses spread
// over more addresses than dashboard.login_max_clients, so an admin
// listener that the network reaches needs a token too long to guess. A
// loopback listener with admin.trusted_proxies set is such a listener: the
// listed reverse proxies forward the network's requests, and each client
// address in X-Forwarded-For gets a limit of its own.
void requireStrongAdminToken(const CollectorConfig& config) {
  if (config.admin_listen.empty() || config.admin_token.empty() ||
      config.admin_token.size() >= kMinNetworkAdminTokenLength) {
    return;
  }
  if (!listensOnLoopback(config.admin_listen)) {
    throw ConfigError(fmt::format(
        "admin.token: {} characters is too short for an admin listener on {}, which the network "
        "reaches: guesses from many addresses get past the per-address limit; use at least {} "
        "random characters, for example from `openssl rand -hex 32`, or listen on 127.0.0.1",
        config.admin_token.size(), config.admin_listen, kMinNetworkAdminTokenLength));
  }
  if (!config.admin_trusted_proxies.empty()) {
    throw ConfigError(fmt::format(
        "admin.token: {} characters is too short for an admin listener behind the reverse "
        "proxies of admin.trusted_proxies, which forward requests from the network: guesses "
        "from many addresses get past the per-address limit; use at least {} random "
        "characters, for example from `openssl rand -hex 32`",
        config.admin_token.size(), kMinNetworkAdminTokenLength));
  }
}

void finish(CollectorConfig& config, bool store_path_set) {
  if (!store_path_set) {
    config.store.path = config.state_dir / "store.sqlite";
  }
  bool has_certificate = !config.tls.certificate.empty();
  bool has_key = !config.tls.private_key.empty();
  if (has_certificate != has_key) {
    throw ConfigError("tls: set both tls.certificate and tls.private_key, or neither");
  }
  if (!has_certificate &&
      (!config.tls.client_ca.empty() || config.tls.require_client_certificate)) {
    // Name the key that is set, which may be either of the two.
    const char* key = config.tls.client_ca.empty() ? "tls.require_client_certificate"
                                                   : "tls.client_ca";
    throw ConfigError(fmt::format("{}: client certificates need TLS; set tls.certificate and "
                                  "tls.private_key too",
                                  key));
  }
  if (config.tls.require_client_certificate && config.tls.client_ca.empty()) {
    throw ConfigError("tls.require_client_certificate: true needs tls.client_ca, the CA that "
                      "signs the sensors' certificates");
  }
  if (config.limits.max_decompressed_bytes < config.limits.max_body_bytes) {
    throw ConfigError(fmt::format("limits.max_decompressed_bytes: {} is smaller than "
                                  "limits.max_body_bytes ({}); raise it",
                                  config.limits.max_decompressed_bytes,
                                  config.limits.max_body_bytes));
  }
  requireStrongAdminToken(config);
  // The sections are parsed once here, so a bad key fails at start.
  validateSections(config);
}

CollectorConfig parseRoot(YAML::Node root, const std::string& name,
                          const std::vector<std::string>& environment) {
  std::vector<config_environment::Override> overrides =
      config_environment::readOverrides(environment);
  CollectorConfig config;
  config.environment_keys = config_environment::parseWithOverrides(
      root, overrides, config_environment::Schema{collectorKeyKind, "collector"}, name, [&] {
        config_table::KeyWalk walk{
            .apply = [&](const std::string& key,
                         const YAML::Node& value) { return applyKey(config, key, value); },
            .is_group = isSectionPrefix,
            .program = "collector",
        };
        config_table::walkTopLevel(root, name, walk);
        const YAML::Node& view = root;
        bool store_path_set = view.IsMap() && view["store"] && view["store"].IsMap() &&
                              view["store"]["path"];
        finish(config, store_path_set);
      });
  return config;
}

}  // namespace

ListenAddress parseListenAddress(const std::string& text, const std::string& key) {
  config_values::HostPort parsed = config_values::parseHostPort(text, key, 7380);
  return {parsed.host, parsed.port};
}

CollectorConfig loadCollectorConfig(const std::filesystem::path& path,
                                    const std::vector<std::string>& environment) {
  if (path.empty()) {
    return parseRoot(YAML::Node(), "built-in default", environment);
  }
  CollectorConfig config =
      parseRoot(config_table::loadYamlFile(path), path.string(), environment);
  config.source = path;
  return config;
}

CollectorConfig parseCollectorConfig(const std::string& yaml_text, const std::string& name,
                                     const std::vector<std::string>& environment) {
  return parseRoot(config_table::parseYamlText(yaml_text, name), name, environment);
}

std::string collectorConfigurationReference() {
  std::string out = config_table::referenceHeader() + config_table::referenceRows(options());
  for (const auto& section : sections()) {
    out += config_table::referenceRow(section.key, section.type, "none", section.description);
  }
  out += behaviourConfigurationRows();
  return out;
}

}  // namespace webtrap::collector
