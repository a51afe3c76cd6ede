// The MISP event model: turns the collector's stored events into MISP
// content (events, attributes, objects, tags, sightings), shared by the MISP
// outputs.
//
// Events are bounded and deterministic. Each stored event falls into one
// MISP event per sensor group (or per sensor) and UTC day, whose uuid is a
// UUIDv5 of kMispNamespace and "group|<group>|<day>" (or
// "sensor|<sensor>|<day>"), so that retries and several collectors converge
// on one event. Inside it:
//   - one ip-src attribute per source address,
//   - one http-request object per request signature (method, host, path
//     without the query, user agent, source address),
//   - one credential object per credential pair tried on a credential canary,
//   - each further hit of a known source is a sighting on its ip-src
//     attribute (source = the sensor id), not a new attribute.
// Every uuid is a UUIDv5 of the event uuid and what the item stands for.
//
// MispModel keeps this content in its own SQLite database, so that it
// survives a restart and takes no memory that grows with the data. Applying
// the same stored event twice changes nothing (at-least-once delivery): the
// sighting of a hit has the uuid of its stored event, and the hit that
// created an attribute is remembered and makes no sighting. An event whose
// content changed is marked dirty and gets a newer timestamp; an output
// renders the dirty events and then clears the mark.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "collector/stored_event.h"

namespace webtrap::collector {

// The fixed namespace of every uuid the model derives:
// uuid5(NAMESPACE_URL, "urn:webtrap:misp:v1").
inline constexpr std::string_view kMispNamespace = "2bb61a18-3693-52b2-84b7-ab98d8bfdb29";

// RFC 9562 UUIDv5 (SHA-1) of `name` in `name_space` (a uuid in text form),
// lowercase text.
std::string uuidV5(std::string_view name_space, std::string_view name);

// Returns the lowercase hex MD5 of `value`, the form hashes.csv of a MISP
// feed uses.
std::string md5Hex(std::string_view value);

enum class MispEventPer { kGroup, kSensor };
enum class MispCredentials { kClear, kSha256, kNone };

struct MispModelOptions {
  MispEventPer event_per = MispEventPer::kGroup;
  std::string tlp = "tlp:amber";  // a tag of the tlp taxonomy
  int distribution = 0;           // 0 your organisation only ... 3 all communities
  int threat_level_id = 3;        // 1 high, 2 medium, 3 low, 4 undefined
  int analysis = 0;               // 0 initial, 1 ongoing, 2 completed
  bool to_ids = false;            // the to_ids flag of ip-src attributes
  std::string org_name = "webtrap";
  std::string org_uuid;  // empty: uuidV5(kMispNamespace, "org|" + org_name)
  MispCredentials credentials = MispCredentials::kClear;
  std::uint32_t max_objects_per_event = 5000;
  std::uint32_t max_sources_per_event = 50000;
  std::uint32_t max_sightings_per_attribute = 1000;  // in a rendered event
};

// Parses one model key of a MISP output section into `options`. Returns false
// when `key` is not a model key. `path` is the key path used in errors.
bool parseMispModelKey(MispModelOptions& options, const std::string& key, const YAML::Node& value,
                       const std::string& path);
// Fills org_uuid when empty. Call after the keys are parsed.
void finishMispModelOptions(MispModelOptions& options);
// The model keys, for error messages.
extern const char* const kMispModelKeys;

// The fields of one stored event that the model uses, read from its ECS
// document.
struct MispRecord {
  std::string event_id;
  std::int64_t timestamp_ms = 0;
  std::string sensor_id;
  std::string sensor_group;
  std::string source_ip;  // empty when the client address is not an IP address
  std::string method;
  std::string host;
  std::string path;  // url.path, cut at kMispMaxValueBytes
  std::string user_agent;
  std::vector<std::string> rule_ids;
  std::vector<std::string> oat_ids;
  std::vector<std::string> attack_ids;
  struct Credential {
    std::string username;
    std::string password;  // the SHA-256 hex of the password when `hashed`
    bool hashed = false;
  };
  std::vector<Credential> credentials;
};

// Maximum length of a path, user agent or credential value. Longer ones are
// cut at a UTF-8 character boundary.
inline constexpr std::size_t kMispMaxValueBytes = 1024;

// Reads `event`'s document. Throws std::runtime_error when it is not a JSON
// object.
MispRecord readMispRecord(const StoredEvent& event);

// Reads every event of `batch` with readMispRecord. An event that cannot be
// read is left out and marked kRejected at its index in `results` (sized to
// the batch by the caller), with its error after `label` and a colon.
std::vector<MispRecord> readMispRecords(std::span<const StoredEvent> batch,
                                        std::string_view label,
                                        std::vector<ItemResult>& results);

// The uuid and the grouping key of the MISP event that `record` belongs to.
struct MispEventKey {
  std::string uuid;
  std::string scope;  // "group" or "sensor"
  std::string name;   // the group or sensor
  std::string date;   // UTC day, YYYY-MM-DD
};
MispEventKey mispEventKey(const MispModelOptions& options, const MispRecord& record);

// Returns misp-galaxy:mitre-attack-pattern="<name> - <id>" for the ATT&CK ids
// the OAT ontology uses, or an empty string for an id missing from the name
// table.
// NOTE: the names are a table in misp_event.cpp, because the ontology has
// ids only. An id added to the ontology gets no galaxy tag until it is added
// there.
std::string attackGalaxyTag(std::string_view technique_id);

// An event as the feed lists it in manifest.json.
struct MispEventSummary {
  std::string uuid;
  std::string info;
  std::string date;
  std::int64_t timestamp = 0;
};

class MispModel {
 public:
  // Opens or creates the state database at `path` (its folder is created).
  // Throws std::runtime_error when it cannot be opened.
  MispModel(const std::filesystem::path& path, MispModelOptions options);
  ~MispModel();
  MispModel(const MispModel&) = delete;
  MispModel& operator=(const MispModel&) = delete;

