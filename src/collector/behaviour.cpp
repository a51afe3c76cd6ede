#include "collector/behaviour.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <ctime>
#include <functional>
#include <limits>
#include <list>
#include <mutex>
#include <string_view>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "collector/key_index.h"
#include "common/encoding.h"
#include "common/json_writer.h"
#include "common/oat_ontology.h"
#include "common/own_name.h"

namespace webtrap::collector {
namespace {

// Each window is kept as this many buckets, so a record leaves the window
// between 11/12 of the window and the whole window after its time stamp.
constexpr int kBuckets = 12;

// Max distinct values kept per key and kind. Past this, the value seen
// longest ago is forgotten, and seeing it again counts it as new again.
constexpr std::size_t kPathCap = 64;
constexpr std::size_t kCredentialCap = 32;
constexpr std::size_t kCouponCap = 16;
constexpr std::size_t kCardCap = 16;
constexpr std::size_t kAgentCap = 8;
constexpr std::size_t kProbeCap = 16;

// Keys per shard that the tagger's index has room for from the start.
constexpr std::size_t kReservedKeys = 4096;

// A record time stamp more than this ahead of the collector's clock is taken
// as the clock's time plus this, so one probe with a wrong clock cannot push
// a key's window ahead and make every later record late.
constexpr std::int64_t kMaxFutureMs = 60'000;

// Counts kept per bucket.
enum Count : int {
  kRequests,
  kStatus404,
  kStatus2xx,
  kAttack,          // matched a CRS attack rule (930000-944999)
  kNewPath,         // path not seen in the window before
  kNewUrl,          // non-static URL (path and query) not seen before
  kNewPage,         // ... with a 2xx response
  kUnusualMethod,   // not GET, HEAD, POST or OPTIONS
  kNewProbe,        // product or version probe (method and path) not seen before
  kNewProductPath,  // product, version or site metadata path not seen before
  kLogin,           // login posts
  kNewUsername,
  kNewPassword,
  kRegister,
  kNewCoupon,
  kNewValidCard,    // Luhn-valid card fingerprint not seen in the window before
  kPost,            // comment or contact posts
  kLinkPost,        // ... with at least one link
  kDensePost,       // ... with spamming.min_links_per_post links or more
  kPostRequest,     // any POST request
  kCountKinds,
};

enum Signal : int {
  kCarding,
  kTokenCracking,
  kFingerprinting,
  kCredentialCracking,
  kCredentialStuffing,
  kCardCracking,
  kScraping,
  kVulnerabilityScanning,
  kDenialOfService,
  kSpamming,
  kFootprinting,
  kAccountCreation,
  kSignalCount,
};

constexpr std::array<const char*, kSignalCount> kSignalOat = {
    "OAT-001", "OAT-002", "OAT-004", "OAT-007", "OAT-008", "OAT-010",
    "OAT-011", "OAT-014", "OAT-015", "OAT-017", "OAT-018", "OAT-019",
};

enum class KeyKind : std::uint8_t { kSource, kSourceAgent, kSession };

const char* keyKindName(KeyKind kind) {
  switch (kind) {
    case KeyKind::kSource:
      return "ip";
    case KeyKind::kSourceAgent:
      return "ip_ua";
    case KeyKind::kSession:
      return "session";
  }
  return "ip";
}

// The splitmix64 finalizer: spreads the bits of a std::hash value, so that
// the low bits choose shards evenly.
std::uint64_t mixBits(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

std::uint64_t hashText(std::string_view text) { return std::hash<std::string_view>{}(text); }

// NOTE: keys are 64-bit hashes, not the texts, to keep a key small whatever
// the user agent or cookie holds. Two actors whose hashes collide share a
// window; at 20,000 keys the chance is about 1 in 10^10.
std::uint64_t keyHash(KeyKind kind, std::uint64_t first, std::uint64_t second) {
  return mixBits(first ^ mixBits(second + 0x9e3779b97f4a7c15ULL * (static_cast<int>(kind) + 1)));
}

std::string_view pathOf(std::string_view uri) {
  std::size_t end = uri.find_first_of("?#");
  return end == std::string_view::npos ? uri : uri.substr(0, end);
}

bool isStaticPath(std::string_view path) {
  static constexpr std::array<std::string_view, 23> kExtensions = {
      "css",  "js",  "mjs",  "map", "png", "jpg", "jpeg", "gif", "svg", "ico", "webp", "avif",
      "bmp", "woff", "woff2", "ttf", "otf", "eot", "mp4", "webm", "mp3", "pdf", "zip"};
  std::size_t slash = path.rfind('/');
  std::size_t dot = path.rfind('.');
  if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash)) {
    return false;
  }
  std::string extension = asciiLowercase(path.substr(dot + 1));
  return std::find(kExtensions.begin(), kExtensions.end(), extension) != kExtensions.end();
}

// Paths that tools request to learn which product runs and its version:
// icons whose hash names the product, read-me, change-log and licence files
// that carry a version, status pages, and the entry points of well-known
// products. Lower case, without a trailing slash.
bool isProductPath(std::string_view path) {
  static constexpr std::array<std::string_view, 44> kPaths = {
      "/_profiler",
      "/administrator",
      "/administrator/manifests/files/joomla.xml",
      "/app/etc/local.xml",
      "/changelog",
      "/changelog.md",
      "/changelog.txt",
      "/changes.txt",
      "/composer.json",
      "/composer.lock",
      "/core/changelog.txt",
      "/elmah.axd",
      "/favicon.ico",
      "/info.php",
      "/install.txt",
      "/jmx-console",
      "/license.txt",
      "/magento_version",
      "/manager/html",
      "/misc/drupal.js",
      "/package.json",
      "/phpinfo.php",
      "/phpmyadmin",
      "/pma",
      "/readme",
      "/readme.html",
      "/readme.md",
      "/readme.txt",
      "/server-info",
      "/server-status",
      "/sites/default",
      "/solr",
      "/trace.axd",
      "/typo3",
      "/upgrade.txt",
      "/user/login",
      "/version",
      "/version.txt",
      "/web-console",
      "/wp-admin",
      "/wp-content",
      "/wp-includes/version.php",
      "/wp-login.php",
      "/xmlrpc.php",
  };
  if (path.size() > 64) {
    return false;
  }
  std::string lower = asciiLowercase(path);
  while (lower.size() > 1 && lower.back() == '/') {
    lower.pop_back();
  }
  return std::binary_search(kPaths.begin(), kPaths.end(), std::string_view(lower));
}

// Files in which a site describes itself to clients: what a footprinting
// client reads first. Lower case.
bool isMetadataPath(std::string_view path) {
  static constexpr std::array<std::string_view, 9> kPaths = {
      "/.well-known/security.txt",
      "/clientaccesspolicy.xml",
      "/crossdomain.xml",
      "/humans.txt",
      "/robots.txt",
      "/security.txt",
      "/sitemap.xml",
      "/sitemap_index.xml",
      "/sitemap.txt",
  };
  if (path.size() > 32) {
    return false;
  }
  std::string lower = asciiLowercase(path);
  return std::find(kPaths.begin(), kPaths.end(), std::string_view(lower)) != kPaths.end();
}

bool isAttackRule(std::string_view rule_id) {
  // CRS 3.3 attack families: 930 LFI, 931 RFI, 932 RCE, 933 PHP, 934 Node.js,
  // 941 XSS, 942 SQLi, 943 session fixation, 944 Java.
  if (rule_id.size() != 6 || rule_id[0] != '9') {
    return false;
  }
  return rule_id[1] == '3' || (rule_id[1] == '4' && rule_id[2] >= '0' && rule_id[2] <= '4');
}

enum class FormKind { kNone, kLogin, kRegister, kText, kOther };

FormKind formKind(std::string_view kind) {
  if (kind.empty()) {
    return FormKind::kNone;
  }
  if (kind == "login") {
    return FormKind::kLogin;
  }
  if (kind == "register") {
    return FormKind::kRegister;
  }
  if (kind == "comment" || kind == "contact") {
    return FormKind::kText;
  }
  return FormKind::kOther;
}

struct CardSeen {
  std::uint64_t hash = 0;
  bool luhn_valid = false;
};

// The facts of one record that the windows count, read once before any lock.
struct Observation {
  std::int64_t time_ms = 0;
  std::uint64_t path_hash = 0;
  std::uint64_t url_hash = 0;  // path and query
  std::uint64_t agent_hash = 0;
  bool is_static = false;
  bool status_404 = false;
  bool status_2xx = false;
  bool attack = false;
  bool probe = false;
  bool product_path = false;   // product or version path: a fingerprinting probe
  bool footprint_path = false;  // product, version or site metadata path
  std::uint64_t probe_hash = 0;
  bool unusual_method = false;
  bool post = false;
  // The tool that the User-Agent names (data/oat/ontology.yaml `tools`), or nullptr.
  const oat::Tool* tool = nullptr;
  FormKind form = FormKind::kNone;
  std::uint64_t username_hash = 0;
  std::uint64_t password_hash = 0;
  bool has_coupon = false;
  std::uint64_t coupon_hash = 0;
  std::vector<CardSeen> cards;
  std::uint32_t links = 0;
};

// Recently seen values of one kind (paths, user names, ...), as hashes with
// the time each was last seen and how often it was seen since it became new.
class RecentSet {
 public:
  // Notes `hash` at `time_ms`. Returns true when it is new in the window:
  // never seen, or last seen before `window_start`.
  bool add(std::uint64_t hash, std::int64_t time_ms, std::int64_t window_start,
           std::size_t cap) {
    for (Entry& entry : entries_) {
      if (entry.hash == hash) {
        bool fresh = entry.last_ms < window_start;
        entry.count = fresh ? 1 : entry.count + 1;
        entry.last_ms = std::max(entry.last_ms, time_ms);
        return fresh;
      }
    }
    Entry entry{hash, time_ms, 1};
    if (entries_.size() < cap) {
      entries_.push_back(entry);
    } else {
      auto oldest = std::min_element(entries_.begin(), entries_.end(),
                                     [](const Entry& a, const Entry& b) {
                                       return a.last_ms < b.last_ms;
                                     });
      *oldest = entry;
    }
    return true;
  }

