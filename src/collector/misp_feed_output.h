// A static MISP feed, written from the collector's stored events, that any
// MISP instance can pull over HTTP (Sync Actions, Feeds, "Add Feed" with the
// input source "Network" and the feed format "MISP Feed").
//
// The folder contains manifest.json (every event by uuid, with info, date,
// timestamp, Orgc and Tag), hashes.csv (md5 of each attribute value and its
// event uuid) and one <uuid>.json per event ({"Event": {...}} with its
// Attribute, Object, Tag and Sighting lists), as MispModel renders them.
// Every file is written to a temporary name in the same folder, fsynced and
// renamed over the old one, so a MISP pulling mid-write reads either the old
// or the new file, never half of one.
//
// The model's state lives in its own SQLite database (state_path, by default
// the feed folder's path with ".state.sqlite" appended, outside the folder a
// web server would publish). An event changed by a batch gets a newer
// timestamp and is marked dirty in the same transaction; its file, the
// manifest and hashes.csv are then rewritten and the mark cleared. A crash
// between the two leaves the mark, and the next start or batch writes the
// files. Events of past days stay as they are.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <yaml-cpp/yaml.h>

#include "collector/misp_event.h"
#include "collector/published_folder.h"
#include "collector/stored_event.h"

namespace webtrap::collector {

struct MispFeedOptions {
  std::filesystem::path path;        // the feed folder
  std::filesystem::path state_path;  // empty: path + ".state.sqlite"
  MispModelOptions model;
  std::optional<PublishedFolder> serve;  // set: the collector serves the folder
};

// Returns true for the names of the feed's files: manifest.json, hashes.csv
// and <uuid>.json with a lowercase uuid. The temporary files of the writer
// start with a dot and never match.
bool isMispFeedFileName(std::string_view name);

// Parses `outputs.misp_feed`: path (required), state_path, serve (see
// parsePublishedFolder), the model keys (kMispModelKeys) and the runner
// keys. Throws ConfigError.
MispFeedOptions parseMispFeedOptions(const YAML::Node& node);

class MispFeedOutput : public Output {
 public:
  // Opens the state database, creates the folder, and writes the files of
  // events left dirty by an earlier run. Throws ConfigError when the folder
  // or the database cannot be opened.
  explicit MispFeedOutput(MispFeedOptions options);
  ~MispFeedOutput() override;

  MispFeedOutput(const MispFeedOutput&) = delete;
  MispFeedOutput& operator=(const MispFeedOutput&) = delete;

  std::string_view name() const override { return "misp_feed"; }

  // Applies the batch to the model and rewrites the files of the events it
  // changed. A document that is not JSON is kRejected; every other event is
  // kDelivered (one without an IP source address adds nothing). Throws
  // TransientError when the database or a file write fails.
  std::vector<ItemResult> send(std::span<const StoredEvent> batch) override;

  // Writes the files of dirty events. Throws TransientError on failure.
  void writeFiles();

  MispModel& model() { return *model_; }

 private:
  MispFeedOptions options_;
  std::unique_ptr<MispModel> model_;
};

}  // namespace webtrap::collector