  // Applies the records in one transaction, and marks the events that
  // changed dirty with a newer timestamp (at least `now_s`, and above the
  // event's previous timestamp). Returns the number of events that changed.
  // Throws std::runtime_error on a database error; nothing is applied then.
  std::size_t apply(const std::vector<MispRecord>& records, std::int64_t now_s);

  // The uuids of dirty events, in uuid order.
  std::vector<std::string> dirtyEvents();
  // Clears the dirty mark of `uuid` if its timestamp is still `timestamp`.
  void markClean(const std::string& uuid, std::int64_t timestamp);

  // {"Event": {...}} for one event, with its attributes, objects, tags and
  // sightings; std::nullopt when the model does not contain it. `timestamp`
  // receives the event timestamp.
  std::optional<std::string> renderEvent(const std::string& uuid,
                                         std::int64_t* timestamp = nullptr);
  // manifest.json of a feed: every event by uuid.
  std::string renderManifest();
  // hashes.csv of a feed: md5(value),event uuid for every attribute, object
  // attributes included.
  std::string renderHashes();
  std::vector<MispEventSummary> events();

  const MispModelOptions& options() const { return options_; }

  // ---- Push tracking, for the MISP REST output (the feed leaves it empty).
  // Each item sent to MISP is remembered by a key in its own table: the
  // event uuid for the event add, "publish|<event uuid>" for a publish call,
  // the uuid of an attribute, object or sighting, and tagKey() for a tag on
  // an attribute. Marking an object marks its member attributes too.

  // {"Event": {...}} without attributes and objects, for events/add, with
  // the event tags. std::nullopt when the model does not contain the event.
  std::optional<std::string> renderEventForAdd(const std::string& uuid,
                                               std::int64_t* timestamp = nullptr);

  struct PendingItem {
    std::string uuid;
    std::string json;    // the attribute or {"Object": {...}}
    std::string origin;  // the webtrap event id of its first hit
    // tagKey() of each tag sent inside `json` as a "Tag" list (attributes
    // outside objects only; objects/add ignores tags inside an object).
    std::vector<std::string> tag_keys;
  };
  struct PendingSighting {
    std::string uuid;
    std::string attribute_uuid;
    std::string source;
    std::int64_t date = 0;  // seconds
    bool in_flight = false;  // sent once without a known response
  };
  struct PendingTag {
    std::string attribute_uuid;
    std::string name;
  };
  // Items of `event_uuid` not marked yet, in uuid order, at most `limit`.
  // Attributes are those outside objects, without first_seen/last_seen
  // (MISP's strict event schema has no such keys), with their tags at the
  // time of the call in a "Tag" list. Sightings and tags are listed only
  // once their attribute (or its object) is marked sent.
  std::vector<PendingItem> unsentAttributes(const std::string& event_uuid, std::size_t limit);
  std::vector<PendingItem> unsentObjects(const std::string& event_uuid, std::size_t limit);
  // With `in_flight_only`, only the sightings marked kInFlight.
  std::vector<PendingSighting> unsentSightings(const std::string& event_uuid, std::size_t limit,
                                               bool in_flight_only = false);
  std::vector<PendingTag> unsentTags(const std::string& event_uuid, std::size_t limit);
  // The number of sightings with this attribute, source and date marked sent.
  std::int64_t sentSightingCount(const std::string& attribute_uuid, const std::string& source,
                                 std::int64_t date);

  enum class PushState { kInFlight = 1, kSent = 2, kRejected = 3 };
  // Marks `keys` in one transaction.
  void markPushed(const std::vector<std::string>& keys, PushState state);
  // Forgets the marks of `keys` (sent again later).
  void clearPushed(const std::vector<std::string>& keys);
  // Forgets that the event and its attributes, objects, tags and sightings
  // were sent (or are in flight), so that all of them are sent again to an
  // event that is gone from MISP. Items MISP rejected stay rejected.
  void forgetPushedEvent(const std::string& event_uuid);
  std::optional<PushState> pushState(const std::string& key);
  static std::string tagKey(const std::string& attribute_uuid, const std::string& name) {
    return "tag|" + attribute_uuid + "|" + name;
  }
  static std::string publishKey(const std::string& event_uuid) { return "publish|" + event_uuid; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  MispModelOptions options_;
};

}  // namespace webtrap::collector
