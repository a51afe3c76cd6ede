#include "probe/inspector.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <fstream>
#include <list>
#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>
#include <modsecurity/intervention.h>
#include <modsecurity/modsecurity.h>
#include <modsecurity/rule_message.h>
#include <modsecurity/rule_with_actions.h>
#include <modsecurity/rules_set.h>
#include <modsecurity/transaction.h>
#include <spdlog/spdlog.h>

#include "common/encoding.h"
#include "common/error.h"
#include "common/log_throttle.h"

namespace webtrap::probe {
namespace {

namespace fs = std::filesystem;

// Rule ids 77900-77999 are reserved for the engine setup that the inspector
// generates, so that they never collide with CRS or with webtrap's rule files.
std::string buildPreamble(const InspectorConfig& config) {
  std::uint64_t body_limit = std::max<std::uint64_t>(config.body_limit, 1);
  return fmt::format(
      "SecRuleEngine DetectionOnly\n"
      "SecRequestBodyAccess On\n"
      "SecResponseBodyAccess On\n"
      "SecRequestBodyLimit {0}\n"
      "SecRequestBodyNoFilesLimit {0}\n"
      "SecRequestBodyLimitAction ProcessPartial\n"
      "SecResponseBodyLimit {0}\n"
      "SecResponseBodyLimitAction ProcessPartial\n"
      "SecResponseBodyMimeType text/plain text/html text/xml application/json\n"
      "SecArgumentSeparator &\n"
      "SecCookieFormat 0\n"
      "SecAuditEngine Off\n"
      "SecStatusEngine Off\n"
      // libmodsecurity parses urlencoded and multipart bodies by itself, but
      // XML and JSON bodies only when a rule selects the body processor.
      "SecRule REQUEST_HEADERS:Content-Type \"@rx ^(?:application|text)/(?:[a-z0-9.+-]+\\+)?xml\" "
      "\"id:77900,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML\"\n"
      "SecRule REQUEST_HEADERS:Content-Type \"@rx ^application/(?:[a-z0-9.+-]+\\+)?json\" "
      "\"id:77901,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON\"\n"
      // The same variables that CRS rule 900000 in crs-setup.conf sets. CRS
      // rule 901120 keeps them because they are already set when it runs.
      "SecAction \"id:77902,phase:1,pass,nolog,t:none,"
      "setvar:tx.paranoia_level={1},setvar:tx.executing_paranoia_level={1}\"\n",
      body_limit, config.paranoia_level);
}

void loadRuleFile(modsecurity::RulesSet& rules, const fs::path& path) {
  std::error_code error;
  if (!fs::is_regular_file(path, error)) {
    throw ConfigError(
        fmt::format("{}: rule file not found; check the modsecurity path settings", path.string()));
  }
  if (rules.loadFromUri(path.c_str()) < 0) {
    throw ConfigError(
        fmt::format("{}: invalid rule file: {}", path.string(), rules.getParserError()));
  }
}

// Returns the .conf files of `folder` sorted by name, which is the load order
// that CRS file names are designed for.
std::vector<fs::path> listRuleFiles(const fs::path& folder, std::string_view label) {
  std::error_code error;
  if (!fs::is_directory(folder, error)) {
    throw ConfigError(fmt::format("{}: {} folder not found; check the modsecurity path settings",
                                  folder.string(), label));
  }
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(folder)) {
    if (entry.is_regular_file() && entry.path().extension() == ".conf") {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Category tags in CRS style by rule id prefix. Rules that use multiMatch
// (942100 with libinjection, some 930 and 934 rules) lose their tags in
// libmodsecurity 3.0.9, so the classifier would not see their category.
// 944 maps to attack-rce because that is the tag CRS 3.3.4 puts on its Java rules.
std::string_view categoryForRuleId(int id) {
  struct Range {
    int first;
    int last;
    std::string_view tag;
  };
  static constexpr std::array<Range, 16> kRanges{{
      {903000, 905999, "attack-generic"},
      {910000, 910999, "attack-reputation-ip"},
      {911000, 911999, "attack-generic"},
      {912000, 912999, "attack-dos"},
      {913000, 913999, "attack-reputation-scanner"},
      {920000, 922999, "attack-protocol"},
      {930000, 930999, "attack-lfi"},
      {931000, 931999, "attack-rfi"},
      {932000, 932999, "attack-rce"},
      {933000, 933999, "attack-injection-php"},
      {934000, 934999, "attack-injection-nodejs"},
      {941000, 941999, "attack-xss"},
      {942000, 942999, "attack-sqli"},
      {943000, 943999, "attack-fixation"},
      {944000, 944999, "attack-rce"},
      {950000, 954999, "attack-disclosure"},
  }};
  for (const auto& range : kRanges) {
    if (id >= range.first && id <= range.last) {
      return range.tag;
    }
  }
  return {};
}

bool hasCategoryTag(const std::vector<std::string>& tags) {
  return std::any_of(tags.begin(), tags.end(),
                     [](const std::string& tag) { return tag.rfind("attack-", 0) == 0; });
}

RuleMatch toRuleMatch(const modsecurity::RuleMessage& message) {
  RuleMatch match;
  match.id = std::to_string(message.m_ruleId);
  match.message = message.m_message;
  match.data = message.m_data;
  match.match = message.m_match;
  match.reference = message.m_reference;
  if (message.m_ruleFile) {
    match.file = *message.m_ruleFile;
  }
  match.line = message.m_ruleLine;
  match.phase = message.m_phase;
  bool has_severity = message.m_rule != nullptr && message.m_rule->hasSeverity();
  match.severity = has_severity ? message.m_severity : -1;
  match.version = message.m_ver;
  match.revision = message.m_rev;
  match.maturity = message.m_maturity;
  match.accuracy = message.m_accuracy;
  match.tags.assign(message.m_tags.begin(), message.m_tags.end());

  if (!hasCategoryTag(match.tags)) {
    std::string_view category = categoryForRuleId(message.m_ruleId);
    if (!category.empty()) {
      match.tags.emplace_back(category);
    }
  }
  return match;
}

// The addresses that CRS 3.3.4 rules 905100, 905110 and 903.9005's cPanel
// rule compare REMOTE_ADDR with ("@ipMatch 127.0.0.1,::1").
bool isCrsLoopback(const std::string& address) {
  return address == "127.0.0.1" || address == "::1";
}

// Words that, on a non-comment line of a setup or extra rule file, mean a rule
// may read the client address or per-client state, so the cache key has to
// include the address. At the shipped settings (Debian's crs-setup.conf, no
// extra rules) no line contains them.
bool mentionsClientState(const fs::path& path) {
  static constexpr std::array<std::string_view, 17> kMarkers{
      "remote_addr",
      "remote_port",
      "remote_host",
      "ip:",
      "ip.",
      "geo",
      "initcol",
      "real_ip",
      "high_risk_country_codes",
      "dos_burst_time_slice",
      "dos_counter_threshold",
      "dos_block_timeout",
      "httpbl_api_key",
      "block_search_ip",
      "do_reput_block",
      "sampling_percentage",
      "unique_id",
  };
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') {
      continue;
    }
    std::transform(line.begin(), line.end(), line.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    for (auto marker : kMarkers) {
      if (line.find(marker) != std::string::npos) {
        return true;
      }
    }
  }
  return false;
}

// Whether a rule file reads response headers. No rule of CRS 3.3.4 or of
// webtrap does, so by default they stay out of the cache key: the persona's
// Date header and fresh session cookies would otherwise make every response
// unique.
bool mentionsResponseHeaders(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::transform(line.begin(), line.end(), line.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (line.find("response_headers") != std::string::npos) {
      return true;
    }
  }
  return false;
}

// Incremental SHA-256 with a length prefix before every field, so that no two
// different field sequences produce the same byte stream.
class KeyHasher {
 public:
  KeyHasher() : context_(EVP_MD_CTX_new()) {
    if (context_ == nullptr || EVP_DigestInit_ex(context_, EVP_sha256(), nullptr) != 1) {
      throw std::runtime_error("SHA-256 initialisation failed");
    }
  }
  ~KeyHasher() { EVP_MD_CTX_free(context_); }
  KeyHasher(const KeyHasher&) = delete;
  KeyHasher& operator=(const KeyHasher&) = delete;

  void add(std::string_view field) {
    std::uint64_t size = field.size();
    std::array<unsigned char, 8> prefix{};
    for (std::size_t i = 0; i < prefix.size(); ++i) {
      prefix[i] = static_cast<unsigned char>(size >> (8 * i));
    }
    EVP_DigestUpdate(context_, prefix.data(), prefix.size());
    EVP_DigestUpdate(context_, field.data(), field.size());
  }

  std::string finish() {
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int size = 0;
    EVP_DigestFinal_ex(context_, digest.data(), &size);
    return std::string(reinterpret_cast<const char*>(digest.data()), size);
  }

 private:
  EVP_MD_CTX* context_;
};

struct CachedResult {
  std::vector<RuleMatch> matches;
  int anomaly_score = 0;
  MatchDetailCuts details_cut;
};

// Least recently used map from cache key to result, shared by all workers.
class ResultCache {
 public:
  explicit ResultCache(std::size_t capacity) : capacity_(capacity) {}

  std::optional<CachedResult> find(const std::string& key) {
    std::lock_guard lock(mutex_);
    auto found = index_.find(key);
    if (found == index_.end()) {
      return std::nullopt;
    }
    entries_.splice(entries_.begin(), entries_, found->second);
    return found->second->second;
  }

  void insert(const std::string& key, CachedResult result) {
    std::lock_guard lock(mutex_);
    auto found = index_.find(key);
    if (found != index_.end()) {
      found->second->second = std::move(result);
      entries_.splice(entries_.begin(), entries_, found->second);
      return;
    }
    entries_.emplace_front(key, std::move(result));
    index_.emplace(key, entries_.begin());
    if (entries_.size() > capacity_) {
      index_.erase(entries_.back().first);
      entries_.pop_back();
    }
  }

 private:
  using Entry = std::pair<std::string, CachedResult>;

  std::size_t capacity_;
  std::mutex mutex_;
  std::list<Entry> entries_;  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

// Frees what intervention() allocated. DetectionOnly never disrupts, but the
// log string is still allocated whenever a rule asked for an intervention.
void drainIntervention(modsecurity::Transaction& transaction) {
  modsecurity::ModSecurityIntervention intervention;
  modsecurity::intervention::clean(&intervention);
  transaction.intervention(&intervention);
  modsecurity::intervention::free(&intervention);
}

int readAnomalyScore(modsecurity::Transaction& transaction) {
  auto value = transaction.m_collections.m_tx_collection->resolveFirst("anomaly_score");
  if (!value) {
    return 0;
  }
  try {
    return std::stoi(*value);
  } catch (const std::exception&) {
    return 0;
  }
}

// Rule messages are attacker data and go to the audit record only. Without a
// callback, libmodsecurity 3.0.9 prints a line for every rule message.
void discardServerLog(void* /*data*/, const void* /*message*/) {}

// libmodsecurity 3.0.9 keeps the closing quote of a quoted
// SecComponentSignature value ("OWASP_CRS/3.3.4\"").
std::string trimQuotes(std::string text) {
  while (!text.empty() && (text.back() == '"' || text.back() == '\'')) {
    text.pop_back();
  }
  while (!text.empty() && (text.front() == '"' || text.front() == '\'')) {
    text.erase(0, 1);
  }
  return text;
}

std::int64_t microsecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                               start)
      .count();
}

// The max number of fields that libmodsecurity receives from a query
// string or a urlencoded, multipart or JSON body. Its argument handling grows
// about quadratically with the field count (libmodsecurity 3.0.9 with CRS:
// 8000 urlencoded fields about 2 s of CPU, 16000 about 10 s; 16000 JSON
// members about 15 s). Extrapolated, one 1 MiB body of "a=1&a=1..." would
// hold a worker for most of an hour. PHP itself reads at most
// max_input_vars fields, 1000 by default, so the PHP persona's application
// never reads the rest either. The record keeps every byte.
constexpr std::size_t kMaxInspectedFields = 1000;

// Returns `text` up to the `max`-th byte that is one of `separators`.
std::string_view beforeSeparator(std::string_view text, std::string_view separators,
                                 std::size_t max) {
  std::size_t pos = 0;
  for (std::size_t count = 0; count < max; ++count) {
    pos = text.find_first_of(separators, pos);
    if (pos == std::string_view::npos) {
      return text;
    }
    ++pos;
  }
  return text.substr(0, pos - 1);
}

// Returns `text` up to the '&' that ends its kMaxInspectedFields-th field.
std::string_view firstFields(std::string_view text) {
  return beforeSeparator(text, "&", kMaxInspectedFields);
}

// Returns `target` with its query string cut by firstFields.
std::string inspectedTarget(const std::string& target) {
  std::size_t question = target.find('?');
  if (question == std::string::npos) {
    return target;
  }
  std::string_view query = std::string_view(target).substr(question + 1);
  return target.substr(0, question + 1) + std::string(firstFields(query));
}

// Returns the boundary parameter of a multipart Content-Type, unquoted, or
// an empty string.
std::string multipartBoundary(std::string_view content_type) {
  std::string lower(content_type);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  std::size_t start = lower.find("boundary=");
  if (start == std::string::npos) {
    return {};
  }
  std::string_view value = content_type.substr(start + 9);
  value = value.substr(0, value.find(';'));
  if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
    value = value.substr(1, value.size() - 2);
  }
  return std::string(value);
}

// Returns a multipart body cut before the delimiter of its part number
// kMaxInspectedFields + 1, with a closing delimiter added so that it stays
// well formed, or nullopt when the body has no more parts than that.
std::optional<std::string> firstParts(std::string_view body, const std::string& boundary) {
  std::string delimiter = "\r\n--" + boundary;
  // The first delimiter may start the body without a CRLF before it.
  std::size_t pos = 0;
  if (!body.starts_with(std::string_view(delimiter).substr(2))) {
    pos = body.find(delimiter);
  }
  for (std::size_t part = 0; part < kMaxInspectedFields && pos != std::string_view::npos; ++part) {
    pos = body.find(delimiter, pos + 1);
  }
  if (pos == std::string_view::npos) {
    return std::nullopt;
  }
  std::string cut(body.substr(0, pos));
  cut += delimiter;
  cut += "--\r\n";
  return cut;
}

// Returns the body bytes to inspect: a urlencoded body cut by firstFields,
// a multipart body cut by firstParts (kept in `storage`), a JSON body cut
// before its (2 * kMaxInspectedFields)-th ':' or ',', any other body whole.
// Each JSON member adds a ':' and each array element after the first a ',',
// so at most that many fields reach libmodsecurity. A cut JSON body is
// invalid, as a body past the body limit already is, and libmodsecurity
// keeps the fields it parsed before the cut.
std::string_view inspectedBody(const CapturedRequest& request, std::string& storage) {
  const std::string* content_type = findHeader(request.headers, "Content-Type");
  if (content_type == nullptr) {
    return request.body;
  }
  if (startsWithIgnoreCase(*content_type, "application/x-www-form-urlencoded")) {
    return firstFields(request.body);
  }
  if (startsWithIgnoreCase(*content_type, "multipart/")) {
    std::string boundary = multipartBoundary(*content_type);
    if (boundary.empty()) {
      return request.body;
    }
    std::optional<std::string> cut = firstParts(request.body, boundary);
    if (!cut) {
      return request.body;
    }
    storage = std::move(*cut);
    return storage;
  }
  // Every type that rule 77901 sends to the JSON body processor, and a few more.
  std::string lower = *content_type;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  if (lower.starts_with("application/") && lower.find("json") != std::string::npos) {
    return beforeSeparator(request.body, ":,", 2 * kMaxInspectedFields);
  }
  return request.body;
}

}  // namespace

