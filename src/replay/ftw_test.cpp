#include "replay/ftw_test.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "common/error.h"

namespace webtrap::replay {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void throwLayoutError(const fs::path& file, const std::string& where,
                                   const std::string& problem) {
  throw ConfigError(
      fmt::format("invalid ftw test file {}: {} {}; expected the ftw YAML layout "
                  "(meta, tests, stages, input, output)",
                  file.string(), where, problem));
}

// Returns the scalar's text, or an empty string for null. YAML numbers and
// booleans keep their written form, so `Content-Length: 22` gives "22".
std::string scalarText(const YAML::Node& node, const fs::path& file, const std::string& where) {
  if (!node || node.IsNull()) {
    return {};
  }
  if (!node.IsScalar()) {
    throwLayoutError(file, where, "is not a scalar");
  }
  return node.Scalar();
}

bool boolValue(const YAML::Node& node, const fs::path& file, const std::string& where) {
  try {
    return node.as<bool>();
  } catch (const YAML::Exception&) {
    throwLayoutError(file, where, fmt::format("is '{}', not true or false", node.Scalar()));
  }
}

int intValue(const YAML::Node& node, const fs::path& file, const std::string& where) {
  try {
    return node.as<int>();
  } catch (const YAML::Exception&) {
    throwLayoutError(file, where, "is not an integer");
  }
}

// ftw joins a list of lines with CRLF and adds nothing after the last one, so
// a list that ends in two empty strings ends in one CRLF pair, which is what
// a chunked body's terminator needs.
std::string dataText(const YAML::Node& node, const fs::path& file, const std::string& where) {
  if (!node.IsSequence()) {
    return scalarText(node, file, where);
  }
  std::string joined;
  for (std::size_t i = 0; i < node.size(); ++i) {
    if (i > 0) {
      joined += "\r\n";
    }
    joined += scalarText(node[i], file, fmt::format("{}[{}]", where, i));
  }
  return joined;
}

FtwInput parseInput(const YAML::Node& node, const fs::path& file, const std::string& where) {
  FtwInput input;
  if (!node.IsMap()) {
    throwLayoutError(file, where, "is not a map");
  }
  for (const auto& entry : node) {
    const std::string key = entry.first.Scalar();
    const YAML::Node& value = entry.second;
    const std::string path = where + "." + key;
    if (key == "method") {
      input.method = scalarText(value, file, path);
    } else if (key == "uri") {
      input.uri = scalarText(value, file, path);
    } else if (key == "version") {
      input.version = scalarText(value, file, path);
    } else if (key == "headers") {
      if (value.IsNull()) {
        continue;
      }
      if (!value.IsMap()) {
        throwLayoutError(file, path, "is not a map");
      }
      // yaml-cpp iterates a map in document order, which is the order a
      // test author wrote and the order the headers go on the wire.
      for (const auto& header : value) {
        input.headers.emplace_back(
            header.first.Scalar(),
            scalarText(header.second, file, path + "." + header.first.Scalar()));
      }
    } else if (key == "data") {
      input.data = dataText(value, file, path);
    } else if (key == "raw_request") {
      input.raw_request = dataText(value, file, path);
    } else if (key == "encoded_request") {
      input.encoded_request = scalarText(value, file, path);
    } else if (key == "stop_magic") {
      input.stop_magic = boolValue(value, file, path);
    } else if (key == "autocomplete_headers") {
      input.autocomplete_headers = boolValue(value, file, path);
    } else if (key == "protocol") {
      input.protocol = scalarText(value, file, path);
    } else if (key == "dest_addr") {
      input.dest_addr = scalarText(value, file, path);
    } else if (key == "port") {
      input.port = intValue(value, file, path);
    }
    // Other keys (save_cookie, and newer go-ftw keys) do not change the bytes
    // sent, so they are accepted and ignored.
  }
  return input;
}

FtwOutput parseOutput(const YAML::Node& node, const fs::path& file, const std::string& where) {
  FtwOutput output;
  if (!node || node.IsNull()) {
    return output;
  }
  if (!node.IsMap()) {
    throwLayoutError(file, where, "is not a map");
  }
  for (const auto& entry : node) {
    const std::string key = entry.first.Scalar();
    const YAML::Node& value = entry.second;
    const std::string path = where + "." + key;
    if (key == "log_contains") {
      output.log_contains = scalarText(value, file, path);
    } else if (key == "no_log_contains") {
      output.no_log_contains = scalarText(value, file, path);
    } else if (key == "status") {
      if (value.IsSequence()) {
        for (std::size_t i = 0; i < value.size(); ++i) {
          output.status.push_back(intValue(value[i], file, fmt::format("{}[{}]", path, i)));
        }
      } else {
        output.status.push_back(intValue(value, file, path));
      }
    } else if (key == "expect_error") {
      output.expect_error = boolValue(value, file, path);
    }
  }
  return output;
}

// Accepts both stage shapes: legacy ftw's `- stage: {input, output}` and
// go-ftw's `- {input, output}`.
FtwStage parseStage(const YAML::Node& node, const fs::path& file, const std::string& where) {
  YAML::Node body = node["stage"] ? node["stage"] : node;
  if (!body.IsMap() || !body["input"]) {
    throwLayoutError(file, where, "has no input");
  }
  FtwStage stage;
  stage.input = parseInput(body["input"], file, where + ".input");
  stage.output = parseOutput(body["output"], file, where + ".output");
  return stage;
}

void parseDocument(const YAML::Node& doc, const fs::path& file, std::vector<FtwTest>& tests) {
  if (!doc.IsMap()) {
    throwLayoutError(file, "the document", "is not a map");
  }
  bool enabled = true;
  if (const YAML::Node meta = doc["meta"]; meta && meta.IsMap() && meta["enabled"]) {
    enabled = boolValue(meta["enabled"], file, "meta.enabled");
  }
  const YAML::Node list = doc["tests"];
  if (!list || !list.IsSequence()) {
    throwLayoutError(file, "tests", "is missing or not a list");
  }
  for (std::size_t t = 0; t < list.size(); ++t) {
    const YAML::Node node = list[t];
    const std::string where = fmt::format("tests[{}]", t);
    if (!node.IsMap()) {
      throwLayoutError(file, where, "is not a map");
    }
    FtwTest test;
    test.file = file;
    test.enabled = enabled;
    test.title = node["test_title"] ? scalarText(node["test_title"], file, where + ".test_title")
                                    : fmt::format("test-{}", t + 1);
    if (node["desc"]) {
      test.description = scalarText(node["desc"], file, where + ".desc");
    }
    const YAML::Node stages = node["stages"];
    if (!stages || !stages.IsSequence() || stages.size() == 0) {
      throwLayoutError(file, where + ".stages", "is missing or empty");
    }
    for (std::size_t s = 0; s < stages.size(); ++s) {
      test.stages.push_back(parseStage(stages[s], file, fmt::format("{}.stages[{}]", where, s)));
    }
    tests.push_back(std::move(test));
  }
}

}  // namespace

