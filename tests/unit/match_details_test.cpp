// Bounds on the rule match text of one request (probe/inspection.h), checked
// on made-up matches, on the real record writer, on the collector's decoder,
// and on libmodsecurity 3.0.9 with Debian's CRS 3.3.4.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "collector/audit_record.h"
#include "common/encoding.h"
#include "common/metrics.h"
#include "common/error.h"
#include "probe/config.h"
#include "probe/inspection.h"
#include "probe/inspector.h"
#include "probe/record.h"

namespace webtrap::probe {
namespace {

constexpr std::string_view kMarkerStart = " [truncated by webtrap from ";

bool endsWithMarker(const std::string& text, std::size_t original_size) {
  return text.ends_with(fmt::format("{}{} bytes]", kMarkerStart, original_size));
}

// A match as libmodsecurity 3.0.9 reports the `index`-th matched field of a
// rule: the reference lists every field the rule matched so far.
RuleMatch growingMatch(std::string id, int index) {
  RuleMatch match;
  match.id = std::move(id);
  match.message = "SQL Injection Attack Detected via libinjection";
  match.data = fmt::format("Matched Data: s&1UE found within ARGS:f{}: 1' UNION SELECT password "
                           "FROM users-- <script>alert(1)</script>",
                           index);
  match.match = fmt::format("detected SQLi using libinjection with fingerprint 's&1UE' at ARGS:f{}",
                            index);
  for (int i = 0; i <= index; ++i) {
    match.reference += fmt::format("v{},70t:utf8toUnicode,t:urlDecodeUni,t:removeNulls", 30 * i);
  }
  match.file = "/usr/share/modsecurity-crs/rules/REQUEST-942-APPLICATION-ATTACK-SQLI.conf";
  match.line = 45;
  match.phase = 2;
  match.severity = 2;
  match.version = "OWASP_CRS/3.3.4";
  match.tags = {"application-multi", "language-multi", "platform-multi", "attack-sqli",
                "paranoia-level/1", "OWASP_CRS", "capec/1000/152/248/66", "PCI/6.5.2"};
  return match;
}

// 300 matched fields for each of three rules, in the order libmodsecurity
// reports them: every match of one rule, then the next rule.
std::vector<RuleMatch> floodMatches() {
  std::vector<RuleMatch> matches;
  for (std::string id : {"942100", "941100", "942190"}) {
    for (int i = 0; i < 300; ++i) {
      matches.push_back(growingMatch(id, i));
    }
  }
  return matches;
}

std::uint64_t countTruncated(const std::vector<RuleMatch>& matches) {
  std::uint64_t count = 0;
  for (const RuleMatch& match : matches) {
    for (const std::string* text : {&match.message, &match.data, &match.match, &match.reference}) {
      count += text->find(kMarkerStart) != std::string::npos ? 1 : 0;
    }
  }
  return count;
}

std::set<std::string> ruleIds(const std::vector<RuleMatch>& matches) {
  std::set<std::string> ids;
  for (const RuleMatch& match : matches) {
    ids.insert(match.id);
  }
  return ids;
}

CapturedRequest formRequest(std::string body) {
  CapturedRequest request;
  request.connection_id = "c-1";
  request.client = {"203.0.113.7", 51515};
  request.server = {"127.0.0.1", 8080};
  request.listener = "web";
  request.parsed = true;
  request.method = "POST";
  request.target = "/blog/post.php";
  request.request_line = "POST /blog/post.php HTTP/1.1";
  request.http_version = "1.1";
  request.headers = {{"Host", "www.example.com"},
                     {"Content-Type", "application/x-www-form-urlencoded"},
                     {"Content-Length", std::to_string(body.size())}};
  request.body = std::move(body);
  request.body_size = request.body.size();
  request.body_sha256 = sha256Hex(request.body);
  request.received_at = std::chrono::system_clock::now();
  return request;
}

PersonaResponse pageResponse() {
  PersonaResponse response;
  response.status = 200;
  response.headers = {{"Content-Type", "text/html; charset=utf-8"}};
  response.body = "<html><body><p>Thanks</p></body></html>";
  return response;
}

RecordMeta testMeta() {
  RecordMeta meta;
  meta.event_id = "01938f5e-1c2a-7abc-8def-0123456789ab";
  meta.sensor_id = "sensor-1";
  meta.persona = "apache-debian-php";
  meta.engine_version = "ModSecurity v3.0.9 (Linux)";
  meta.components = {"OWASP_CRS/3.3.4"};
  return meta;
}

std::string recordFor(const CapturedRequest& request, const InspectionResult& inspection) {
  return serializeRecord(request, pageResponse(), RouteOutcome{}, inspection, testMeta());
}

InspectionResult withMatches(std::vector<RuleMatch> matches) {
  InspectionResult inspection;
  inspection.status = InspectionStatus::kComplete;
  inspection.anomaly_score = 15;
  inspection.matches = std::move(matches);
  return inspection;
}

// The record bytes of transaction.messages plus webtrap.encoded, which contains
// the base64 copies of match text that is not valid UTF-8.
std::size_t matchBytes(const CapturedRequest& request, const InspectionResult& inspection) {
  std::string record = recordFor(request, inspection);
  std::size_t messages = record.find(R"("messages":[)");
  std::size_t messages_end = record.find(R"(]},"webtrap":{)", messages);
  std::size_t encoded = record.rfind(R"("encoded":{)");
  EXPECT_NE(messages, std::string::npos);
  EXPECT_NE(messages_end, std::string::npos);
  EXPECT_NE(encoded, std::string::npos);
  return (messages_end - messages) + (record.size() - encoded);
}

TEST(MatchText, ShortTextUnchanged) {
  std::string text(2048, 'a');
  EXPECT_FALSE(truncateMatchText(text, 2048));
  EXPECT_EQ(text, std::string(2048, 'a'));
}

TEST(MatchText, LongTextEndsInMarker) {
  std::string text(5000, 'a');
  EXPECT_TRUE(truncateMatchText(text, 2048));
  EXPECT_EQ(text.size(), 2048u);
  EXPECT_TRUE(endsWithMarker(text, 5000)) << text.substr(2000);
  EXPECT_TRUE(text.starts_with(std::string(1900, 'a')));
}

TEST(MatchText, LimitBelowMinimumUsesMinimum) {
  std::string text(1000, 'a');
  EXPECT_TRUE(truncateMatchText(text, 10));
  EXPECT_EQ(text.size(), kMinTruncatedBytes);
  EXPECT_TRUE(endsWithMarker(text, 1000));
}

TEST(MatchText, CutKeepsUtf8Valid) {
  for (std::size_t offset = 0; offset < 4; ++offset) {
    // "€" is 3 bytes, so the four offsets put the cut at each byte of it.
    std::string text = std::string(offset, 'a');
    for (int i = 0; i < 1000; ++i) {
      text += "\xE2\x82\xAC";
    }
    ASSERT_TRUE(truncateMatchText(text, 512));
    EXPECT_TRUE(isValidUtf8(text)) << "offset " << offset;
    EXPECT_LE(text.size(), 512u);
  }
}

TEST(MatchText, CardAcrossCutIsMasked) {
  std::string card = "4111111111111111";  // Luhn-valid test number
  std::string tail(100, 'y');
  std::string probe_text = std::string(1000, 'x') + card + tail;
  std::string marker = fmt::format("{}{} bytes]", kMarkerStart, probe_text.size());
  // Keep the first 12 digits: whole, they would not form a 13-digit window
  // that the record writer masks.
  std::size_t max_bytes = 1000 + 12 + marker.size();
  std::string text = probe_text;
  ASSERT_TRUE(truncateMatchText(text, max_bytes));
  std::string kept = text.substr(1000, 12);
  EXPECT_EQ(kept, "411111******");
  EXPECT_EQ(text.find("4111111111"), std::string::npos);
}

TEST(MatchBound, SmallResultUntouched) {
  std::vector<RuleMatch> matches = {growingMatch("942100", 0), growingMatch("941100", 1)};
  std::vector<RuleMatch> before = matches;
  MatchDetailCuts cuts = boundMatchDetails(matches, MatchDetailLimits{});
  EXPECT_FALSE(cuts.any());
  ASSERT_EQ(matches.size(), before.size());
  for (std::size_t i = 0; i < matches.size(); ++i) {
    EXPECT_EQ(matches[i].reference, before[i].reference);
    EXPECT_EQ(matches[i].data, before[i].data);
  }
}

TEST(MatchBound, GrowingReferencesStayUnderBound) {
  CapturedRequest request = formRequest(std::string(38000, 'a'));
  InspectionResult unbounded = withMatches(floodMatches());
  std::size_t unbounded_bytes = matchBytes(request, unbounded);

  InspectionResult bounded = withMatches(floodMatches());
  MatchDetailLimits limits;
  bounded.details_cut = boundMatchDetails(bounded.matches, limits);
  std::size_t bounded_bytes = matchBytes(request, bounded);

  // Without the bound, 900 matches carry about 7 MB of reference text.
  EXPECT_GT(unbounded_bytes, 5'000'000u);
  EXPECT_LE(bounded_bytes, limits.max_total_bytes);
  EXPECT_EQ(ruleIds(bounded.matches), ruleIds(unbounded.matches));
  EXPECT_EQ(bounded.details_cut.truncated_strings, countTruncated(bounded.matches));
  EXPECT_GT(bounded.details_cut.omitted_matches, 0u);
  EXPECT_EQ(bounded.details_cut.reduced_matches, 0u);
  EXPECT_EQ(bounded.matches.size() + bounded.details_cut.omitted_matches, 900u);
  for (const RuleMatch& match : bounded.matches) {
    EXPECT_EQ(match.severity, 2);
    EXPECT_LE(match.reference.size(), limits.max_string_bytes);
  }
}

TEST(MatchBound, LongReferenceCountedOnce) {
  std::vector<RuleMatch> matches = {growingMatch("942100", 100)};
  std::size_t reference_size = matches[0].reference.size();
  ASSERT_GT(reference_size, 2048u);
  MatchDetailCuts cuts = boundMatchDetails(matches, MatchDetailLimits{});
  EXPECT_EQ(cuts.truncated_strings, 1u);
  EXPECT_EQ(cuts.reduced_matches, 0u);
  EXPECT_EQ(cuts.omitted_matches, 0u);
  ASSERT_EQ(matches.size(), 1u);
  EXPECT_EQ(matches[0].reference.size(), 2048u);
  EXPECT_TRUE(endsWithMarker(matches[0].reference, reference_size));
}

TEST(MatchBound, FirstMatchOfEachRuleKeptBeforeRepeats) {
  std::vector<RuleMatch> matches = floodMatches();
  MatchDetailLimits limits;
  limits.max_total_bytes = 8 * 1024;
  MatchDetailCuts cuts = boundMatchDetails(matches, limits);
  // The first match of each rule comes first in the budget, so all three
  // keep their data whole and every kept match stays in report order.
  for (std::string id : {"942100", "941100", "942190"}) {
    auto first = std::find_if(matches.begin(), matches.end(),
                              [&](const RuleMatch& match) { return match.id == id; });
    ASSERT_NE(first, matches.end()) << id;
    EXPECT_EQ(first->data, growingMatch(id, 0).data) << id;
  }
  EXPECT_EQ(cuts.reduced_matches, 0u);
  EXPECT_EQ(matches.front().id, "942100");
  EXPECT_EQ(matches.back().id, "942190");
}

TEST(MatchBound, RulesPastBudgetKeepReducedMatch) {
  std::vector<RuleMatch> matches;
  for (int rule = 0; rule < 40; ++rule) {
    RuleMatch match = growingMatch(std::to_string(942000 + rule), 0);
    match.data = std::string(2000, 'd');
    matches.push_back(match);
  }
  MatchDetailLimits limits;
  limits.max_total_bytes = 16 * 1024;
  MatchDetailCuts cuts = boundMatchDetails(matches, limits);
  ASSERT_EQ(matches.size(), 40u);
  EXPECT_GT(cuts.reduced_matches, 0u);
  EXPECT_EQ(cuts.omitted_matches, 0u);
  const RuleMatch& last = matches.back();
  EXPECT_EQ(last.id, "942039");
  EXPECT_EQ(last.severity, 2);
  EXPECT_LE(last.data.size(), kReducedStringBytes);
  EXPECT_TRUE(endsWithMarker(last.data, 2000)) << last.data;
}

TEST(MatchBound, ShortMatchPastBudgetNotCountedReduced) {
  // Every text of these matches fits in kReducedStringBytes, so a budget of
  // 0 bytes leaves them whole: nothing is cut and no details_cut is written.
  std::vector<RuleMatch> matches;
  for (int rule = 0; rule < 3; ++rule) {
    matches.push_back(growingMatch(std::to_string(920000 + rule), 0));
  }
  const std::vector<RuleMatch> original = matches;
  MatchDetailLimits limits;
  limits.max_total_bytes = 0;
  MatchDetailCuts cuts = boundMatchDetails(matches, limits);
  ASSERT_EQ(matches.size(), original.size());
  for (std::size_t i = 0; i < matches.size(); ++i) {
    EXPECT_EQ(matches[i].data, original[i].data);
    EXPECT_EQ(matches[i].reference, original[i].reference);
  }
  EXPECT_EQ(cuts.reduced_matches, 0u);
  EXPECT_EQ(cuts.truncated_strings, 0u);
  EXPECT_FALSE(cuts.any());
}

TEST(MatchBound, ControlBytesStayUnderBound) {
  CapturedRequest request = formRequest("a=1");
  std::vector<RuleMatch> matches;
  for (int i = 0; i < 200; ++i) {
    RuleMatch match = growingMatch("942100", i);
    match.data = std::string(1500, '\x01');  // written as \u0001, 6 bytes each
    matches.push_back(match);
  }
  InspectionResult bounded = withMatches(std::move(matches));
  MatchDetailLimits limits;
  bounded.details_cut = boundMatchDetails(bounded.matches, limits);
  EXPECT_LE(matchBytes(request, bounded), limits.max_total_bytes);
  EXPECT_GT(bounded.details_cut.omitted_matches, 0u);
}

TEST(MatchBound, InvalidUtf8StaysUnderBound) {
  CapturedRequest request = formRequest("a=1");
  std::vector<RuleMatch> matches;
  for (int i = 0; i < 200; ++i) {
    RuleMatch match = growingMatch("942100", i);
    match.data = std::string(1500, '\xff');  // U+FFFD plus a base64 copy
    matches.push_back(match);
  }
  InspectionResult bounded = withMatches(std::move(matches));
  MatchDetailLimits limits;
  bounded.details_cut = boundMatchDetails(bounded.matches, limits);
  EXPECT_LE(matchBytes(request, bounded), limits.max_total_bytes);
}

TEST(MatchBound, RecordFlagsCutAndCollectorDecodesIt) {
  CapturedRequest request = formRequest(std::string(38000, 'a'));
  InspectionResult bounded = withMatches(floodMatches());
  bounded.details_cut = boundMatchDetails(bounded.matches, MatchDetailLimits{});
  std::string record = recordFor(request, bounded);
  EXPECT_NE(record.find(fmt::format(
                R"("details_cut":{{"truncated_strings":{},"reduced_matches":0,"omitted_matches":{}}})",
                bounded.details_cut.truncated_strings, bounded.details_cut.omitted_matches)),
            std::string::npos);

  collector::DecodeResult decoded =
      collector::decodeAuditRecord(record, collector::RecordFormat::kWebtrap, "test");
  ASSERT_TRUE(decoded.ok) << decoded.error;
  ASSERT_EQ(decoded.record.messages.size(), bounded.matches.size());
  std::set<std::string> decoded_ids;
  for (const auto& message : decoded.record.messages) {
    decoded_ids.insert(message.rule_id);
    EXPECT_EQ(message.severity, "2");
  }
  EXPECT_EQ(decoded_ids, ruleIds(bounded.matches));
  EXPECT_EQ(decoded.record.anomaly_score, 15);
}

TEST(MatchBound, UncutRecordHasNoDetailsCut) {
  InspectionResult small = withMatches({growingMatch("942100", 0)});
  small.details_cut = boundMatchDetails(small.matches, MatchDetailLimits{});
  EXPECT_EQ(recordFor(formRequest("a=1"), small).find("details_cut"), std::string::npos);
}

// A form whose every field carries an SQL injection that libinjection
// finds. libmodsecurity 3.0.9 reports CRS rule 942100 once per field, each
// copy with the references of all fields before it, so 1000 such fields
// (21 KB) give about 4 MB of messages without the bound.
std::string floodBody(int fields) {
  std::string body;
  for (int i = 0; i < fields; ++i) {
    if (i > 0) {
      body += '&';
    }
    body += fmt::format("f{}=1%27+OR+1%3D1--", i);
  }
  return body;
}

InspectorConfig crsConfig(MatchDetailLimits limits) {
  InspectorConfig config;
  config.webtrap_rules = std::filesystem::path(WEBTRAP_SOURCE_DIR) / "rules";
  config.cache_entries = 0;
  config.match_limits = limits;
  return config;
}

std::uint64_t counterValue(const MetricsRegistry& metrics, std::string_view series) {
  // A sample line, not the HELP line that also names the series.
  std::string text = "\n" + metrics.render();
  std::string prefix = "\n" + std::string(series) + " ";
  std::size_t at = text.find(prefix);
  if (at == std::string::npos) {
    return 0;
  }
  return std::stoull(text.substr(at + prefix.size()));
}

TEST(MatchBoundInspector, FieldFloodKeepsRuleIdsAndScore) {
  CapturedRequest request = formRequest(floodBody(1000));
  MetricsRegistry unbounded_metrics;
  MatchDetailLimits no_limit{std::size_t{1} << 40, std::size_t{1} << 40};
  Inspector unbounded(crsConfig(no_limit), unbounded_metrics);
  MetricsRegistry bounded_metrics;
  MatchDetailLimits limits;
  Inspector bounded(crsConfig(limits), bounded_metrics);

  InspectionResult full = unbounded.inspect(request, pageResponse(), RouteOutcome{}, "full");
  InspectionResult cut = bounded.inspect(request, pageResponse(), RouteOutcome{}, "cut");
  ASSERT_EQ(full.status, InspectionStatus::kComplete) << full.error;
  ASSERT_EQ(cut.status, InspectionStatus::kComplete) << cut.error;

  std::size_t full_bytes = matchBytes(request, full);
  std::size_t cut_bytes = matchBytes(request, cut);
  std::size_t reduced_bytes = cut.details_cut.reduced_matches * 1536;
  EXPECT_GT(full_bytes, 50 * request.body.size()) << "libmodsecurity no longer amplifies";
  EXPECT_LE(cut_bytes, limits.max_total_bytes + reduced_bytes);
  EXPECT_LT(recordFor(request, cut).size(), 3 * request.body.size() + limits.max_total_bytes);

  EXPECT_EQ(ruleIds(cut.matches), ruleIds(full.matches));
  EXPECT_EQ(cut.anomaly_score, full.anomaly_score);
  EXPECT_GT(cut.anomaly_score, 0);
  EXPECT_TRUE(cut.details_cut.any());
  EXPECT_FALSE(full.details_cut.any());
  EXPECT_EQ(cut.matches.size() + cut.details_cut.omitted_matches, full.matches.size());

  EXPECT_EQ(counterValue(bounded_metrics, "webtrap_match_details_cut_records_total"), 1u);
  EXPECT_EQ(counterValue(bounded_metrics,
                         R"(webtrap_match_details_cut_total{kind="omitted_match"})"),
            cut.details_cut.omitted_matches);
  EXPECT_EQ(counterValue(unbounded_metrics, "webtrap_match_details_cut_records_total"), 0u);
}

TEST(MatchBoundInspector, CachedResultKeepsCut) {
  CapturedRequest request = formRequest(floodBody(1000));
  MetricsRegistry metrics;
  InspectorConfig config = crsConfig(MatchDetailLimits{});
  config.cache_entries = 4;
  Inspector inspector(config, metrics);
  InspectionResult fresh = inspector.inspect(request, pageResponse(), RouteOutcome{}, "a");
  InspectionResult cached = inspector.inspect(request, pageResponse(), RouteOutcome{}, "b");
  ASSERT_EQ(cached.status, InspectionStatus::kCached);
  EXPECT_TRUE(fresh.details_cut.any());
  EXPECT_EQ(cached.details_cut.omitted_matches, fresh.details_cut.omitted_matches);
  EXPECT_EQ(cached.details_cut.truncated_strings, fresh.details_cut.truncated_strings);
  EXPECT_EQ(cached.matches.size(), fresh.matches.size());
  EXPECT_EQ(counterValue(metrics, "webtrap_match_details_cut_records_total"), 2u);
}

TEST(MatchLimitsConfig, DefaultsAndKeys) {
  ProbeConfig defaults = parseProbeConfig("sensor:\n  id: s\n", "probe.yaml");
  EXPECT_EQ(defaults.inspector.match_limits.max_string_bytes, 2048u);
  EXPECT_EQ(defaults.inspector.match_limits.max_total_bytes, 65536u);

  ProbeConfig set = parseProbeConfig(
      "modsecurity:\n  match_string_max_bytes: 512\n  match_details_max_bytes: 1MiB\n",
      "probe.yaml");
  EXPECT_EQ(set.inspector.match_limits.max_string_bytes, 512u);
  EXPECT_EQ(set.inspector.match_limits.max_total_bytes, 1048576u);
}

TEST(MatchLimitsConfig, TooSmallStringLimitNamesValueAndFix) {
  try {
    parseProbeConfig("modsecurity:\n  match_string_max_bytes: 100\n", "probe.yaml");
    FAIL() << "no ConfigError";
  } catch (const ConfigError& error) {
    std::string text = error.what();
    EXPECT_NE(text.find("modsecurity.match_string_max_bytes"), std::string::npos) << text;
    EXPECT_NE(text.find("100"), std::string::npos) << text;
    EXPECT_NE(text.find("at least 128"), std::string::npos) << text;
  }
}

TEST(MatchLimitsConfig, InvalidSizeIsRejected) {
  EXPECT_THROW(parseProbeConfig("modsecurity:\n  match_details_max_bytes: lots\n", "probe.yaml"),
               ConfigError);
}

}  // namespace
}  // namespace webtrap::probe