  std::uint32_t countSince(std::int64_t window_start) const {
    return static_cast<std::uint32_t>(std::count_if(
        entries_.begin(), entries_.end(),
        [&](const Entry& entry) { return entry.last_ms >= window_start; }));
  }

  std::uint32_t maxCountSince(std::int64_t window_start) const {
    std::uint32_t max_count = 0;
    for (const Entry& entry : entries_) {
      if (entry.last_ms >= window_start) {
        max_count = std::max(max_count, entry.count);
      }
    }
    return max_count;
  }

 private:
  struct Entry {
    std::uint64_t hash;
    std::int64_t last_ms;
    std::uint32_t count;
  };
  std::vector<Entry> entries_;

 public:
  // Forgets every value but keeps the memory, for a key state that is reused.
  void clear() { entries_.clear(); }
};

struct Bucket {
  std::int64_t index = -1;  // time_ms / bucket width; -1 when unused
  std::array<std::uint32_t, kCountKinds> counts{};
};

enum class VerdictStatus : std::uint8_t { kNone, kProvisional, kFinal, kWithdrawn };

const char* verdictStatusName(VerdictStatus status) {
  switch (status) {
    case VerdictStatus::kProvisional:
      return "provisional";
    case VerdictStatus::kFinal:
      return "final";
    case VerdictStatus::kWithdrawn:
      return "withdrawn";
    case VerdictStatus::kNone:
      break;
  }
  return "none";
}

struct SignalVerdict {
  VerdictStatus status = VerdictStatus::kNone;
  double confidence = 0;
  std::int64_t first_ms = 0;
  std::int64_t last_ms = 0;
  std::int64_t last_arrival_ms = 0;  // collector clock when the last record it held for arrived
  std::int64_t withdrawn_ms = 0;
  std::uint64_t records = 0;
  std::string reason;
};

// Allocated with a key's first verdict, so keys without one stay small.
struct KeyVerdictState {
  std::string key;  // "ip_ua:0123456789abcdef"
  KeyKind kind = KeyKind::kSourceAgent;
  std::string source_ip;
  std::string user_agent;
  std::array<SignalVerdict, kSignalCount> signals;
};

struct KeyState {
  std::array<Bucket, kBuckets> buckets;
  std::int64_t newest_ms = std::numeric_limits<std::int64_t>::min();
  // Requests in the current and the previous span of denial_of_service.span.
  std::int64_t span_index = -1;
  std::uint32_t span_current = 0;
  std::uint32_t span_previous = 0;
  RecentSet paths;
  RecentSet pages;
  RecentSet usernames;
  RecentSet passwords;
  RecentSet coupons;
  RecentSet cards;
  RecentSet probes;
  RecentSet agents;  // source keys only
  std::unique_ptr<KeyVerdictState> verdicts;

