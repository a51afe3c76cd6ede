#include "collector/misp_feed_output.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/config_values.h"
#include "common/error.h"
#include "common/file_io.h"

namespace webtrap::collector {
namespace {

constexpr const char* kSection = "outputs.misp_feed";

std::string errnoText(int error) {
  return std::system_category().message(error);
}

// Writes `content` to `folder`/.`name`.tmp, fsyncs it and renames it to
// `folder`/`name`. Throws TransientError.
void writeAtomically(const std::filesystem::path& folder, const std::string& name,
                     const std::string& content) {
  const std::filesystem::path target = folder / name;
  const std::filesystem::path temporary = folder / ("." + name + ".tmp");
  int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    int error = errno;
    throw TransientError(
        fmt::format("MISP feed: creating {} failed: {}", temporary.string(), errnoText(error)));
  }
  int error = writeAll(fd, content);
  if (error == 0 && ::fsync(fd) != 0) {
    error = errno;
  }
  ::close(fd);
  if (error == 0 && ::rename(temporary.c_str(), target.c_str()) != 0) {
    error = errno;
  }
  if (error != 0) {
    ::unlink(temporary.c_str());
    throw TransientError(
        fmt::format("MISP feed: writing {} failed: {}", target.string(), errnoText(error)));
  }
}

std::int64_t nowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

bool isMispFeedFileName(std::string_view name) {
  if (name == "manifest.json" || name == "hashes.csv") {
    return true;
  }
  constexpr std::string_view kSuffix = ".json";
  if (name.size() != 36 + kSuffix.size() || !name.ends_with(kSuffix)) {
    return false;
  }
  for (std::size_t i = 0; i < 36; ++i) {
    char c = name[i];
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

MispFeedOptions parseMispFeedOptions(const YAML::Node& node) {
  using namespace config_values;
  if (!node || !node.IsMap()) {
    throw ConfigError(
        fmt::format("{}: expected a map such as `misp_feed: {{path: var/misp-feed}}`", kSection));
  }
  MispFeedOptions options;
  bool has_path = false;
  for (const auto& entry : node) {
    const std::string key = entry.first.as<std::string>();
    const std::string path = std::string(kSection) + "." + key;
    if (key == "path") {
      std::string text = scalarText(entry.second, path);
      if (text.empty()) {
        throw ConfigError(fmt::format("{}: is empty; give the folder to write the feed to", path));
      }
      options.path = text;
      has_path = true;
    } else if (key == "state_path") {
      std::string text = scalarText(entry.second, path);
      if (text.empty()) {
        throw ConfigError(
            fmt::format("{}: is empty; give the SQLite file for the feed's state, "
                        "or leave the key out",
                        path));
      }
      options.state_path = text;
    } else if (key == "serve") {
      options.serve = parsePublishedFolder(entry.second, path);
    } else if (parseMispModelKey(options.model, key, entry.second, path)) {
      // A model key.
    } else if (key == "batch_max_events" || key == "batch_max_bytes" || key == "flush_interval" ||
               key == "retry_initial" || key == "retry_max") {
      // Runner keys, checked by parseRunnerOptions().
    } else {
      throw ConfigError(
          fmt::format("{}: unknown key; valid keys are path, state_path, serve, {}, batch_max_events, "
                      "batch_max_bytes, flush_interval, retry_initial and retry_max",
                      path, kMispModelKeys));
    }
  }
  if (!has_path) {
    throw ConfigError(
        fmt::format("{}.path: missing; give the folder to write the feed to, such "
                    "as `path: var/collector/misp-feed`",
                    kSection));
  }
  std::string folder = options.path.string();
  while (folder.size() > 1 && folder.back() == '/') {
    folder.pop_back();
  }
  options.path = folder;
  if (options.state_path.empty()) {
    options.state_path = folder + ".state.sqlite";
  }
  finishMispModelOptions(options.model);
  if (options.serve) {
    options.serve->name = "misp_feed";
    options.serve->folder = options.path;
    options.serve->is_published_name = isMispFeedFileName;
  }
  return options;
}

MispFeedOutput::MispFeedOutput(MispFeedOptions options) : options_(std::move(options)) {
  std::error_code ec;
  std::filesystem::create_directories(options_.path, ec);
  if (ec) {
    throw ConfigError(fmt::format("{}.path: creating the folder {} failed: {}", kSection,
                                  options_.path.string(), ec.message()));
  }
  try {
    model_ = std::make_unique<MispModel>(options_.state_path, options_.model);
  } catch (const std::exception& e) {
    throw ConfigError(fmt::format("{}.state_path: {}", kSection, e.what()));
  }
  try {
    writeFiles();
    if (!std::filesystem::exists(options_.path / "manifest.json")) {
      writeAtomically(options_.path, "manifest.json", model_->renderManifest());
      writeAtomically(options_.path, "hashes.csv", model_->renderHashes());
      syncFolder(options_.path);
    }
  } catch (const TransientError& e) {
    // The first batch tries again.
    spdlog::warn("{}", e.what());
  }
  spdlog::info("MISP feed output: writing to {} (state in {}, {} events)", options_.path.string(),
               options_.state_path.string(), model_->events().size());
}

MispFeedOutput::~MispFeedOutput() = default;

void MispFeedOutput::writeFiles() {
  std::vector<std::string> dirty;
  try {
    dirty = model_->dirtyEvents();
  } catch (const std::exception& e) {
    throw TransientError(fmt::format("MISP feed: {}", e.what()));
  }
  if (dirty.empty()) {
    return;
  }
  std::vector<std::pair<std::string, std::int64_t>> written;
  try {
    for (const auto& uuid : dirty) {
      std::int64_t timestamp = 0;
      std::optional<std::string> json = model_->renderEvent(uuid, &timestamp);
      if (!json) {
        continue;
      }
      writeAtomically(options_.path, uuid + ".json", *json);
      written.emplace_back(uuid, timestamp);
    }
    // The manifest goes last, so a MISP that reads it finds each event file
    // it lists at least as new as the listed timestamp.
    writeAtomically(options_.path, "hashes.csv", model_->renderHashes());
    writeAtomically(options_.path, "manifest.json", model_->renderManifest());
    syncFolder(options_.path);
    for (const auto& [uuid, timestamp] : written) {
      model_->markClean(uuid, timestamp);
    }
  } catch (const TransientError&) {
    throw;
  } catch (const std::exception& e) {
    throw TransientError(fmt::format("MISP feed: {}", e.what()));
  }
}

std::vector<ItemResult> MispFeedOutput::send(std::span<const StoredEvent> batch) {
  std::vector<ItemResult> results(batch.size());
  std::vector<MispRecord> records;
  records.reserve(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    try {
      records.push_back(readMispRecord(batch[i]));
    } catch (const std::exception& e) {
      results[i] = {Delivery::kRejected, fmt::format("MISP feed: {}", e.what())};
    }
  }
  try {
    model_->apply(records, nowSeconds());
  } catch (const std::exception& e) {
    throw TransientError(fmt::format("MISP feed: {}", e.what()));
  }
  writeFiles();
  return results;
}

}  // namespace webtrap::collector