struct Inspector::Impl {
  Impl(const InspectorConfig& config, MetricsRegistry& metrics)
      : engine(std::make_unique<modsecurity::ModSecurity>()),
        rules(std::make_unique<modsecurity::RulesSet>()),
        complete(metrics.counter("webtrap_inspections_total",
                                 "Requests inspected by ModSecurity, by outcome.",
                                 R"(status="complete")")),
        cached(metrics.counter("webtrap_inspections_total",
                               "Requests inspected by ModSecurity, by outcome.",
                               R"(status="cached")")),
        failed(metrics.counter("webtrap_inspections_total",
                               "Requests inspected by ModSecurity, by outcome.",
                               R"(status="failed")")),
        cache_hits(metrics.counter("webtrap_inspection_cache_hits_total",
                                   "Inspections answered from the result cache.")),
        rule_matches(
            metrics.counter("webtrap_rule_matches_total",
                            "Rule messages reported by ModSecurity, cached ones included.")),
        cut_strings(metrics.counter(
            "webtrap_match_details_cut_total",
            "Rule match details cut to bound the record size, by kind, cached ones included.",
            R"(kind="truncated_string")")),
        cut_reduced(metrics.counter(
            "webtrap_match_details_cut_total",
            "Rule match details cut to bound the record size, by kind, cached ones included.",
            R"(kind="reduced_match")")),
        cut_omitted(metrics.counter(
            "webtrap_match_details_cut_total",
            "Rule match details cut to bound the record size, by kind, cached ones included.",
            R"(kind="omitted_match")")),
        cut_records(metrics.counter(
            "webtrap_match_details_cut_records_total",
            "Inspection results whose rule match details were cut, cached ones included.")),
        match_limits(config.match_limits) {
    engine->setConnectorInformation("webtrap " WEBTRAP_VERSION);
    engine->setServerLogCb(discardServerLog, modsecurity::RuleMessageLogProperty);
    loadRules(config);
    engine_version = engine->whoAmI();
    for (const auto& component : rules->m_components) {
      components.push_back(trimQuotes(component));
    }
    if (config.cache_entries > 0) {
      cache = std::make_unique<ResultCache>(config.cache_entries);
    }
  }

