// A folder of STIX 2.1 bundles, one per MISP event of the event model, for
// consumers that take STIX rather than MISP (threat intelligence platforms,
// SIEMs, a TAXII server's import).
//
// The folder contains <event uuid>.json, a bundle with the id
// bundle--<event uuid> (stix_bundle.h says what it contains), and
// index.json, which lists every bundle with its file, event and the time of
// its latest object version:
//   {"bundles": [{"id": "bundle--...", "event_uuid": "...", "file": "....json",
//                 "info": "...", "date": "2026-12-04",
//                 "modified": "2026-12-04T10:00:00.123Z", "objects": 42}]}
// Files are written atomically, and a changed event's bundle is rewritten
// whole (misp_folder_output.h).
//
// Versions. STIX objects are versioned by their created and modified
// times, and a consumer keeps the copy with the latest modified. The state
// database records, for each SDO and SRO id, its created time, its modified
// time and a hash of its other properties. An object whose properties
// changed since the last bundle gets modified = now (and above the previous
// value); an unchanged one keeps its times, so rewriting a bundle never
// makes a new version of what did not change. Ids depend on the MISP
// content only, so a rerun from an empty state gives the same ids (with new
// times).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <yaml-cpp/yaml.h>

#include "collector/misp_folder_output.h"
#include "collector/published_folder.h"
#include "collector/stix_bundle.h"

namespace webtrap::collector {

struct StixOutputOptions : MispFolderOptions {
  bool sightings = true;  // a sighting SRO for each indicator
  std::optional<PublishedFolder> serve;  // set: the collector serves the folder
};

// Returns true for the names of the folder's files: index.json and
// <uuid>.json with a lowercase uuid.
bool isStixFileName(std::string_view name);

// Parses `outputs.stix`: path (required), state_path, sightings, serve (see
// parsePublishedFolder), the model keys (kMispModelKeys) and the runner
// keys. Throws ConfigError.
StixOutputOptions parseStixOutputOptions(const YAML::Node& node);

class StixOutput : public MispFolderOutput {
 public:
  // Opens the state database, creates the folder, and writes the bundles of
  // events left dirty by an earlier run. Throws ConfigError when the folder
  // or the database cannot be opened.
  explicit StixOutput(StixOutputOptions options);
  ~StixOutput() override;

  std::string_view name() const override { return "stix"; }

 protected:
  std::optional<std::string> renderEventFile(const std::string& uuid,
                                             std::int64_t* timestamp) override;
  // Writes index.json.
  void writeFolderFiles() override;

 private:
  struct State;
  std::unique_ptr<State> state_;
  StixConvertOptions convert_;
};

}  // namespace webtrap::collector
