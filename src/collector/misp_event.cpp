#include "collector/misp_event.h"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <ctime>
#include <map>
#include <set>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include "collector/sqlite_statement.h"
#include "common/config_values.h"
#include "common/encoding.h"
#include "common/ids.h"
#include "common/error.h"
#include "common/json_writer.h"

namespace webtrap::collector {
namespace {

// ---------------------------------------------------------------- hashing

std::string hexOf(const unsigned char* bytes, std::size_t size) {
  return hexEncode(std::string_view(reinterpret_cast<const char*>(bytes), size));
}

std::size_t digest(const EVP_MD* md, std::string_view a, std::string_view b, unsigned char* out) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned int size = 0;
  bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx, md, nullptr) == 1 &&
            EVP_DigestUpdate(ctx, a.data(), a.size()) == 1 &&
            EVP_DigestUpdate(ctx, b.data(), b.size()) == 1 &&
            EVP_DigestFinal_ex(ctx, out, &size) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) {
    throw std::runtime_error("MISP model: OpenSSL digest failed");
  }
  return size;
}

// ---------------------------------------------------------------- text

// Cuts `text` to at most `limit` bytes at a UTF-8 character boundary.
std::string cutUtf8(std::string_view text, std::size_t limit) {
  return std::string(utf8Prefix(text, limit));
}

std::string utcDay(std::int64_t timestamp_ms) {
  std::time_t seconds = static_cast<std::time_t>(timestamp_ms / 1000);
  if (timestamp_ms < 0 && timestamp_ms % 1000 != 0) {
    --seconds;
  }
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  return fmt::format("{:04}-{:02}-{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

// MISP's first_seen/last_seen form: ISO 8601 with microseconds and an offset.
std::string seenText(std::int64_t timestamp_ms) {
  std::time_t seconds = static_cast<std::time_t>(timestamp_ms / 1000);
  std::int64_t millis = timestamp_ms % 1000;
  if (millis < 0) {
    millis += 1000;
    --seconds;
  }
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}000+00:00", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
}

// Returns `address` in the text form inet_ntop(3) gives, which MISP stores
// too, so that "2001:DB8::1" and "2001:db8::1" are one attribute. Returns
// `address` unchanged when it is not an IP address.
std::string canonicalIp(std::string_view address) {
  std::string text(address);
  unsigned char buffer[16];
  char out[INET6_ADDRSTRLEN];
  if (inet_pton(AF_INET, text.c_str(), buffer) == 1) {
    return inet_ntop(AF_INET, buffer, out, sizeof(out)) ? std::string(out) : text;
  }
  if (inet_pton(AF_INET6, text.c_str(), buffer) == 1) {
    return inet_ntop(AF_INET6, buffer, out, sizeof(out)) ? std::string(out) : text;
  }
  return text;
}

// Returns the IPv4 or IPv6 literal in `host` without brackets, or an empty
// string when `host` is a host name.
std::string ipLiteral(std::string_view host) {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::string text(host);
  unsigned char buffer[16];
  if (inet_pton(AF_INET, text.c_str(), buffer) == 1 ||
      inet_pton(AF_INET6, text.c_str(), buffer) == 1) {
    return canonicalIp(text);
  }
  return {};
}

// Returns true when MISP accepts `host` as a hostname attribute: labels of
// letters, digits, '_' and '-' (no '-' at either end, at most 63 bytes), at
// least one dot, at most 253 bytes, and an optional final dot.
bool validHostname(std::string_view host) {
  if (host.ends_with('.')) {
    host.remove_suffix(1);
  }
  if (host.empty() || host.size() > 253 || host.find('.') == std::string_view::npos) {
    return false;
  }
  std::size_t start = 0;
  while (start <= host.size()) {
    std::size_t end = host.find('.', start);
    if (end == std::string_view::npos) {
      end = host.size();
    }
    std::string_view label = host.substr(start, end - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
        return false;
      }
    }
    start = end + 1;
  }
  return true;
}

std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// ---------------------------------------------------------------- ATT&CK

// Names of the MITRE ATT&CK techniques that data/oat/ontology.yaml uses, in
// the form of MISP's mitre-attack-pattern galaxy ("<name> - <id>"; a
// sub-technique carries its own name only).
constexpr std::array<std::pair<std::string_view, std::string_view>, 16> kAttackNames = {{
    {"T1059", "Command and Scripting Interpreter"},
    {"T1078", "Valid Accounts"},
    {"T1110.001", "Password Guessing"},
    {"T1110.003", "Password Spraying"},
    {"T1110.004", "Credential Stuffing"},
    {"T1190", "Exploit Public-Facing Application"},
    {"T1499.003", "Application Exhaustion Flood"},
    {"T1552.001", "Credentials In Files"},
    {"T1585", "Establish Accounts"},
    {"T1592.002", "Software"},
    {"T1594", "Search Victim-Owned Websites"},
    {"T1595", "Active Scanning"},
    {"T1595.001", "Scanning IP Blocks"},
    {"T1595.002", "Vulnerability Scanning"},
    {"T1595.003", "Wordlist Scanning"},
    {"T1657", "Financial Theft"},
}};

// ---------------------------------------------------------------- templates

struct Template {
  std::string_view name;
  std::string_view uuid;
  std::string_view version;
  std::string_view meta_category;
  std::string_view description;
};

// From ../shared/misp/objects/*/definition.json.
constexpr Template kHttpRequest{"http-request", "b4a8d163-8110-4239-bfcf-e08f3a9fdf7b", "4",
                                "network", "A single HTTP request header"};
constexpr Template kCredential{
    "credential", "a27e98c9-9b0e-414c-8076-d201e039ca09", "5", "misc",
    "Credential describes one or more credential(s) including password(s), api key(s) or "
    "decryption key(s)."};

const Template& templateNamed(std::string_view name) {
  return name == kCredential.name ? kCredential : kHttpRequest;
}

// ---------------------------------------------------------------- SQLite