  void loadRules(const InspectorConfig& config) {
    if (rules->load(buildPreamble(config).c_str(), "webtrap-preamble") < 0) {
      throw ConfigError(
          fmt::format("generated ModSecurity preamble: invalid: {}", rules->getParserError()));
    }

    std::vector<fs::path> setup_files{config.crs_setup};
    setup_files.insert(setup_files.end(), config.extra_rules.begin(), config.extra_rules.end());
    for (const auto& path : setup_files) {
      loadRuleFile(*rules, path);
      key_includes_client |= mentionsClientState(path);
      key_includes_response_headers |= mentionsResponseHeaders(path);
    }

    // CRS evaluates the anomaly score in REQUEST-949, and in blocking mode
    // nothing after 949110 runs, so webtrap's rules go right before it.
    std::vector<fs::path> crs_late;
    for (const auto& path : listRuleFiles(config.crs_rules, "CRS rules")) {
      std::string name = path.filename().string();
      bool request_file = name.rfind("REQUEST-", 0) == 0;
      bool response_file = name.rfind("RESPONSE-", 0) == 0;
      if (request_file && name < "REQUEST-949") {
        loadRuleFile(*rules, path);
      } else if (request_file || response_file) {
        crs_late.push_back(path);
      }
      key_includes_response_headers |= mentionsResponseHeaders(path);
    }
    if (!config.webtrap_rules.empty()) {
      for (const auto& path : listRuleFiles(config.webtrap_rules, "webtrap rules")) {
        loadRuleFile(*rules, path);
        key_includes_response_headers |= mentionsResponseHeaders(path);
      }
    }
    for (const auto& path : crs_late) {
      loadRuleFile(*rules, path);
    }
  }

