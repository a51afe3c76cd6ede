#include "collector/collector_config.h"

#include <unistd.h>

#include <fstream>
#include <iterator>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "collector/gunzip.h"
#include "collector/server.h"
#include "common/error.h"
#include "temp_path.h"

namespace webtrap::collector {
namespace {

using ::testing::HasSubstr;

std::string parseError(const std::string& text) {
  try {
    parseCollectorConfig(text, "test.yaml");
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "";
}

TEST(CollectorConfig, DefaultsWithoutFile) {
  CollectorConfig config = loadCollectorConfig({});
  EXPECT_EQ(config.listen, "127.0.0.1:7380");
  EXPECT_EQ(config.admin_listen, "127.0.0.1:9102");
  EXPECT_EQ(config.state_dir, "var/collector");
  EXPECT_EQ(config.store.path, std::filesystem::path("var/collector/store.sqlite"));
  EXPECT_EQ(config.store.synchronous, "full");
  EXPECT_EQ(config.limits.max_body_bytes, 32ULL << 20);
  EXPECT_EQ(config.limits.max_decompressed_bytes, 256ULL << 20);
  EXPECT_EQ(config.limits.max_record_bytes, 16ULL << 20);
  EXPECT_TRUE(config.probe_input);
  EXPECT_TRUE(config.modsecurity_http_input);
  EXPECT_TRUE(config.elasticsearch.IsNull());
  EXPECT_TRUE(config.ndjson.IsNull());
  EXPECT_TRUE(config.tls.certificate.empty());
}

TEST(CollectorConfig, ParsesCoreKeys) {
  CollectorConfig config = parseCollectorConfig(R"(
listen: "[::1]:7443"
admin: {listen: 127.0.0.1:0, token: s3cret}
state_dir: /tmp/wt-state
store:
  synchronous: normal
  retention: {max_age: 7d, max_size: 2GiB, interval: 10s}
limits: {max_body_bytes: 1MiB, max_decompressed_bytes: 8MiB, read_timeout: 5s}
inputs:
  probe: {enabled: false}
  modsecurity_http: {enabled: yes}
io_threads: 3
)",
                                                "test.yaml");
  EXPECT_EQ(config.listen, "[::1]:7443");
  EXPECT_EQ(config.admin_listen, "127.0.0.1:0");
  EXPECT_EQ(config.admin_token, "s3cret");
  EXPECT_EQ(config.store.path, std::filesystem::path("/tmp/wt-state/store.sqlite"));
  EXPECT_EQ(config.store.synchronous, "normal");
  EXPECT_EQ(config.store.retention_max_age_ms, 7LL * 24 * 3600 * 1000);
  EXPECT_EQ(config.store.retention_max_bytes, 2ULL << 30);
  EXPECT_EQ(config.retention_interval_ms, 10000u);
  EXPECT_EQ(config.limits.max_body_bytes, 1ULL << 20);
  EXPECT_EQ(config.limits.max_decompressed_bytes, 8ULL << 20);
  EXPECT_EQ(config.limits.read_timeout_ms, 5000u);
  EXPECT_FALSE(config.probe_input);
  EXPECT_TRUE(config.modsecurity_http_input);
  EXPECT_EQ(config.io_threads, 3u);
}

TEST(CollectorConfig, ParsesMaxRecordBytes) {
  CollectorConfig config = parseCollectorConfig("limits: {max_record_bytes: 64KiB}\n", "test.yaml");
  EXPECT_EQ(config.limits.max_record_bytes, 64ULL << 10);
  EXPECT_THAT(parseError("limits: {max_record_bytes: 512}\n"),
              HasSubstr("limits.max_record_bytes: invalid value 512"));
  EXPECT_THAT(parseError("limits: {max_record_bytes: big}\n"),
              HasSubstr("limits.max_record_bytes"));
}

TEST(CollectorConfig, ParsesMaxSlotsPerSensor) {
  EXPECT_EQ(loadCollectorConfig({}).limits.max_slots_per_sensor, 8u);
  CollectorConfig config =
      parseCollectorConfig("limits: {max_slots_per_sensor: 2}\n", "test.yaml");
  EXPECT_EQ(config.limits.max_slots_per_sensor, 2u);
  EXPECT_THAT(parseError("limits: {max_slots_per_sensor: 0}\n"),
              HasSubstr("limits.max_slots_per_sensor: invalid value 0; use a count from 1"));
  EXPECT_THAT(parseError("limits: {max_slots_per_sensor: 2000000}\n"),
              HasSubstr("limits.max_slots_per_sensor: invalid value 2000000"));
  EXPECT_THAT(parseError("limits: {max_slots_per_sensor: many}\n"),
              HasSubstr("limits.max_slots_per_sensor"));
}

TEST(CollectorConfig, ParsesMinBodyRate) {
  CollectorConfig defaults = loadCollectorConfig({});
  EXPECT_EQ(defaults.limits.min_body_rate, 1024u);
  EXPECT_EQ(defaults.limits.min_body_rate_grace_ms, 10000u);

  CollectorConfig config = parseCollectorConfig(
      "limits: {min_body_rate: 4KiB/s, min_body_rate_grace: 30s}\n", "test.yaml");
  EXPECT_EQ(config.limits.min_body_rate, 4096u);
  EXPECT_EQ(config.limits.min_body_rate_grace_ms, 30000u);
  EXPECT_EQ(
      parseCollectorConfig("limits: {min_body_rate: 512}\n", "test.yaml").limits.min_body_rate,
      512u);
  EXPECT_EQ(
      parseCollectorConfig("limits: {min_body_rate: 2KiB}\n", "test.yaml").limits.min_body_rate,
      2048u);
  EXPECT_EQ(parseCollectorConfig("limits: {min_body_rate: 0}\n", "test.yaml").limits.min_body_rate,
            0u);
}

TEST(CollectorConfig, RejectsInvalidMinBodyRate) {
  EXPECT_THAT(parseError("limits: {min_body_rate: fast}\n"),
              HasSubstr("limits.min_body_rate: invalid rate \"fast\"; use bytes per second"));
  EXPECT_THAT(parseError("limits: {min_body_rate: 1KiB/m}\n"),
              HasSubstr("limits.min_body_rate: invalid rate \"1KiB/m\""));
  EXPECT_THAT(parseError("limits: {min_body_rate: /s}\n"),
              HasSubstr("limits.min_body_rate: invalid rate \"/s\""));
  EXPECT_THAT(parseError("limits: {min_body_rate: 2GiB/s}\n"),
              HasSubstr("limits.min_body_rate: invalid value 2GiB/s; use a rate from 0 (no "
                        "minimum) to 1GiB/s"));
  EXPECT_THAT(parseError("limits: {min_body_rate_grace: 500ms}\n"),
              HasSubstr("limits.min_body_rate_grace: invalid value 500ms; use a duration from "
                        "1s to 1h"));
  EXPECT_THAT(parseError("limits: {min_body_rate_grace: 2h}\n"),
              HasSubstr("limits.min_body_rate_grace: invalid value 2h"));
  EXPECT_THAT(parseError("limits: {min_body_rate_grace: 10}\n"),
              HasSubstr("limits.min_body_rate_grace"));
}

TEST(CollectorConfig, ParsesHeaderTimeout) {
  CollectorConfig defaults = loadCollectorConfig({});
  EXPECT_EQ(defaults.limits.header_timeout_ms, 10000u);
  EXPECT_LT(defaults.limits.header_timeout_ms, defaults.limits.read_timeout_ms);
  EXPECT_EQ(parseCollectorConfig("limits: {header_timeout: 2500ms}\n", "test.yaml")
                .limits.header_timeout_ms,
            2500u);
  EXPECT_EQ(
      parseCollectorConfig("limits: {header_timeout: 1h}\n", "test.yaml").limits.header_timeout_ms,
      3600000u);
}

TEST(CollectorConfig, RejectsInvalidHeaderTimeout) {
  EXPECT_THAT(parseError("limits: {header_timeout: 50ms}\n"),
              HasSubstr("limits.header_timeout: invalid value 50ms; use a duration from 100ms "
                        "to 1h"));
  EXPECT_THAT(parseError("limits: {header_timeout: 2h}\n"),
              HasSubstr("limits.header_timeout: invalid value 2h"));
  EXPECT_THAT(parseError("limits: {header_timeout: soon}\n"), HasSubstr("limits.header_timeout"));
}

TEST(CollectorConfig, NetworkAdminListenerNeedsLongToken) {
  EXPECT_THAT(parseError("admin: {listen: 0.0.0.0:9102, token: short-token}\n"),
              HasSubstr("admin.token: 11 characters is too short for an admin listener on "
                        "0.0.0.0:9102"));
  EXPECT_THAT(parseError("admin: {listen: \"[2001:db8::1]:9102\", token: abc}\n"),
              HasSubstr("openssl rand -hex 32"));
  EXPECT_THAT(parseError("admin: {listen: 192.0.2.7:9102, token: abc}\n"),
              HasSubstr("at least 16 random characters"));
  EXPECT_THAT(parseError("admin: {listen: \"[::ffff:192.0.2.7]:9102\", token: abc}\n"),
              HasSubstr("at least 16 random characters"));
  // Loopback, a long token, or no token at all (then the listener is open
  // and logs a warning at start) are accepted.
  for (const char* text : {"admin: {listen: 127.0.0.1:9102, token: abc}\n",
                           "admin: {listen: \"[::1]:9102\", token: abc}\n",
                           "admin: {listen: 127.0.0.2:9102, token: abc}\n",
                           "admin: {listen: \"[::ffff:127.0.0.1]:9102\", token: abc}\n",
                           "admin: {listen: 0.0.0.0:9102, token: 0123456789abcdef}\n",
                           "admin: {listen: 0.0.0.0:9102}\n"}) {
    EXPECT_EQ(parseError(text), "") << text;
  }
}

TEST(CollectorConfig, ProxiedAdminListenerNeedsLongToken) {
  // Behind a listed reverse proxy, a loopback listener serves the network,
  // and each X-Forwarded-For address gets a limit of its own.
  EXPECT_THAT(parseError("admin: {listen: 127.0.0.1:9102, token: short-token, "
                         "trusted_proxies: [127.0.0.1]}\n"),
              HasSubstr("admin.token: 11 characters is too short for an admin listener behind "
                        "the reverse proxies of admin.trusted_proxies"));
  EXPECT_EQ(parseError("admin: {listen: 127.0.0.1:9102, token: 0123456789abcdef, "
                       "trusted_proxies: [127.0.0.1]}\n"),
            "");
  EXPECT_EQ(parseError("admin: {listen: 127.0.0.1:9102, token: abc, trusted_proxies: []}\n"), "");
}

TEST(CollectorConfig, StorePathOverridesStateDir) {
  CollectorConfig config =
      parseCollectorConfig("state_dir: /a\nstore: {path: /b/c.sqlite}\n", "test.yaml");
  EXPECT_EQ(config.store.path, std::filesystem::path("/b/c.sqlite"));
}

TEST(CollectorConfig, KeepsDelegatedSections) {
  CollectorConfig config = parseCollectorConfig(R"(
outputs:
  ndjson: {path: /tmp/out.ndjson}
)",
                                                "test.yaml");
  ASSERT_TRUE(config.ndjson.IsMap());
  EXPECT_EQ(config.ndjson["path"].as<std::string>(), "/tmp/out.ndjson");
  EXPECT_TRUE(config.elasticsearch.IsNull());
}

TEST(CollectorConfig, RejectsUnknownKeys) {
  EXPECT_THAT(parseError("listne: 127.0.0.1:1\n"), HasSubstr("listne: unknown configuration key"));
  EXPECT_THAT(parseError("store: {retention: {max_agee: 1d}}\n"),
              HasSubstr("store.retention.max_agee: unknown"));
  EXPECT_THAT(parseError("outputs: {kafka: {}}\n"), HasSubstr("outputs.kafka: unknown"));
  EXPECT_THAT(parseError("inputs: {probe: {enabled: true, extra: 1}}\n"),
              HasSubstr("inputs.probe.extra: unknown"));
}

TEST(CollectorConfig, RejectsBadValues) {
  EXPECT_THAT(parseError("listen: 127.0.0.1\n"), HasSubstr("missing port"));
  EXPECT_THAT(parseError("listen: localhost:80\n"), HasSubstr("invalid address"));
  EXPECT_THAT(parseError("listen: 127.0.0.1:70000\n"), HasSubstr("invalid port"));
  EXPECT_THAT(parseError("store: {synchronous: off}\n"), HasSubstr("use full or normal"));
  EXPECT_THAT(parseError("store: {retention: {max_age: 30}}\n"),
              HasSubstr("store.retention.max_age"));
  EXPECT_THAT(parseError("limits: {max_body_bytes: lots}\n"), HasSubstr("limits.max_body_bytes"));
  EXPECT_THAT(parseError("io_threads: 0\n"), HasSubstr("io_threads: invalid value 0"));
  EXPECT_THAT(parseError("inputs: {probe: {enabled: maybe}}\n"),
              HasSubstr("inputs.probe.enabled"));
  EXPECT_THAT(parseError("listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n"),
              HasSubstr("appears twice"));
  EXPECT_THAT(parseError("limits: 5\n"), HasSubstr("limits: expected a map"));
}

TEST(CollectorConfig, ParsesTrustedProxies) {
  EXPECT_TRUE(loadCollectorConfig({}).admin_trusted_proxies.empty());
  CollectorConfig config = parseCollectorConfig(
      "admin:\n  trusted_proxies: [10.0.0.5, 192.0.2.0/24, \"fd00::/8\"]\n", "test.yaml");
  EXPECT_EQ(config.admin_trusted_proxies.describe(), "10.0.0.5/32, 192.0.2.0/24, fd00::/8");
  CollectorConfig block_list = parseCollectorConfig(
      "admin:\n  trusted_proxies:\n    - 10.0.0.5\n    - ::1\n", "test.yaml");
  EXPECT_EQ(block_list.admin_trusted_proxies.describe(), "10.0.0.5/32, ::1/128");
  EXPECT_TRUE(parseCollectorConfig("admin: {trusted_proxies: []}\n", "test.yaml")
                  .admin_trusted_proxies.empty());
  EXPECT_TRUE(parseCollectorConfig("admin: {trusted_proxies: }\n", "test.yaml")
                  .admin_trusted_proxies.empty());

  CollectorConfig from_environment = parseCollectorConfig(
      "admin: {token: 0123456789abcdef}\n", "test.yaml",
      {"WEBTRAP__ADMIN__TRUSTED_PROXIES=[10.0.0.0/8, 192.0.2.1]"});
  EXPECT_EQ(from_environment.admin_trusted_proxies.describe(), "10.0.0.0/8, 192.0.2.1/32");
}

TEST(CollectorConfig, RejectsBadTrustedProxies) {
  EXPECT_THAT(parseError("admin: {trusted_proxies: [10.0.0.0/33]}\n"),
              HasSubstr("admin.trusted_proxies: invalid entry \"10.0.0.0/33\": the prefix "
                        "length must be a number from 1 to 32"));
  EXPECT_THAT(parseError("admin: {trusted_proxies: [10.0.0.1/8]}\n"),
              HasSubstr("write the network as 10.0.0.0/8"));
  EXPECT_THAT(parseError("admin: {trusted_proxies: [proxy.example]}\n"),
              HasSubstr("admin.trusted_proxies: invalid entry \"proxy.example\": not an IPv4 "
                        "or IPv6 address"));
  EXPECT_THAT(parseError("admin: {trusted_proxies: [0.0.0.0/0]}\n"),
              HasSubstr("trusts every address"));
  EXPECT_THAT(parseError("admin: {trusted_proxies: 10.0.0.5}\n"),
              HasSubstr("admin.trusted_proxies: expected a list, found \"10.0.0.5\"; write it "
                        "as `admin.trusted_proxies: [10.0.0.5]`"));
  EXPECT_THAT(parseError("admin: {trusted_proxies: {a: 1}}\n"),
              HasSubstr("admin.trusted_proxies: expected a list, found a map"));
  EXPECT_THAT(parseError("admin: {trusted_proxies: [[10.0.0.5]]}\n"),
              HasSubstr("admin.trusted_proxies[0]: expected an address or a CIDR network, "
                        "found a list; write one address or network per entry"));
  EXPECT_THAT(parseError("admin: {trusted_proxies: [10.0.0.5, ~]}\n"),
              HasSubstr("admin.trusted_proxies[1]: expected an address or a CIDR network, "
                        "found an empty entry"));
  EXPECT_THAT(parseError("admin: {trusted_proxies: [{a: 1}]}\n"),
              HasSubstr("admin.trusted_proxies[0]: expected an address or a CIDR network, "
                        "found a map"));
  EXPECT_THAT(parseError("admin: {trusted_proxies: [\"fe80::1%eth0\"]}\n"),
              HasSubstr("a zone index (%eth0) is not supported"));
  EXPECT_THAT(parseError("admin: {trusted_proxy: [10.0.0.5]}\n"),
              HasSubstr("admin.trusted_proxy: unknown configuration key"));
  try {
    parseCollectorConfig("", "test.yaml", {"WEBTRAP__ADMIN__TRUSTED_PROXIES=10.0.0.5"});
    ADD_FAILURE() << "a single value from the environment was accepted";
  } catch (const ConfigError& error) {
    EXPECT_THAT(error.what(), HasSubstr("WEBTRAP__ADMIN__TRUSTED_PROXIES"));
    EXPECT_THAT(error.what(), HasSubstr("takes a list, found \"10.0.0.5\"; write the value as a "
                                        "YAML flow sequence"));
  }
}

// A configuration can be written by a script (scripts/run.sh writes the
// probe's), so the line number alone does not say which file to open.
TEST(CollectorConfig, RepeatedKeyNamesFile) {
  EXPECT_EQ(parseError("listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n"),
            "listen: the key appears twice at line 2 of test.yaml; keep one of them");
}

TEST(CollectorConfig, SectionErrorsNameTheirLine) {
  EXPECT_THAT(parseError("behaviour:\n  window: 1m\n  window: 2m\n"),
              HasSubstr("appears twice at line 3"));
}

TEST(CollectorConfig, SecondDocumentIsRejected) {
  // yaml-cpp 0.7 reads a leading `,` as an empty document, so the keys after
  // it were ignored without an error (found by probe_config_fuzz).
  EXPECT_THAT(parseError(",\nlisten: 0.0.0.0:7380\n"),
              HasSubstr("test.yaml: invalid YAML at line 1: a second YAML document"));
  EXPECT_THAT(parseError("listen: 127.0.0.1:1\n---\nlisten: 127.0.0.1:2\n"),
              HasSubstr("test.yaml: invalid YAML at line 2: a second YAML document"));
}

TEST(CollectorConfig, ChecksTlsCombinations) {
  EXPECT_THAT(parseError("tls: {certificate: /a.pem}\n"), HasSubstr("set both"));
  EXPECT_THAT(parseError("tls: {client_ca: /ca.pem}\n"), HasSubstr("client certificates need TLS"));
  EXPECT_THAT(parseError("tls: {certificate: /a, private_key: /b, "
                         "require_client_certificate: true}\n"),
              HasSubstr("needs tls.client_ca"));
  EXPECT_THAT(parseError("limits: {max_body_bytes: 10MiB, max_decompressed_bytes: 1MiB}\n"),
              HasSubstr("limits.max_decompressed_bytes"));
}

TEST(CollectorConfig, ReferenceListsEveryKey) {
  std::string reference = collectorConfigurationReference();
  for (const char* key : {"| listen |", "| tls.client_ca |", "| admin.token |",
                          "| admin.trusted_proxies |",
                          "| store.retention.max_size |", "| limits.max_decompressed_bytes |",
                          "| inputs.files |", "| outputs.elasticsearch |", "| outputs.ndjson |",
                          "| enrich |"}) {
    EXPECT_THAT(reference, HasSubstr(key));
  }
}

TEST(CollectorConfig, LoadsShippedExamples) {
  std::filesystem::path etc = std::filesystem::path(WEBTRAP_SOURCE_DIR) / "etc";
  CollectorConfig plain = loadCollectorConfig(etc / "collector.yaml");
  EXPECT_EQ(plain.listen, "127.0.0.1:7380");
  EXPECT_TRUE(plain.elasticsearch.IsNull());

  // The Elasticsearch parser checks that its CA file exists, so the
  // example's /etc/webtrap files are made in a temporary folder.
  std::ifstream example_file(etc / "collector-elasticsearch.example.yaml");
  std::string example((std::istreambuf_iterator<char>(example_file)),
                      std::istreambuf_iterator<char>());
  test_support::TempDir temp_dir("webtrap-collector-config");
  const std::filesystem::path& folder = temp_dir.path();
  for (const char* name : {"elasticsearch-ca.pem", "sensors-ca.pem", "collector.crt",
                           "collector.key"}) {
    std::ofstream(folder / name) << "placeholder\n";
  }
  std::string replaced;
  std::string_view rest = example;
  for (auto at = rest.find("/etc/webtrap/"); at != std::string_view::npos;
       at = rest.find("/etc/webtrap/")) {
    replaced += rest.substr(0, at);
    replaced += folder.string() + "/";
    rest.remove_prefix(at + std::string_view("/etc/webtrap/").size());
  }
  replaced += rest;
  CollectorConfig full = parseCollectorConfig(replaced, "collector-elasticsearch.example.yaml");
  EXPECT_EQ(full.listen, "0.0.0.0:7380");
  EXPECT_EQ(full.tls.client_ca, folder / "sensors-ca.pem");
  EXPECT_TRUE(full.elasticsearch.IsMap());
  EXPECT_TRUE(full.ndjson.IsMap());
  EXPECT_TRUE(full.enrich.IsMap());
}

TEST(CollectorConfig, DelegatesSectionErrors) {
  EXPECT_THAT(parseError("outputs: {ndjson: {path: /tmp/x, colour: red}}\n"),
              HasSubstr("colour"));
  EXPECT_THAT(parseError("outputs: {ndjson: {path: /tmp/x, flush_interval: 5}}\n"),
              HasSubstr("flush_interval"));
  EXPECT_THAT(parseError("outputs: {elasticsearch: {url: http://127.0.0.1:9200, bogus: 1}}\n"),
              HasSubstr("bogus"));
  EXPECT_THAT(parseError("enrich: {geoip_town: /x.mmdb}\n"), HasSubstr("geoip_town"));
}

TEST(Gunzip, InflatesAndCaps) {
  // "hello\n" compressed by gzip(1), twice concatenated: two members.
  const unsigned char member[] = {0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                  0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0xe7, 0x02, 0x00,
                                  0x20, 0x30, 0x3a, 0x36, 0x06, 0x00, 0x00, 0x00};
  std::string one(reinterpret_cast<const char*>(member), sizeof(member));
  auto inflated = gunzip(one + one, 1024);
  ASSERT_TRUE(inflated.has_value());
  EXPECT_EQ(*inflated, "hello\nhello\n");
  EXPECT_FALSE(gunzip(one + one, 8).has_value());
  EXPECT_THROW(gunzip("not gzip at all", 1024), std::invalid_argument);
  EXPECT_THROW(gunzip(one.substr(0, 12), 1024), std::invalid_argument);
}

}  // namespace
}  // namespace webtrap::collector