  // Returns the state to that of a key never seen, keeping the memory of
  // its sets, so the entry of an evicted key can serve a new one.
  void reset() {
    buckets.fill(Bucket{});
    newest_ms = std::numeric_limits<std::int64_t>::min();
    span_index = -1;
    span_current = 0;
    span_previous = 0;
    for (RecentSet* set : {&paths, &pages, &usernames, &passwords, &coupons, &cards, &probes,
                           &agents}) {
      set->clear();
    }
    verdicts.reset();
  }
};

// The window of one key at one time.
struct Summary {
  std::array<std::uint64_t, kCountKinds> counts{};
  double span_requests = 0;
  std::uint32_t max_card_attempts = 0;
  std::uint32_t agents = 0;
};

struct Candidate {
  bool fired = false;
  double confidence = 0;
  std::string reason;
  std::string key;  // text of the key that fired (OatVerdict::key), set by reviseVerdicts
  bool provisional = false;
};

using Candidates = std::array<Candidate, kSignalCount>;

// Confidence 0.5 at the threshold, rising toward 0.95 as the evidence grows
// past it: 0.73 at twice the threshold, 0.84 at four times.
double confidenceFor(double value, double threshold) {
  double ratio = value <= 0 ? 1.0 : std::clamp(threshold / value, 0.0, 1.0);
  return std::round((0.5 + 0.45 * (1.0 - ratio)) * 100.0) / 100.0;
}

double ratioOf(std::uint64_t part, std::uint64_t whole) {
  return whole == 0 ? 0.0 : static_cast<double>(part) / static_cast<double>(whole);
}

}  // namespace

struct BehaviourTagger::Impl {
  struct Entry {
    std::uint64_t key = 0;
    KeyState state;
  };
  struct Shard {
    explicit Shard(std::size_t expected_keys) : index(expected_keys) {}
    std::mutex mutex;
    std::list<Entry> entries;  // most recently seen first
    KeyIndex<std::list<Entry>::iterator> index;
  };

  BehaviourOptions options;
  std::int64_t bucket_ms = 0;
  std::vector<std::unique_ptr<Shard>> shards;
  std::size_t shard_cap = 0;
  const oat::Ontology& ontology;
  std::array<Counter*, kSignalCount> tag_counters{};
  Gauge& tracked_keys;
  Counter& evictions;
  Counter& late_records;
  std::array<Counter*, kSignalCount> withdrawn_counters{};

  Impl(BehaviourOptions opts, MetricsRegistry& metrics)
      : options(std::move(opts)),
        ontology(oat::Ontology::embedded()),
        tracked_keys(metrics.gauge("webtrap_collector_behaviour_tracked_keys",
                                   "Keys (source, source and user agent, session) whose windows "
                                   "the behavioural tagger keeps")),
        evictions(metrics.counter("webtrap_collector_behaviour_evictions_total",
                                  "Keys the behavioural tagger dropped, least recently seen "
                                  "first, to stay under behaviour.max_keys")),
        late_records(metrics.counter("webtrap_collector_behaviour_late_records_total",
                                     "Records older than their key's window when they arrived; "
                                     "tagged but not counted")) {
    bucket_ms = std::max<std::int64_t>(1, options.window_ms / kBuckets);
    // Small caps get one shard, so the cap is exact. Large caps get 16, each
    // with an equal share of it.
    std::size_t shard_count = options.max_keys >= 1024 ? 16 : 1;
    shard_cap = std::max<std::size_t>(1, options.max_keys / shard_count);
    for (std::size_t i = 0; i < shard_count; ++i) {
      // A shard of up to kReservedKeys keys never grows its index. A larger
      // one grows it as keys arrive, so a huge max_keys costs nothing until
      // it is used.
      shards.push_back(std::make_unique<Shard>(std::min(shard_cap + 1, kReservedKeys)));
    }
    for (int signal = 0; signal < kSignalCount; ++signal) {
      tag_counters[signal] = &metrics.counter(
          "webtrap_collector_behaviour_tags_total",
          "Behavioural OAT tags given to records, by OAT id",
          fmt::format("oat=\"{}\"", kSignalOat[signal]));
      withdrawn_counters[signal] = &metrics.counter(
          "webtrap_collector_behaviour_verdicts_withdrawn_total",
          "Provisional behavioural verdicts that later records of the same key withdrew, by "
          "OAT id",
          fmt::format("oat=\"{}\"", kSignalOat[signal]));
    }
  }

  Observation read(const AuditRecord& record, std::int64_t ingest_ms) const;
  std::uint64_t sessionHash(const AuditRecord& record) const;
  void observeKey(KeyKind kind, std::uint64_t key, const Observation& o, const AuditRecord& record,
                  std::int64_t ingest_ms, Candidates& record_candidates,
                  std::vector<OatVerdict>* verdicts, bool& late);
  void reviseVerdicts(KeyState& state, KeyKind kind, std::uint64_t key, const Summary& s,
                      const Observation& o, const AuditRecord& record, std::int64_t ingest_ms,
                      Candidates& fired);
  bool settled(const SignalVerdict& verdict, std::int64_t newest_ms, std::int64_t now_ms) const;
  void appendVerdicts(const KeyVerdictState& state, std::int64_t newest_ms, std::int64_t now_ms,
                      std::vector<OatVerdict>& out) const;
  bool add(KeyState& state, const Observation& o) const;
  Summary summarize(const KeyState& state, std::int64_t time_ms) const;
  void evaluate(const Summary& s, KeyKind kind, const oat::Tool* tool, Candidates& out) const;
};

std::uint64_t BehaviourTagger::Impl::sessionHash(const AuditRecord& record) const {
  for (const HeaderField& header : record.request_headers) {
    if (!equalsIgnoreCase(header.name, "cookie")) {
      continue;
    }
    std::string_view rest = header.value;
    while (!rest.empty()) {
      std::size_t end = rest.find(';');
      std::string_view pair = rest.substr(0, end);
      rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
      std::size_t start = pair.find_first_not_of(' ');
      if (start == std::string_view::npos) {
        continue;
      }
      pair.remove_prefix(start);
      std::size_t equals = pair.find('=');
      if (equals == std::string_view::npos) {
        continue;
      }
      std::string_view name = pair.substr(0, equals);
      std::string_view value = pair.substr(equals + 1);
      while (!value.empty() && value.back() == ' ') {
        value.remove_suffix(1);
      }
      if (value.empty()) {
        continue;
      }
      for (const std::string& session_cookie : options.session_cookies) {
        if (name == session_cookie) {
          return mixBits(hashText(name) ^ mixBits(hashText(value)));
        }
      }
    }
  }
  return 0;
}