class Statement : public SqliteStatement {
 public:
  Statement(sqlite3* db, const char* sql) : SqliteStatement(db, sql, "MISP state") {}
};

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS events(
  uuid TEXT PRIMARY KEY, scope TEXT NOT NULL, name TEXT NOT NULL, date TEXT NOT NULL,
  info TEXT NOT NULL, timestamp INTEGER NOT NULL, dirty INTEGER NOT NULL,
  sources INTEGER NOT NULL DEFAULT 0, objects INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS events_dirty ON events(dirty, uuid);
CREATE TABLE IF NOT EXISTS objects(
  uuid TEXT PRIMARY KEY, event_uuid TEXT NOT NULL, name TEXT NOT NULL, comment TEXT NOT NULL,
  first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, timestamp INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS objects_event ON objects(event_uuid, uuid);
CREATE TABLE IF NOT EXISTS attributes(
  uuid TEXT PRIMARY KEY, event_uuid TEXT NOT NULL, object_uuid TEXT, relation TEXT,
  type TEXT NOT NULL, category TEXT NOT NULL, value TEXT NOT NULL, to_ids INTEGER NOT NULL,
  disable_correlation INTEGER NOT NULL, comment TEXT NOT NULL,
  first_seen INTEGER, last_seen INTEGER, timestamp INTEGER NOT NULL, origin TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS attributes_event ON attributes(event_uuid, object_uuid, uuid);
-- An object's attributes, for objects/add and for marking them pushed.
CREATE INDEX IF NOT EXISTS attributes_object ON attributes(object_uuid, relation);
CREATE TABLE IF NOT EXISTS tags(
  attribute_uuid TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY(attribute_uuid, name))
  WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rules(
  object_uuid TEXT NOT NULL, rule_id TEXT NOT NULL, PRIMARY KEY(object_uuid, rule_id))
  WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sightings(
  uuid TEXT PRIMARY KEY, attribute_uuid TEXT NOT NULL, event_uuid TEXT NOT NULL,
  source TEXT NOT NULL, date INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS sightings_attribute ON sightings(attribute_uuid, date);
CREATE TABLE IF NOT EXISTS pushed(key TEXT PRIMARY KEY, state INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS event_hashes(
  event_uuid TEXT PRIMARY KEY, timestamp INTEGER NOT NULL, lines TEXT NOT NULL);
)sql";

// Maximum number of rule ids listed in one http-request object's text attribute.
constexpr std::int64_t kMaxRulesPerObject = 64;

// ---------------------------------------------------------------- JSON reading

std::string_view stringAt(simdjson::dom::element element, std::string_view pointer) {
  std::string_view value;
  if (element.at_pointer(pointer).get_string().get(value) != simdjson::SUCCESS) {
    return {};
  }
  return value;
}

// A string, or each string of an array, at `pointer`.
void stringsAt(simdjson::dom::element element, std::string_view pointer,
               std::vector<std::string>& out) {
  simdjson::dom::element found;
  if (element.at_pointer(pointer).get(found) != simdjson::SUCCESS) {
    return;
  }
  if (found.is_string()) {
    out.emplace_back(found.get_string().value_unsafe());
    return;
  }
  simdjson::dom::array array;
  if (found.get_array().get(array) != simdjson::SUCCESS) {
    return;
  }
  for (simdjson::dom::element item : array) {
    std::string_view text;
    if (item.get_string().get(text) == simdjson::SUCCESS) {
      out.emplace_back(text);
    }
  }
}

void addUnique(std::vector<std::string>& list, std::string value) {
  if (!value.empty() && std::find(list.begin(), list.end(), value) == list.end()) {
    list.push_back(std::move(value));
  }
}

// Adds the credential of a login form (`webtrap.form` of a probe record or
// of its ECS document), which carries only the password's SHA-256.
void addFormCredential(simdjson::dom::element form, MispRecord& record) {
  if (stringAt(form, "/kind") != "login") {
    return;
  }
  MispRecord::Credential credential;
  credential.username = cutUtf8(stringAt(form, "/username"), kMispMaxValueBytes);
  credential.password = std::string(stringAt(form, "/password_sha256"));
  credential.hashed = true;
  if (!credential.username.empty() || !credential.password.empty()) {
    record.credentials.push_back(std::move(credential));
  }
}

// Reads the credentials out of a probe record (event.original): each
// credential_canary bait hit ("user=U password=P") in clear and, when
// `with_form`, a login form with its password hash.
void readCredentials(std::string_view original, bool with_form, MispRecord& record) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(original.data(), original.size()).get(root) != simdjson::SUCCESS) {
    return;
  }
  simdjson::dom::array baits;
  if (root.at_pointer("/webtrap/baits").get_array().get(baits) == simdjson::SUCCESS) {
    for (simdjson::dom::element bait : baits) {
      if (stringAt(bait, "/kind") != "credential_canary") {
        continue;
      }
      std::string_view detail = stringAt(bait, "/detail");
      constexpr std::string_view kUser = "user=";
      constexpr std::string_view kPassword = " password=";
      std::size_t split = detail.find(kPassword);
      if (!detail.starts_with(kUser) || split == std::string_view::npos) {
        continue;
      }
      MispRecord::Credential credential;
      credential.username =
          cutUtf8(detail.substr(kUser.size(), split - kUser.size()), kMispMaxValueBytes);
      credential.password = cutUtf8(detail.substr(split + kPassword.size()), kMispMaxValueBytes);
      credential.hashed = false;
      record.credentials.push_back(std::move(credential));
    }
  }
  simdjson::dom::element form;
  if (with_form && root.at_pointer("/webtrap/form").get(form) == simdjson::SUCCESS) {
    addFormCredential(form, record);
  }
}

// ---------------------------------------------------------------- JSON writing

void writeTags(JsonWriter& w, const std::vector<std::string>& tags) {
  w.key("Tag");
  w.beginArray();
  for (const auto& tag : tags) {
    w.beginObject();
    w.member("name", tag);
    w.endObject();
  }
  w.endArray();
}

}  // namespace

// ---------------------------------------------------------------- public helpers

std::string uuidV5(std::string_view name_space, std::string_view name) {
  unsigned char space[16];
  std::size_t n = 0;
  for (std::size_t i = 0; i < name_space.size() && n < 16; ++i) {
    if (name_space[i] == '-') {
      continue;
    }
    int high = hexDigitValue(name_space[i]);
    int low = i + 1 < name_space.size() ? hexDigitValue(name_space[i + 1]) : -1;
    if (high < 0 || low < 0) {
      throw std::invalid_argument("uuidV5: the namespace is not a valid uuid");
    }
    space[n++] = static_cast<unsigned char>(high * 16 + low);
    ++i;
  }
  if (n != 16) {
    throw std::invalid_argument("uuidV5: the namespace is not a valid uuid");
  }
  unsigned char hash[EVP_MAX_MD_SIZE];
  digest(EVP_sha1(), std::string_view(reinterpret_cast<const char*>(space), 16), name, hash);
  hash[6] = static_cast<unsigned char>((hash[6] & 0x0f) | 0x50);
  hash[8] = static_cast<unsigned char>((hash[8] & 0x3f) | 0x80);
  std::string hex = hexOf(hash, 16);
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20, 12);
}

std::string md5Hex(std::string_view value) {
  unsigned char out[EVP_MAX_MD_SIZE];
  std::size_t size = digest(EVP_md5(), value, {}, out);
  return hexOf(out, size);
}

const char* const kMispModelKeys =
    "event_per, tlp, distribution, threat_level_id, analysis, to_ids, org_name, org_uuid, "
    "credentials, max_objects_per_event, max_sources_per_event, max_sightings_per_attribute";

