#include "collector/misp_rest_output.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <limits>
#include <map>

#include <fmt/format.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include "common/config_table.h"
#include "common/config_values.h"
#include "common/error.h"

namespace webtrap::collector {
namespace {

constexpr const char* kSection = "outputs.misp";
constexpr const char* kLabels = "output=\"misp\"";

// Items per attributes/add list and per state transaction.
constexpr std::size_t kAttributeChunk = 200;
constexpr std::size_t kItemChunk = 100;
constexpr std::size_t kSightingChunk = 200;

std::int64_t nowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Seconds since the epoch of the start of the UTC day `date` (YYYY-MM-DD),
// or -1 when `date` is not such a day.
std::int64_t dayStart(const std::string& date) {
  std::tm tm{};
  if (std::sscanf(date.c_str(), "%4d-%2d-%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday) != 3) {
    return -1;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<std::int64_t>(timegm(&tm));
}

std::string trimmed(std::string text) {
  const char* kSpace = " \t\r\n";
  text.erase(0, text.find_first_not_of(kSpace));
  std::size_t end = text.find_last_not_of(kSpace);
  text.erase(end == std::string::npos ? 0 : end + 1);
  return text;
}

}  // namespace

struct MispRestOutput::Metrics {
  explicit Metrics(MetricsRegistry& r)
      : events_created(r.counter("webtrap_collector_misp_events_created_total",
                                 "MISP events created by events/add", kLabels)),
        attributes_sent(r.counter("webtrap_collector_misp_attributes_sent_total",
                                  "Attributes MISP saved (objects' attributes not included)",
                                  kLabels)),
        objects_sent(r.counter("webtrap_collector_misp_objects_sent_total",
                               "Objects MISP saved", kLabels)),
        sightings_sent(r.counter("webtrap_collector_misp_sightings_sent_total",
                                 "Sightings MISP saved", kLabels)),
        tags_attached(r.counter("webtrap_collector_misp_tags_attached_total",
                                "Attribute tags MISP attached", kLabels)),
        duplicates(r.counter("webtrap_collector_misp_duplicates_total",
                             "Events, attributes and objects MISP already had", kLabels)),
        rejected(r.counter("webtrap_collector_misp_rejected_total",
                           "Items MISP rejected for good, sent to the dead-letter store", kLabels)),
        publishes(r.counter("webtrap_collector_misp_publish_total",
                            "Publish calls MISP accepted", kLabels)),
        reconciled(r.counter("webtrap_collector_misp_sightings_reconciled_total",
                             "Sightings left in flight that MISP turned out to have", kLabels)),
        request_errors(r.counter("webtrap_collector_misp_request_errors_total",
                                 "Pushes that failed for a transient reason (connection, "
                                 "timeout, 429, 5xx)",
                                 kLabels)),
        config_errors(r.counter("webtrap_collector_misp_config_errors_total",
                                "Pushes that failed on a rejected key or a wrong setting",
                                kLabels)) {}

  Counter& events_created;
  Counter& attributes_sent;
  Counter& objects_sent;
  Counter& sightings_sent;
  Counter& tags_attached;
  Counter& duplicates;
  Counter& rejected;
  Counter& publishes;
  Counter& reconciled;
  Counter& request_errors;
  Counter& config_errors;
};

namespace {

// Returns the API key in the environment variable `name`, trimmed. Throws
// ConfigError naming `path` when the variable is unset or empty.
std::string apiKeyFromEnvironment(const std::string& name, const std::string& path) {
  const char* value = name.empty() ? nullptr : std::getenv(name.c_str());
  if (value == nullptr || trimmed(value).empty()) {
    throw ConfigError(fmt::format(
        "{}: the environment variable `{}` is not set or empty; export it with the "
        "automation key of an API-enabled MISP user",
        path, name));
  }
  return trimmed(value);
}

// Returns the API key in `file`, trimmed. Throws ConfigError naming `path`
// when the file cannot be read or is empty.
std::string apiKeyFromFile(const std::string& file, const std::string& path) {
  const std::string text = trimmed(config_values::readSecretFile(file, path));
  if (text.empty()) {
    throw ConfigError(fmt::format(
        "{}: `{}` is empty; give a file (mode 0600) that contains only the automation key of an "
        "API-enabled MISP user",
        path, file));
  }
  return text;
}

MispPublish parsePublish(const std::string& text, const std::string& path) {
  if (text == "never") {
    return MispPublish::kNever;
  }
  if (text == "when_day_closes") {
    return MispPublish::kWhenDayCloses;
  }
  if (text == "always") {
    return MispPublish::kAlways;
  }
  throw ConfigError(
      fmt::format("{}: `{}` is not valid; give never, when_day_closes or always", path, text));
}

// Counts the sightings in an events/view body by "attribute uuid|source|
// date_sighting". Throws TransientError when the body is not JSON.
std::map<std::string, std::int64_t> countSightings(const std::string& body) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(body).get(root) != simdjson::SUCCESS) {
    throw TransientError("MISP output: events/view returned a body that is not JSON");
  }
  std::map<std::string, std::int64_t> counts;
  simdjson::dom::array attributes;
  if (root.at_pointer("/Event/Attribute").get_array().get(attributes) != simdjson::SUCCESS) {
    return counts;
  }
  for (simdjson::dom::element attribute : attributes) {
    std::string_view attribute_uuid;
    simdjson::dom::array sightings;
    if (attribute["uuid"].get_string().get(attribute_uuid) != simdjson::SUCCESS ||
        attribute["Sighting"].get_array().get(sightings) != simdjson::SUCCESS) {
      continue;
    }
    for (simdjson::dom::element sighting : sightings) {
      std::string_view source;
      std::string_view date;
      if (sighting["source"].get_string().get(source) != simdjson::SUCCESS) {
        source = {};
      }
      if (sighting["date_sighting"].get_string().get(date) != simdjson::SUCCESS) {
        continue;
      }
      ++counts[fmt::format("{}|{}|{}", attribute_uuid, source, date)];
    }
  }
  return counts;
}

// Throws ConfigError naming the key when url, the API key or state_path is
// missing, or when more than one API key source is set.
void checkRequiredKeys(const MispRestOptions& options, bool has_url, int key_sources) {
  if (!has_url) {
    throw ConfigError(fmt::format(
        "{}.url: missing; give MISP's base URL, such as `url: https://misp.example`", kSection));
  }
  if (key_sources == 0) {
    throw ConfigError(fmt::format(
        "{}.api_key: missing; give the automation key of an API-enabled MISP user with "
        "api_key_env (an environment variable), api_key_file (a file) or api_key",
        kSection));
  }
  if (key_sources > 1) {
    throw ConfigError(fmt::format(
        "{}: more than one of api_key, api_key_env and api_key_file is set; keep one", kSection));
  }
  if (options.state_path.empty()) {
    throw ConfigError(fmt::format(
        "{}.state_path: missing; give the SQLite file that keeps what was sent to MISP, such "
        "as `state_path: var/collector/misp.state.sqlite`",
        kSection));
  }
}

}  // namespace

MispRestOptions parseMispRestOptions(const YAML::Node& node) {
  using namespace config_values;
  if (!node || !node.IsMap()) {
    throw ConfigError(fmt::format(
        "{}: expected a map such as `misp: {{url: https://misp.example, api_key_env: "
        "MISP_API_KEY, state_path: var/collector/misp.state.sqlite}}`",
        kSection));
  }

  MispRestOptions options;
  options.client.section = kSection;
  bool has_url = false;
  int key_sources = 0;
  for (const auto& entry : node) {
    const std::string key = config_table::keyText(entry.first, std::string(kSection));
    const std::string path = std::string(kSection) + "." + key;
    if (key == "api_key_env") {
      std::string name = scalarText(entry.second, path);
      YAML::Node key_node(apiKeyFromEnvironment(name, path));
      parseMispClientKey(options.client, "api_key", key_node, path);
      options.api_key_source = "api_key_env " + name;
      ++key_sources;
    } else if (key == "api_key_file") {
      std::string file = scalarText(entry.second, path);
      YAML::Node key_node(apiKeyFromFile(file, path));
      parseMispClientKey(options.client, "api_key", key_node, path);
      options.api_key_source = "api_key_file " + file;
      ++key_sources;
    } else if (key == "state_path") {
      std::string text = scalarText(entry.second, path);
      if (text.empty()) {
        throw ConfigError(fmt::format(
            "{}: is empty; give the SQLite file that keeps what was sent to MISP", path));
      }
      options.state_path = text;
    } else if (key == "publish") {
      options.publish = parsePublish(scalarText(entry.second, path), path);
    } else if (key == "publish_delay") {
      options.publish_delay =
          std::chrono::milliseconds(parseMilliseconds(scalarText(entry.second, path), path));
    } else if (parseMispClientKey(options.client, key, entry.second, path)) {
      if (key == "url") {
        has_url = true;
      } else if (key == "api_key") {
        options.api_key_source = "api_key";
        ++key_sources;
      }
    } else if (parseMispModelKey(options.model, key, entry.second, path)) {
      // A model key.
    } else if (key == "batch_max_events" || key == "batch_max_bytes" || key == "flush_interval" ||
               key == "retry_initial" || key == "retry_max") {
      // Runner keys, checked by parseRunnerOptions().
    } else {
      throw ConfigError(fmt::format(
          "{}: unknown key; valid keys are {}, api_key_env, api_key_file, state_path, publish, "
          "publish_delay, {}, batch_max_events, batch_max_bytes, flush_interval, retry_initial "
          "and retry_max",
          path, kMispClientKeys, kMispModelKeys));
    }
  }

  checkRequiredKeys(options, has_url, key_sources);
  finishMispModelOptions(options.model);
  return options;
}

MispRestOutput::MispRestOutput(MispRestOptions options, MetricsRegistry& metrics,
                               DeadLetterSink dead_letters)
    : options_(std::move(options)),
      metrics_(std::make_unique<Metrics>(metrics)),
      dead_letters_(std::move(dead_letters)) {
  try {
    model_ = std::make_unique<MispModel>(options_.state_path, options_.model);
  } catch (const std::exception& e) {
    // A new state sends MISP only later records; the items' fixed uuids
    // keep them from being added twice.
    throw ConfigError(fmt::format(
        "{}.state_path: `{}` cannot be used ({}); give a file this output wrote, or move the "
        "damaged file away to start with an empty state, which sends only later records",
        kSection, options_.state_path.string(), e.what()));
  }
  try {
    client_ = std::make_unique<MispClient>(options_.client);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(e.what());
  }
  spdlog::info("MISP output: sending to {} (key from {}, state in {}, publish {})",
               options_.client.url, options_.api_key_source, options_.state_path.string(),
               options_.publish == MispPublish::kNever         ? "never"
               : options_.publish == MispPublish::kAlways      ? "always"
                                                               : "when the day closes");
  if (options_.publish == MispPublish::kWhenDayCloses) {
    publisher_ = std::thread([this] { runPublisher(); });
  }
}

MispRestOutput::~MispRestOutput() {
  {
    std::lock_guard lock(stop_mutex_);
    stopping_ = true;
  }
  stop_wake_.notify_all();
  if (publisher_.joinable()) {
    publisher_.join();
  }
}

void MispRestOutput::runPublisher() {
  // Checks a few times per delay, at most every 30 s.
  auto interval = std::clamp(options_.publish_delay / 4, std::chrono::milliseconds(250),
                             std::chrono::milliseconds(30000));
  std::unique_lock stop_lock(stop_mutex_);
  while (!stop_wake_.wait_for(stop_lock, interval, [this] { return stopping_; })) {
    stop_lock.unlock();
    {
      std::lock_guard lock(mutex_);
      // After a failed push the runner retries; publishing waits for it.
      if (last_push_ok_) {
        try {
          publishDue(nowSeconds());
        } catch (const std::exception& e) {
          spdlog::warn("MISP output: publishing failed, trying again later: {}", e.what());
        }
      }
    }
    stop_lock.lock();
  }
}

std::vector<ItemResult> MispRestOutput::send(std::span<const StoredEvent> batch) {
  std::vector<ItemResult> results(batch.size());
  std::vector<MispRecord> records = readMispRecords(batch, "MISP", results);
  std::lock_guard lock(mutex_);
  try {
    model_->apply(records, nowSeconds());
  } catch (const std::exception& e) {
    throw TransientError(fmt::format("MISP state: {}", e.what()));
  }
  pushLocked(nowSeconds());
  return results;
}

void MispRestOutput::push(std::int64_t now_s) {
  std::lock_guard lock(mutex_);
  pushLocked(now_s);
}

void MispRestOutput::pushLocked(std::int64_t now_s) {
  last_push_ok_ = false;
  try {
    for (const auto& uuid : model_->dirtyEvents()) {
      pushEvent(uuid);
    }
    publishDue(now_s);
  } catch (const TransientError&) {
    metrics_->request_errors.inc();
    throw;
  } catch (const MispConfigError& e) {
    // Wrong key, role or URL: retrying does not fix it, but dropping would
    // lose data, so the runner keeps backing off until the setting is fixed.
    metrics_->config_errors.inc();
    auto now = std::chrono::steady_clock::now();
    if (now - last_error_log_ >= std::chrono::minutes(1)) {
      last_error_log_ = now;
      spdlog::error("MISP output: {}. Nothing is dropped; the output retries until it is fixed",
                    e.what());
    }
    throw TransientError(e.what());
  } catch (const std::exception& e) {
    metrics_->request_errors.inc();
    throw TransientError(fmt::format("MISP output: {}", e.what()));
  }
  last_push_ok_ = true;
}

void MispRestOutput::reject(const std::string& what, const std::string& event_id,
                            const std::string& reason, const std::string& payload) {
  DeadLetter letter;
  letter.output = "misp";
  letter.event_id = event_id;
  letter.reason = fmt::format("MISP rejected {}: {}", what, reason);
  letter.payload = payload;
  letter.at_ms = nowSeconds() * 1000;
  if (dead_letters_) {
    dead_letters_(letter);
  }
  metrics_->rejected.inc();
  spdlog::warn("MISP output: {} (webtrap event {})", letter.reason, event_id);
}

void MispRestOutput::eventMissing(const std::string& uuid, const MispRequestError& error) {
  if (error.status == 404) {
    // The retry creates the event again, with everything it contains.
    model_->forgetPushedEvent(uuid);
    throw TransientError(fmt::format(
        "MISP output: event {} is not in MISP any more ({}); adding it again", uuid,
        error.what()));
  }
}

void MispRestOutput::pushEvent(const std::string& uuid) {
  std::int64_t timestamp = 0;
  std::optional<std::string> header = model_->renderEventForAdd(uuid, &timestamp);
  if (!header) {
    return;
  }

  std::optional<MispModel::PushState> state = model_->pushState(uuid);
  if (state == MispModel::PushState::kRejected) {
    model_->markClean(uuid, timestamp);
    return;
  }
  sent_in_this_event_ = false;
  if (!state && !addEventHeader(uuid, *header)) {
    model_->markClean(uuid, timestamp);
    return;
  }

  pushAttributes(uuid);
  pushObjects(uuid);
  pushTags(uuid);
  pushSightings(uuid);
  model_->markClean(uuid, timestamp);

  if (sent_in_this_event_) {
    if (options_.publish == MispPublish::kAlways) {
      publish(uuid);
    } else {
      // Changed since it was published: due again under the publish rule.
      model_->clearPushed({MispModel::publishKey(uuid)});
    }
  }
}

bool MispRestOutput::addEventHeader(const std::string& uuid, const std::string& header) {
  try {
    MispAddEventResult result = client_->addEvent(header);
    if (result.status == MispAddEventResult::Status::kCreated) {
      metrics_->events_created.inc();
    } else {
      metrics_->duplicates.inc();
    }
  } catch (const MispRequestError& e) {
    reject("event " + uuid, "", e.what(), header);
    model_->markPushed({uuid}, MispModel::PushState::kRejected);
    return false;
  }
  model_->markPushed({uuid}, MispModel::PushState::kSent);
  sent_in_this_event_ = true;
  return true;
}

void MispRestOutput::pushAttributes(const std::string& uuid) {
  for (;;) {
    std::vector<MispModel::PendingItem> items = model_->unsentAttributes(uuid, kAttributeChunk);
    if (items.empty()) {
      return;
    }
    std::vector<std::string> bodies;
    bodies.reserve(items.size());
    for (const auto& item : items) {
      bodies.push_back(item.json);
    }
    std::vector<MispItemResult> results;
    try {
      results = client_->addAttributes(uuid, bodies);
    } catch (const MispRequestError& e) {
      eventMissing(uuid, e);
      results.assign(items.size(), {MispItemResult::Status::kRejected, "", "", e.what()});
    }
    std::vector<std::string> sent;
    std::vector<std::string> rejected;
    for (std::size_t i = 0; i < items.size() && i < results.size(); ++i) {
      switch (results[i].status) {
        case MispItemResult::Status::kSaved:
          metrics_->attributes_sent.inc();
          sent.push_back(items[i].uuid);
          // MISP saved the inline tags with the attribute. A duplicate may
          // come from an earlier send without them, so its tags go out
          // through attachTag.
          sent.insert(sent.end(), items[i].tag_keys.begin(), items[i].tag_keys.end());
          metrics_->tags_attached.inc(items[i].tag_keys.size());
          break;
        case MispItemResult::Status::kDuplicate:
          metrics_->duplicates.inc();
          sent.push_back(items[i].uuid);
          break;
        case MispItemResult::Status::kRejected:
          reject("attribute " + items[i].uuid, items[i].origin, results[i].reason,
                 items[i].json);
          rejected.push_back(items[i].uuid);
          break;
      }
    }
    markDone(sent, rejected);
  }
}

void MispRestOutput::markDone(const std::vector<std::string>& sent,
                              const std::vector<std::string>& rejected) {
  model_->markPushed(sent, MispModel::PushState::kSent);
  model_->markPushed(rejected, MispModel::PushState::kRejected);
  sent_in_this_event_ = sent_in_this_event_ || !sent.empty();
}

void MispRestOutput::pushObjects(const std::string& uuid) {
  for (;;) {
    std::vector<MispModel::PendingItem> items = model_->unsentObjects(uuid, kItemChunk);
    if (items.empty()) {
      return;
    }
    std::vector<std::string> sent;
    std::vector<std::string> rejected;
    // Marks what was done so far, also when a call throws.
    auto mark = [&] { markDone(sent, rejected); };
    try {
      for (const auto& item : items) {
        MispItemResult result;
        try {
          result = client_->addObject(uuid, item.json);
        } catch (const MispRequestError& e) {
          eventMissing(uuid, e);
          result = {MispItemResult::Status::kRejected, "", "", e.what()};
        }
        if (result.status == MispItemResult::Status::kSaved) {
          metrics_->objects_sent.inc();
          sent.push_back(item.uuid);
        } else if (result.status == MispItemResult::Status::kDuplicate) {
          metrics_->duplicates.inc();
          sent.push_back(item.uuid);
        } else {
          reject("object " + item.uuid, item.origin, result.reason, item.json);
          rejected.push_back(item.uuid);
        }
      }
    } catch (...) {
      mark();
      throw;
    }
    mark();
  }
}

void MispRestOutput::pushTags(const std::string& uuid) {
  for (;;) {
    std::vector<MispModel::PendingTag> tags = model_->unsentTags(uuid, kItemChunk);
    if (tags.empty()) {
      return;
    }
    std::vector<std::string> sent;
    std::vector<std::string> rejected;
    auto mark = [&] { markDone(sent, rejected); };
    try {
      for (const auto& tag : tags) {
        const std::string key = MispModel::tagKey(tag.attribute_uuid, tag.name);
        // MISP returns saved: true for a tag already attached, so a resend is harmless.
        MispSaveResult result = client_->attachTag(tag.attribute_uuid, tag.name);
        if (result.saved) {
          metrics_->tags_attached.inc();
          sent.push_back(key);
        } else {
          reject(fmt::format("tag {} on attribute {}", tag.name, tag.attribute_uuid), "",
                 result.message, tag.name);
          rejected.push_back(key);
        }
      }
    } catch (...) {
      mark();
      throw;
    }
    mark();
  }
}

void MispRestOutput::pushSightings(const std::string& uuid) {
  if (!model_->unsentSightings(uuid, 1, true).empty()) {
    reconcileSightings(uuid);
  }
  for (;;) {
    std::vector<MispModel::PendingSighting> sightings = model_->unsentSightings(uuid, kSightingChunk);
    if (sightings.empty()) {
      return;
    }
    std::vector<std::string> keys;
    keys.reserve(sightings.size());
    for (const auto& s : sightings) {
      keys.push_back(s.uuid);
    }
    // Marked before they are sent: after a kill, the ones still in flight
    // are looked up in MISP instead of being sent twice.
    model_->markPushed(keys, MispModel::PushState::kInFlight);
    std::vector<std::string> sent;
    std::vector<std::string> rejected;
    auto mark = [&] {
      model_->markPushed(sent, MispModel::PushState::kSent);
      model_->markPushed(rejected, MispModel::PushState::kRejected);
    };
    try {
      for (const auto& s : sightings) {
        MispSaveResult result = client_->addSighting(s.attribute_uuid, s.source, s.date);
        if (result.saved) {
          metrics_->sightings_sent.inc();
          sent.push_back(s.uuid);
        } else {
          reject(fmt::format("sighting {} on attribute {}", s.uuid, s.attribute_uuid), "",
                 result.message, fmt::format("{{\"attribute_uuid\":\"{}\",\"source\":\"{}\",\"date\":{}}}",
                                             s.attribute_uuid, s.source, s.date));
          rejected.push_back(s.uuid);
        }
      }
    } catch (...) {
      mark();
      throw;
    }
    mark();
  }
}

void MispRestOutput::reconcileSightings(const std::string& uuid) {
  // Counts MISP's sightings of this event by attribute, source and date.
  MispResponse response = client_->request("GET", "/events/view/" + uuid, "");
  std::map<std::string, std::int64_t> in_misp;
  if (response.status == 200) {
    in_misp = countSightings(response.body);
  } else if (response.status != 404) {
    throw TransientError(fmt::format(
        "MISP output: events/view/{} returned HTTP {} while checking sightings", uuid,
        response.status));
  }

  // Groups the sightings in flight by the same key, with the number of
  // sightings of that key sent before them.
  std::vector<MispModel::PendingSighting> in_flight =
      model_->unsentSightings(uuid, std::numeric_limits<std::int32_t>::max(), true);
  std::map<std::string, std::vector<std::string>> by_key;
  std::map<std::string, std::int64_t> sent_before;
  for (const auto& s : in_flight) {
    std::string key = fmt::format("{}|{}|{}", s.attribute_uuid, s.source, s.date);
    if (!sent_before.contains(key)) {
      sent_before[key] = model_->sentSightingCount(s.attribute_uuid, s.source, s.date);
    }
    by_key[key].push_back(s.uuid);
  }

  // Of each key's sightings in flight, as many as MISP has beyond those sent
  // before count as found. The rest are sent again.
  std::vector<std::string> found;
  std::vector<std::string> missing;
  for (auto& [key, uuids] : by_key) {
    std::int64_t present = in_misp[key] - sent_before[key];
    for (std::size_t i = 0; i < uuids.size(); ++i) {
      (static_cast<std::int64_t>(i) < present ? found : missing).push_back(uuids[i]);
    }
  }

  model_->markPushed(found, MispModel::PushState::kSent);
  model_->clearPushed(missing);
  metrics_->reconciled.inc(found.size());
  spdlog::info("MISP output: {} sightings of event {} were in flight: {} found in MISP, {} to "
               "send again",
               in_flight.size(), uuid, found.size(), missing.size());
}

void MispRestOutput::publish(const std::string& uuid) {
  MispSaveResult result = client_->publishEvent(uuid);
  if (result.saved) {
    metrics_->publishes.inc();
    model_->markPushed({MispModel::publishKey(uuid)}, MispModel::PushState::kSent);
  } else {
    spdlog::warn("MISP output: publishing event {} failed: {}; trying again later", uuid,
                 result.message);
  }
}

void MispRestOutput::publishDue(std::int64_t now_s) {
  if (options_.publish != MispPublish::kWhenDayCloses) {
    return;
  }
  const std::int64_t delay_s =
      std::chrono::duration_cast<std::chrono::seconds>(options_.publish_delay).count();
  for (const auto& event : model_->events()) {
    std::int64_t start = dayStart(event.date);
    if (start < 0 || now_s < start + 86400 + delay_s || now_s < event.timestamp + delay_s) {
      continue;
    }
    if (model_->pushState(event.uuid) != MispModel::PushState::kSent ||
        model_->pushState(MispModel::publishKey(event.uuid)).has_value()) {
      continue;
    }
    publish(event.uuid);
  }
}

}  // namespace webtrap::collector
