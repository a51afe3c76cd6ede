#include "collector/misp_feed_output.h"

#include <spdlog/spdlog.h>

namespace webtrap::collector {

bool isMispFeedFileName(std::string_view name) {
  return name == "manifest.json" || name == "hashes.csv" || isEventFileName(name);
}

MispFeedOptions parseMispFeedOptions(const YAML::Node& node) {
  constexpr const char* kSection = "outputs.misp_feed";
  std::optional<YAML::Node> serve;
  auto extra = [&serve](const std::string& key, const YAML::Node& value, const std::string&) {
    if (key != "serve") {
      return false;
    }
    serve = value;
    return true;
  };
  MispFeedOptions options;
  static_cast<MispFolderOptions&>(options) =
      parseMispFolderOptions(node, kSection, "var/collector/misp-feed", extra, "serve, ");
  if (serve) {
    PublishedFolder folder = parsePublishedFolder(*serve, std::string(kSection) + ".serve");
    folder.name = "misp_feed";
    folder.folder = options.path;
    folder.is_published_name = isMispFeedFileName;
    options.serve = std::move(folder);
  }
  return options;
}

MispFeedOutput::MispFeedOutput(MispFeedOptions options)
    : MispFolderOutput(std::move(options), "outputs.misp_feed", "MISP feed") {
  writeAtStart("manifest.json");
  spdlog::info("MISP feed output: writing to {} (state in {}, {} events)", folder().string(),
               this->options().state_path.string(), model().events().size());
}

std::optional<std::string> MispFeedOutput::renderEventFile(const std::string& uuid,
                                                           std::int64_t* timestamp) {
  return model().renderEvent(uuid, timestamp);
}

void MispFeedOutput::writeFolderFiles() {
  // The manifest goes last, so a MISP that reads it finds each event file
  // it lists at least as new as the listed timestamp.
  writeFile("hashes.csv", model().renderHashes());
  writeFile("manifest.json", model().renderManifest());
}

}  // namespace webtrap::collector