Observation BehaviourTagger::Impl::read(const AuditRecord& record, std::int64_t ingest_ms) const {
  Observation o;
  o.time_ms = record.timestamp_us > 0 ? record.timestamp_us / 1000 : ingest_ms;
  o.time_ms = std::clamp<std::int64_t>(o.time_ms, 0, ingest_ms + kMaxFutureMs);

  std::string_view path = pathOf(record.uri);
  o.path_hash = hashText(path);
  // Cut a view, because std::string::substr() returns a temporary copy
  // that would be freed before the hash below reads it.
  std::string_view uri = record.uri;
  std::string_view url = uri.substr(0, uri.find('#'));
  o.url_hash = url.size() == path.size() ? o.path_hash : hashText(url);
  o.is_static = isStaticPath(path);
  o.status_404 = record.response_status == 404;
  o.status_2xx = record.response_status >= 200 && record.response_status < 300;
  const std::string& method = record.method;
  bool banner_method = method == "HEAD" || method == "OPTIONS";
  o.unusual_method = !method.empty() && !banner_method && method != "GET" && method != "POST";
  o.post = method == "POST";
  o.product_path = isProductPath(path);
  o.footprint_path = o.product_path || isMetadataPath(path);
  // A probe counts once per method and path, so a browser that requests
  // /favicon.ico on every page makes one probe.
  o.probe = banner_method || o.product_path;
  if (o.probe) {
    o.probe_hash = mixBits(o.path_hash ^ mixBits(hashText(method)));
  }
  std::string_view host;
  bool agent_found = false;
  for (const HeaderField& header : record.request_headers) {
    if (!agent_found && equalsIgnoreCase(header.name, "user-agent")) {
      agent_found = true;
      o.agent_hash = hashText(header.value);
      o.tool = ontology.findTool(header.value);
    } else if (host.empty() && equalsIgnoreCase(header.name, "host")) {
      host = header.value;
    }
  }
  // Checks from a tool's own probe list (nmap http-enum's path traversal
  // checks) are part of what the tool is for, not attack payloads. Nor is a
  // match on the site's own name, such as a login name at the site's domain.
  for (const RuleMessage& message : record.messages) {
    if (isAttackRule(message.rule_id) &&
        (o.tool == nullptr || !o.tool->checkTriggers(message.rule_id)) &&
        !oat::isOwnNameMatch(message.rule_id, message.data, host)) {
      o.attack = true;
      break;
    }
  }

  const FormFacts& form = record.form;
  o.form = formKind(form.kind);
  if (o.form == FormKind::kLogin || o.form == FormKind::kRegister) {
    o.username_hash = hashText(form.username);
    o.password_hash = hashText(form.password_sha256);
  }
  if (!form.coupon.empty()) {
    o.has_coupon = true;
    o.coupon_hash = hashText(form.coupon);
  }
  for (const CardFacts& card : form.cards) {
    std::uint64_t hash = !card.fingerprint.empty()
                             ? hashText(card.fingerprint)
                             : mixBits(hashText(card.bin) ^ mixBits(hashText(card.last4)));
    o.cards.push_back({hash, card.luhn_valid});
  }
  o.links = form.links;
  return o;
}

bool BehaviourTagger::Impl::add(KeyState& state, const Observation& o) const {
  std::int64_t t = o.time_ms;
  if (state.newest_ms != std::numeric_limits<std::int64_t>::min() &&
      t <= state.newest_ms - options.window_ms) {
    return false;
  }
  std::int64_t index = t / bucket_ms;
  Bucket& bucket = state.buckets[static_cast<std::size_t>(index % kBuckets)];
  if (bucket.index > index) {
    return false;  // the slot already contains a later bucket
  }
  if (bucket.index < index) {
    bucket.index = index;
    bucket.counts.fill(0);
  }
  state.newest_ms = std::max(state.newest_ms, t);

  std::int64_t window_start = t - options.window_ms;
  auto& n = bucket.counts;
  ++n[kRequests];
  n[kStatus404] += o.status_404;
  n[kStatus2xx] += o.status_2xx;
  n[kAttack] += o.attack;
  n[kUnusualMethod] += o.unusual_method;
  n[kPostRequest] += o.post;
  if (o.probe) {
    n[kNewProbe] += state.probes.add(o.probe_hash, t, window_start, kProbeCap);
  }
  if (state.paths.add(o.path_hash, t, window_start, kPathCap)) {
    ++n[kNewPath];
    n[kNewProductPath] += o.footprint_path;
  }
  // Pages count by URL, because a shop scraper walks one product page with
  // many ids.
  if (!o.is_static && state.pages.add(o.url_hash, t, window_start, kPathCap)) {
    ++n[kNewUrl];
    n[kNewPage] += o.status_2xx;
  }

  if (o.form == FormKind::kLogin) {
    ++n[kLogin];
    n[kNewUsername] += state.usernames.add(o.username_hash, t, window_start, kCredentialCap);
    n[kNewPassword] += state.passwords.add(o.password_hash, t, window_start, kCredentialCap);
  } else if (o.form == FormKind::kRegister) {
    ++n[kRegister];
  } else if (o.form == FormKind::kText) {
    ++n[kPost];
    n[kLinkPost] += o.links > 0;
    n[kDensePost] += o.links >= options.spamming.min_links_per_post;
  }
  if (o.has_coupon) {
    n[kNewCoupon] += state.coupons.add(o.coupon_hash, t, window_start, kCouponCap);
  }
  for (const CardSeen& card : o.cards) {
    bool fresh = state.cards.add(card.hash, t, window_start, kCardCap);
    n[kNewValidCard] += fresh && card.luhn_valid;
  }
  std::int64_t span = t / options.denial_of_service.span_ms;
  if (span > state.span_index) {
    state.span_previous = span == state.span_index + 1 ? state.span_current : 0;
    state.span_current = 1;
    state.span_index = span;
  } else if (span == state.span_index) {
    ++state.span_current;
  } else if (span == state.span_index - 1) {
    ++state.span_previous;
  }
  return true;
}