  // Why the client address and ports stay out of the key at the shipped
  // settings (CRS 3.3.4 as Debian ships it, crs-setup.conf unchanged):
  // - 910xxx (IP reputation) reads the IP collection and GEO only when
  //   tx.do_reput_block, tx.high_risk_country_codes or an RBL key is
  //   configured. Unset, every 910 rule is skipped or never matches, and no
  //   rule writes to the IP collection.
  // - 912xxx (DoS) skips itself while tx.dos_burst_time_slice,
  //   tx.dos_counter_threshold and tx.dos_block_timeout are all unset.
  // - 901321 sets tx.real_ip and initcol:ip from REMOTE_ADDR, but only 910
  //   and 912 read them.
  // - 901410 reads UNIQUE_ID and DURATION for sampling, which is skipped at
  //   the default tx.sampling_percentage of 100.
  // - 905100 (request line "GET /", Apache's SSL pinger), 905110 (Apache's
  //   internal dummy connection) and 903.9005 (when cPanel exclusions are
  //   on) change the result for loopback clients: 905100 and 905110 turn the
  //   engine off. So whether the client is 127.0.0.1 or ::1 is part of the key.
  // When the setup or an extra rule file mentions the client address or
  // per-client state, the full address and ports join the key (see
  // mentionsClientState).
  std::string cacheKey(const CapturedRequest& request, const PersonaResponse& response,
                       const RouteOutcome& outcome, std::string_view response_body) const {
    KeyHasher hasher;
    hasher.add(isCrsLoopback(request.client.address) ? "loopback" : "remote");
    if (key_includes_client) {
      hasher.add(request.client.address);
      hasher.add(std::to_string(request.client.port));
    }
    hasher.add(request.server.address);
    hasher.add(std::to_string(request.server.port));
    hasher.add(request.method);
    hasher.add(request.target);
    hasher.add(request.http_version);
    hasher.add(std::to_string(request.headers.size()));
    for (const auto& header : request.headers) {
      hasher.add(header.name);
      hasher.add(header.value);
    }
    hasher.add(request.body);
    hasher.add(std::to_string(outcome.tx.size()));
    for (const auto& [name, value] : outcome.tx) {
      hasher.add(name);
      hasher.add(value);
    }
    hasher.add(std::to_string(response.status));
    for (const auto& header : response.headers) {
      // Content-Type decides whether libmodsecurity reads the response body
      // (SecResponseBodyMimeType), so it is always part of the key.
      if (key_includes_response_headers || equalsIgnoreCase(header.name, "Content-Type") ||
          equalsIgnoreCase(header.name, "Content-Encoding")) {
        hasher.add(header.name);
        hasher.add(header.value);
      }
    }
    hasher.add(response_body);
    return hasher.finish();
  }

