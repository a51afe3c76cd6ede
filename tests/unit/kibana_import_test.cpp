// The Kibana import's pure parts: the kibana configuration keys, the import
// response parser and the data view retitling. The HTTP exchange is covered
// by tests/integration/test_kibana_dashboard.py against the Kibana double.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <simdjson.h>
#include <yaml-cpp/yaml.h>

#include "collector/elasticsearch_output.h"
#include "collector/kibana_import.h"
#include "common/error.h"
#include "temp_path.h"

namespace webtrap::collector {
namespace {

ElasticsearchOptions parse(const std::string& yaml) {
  return parseElasticsearchOptions(YAML::Load(yaml));
}

std::string messageOf(const std::string& yaml) {
  try {
    parse(yaml);
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "no error";
}

TEST(KibanaOptions, AbsentWithoutSection) {
  EXPECT_FALSE(parse("{url: http://127.0.0.1:9200}").kibana.has_value());
}

TEST(KibanaOptions, ExplicitCredentialsAndSpace) {
  auto options = parse(
      "{username: writer, password: w, kibana: {url: 'https://kibana:5601/', space: soc, "
      "username: viewer, password: v, timeout: 5s}}");
  ASSERT_TRUE(options.kibana.has_value());
  EXPECT_EQ(options.kibana->url, "https://kibana:5601");
  EXPECT_EQ(options.kibana->space, "soc");
  EXPECT_EQ(options.kibana->username, "viewer");
  EXPECT_EQ(options.kibana->password, "v");
  EXPECT_FALSE(options.kibana->credentials_from_elasticsearch);
  EXPECT_EQ(options.kibana->timeout.count(), 5000);
}

TEST(KibanaOptions, CredentialsCopiedFromElasticsearch) {
  auto options = parse("{api_key: 'id:key', kibana: {url: 'http://127.0.0.1:5601'}}");
  ASSERT_TRUE(options.kibana.has_value());
  EXPECT_EQ(options.kibana->api_key, "id:key");
  EXPECT_TRUE(options.kibana->username.empty());
  EXPECT_TRUE(options.kibana->credentials_from_elasticsearch);
}

TEST(KibanaOptions, DefaultSpaceIsEmpty) {
  auto options = parse("{kibana: {url: 'http://127.0.0.1:5601', space: default}}");
  EXPECT_TRUE(options.kibana->space.empty());
}

TEST(KibanaOptions, ErrorsNameTheKey) {
  struct Case {
    std::string yaml;
    std::string expected;
  };
  const Case cases[] = {
      {"{kibana: {space: soc}}", "outputs.elasticsearch.kibana.url: missing"},
      {"{kibana: {url: 'ftp://kibana'}}", "outputs.elasticsearch.kibana.url"},
      {"{kibana: {url: 'http://k:5601', space: 'Team A'}}", "is not a space id"},
      {"{kibana: {url: 'http://k:5601', username: u}}", "outputs.elasticsearch.kibana.password"},
      {"{kibana: {url: 'http://k:5601', username: u, password: p, api_key: k}}",
       "both username and api_key"},
      {"{kibana: {url: 'http://k:5601', colour: red}}", "kibana.colour: unknown key"},
      {"{kibana: {url: 'http://k:5601', timeout: 0s}}", "kibana.timeout: 0 would wait"},
      {"{kibana: https://k:5601}", "expected a map"},
  };
  for (const auto& item : cases) {
    EXPECT_NE(messageOf(item.yaml).find(item.expected), std::string::npos)
        << item.yaml << " gave: " << messageOf(item.yaml);
  }
}

TEST(KibanaImportResponse, SuccessWithoutErrors) {
  auto result = parseKibanaImportResponse(
      R"({"success":true,"successCount":2,"successResults":[],"warnings":[]})");
  EXPECT_TRUE(result.success);
  EXPECT_EQ(result.success_count, 2u);
  EXPECT_TRUE(result.errors.empty());
}

TEST(KibanaImportResponse, ErrorsWithTheirDetails) {
  auto result = parseKibanaImportResponse(R"({"success":false,"successCount":1,"errors":[
    {"id":"v1","type":"visualization","title":"T","meta":{"title":"Vis one"},
     "error":{"type":"missing_references","references":[{"type":"index-pattern","id":"dv"},
                                                        {"type":"search","id":"s"}]}},
    {"id":"m1","type":"map","meta":{"title":"Map"},"error":{"type":"unsupported_type"}},
    {"id":"d1","type":"dashboard","title":"Dash","error":{"type":"unknown","statusCode":400,
     "message":"bad panelsJSON"}}]})");
  EXPECT_FALSE(result.success);
  EXPECT_EQ(result.success_count, 1u);
  ASSERT_EQ(result.errors.size(), 3u);
  EXPECT_EQ(result.errors[0].type, "visualization");
  EXPECT_EQ(result.errors[0].id, "v1");
  EXPECT_EQ(result.errors[0].title, "Vis one");
  EXPECT_EQ(result.errors[0].error_type, "missing_references");
  EXPECT_EQ(result.errors[0].detail, "(index-pattern/dv, search/s)");
  EXPECT_EQ(result.errors[1].error_type, "unsupported_type");
  EXPECT_TRUE(result.errors[1].detail.empty());
  EXPECT_EQ(result.errors[2].title, "Dash");
  EXPECT_EQ(result.errors[2].detail, "bad panelsJSON");
}

TEST(KibanaImportResponse, DescribeCutsLongTitle) {
  KibanaImportError error{"dashboard", "d1", "Dash", "unknown", "bad panelsJSON"};
  EXPECT_EQ(describeKibanaImportError(error), "dashboard d1 (\"Dash\"): unknown bad panelsJSON");

  error.title = std::string(kMaxPrintedTitleBytes, 'x');
  EXPECT_EQ(describeKibanaImportError(error),
            "dashboard d1 (\"" + error.title + "\"): unknown bad panelsJSON");

  // "é" is two bytes; the one that straddles the limit is left out whole.
  error.title = std::string(kMaxPrintedTitleBytes - 1, 'x') + "\xC3\xA9" + std::string(5000, 'y');
  EXPECT_EQ(describeKibanaImportError(error),
            "dashboard d1 (\"" + std::string(kMaxPrintedTitleBytes - 1, 'x') +
                "...\"): unknown bad panelsJSON");
}

TEST(KibanaImportResponse, RejectsOtherBodies) {
  EXPECT_THROW(parseKibanaImportResponse("<html>"), std::runtime_error);
  EXPECT_THROW(parseKibanaImportResponse(R"({"statusCode":404})"), std::runtime_error);
  EXPECT_THROW(parseKibanaImportResponse(R"({"success":true})"), std::runtime_error);
}

TEST(DataViewTitle, OnlyIndexPatternsChange) {
  const std::string input =
      "{\"type\":\"index-pattern\",\"id\":\"dv\",\"attributes\":{\"title\":\"logs-webtrap-*\","
      "\"timeFieldName\":\"@timestamp\"},\"references\":[]}\n"
      "\n"
      "{\"type\":\"search\",\"id\":\"s\",\"attributes\":{\"title\":\"logs-webtrap-*\"}}\n";
  std::string output = setDataViewTitle(input, "webtrap-*.*.*");

  simdjson::dom::parser parser;
  auto first_end = output.find('\n');
  ASSERT_NE(first_end, std::string::npos);
  simdjson::dom::element view = parser.parse(output.substr(0, first_end));
  EXPECT_EQ(std::string_view(view.at_pointer("/attributes/title")), "webtrap-*.*.*");
  EXPECT_EQ(std::string_view(view.at_pointer("/attributes/timeFieldName")), "@timestamp");
  EXPECT_EQ(std::string_view(view.at_pointer("/id")), "dv");

  std::string rest = output.substr(first_end + 1);
  EXPECT_EQ(rest, "{\"type\":\"search\",\"id\":\"s\",\"attributes\":{\"title\":\"logs-webtrap-*\"}}\n");
}

TEST(DataViewTitle, RejectsALineThatIsNotAnObject) {
  try {
    setDataViewTitle("{\"type\":\"search\"}\n[1,2]\n", "x");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("line 2"), std::string::npos) << error.what();
  }
}

