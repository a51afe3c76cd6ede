#include "collector/elasticsearch_setup.h"

#include <fnmatch.h>

#include <charconv>
#include <ctime>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include "common/json_writer.h"

namespace webtrap::collector {
namespace {

std::string readFile(const std::filesystem::path& path) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) {
    throw std::runtime_error(fmt::format("setup-elasticsearch: cannot read {}; it ships in "
                                         "etc/elasticsearch/ of the source tree",
                                         path.string()));
  }
  std::ostringstream text;
  text << stream.rdbuf();
  return text.str();
}

[[noreturn]] void failStep(std::string_view step, const ElasticsearchResponse& response) {
  throw std::runtime_error(fmt::format("setup-elasticsearch: {} failed with HTTP {} from {}: {}",
                                       step, response.status, response.url,
                                       std::string_view(response.body).substr(0, 500)));
}

struct ClusterVersion {
  std::string number;
  std::string distribution;  // "opensearch" or empty for Elasticsearch
};

ClusterVersion readClusterVersion(std::string_view body) {
  ClusterVersion version;
  simdjson::ondemand::parser parser;
  simdjson::padded_string padded(body);
  try {
    auto document = parser.iterate(padded);
    auto version_object = document["version"].get_object();
    for (auto field : version_object) {
      std::string_view key = field.unescaped_key();
      if (key == "number") {
        version.number = std::string(std::string_view(field.value().get_string()));
      } else if (key == "distribution") {
        version.distribution = std::string(std::string_view(field.value().get_string()));
      }
    }
  } catch (const simdjson::simdjson_error& error) {
    throw std::runtime_error(fmt::format("setup-elasticsearch: GET / did not return cluster info "
                                         "({}); is the URL an Elasticsearch node?",
                                         error.what()));
  }
  return version;
}

// Composable index templates and data streams need Elasticsearch 7.9 or later.
void checkVersion(const ClusterVersion& version) {
  if (version.distribution == "opensearch") {
    return;
  }
  int major = 0;
  int minor = 0;
  const char* begin = version.number.data();
  const char* end = begin + version.number.size();
  auto [after_major, major_error] = std::from_chars(begin, end, major);
  if (major_error == std::errc() && after_major < end && *after_major == '.') {
    std::from_chars(after_major + 1, end, minor);
  }
  if (major_error != std::errc()) {
    throw std::runtime_error(fmt::format("setup-elasticsearch: cannot read the cluster version "
                                         "\"{}\"",
                                         version.number));
  }
  if (major < 7 || (major == 7 && minor < 9)) {
    throw std::runtime_error(fmt::format("setup-elasticsearch: Elasticsearch {} is too old; "
                                         "composable index templates and data streams need 7.9 "
                                         "or later",
                                         version.number));
  }
}

// Each strftime field becomes a wildcard: webtrap-%Y.%m.%d -> webtrap-*.*.*
std::string wildcardPattern(const ElasticsearchOptions& options) {
  if (options.index.empty()) {
    return options.data_stream;
  }
  std::string pattern;
  for (std::size_t i = 0; i < options.index.size(); ++i) {
    if (options.index[i] == '%' && i + 1 < options.index.size()) {
      pattern += options.index[i + 1] == '%' ? "%" : "*";
      ++i;
    } else {
      pattern += options.index[i];
    }
  }
  return pattern;
}

// Writes `settings` with index.lifecycle.name set to `policy_name`, or
// without it when `policy_name` is empty.
void writeSettings(JsonWriter& writer, simdjson::dom::object settings,
                   const std::string& policy_name) {
  writer.beginObject();
  for (auto [key, value] : settings) {
    if (key == "index.lifecycle.name") {
      continue;
    }
    writer.key(key);
    writer.raw(simdjson::minify(value));
  }
  if (!policy_name.empty()) {
    writer.member("index.lifecycle.name", policy_name);
  }
  writer.endObject();
}

