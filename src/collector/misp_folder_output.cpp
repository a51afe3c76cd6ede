#include "collector/misp_folder_output.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/config_table.h"
#include "common/config_values.h"
#include "common/error.h"
#include "common/file_io.h"

namespace webtrap::collector {

bool isEventFileName(std::string_view name) {
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
namespace {

std::string errnoText(int error) {
  return std::system_category().message(error);
}

std::int64_t nowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void writeFileAtomically(const std::filesystem::path& folder, const std::string& name,
                         std::string_view content, std::string_view label) {
  const std::filesystem::path target = folder / name;
  const std::filesystem::path temporary = folder / ("." + name + ".tmp");
  int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    int error = errno;
    throw TransientError(
        fmt::format("{}: creating {} failed: {}", label, temporary.string(), errnoText(error)));
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
        fmt::format("{}: writing {} failed: {}", label, target.string(), errnoText(error)));
  }
}

MispFolderOptions parseMispFolderOptions(const YAML::Node& node, std::string_view section,
                                         std::string_view example_path,
                                         const ExtraKeyParser& extra,
                                         std::string_view extra_names) {
  using namespace config_values;
  const std::string name = std::string(section.substr(section.rfind('.') + 1));
  if (!node || !node.IsMap()) {
    throw ConfigError(fmt::format("{}: expected a map such as `{}: {{path: {}}}`", section, name,
                                  example_path));
  }
  MispFolderOptions options;
  bool has_path = false;
  for (const auto& entry : node) {
    const std::string key = config_table::keyText(entry.first, std::string(section));
    const std::string path = std::string(section) + "." + key;
    if (key == "path") {
      std::string text = scalarText(entry.second, path);
      if (text.empty()) {
        throw ConfigError(fmt::format("{}: is empty; give the folder to write to", path));
      }
      options.path = text;
      has_path = true;
    } else if (key == "state_path") {
      std::string text = scalarText(entry.second, path);
      if (text.empty()) {
        throw ConfigError(
            fmt::format("{}: is empty; give the SQLite file for the output's state, "
                        "or leave the key out",
                        path));
      }
      options.state_path = text;
    } else if (parseMispModelKey(options.model, key, entry.second, path)) {
      // A model key.
    } else if (key == "batch_max_events" || key == "batch_max_bytes" || key == "flush_interval" ||
               key == "retry_initial" || key == "retry_max") {
      // Runner keys, checked by parseRunnerOptions().
    } else if (extra && extra(key, entry.second, path)) {
      // A key of the output itself.
    } else {
      throw ConfigError(
          fmt::format("{}: unknown key; valid keys are path, state_path, {}{}, batch_max_events, "
                      "batch_max_bytes, flush_interval, retry_initial and retry_max",
                      path, extra_names, kMispModelKeys));
    }
  }
  if (!has_path) {
    throw ConfigError(fmt::format(
        "{}.path: missing; give the folder to write to, such as `path: {}`", section,
        example_path));
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
  return options;
}

MispFolderOutput::MispFolderOutput(MispFolderOptions options, std::string section,
                                   std::string label)
    : options_(std::move(options)), section_(std::move(section)), label_(std::move(label)) {
  std::error_code ec;
  std::filesystem::create_directories(options_.path, ec);
  if (ec) {
    throw ConfigError(fmt::format("{}.path: creating the folder {} failed: {}", section_,
                                  options_.path.string(), ec.message()));
  }
  try {
    model_ = std::make_unique<MispModel>(options_.state_path, options_.model);
  } catch (const std::exception& e) {
    throw ConfigError(fmt::format("{}.state_path: {}", section_, e.what()));
  }
}

MispFolderOutput::~MispFolderOutput() = default;

void MispFolderOutput::writeAtStart(const std::string& index_name) {
  try {
    writeFiles();
    if (!std::filesystem::exists(options_.path / index_name)) {
      writeFolderFiles();
      syncFolder(options_.path);
    }
  } catch (const TransientError& e) {
    // The first batch tries again.
    spdlog::warn("{}", e.what());
  } catch (const std::exception& e) {
    spdlog::warn("{}: {}", label_, e.what());
  }
}

void MispFolderOutput::writeFile(const std::string& name, std::string_view content) {
  writeFileAtomically(options_.path, name, content, label_);
}

void MispFolderOutput::writeFiles() {
  std::vector<std::string> dirty;
  try {
    dirty = model_->dirtyEvents();
  } catch (const std::exception& e) {
    throw TransientError(fmt::format("{}: {}", label_, e.what()));
  }
  if (dirty.empty()) {
    return;
  }
  std::vector<std::pair<std::string, std::int64_t>> written;
  try {
    for (const auto& uuid : dirty) {
      std::int64_t timestamp = 0;
      std::optional<std::string> content = renderEventFile(uuid, &timestamp);
      if (!content) {
        continue;
      }
      writeFile(uuid + ".json", *content);
      written.emplace_back(uuid, timestamp);
    }
    // The folder-level files go last, so a reader that follows them finds
    // each event file at least as new as they say.
    writeFolderFiles();
    syncFolder(options_.path);
    for (const auto& [uuid, timestamp] : written) {
      model_->markClean(uuid, timestamp);
    }
  } catch (const TransientError&) {
    throw;
  } catch (const std::exception& e) {
    throw TransientError(fmt::format("{}: {}", label_, e.what()));
  }
}

std::vector<ItemResult> MispFolderOutput::send(std::span<const StoredEvent> batch) {
  std::vector<ItemResult> results(batch.size());
  std::vector<MispRecord> records = readMispRecords(batch, label_, results);
  try {
    model_->apply(records, nowSeconds());
  } catch (const std::exception& e) {
    throw TransientError(fmt::format("{}: {}", label_, e.what()));
  }
  writeFiles();
  return results;
}

}  // namespace webtrap::collector
