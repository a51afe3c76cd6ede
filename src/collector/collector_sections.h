// The configuration sections that other components own (inputs.files,
// enrich, outputs.elasticsearch, outputs.ndjson, outputs.misp_feed,
// outputs.stix) and the running parts built from them. The core
// configuration keeps these sections as YAML nodes; the functions here hand
// each one to its owner's parse function.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "collector/behaviour.h"
#include "collector/collector_config.h"
#include "collector/enrich.h"
#include "collector/file_input.h"
#include "collector/ingest.h"
#include "collector/published_folder.h"
#include "collector/store.h"
#include "common/metrics.h"

namespace webtrap::collector {

// Parses every delegated section once, so a bad key fails at start. Throws
// ConfigError from the owner's parser.
void validateSections(const CollectorConfig& config);

// The enrich section as options (empty paths when the section is absent).
EnrichOptions enrichOptions(const CollectorConfig& config);

// The behaviour section as options (the defaults when the section is absent).
BehaviourOptions behaviourOptions(const CollectorConfig& config);

// The output folders to serve on the ingest listener (each output's
// `serve` map). Throws ConfigError when two prefixes overlap.
std::vector<PublishedFolder> publishedFolders(const CollectorConfig& config);

// Installs the index template and ILM policy of outputs.elasticsearch.
// Throws ConfigError when that output is not configured.
void setupElasticsearchFromConfig(const CollectorConfig& config);

// The configured outputs, each read from the store by its own runner.
class OutputSet {
 public:
  OutputSet(const CollectorConfig& config, Store& store, MetricsRegistry& metrics);
  ~OutputSet();
  OutputSet(const OutputSet&) = delete;
  OutputSet& operator=(const OutputSet&) = delete;

  void start();
  // Wakes the runners after a commit; cheap and safe from any thread.
  void notify();
  // Stops the runners after their current batch and flushes the outputs.
  void stop();
  std::vector<std::string> names() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The configured file inputs (inputs.files), each feeding `ingest`.
class FileInputSet {
 public:
  FileInputSet(const CollectorConfig& config, Store& store, Ingest& ingest,
               MetricsRegistry& metrics);
  ~FileInputSet();
  FileInputSet(const FileInputSet&) = delete;
  FileInputSet& operator=(const FileInputSet&) = delete;

  void start();
  void stop();
  std::size_t size() const;
  // Returns each input's state, in configuration order.
  std::vector<FileInput::Status> status() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace webtrap::collector
