// Environment overrides of configuration keys (WEBTRAP__SHIPPER__URL sets
// shipper.url), through the probe's and the collector's real loaders.
#include "common/config_environment.h"

#include <unistd.h>

#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "collector/collector_config.h"
#include "common/error.h"
#include "probe/config.h"
#include "shipper/shipper_config.h"
#include "temp_path.h"

namespace webtrap {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

using Environment = std::vector<std::string>;

// The file is removed when the returned object goes out of scope.
test_support::TempFile writeConfig(const std::string& text) {
  return test_support::TempFile("webtrap-config-environment-test", text, ".yaml");
}

std::string readError(const Environment& environment) {
  try {
    config_environment::readOverrides(environment);
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "";
}

std::string probeError(const std::string& text, const Environment& environment) {
  try {
    probe::loadProbeConfig(writeConfig(text), environment);
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "";
}

std::string collectorError(const std::string& text, const Environment& environment) {
  try {
    collector::parseCollectorConfig(text, "collector.yaml", environment);
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "";
}

TEST(EnvironmentNames, MapsNameToKey) {
  auto overrides = config_environment::readOverrides(
      {"PATH=/usr/bin", "WEBTRAP_DATA_DIR=/srv", "WEBTRAP__SHIPPER__TOKEN_FILE=/run/token"});
  ASSERT_EQ(overrides.size(), 1u);
  EXPECT_EQ(overrides[0].variable, "WEBTRAP__SHIPPER__TOKEN_FILE");
  EXPECT_EQ(overrides[0].key, "shipper.token_file");
  EXPECT_EQ(overrides[0].value, "/run/token");
}

TEST(EnvironmentNames, KeepsValueAsWritten) {
  auto overrides = config_environment::readOverrides(
      {"WEBTRAP__SHIPPER__TOKEN=a=b # c", "WEBTRAP__ADMIN__LISTEN="});
  ASSERT_EQ(overrides.size(), 2u);
  EXPECT_EQ(overrides[0].key, "admin.listen");
  EXPECT_EQ(overrides[0].value, "");
  EXPECT_EQ(overrides[1].key, "shipper.token");
  EXPECT_EQ(overrides[1].value, "a=b # c");
}

TEST(EnvironmentNames, SortsByKey) {
  auto overrides = config_environment::readOverrides(
      {"WEBTRAP__SPOOL__DIR=/b", "WEBTRAP__IO_THREADS=2", "WEBTRAP__ADMIN__LISTEN=off"});
  ASSERT_EQ(overrides.size(), 3u);
  EXPECT_EQ(overrides[0].key, "admin.listen");
  EXPECT_EQ(overrides[1].key, "io_threads");
  EXPECT_EQ(overrides[2].key, "spool.dir");
}

TEST(EnvironmentNames, RejectsLowerCase) {
  std::string error = readError({"WEBTRAP__shipper__url=http://127.0.0.1:7380"});
  EXPECT_THAT(error, HasSubstr("WEBTRAP__shipper__url: invalid variable name"));
  EXPECT_THAT(error, HasSubstr("upper case"));
}

TEST(EnvironmentNames, RejectsInvalidCharacter) {
  std::string error = readError({"WEBTRAP__SHIPPER-URL=x"});
  EXPECT_THAT(error, HasSubstr("WEBTRAP__SHIPPER-URL: invalid character '-'"));
}

TEST(EnvironmentNames, RejectsEmptyKey) {
  EXPECT_THAT(readError({"WEBTRAP__=x"}), HasSubstr("WEBTRAP__: invalid variable name"));
}

TEST(EnvironmentNames, RejectsBadSeparators) {
  for (const char* name : {"WEBTRAP__SHIPPER____URL", "WEBTRAP__SHIPPER___URL",
                           "WEBTRAP__SHIPPER__URL_", "WEBTRAP___SHIPPER"}) {
    std::string error = readError({std::string(name) + "=x"});
    EXPECT_THAT(error, HasSubstr(std::string(name) + ": invalid variable name")) << name;
    EXPECT_THAT(error, HasSubstr("exactly `__` between levels")) << name;
  }
}

TEST(EnvironmentNames, RejectsKeyInsideOtherKey) {
  std::string error = readError(
      {"WEBTRAP__OUTPUTS__NDJSON__PATH__X=1", "WEBTRAP__OUTPUTS__NDJSON__PATH=/tmp/a"});
  EXPECT_THAT(error, HasSubstr("WEBTRAP__OUTPUTS__NDJSON__PATH and "
                               "WEBTRAP__OUTPUTS__NDJSON__PATH__X: both set"));
}

TEST(EnvironmentNames, FindsMisspelledPrefix) {
  Environment environment = {"WEBTRAP_SHIPPER__URL=https://a", "webtrap__io_threads=2",
                             "Webtrap__IO_THREADS=2",           "WEBTRAP__IO_THREADS=2",
                             "WEBTRAP_DATA_DIR=/usr/share/webtrap", "WEBTRAP_LISTEN=x y",
                             "PATH=/bin"};
  EXPECT_THAT(config_environment::findMisspelledVariables(environment),
              ElementsAre("WEBTRAP_SHIPPER__URL", "webtrap__io_threads", "Webtrap__IO_THREADS"));
}

TEST(EnvironmentNames, DescribesNamesNotValues) {
  auto overrides = config_environment::readOverrides({"WEBTRAP__SHIPPER__TOKEN=s3cret-value"});
  EXPECT_THAT(config_environment::describeOverrides(overrides),
              ElementsAre("shipper.token from WEBTRAP__SHIPPER__TOKEN"));
}

TEST(ProbeEnvironment, OverridesFileValue) {
  auto path = writeConfig(
      "sensor:\n  id: web1\nshipper:\n  url: http://127.0.0.1:7380\n  gzip: false\n");
  probe::ProbeConfig config = probe::loadProbeConfig(
      path, {"WEBTRAP__SHIPPER__URL=http://127.0.0.1:7381", "WEBTRAP__SHIPPER__TOKEN=abc"});
  EXPECT_EQ(config.shipper.url, "http://127.0.0.1:7381");
  EXPECT_EQ(config.shipper.token, "abc");
  EXPECT_FALSE(config.shipper.gzip);
  EXPECT_EQ(config.sensor_id, "web1");
  EXPECT_THAT(config.environment_keys,
              ElementsAre("shipper.token from WEBTRAP__SHIPPER__TOKEN",
                          "shipper.url from WEBTRAP__SHIPPER__URL"));
}

TEST(ProbeEnvironment, AppliesWithoutFile) {
  probe::ProbeConfig config =
      probe::loadProbeConfig({}, {"WEBTRAP__SENSOR__ID=yes # not a comment"});
  EXPECT_EQ(config.sensor_id, "yes # not a comment");
}

TEST(ProbeEnvironment, EmptyValueSetsEmptyText) {
  probe::ProbeConfig config = probe::loadProbeConfig({}, {"WEBTRAP__ADMIN__LISTEN="});
  EXPECT_EQ(config.admin_listen, "");
}

TEST(ProbeEnvironment, ListValues) {
  probe::ProbeConfig config = probe::loadProbeConfig(
      writeConfig("listeners:\n  - address: 127.0.0.1:8080\n"),
      {"WEBTRAP__MODSECURITY__EXTRA_RULES=[/etc/a.conf, /etc/b.conf]",
       "WEBTRAP__LISTENERS=[{address: 127.0.0.1:9000, tls: true}, {address: '[::1]:9001'}]"});
  ASSERT_EQ(config.inspector.extra_rules.size(), 2u);
  EXPECT_EQ(config.inspector.extra_rules[1], "/etc/b.conf");
  ASSERT_EQ(config.listeners.size(), 2u);
  EXPECT_EQ(config.listeners[0].port, 9000);
  EXPECT_TRUE(config.listeners[0].tls);
  EXPECT_EQ(config.listeners[1].address, "::1");
}

TEST(ProbeEnvironment, RejectsListValueThatIsNoList) {
  std::string error = probeError("", {"WEBTRAP__MODSECURITY__EXTRA_RULES=/etc/a.conf"});
  EXPECT_THAT(error, HasSubstr("WEBTRAP__MODSECURITY__EXTRA_RULES: modsecurity.extra_rules "
                               "takes a list"));
  EXPECT_THAT(error, HasSubstr("YAML flow sequence, such as [first, second]"));
}

// The value is shown with control bytes escaped and cut after 80 bytes,
// because a variable can hold a whole file. A value with a URL password is
// hidden, because a cut one would escape the hiding of secrets.
TEST(ProbeEnvironment, ListErrorShowsValue) {
  std::string error =
      probeError("", {"WEBTRAP__MODSECURITY__EXTRA_RULES=a\tb" + std::string(100, 'c')});
  EXPECT_THAT(error, HasSubstr("found \"a\\x09b" + std::string(77, 'c') +
                               "...\"; write the value"));

  std::string with_password =
      probeError("", {"WEBTRAP__MODSECURITY__EXTRA_RULES=http://user:" + std::string(90, 'p') +
                      "@rules.example/a.conf"});
  EXPECT_THAT(with_password, HasSubstr("found \"(hidden)\"; write the value"));
  EXPECT_THAT(with_password, Not(HasSubstr("ppp")));
}

TEST(ProbeEnvironment, RejectsSecondYamlDocument) {
  // Only the whole value may apply, so a second document is not dropped.
  std::string error =
      probeError("", {"WEBTRAP__MODSECURITY__EXTRA_RULES=[/etc/a.conf]\n---\n[/etc/b.conf]"});
  EXPECT_THAT(error, HasSubstr("WEBTRAP__MODSECURITY__EXTRA_RULES: modsecurity.extra_rules "
                               "takes a list"));
  EXPECT_THAT(error, HasSubstr("a second YAML document starts here"));
}

TEST(ProbeEnvironment, RejectsListValueWithStrayComma) {
  // yaml-cpp 0.7 reads a leading `,` as documents without end, so that
  // YAML::LoadAll() allocated until memory ran out (found by
  // probe_config_fuzz).
  for (const char* value : {",", ", [a]", ",\n[/etc/a.conf]"}) {
    std::string error =
        probeError("", {std::string("WEBTRAP__MODSECURITY__EXTRA_RULES=") + value});
    EXPECT_THAT(error, HasSubstr("WEBTRAP__MODSECURITY__EXTRA_RULES: modsecurity.extra_rules "
                                 "takes a list"))
        << value;
    EXPECT_THAT(error, HasSubstr("a second YAML document starts here")) << value;
  }
}

TEST(ProbeEnvironment, RejectsInvalidYamlList) {
  std::string error = probeError("", {"WEBTRAP__LISTENERS=[{address: 127.0.0.1:9000"});
  EXPECT_THAT(error, HasSubstr("WEBTRAP__LISTENERS: listeners takes a list (invalid YAML"));
}

TEST(ProbeEnvironment, RejectsUnknownKey) {
  std::string error = probeError("", {"WEBTRAP__SHIPPER__URI=http://127.0.0.1:7380"});
  EXPECT_THAT(error, HasSubstr("WEBTRAP__SHIPPER__URI: shipper.uri is not a probe "
                               "configuration key"));
  EXPECT_THAT(error, HasSubstr("webtrap probe --config-reference"));
}

TEST(ProbeEnvironment, RejectsKeyBelowValue) {
  std::string error = probeError("", {"WEBTRAP__SHIPPER__URL__HOST=x"});
  EXPECT_THAT(error, HasSubstr("shipper.url.host is not a probe configuration key"));
}

TEST(ProbeEnvironment, RejectsValueForMap) {
  std::string error = probeError("", {"WEBTRAP__SHIPPER=http://127.0.0.1:7380"});
  EXPECT_THAT(error, HasSubstr("WEBTRAP__SHIPPER: shipper is a map of keys and takes no single "
                               "value"));
  EXPECT_THAT(error, HasSubstr("such as WEBTRAP__SHIPPER__KEY"));
}

TEST(ProbeEnvironment, InvalidValueNamesVariable) {
  std::string error = probeError("io_threads: 2\n", {"WEBTRAP__IO_THREADS=many"});
  EXPECT_THAT(error, HasSubstr("io_threads: invalid number \"many\""));
  EXPECT_THAT(error, HasSubstr("[set in the environment: io_threads from WEBTRAP__IO_THREADS; "
                               "fix or unset the variable]"));
}

TEST(ProbeEnvironment, FileErrorNamesNoVariable) {
  std::string error = probeError("io_threads: many\n", {"WEBTRAP__SPOOL__DIR=/tmp"});
  EXPECT_THAT(error, HasSubstr("io_threads: invalid number"));
  EXPECT_THAT(error, Not(HasSubstr("WEBTRAP__")));
}

TEST(ProbeEnvironment, RejectsTopLevelList) {
  std::string error = probeError("- a\n- b\n", {"WEBTRAP__SPOOL__DIR=/tmp"});
  EXPECT_THAT(error, HasSubstr("expected a map of keys at the top level"));
}

TEST(CollectorEnvironment, ListenWithoutFile) {
  collector::CollectorConfig config =
      collector::loadCollectorConfig({}, {"WEBTRAP__LISTEN=127.0.0.1:7999"});
  EXPECT_EQ(config.listen, "127.0.0.1:7999");
  EXPECT_THAT(config.environment_keys, ElementsAre("listen from WEBTRAP__LISTEN"));
}

TEST(CollectorEnvironment, StorePathCountsAsSet) {
  collector::CollectorConfig config = collector::parseCollectorConfig(
      "state_dir: /var/lib/a\n", "collector.yaml", {"WEBTRAP__STORE__PATH=/tmp/b.sqlite"});
  EXPECT_EQ(config.store.path, "/tmp/b.sqlite");
}

TEST(CollectorEnvironment, CreatesOutputSection) {
  collector::CollectorConfig config = collector::parseCollectorConfig(
      "", "collector.yaml",
      {"WEBTRAP__OUTPUTS__NDJSON__PATH=/tmp/events.ndjson",
       "WEBTRAP__OUTPUTS__NDJSON__ROTATE_SIZE=1MiB"});
  ASSERT_TRUE(config.ndjson.IsMap());
  EXPECT_EQ(config.ndjson["path"].as<std::string>(), "/tmp/events.ndjson");
  EXPECT_EQ(config.ndjson["rotate_size"].as<std::string>(), "1MiB");
}

TEST(CollectorEnvironment, OverridesInsideOutputSection) {
  collector::CollectorConfig config = collector::parseCollectorConfig(
      "outputs:\n  elasticsearch:\n    url: https://127.0.0.1:9200\n    username: elastic\n"
      "    password: from-file\n",
      "collector.yaml",
      {"WEBTRAP__OUTPUTS__ELASTICSEARCH__PASSWORD=from-environment",
       "WEBTRAP__OUTPUTS__ELASTICSEARCH__URLS=[https://127.0.0.1:9201, 'https://[::1]:9202']"});
  EXPECT_EQ(config.elasticsearch["password"].as<std::string>(), "from-environment");
  EXPECT_EQ(config.elasticsearch["username"].as<std::string>(), "elastic");
  ASSERT_TRUE(config.elasticsearch["urls"].IsSequence());
  EXPECT_EQ(config.elasticsearch["urls"].size(), 2u);
}

TEST(CollectorEnvironment, SectionRejectsUnknownKey) {
  std::string error =
      collectorError("", {"WEBTRAP__OUTPUTS__NDJSON__PAHT=/tmp/events.ndjson"});
  EXPECT_THAT(error, HasSubstr("outputs.ndjson.paht: unknown key"));
  EXPECT_THAT(error, HasSubstr("outputs.ndjson.paht from WEBTRAP__OUTPUTS__NDJSON__PAHT"));
}

TEST(CollectorEnvironment, RejectsUnknownKey) {
  std::string error = collectorError("", {"WEBTRAP__LISTEN_ADDRESS=127.0.0.1:7380"});
  EXPECT_THAT(error, HasSubstr("WEBTRAP__LISTEN_ADDRESS: listen_address is not a collector "
                               "configuration key"));
}

TEST(CollectorEnvironment, RejectsKeyInsideListSection) {
  std::string error = collectorError("", {"WEBTRAP__INPUTS__FILES__PATH=/var/log/audit.json"});
  EXPECT_THAT(error, HasSubstr("inputs.files.path is not a collector configuration key"));
}

TEST(CollectorEnvironment, RejectsValueForSection) {
  std::string error = collectorError("", {"WEBTRAP__OUTPUTS__NDJSON=/tmp/events.ndjson"});
  EXPECT_THAT(error, HasSubstr("WEBTRAP__OUTPUTS__NDJSON: outputs.ndjson is a map of keys"));
}

TEST(CollectorEnvironment, RejectsValueForMapInFile) {
  std::string error = collectorError(
      "outputs:\n  elasticsearch:\n    url: https://127.0.0.1:9200\n    kibana:\n"
      "      url: https://127.0.0.1:5601\n",
      {"WEBTRAP__OUTPUTS__ELASTICSEARCH__KIBANA=https://127.0.0.1:5601"});
  EXPECT_THAT(error, HasSubstr("WEBTRAP__OUTPUTS__ELASTICSEARCH__KIBANA: "
                               "outputs.elasticsearch.kibana is a map of keys"));
}

TEST(CollectorEnvironment, RejectsKeyBelowFileValue) {
  std::string error = collectorError("outputs:\n  ndjson:\n    path: /tmp/events.ndjson\n",
                                     {"WEBTRAP__OUTPUTS__NDJSON__PATH__DIR=/tmp"});
  EXPECT_THAT(error, HasSubstr("WEBTRAP__OUTPUTS__NDJSON__PATH__DIR: cannot set "
                               "outputs.ndjson.path.dir, because collector.yaml gives "
                               "outputs.ndjson.path a single value"));
}

TEST(CollectorEnvironment, RejectsKeyBelowFileList) {
  std::string error = collectorError("outputs:\n  ndjson: []\n",
                                     {"WEBTRAP__OUTPUTS__NDJSON__PATH=/tmp/events.ndjson"});
  EXPECT_THAT(error, HasSubstr("because collector.yaml gives outputs.ndjson a list"));
}

TEST(CollectorEnvironment, GroupErrorNamesVariable) {
  std::string error = collectorError("", {"WEBTRAP__TLS__CERTIFICATE=/etc/webtrap/cert.pem"});
  EXPECT_THAT(error, HasSubstr("tls: set both tls.certificate and tls.private_key"));
  EXPECT_THAT(error, HasSubstr("tls.certificate from WEBTRAP__TLS__CERTIFICATE"));
}

TEST(CollectorEnvironment, LeavesAliasesAlone) {
  collector::CollectorConfig config = collector::parseCollectorConfig(
      "admin:\n  listen: &address 127.0.0.1:9102\n  token: t\nlisten: *address\n",
      "collector.yaml", {"WEBTRAP__ADMIN__LISTEN="});
  EXPECT_EQ(config.admin_listen, "");
  EXPECT_EQ(config.listen, "127.0.0.1:9102");
}

TEST(CollectorEnvironment, ShippedFileTakesOverrides) {
  std::filesystem::path file = std::filesystem::path(WEBTRAP_SOURCE_DIR) / "etc" / "collector.yaml";
  collector::CollectorConfig config = collector::loadCollectorConfig(
      file, {"WEBTRAP__LISTEN=[::1]:7390", "WEBTRAP__ADMIN__TOKEN=admin-secret"});
  EXPECT_EQ(config.listen, "[::1]:7390");
  EXPECT_EQ(config.admin_token, "admin-secret");
}

TEST(EnvironmentErrors, HidesSecretValues) {
  auto overrides = config_environment::readOverrides(
      {"WEBTRAP__OUTPUTS__MISP__API_KEY=k3y-value", "WEBTRAP__SHIPPER__PROXY=http://u:pw@p:3128"});
  ConfigError named = config_environment::nameVariables(
      ConfigError("outputs.misp.api_key: bad key k3y-value, proxy http://u:pw@p:3128"), overrides);
  std::string message = named.what();
  EXPECT_THAT(message, Not(HasSubstr("k3y-value")));
  EXPECT_THAT(message, Not(HasSubstr("u:pw")));
  EXPECT_THAT(message, HasSubstr("bad key (hidden)"));
  EXPECT_THAT(message, HasSubstr("outputs.misp.api_key from WEBTRAP__OUTPUTS__MISP__API_KEY"));
}

TEST(EnvironmentErrors, KeepsOtherValues) {
  auto overrides = config_environment::readOverrides({"WEBTRAP__IO_THREADS=many"});
  ConfigError named = config_environment::nameVariables(
      ConfigError("spool.dir: cannot use many"), overrides);
  EXPECT_STREQ(named.what(), "spool.dir: cannot use many");
}

TEST(EnvironmentErrors, ShortSecretEndsHiding) {
  // "(hidden)" contains the value, so the replacement must not be searched
  // again.
  auto overrides = config_environment::readOverrides({"WEBTRAP__ADMIN__TOKEN=d"});
  ConfigError named =
      config_environment::nameVariables(ConfigError("store.path: bad d and d"), overrides);
  EXPECT_STREQ(named.what(), "store.path: ba(hidden) (hidden) an(hidden) (hidden)");
}

TEST(EnvironmentErrors, KeepsCountsAndPaths) {
  auto overrides = config_environment::readOverrides(
      {"WEBTRAP__BEHAVIOUR__CREDENTIAL_CRACKING__MIN_PASSWORDS=1",
       "WEBTRAP__SHIPPER__TOKEN_FILE=/etc/webtrap/token",
       "WEBTRAP__OUTPUTS__MISP__API_KEY_ENV=MISP_KEY"});
  ConfigError named = config_environment::nameVariables(
      ConfigError("shipper.token_file: cannot read \"/etc/webtrap/token\"; 1 MISP_KEY"),
      overrides);
  std::string message = named.what();
  EXPECT_THAT(message, HasSubstr("cannot read \"/etc/webtrap/token\""));
  EXPECT_THAT(message, HasSubstr("; 1 MISP_KEY"));
}

TEST(EnvironmentErrors, HidesSecretKeyWords) {
  auto overrides = config_environment::readOverrides(
      {"WEBTRAP__OUTPUTS__ELASTICSEARCH__PASSWORD=pw-value",
       "WEBTRAP__OUTPUTS__ELASTICSEARCH__API_KEY=key-value",
       "WEBTRAP__ADMIN__TOKEN=token-value", "WEBTRAP__SHIPPER__PROXY=proxy-value"});
  ConfigError named = config_environment::nameVariables(
      ConfigError("x: pw-value key-value token-value proxy-value"), overrides);
  EXPECT_STREQ(named.what(), "x: (hidden) (hidden) (hidden) (hidden)");
}

TEST(EnvironmentErrors, NamesVariableOfKeyInText) {
  auto overrides = config_environment::readOverrides(
      {"WEBTRAP__SHIPPER__TOKEN=env-token-value", "WEBTRAP__SHIPPER__BATCH_MAX_BYTES=1"});
  ConfigError named = config_environment::nameVariables(
      ConfigError("shipper.token and shipper.token_file are both set; keep one of them"),
      overrides);
  std::string message = named.what();
  EXPECT_THAT(message, HasSubstr("shipper.token from WEBTRAP__SHIPPER__TOKEN"));
  EXPECT_THAT(message, Not(HasSubstr("WEBTRAP__SHIPPER__BATCH_MAX_BYTES")));
}

TEST(EnvironmentErrors, IgnoresLongerKeyInText) {
  auto overrides = config_environment::readOverrides({"WEBTRAP__SHIPPER__TOKEN=env-token-value"});
  ConfigError named = config_environment::nameVariables(
      ConfigError("shipper.url: needs shipper.token_file or shipper.tokens."), overrides);
  EXPECT_THAT(named.what(), Not(HasSubstr("WEBTRAP__SHIPPER__TOKEN")));
}

TEST(ShipperEnvironment, TokenWithTokenFileNamesVariable) {
  auto path = writeConfig("shipper:\n  url: http://127.0.0.1:7380\n  token_file: /tmp/t\n");
  Environment environment = {"WEBTRAP__SHIPPER__TOKEN=env-token-value"};
  probe::ProbeConfig config = probe::loadProbeConfig(path, environment);
  std::string message;
  try {
    shipper::resolveShipperConfig(config.shipper);
  } catch (const ConfigError& error) {
    message =
        config_environment::nameVariables(error, config_environment::readOverrides(environment))
            .what();
  }
  EXPECT_THAT(message, HasSubstr("both set"));
  EXPECT_THAT(message, HasSubstr("WEBTRAP__SHIPPER__TOKEN"));
  EXPECT_THAT(message, Not(HasSubstr("env-token-value")));
}

TEST(CollectorEnvironment, PasswordWithoutUsernameNamesVariable) {
  std::string message = collectorError(
      "", {"WEBTRAP__OUTPUTS__ELASTICSEARCH__URL=http://127.0.0.1:9200",
           "WEBTRAP__OUTPUTS__ELASTICSEARCH__PASSWORD=es-pass-value"});
  EXPECT_THAT(message, HasSubstr("WEBTRAP__OUTPUTS__ELASTICSEARCH__PASSWORD"));
  EXPECT_THAT(message, Not(HasSubstr("es-pass-value")));
}

TEST(ShipperEnvironment, HidesPasswordInUrl) {
  auto path = writeConfig("shipper:\n  token: abc\n");
  Environment environment = {"WEBTRAP__SHIPPER__URL=http://user:url-pass-value@collector.invalid:7380"};
  probe::ProbeConfig config = probe::loadProbeConfig(path, environment);
  std::string message;
  try {
    shipper::resolveShipperConfig(config.shipper);
  } catch (const ConfigError& error) {
    message =
        config_environment::nameVariables(error, config_environment::readOverrides(environment))
            .what();
  }
  EXPECT_THAT(message, HasSubstr("uses plain http"));
  EXPECT_THAT(message, HasSubstr("http://user:(hidden)@collector.invalid:7380"));
  EXPECT_THAT(message, Not(HasSubstr("url-pass-value")));
}

}  // namespace
}  // namespace webtrap
