// Behavioural OWASP Automated Threat (OAT) tags: sliding windows over the
// records of every probe, keyed per actor, from which the collector tags
// credential stuffing and cracking, scanning, footprinting, fingerprinting,
// scraping, floods, account creation, coupon and card testing, and spam.
// docs/oat.md ("Behavioural tags") describes each signal and its limits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "collector/audit_record.h"
#include "common/json_writer.h"
#include "common/metrics.h"
#include "common/request_facts.h"

namespace webtrap::collector {

// Thresholds of the `behaviour:` section of the collector configuration.
// Counts are per key within `window_ms` unless a field's comment states
// otherwise.
struct BehaviourOptions {
  bool enabled = true;
  std::int64_t window_ms = 120'000;
  // Keys tracked at once over all key kinds; the least recently seen key is
  // dropped past this.
  std::size_t max_keys = 20'000;
  // Distinct user agents one source address must show in the window before
  // the address alone becomes a key, because one actor is rotating agents.
  std::uint32_t ua_rotation = 4;
  // Names of the cookies that identify a session (key kind "session").
  std::vector<std::string> session_cookies = {"PHPSESSID"};

  struct {
    std::uint32_t min_usernames = 8;
    double max_attempts_per_username = 2.0;
  } credential_stuffing;  // OAT-008

  struct {
    std::uint32_t min_passwords = 8;
    double min_passwords_per_username = 4.0;
  } credential_cracking;  // OAT-007

  struct {
    std::uint32_t min_attack_requests = 3;  // requests with CRS attack rules (930-944)
    std::uint32_t min_distinct_paths = 40;
    double min_ratio_404 = 0.5;
  } vulnerability_scanning;  // OAT-014

  struct {
    std::uint32_t min_product_paths = 5;  // distinct product, version or metadata paths
    std::uint32_t min_unusual_methods = 3;  // methods other than GET, HEAD, POST and OPTIONS
  } footprinting;  // OAT-018

  struct {
    std::uint32_t min_probes = 2;  // distinct product or version paths, HEAD or OPTIONS
    std::uint32_t max_requests = 30;
  } fingerprinting;  // OAT-004

  struct {
    std::uint32_t min_pages = 8;  // distinct non-static URLs with a 2xx response
    // A crawler that follows links gets a 404 only for a broken link.
    double max_ratio_404 = 0.1;
    std::uint32_t max_posts = 1;  // POST requests; more is a scanner filling in forms
    // Distinct URLs over at most a quarter as many paths: a walk over ids.
    std::uint32_t min_query_urls = 16;
  } scraping;  // OAT-011

  struct {
    std::int64_t span_ms = 10'000;
    std::uint32_t min_requests = 200;  // within span_ms
    double max_distinct_path_ratio = 0.2;
  } denial_of_service;  // OAT-015

  struct {
    std::uint32_t min_registrations = 3;
  } account_creation;  // OAT-019

  struct {
    std::uint32_t min_coupons = 5;  // distinct codes
  } token_cracking;  // OAT-002

  struct {
    std::uint32_t min_cards = 3;  // distinct Luhn-valid cards
  } carding;  // OAT-001

  struct {
    std::uint32_t min_attempts = 4;  // submissions of one card
  } card_cracking;  // OAT-010

  struct {
    std::uint32_t min_link_posts = 2;  // comment or contact posts with a link
    std::uint32_t min_posts = 10;
    std::uint32_t min_links_per_post = 5;  // one post this dense is spam alone
  } spamming;  // OAT-017
};

// Parses the `behaviour:` section. Throws ConfigError naming the key, the
// value and the fix, also for unknown keys. A null node gives the defaults.
BehaviourOptions parseBehaviourOptions(const YAML::Node& node);

// Rows of the configuration reference table (docs/collector-configuration.md),
// one per `behaviour.*` key, in the table's Markdown format.
std::string behaviourConfigurationRows();

// Returns the thresholds on one line, for the start log.
std::string describeBehaviourOptions(const BehaviourOptions& options);

// One key's standing judgement of one behavioural signal: what the collector
// concludes about the actor so far, revised as the actor's later records
// arrive. docs/oat.md ("Verdicts") describes the states.
struct OatVerdict {
  std::string id;    // "OAT-011"
  std::string name;  // handbook name
  // The key: its kind and a hex digest of the key hash, "ip_ua:0123456789abcdef".
  // Behavioural tags carry the same text in OatTag::key.
  std::string key;
  // "provisional" while later records of the key may still withdraw it, and
  // "final" once they no longer can. "withdrawn" when a later record of the
  // key showed counter-evidence while the verdict's evidence was still in
  // the window.
  std::string status;
  double confidence = 0;  // highest confidence the signal reached on this key
  std::int64_t first_ms = 0;  // record time of the first record the signal held for
  std::int64_t last_ms = 0;   // ... and of the last
  std::uint64_t records = 0;  // records of the key for which the signal held
  // The numbers of the last record the signal held for, or, when withdrawn,
  // the counter-evidence ("behaviour:withdrawn posts=3 ...").
  std::string reason;
  std::int64_t withdrawn_ms = 0;  // record time of the withdrawing record; 0 if not withdrawn
};

// The verdicts of one key, with what identifies the actor to an analyst.
struct KeyVerdicts {
  std::string key;  // as in OatVerdict::key
  std::string kind;  // "ip_ua", "ip" or "session"
  std::string source_ip;  // of the key's first record with a verdict
  std::string user_agent;  // for "ip_ua" keys, cut to 256 bytes; empty otherwise
  std::int64_t newest_ms = 0;  // record time of the key's newest record
  std::vector<OatVerdict> verdicts;
};

// Writes one verdict as a JSON object (times in ISO 8601 UTC).
void writeOatVerdict(JsonWriter& writer, const OatVerdict& verdict);

// Returns `{"keys":[...]}`, one object per key with its verdicts: the body
// of the collector's GET /v1/oat/verdicts.
std::string keyVerdictsJson(std::span<const KeyVerdicts> table);

// Sliding-window tagger that gives records their behavioural OAT tags and
// keeps each key's verdicts. Thread safe: the state is split into shards by
// key hash, each with its own mutex.
class BehaviourTagger {
 public:
  BehaviourTagger(BehaviourOptions options, MetricsRegistry& metrics);
  ~BehaviourTagger();
  BehaviourTagger(const BehaviourTagger&) = delete;
  BehaviourTagger& operator=(const BehaviourTagger&) = delete;

  // Adds `record` to the windows of its keys, then returns the tags that hold
  // for those keys at the record's time stamp, counting this record and every
  // earlier-arrived record of the window. `ingest_ms` is used as the time of
  // a record without a time stamp. Returns no tags when the tagger is disabled.
  // Tags of signals that later records may withdraw have `provisional` set.
  // `verdicts`, when given, receives the verdicts of the record's keys after
  // this record, including those that it withdrew.
  std::vector<OatTag> observe(const AuditRecord& record, std::int64_t ingest_ms,
                              std::vector<OatVerdict>* verdicts = nullptr);

  // Returns every tracked key that has a verdict, the most recently seen
  // first, at most `limit` keys. A provisional verdict is reported final
  // once `now_ms` is a whole window past the arrival of the last record it
  // held for.
  std::vector<KeyVerdicts> verdicts(std::int64_t now_ms, std::size_t limit) const;

  std::size_t trackedKeys() const;
  const BehaviourOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace webtrap::collector