  // Runs every phase on a new transaction. Returns an error text when
  // libmodsecurity reported a failure, empty otherwise.
  std::string run(const CapturedRequest& request, const PersonaResponse& response,
                  const RouteOutcome& outcome, std::string_view response_body,
                  const std::string& transaction_id, CachedResult& out) {
    std::string id = transaction_id;
    modsecurity::Transaction transaction(engine.get(), rules.get(), id.data(), nullptr);
    std::string error;
    auto check = [&error](int status, const char* step) {
      if (status == 0 && error.empty()) {
        error = fmt::format("libmodsecurity {} failed", step);
      }
    };

    check(transaction.processConnection(request.client.address.c_str(), request.client.port,
                                        request.server.address.c_str(), request.server.port),
          "processConnection");
    const std::string& version =
        request.http_version.empty() ? kDefaultVersion : request.http_version;
    std::string target = inspectedTarget(request.target);
    check(transaction.processURI(target.c_str(), request.method.c_str(), version.c_str()),
          "processURI");
    for (const auto& header : request.headers) {
      transaction.addRequestHeader(
          reinterpret_cast<const unsigned char*>(header.name.data()), header.name.size(),
          reinterpret_cast<const unsigned char*>(header.value.data()), header.value.size());
    }
    for (const auto& [name, value] : outcome.tx) {
      transaction.m_collections.m_tx_collection->storeOrUpdateFirst(name, value);
    }
    check(transaction.processRequestHeaders(), "processRequestHeaders");
    drainIntervention(transaction);

    std::string body_storage;
    std::string_view body = inspectedBody(request, body_storage);
    transaction.appendRequestBody(reinterpret_cast<const unsigned char*>(body.data()),
                                  body.size());
    check(transaction.processRequestBody(), "processRequestBody");
    drainIntervention(transaction);
    out.anomaly_score = readAnomalyScore(transaction);

    for (const auto& header : response.headers) {
      transaction.addResponseHeader(
          reinterpret_cast<const unsigned char*>(header.name.data()), header.name.size(),
          reinterpret_cast<const unsigned char*>(header.value.data()), header.value.size());
    }
    check(transaction.processResponseHeaders(response.status, "HTTP/1.1"),
          "processResponseHeaders");
    drainIntervention(transaction);
    transaction.appendResponseBody(reinterpret_cast<const unsigned char*>(response_body.data()),
                                   response_body.size());
    check(transaction.processResponseBody(), "processResponseBody");
    drainIntervention(transaction);
    check(transaction.processLogging(), "processLogging");

    for (const auto& message : transaction.m_rulesMessages) {
      // Rules marked nolog or noauditlog asked to stay out of the audit log,
      // so they stay out of the record too.
      if (!message.m_saveMessage || message.m_noAuditLog || message.m_ruleId == 0) {
        continue;
      }
      out.matches.push_back(toRuleMatch(message));
    }
    // Bounded here, before the result reaches the cache or the record writer.
    out.details_cut = boundMatchDetails(out.matches, match_limits);
    return error;
  }