Summary BehaviourTagger::Impl::summarize(const KeyState& state, std::int64_t t) const {
  Summary s;
  std::int64_t index = t / bucket_ms;
  for (const Bucket& bucket : state.buckets) {
    if (bucket.index > index - kBuckets && bucket.index <= index) {
      for (int i = 0; i < kCountKinds; ++i) {
        s.counts[i] += bucket.counts[i];
      }
    }
  }
  std::int64_t window_start = t - options.window_ms;
  s.max_card_attempts = state.cards.maxCountSince(window_start);
  s.agents = state.agents.countSince(window_start);

  // Requests in the span before `t`, estimated from the current and the
  // previous aligned span: the previous one weighs by how much of it the span
  // still covers.
  std::int64_t span_ms = options.denial_of_service.span_ms;
  std::int64_t span = t / span_ms;
  double elapsed = static_cast<double>(t % span_ms) / static_cast<double>(span_ms);
  if (span == state.span_index) {
    s.span_requests = state.span_current + state.span_previous * (1.0 - elapsed);
  } else if (span == state.span_index + 1) {
    s.span_requests = state.span_current * (1.0 - elapsed);
  } else if (span == state.span_index - 1) {
    s.span_requests = state.span_previous;
  }
  return s;
}

namespace {

// Records one fired signal of one key, keeping the most confident key's
// reason when several keys fire the same signal.
class Firing {
 public:
  Firing(Candidates& out, KeyKind kind, std::int64_t window_ms)
      : out_(out), key_(keyKindName(kind)), window_s_(window_ms / 1000) {}

  void operator()(Signal signal, double confidence, const std::string& numbers) {
    Candidate& candidate = out_[signal];
    if (!candidate.fired || confidence > candidate.confidence) {
      candidate.fired = true;
      candidate.confidence = confidence;
      candidate.reason = fmt::format("behaviour:key={} {} window={}s", key_, numbers, window_s_);
    }
  }

 private:
  Candidates& out_;
  const char* key_;
  std::int64_t window_s_;
};

void evaluateCredentials(const BehaviourOptions& o, const Summary& s, Firing& fire) {
  const auto& n = s.counts;
  std::uint64_t logins = n[kLogin];
  std::uint64_t usernames = n[kNewUsername];
  std::uint64_t passwords = n[kNewPassword];
  if (logins == 0 || usernames == 0) {
    return;
  }
  double per_username = ratioOf(logins, usernames);
  double passwords_per_username = ratioOf(passwords, usernames);
  std::string numbers =
      fmt::format("logins={} usernames={} passwords={}", logins, usernames, passwords);
  const auto& stuffing = o.credential_stuffing;
  const auto& cracking = o.credential_cracking;
  bool many_usernames = usernames >= stuffing.min_usernames &&
                        per_username <= stuffing.max_attempts_per_username;
  // Password spraying (few passwords over many user names) is guessing,
  // not the replay of stolen pairs that stuffing is.
  bool spraying = many_usernames && passwords * 2 < usernames;
  if (many_usernames && !spraying) {
    fire(kCredentialStuffing, confidenceFor(usernames, stuffing.min_usernames), numbers);
  }
  if (passwords >= cracking.min_passwords &&
      passwords_per_username >= cracking.min_passwords_per_username) {
    fire(kCredentialCracking, confidenceFor(passwords, cracking.min_passwords), numbers);
  } else if (spraying) {
    fire(kCredentialCracking, confidenceFor(usernames, stuffing.min_usernames),
         numbers + " spraying");
  }
}

// Registrations, coupons, cards and comment or contact posts.
void evaluateForms(const BehaviourOptions& o, const Summary& s, Firing& fire) {
  const auto& n = s.counts;
  if (n[kRegister] >= o.account_creation.min_registrations) {
    fire(kAccountCreation, confidenceFor(n[kRegister], o.account_creation.min_registrations),
         fmt::format("registrations={}", n[kRegister]));
  }
  if (n[kNewCoupon] >= o.token_cracking.min_coupons) {
    fire(kTokenCracking, confidenceFor(n[kNewCoupon], o.token_cracking.min_coupons),
         fmt::format("coupons={}", n[kNewCoupon]));
  }
  if (n[kNewValidCard] >= o.carding.min_cards) {
    fire(kCarding, confidenceFor(n[kNewValidCard], o.carding.min_cards),
         fmt::format("luhn_valid_cards={} max_attempts_per_card={}", n[kNewValidCard],
                     s.max_card_attempts));
  }
  if (s.max_card_attempts >= o.card_cracking.min_attempts) {
    fire(kCardCracking, confidenceFor(s.max_card_attempts, o.card_cracking.min_attempts),
         fmt::format("max_attempts_per_card={} luhn_valid_cards={}", s.max_card_attempts,
                     n[kNewValidCard]));
  }

  const auto& spam = o.spamming;
  std::uint64_t posts = n[kPost];
  std::uint64_t link_posts = n[kLinkPost];
  std::uint64_t dense_posts = n[kDensePost];
  if (link_posts >= spam.min_link_posts || posts >= spam.min_posts || dense_posts > 0) {
    double confidence = std::max({confidenceFor(link_posts, spam.min_link_posts),
                                  confidenceFor(posts, spam.min_posts),
                                  dense_posts > 0 ? 0.6 : 0.0});
    fire(kSpamming, confidence,
         fmt::format("posts={} posts_with_links={} dense_posts={}", posts, link_posts,
                     dense_posts));
  }
}

// Request rate and crawl: floods and scraping.
void evaluateRate(const BehaviourOptions& o, const Summary& s, Firing& fire) {
  const auto& n = s.counts;
  std::uint64_t requests = n[kRequests];
  std::uint64_t paths = n[kNewPath];
  double ratio_404 = ratioOf(n[kStatus404], requests);

  // Either a crawl over existing pages, or a walk over the query values of
  // a few scripts (product ids), where most ids may not exist.
  std::uint64_t pages = n[kNewPage];
  std::uint64_t urls = n[kNewUrl];
  std::uint64_t posts = n[kPostRequest];
  bool crawl = pages >= o.scraping.min_pages && ratio_404 <= o.scraping.max_ratio_404;
  bool query_walk = urls >= o.scraping.min_query_urls && paths * 4 <= urls;
  // A scraper reads. A crawl that submits the forms it finds is a scanner's
  // crawl (wapiti posts every form before it sends payloads), so it is not
  // scraping. One post, such as a login before scraping, is allowed.
  bool reads_only = posts <= o.scraping.max_posts;
  if ((crawl || query_walk) && reads_only) {
    double confidence =
        std::max(crawl ? confidenceFor(pages, o.scraping.min_pages) : 0.0,
                 query_walk ? confidenceFor(urls, o.scraping.min_query_urls) : 0.0);
    fire(kScraping, confidence,
         fmt::format("requests={} pages={} urls={} paths={} ratio_404={:.2f} posts={}", requests,
                     pages, urls, paths, ratio_404, posts));
  }

  const auto& dos = o.denial_of_service;
  if (s.span_requests >= dos.min_requests &&
      ratioOf(paths, requests) <= dos.max_distinct_path_ratio) {
    fire(kDenialOfService, confidenceFor(s.span_requests, dos.min_requests),
         fmt::format("requests_in_{}s={:.0f} requests={} paths={}", dos.span_ms / 1000,
                     s.span_requests, requests, paths));
  }
}

// Path breadth, product probes and methods: scanning, footprinting and
// fingerprinting. `tool` is the tool that the record's User-Agent names, or
// nullptr.
void evaluateProbing(const BehaviourOptions& o, const Summary& s, const oat::Tool* tool,
                     Firing& fire) {
  const auto& n = s.counts;
  std::uint64_t requests = n[kRequests];
  std::uint64_t paths = n[kNewPath];
  std::uint64_t attacks = n[kAttack];
  double ratio_404 = ratioOf(n[kStatus404], requests);

  const auto& scanning = o.vulnerability_scanning;
  bool broad_scan = paths >= scanning.min_distinct_paths && ratio_404 >= scanning.min_ratio_404;
  bool payloads = attacks >= scanning.min_attack_requests;
  // A tool made for footprinting and not for vulnerability scanning (nmap's
  // http-enum) walks a list of product paths: its breadth maps the site.
  bool breadth_maps_site = broad_scan && tool != nullptr && tool->isFor("OAT-018") &&
                           !tool->isFor("OAT-014");
  if (payloads || (broad_scan && !breadth_maps_site)) {
    double confidence = std::max(
        attacks > 0 ? confidenceFor(attacks, scanning.min_attack_requests) : 0.0,
        broad_scan && !breadth_maps_site ? confidenceFor(paths, scanning.min_distinct_paths)
                                         : 0.0);
    fire(kVulnerabilityScanning, confidence,
         fmt::format("requests={} attack_requests={} paths={} ratio_404={:.2f}", requests,
                     attacks, paths, ratio_404));
  }

  const auto& footprinting = o.footprinting;
  std::uint64_t product_paths = n[kNewProductPath];
  std::uint64_t unusual = n[kUnusualMethod];
  bool product_sweep = product_paths >= footprinting.min_product_paths;
  bool method_sweep = unusual >= footprinting.min_unusual_methods;
  // A footprinting tool that requests more paths than its default run does
  // (whatweb's aggressive plugins, nmap's enumeration scripts).
  bool tool_sweep =
      tool != nullptr && tool->footprint_paths > 0 && paths >= tool->footprint_paths;
  if (product_sweep || method_sweep || tool_sweep || breadth_maps_site) {
    double confidence = std::max({
        product_sweep ? confidenceFor(product_paths, footprinting.min_product_paths) : 0.0,
        method_sweep ? confidenceFor(unusual, footprinting.min_unusual_methods) : 0.0,
        tool_sweep ? confidenceFor(paths, tool->footprint_paths) : 0.0,
        breadth_maps_site ? confidenceFor(paths, scanning.min_distinct_paths) : 0.0,
    });
    std::string numbers = fmt::format("requests={} product_paths={} unusual_methods={} paths={}",
                                      requests, product_paths, unusual, paths);
    if (tool_sweep || breadth_maps_site) {
      numbers += " tool:" + tool->name;
    }
    fire(kFootprinting, confidence, numbers);
  }

  // A sweep over many product and metadata files explains its version
  // probes too, so it is footprinting alone.
  std::uint64_t probes = n[kNewProbe];
  if (probes >= o.fingerprinting.min_probes && requests <= o.fingerprinting.max_requests &&
      !product_sweep) {
    fire(kFingerprinting, confidenceFor(probes, o.fingerprinting.min_probes),
         fmt::format("requests={} probes={}", requests, probes));
  }
}

// Signals whose verdict later records can withdraw: those that evaluate()
// keeps quiet while a key sends attack payloads, because a scanner fills in
// forms, floods and crawls as part of its scan. The others (OAT-004, 014,
// 018) have no counter-evidence, so their verdicts are final when given.
bool isRevisable(int signal) {
  switch (signal) {
    case kCarding:
    case kTokenCracking:
    case kCredentialCracking:
    case kCredentialStuffing:
    case kCardCracking:
    case kScraping:
    case kDenialOfService:
    case kSpamming:
    case kAccountCreation:
      return true;
    default:
      return false;
  }
}

// Returns the counter-evidence in the window `s` against a provisional
// verdict of `signal`, or an empty string when there is none. This is the
// evidence that keeps the signal from firing: attack payloads for every
// revisable signal, and form posts for scraping (a scraper reads, a
// scanner's crawl submits each form it finds).
std::string counterEvidence(const BehaviourOptions& o, const Summary& s, int signal) {
  const auto& n = s.counts;
  if (n[kAttack] >= o.vulnerability_scanning.min_attack_requests) {
    return fmt::format("attack_requests={}", n[kAttack]);
  }
  if (signal == kScraping && n[kPostRequest] > o.scraping.max_posts) {
    return fmt::format("posts={}", n[kPostRequest]);
  }
  return {};
}

}  // namespace

