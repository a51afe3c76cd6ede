// Test cases in the legacy ftw YAML format that the OWASP CRS 3.x regression
// suite uses: a `meta` map, then `tests`, each with `stages` of `input` and
// `output`.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace webtrap::replay {

// One stage's request, as written in the YAML file. `dest_addr`, `port` and
// `protocol` are read but never used: replay sends every request to --target.
struct FtwInput {
  std::string method = "GET";
  std::string uri = "/";
  std::string version = "HTTP/1.1";
  std::vector<std::pair<std::string, std::string>> headers;  // file order, duplicates kept
  std::string data;  // a YAML list is joined with "\r\n", as ftw does
  std::optional<std::string> raw_request;
  std::optional<std::string> encoded_request;  // base64
  bool stop_magic = false;
  bool autocomplete_headers = true;
  std::string protocol = "http";
  std::string dest_addr;
  int port = 0;
};

struct FtwOutput {
  std::optional<std::string> log_contains;     // regular expression
  std::optional<std::string> no_log_contains;  // regular expression
  std::vector<int> status;                     // empty: any status
  bool expect_error = false;

  bool needsRecord() const { return log_contains.has_value() || no_log_contains.has_value(); }
};

struct FtwStage {
  FtwInput input;
  FtwOutput output;
};

struct FtwTest {
  std::filesystem::path file;  // as found while walking the arguments
  std::string title;
  std::string description;
  bool enabled = true;  // false when the file's meta.enabled is false
  std::vector<FtwStage> stages;
};

// Loads every test of one YAML file. Throws ConfigError naming the file and
// the key when the file is not valid YAML or not in the ftw layout.
std::vector<FtwTest> loadFtwFile(const std::filesystem::path& file);

// Parses ftw YAML text, with `file` used in messages and stored in each test.
std::vector<FtwTest> parseFtwYaml(const std::string& text, const std::filesystem::path& file);

// Lists the *.yaml and *.yml files named by `paths`, walking folders
// recursively, sorted within each folder so that runs are repeatable. Throws
// ConfigError for a path that does not exist.
std::vector<std::filesystem::path> collectFtwFiles(const std::vector<std::string>& paths);

}  // namespace webtrap::replay