std::vector<FtwTest> parseFtwYaml(const std::string& text, const fs::path& file) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(
        fmt::format("invalid YAML in ftw test file {}: {}; fix the syntax at that line",
                    file.string(), e.what()));
  }
  std::vector<FtwTest> tests;
  for (const auto& doc : docs) {
    if (doc.IsNull()) {
      continue;
    }
    parseDocument(doc, file, tests);
  }
  return tests;
}

std::vector<FtwTest> loadFtwFile(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    throw ConfigError(
        fmt::format("cannot read ftw test file {}; check that it exists and is "
                    "readable",
                    file.string()));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parseFtwYaml(text.str(), file);
}

std::vector<fs::path> collectFtwFiles(const std::vector<std::string>& paths) {
  std::vector<fs::path> files;
  for (const auto& arg : paths) {
    const fs::path root(arg);
    std::error_code ec;
    if (fs::is_regular_file(root, ec)) {
      files.push_back(root);
      continue;
    }
    if (!fs::is_directory(root, ec)) {
      throw ConfigError(
          fmt::format("test path '{}' does not exist; give ftw YAML files or folders "
                      "that contain them",
                      arg));
    }
    std::vector<fs::path> found;
    for (fs::recursive_directory_iterator it(root, fs::directory_options::follow_directory_symlink),
         end;
         it != end; ++it) {
      const auto ext = it->path().extension();
      if (it->is_regular_file() && (ext == ".yaml" || ext == ".yml")) {
        found.push_back(it->path());
      }
    }
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

}  // namespace webtrap::replay
