// The MISP REST output (`outputs.misp`): pushes the collector's stored
// events into a MISP instance through its REST API.
//
// The runner hands it batches from the durable queue through its own
// cursor, so a slow or unreachable MISP never delays another output.
// Each batch is applied to a MispModel kept in this output's own SQLite
// state database (one event per sensor group and UTC day, ip-src per
// source, http-request and credential objects, sightings, tags). Then every
// event the batch changed is pushed: the event (events/add; an existing uuid
// is found, not duplicated), its attributes and objects not sent yet, the
// tags on them, and its sightings not sent yet.
//
// What was sent is marked in the state database, so a restart or a kill
// sends only the rest. Attributes and objects carry deterministic uuids, so
// MISP's duplicate responses (403 saved:false, "Event already exists") count
// as sent. Sightings carry no uuid that MISP keeps, so each group of
// sightings is marked "in flight" before it is sent. Sightings left in
// flight by a failure or a kill are checked against the event's sightings in
// MISP (events/view, by attribute, source and date) before any is sent
// again.
//
// Errors: a transient failure (connection, timeout, 429, 5xx) throws
// TransientError, so the runner backs off and sends the batch again (the
// model ignores a batch it has seen). A rejected key or a wrong setting is
// logged with the setting to fix, counted, and retried the same way; nothing
// is dropped. An attribute, object, tag or sighting that MISP rejects for
// good goes to the dead-letter store with MISP's reason and the webtrap
// event id of its first hit, and is counted.
//
// Publishing (`publish`): never; always (after each push that changed the
// event); or when_day_closes (the default): once the event's UTC day has
// ended and the event has not changed for `publish_delay`. A background
// thread checks this, so an idle collector still publishes. An event that
// changes after it was published is published again under the same rule.
//
// NOTE: what changes after an item was sent is not sent again: a wider
// first_seen/last_seen, and rule ids that reach an http-request object
// after the object was sent. MISP has the first version of those.
//
// Metrics, each with the label output="misp":
//   webtrap_collector_misp_events_created_total, _attributes_sent_total,
//   _objects_sent_total, _sightings_sent_total, _tags_attached_total,
//   _duplicates_total (MISP already had the item), _rejected_total (dead
//   letters), _publish_total (publish calls that MISP accepted),
//   _sightings_reconciled_total (in-flight sightings found in MISP),
//   _request_errors_total (transient failures) and _config_errors_total
//   (rejected key or wrong setting).
#pragma once

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "collector/misp_client.h"
#include "collector/misp_event.h"
#include "collector/store.h"
#include "collector/stored_event.h"
#include "common/metrics.h"

namespace webtrap::collector {

enum class MispPublish { kNever, kWhenDayCloses, kAlways };

struct MispRestOptions {
  MispClientOptions client;
  std::filesystem::path state_path;  // the model's SQLite database
  MispModelOptions model;
  MispPublish publish = MispPublish::kWhenDayCloses;
  std::chrono::milliseconds publish_delay{3600000};
  // Where the API key came from, for the start-up log line: "api_key",
  // "api_key_env NAME" or "api_key_file PATH". The key is never logged.
  std::string api_key_source;
};

// Parses `outputs.misp`: url (required), one of api_key, api_key_env (the
// name of an environment variable) or api_key_file (a file holding the key),
// state_path (required), publish, publish_delay, the other connection keys
// (kMispClientKeys), the model keys (kMispModelKeys) and the runner keys.
// Throws ConfigError.
MispRestOptions parseMispRestOptions(const YAML::Node& node);

// Receives the dead letters of items that MISP rejected for good.
using DeadLetterSink = std::function<void(const DeadLetter&)>;

class MispRestOutput : public Output {
 public:
  // Opens the state database and starts the publishing thread. Throws
  // ConfigError when the database cannot be opened.
  MispRestOutput(MispRestOptions options, MetricsRegistry& metrics, DeadLetterSink dead_letters);
  ~MispRestOutput() override;

  MispRestOutput(const MispRestOutput&) = delete;
  MispRestOutput& operator=(const MispRestOutput&) = delete;

  std::string_view name() const override { return "misp"; }

  // Applies the batch to the model and pushes what MISP does not have yet.
  // A document that is not JSON is kRejected; every other event is
  // kDelivered. Throws TransientError when MISP or the state database
  // failed, or when a setting is wrong.
  std::vector<ItemResult> send(std::span<const StoredEvent> batch) override;

  // Pushes every event with unsent content, then publishes the events that
  // are due at `now_s`. Throws TransientError as send() does.
  void push(std::int64_t now_s);

  MispModel& model() { return *model_; }

 private:
  struct Metrics;

  void pushLocked(std::int64_t now_s);
  void pushEvent(const std::string& uuid);
  // Adds the event itself (events/add) and marks it sent. Returns false
  // when MISP rejected it, which sends it to the dead-letter store and marks
  // it rejected.
  bool addEventHeader(const std::string& uuid, const std::string& header);
  void pushAttributes(const std::string& uuid);
  void pushObjects(const std::string& uuid);
  void pushTags(const std::string& uuid);
  void pushSightings(const std::string& uuid);
  // Marks the sent and rejected keys of an event's attributes, objects or
  // tags and notes whether anything was sent for the event.
  void markDone(const std::vector<std::string>& sent, const std::vector<std::string>& rejected);
  // Looks up the sightings left in flight in MISP, marks those found as
  // sent and the rest as unsent.
  void reconcileSightings(const std::string& uuid);
  void publishDue(std::int64_t now_s);
  void publish(const std::string& uuid);
  void reject(const std::string& what, const std::string& event_id, const std::string& reason,
              const std::string& payload);
  // Handles a MispRequestError of an attributes/add or objects/add call:
  // on a 404 (the event is gone from MISP) forgets that the event was
  // created and throws TransientError. Returns otherwise.
  void eventMissing(const std::string& uuid, const MispRequestError& error);
  void runPublisher();

  MispRestOptions options_;
  std::unique_ptr<Metrics> metrics_;
  DeadLetterSink dead_letters_;
  std::unique_ptr<MispModel> model_;
  std::unique_ptr<MispClient> client_;

  // Serialises send() and the publishing thread over the model and client.
  std::mutex mutex_;
  bool sent_in_this_event_ = false;
  bool last_push_ok_ = false;
  std::chrono::steady_clock::time_point last_error_log_{};

  std::mutex stop_mutex_;
  std::condition_variable stop_wake_;
  bool stopping_ = false;
  std::thread publisher_;
};

}  // namespace webtrap::collector
