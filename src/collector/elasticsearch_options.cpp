// Parser of the outputs.elasticsearch configuration section.
#include <ctime>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "collector/connection_options.h"
#include "collector/elasticsearch_output.h"
#include "common/config_table.h"
#include "common/config_values.h"
#include "common/error.h"

namespace webtrap::collector {
namespace {

constexpr const char* kSection = "outputs.elasticsearch";
constexpr const char* kExampleUrl = "https://elasticsearch.example:9200";

std::string keyPath(const std::string& key) { return std::string(kSection) + "." + key; }

// Returns why `name` cannot be an Elasticsearch index or data stream name,
// or an empty string. The rules are those of Elasticsearch 8's create index
// API: lowercase, no \ / * ? " < > | space , # :, not starting with - _ +.
std::string indexNameProblem(const std::string& name) {
  if (name.empty()) {
    return "it is empty";
  }
  for (char c : name) {
    if (c >= 'A' && c <= 'Z') {
      return "it contains upper-case letters";
    }
    if (std::string_view("\\/*?\"<>| ,#:").find(c) != std::string_view::npos) {
      return fmt::format("it contains the character '{}'", c);
    }
  }
  if (name[0] == '-' || name[0] == '_' || name[0] == '+') {
    return "it starts with '-', '_' or '+'";
  }
  if (name.size() > 255) {
    return "it is longer than 255 bytes";
  }
  return {};
}

std::string checkedIndexPattern(const std::string& pattern, const std::string& key) {
  // Format a fixed date to see what the pattern produces.
  std::tm sample{};
  sample.tm_year = 2026 - 1900;
  sample.tm_mon = 11;
  sample.tm_mday = 4;
  char buffer[512];
  std::size_t length = std::strftime(buffer, sizeof buffer, pattern.c_str(), &sample);
  std::string name(buffer, length);
  std::string problem = indexNameProblem(name);
  if (!problem.empty()) {
    throw ConfigError(fmt::format("{}: pattern \"{}\" gives the index name \"{}\", which is invalid "
                                  "because {}; use lowercase letters, digits, '-', '.' and "
                                  "strftime fields, such as webtrap-%Y.%m.%d",
                                  key, pattern, name, problem));
  }
  return pattern;
}

}  // namespace

ElasticsearchOptions parseElasticsearchOptions(const YAML::Node& node) {
  using namespace config_values;
  if (!node || !node.IsMap()) {
    throw ConfigError(fmt::format(
        "{}: expected a map such as `elasticsearch: {{url: https://127.0.0.1:9200}}`", kSection));
  }
  ElasticsearchOptions options;
  bool has_data_stream = false;
  std::optional<YAML::Node> kibana_node;
  for (const auto& entry : node) {
    const std::string key = config_table::keyText(entry.first, std::string(kSection));
    const std::string path = keyPath(key);
    const YAML::Node& value = entry.second;
    if (key == "url" || key == "urls") {
      options.urls.clear();
      if (value.IsSequence()) {
        for (std::size_t i = 0; i < value.size(); ++i) {
          std::string item_key = fmt::format("{}[{}]", path, i);
          options.urls.push_back(parseHttpUrl(scalarText(value[i], item_key), item_key, kExampleUrl));
        }
      } else {
        options.urls.push_back(parseHttpUrl(scalarText(value, path), path, kExampleUrl));
      }
      if (options.urls.empty()) {
        throw ConfigError(fmt::format("{}: the list is empty; give at least one URL", path));
      }
    } else if (key == "data_stream") {
      options.data_stream = scalarText(value, path);
      std::string problem = indexNameProblem(options.data_stream);
      if (!problem.empty()) {
        throw ConfigError(fmt::format("{}: \"{}\" is not a valid data stream name because {}; use "
                                      "the type-dataset-namespace form, such as "
                                      "logs-webtrap-default",
                                      path, options.data_stream, problem));
      }
      has_data_stream = true;
    } else if (key == "index") {
      options.index = checkedIndexPattern(scalarText(value, path), path);
    } else if (parseConnectionKey(key, value, path, options)) {
      // username, password, api_key, ca_file, tls_verify, proxy, timeout,
      // connect_timeout
    } else if (key == "client_certificate") {
      options.client_certificate = parsePemFilePath(scalarText(value, path), path);
    } else if (key == "client_key") {
      options.client_key = parsePemFilePath(scalarText(value, path), path);
    } else if (key == "compression") {
      std::string text = scalarText(value, path);
      if (text == "gzip") {
        options.compression = true;
      } else if (text == "none") {
        options.compression = false;
      } else {
        options.compression = parseBool(text, path);
      }
    } else if (key == "request_max_bytes") {
      options.request_max_bytes = parseBytes(scalarText(value, path), path);
      if (options.request_max_bytes < 1024) {
        throw ConfigError(fmt::format("{}: {} bytes is too small; use at least 1KiB (5MiB to "
                                      "15MiB is the usual _bulk size)",
                                      path, options.request_max_bytes));
      }
    } else if (key == "parallel_requests") {
      const std::uint64_t count = parseUnsigned(scalarText(value, path), path);
      if (count < 1 || count > 16) {
        throw ConfigError(fmt::format("{}: {} is out of range; use 1 to 16, such as 2 for a "
                                      "remote cluster",
                                      path, count));
      }
      options.parallel_requests = static_cast<std::uint32_t>(count);
    } else if (key == "kibana") {
      kibana_node = value;
    } else if (key == "batch_max_events" || key == "batch_max_bytes" || key == "flush_interval" ||
               key == "retry_initial" || key == "retry_max") {
      // Runner keys, checked by parseRunnerOptions().
    } else {
      throw ConfigError(fmt::format(
          "{}: unknown key; the keys are url, data_stream, index, username, password, api_key, "
          "ca_file, tls_verify, client_certificate, client_key, proxy, timeout, connect_timeout, "
          "compression, request_max_bytes, parallel_requests, kibana, batch_max_events, batch_max_bytes, "
          "flush_interval, retry_initial, retry_max",
          path));
    }
  }

  if (has_data_stream && !options.index.empty()) {
    throw ConfigError(fmt::format("{}: both data_stream and index are set; keep one (data_stream "
                                  "for a data stream, index for dated indices)",
                                  kSection));
  }
  if (!options.index.empty()) {
    options.data_stream.clear();
  }
  if (!options.username.empty() && options.password.empty()) {
    throw ConfigError(fmt::format("{}.password: missing; username \"{}\" needs a password",
                                  kSection, options.username));
  }
  if (options.username.empty() && !options.password.empty()) {
    throw ConfigError(fmt::format("{0}.username: missing; {0}.password is set and needs a username",
                                  kSection));
  }
  if (!options.username.empty() && !options.api_key.empty()) {
    throw ConfigError(fmt::format("{}: both username and api_key are set; keep one of them",
                                  kSection));
  }
  if (options.client_certificate.empty() != options.client_key.empty()) {
    throw ConfigError(fmt::format("{}: client_certificate and client_key go together; set both or "
                                  "neither",
                                  kSection));
  }
  if (options.timeout.count() == 0) {
    throw ConfigError(fmt::format("{}.timeout: 0 would wait forever; use a duration such as 30s",
                                  kSection));
  }
  if (kibana_node) {
    options.kibana =
        parseKibanaOptions(*kibana_node, options.username, options.password, options.api_key);
  }
  return options;
}

}  // namespace webtrap::collector