bool parseMispModelKey(MispModelOptions& options, const std::string& key, const YAML::Node& value,
                       const std::string& path) {
  using namespace config_values;
  auto number = [&](std::uint64_t low, std::uint64_t high, const char* meaning) {
    std::string text = scalarText(value, path);
    std::uint64_t n = parseUnsigned(text, path);
    if (n < low || n > high) {
      throw ConfigError(fmt::format("{}: {} is out of range; give {}", path, text, meaning));
    }
    return n;
  };
  if (key == "event_per") {
    std::string text = scalarText(value, path);
    if (text == "group") {
      options.event_per = MispEventPer::kGroup;
    } else if (text == "sensor") {
      options.event_per = MispEventPer::kSensor;
    } else {
      throw ConfigError(fmt::format(
          "{}: `{}` is not valid; give `group` (one event per sensor group and UTC day) or "
          "`sensor` (one per sensor and UTC day)",
          path, text));
    }
  } else if (key == "tlp") {
    std::string text = scalarText(value, path);
    static const std::set<std::string> kTlp = {"tlp:clear", "tlp:white",        "tlp:green",
                                               "tlp:amber", "tlp:amber+strict", "tlp:red"};
    if (!kTlp.contains(text)) {
      throw ConfigError(
          fmt::format("{}: `{}` is not a TLP tag; give one of tlp:clear, "
                      "tlp:green, tlp:amber, tlp:amber+strict or tlp:red",
                      path, text));
    }
    options.tlp = text;
  } else if (key == "distribution") {
    options.distribution = static_cast<int>(number(
        0, 3, "0 (your organisation), 1 (this community), 2 (connected) or 3 (all communities)"));
  } else if (key == "threat_level_id") {
    options.threat_level_id =
        static_cast<int>(number(1, 4, "1 (high), 2 (medium), 3 (low) or 4 (undefined)"));
  } else if (key == "analysis") {
    options.analysis = static_cast<int>(number(0, 2, "0 (initial), 1 (ongoing) or 2 (completed)"));
  } else if (key == "to_ids") {
    options.to_ids = parseBool(scalarText(value, path), path);
  } else if (key == "org_name") {
    std::string text = scalarText(value, path);
    if (text.empty()) {
      throw ConfigError(
          fmt::format("{}: is empty; give the name of the creating organisation", path));
    }
    options.org_name = text;
  } else if (key == "org_uuid") {
    std::string text = scalarText(value, path);
    if (!isUuidText(text)) {
      throw ConfigError(
          fmt::format("{}: `{}` is not a uuid; give the uuid of your organisation "
                      "in MISP (Administration, List Organisations)",
                      path, text));
    }
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    options.org_uuid = text;
  } else if (key == "credentials") {
    std::string text = scalarText(value, path);
    if (text == "clear") {
      options.credentials = MispCredentials::kClear;
    } else if (text == "sha256") {
      options.credentials = MispCredentials::kSha256;
    } else if (text == "none") {
      options.credentials = MispCredentials::kNone;
    } else {
      throw ConfigError(
          fmt::format("{}: `{}` is not valid; give clear, sha256 or none", path, text));
    }
  } else if (key == "max_objects_per_event") {
    options.max_objects_per_event =
        static_cast<std::uint32_t>(number(1, 1000000, "a count from 1 to 1000000"));
  } else if (key == "max_sources_per_event") {
    options.max_sources_per_event =
        static_cast<std::uint32_t>(number(1, 1000000, "a count from 1 to 1000000"));
  } else if (key == "max_sightings_per_attribute") {
    options.max_sightings_per_attribute =
        static_cast<std::uint32_t>(number(0, 1000000, "a count from 0 to 1000000"));
  } else {
    return false;
  }
  return true;
}

void finishMispModelOptions(MispModelOptions& options) {
  if (options.org_uuid.empty()) {
    options.org_uuid = uuidV5(kMispNamespace, "org|" + options.org_name);
  }
}

MispRecord readMispRecord(const StoredEvent& event) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(event.document.data(), event.document.size()).get(root) != simdjson::SUCCESS ||
      !root.is_object()) {
    throw std::runtime_error("the document is not a JSON object");
  }
  MispRecord record;
  record.event_id = event.event_id;
  record.timestamp_ms = event.timestamp_ms;
  record.sensor_id = event.sensor_id;
  if (record.sensor_id.empty()) {
    record.sensor_id = stringAt(root, "/webtrap/sensor/id");
  }
  if (record.sensor_id.empty()) {
    record.sensor_id = stringAt(root, "/observer/name");
  }
  record.sensor_group = stringAt(root, "/webtrap/sensor/group");
  record.source_ip = canonicalIp(stringAt(root, "/source/ip"));
  record.method = cutUtf8(stringAt(root, "/http/request/method"), 32);
  record.host = cutUtf8(stringAt(root, "/url/domain"), 255);
  std::string_view path = stringAt(root, "/url/path");
  if (path.empty()) {
    path = stringAt(root, "/url/original");
    path = path.substr(0, path.find_first_of("?#"));
  }
  record.path = cutUtf8(path, kMispMaxValueBytes);
  record.user_agent = cutUtf8(stringAt(root, "/user_agent/original"), kMispMaxValueBytes);
  stringsAt(root, "/rule/id", record.rule_ids);

  std::vector<std::string> oat;
  stringsAt(root, "/threat/technique/id", oat);
  simdjson::dom::array tags;
  if (root.at_pointer("/webtrap/oat").get_array().get(tags) == simdjson::SUCCESS) {
    for (simdjson::dom::element tag : tags) {
      oat.emplace_back(stringAt(tag, "/id"));
      std::vector<std::string> attack;
      stringsAt(tag, "/attack", attack);
      for (auto& id : attack) {
        addUnique(record.attack_ids, std::move(id));
      }
    }
  }
  for (auto& id : oat) {
    addUnique(record.oat_ids, std::move(id));
  }
  std::sort(record.oat_ids.begin(), record.oat_ids.end());
  std::sort(record.attack_ids.begin(), record.attack_ids.end());

  std::vector<std::string> bait_hits;
  stringsAt(root, "/webtrap/bait_hits", bait_hits);
  bool canary =
      std::find(bait_hits.begin(), bait_hits.end(), "credential_canary") != bait_hits.end();
  // Only probe records carry bait and form facts. The ECS document has the
  // form in webtrap.form, but documents stored by older collectors have it
  // only in the original record. Bait details are only in the original.
  simdjson::dom::element form;
  bool form_in_document = root.at_pointer("/webtrap/form").get(form) == simdjson::SUCCESS;
  if (form_in_document) {
    addFormCredential(form, record);
  }
  bool form_in_original = !form_in_document && stringAt(root, "/webtrap/format") == "webtrap" &&
                          record.method == "POST";
  if (canary || form_in_original) {
    std::string_view original = stringAt(root, "/event/original");
    if (!original.empty()) {
      readCredentials(original, form_in_original, record);
    }
  }
  return record;
}

std::vector<MispRecord> readMispRecords(std::span<const StoredEvent> batch,
                                        std::string_view label,
                                        std::vector<ItemResult>& results) {
  std::vector<MispRecord> records;
  records.reserve(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    try {
      records.push_back(readMispRecord(batch[i]));
    } catch (const std::exception& e) {
      results[i] = {Delivery::kRejected, fmt::format("{}: {}", label, e.what())};
    }
  }
  return records;
}

MispEventKey mispEventKey(const MispModelOptions& options, const MispRecord& record) {
  MispEventKey key;
  key.date = utcDay(record.timestamp_ms);
  if (options.event_per == MispEventPer::kSensor) {
    key.scope = "sensor";
    key.name = record.sensor_id.empty() ? "unknown" : record.sensor_id;
  } else {
    key.scope = "group";
    key.name = record.sensor_group.empty() ? "default" : record.sensor_group;
  }
  key.uuid = uuidV5(kMispNamespace, key.scope + "|" + key.name + "|" + key.date);
  return key;
}

std::string attackGalaxyTag(std::string_view technique_id) {
  for (const auto& [id, name] : kAttackNames) {
    if (id == technique_id) {
      return fmt::format("misp-galaxy:mitre-attack-pattern=\"{} - {}\"", name, id);
    }
  }
  return {};
}

// ---------------------------------------------------------------- the model

struct MispModel::Impl {
  sqlite3* db = nullptr;
  // Prepared statements by their SQL text, reused across records.
  std::unordered_map<std::string, std::unique_ptr<Statement>> statements;