void BehaviourTagger::Impl::evaluate(const Summary& s, KeyKind kind, const oat::Tool* tool,
                                     Candidates& out) const {
  Firing fire(out, kind, options.window_ms);
  evaluateProbing(options, s, tool, fire);
  // A key that sends attack payloads is a vulnerability scanner: its form
  // posts are fuzzing, and its request rate and crawl belong to the scan, so
  // those signals stay quiet while the payloads are in its window.
  if (s.counts[kAttack] >= options.vulnerability_scanning.min_attack_requests) {
    return;
  }
  evaluateCredentials(options, s, fire);
  evaluateForms(options, s, fire);
  evaluateRate(options, s, fire);
}

namespace {

std::string keyText(KeyKind kind, std::uint64_t key) {
  return fmt::format("{}:{:016x}", keyKindName(kind), key);
}

std::string isoMilliseconds(std::int64_t ms) {
  std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900,
                     utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, ms % 1000);
}

}  // namespace

// A verdict is settled once its evidence has left the key's window, so no
// later record of the key can see that evidence and the counter-evidence
// together. That is when the key's newest record is a whole window past
// the verdict's last record, or when the collector's clock is a whole
// window past that record's arrival.
bool BehaviourTagger::Impl::settled(const SignalVerdict& verdict, std::int64_t newest_ms,
                                    std::int64_t now_ms) const {
  return newest_ms - verdict.last_ms >= options.window_ms ||
         now_ms - verdict.last_arrival_ms >= options.window_ms;
}

