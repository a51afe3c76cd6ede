#include "collector/stix_output.h"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/config_values.h"
#include "common/error.h"
#include "collector/sqlite_statement.h"
#include "common/json_writer.h"

namespace webtrap::collector {
namespace {

constexpr const char* kSection = "outputs.stix";

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS stix_versions(
  id TEXT PRIMARY KEY, created INTEGER NOT NULL, modified INTEGER NOT NULL, hash TEXT NOT NULL)
  WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stix_bundles(
  event_uuid TEXT PRIMARY KEY, info TEXT NOT NULL, date TEXT NOT NULL,
  modified INTEGER NOT NULL, objects INTEGER NOT NULL);
)sql";

std::int64_t nowMilliseconds() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class Query : public SqliteStatement {
 public:
  Query(sqlite3* db, const char* sql) : SqliteStatement(db, sql, "STIX state") {}
};

// Appends one object: type, spec_version and id first, then the version
// times, then its other properties.
void appendObject(std::string& out, const StixObject& object, std::int64_t created_ms,
                  std::int64_t modified_ms) {
  JsonWriter w(out);
  w.beginObject();
  w.member("type", object.type);
  w.member("spec_version", "2.1");
  w.member("id", object.id);
  if (object.versioned) {
    const std::string created = stixTimestamp(created_ms);
    w.member("created", created);
    w.member("modified", stixTimestamp(modified_ms));
    if (object.published_at_created) {
      w.member("published", created);
    }
  }
  if (!object.properties.empty()) {
    out += ',';
    out += object.properties;
  }
  w.endObject();
}

}  // namespace

// The output's own tables, in the model's state database through a second
// connection, so that one file contains all the state of the output.
struct StixOutput::State {
  sqlite3* db = nullptr;

  explicit State(const std::filesystem::path& path) {
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                        nullptr) != SQLITE_OK) {
      std::string error = db ? sqlite3_errmsg(db) : "out of memory";
      sqlite3_close(db);
      throw std::runtime_error(
          fmt::format("STIX state: opening {} failed: {}", path.string(), error));
    }
    sqlite3_busy_timeout(db, 5000);
    exec("PRAGMA synchronous=FULL");
    exec(kSchema);
  }
  ~State() { sqlite3_close(db); }
  State(const State&) = delete;
  State& operator=(const State&) = delete;

  void exec(const char* sql) {
    char* error = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &error) != SQLITE_OK) {
      std::string text = error ? error : "unknown error";
      sqlite3_free(error);
      throw std::runtime_error(fmt::format("STIX state: {}", text));
    }
  }

  // NOTE: this reads the model's sightings table directly. The model has
  // no call that counts the sightings of one attribute, and its rendered
  // event lists at most max_sightings_per_attribute of them.
  std::int64_t sightingCount(const std::string& attribute_uuid) {
    Query count(db, "SELECT count(*) FROM sightings WHERE attribute_uuid=?");
    count.bind(1, attribute_uuid);
    return count.step() ? count.integer(0) : 0;
  }
};

bool isStixFileName(std::string_view name) {
  return name == "index.json" || isEventFileName(name);
}

StixOutputOptions parseStixOutputOptions(const YAML::Node& node) {
  StixOutputOptions options;
  std::optional<YAML::Node> serve;
  auto extra = [&options, &serve](const std::string& key, const YAML::Node& value,
                                  const std::string& path) {
    if (key == "serve") {
      serve = value;
      return true;
    }
    if (key != "sightings") {
      return false;
    }
    options.sightings =
        config_values::parseBool(config_values::scalarText(value, path), path);
    return true;
  };
  static_cast<MispFolderOptions&>(options) = parseMispFolderOptions(
      node, kSection, "var/collector/stix", extra, "sightings, serve, ");
  if (serve) {
    PublishedFolder folder = parsePublishedFolder(*serve, std::string(kSection) + ".serve");
    folder.name = "stix";
    folder.folder = options.path;
    folder.is_published_name = isStixFileName;
    options.serve = std::move(folder);
  }
  return options;
}

namespace {

MispFolderOptions modelOptionsForStix(MispFolderOptions options) {
  // Sightings are counted from the state database, so the rendered MISP
  // events need no sighting lists.
  options.model.max_sightings_per_attribute = 0;
  return options;
}

}  // namespace

