#include "common/config_table.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/config_values.h"
#include "common/error.h"
#include "temp_path.h"

namespace webtrap::config_table {
namespace {

using ::testing::HasSubstr;

using Apply = std::function<void(std::map<std::string, std::string>&, const std::string&)>;

const std::vector<Option<Apply>>& sampleOptions() {
  static const std::vector<Option<Apply>> kOptions = {
      {"listen", "address", "127.0.0.1:7380", "Ingest listener.", {}},
      {"tls.certificate", "path", "none", "PEM certificate chain.", {}},
      {"tls.client.ca", "path", "none", "PEM CA bundle.", {}},
  };
  return kOptions;
}

// Walks `yaml` over sampleOptions() and returns the scalar text of each key
// it applied, by full dotted key.
std::map<std::string, std::string> walkSample(const std::string& yaml,
                                              bool allow_empty_group = true) {
  std::map<std::string, std::string> applied;
  KeyWalk walk{
      .apply =
          [&](const std::string& key, const YAML::Node& value) {
            if (findOption(sampleOptions(), key) == nullptr) {
              return false;
            }
            applied[key] = scalarTextOrEmpty(value, key);
            return true;
          },
      .is_group = [](const std::string& key) { return hasGroup(sampleOptions(), key); },
      .program = "collector",
      .allow_empty_group = allow_empty_group,
  };
  walkKeys(YAML::Load(yaml), "", walk);
  return applied;
}

std::string walkError(const std::string& yaml, bool allow_empty_group = true) {
  try {
    walkSample(yaml, allow_empty_group);
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "";
}

TEST(ConfigTable, WalkAppliesNestedKeys) {
  auto applied = walkSample(
      "listen: 127.0.0.1:1\ntls:\n  certificate: a.pem\n  client:\n"
      "    ca: ca.pem\n");
  ASSERT_EQ(applied.size(), 3u);
  EXPECT_EQ(applied["listen"], "127.0.0.1:1");
  EXPECT_EQ(applied["tls.certificate"], "a.pem");
  EXPECT_EQ(applied["tls.client.ca"], "ca.pem");
}

TEST(ConfigTable, KeyWithoutValueIsEmpty) {
  auto applied = walkSample("listen:\n");
  ASSERT_EQ(applied.count("listen"), 1u);
  EXPECT_EQ(applied["listen"], "");
}

TEST(ConfigTable, RepeatedKeyNamesLine) {
  EXPECT_EQ(walkError("tls:\n  certificate: a\n  certificate: b\n"),
            "tls.certificate: the key appears twice at line 3; keep one of them");
}

TEST(ConfigTable, UnknownKeyNamesProgram) {
  EXPECT_EQ(walkError("tls:\n  certifcate: a\n"),
            "tls.certifcate: unknown configuration key; run `webtrap collector "
            "--config-reference` for the list of keys");
}

TEST(ConfigTable, KeyPrefixWithoutDotIsUnknown) {
  // "tl" is a prefix of "tls.certificate" but not a group of it.
  EXPECT_THAT(walkError("tl:\n  certificate: a\n"), HasSubstr("tl: unknown configuration key"));
  EXPECT_FALSE(isInGroup("tls.certificate", "tl"));
  EXPECT_TRUE(isInGroup("tls.certificate", "tls"));
  EXPECT_FALSE(isInGroup("tls", "tls"));
}

TEST(ConfigTable, GroupMustBeMap) {
  EXPECT_EQ(walkError("tls: a.pem\n"),
            "tls: expected a map of keys, such as `tls:` followed by indented `key: value` "
            "lines");
}

TEST(ConfigTable, EmptyGroupFollowsFlag) {
  EXPECT_TRUE(walkSample("tls:\n").empty());
  EXPECT_THAT(walkError("tls:\n", /*allow_empty_group=*/false),
              HasSubstr("tls: expected a map of keys"));
}

TEST(ConfigTable, ReferenceRowsKeepTableOrder) {
  EXPECT_EQ(referenceHeader(), "| key | type | default | meaning |\n|---|---|---|---|\n");
  EXPECT_EQ(referenceRows(sampleOptions()),
            "| listen | address | 127.0.0.1:7380 | Ingest listener. |\n"
            "| tls.certificate | path | none | PEM certificate chain. |\n"
            "| tls.client.ca | path | none | PEM CA bundle. |\n");
}

TEST(ConfigTable, FindOptionByFullKey) {
  const auto* option = findOption(sampleOptions(), "tls.certificate");
  ASSERT_NE(option, nullptr);
  EXPECT_STREQ(option->type, "path");
  EXPECT_EQ(findOption(sampleOptions(), "certificate"), nullptr);
  EXPECT_TRUE(hasGroup(sampleOptions(), "tls.client"));
  EXPECT_FALSE(hasGroup(sampleOptions(), "listen"));
}

TEST(ConfigTable, TopLevelMustBeMap) {
  KeyWalk walk{
      .apply = [](const std::string&, const YAML::Node&) { return false; },
      .is_group = [](const std::string&) { return false; },
      .program = "probe",
  };
  EXPECT_NO_THROW(walkTopLevel(YAML::Load(""), "empty.yaml", walk));
  try {
    walkTopLevel(YAML::Load("- a\n"), "list.yaml", walk);
    FAIL() << "a list at the top level was accepted";
  } catch (const ConfigError& error) {
    EXPECT_STREQ(error.what(), "list.yaml: expected a map of keys at the top level");
  }
}

TEST(ConfigTable, YamlErrorsNameSource) {
  try {
    parseYamlText("a: [1\n", "inline.yaml");
    FAIL() << "unclosed list was accepted";
  } catch (const ConfigError& error) {
    EXPECT_THAT(error.what(), HasSubstr("inline.yaml: invalid YAML at line "));
  }
  std::filesystem::path missing =
      std::filesystem::temp_directory_path() / "webtrap-config-table-missing.yaml";
  std::filesystem::remove(missing);
  try {
    loadYamlFile(missing);
    FAIL() << "a missing file was read";
  } catch (const ConfigError& error) {
    EXPECT_EQ(std::string(error.what()),
              missing.string() + ": cannot read the configuration file; check the path");
  }
}

TEST(ConfigTable, LoadYamlFileReadsMap) {
  test_support::TempFile file("webtrap-config-table", "listen: 127.0.0.1:1\n", ".yaml");
  YAML::Node root = loadYamlFile(file);
  ASSERT_TRUE(root.IsMap());
  EXPECT_EQ(root["listen"].as<std::string>(), "127.0.0.1:1");
}


// readSecretFile reads a token file whole, and rejects at once what is not
// a small regular file, naming the key.
class SecretFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("webtrap-secret-file-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string errorFor(const std::string& path) {
    try {
      config_values::readSecretFile(path, "x.token_file");
    } catch (const ConfigError& error) {
      return error.what();
    }
    ADD_FAILURE() << "no ConfigError for " << path;
    return "";
  }

  std::filesystem::path dir_;
};

TEST_F(SecretFileTest, ReadsRegularFile) {
  std::ofstream(dir_ / "token") << "abc123\n";
  EXPECT_EQ(config_values::readSecretFile((dir_ / "token").string(), "x.token_file"), "abc123\n");
}

TEST_F(SecretFileTest, RejectsWhatIsNotARegularFile) {
  const auto fifo = dir_ / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const std::string& path : {fifo.string(), std::string("/dev/zero"), dir_.string()}) {
    std::string message = errorFor(path);
    EXPECT_THAT(message, HasSubstr("x.token_file"));
    EXPECT_THAT(message, HasSubstr("not a regular file")) << path;
  }
}

TEST_F(SecretFileTest, RejectsLargeAndMissingFiles) {
  std::ofstream(dir_ / "large") << std::string(config_values::kMaxSecretFileBytes + 1, 'a');
  EXPECT_THAT(errorFor((dir_ / "large").string()), HasSubstr("more than"));
  EXPECT_THAT(errorFor((dir_ / "missing").string()), HasSubstr("cannot read"));
}

}  // namespace
}  // namespace webtrap::config_table
