#include "collector/collector_sections.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "collector/elasticsearch_output.h"
#include "collector/elasticsearch_setup.h"
#include "collector/file_input.h"
#include "collector/misp_feed_output.h"
#include "collector/misp_rest_output.h"
#include "collector/ndjson_output.h"
#include "collector/output_runner.h"
#include "collector/stix_output.h"
#include "common/error.h"
#include "probe/config.h"

namespace webtrap::collector {
namespace {

bool present(const YAML::Node& node) { return node.IsDefined() && !node.IsNull(); }

}  // namespace

void validateSections(const CollectorConfig& config) {
  enrichOptions(config);
  if (present(config.elasticsearch)) {
    parseElasticsearchOptions(config.elasticsearch);
    parseRunnerOptions(config.elasticsearch, "outputs.elasticsearch");
  }
  if (present(config.ndjson)) {
    parseNdjsonOutputOptions(config.ndjson);
    parseRunnerOptions(config.ndjson, "outputs.ndjson");
  }
  if (present(config.misp_feed)) {
    parseMispFeedOptions(config.misp_feed);
    parseRunnerOptions(config.misp_feed, "outputs.misp_feed");
  }
  if (present(config.misp)) {
    parseMispRestOptions(config.misp);
    parseRunnerOptions(config.misp, "outputs.misp");
  }
  if (present(config.file_inputs)) {
    parseFileInputs(config.file_inputs);
  }
  if (present(config.stix)) {
    parseStixOutputOptions(config.stix);
    parseRunnerOptions(config.stix, "outputs.stix");
  }
  behaviourOptions(config);
  publishedFolders(config);
}

std::vector<PublishedFolder> publishedFolders(const CollectorConfig& config) {
  std::vector<PublishedFolder> folders;
  if (present(config.misp_feed)) {
    if (auto serve = parseMispFeedOptions(config.misp_feed).serve) {
      folders.push_back(std::move(*serve));
    }
  }
  if (present(config.stix)) {
    if (auto serve = parseStixOutputOptions(config.stix).serve) {
      folders.push_back(std::move(*serve));
    }
  }
  checkPublishedPrefixes(folders);
  return folders;
}

BehaviourOptions behaviourOptions(const CollectorConfig& config) {
  return parseBehaviourOptions(config.behaviour);
}

EnrichOptions enrichOptions(const CollectorConfig& config) {
  if (!present(config.enrich)) {
    return {};
  }
  return parseEnrichOptions(config.enrich);
}

void setupElasticsearchFromConfig(const CollectorConfig& config) {
  if (!present(config.elasticsearch)) {
    throw ConfigError("outputs.elasticsearch: missing; add the section to the configuration "
                      "file before running setup-elasticsearch");
  }
  // The template and policy files ship with the data files (personas, rules).
  setupElasticsearch(parseElasticsearchOptions(config.elasticsearch),
                     probe::dataDirectory() / "etc" / "elasticsearch");
}

struct OutputSet::Impl {
  std::vector<std::unique_ptr<OutputRunner>> runners;
  std::vector<std::string> names;
};

OutputSet::OutputSet(const CollectorConfig& config, Store& store, MetricsRegistry& metrics)
    : impl_(std::make_unique<Impl>()) {
  if (present(config.elasticsearch)) {
    auto output = std::make_unique<ElasticsearchOutput>(
        parseElasticsearchOptions(config.elasticsearch), metrics);
    impl_->names.emplace_back(output->name());
    impl_->runners.push_back(std::make_unique<OutputRunner>(
        store, std::move(output), parseRunnerOptions(config.elasticsearch, "outputs.elasticsearch"),
        metrics));
  }
  if (present(config.ndjson)) {
    auto output = std::make_unique<NdjsonOutput>(parseNdjsonOutputOptions(config.ndjson));
    impl_->names.emplace_back(output->name());
    impl_->runners.push_back(std::make_unique<OutputRunner>(
        store, std::move(output), parseRunnerOptions(config.ndjson, "outputs.ndjson"), metrics));
  }
  if (present(config.misp_feed)) {
    auto output = std::make_unique<MispFeedOutput>(parseMispFeedOptions(config.misp_feed));
    impl_->names.emplace_back(output->name());
    impl_->runners.push_back(std::make_unique<OutputRunner>(
        store, std::move(output), parseRunnerOptions(config.misp_feed, "outputs.misp_feed"),
        metrics));
  }
  if (present(config.misp)) {
    auto output = std::make_unique<MispRestOutput>(
        parseMispRestOptions(config.misp), metrics,
        [&store](const DeadLetter& letter) { store.addDeadLetter(letter); });
    impl_->names.emplace_back(output->name());
    impl_->runners.push_back(std::make_unique<OutputRunner>(
        store, std::move(output), parseRunnerOptions(config.misp, "outputs.misp"), metrics));
  }
  if (present(config.stix)) {
    auto output = std::make_unique<StixOutput>(parseStixOutputOptions(config.stix));
    impl_->names.emplace_back(output->name());
    impl_->runners.push_back(std::make_unique<OutputRunner>(
        store, std::move(output), parseRunnerOptions(config.stix, "outputs.stix"), metrics));
  }
}

OutputSet::~OutputSet() { stop(); }

void OutputSet::start() {
  for (auto& runner : impl_->runners) {
    runner->start();
  }
}

void OutputSet::notify() {
  for (auto& runner : impl_->runners) {
    runner->notify();
  }
}

void OutputSet::stop() {
  for (auto& runner : impl_->runners) {
    runner->stop();
  }
}

std::vector<std::string> OutputSet::names() const { return impl_->names; }

struct FileInputSet::Impl {
  std::vector<std::unique_ptr<FileInput>> inputs;
};

FileInputSet::FileInputSet(const CollectorConfig& config, Store& store, Ingest& ingest,
                           MetricsRegistry& metrics)
    : impl_(std::make_unique<Impl>()) {
  if (!present(config.file_inputs)) {
    return;
  }
  // The handler runs on the input's thread and returns after the commit; a
  // StoreUnavailable it throws makes the input read the batch again later.
  FileBatchHandler handler = [&ingest](std::vector<AuditRecord>&& records,
                                       std::vector<RejectedLine>&& rejected,
                                       const FileInputOptions& input,
                                       const FileOffsetNote& offset) {
    IngestSource source;
    source.input = InputKind::kFile;
    source.format = input.format;
    source.sensor_id = input.sensor_id;
    source.group = input.group;
    source.origin = input.path.string();
    source.file_offset = &offset;
    std::vector<DeadLetter> letters;
    letters.reserve(rejected.size());
    for (RejectedLine& line : rejected) {
      DeadLetter letter;
      letter.reason = fmt::format("input=file path={} offset={}: {}", line.path, line.offset,
                                  line.error);
      letter.payload = std::move(line.line);
      letters.push_back(std::move(letter));
    }
    ingest.ingestDecoded(records, std::move(letters), source);
  };
  for (FileInputOptions& options : parseFileInputs(config.file_inputs)) {
    impl_->inputs.push_back(
        std::make_unique<FileInput>(std::move(options), store, handler, metrics));
  }
}

FileInputSet::~FileInputSet() { stop(); }

void FileInputSet::start() {
  for (auto& input : impl_->inputs) {
    input->start();
  }
}

void FileInputSet::stop() {
  for (auto& input : impl_->inputs) {
    input->stop();
  }
}

std::size_t FileInputSet::size() const { return impl_->inputs.size(); }

std::vector<FileInput::Status> FileInputSet::status() const {
  std::vector<FileInput::Status> states;
  states.reserve(impl_->inputs.size());
  for (const auto& input : impl_->inputs) {
    states.push_back(input->status());
  }
  return states;
}

}  // namespace webtrap::collector