void BehaviourTagger::Impl::reviseVerdicts(KeyState& state, KeyKind kind, std::uint64_t key,
                                           const Summary& s, const Observation& o,
                                           const AuditRecord& record, std::int64_t ingest_ms,
                                           Candidates& fired) {
  if (state.verdicts) {
    for (int signal = 0; signal < kSignalCount; ++signal) {
      SignalVerdict& verdict = state.verdicts->signals[signal];
      if (verdict.status != VerdictStatus::kProvisional) {
        continue;
      }
      if (settled(verdict, state.newest_ms, ingest_ms)) {
        verdict.status = VerdictStatus::kFinal;
        continue;
      }
      std::string against = counterEvidence(options, s, signal);
      if (!against.empty()) {
        verdict.status = VerdictStatus::kWithdrawn;
        verdict.withdrawn_ms = o.time_ms;
        verdict.reason = fmt::format("behaviour:withdrawn key={} {} window={}s",
                                     keyKindName(kind), against, options.window_ms / 1000);
        withdrawn_counters[signal]->inc();
      }
    }
  }

  for (int signal = 0; signal < kSignalCount; ++signal) {
    Candidate& candidate = fired[signal];
    if (!candidate.fired) {
      continue;
    }
    if (!state.verdicts) {
      state.verdicts = std::make_unique<KeyVerdictState>();
      state.verdicts->key = keyText(kind, key);
      state.verdicts->kind = kind;
      state.verdicts->source_ip = record.client_ip;
      if (kind == KeyKind::kSourceAgent) {
        for (const HeaderField& header : record.request_headers) {
          if (equalsIgnoreCase(header.name, "user-agent")) {
            state.verdicts->user_agent = header.value.substr(0, 256);
            break;
          }
        }
      }
    }
    SignalVerdict& verdict = state.verdicts->signals[signal];
    // A withdrawn verdict whose counter-evidence has left the window starts
    // again. A final verdict stays final.
    if (verdict.status == VerdictStatus::kNone || verdict.status == VerdictStatus::kWithdrawn) {
      verdict = SignalVerdict{};
      verdict.status = isRevisable(signal) ? VerdictStatus::kProvisional : VerdictStatus::kFinal;
      verdict.first_ms = o.time_ms;
    }
    verdict.last_ms = std::max(verdict.last_ms, o.time_ms);
    verdict.last_arrival_ms = ingest_ms;
    ++verdict.records;
    verdict.confidence = std::max(verdict.confidence, candidate.confidence);
    verdict.reason = candidate.reason;
    candidate.key = state.verdicts->key;
    candidate.provisional = verdict.status == VerdictStatus::kProvisional;
  }
}

void BehaviourTagger::Impl::appendVerdicts(const KeyVerdictState& state, std::int64_t newest_ms,
                                           std::int64_t now_ms,
                                           std::vector<OatVerdict>& out) const {
  for (int signal = 0; signal < kSignalCount; ++signal) {
    const SignalVerdict& verdict = state.signals[signal];
    if (verdict.status == VerdictStatus::kNone) {
      continue;
    }
    VerdictStatus status = verdict.status;
    if (status == VerdictStatus::kProvisional && settled(verdict, newest_ms, now_ms)) {
      status = VerdictStatus::kFinal;
    }
    OatVerdict& entry = out.emplace_back();
    entry.id = kSignalOat[signal];
    if (const oat::Threat* threat = ontology.find(entry.id)) {
      entry.name = threat->name;
    }
    entry.key = state.key;
    entry.status = verdictStatusName(status);
    entry.confidence = verdict.confidence;
    entry.first_ms = verdict.first_ms;
    entry.last_ms = verdict.last_ms;
    entry.records = verdict.records;
    entry.reason = verdict.reason;
    entry.withdrawn_ms = verdict.withdrawn_ms;
  }
}

void BehaviourTagger::Impl::observeKey(KeyKind kind, std::uint64_t key, const Observation& o,
                                       const AuditRecord& record, std::int64_t ingest_ms,
                                       Candidates& record_candidates,
                                       std::vector<OatVerdict>* verdicts, bool& late) {
  Shard& shard = *shards[key % shards.size()];
  std::lock_guard lock(shard.mutex);
  if (std::list<Entry>::iterator* found = shard.index.find(key)) {
    shard.entries.splice(shard.entries.begin(), shard.entries, *found);
  } else if (shard.entries.size() >= shard_cap) {
    // The least recently seen key makes room. Its entry is reset and moved
    // to the front for the new key, so a flood of new addresses allocates
    // nothing once the shard is full.
    auto oldest = std::prev(shard.entries.end());
    shard.index.erase(oldest->key);
    evictions.inc();
    oldest->key = key;
    oldest->state.reset();
    shard.entries.splice(shard.entries.begin(), shard.entries, oldest);
    shard.index.insert(key, shard.entries.begin());
  } else {
    shard.entries.emplace_front();
    shard.entries.front().key = key;
    shard.index.insert(key, shard.entries.begin());
    tracked_keys.add(1);
  }
  KeyState& state = shard.entries.front().state;
  if (kind == KeyKind::kSource) {
    // While an address shows one user agent, its windows would repeat those
    // of its address and agent key, so it counts only from the second agent.
    std::int64_t window_start = o.time_ms - options.window_ms;
    state.agents.add(o.agent_hash, o.time_ms, window_start, kAgentCap);
    if (state.agents.countSince(window_start) < 2) {
      return;
    }
  }
  if (!add(state, o)) {
    late = true;
  }
  Summary summary = summarize(state, o.time_ms);
  // The address alone is an actor only when it rotates user agents;
  // otherwise each agent behind one address (NAT) keeps its own window.
  if (kind == KeyKind::kSource && summary.agents < options.ua_rotation) {
    return;
  }
  Candidates fired;
  evaluate(summary, kind, o.tool, fired);
  reviseVerdicts(state, kind, key, summary, o, record, ingest_ms, fired);
  // The most confident key gives a signal's tag; the first key on a tie.
  for (int signal = 0; signal < kSignalCount; ++signal) {
    Candidate& candidate = fired[signal];
    Candidate& kept = record_candidates[signal];
    if (candidate.fired && (!kept.fired || candidate.confidence > kept.confidence)) {
      kept = std::move(candidate);
    }
  }
  if (verdicts != nullptr && state.verdicts) {
    appendVerdicts(*state.verdicts, state.newest_ms, ingest_ms, *verdicts);
  }
}