  static inline const std::string kDefaultVersion = "1.1";

  std::unique_ptr<modsecurity::ModSecurity> engine;
  std::unique_ptr<modsecurity::RulesSet> rules;
  std::string engine_version;
  std::vector<std::string> components;
  bool key_includes_client = false;
  bool key_includes_response_headers = false;
  std::unique_ptr<ResultCache> cache;

  Counter& complete;
  Counter& cached;
  Counter& failed;
  Counter& cache_hits;
  Counter& rule_matches;
  Counter& cut_strings;
  Counter& cut_reduced;
  Counter& cut_omitted;
  Counter& cut_records;
  MatchDetailLimits match_limits;
  LogThrottle cut_log{std::chrono::seconds(60)};

  // Counts the cuts of a result and logs them, once a minute at most.
  void countCuts(const MatchDetailCuts& cuts, const std::string& transaction_id) {
    if (!cuts.any()) {
      return;
    }
    cut_strings.inc(cuts.truncated_strings);
    cut_reduced.inc(cuts.reduced_matches);
    cut_omitted.inc(cuts.omitted_matches);
    cut_records.inc();
    std::lock_guard lock(cut_log_mutex);
    if (cut_log.admit()) {
      spdlog::warn(
          "rule match details cut to bound the record: event_id={} truncated_strings={} "
          "reduced_matches={} omitted_matches={} (modsecurity.match_string_max_bytes={} "
          "modsecurity.match_details_max_bytes={}; docs/records.md); {} similar lines suppressed",
          transaction_id, cuts.truncated_strings, cuts.reduced_matches, cuts.omitted_matches,
          match_limits.max_string_bytes, match_limits.max_total_bytes, cut_log.takeSuppressed());
    }
  }
  std::mutex cut_log_mutex;
};