  // The prepared statement for `sql`, reset and ready to bind.
  Statement& stmt(const std::string& sql) {
    auto found = statements.find(sql);
    if (found == statements.end()) {
      found = statements.emplace(sql, std::make_unique<Statement>(db, sql.c_str())).first;
    } else {
      found->second->reset();
    }
    return *found->second;
  }
  void resetStatements() {
    for (auto& [sql, statement] : statements) {
      statement->reset();
    }
  }
  std::int64_t now = 0;
  // Events touched in the current apply(): uuid to its new timestamp.
  std::unordered_map<std::string, std::int64_t> touched;
  std::set<std::string> warned_caps;

  void exec(const char* sql) {
    char* error = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &error) != SQLITE_OK) {
      std::string text = error ? error : "unknown error";
      sqlite3_free(error);
      throw std::runtime_error(fmt::format("MISP state: {}", text));
    }
  }
  bool changed() const { return sqlite3_changes(db) > 0; }

  // Runs `body` in a BEGIN IMMEDIATE transaction and commits it. When `body`
  // or the commit throws, `on_failure` runs, the transaction is rolled back
  // and the exception is rethrown.
  template <class Body, class OnFailure>
  void writeTransaction(Body&& body, OnFailure&& on_failure) {
    exec("BEGIN IMMEDIATE");
    try {
      body();
      exec("COMMIT");
    } catch (...) {
      on_failure();
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  }

  template <class Body>
  void writeTransaction(Body&& body) {
    writeTransaction(std::forward<Body>(body), [] {});
  }

  // Marks the event changed and returns its new timestamp.
  std::int64_t touch(const std::string& event_uuid) {
    auto found = touched.find(event_uuid);
    if (found != touched.end()) {
      return found->second;
    }
    Statement& read = stmt("SELECT timestamp FROM events WHERE uuid=?");
    read.bind(1, event_uuid);
    std::int64_t old = read.step() ? read.integer(0) : 0;
    std::int64_t stamp = std::max(now, old + 1);
    Statement& update = stmt("UPDATE events SET timestamp=?, dirty=1 WHERE uuid=?");
    update.bind(1, stamp).bind(2, event_uuid).run();
    touched.emplace(event_uuid, stamp);
    return stamp;
  }

  struct NewAttribute {
    std::string uuid;
    std::string object_uuid;
    std::string relation;
    std::string type;
    std::string category;
    std::string value;
    bool to_ids = false;
    bool disable_correlation = false;
    std::string comment;
    bool seen = false;
  };

  void insertAttribute(const std::string& event_uuid, const NewAttribute& a, std::int64_t ts_ms,
                       std::int64_t stamp, const std::string& origin) {
    Statement& insert = stmt(
        "INSERT OR IGNORE INTO attributes(uuid, event_uuid, object_uuid, relation, "
        "type, category, value, to_ids, disable_correlation, comment, first_seen, "
        "last_seen, timestamp, origin) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    insert.bind(1, a.uuid).bind(2, event_uuid);
    if (a.object_uuid.empty()) {
      insert.bindNull(3).bindNull(4);
    } else {
      insert.bind(3, a.object_uuid).bind(4, a.relation);
    }
    insert.bind(5, a.type).bind(6, a.category).bind(7, a.value);
    insert.bind(8, std::int64_t{a.to_ids}).bind(9, std::int64_t{a.disable_correlation});
    insert.bind(10, a.comment);
    if (a.seen) {
      insert.bind(11, ts_ms).bind(12, ts_ms);
    } else {
      insert.bindNull(11).bindNull(12);
    }
    insert.bind(13, stamp).bind(14, origin);
    insert.run();
  }

  // Widens the seen range of an attribute or object. Returns true when it changed.
  bool widenSeen(const char* table, const std::string& uuid, std::int64_t ts_ms,
                 const std::string& event_uuid) {
    Statement& read = stmt(fmt::format("SELECT first_seen, last_seen FROM {} WHERE uuid=?", table));
    read.bind(1, uuid);
    if (!read.step()) {
      return false;
    }
    std::int64_t first = read.integer(0);
    std::int64_t last = read.integer(1);
    if (ts_ms >= first && ts_ms <= last) {
      return false;
    }
    std::int64_t stamp = touch(event_uuid);
    Statement& update = stmt(
        fmt::format("UPDATE {} SET first_seen=?, last_seen=?, timestamp=? WHERE uuid=?", table));
    update.bind(1, std::min(first, ts_ms)).bind(2, std::max(last, ts_ms)).bind(3, stamp);
    update.bind(4, uuid).run();
    return true;
  }

  void addTags(const std::string& event_uuid, const std::string& attribute_uuid,
               const std::vector<std::string>& tags) {
    Statement& insert = stmt("INSERT OR IGNORE INTO tags(attribute_uuid, name) VALUES(?,?)");
    bool any = false;
    for (const auto& tag : tags) {
      insert.bind(1, attribute_uuid).bind(2, tag).run();
      any = any || changed();
    }
    if (any) {
      std::int64_t stamp = touch(event_uuid);
      Statement& update = stmt("UPDATE attributes SET timestamp=? WHERE uuid=?");
      update.bind(1, stamp).bind(2, attribute_uuid).run();
    }
  }

  bool exists(const char* table, const std::string& uuid) {
    Statement& read = stmt(fmt::format("SELECT 1 FROM {} WHERE uuid=?", table));
    read.bind(1, uuid);
    return read.step();
  }

  // Reserves room for one more source or object in the event. Returns false
  // when the event is full.
  bool reserve(const std::string& event_uuid, const char* column, std::uint32_t cap) {
    Statement& read = stmt(fmt::format("SELECT {} FROM events WHERE uuid=?", column));
    read.bind(1, event_uuid);
    if (!read.step() || read.integer(0) >= cap) {
      if (warned_caps.insert(event_uuid + column).second) {
        spdlog::warn(
            "MISP model: event {} contains its maximum of {} {}, so further ones are "
            "dropped; raise max_{}_per_event to keep them",
            event_uuid, cap, column, column);
      }
      return false;
    }
    Statement& update = stmt(fmt::format("UPDATE events SET {0}={0}+1 WHERE uuid=?", column));
    update.bind(1, event_uuid).run();
    return true;
  }

  void insertObject(const std::string& event_uuid, const std::string& uuid, const Template& t,
                    const std::string& comment, std::int64_t ts_ms, std::int64_t stamp) {
    Statement& insert = stmt(
        "INSERT INTO objects(uuid, event_uuid, name, comment, first_seen, "
        "last_seen, timestamp) VALUES(?,?,?,?,?,?,?)");
    insert.bind(1, uuid).bind(2, event_uuid).bind(3, t.name).bind(4, comment);
    insert.bind(5, ts_ms).bind(6, ts_ms).bind(7, stamp).run();
  }

  void applyRecord(const MispModelOptions& options, const MispRecord& record);
  void applyRules(const std::string& event_uuid, const std::string& object_uuid,
                  const std::vector<std::string>& rule_ids, const MispRecord& record);
  void applyCredential(const MispModelOptions& options, const std::string& event_uuid,
                       const MispRecord& record, const MispRecord::Credential& credential);
};

void MispModel::Impl::applyRecord(const MispModelOptions& options, const MispRecord& record) {
  if (record.source_ip.empty()) {
    return;  // Without an address MISP has nothing to match on.
  }
  MispEventKey key = mispEventKey(options, record);
  const std::string& event_uuid = key.uuid;
  {
    Statement& insert = stmt(
        "INSERT OR IGNORE INTO events(uuid, scope, name, date, info, timestamp, "
        "dirty) VALUES(?,?,?,?,?,0,0)");
    insert.bind(1, event_uuid).bind(2, key.scope).bind(3, key.name).bind(4, key.date);
    insert.bind(5,
                fmt::format("webtrap honeypot activity: {} {}, {}", key.scope, key.name, key.date));
    insert.run();
    if (changed()) {
      touch(event_uuid);
    }
  }

  std::vector<std::string> tags;
  for (const auto& id : record.oat_ids) {
    tags.push_back("owasp-oat:" + id);
  }
  for (const auto& id : record.attack_ids) {
    std::string tag = attackGalaxyTag(id);
    if (!tag.empty()) {
      tags.push_back(std::move(tag));
    }
  }

  // The source address.
  const std::string ip_uuid = uuidV5(event_uuid, "ip-src|" + record.source_ip);
  {
    Statement& read = stmt("SELECT origin FROM attributes WHERE uuid=?");
    read.bind(1, ip_uuid);
    if (read.step()) {
      std::string origin = read.text(0);
      widenSeen("attributes", ip_uuid, record.timestamp_ms, event_uuid);
      if (origin != record.event_id) {
        Statement& sight = stmt(
            "INSERT OR IGNORE INTO sightings(uuid, attribute_uuid, event_uuid, "
            "source, date) VALUES(?,?,?,?,?)");
        sight.bind(1, uuidV5(ip_uuid, "sighting|" + record.event_id)).bind(2, ip_uuid);
        sight.bind(3, event_uuid).bind(4, record.sensor_id.empty() ? "webtrap" : record.sensor_id);
        sight.bind(5, record.timestamp_ms / 1000).run();
        if (changed()) {
          touch(event_uuid);
        }
      }
    } else {
      if (!reserve(event_uuid, "sources", options.max_sources_per_event)) {
        return;
      }
      NewAttribute a;
      a.uuid = ip_uuid;
      a.type = "ip-src";
      a.category = "Network activity";
      a.value = record.source_ip;
      a.to_ids = options.to_ids;
      a.comment = fmt::format("source of requests to webtrap sensor {}; first in webtrap event {}",
                              record.sensor_id, record.event_id);
      a.seen = true;
      insertAttribute(event_uuid, a, record.timestamp_ms, touch(event_uuid), record.event_id);
    }
    addTags(event_uuid, ip_uuid, tags);
  }

  // The request signature.
  if (!record.path.empty()) {
    std::string signature = record.method + "\n" + record.host + "\n" + record.path + "\n" +
                            record.user_agent + "\n" + record.source_ip;
    const std::string object_uuid = uuidV5(event_uuid, "http-request|" + signature);
    bool have = exists("objects", object_uuid);
    if (!have && reserve(event_uuid, "objects", options.max_objects_per_event)) {
      std::int64_t stamp = touch(event_uuid);
      insertObject(
          event_uuid, object_uuid, kHttpRequest,
          fmt::format("first in webtrap event {} (sensor {})", record.event_id, record.sensor_id),
          record.timestamp_ms, stamp);
      auto add = [&](const char* relation, const char* type, std::string value,
                     bool disable_correlation, bool to_ids) {
        if (value.empty()) {
          return;
        }
        NewAttribute a;
        a.uuid = uuidV5(object_uuid, relation);
        a.object_uuid = object_uuid;
        a.relation = relation;
        a.type = type;
        // The template gives no category for `text`, so it takes the type's
        // default. Every other relation used here allows Network activity.
        a.category = std::string_view(relation) == "text" ? "Other" : "Network activity";
        a.value = std::move(value);
        a.to_ids = to_ids;
        a.disable_correlation = disable_correlation;
        insertAttribute(event_uuid, a, record.timestamp_ms, stamp, record.event_id);
      };
      add("method", "http-method", record.method, true, false);
      // A Host header that is an address is the server's address.
      std::string address = ipLiteral(record.host);
      if (!address.empty()) {
        add("ip-dst", "ip-dst", address, false, false);
      } else if (validHostname(record.host)) {
        add("host", "hostname", lowercase(record.host), false, false);
      } else if (!record.host.empty()) {
        // MISP rejects such a value as a hostname, so it goes in as text.
        add("header", "text", "Host: " + record.host, true, false);
      }
      add("uri", "uri", record.path, false, false);
      add("user-agent", "user-agent", record.user_agent, false, false);
      add("ip-src", "ip-src", record.source_ip, false, options.to_ids);
      have = true;
    } else if (have) {
      widenSeen("objects", object_uuid, record.timestamp_ms, event_uuid);
    }
    if (have) {
      addTags(event_uuid, uuidV5(object_uuid, "uri"), tags);
      applyRules(event_uuid, object_uuid, record.rule_ids, record);
    }
  }

  if (options.credentials != MispCredentials::kNone) {
    for (const auto& credential : record.credentials) {
      applyCredential(options, event_uuid, record, credential);
    }
  }
}

void MispModel::Impl::applyRules(const std::string& event_uuid, const std::string& object_uuid,
                                 const std::vector<std::string>& rule_ids,
                                 const MispRecord& record) {
  if (rule_ids.empty()) {
    return;
  }
  Statement& count = stmt("SELECT count(*) FROM rules WHERE object_uuid=?");
  count.bind(1, object_uuid);
  count.step();
  std::int64_t stored = count.integer(0);
  Statement& insert = stmt("INSERT OR IGNORE INTO rules(object_uuid, rule_id) VALUES(?,?)");
  bool any = false;
  for (const auto& id : rule_ids) {
    if (stored >= kMaxRulesPerObject) {
      break;
    }
    insert.bind(1, object_uuid).bind(2, id).run();
    if (changed()) {
      any = true;
      ++stored;
    }
  }
  if (!any) {
    return;
  }
  // Rule ids in numeric order where they are numbers.
  std::vector<std::string> ids;
  Statement& read = stmt("SELECT rule_id FROM rules WHERE object_uuid=?");
  read.bind(1, object_uuid);
  while (read.step()) {
    ids.push_back(read.text(0));
  }
  std::sort(ids.begin(), ids.end(), [](const std::string& a, const std::string& b) {
    return a.size() != b.size() ? a.size() < b.size() : a < b;
  });
  std::string value = "ModSecurity rule ids: " + fmt::format("{}", fmt::join(ids, ", "));
  std::int64_t stamp = touch(event_uuid);
  const std::string text_uuid = uuidV5(object_uuid, "text");
  Statement& update = stmt("UPDATE attributes SET value=?, timestamp=? WHERE uuid=?");
  update.bind(1, value).bind(2, stamp).bind(3, text_uuid).run();
  if (!changed()) {
    NewAttribute a;
    a.uuid = text_uuid;
    a.object_uuid = object_uuid;
    a.relation = "text";
    a.type = "text";
    a.category = "Other";
    a.value = value;
    a.disable_correlation = true;
    insertAttribute(event_uuid, a, record.timestamp_ms, stamp, record.event_id);
  }
  Statement& object = stmt("UPDATE objects SET timestamp=? WHERE uuid=?");
  object.bind(1, stamp).bind(2, object_uuid).run();
}

void MispModel::Impl::applyCredential(const MispModelOptions& options,
                                      const std::string& event_uuid, const MispRecord& record,
                                      const MispRecord::Credential& credential) {
  bool hashed = credential.hashed;
  std::string password = credential.password;
  if (!hashed && options.credentials == MispCredentials::kSha256 && !password.empty()) {
    password = sha256Hex(password);
    hashed = true;
  }
  const std::string object_uuid =
      uuidV5(event_uuid, "credential|" + credential.username + "\n" +
                             (hashed ? "sha256:" : "clear:") + password);
  if (exists("objects", object_uuid)) {
    widenSeen("objects", object_uuid, record.timestamp_ms, event_uuid);
    return;
  }
  if (!reserve(event_uuid, "objects", options.max_objects_per_event)) {
    return;
  }
  std::int64_t stamp = touch(event_uuid);
  insertObject(
      event_uuid, object_uuid, kCredential,
      fmt::format("first in webtrap event {} (sensor {})", record.event_id, record.sensor_id),
      record.timestamp_ms, stamp);
  auto add = [&](const char* relation, std::string value, bool disable_correlation) {
    if (value.empty()) {
      return;
    }
    NewAttribute a;
    a.uuid = uuidV5(object_uuid, relation);
    a.object_uuid = object_uuid;
    a.relation = relation;
    a.type = "text";
    a.category = "Other";
    a.value = std::move(value);
    a.disable_correlation = disable_correlation;
    insertAttribute(event_uuid, a, record.timestamp_ms, stamp, record.event_id);
  };
  add("username", credential.username, false);
  add("password", password, false);
  add("format", hashed ? "hashed" : "clear-text", true);
  add("type", "password", true);
  add("origin", "bruteforce-scanning", true);
  add("text",
      hashed ? "password given as its SHA-256 hash (hex); tried on a webtrap sensor"
             : "tried on a webtrap sensor",
      true);
}

MispModel::MispModel(const std::filesystem::path& path, MispModelOptions options)
    : impl_(std::make_unique<Impl>()), options_(std::move(options)) {
  finishMispModelOptions(options_);
  if (path.has_parent_path()) {
    std::filesystem::create_directories(path.parent_path());
  }
  if (sqlite3_open_v2(path.c_str(), &impl_->db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string error = impl_->db ? sqlite3_errmsg(impl_->db) : "out of memory";
    sqlite3_close(impl_->db);
    impl_->db = nullptr;
    throw std::runtime_error(
        fmt::format("MISP state: opening {} failed: {}", path.string(), error));
  }
  sqlite3_busy_timeout(impl_->db, 5000);
  // FULL: the collector's cursor moves on once apply() returns, so a
  // committed batch must survive a power cut.
  impl_->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL");
  impl_->exec(kSchema);
}

MispModel::~MispModel() {
  if (impl_ && impl_->db) {
    impl_->statements.clear();
    sqlite3_close(impl_->db);
  }
}

std::size_t MispModel::apply(const std::vector<MispRecord>& records, std::int64_t now_s) {
  impl_->now = now_s;
  impl_->touched.clear();
  impl_->writeTransaction(
      [&] {
        for (const auto& record : records) {
          impl_->applyRecord(options_, record);
        }
        impl_->resetStatements();
      },
      [&] {
        impl_->resetStatements();
        impl_->touched.clear();
      });
  std::size_t changed = impl_->touched.size();
  impl_->touched.clear();
  return changed;
}

std::vector<std::string> MispModel::dirtyEvents() {
  Statement read(impl_->db, "SELECT uuid FROM events WHERE dirty=1 ORDER BY uuid");
  std::vector<std::string> uuids;
  while (read.step()) {
    uuids.push_back(read.text(0));
  }
  return uuids;
}

void MispModel::markClean(const std::string& uuid, std::int64_t timestamp) {
  Statement update(impl_->db, "UPDATE events SET dirty=0 WHERE uuid=? AND timestamp=?");
  update.bind(1, uuid).bind(2, timestamp).run();
}

namespace {

std::vector<std::string> eventTags(const MispModelOptions& options) {
  return {options.tlp, "cssa:origin=\"honeypot\"", "cssa:sharing-class=\"unvetted\"",
          "honeypot-basic:interaction-level=\"low\"", "honeypot-basic:data-capture=\"attacks\""};
}

void writeOrg(JsonWriter& w, const char* key, const MispModelOptions& options) {
  w.key(key);
  w.beginObject();
  w.member("name", options.org_name);
  w.member("uuid", options.org_uuid);
  w.endObject();
}

// Writes an object's own members, up to but not including its
// "Attribute" array, from a row of `SELECT uuid, name, comment,
// first_seen, last_seen, timestamp FROM objects`. The feed file and the
// objects/add body both use it.
void writeObjectMembers(JsonWriter& w, Statement& objects) {
  const Template& t = templateNamed(objects.text(1));
  w.member("uuid", objects.text(0));
  w.member("name", t.name);
  w.member("meta-category", t.meta_category);
  w.member("description", t.description);
  w.member("template_uuid", t.uuid);
  w.member("template_version", t.version);
  w.member("distribution", "5");
  w.member("comment", objects.text(2));
  w.member("timestamp", std::to_string(objects.integer(5)));
  w.member("first_seen", seenText(objects.integer(3)));
  w.member("last_seen", seenText(objects.integer(4)));
}

// Writes the members of an event that the feed file and the events/add body
// share, after its uuid, info and date.
void writeEventSettings(JsonWriter& w, const MispModelOptions& options) {
  w.member("analysis", std::to_string(options.analysis));
  w.member("threat_level_id", std::to_string(options.threat_level_id));
  w.member("distribution", std::to_string(options.distribution));
  writeOrg(w, "Orgc", options);
  writeTags(w, eventTags(options));
}

// Writes the members of an attribute that the feed file and the
// attributes/add and objects/add bodies share, from a row whose first
// columns are uuid, relation, type, category, value, to_ids,
// disable_correlation and comment. The row's timestamp is at
// `timestamp_column`, because the feed's rows have first_seen and last_seen
// before it.
void writeAttributeMembers(JsonWriter& w, Statement& a, bool in_object, int timestamp_column) {
  w.member("uuid", a.text(0));
  if (in_object) {
    w.member("object_relation", a.text(1));
  }
  w.member("type", a.text(2));
  w.member("category", a.text(3));
  w.member("value", a.text(4));
  w.member("to_ids", a.integer(5) != 0);
  w.member("disable_correlation", a.integer(6) != 0);
  w.member("distribution", "5");
  w.member("comment", a.text(7));
  w.member("timestamp", std::to_string(a.integer(timestamp_column)));
}

}  // namespace

std::optional<std::string> MispModel::renderEvent(const std::string& uuid,
                                                  std::int64_t* timestamp_out) {
  sqlite3* db = impl_->db;
  // One read transaction, so the event, its attributes and its sightings
  // agree with each other.
  impl_->exec("BEGIN");
  struct EndRead {
    Impl* impl;
    ~EndRead() { sqlite3_exec(impl->db, "COMMIT", nullptr, nullptr, nullptr); }
  } end_read{impl_.get()};

  Statement event(db, "SELECT info, date, timestamp FROM events WHERE uuid=?");
  event.bind(1, uuid);
  if (!event.step()) {
    return std::nullopt;
  }
  const std::int64_t timestamp = event.integer(2);
  if (timestamp_out) {
    *timestamp_out = timestamp;
  }

  Statement tags(db, "SELECT name FROM tags WHERE attribute_uuid=? ORDER BY name");
  Statement sightings(
      db,
      "SELECT uuid, source, date FROM (SELECT uuid, source, date FROM sightings "
      "WHERE attribute_uuid=? ORDER BY date DESC, uuid LIMIT ?) ORDER BY date, uuid");

  std::string out;
  out.reserve(1 << 16);
  JsonWriter w(out);
  auto writeAttribute = [&](Statement& a, bool in_object) {
    // Columns: uuid, relation, type, category, value, to_ids, disable_correlation,
    // comment, first_seen, last_seen, timestamp.
    const std::string attribute_uuid = a.text(0);
    w.beginObject();
    writeAttributeMembers(w, a, in_object, 10);
    if (!a.isNull(8)) {
      w.member("first_seen", seenText(a.integer(8)));
      w.member("last_seen", seenText(a.integer(9)));
    }
    std::vector<std::string> names;
    tags.bind(1, attribute_uuid);
    while (tags.step()) {
      names.push_back(tags.text(0));
    }
    tags.reset();
    if (!names.empty()) {
      writeTags(w, names);
    }
    if (!in_object && options_.max_sightings_per_attribute > 0) {
      sightings.bind(1, attribute_uuid)
          .bind(2, static_cast<std::int64_t>(options_.max_sightings_per_attribute));
      bool first = true;
      while (sightings.step()) {
        if (first) {
          w.key("Sighting");
          w.beginArray();
          first = false;
        }
        w.beginObject();
        w.member("uuid", sightings.text(0));
        w.member("attribute_uuid", attribute_uuid);
        w.member("date_sighting", std::to_string(sightings.integer(2)));
        w.member("source", sightings.text(1));
        w.member("type", "0");
        writeOrg(w, "Organisation", options_);
        w.endObject();
      }
      sightings.reset();
      if (!first) {
        w.endArray();
      }
    }
    w.endObject();
  };

  w.beginObject();
  w.key("Event");
  w.beginObject();
  w.member("uuid", uuid);
  w.member("info", event.text(0));
  w.member("date", event.text(1));
  w.member("timestamp", std::to_string(timestamp));
  w.member("publish_timestamp", "0");
  w.member("published", false);
  writeEventSettings(w, options_);

  const char* kAttributeColumns =
      "uuid, relation, type, category, value, to_ids, disable_correlation, comment, "
      "first_seen, last_seen, timestamp";
  Statement attributes(
      db, fmt::format("SELECT {} FROM attributes WHERE event_uuid=? AND object_uuid IS NULL "
                      "ORDER BY uuid",
                      kAttributeColumns)
              .c_str());
  attributes.bind(1, uuid);
  w.key("Attribute");
  w.beginArray();
  while (attributes.step()) {
    writeAttribute(attributes, false);
  }
  w.endArray();

  Statement objects(db,
                    "SELECT uuid, name, comment, first_seen, last_seen, timestamp FROM objects "
                    "WHERE event_uuid=? ORDER BY uuid");
  Statement members(db,
                    fmt::format("SELECT {} FROM attributes WHERE event_uuid=? AND object_uuid=? "
                                "ORDER BY relation",
                                kAttributeColumns)
                        .c_str());
  objects.bind(1, uuid);
  w.key("Object");
  w.beginArray();
  while (objects.step()) {
    const std::string object_uuid = objects.text(0);
    w.beginObject();
    writeObjectMembers(w, objects);
    w.key("Attribute");
    w.beginArray();
    members.bind(1, uuid).bind(2, object_uuid);
    while (members.step()) {
      writeAttribute(members, true);
    }
    members.reset();
    w.endArray();
    w.endObject();
  }
  w.endArray();
  w.endObject();
  w.endObject();
  return out;
}

std::vector<MispEventSummary> MispModel::events() {
  Statement read(impl_->db, "SELECT uuid, info, date, timestamp FROM events ORDER BY uuid");
  std::vector<MispEventSummary> out;
  while (read.step()) {
    out.push_back({read.text(0), read.text(1), read.text(2), read.integer(3)});
  }
  return out;
}

std::string MispModel::renderManifest() {
  std::string out;
  JsonWriter w(out);
  w.beginObject();
  for (const auto& event : events()) {
    w.key(event.uuid);
    w.beginObject();
    w.member("info", event.info);
    w.member("date", event.date);
    w.member("timestamp", std::to_string(event.timestamp));
    w.member("analysis", std::to_string(options_.analysis));
    w.member("threat_level_id", std::to_string(options_.threat_level_id));
    writeOrg(w, "Orgc", options_);
    writeTags(w, eventTags(options_));
    w.endObject();
  }
  w.endObject();
  return out;
}

// The hashes.csv lines of each event are kept with the event timestamp they
// were computed for, so only events changed since the last call are read
// again.
// NOTE: the file still covers every event the state contains, so its size
// grows with the history. Nothing prunes old events yet.
std::string MispModel::renderHashes() {
  sqlite3* db = impl_->db;
  Statement stale(
      db,
      "SELECT e.uuid, e.timestamp FROM events e LEFT JOIN event_hashes h "
      "ON h.event_uuid = e.uuid WHERE h.timestamp IS NULL OR h.timestamp != e.timestamp");
  std::vector<std::pair<std::string, std::int64_t>> changed;
  while (stale.step()) {
    changed.emplace_back(stale.text(0), stale.integer(1));
  }
  stale.reset();
  if (!changed.empty()) {
    Statement values(db, "SELECT value FROM attributes WHERE event_uuid=? ORDER BY uuid");
    Statement store(db,
                    "INSERT OR REPLACE INTO event_hashes(event_uuid, timestamp, lines) "
                    "VALUES(?,?,?)");
    impl_->writeTransaction(
        [&] {
          for (const auto& [uuid, timestamp] : changed) {
            std::string lines;
            values.bind(1, uuid);
            while (values.step()) {
              lines += md5Hex(values.text(0));
              lines += ',';
              lines += uuid;
              lines += '\n';
            }
            values.reset();
            store.bind(1, uuid).bind(2, timestamp).bind(3, lines).run();
          }
        },
        [&] { values.reset(); });
  }
  Statement read(db, "SELECT lines FROM event_hashes ORDER BY event_uuid");
  std::string out;
  while (read.step()) {
    out += read.text(0);
  }
  return out;
}


// ---------------------------------------------------------------- push tracking

std::optional<std::string> MispModel::renderEventForAdd(const std::string& uuid,
                                                        std::int64_t* timestamp_out) {
  Statement event(impl_->db, "SELECT info, date, timestamp FROM events WHERE uuid=?");
  event.bind(1, uuid);
  if (!event.step()) {
    return std::nullopt;
  }
  if (timestamp_out) {
    *timestamp_out = event.integer(2);
  }
  std::string out;
  JsonWriter w(out);
  w.beginObject();
  w.key("Event");
  w.beginObject();
  w.member("uuid", uuid);
  w.member("info", event.text(0));
  w.member("date", event.text(1));
  w.member("published", false);
  writeEventSettings(w, options_);
  w.endObject();
  w.endObject();
  return out;
}

namespace {

constexpr const char* kPushAttributeColumns =
    "uuid, relation, type, category, value, to_ids, disable_correlation, comment, timestamp, "
    "origin";

// One attribute row (kPushAttributeColumns) as MISP's attributes/add or an
// object's attribute takes it. `tags` go in a "Tag" list of {"name": ...},
// which attributes/add saves with the attribute (MISP issue #4938, fixed in
// 2019). objects/add ignores such a list, so object attributes get none.
void writePushAttribute(JsonWriter& w, Statement& a, bool in_object,
                        const std::vector<std::string>& tags = {}) {
  w.beginObject();
  writeAttributeMembers(w, a, in_object, 8);
  if (!tags.empty()) {
    writeTags(w, tags);
  }
  w.endObject();
}

}  // namespace

std::vector<MispModel::PendingItem> MispModel::unsentAttributes(const std::string& event_uuid,
                                                                std::size_t limit) {
  Statement read(impl_->db,
                 fmt::format("SELECT {} FROM attributes a WHERE event_uuid=? AND object_uuid IS "
                             "NULL AND NOT EXISTS (SELECT 1 FROM pushed p WHERE p.key=a.uuid) "
                             "ORDER BY uuid LIMIT ?",
                             kPushAttributeColumns)
                     .c_str());
  Statement tags(impl_->db, "SELECT name FROM tags WHERE attribute_uuid=? ORDER BY name");
  read.bind(1, event_uuid).bind(2, static_cast<std::int64_t>(limit));
  std::vector<PendingItem> out;
  while (read.step()) {
    PendingItem item;
    item.uuid = read.text(0);
    item.origin = read.text(9);
    std::vector<std::string> names;
    tags.bind(1, item.uuid);
    while (tags.step()) {
      names.push_back(tags.text(0));
    }
    tags.reset();
    for (const auto& name : names) {
      item.tag_keys.push_back(tagKey(item.uuid, name));
    }
    JsonWriter w(item.json);
    writePushAttribute(w, read, false, names);
    out.push_back(std::move(item));
  }
  return out;
}

std::vector<MispModel::PendingItem> MispModel::unsentObjects(const std::string& event_uuid,
                                                             std::size_t limit) {
  Statement objects(impl_->db,
                    "SELECT uuid, name, comment, first_seen, last_seen, timestamp FROM objects o "
                    "WHERE event_uuid=? AND NOT EXISTS (SELECT 1 FROM pushed p WHERE p.key=o.uuid) "
                    "ORDER BY uuid LIMIT ?");
  Statement members(impl_->db, fmt::format("SELECT {} FROM attributes WHERE object_uuid=? "
                                           "ORDER BY relation",
                                           kPushAttributeColumns)
                                   .c_str());
  objects.bind(1, event_uuid).bind(2, static_cast<std::int64_t>(limit));
  std::vector<PendingItem> out;
  while (objects.step()) {
    PendingItem item;
    item.uuid = objects.text(0);
    JsonWriter w(item.json);
    w.beginObject();
    w.key("Object");
    w.beginObject();
    writeObjectMembers(w, objects);
    w.key("Attribute");
    w.beginArray();
    members.bind(1, item.uuid);
    while (members.step()) {
      if (item.origin.empty()) {
        item.origin = members.text(9);
      }
      writePushAttribute(w, members, true);
    }
    members.reset();
    w.endArray();
    w.endObject();
    w.endObject();
    out.push_back(std::move(item));
  }
  return out;
}

std::vector<MispModel::PendingSighting> MispModel::unsentSightings(const std::string& event_uuid,
                                                                   std::size_t limit,
                                                                   bool in_flight_only) {
  Statement read(impl_->db,
                 "SELECT s.uuid, s.attribute_uuid, s.source, s.date, p.state FROM sightings s "
                 "JOIN pushed a ON a.key=s.attribute_uuid AND a.state=2 "
                 "LEFT JOIN pushed p ON p.key=s.uuid "
                 "WHERE s.event_uuid=? AND (p.state IS NULL OR p.state=1) AND (?=0 OR p.state=1) "
                 "ORDER BY s.date, s.uuid LIMIT ?");
  read.bind(1, event_uuid).bind(2, std::int64_t{in_flight_only});
  read.bind(3, static_cast<std::int64_t>(limit));
  std::vector<PendingSighting> out;
  while (read.step()) {
    out.push_back({read.text(0), read.text(1), read.text(2), read.integer(3),
                   !read.isNull(4) && read.integer(4) == 1});
  }
  return out;
}

std::vector<MispModel::PendingTag> MispModel::unsentTags(const std::string& event_uuid,
                                                         std::size_t limit) {
  Statement read(impl_->db,
                 "SELECT t.attribute_uuid, t.name FROM attributes a "
                 "JOIN pushed s ON s.key=a.uuid AND s.state=2 "
                 "JOIN tags t ON t.attribute_uuid=a.uuid "
                 "WHERE a.event_uuid=? AND NOT EXISTS (SELECT 1 FROM pushed p "
                 "WHERE p.key='tag|' || t.attribute_uuid || '|' || t.name) "
                 "ORDER BY t.attribute_uuid, t.name LIMIT ?");
  read.bind(1, event_uuid).bind(2, static_cast<std::int64_t>(limit));
  std::vector<PendingTag> out;
  while (read.step()) {
    out.push_back({read.text(0), read.text(1)});
  }
  return out;
}

std::int64_t MispModel::sentSightingCount(const std::string& attribute_uuid,
                                          const std::string& source, std::int64_t date) {
  Statement read(impl_->db,
                 "SELECT count(*) FROM sightings s JOIN pushed p ON p.key=s.uuid AND p.state=2 "
                 "WHERE s.attribute_uuid=? AND s.source=? AND s.date=?");
  read.bind(1, attribute_uuid).bind(2, source).bind(3, date);
  read.step();
  return read.integer(0);
}

void MispModel::markPushed(const std::vector<std::string>& keys, PushState state) {
  if (keys.empty()) {
    return;
  }
  Statement mark(impl_->db, "INSERT OR REPLACE INTO pushed(key, state) VALUES(?,?)");
  Statement members(impl_->db,
                    "INSERT OR REPLACE INTO pushed(key, state) "
                    "SELECT uuid, ? FROM attributes WHERE object_uuid=?");
  impl_->writeTransaction([&] {
    for (const auto& key : keys) {
      mark.bind(1, key).bind(2, static_cast<std::int64_t>(state)).run();
      members.bind(1, static_cast<std::int64_t>(state)).bind(2, key).run();
    }
  });
}

void MispModel::clearPushed(const std::vector<std::string>& keys) {
  if (keys.empty()) {
    return;
  }
  Statement erase(impl_->db, "DELETE FROM pushed WHERE key=?");
  impl_->writeTransaction([&] {
    for (const auto& key : keys) {
      erase.bind(1, key).run();
    }
  });
}

void MispModel::forgetPushedEvent(const std::string& event_uuid) {
  Statement erase(impl_->db,
                  "DELETE FROM pushed WHERE state<>3 AND key IN ("
                  "SELECT ?1 UNION ALL SELECT 'publish|' || ?1 "
                  "UNION ALL SELECT uuid FROM attributes WHERE event_uuid=?1 "
                  "UNION ALL SELECT uuid FROM objects WHERE event_uuid=?1 "
                  "UNION ALL SELECT uuid FROM sightings WHERE event_uuid=?1 "
                  "UNION ALL SELECT 'tag|' || t.attribute_uuid || '|' || t.name FROM tags t "
                  "JOIN attributes a ON a.uuid=t.attribute_uuid WHERE a.event_uuid=?1)");
  erase.bind(1, event_uuid).run();
}

std::optional<MispModel::PushState> MispModel::pushState(const std::string& key) {
  Statement read(impl_->db, "SELECT state FROM pushed WHERE key=?");
  read.bind(1, key);
  if (!read.step()) {
    return std::nullopt;
  }
  return static_cast<PushState>(read.integer(0));
}

}  // namespace webtrap::collector