BehaviourTagger::BehaviourTagger(BehaviourOptions options, MetricsRegistry& metrics)
    : impl_(std::make_unique<Impl>(std::move(options), metrics)) {
  if (impl_->options.enabled) {
    spdlog::info("collector: behaviour tagger started {}",
                 describeBehaviourOptions(impl_->options));
  } else {
    spdlog::info("collector: behaviour tagger disabled (behaviour.enabled: false)");
  }
}

BehaviourTagger::~BehaviourTagger() = default;

const BehaviourOptions& BehaviourTagger::options() const { return impl_->options; }

std::vector<KeyVerdicts> BehaviourTagger::verdicts(std::int64_t now_ms,
                                                   std::size_t limit) const {
  // Most recently seen first. The table is a heap of at most `limit` rows
  // whose front is the row that sorts last, so a request copies `limit`
  // rows, not every key with a verdict (up to behaviour.max_keys).
  auto before = [](std::int64_t a_ms, const std::string& a_key, std::int64_t b_ms,
                   const std::string& b_key) {
    return a_ms > b_ms || (a_ms == b_ms && a_key < b_key);
  };
  auto row_before = [&](const KeyVerdicts& a, const KeyVerdicts& b) {
    return before(a.newest_ms, a.key, b.newest_ms, b.key);
  };
  std::vector<KeyVerdicts> table;
  if (limit == 0) {
    return table;
  }
  for (const auto& shard : impl_->shards) {
    std::lock_guard lock(shard->mutex);
    for (const Impl::Entry& entry : shard->entries) {
      const KeyState& state = entry.state;
      if (!state.verdicts) {
        continue;
      }
      if (table.size() >= limit) {
        const KeyVerdicts& last = table.front();
        if (!before(state.newest_ms, state.verdicts->key, last.newest_ms, last.key)) {
          continue;
        }
        std::pop_heap(table.begin(), table.end(), row_before);
        table.pop_back();
      }
      KeyVerdicts& row = table.emplace_back();
      row.key = state.verdicts->key;
      row.kind = keyKindName(state.verdicts->kind);
      row.source_ip = state.verdicts->source_ip;
      row.user_agent = state.verdicts->user_agent;
      row.newest_ms = state.newest_ms;
      impl_->appendVerdicts(*state.verdicts, state.newest_ms, now_ms, row.verdicts);
      std::push_heap(table.begin(), table.end(), row_before);
    }
  }
  std::sort_heap(table.begin(), table.end(), row_before);
  return table;
}

std::size_t BehaviourTagger::trackedKeys() const {
  std::size_t total = 0;
  for (const auto& shard : impl_->shards) {
    std::lock_guard lock(shard->mutex);
    total += shard->entries.size();
  }
  return total;
}

std::vector<OatTag> BehaviourTagger::observe(const AuditRecord& record, std::int64_t ingest_ms,
                                             std::vector<OatVerdict>* verdicts) {
  Impl& impl = *impl_;
  if (!impl.options.enabled) {
    return {};
  }
  Observation o = impl.read(record, ingest_ms);
  Candidates candidates;
  bool late = false;

  if (!record.client_ip.empty()) {
    std::uint64_t ip_hash = hashText(record.client_ip);
    impl.observeKey(KeyKind::kSourceAgent, keyHash(KeyKind::kSourceAgent, ip_hash, o.agent_hash),
                    o, record, ingest_ms, candidates, verdicts, late);
    impl.observeKey(KeyKind::kSource, keyHash(KeyKind::kSource, ip_hash, 0), o, record,
                    ingest_ms, candidates, verdicts, late);
  }
  std::uint64_t session = impl.sessionHash(record);
  if (session != 0) {
    impl.observeKey(KeyKind::kSession, keyHash(KeyKind::kSession, session, 0), o, record,
                    ingest_ms, candidates, verdicts, late);
  }
  if (late) {
    impl.late_records.inc();
  }

  // Form signals tag only the posts they count, so a source's page views
  // stay untagged while its login posts get OAT-007 or OAT-008.
  bool login = o.form == FormKind::kLogin;
  std::array<bool, kSignalCount> applies{};
  applies.fill(true);
  applies[kCredentialStuffing] = login;
  applies[kCredentialCracking] = login;
  applies[kAccountCreation] = o.form == FormKind::kRegister;
  applies[kTokenCracking] = o.has_coupon;
  applies[kCarding] = !o.cards.empty();
  applies[kCardCracking] = !o.cards.empty();
  applies[kSpamming] = o.form == FormKind::kText;

  std::vector<OatTag> tags;
  for (int signal = 0; signal < kSignalCount; ++signal) {
    Candidate& candidate = candidates[signal];
    if (!candidate.fired || !applies[signal]) {
      continue;
    }
    OatTag& tag = tags.emplace_back(impl.ontology.tag(
        kSignalOat[signal], "behaviour", candidate.confidence, std::move(candidate.reason)));
    tag.key = std::move(candidate.key);
    tag.provisional = candidate.provisional;
    impl.tag_counters[signal]->inc();
  }
  return tags;
}

void writeOatVerdict(JsonWriter& writer, const OatVerdict& verdict) {
  writer.beginObject();
  writer.member("id", verdict.id);
  writer.member("name", verdict.name);
  writer.member("key", verdict.key);
  writer.member("status", verdict.status);
  writer.key("confidence");
  writer.raw(fmt::format("{}", std::isfinite(verdict.confidence) ? verdict.confidence : 0.0));
  writer.member("first", isoMilliseconds(verdict.first_ms));
  writer.member("last", isoMilliseconds(verdict.last_ms));
  writer.member("records", static_cast<std::int64_t>(verdict.records));
  writer.member("reason", verdict.reason);
  if (verdict.withdrawn_ms != 0) {
    writer.member("withdrawn", isoMilliseconds(verdict.withdrawn_ms));
  }
  writer.endObject();
}

std::string keyVerdictsJson(std::span<const KeyVerdicts> table) {
  std::string out;
  JsonWriter writer(out);
  writer.beginObject();
  writer.key("keys");
  writer.beginArray();
  for (const KeyVerdicts& row : table) {
    writer.beginObject();
    writer.member("key", row.key);
    writer.member("kind", row.kind);
    writer.member("source_ip", row.source_ip);
    if (!row.user_agent.empty()) {
      writer.member("user_agent", row.user_agent);
    }
    writer.member("newest", isoMilliseconds(row.newest_ms));
    writer.key("verdicts");
    writer.beginArray();
    for (const OatVerdict& verdict : row.verdicts) {
      writeOatVerdict(writer, verdict);
    }
    writer.endArray();
    writer.endObject();
  }
  writer.endArray();
  writer.endObject();
  return out;
}

}  // namespace webtrap::collector