StixOutput::StixOutput(StixOutputOptions options)
    : MispFolderOutput(modelOptionsForStix(options), kSection, "STIX output") {
  try {
    state_ = std::make_unique<State>(this->options().state_path);
  } catch (const std::exception& e) {
    throw ConfigError(fmt::format("{}.state_path: {}", kSection, e.what()));
  }
  convert_.tlp = this->options().model.tlp;
  convert_.org_name = this->options().model.org_name;
  convert_.org_uuid = this->options().model.org_uuid;
  convert_.sightings = options.sightings;
  writeAtStart("index.json");
  spdlog::info("STIX output: writing bundles to {} (state in {}, {} events)", folder().string(),
               this->options().state_path.string(), model().events().size());
}

StixOutput::~StixOutput() = default;

std::optional<std::string> StixOutput::renderEventFile(const std::string& uuid,
                                                       std::int64_t* timestamp) {
  std::optional<std::string> misp = model().renderEvent(uuid, timestamp);
  if (!misp) {
    return std::nullopt;
  }
  StixEvent event = convertMispEvent(*misp, convert_, [this](const std::string& attribute) {
    return state_->sightingCount(attribute);
  });

  const std::int64_t now = nowMilliseconds();
  std::int64_t bundle_modified = 0;
  std::string objects;
  objects.reserve(event.objects.size() * 512);
  state_->exec("BEGIN IMMEDIATE");
  try {
    Query read(state_->db, "SELECT created, modified, hash FROM stix_versions WHERE id=?");
    Query write(state_->db,
                "INSERT OR REPLACE INTO stix_versions(id, created, modified, hash) "
                "VALUES(?,?,?,?)");
    bool first = true;
    for (const auto& object : event.objects) {
      std::int64_t created = 0;
      std::int64_t modified = 0;
      if (object.versioned) {
        const std::string hash = md5Hex(object.type + "\n" + object.properties);
        read.bind(1, object.id);
        bool known = read.step();
        if (known && read.text(2) == hash) {
          created = read.integer(0);
          modified = read.integer(1);
        } else {
          created = known ? read.integer(0) : now;
          modified = known ? std::max(now, read.integer(1) + 1) : now;
          write.bind(1, object.id).bind(2, created).bind(3, modified).bind(4, hash);
          write.step();
          write.reset();
        }
        read.reset();
        bundle_modified = std::max(bundle_modified, modified);
      }
      objects += first ? "\n" : ",\n";
      first = false;
      appendObject(objects, object, created, modified);
    }
    Query bundle(state_->db,
                 "INSERT OR REPLACE INTO stix_bundles(event_uuid, info, date, modified, objects) "
                 "VALUES(?,?,?,?,?)");
    bundle.bind(1, uuid).bind(2, event.info).bind(3, event.date).bind(4, bundle_modified);
    bundle.bind(5, static_cast<std::int64_t>(event.objects.size())).step();
    state_->exec("COMMIT");
  } catch (...) {
    sqlite3_exec(state_->db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }

  // The uuid is plain hex and dashes, so the header needs no escaping.
  std::string out = fmt::format(R"({{"type":"bundle","id":"{}","objects":[)", stixBundleId(uuid));
  out += objects;
  out += "\n]}\n";
  return out;
}

void StixOutput::writeFolderFiles() {
  Query read(state_->db,
             "SELECT event_uuid, info, date, modified, objects FROM stix_bundles "
             "ORDER BY event_uuid");
  std::string out;
  JsonWriter w(out);
  w.beginObject();
  w.key("bundles");
  w.beginArray();
  while (read.step()) {
    const std::string uuid = read.text(0);
    w.beginObject();
    w.member("id", stixBundleId(uuid));
    w.member("event_uuid", uuid);
    w.member("file", uuid + ".json");
    w.member("info", read.text(1));
    w.member("date", read.text(2));
    w.member("modified", stixTimestamp(read.integer(3)));
    w.member("objects", read.integer(4));
    w.endObject();
  }
  w.endArray();
  w.endObject();
  out += '\n';
  writeFile("index.json", out);
}

}  // namespace webtrap::collector