Inspector::Inspector(const InspectorConfig& config, MetricsRegistry& metrics)
    : impl_(std::make_unique<Impl>(config, metrics)) {
  spdlog::info(
      "ModSecurity loaded: engine=\"{}\" components=\"{}\" paranoia_level={} "
      "cache_entries={}",
      impl_->engine_version, fmt::join(impl_->components, ","), config.paranoia_level,
      config.cache_entries);
}

Inspector::~Inspector() = default;

InspectionResult Inspector::inspect(const CapturedRequest& request, const PersonaResponse& response,
                                    const RouteOutcome& outcome,
                                    const std::string& transaction_id) {
  auto start = std::chrono::steady_clock::now();
  InspectionResult result;
  // A HEAD response announces a body that is never sent, so there is no
  // body for the response rules to see.
  std::string_view response_body = response.omit_body ? std::string_view() : response.body;

  try {
    std::string key;
    if (impl_->cache) {
      key = impl_->cacheKey(request, response, outcome, response_body);
      if (auto hit = impl_->cache->find(key)) {
        result.status = InspectionStatus::kCached;
        result.matches = std::move(hit->matches);
        result.anomaly_score = hit->anomaly_score;
        result.details_cut = hit->details_cut;
        result.duration_us = microsecondsSince(start);
        impl_->cached.inc();
        impl_->cache_hits.inc();
        impl_->rule_matches.inc(result.matches.size());
        impl_->countCuts(result.details_cut, transaction_id);
        return result;
      }
    }

    CachedResult fresh;
    result.error = impl_->run(request, response, outcome, response_body, transaction_id, fresh);
    result.status = result.error.empty() ? InspectionStatus::kComplete : InspectionStatus::kFailed;
    result.anomaly_score = fresh.anomaly_score;
    result.details_cut = fresh.details_cut;
    if (impl_->cache && result.status == InspectionStatus::kComplete) {
      impl_->cache->insert(key, fresh);
    }
    result.matches = std::move(fresh.matches);
  } catch (const std::exception& error) {
    // libmodsecurity can throw std::bad_alloc or std::out_of_range on odd
    // input; the request is still recorded, marked as failed.
    result.status = InspectionStatus::kFailed;
    result.error = error.what();
  }

  result.duration_us = microsecondsSince(start);
  if (result.status == InspectionStatus::kComplete) {
    impl_->complete.inc();
  } else {
    impl_->failed.inc();
  }
  impl_->rule_matches.inc(result.matches.size());
  impl_->countCuts(result.details_cut, transaction_id);
  return result;
}

const std::string& Inspector::engineVersion() const {
  return impl_->engine_version;
}

const std::vector<std::string>& Inspector::components() const {
  return impl_->components;
}

}  // namespace webtrap::probe