// A dashboard file that holds no saved objects, is a folder or has a line
// that is not JSON fails before any request, naming the file and the key.
// The URL is never reached: a request would fail with "cannot reach Kibana".
TEST(KibanaDashboardFile, EmptyFolderOrBadLineFailsNamingTheKey) {
  test_support::TempDir temp_dir("kibana-file-test");
  const std::filesystem::path& dir = temp_dir.path();
  std::ofstream(dir / "empty.ndjson").flush();
  std::ofstream(dir / "blank.ndjson") << "\n  \n";
  std::ofstream(dir / "bad.ndjson") << "{\"type\":\"search\"}\nnot json\n";
  KibanaOptions options;
  options.url = "http://127.0.0.1:1";
  for (const std::string name : {"empty.ndjson", "blank.ndjson", "", "bad.ndjson"}) {
    options.dashboard_file = (dir / name).string();
    try {
      importKibanaDashboard(options, "logs-webtrap-default");
      ADD_FAILURE() << name << ": expected an error";
    } catch (const std::runtime_error& error) {
      std::string message = error.what();
      EXPECT_NE(message.find("outputs.elasticsearch.kibana.dashboard_file"), std::string::npos)
          << message;
      EXPECT_EQ(message.find("cannot reach Kibana"), std::string::npos) << message;
      EXPECT_NE(message.find(options.dashboard_file), std::string::npos) << message;
    }
  }
}

}  // namespace
}  // namespace webtrap::collector
