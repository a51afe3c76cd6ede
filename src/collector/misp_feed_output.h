// A static MISP feed, written from the collector's stored events, that any
// MISP instance can pull over HTTP (Sync Actions, Feeds, "Add Feed" with the
// input source "Network" and the feed format "MISP Feed").
//
// The folder contains manifest.json (every event by uuid, with info, date,
// timestamp, Orgc and Tag), hashes.csv (md5 of each attribute value and its
// event uuid) and one <uuid>.json per event ({"Event": {...}} with its
// Attribute, Object, Tag and Sighting lists), as MispModel renders them.
// Every file is written atomically (misp_folder_output.h), so a MISP pulling
// mid-write reads either the old or the new file, never half of one.
//
// The model's state lives in its own SQLite database (state_path, by default
// the feed folder's path with ".state.sqlite" appended, outside the folder a
// web server would publish). An event changed by a batch gets a newer
// timestamp and is marked dirty in the same transaction; its file, the
// manifest and hashes.csv are then rewritten and the mark cleared. A crash
// between the two leaves the mark, and the next start or batch writes the
// files. Events of past days stay as they are.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <yaml-cpp/yaml.h>

#include "collector/misp_folder_output.h"
#include "collector/published_folder.h"

namespace webtrap::collector {

struct MispFeedOptions : MispFolderOptions {
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

class MispFeedOutput : public MispFolderOutput {
 public:
  // Opens the state database, creates the folder, and writes the files of
  // events left dirty by an earlier run. Throws ConfigError when the folder
  // or the database cannot be opened.
  explicit MispFeedOutput(MispFeedOptions options);

  std::string_view name() const override { return "misp_feed"; }

 protected:
  std::optional<std::string> renderEventFile(const std::string& uuid,
                                             std::int64_t* timestamp) override;
  // Writes hashes.csv, then manifest.json.
  void writeFolderFiles() override;
};

}  // namespace webtrap::collector
