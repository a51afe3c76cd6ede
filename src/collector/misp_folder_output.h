// The shared part of the outputs that keep a MispModel and write one file
// per MISP event into a folder: the static MISP feed (misp_feed_output.h)
// and the STIX 2.1 bundles (stix_output.h).
//
// Each such output reads the store with its own cursor and keeps its own
// model state database. A batch is applied to the model in one transaction,
// which marks the events it changed dirty. Then every dirty event's file is
// rendered and written, the folder-level files (the feed's manifest, the
// bundle index) after them, and only then are the marks cleared. A crash in
// between leaves the marks, and the next start or batch writes the files
// again.
//
// Every file is written to a temporary name in the same folder, fsynced and
// renamed over the old one, so a reader sees either the old or the new file,
// never half of one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <yaml-cpp/yaml.h>

#include "collector/misp_event.h"
#include "collector/stored_event.h"

namespace webtrap::collector {

struct MispFolderOptions {
  std::filesystem::path path;        // the output folder
  std::filesystem::path state_path;  // empty: path + ".state.sqlite"
  MispModelOptions model;
};

// Handles one key of an output section that is neither a folder, model nor
// runner key. Returns false when `key` is unknown. `path` is the key path
// used in errors.
using ExtraKeyParser =
    std::function<bool(const std::string& key, const YAML::Node& value, const std::string& path)>;

// Parses the keys that every folder output takes: path (required),
// state_path, the model keys (kMispModelKeys) and the runner keys, plus the
// output's own keys through `extra` (whose names `extra_names` lists for the
// error message, such as "sightings, "). `section` is the key path, such as
// "outputs.misp_feed", and `example_path` a sample folder for messages.
// Throws ConfigError.
MispFolderOptions parseMispFolderOptions(const YAML::Node& node, std::string_view section,
                                         std::string_view example_path,
                                         const ExtraKeyParser& extra = {},
                                         std::string_view extra_names = {});

// Returns true when `name` is "<uuid>.json" with a lowercase uuid, the name
// of one event's file in a MISP feed or STIX folder.
bool isEventFileName(std::string_view name);

// Writes `content` to `folder`/.`name`.tmp, fsyncs it and renames it to
// `folder`/`name`. Throws TransientError whose message starts with `label`.
void writeFileAtomically(const std::filesystem::path& folder, const std::string& name,
                         std::string_view content, std::string_view label);

class MispFolderOutput : public Output {
 public:
  ~MispFolderOutput() override;
  MispFolderOutput(const MispFolderOutput&) = delete;
  MispFolderOutput& operator=(const MispFolderOutput&) = delete;

  // Applies the batch to the model and rewrites the files of the events it
  // changed. A document that is not JSON is kRejected; every other event is
  // kDelivered (one without an IP source address adds nothing). Throws
  // TransientError when the database or a file write fails.
  std::vector<ItemResult> send(std::span<const StoredEvent> batch) override;

  // Writes the files of dirty events and then the folder-level files.
  // Throws TransientError on failure.
  void writeFiles();

  MispModel& model() { return *model_; }
  const std::filesystem::path& folder() const { return options_.path; }

 protected:
  // Creates the folder and opens the model's state database. `section` and
  // `label` ("MISP feed") name the output in errors and logs. Throws
  // ConfigError when the folder or the database cannot be opened.
  MispFolderOutput(MispFolderOptions options, std::string section, std::string label);

  // Writes what earlier runs left dirty, and the folder-level files when
  // `index_name` is missing from the folder, so a new folder is complete
  // before the first batch. A write failure is logged and left to the first
  // batch. Call at the end of the derived constructor, because it calls the
  // virtual functions below.
  void writeAtStart(const std::string& index_name);

  // Returns the file content of event `uuid` and its model timestamp, or
  // std::nullopt when the model does not contain the event.
  virtual std::optional<std::string> renderEventFile(const std::string& uuid,
                                                     std::int64_t* timestamp) = 0;
  // Writes the folder-level files, after the event files of a round.
  virtual void writeFolderFiles() = 0;

  // Writes one file into the folder atomically. Throws TransientError.
  void writeFile(const std::string& name, std::string_view content);

  const MispFolderOptions& options() const { return options_; }
  const std::string& section() const { return section_; }
  const std::string& label() const { return label_; }

 private:
  MispFolderOptions options_;
  std::string section_;
  std::string label_;
  std::unique_ptr<MispModel> model_;
};

}  // namespace webtrap::collector