// Rewrites the template file for the configured target: index_patterns
// matches only that target, data_stream is present only for a data stream,
// and template.settings names `policy_name` as the ILM policy. Everything
// else (mappings, priority, _meta) is kept as written.
std::string prepareTemplate(const std::string& file_text, const ElasticsearchOptions& options,
                            const std::filesystem::path& file, const std::string& policy_name) {
  simdjson::dom::parser parser;
  simdjson::dom::object root;
  if (parser.parse(file_text).get_object().get(root)) {
    throw std::runtime_error(fmt::format("setup-elasticsearch: {} is not a JSON object",
                                         file.string()));
  }
  std::string body;
  JsonWriter writer(body);
  writer.beginObject();
  writer.key("index_patterns");
  writer.beginArray();
  writer.string(wildcardPattern(options));
  writer.endArray();
  if (options.index.empty()) {
    writer.key("data_stream");
    writer.beginObject();
    writer.endObject();
  }
  for (auto [key, value] : root) {
    if (key == "index_patterns" || key == "data_stream") {
      continue;
    }
    writer.key(key);
    simdjson::dom::object template_object;
    if (key != "template" || value.get_object().get(template_object)) {
      writer.raw(simdjson::minify(value));
      continue;
    }
    writer.beginObject();
    bool has_settings = false;
    for (auto [part, part_value] : template_object) {
      writer.key(part);
      simdjson::dom::object settings;
      if (part == "settings" && !part_value.get_object().get(settings)) {
        writeSettings(writer, settings, policy_name);
        has_settings = true;
      } else {
        writer.raw(simdjson::minify(part_value));
      }
    }
    if (!has_settings && !policy_name.empty()) {
      writer.key("settings");
      writer.beginObject();
      writer.member("index.lifecycle.name", policy_name);
      writer.endObject();
    }
    writer.endObject();
  }
  writer.endObject();
  return body;
}

// The policy name the template file sets, or "webtrap" when it sets none.
std::string policyNameInTemplate(const std::string& file_text) {
  simdjson::dom::parser parser;
  std::string_view name;
  if (parser.parse(file_text).at_pointer("/template/settings/index.lifecycle.name").get_string().get(
          name)) {
    return "webtrap";
  }
  return std::string(name);
}

}  // namespace

void setupElasticsearch(const ElasticsearchOptions& options,
                        const std::filesystem::path& template_dir) {
  const bool dated = !options.index.empty();
  std::filesystem::path policy_file = template_dir / "ilm-policy.json";
  if (dated && std::filesystem::exists(template_dir / "ilm-policy-dated.json")) {
    policy_file = template_dir / "ilm-policy-dated.json";
  }
  const std::filesystem::path template_file = template_dir / "index-template.json";
  const std::string template_text = readFile(template_file);
  const std::string base_name = policyNameInTemplate(template_text);
  // Dated indices get their own policy (no rollover) and template, so both
  // targets can live in one cluster.
  const std::string policy_name = dated ? base_name + "-dated" : base_name;
  const std::string template_name = policy_name;
  const std::string policy = readFile(policy_file);

  ElasticsearchClient client(options);

  ElasticsearchResponse info = client.request("GET", "/");
  if (info.status != 200) {
    failStep("GET / (cluster info)", info);
  }
  ClusterVersion version = readClusterVersion(info.body);
  checkVersion(version);
  spdlog::info("setup-elasticsearch: {} {} at {}",
               version.distribution.empty() ? "Elasticsearch" : version.distribution,
               version.number, info.url);

  // OpenSearch has ISM in place of ILM and rejects the index.lifecycle.name
  // setting, so the template goes without it.
  const bool opensearch = version.distribution == "opensearch";
  if (opensearch) {
    spdlog::warn("setup-elasticsearch: OpenSearch has no ILM, so no lifecycle policy is "
                 "installed; attach an ISM policy to {} to delete old data",
                 dated ? options.index : options.data_stream);
  } else {
    const std::string policy_path = fmt::format("/_ilm/policy/{}", policy_name);
    ElasticsearchResponse put_policy = client.request("PUT", policy_path, policy);
    if (put_policy.status != 200) {
      failStep("PUT " + policy_path, put_policy);
    }
    spdlog::info("setup-elasticsearch: installed ILM policy {} from {}", policy_name,
                 policy_file.string());
  }

  const std::string index_template = prepareTemplate(template_text, options, template_file,
                                                     opensearch ? std::string() : policy_name);

  const std::string template_path = fmt::format("/_index_template/{}", template_name);
  ElasticsearchResponse put_template = client.request("PUT", template_path, index_template);
  if (put_template.status != 200) {
    failStep("PUT " + template_path, put_template);
  }
  spdlog::info("setup-elasticsearch: installed index template {} from {} for {}", template_name,
               template_file.string(),
               dated ? "indices " + options.index : "data stream " + options.data_stream);

  if (!dated) {
    const std::string stream_path = fmt::format("/_data_stream/{}", options.data_stream);
    ElasticsearchResponse stream = client.request("PUT", stream_path);
    if (stream.status == 200) {
      spdlog::info("setup-elasticsearch: created data stream {}", options.data_stream);
    } else if (stream.body.find("resource_already_exists_exception") != std::string::npos) {
      spdlog::info("setup-elasticsearch: data stream {} already exists", options.data_stream);
    } else {
      failStep("PUT " + stream_path, stream);
    }
  }

  if (options.kibana) {
    importKibanaDashboard(*options.kibana, wildcardPattern(options));
  }
}

}  // namespace webtrap::collector
