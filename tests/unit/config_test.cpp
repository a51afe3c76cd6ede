#include "probe/config.h"

#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/error.h"
#include "temp_path.h"

namespace webtrap::probe {
namespace {

using ::testing::HasSubstr;

// The file is removed when the returned object goes out of scope.
test_support::TempFile writeConfig(const std::string& text) {
  return test_support::TempFile("webtrap-config-test", text, ".yaml");
}

std::string loadError(const std::string& text) {
  try {
    loadProbeConfig(writeConfig(text));
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "";
}

TEST(ProbeConfig, DefaultsWithoutFile) {
  ProbeConfig config = loadProbeConfig({});
  EXPECT_EQ(config.inspector.paranoia_level, 1);
  EXPECT_EQ(config.body_capture_bytes, 1u << 20);
  EXPECT_EQ(config.spool.fsync, FsyncPolicy::kInterval);
  EXPECT_TRUE(config.seccomp);
  EXPECT_TRUE(config.listeners.empty());
}

TEST(ProbeConfig, ParsesEveryKind) {
  ProbeConfig config = loadProbeConfig(writeConfig(R"(
sensor: {id: edge-1, group: eu}
capture: {body_bytes: 2MiB}
limits: {read_timeout: 3s, idle_timeout: 250ms, max_header_count: 50}
modsecurity: {paranoia_level: 3, extra_rules: [/tmp/a.conf, /tmp/b.conf]}
spool: {fsync: always, on_full: delete_oldest, max_bytes: 10GiB}
listeners:
  - {address: "[::1]:8443", tls: true, name: web-tls}
  - {address: 0.0.0.0:2375, bait: true}
)"));
  EXPECT_EQ(config.sensor_id, "edge-1");
  EXPECT_EQ(config.sensor_group, "eu");
  EXPECT_EQ(config.body_capture_bytes, 2u << 20);
  EXPECT_EQ(config.inspector.body_limit, 2u << 20);
  EXPECT_EQ(config.limits.read_timeout_ms, 3000u);
  EXPECT_EQ(config.limits.idle_timeout_ms, 250u);
  EXPECT_EQ(config.limits.max_header_count, 50u);
  EXPECT_EQ(config.inspector.paranoia_level, 3);
  ASSERT_EQ(config.inspector.extra_rules.size(), 2u);
  EXPECT_EQ(config.spool.fsync, FsyncPolicy::kAlways);
  EXPECT_EQ(config.spool.on_full, FullPolicy::kDeleteOldest);
  EXPECT_EQ(config.spool.max_bytes, 10ull << 30);
  ASSERT_EQ(config.listeners.size(), 2u);
  EXPECT_EQ(config.listeners[0].address, "::1");
  EXPECT_EQ(config.listeners[0].port, 8443);
  EXPECT_TRUE(config.listeners[0].tls);
  EXPECT_EQ(config.listeners[0].name, "web-tls");
  EXPECT_TRUE(config.listeners[1].bait);
  EXPECT_EQ(config.listeners[1].name, "http-2375");
}

TEST(ProbeConfig, RecoveryTimeoutParsed) {
  EXPECT_EQ(loadProbeConfig({}).pipeline.recovery_timeout_ms, 10000u);
  ProbeConfig config = loadProbeConfig(writeConfig("pipeline: {recovery_timeout: 2m}\n"));
  EXPECT_EQ(config.pipeline.recovery_timeout_ms, 120000u);
  EXPECT_THAT(loadError("pipeline: {recovery_timeout: 10}\n"),
              HasSubstr("pipeline.recovery_timeout"));
}

TEST(ProbeConfig, UnknownKeyIsNamed) {
  EXPECT_THAT(loadError("limits:\n  read_timout: 3s\n"), HasSubstr("limits.read_timout"));
  EXPECT_THAT(loadError("colour: blue\n"), HasSubstr("colour: unknown configuration key"));
  EXPECT_THAT(loadError("listeners:\n  - {address: 127.0.0.1:80, colour: red}\n"),
              HasSubstr("listeners[0].colour"));
}

TEST(ProbeConfig, InvalidValuesNameValueAndFix) {
  EXPECT_THAT(loadError("capture: {body_bytes: 1XB}\n"), HasSubstr("invalid size \"1XB\""));
  EXPECT_THAT(loadError("modsecurity: {paranoia_level: 5}\n"), HasSubstr("use 1, 2, 3 or 4"));
  EXPECT_THAT(loadError("spool: {fsync: sometimes}\n"), HasSubstr("use always, interval"));
  EXPECT_THAT(loadError("limits: {read_timeout: soon}\n"), HasSubstr("invalid duration"));
  EXPECT_THAT(loadError("listeners:\n  - {address: 127.0.0.1:99999}\n"),
              HasSubstr("invalid port"));
  EXPECT_THAT(loadError("listeners:\n  - {address: example.com:80}\n"),
              HasSubstr("numeric address"));
  EXPECT_THAT(loadError("listeners:\n  - {tls: true}\n"), HasSubstr("address: missing"));
  EXPECT_THAT(loadError("sensor: [a, b]\n"), HasSubstr("sensor: expected a map"));
  EXPECT_THAT(loadError("spool: {dir: [a]}\n"), HasSubstr("spool.dir: expected a single value"));
}

TEST(ProbeConfig, DurationNeedsUnit) {
  EXPECT_THAT(loadError("limits: {read_timeout: 20}\n"), HasSubstr("write a number with its unit"));
}

TEST(ProbeConfig, RepeatedKeyIsRejected) {
  EXPECT_THAT(loadError("spool:\n  dir: a\nspool:\n  dir: b\n"),
              HasSubstr("spool: the key appears twice"));
  EXPECT_THAT(loadError("spool:\n  dir: a\n  dir: b\n"), HasSubstr("spool.dir: the key appears"));
}

TEST(ProbeConfig, BadAdminAddressFailsAtLoad) {
  EXPECT_THAT(loadError("admin: {listen: localhost:9}\n"), HasSubstr("admin.listen"));
}

TEST(ProbeConfig, BrokenYamlNamesLine) {
  EXPECT_THAT(loadError("sensor:\n  id: [unclosed\n"), HasSubstr("invalid YAML at line"));
}

TEST(ProbeConfig, SecondDocumentIsRejected) {
  // yaml-cpp 0.7 reads a leading `,` as an empty document, so the keys after
  // it were ignored without an error (found by probe_config_fuzz).
  EXPECT_THAT(loadError(",\nsensor: {id: edge-1}\n"),
              HasSubstr("invalid YAML at line 1: a second YAML document starts here"));
  EXPECT_THAT(loadError("sensor: {id: a}\n---\nsensor: {id: b}\n"),
              HasSubstr("invalid YAML at line 2: a second YAML document starts here"));
  EXPECT_THAT(loadError("sensor: {id: a}\n...\n,\n"),
              HasSubstr("invalid YAML at line 3: a second YAML document starts here"));
  ProbeConfig marked = loadProbeConfig(writeConfig("---\nsensor: {id: edge-1}\n...\n"));
  EXPECT_EQ(marked.sensor_id, "edge-1");
}

TEST(ProbeConfig, KeyWithNulByteIsNamedByLine) {
  // The message started with the key, so what() ended at its NUL byte and
  // was empty (found by probe_config_fuzz).
  EXPECT_THAT(loadError("sensor: {id: a}\n\"\\0shipper\": x\n"),
              HasSubstr("top level: the key at line 2 contains a NUL byte"));
  EXPECT_THAT(loadError(std::string("spool:\n  \"d") + '\0' + "ir\": x\n"),
              HasSubstr("spool: the key at line 2 contains a NUL byte"));
  EXPECT_THAT(loadError("listeners:\n  - {\"\\0\": 1}\n"),
              HasSubstr("listeners[0]: the key at line 2 contains a NUL byte"));
}

TEST(ProbeConfig, ValueWithNulByteShownEscaped) {
  // what() is a C string, so a NUL byte in a quoted value used to end the
  // message there, before the fix it names.
  std::string message = loadError("listeners:\n  - {address: \"127.0.0.1:80\\0x\"}\n");
  EXPECT_THAT(message, HasSubstr("127.0.0.1:80\\x00x"));
  EXPECT_EQ(std::string(message.c_str()), message);
}

TEST(ConfigErrorText, ControlBytesMadeVisible) {
  ConfigError error(std::string("key: \"a\0b\x1b[2J\x7f\"\nnext line\tend", 29));
  EXPECT_STREQ(error.what(), "key: \"a\\x00b\\x1b[2J\\x7f\"\nnext line\tend");
}

TEST(ProbeConfig, ParsesTextLikeFile) {
  const std::string text = "sensor: {id: edge-1}\nlisteners:\n  - {address: 8080}\n";
  ProbeConfig from_text = parseProbeConfig(text, "text.yaml");
  ProbeConfig from_file = loadProbeConfig(writeConfig(text));
  EXPECT_EQ(from_text.sensor_id, from_file.sensor_id);
  ASSERT_EQ(from_text.listeners.size(), 1u);
  EXPECT_EQ(from_text.listeners[0].port, 8080);
  try {
    parseProbeConfig("colour: blue\n", "text.yaml");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& error) {
    EXPECT_THAT(error.what(), HasSubstr("colour: unknown configuration key"));
  }
}

TEST(ProbeConfig, FolderIsNotAFile) {
  std::filesystem::path folder = std::filesystem::temp_directory_path();
  try {
    loadProbeConfig(folder);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& error) {
    EXPECT_THAT(error.what(), HasSubstr(folder.string() + ": is a folder"));
  }
}

TEST(ProbeConfig, MissingFileIsNamed) {
  try {
    loadProbeConfig("/nonexistent/probe.yaml");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& error) {
    EXPECT_THAT(error.what(), HasSubstr("/nonexistent/probe.yaml"));
  }
}

TEST(ListenAddress, ParsesForms) {
  EXPECT_EQ(parseListenAddress("8080", "x").port, 8080);
  EXPECT_EQ(parseListenAddress("8080", "x").address, "127.0.0.1");
  EXPECT_EQ(parseListenAddress("[::]:80", "x").address, "::");
  EXPECT_EQ(parseListenAddress("0.0.0.0:0", "x").port, 0);
  EXPECT_THROW(parseListenAddress("[::1]8080", "x"), ConfigError);
  try {
    parseListenAddress("127.0.0.1", "--listen");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& error) {
    EXPECT_THAT(error.what(), HasSubstr("missing port"));
  }
}

TEST(ProbeConfig, ReferenceListsEveryKey) {
  std::string reference = configurationReference();
  for (const char* key : {"spool.fsync", "limits.read_timeout", "hardening.seccomp",
                          "modsecurity.paranoia_level", "listeners"}) {
    EXPECT_THAT(reference, HasSubstr(key));
  }
}

}  // namespace
}  // namespace webtrap::probe
