// Tests for `webtrap replay`: ftw YAML loading, request bytes, record
// matching, result formatting, and a run against a loopback test server.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <boost/asio.hpp>

#include "common/error.h"
#include "replay/ftw_test.h"
#include "replay/http_exchange.h"
#include "replay/record_index.h"
#include "replay/request_builder.h"
#include "replay/runner.h"
#include "replay/target.h"

namespace webtrap::replay {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A temporary folder removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("webtrap-replay-test-" + std::to_string(::getpid()) + "-" +
                                         std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  static inline std::atomic<int> counter_{0};
  fs::path path_;
};

void appendFile(const fs::path& file, const std::string& text) {
  std::ofstream out(file, std::ios::binary | std::ios::app);
  out << text;
}

fs::path sharedDir() {
  return fs::path(WEBTRAP_SOURCE_DIR) / ".." / "shared";
}

// ---------------------------------------------------------------------------
// YAML loading

constexpr const char* kShapesYaml = R"(---
meta:
  author: test
  enabled: true
  name: shapes.yaml
tests:
  - test_title: data-list
    stages:
      - stage:
          input:
            dest_addr: 192.0.2.1
            port: 8080
            method: POST
            uri: /upload
            headers:
              Host: localhost
              Transfer-Encoding: chunked
              Content-Length: 7
              Accept: "*/*"
            data:
              - "7"
              - "foo=bar"
              - "0"
              - ""
              - ""
            stop_magic: true
          output:
            no_log_contains: id "920181"
  - test_title: raw
    stages:
      - stage:
          input:
            raw_request: "GET / HTTP/1.0\r\nHost: a\r\n\r\n"
          output:
            status: [200, 403]
  - test_title: encoded
    stages:
      - stage:
          input:
            encoded_request: "R0VUIC8gSFRUUC8xLjAKCg=="
          output:
            status: 400
            expect_error: true
  - test_title: go-ftw-shape
    stages:
      - input:
          uri: /x
        output:
          log_contains: "id \"942100\""
)";

TEST(FtwYaml, LoadsDataListJoinedWithCrlf) {
  const auto tests = parseFtwYaml(kShapesYaml, "shapes.yaml");
  ASSERT_EQ(tests.size(), 4u);
  const FtwInput& input = tests[0].stages.at(0).input;
  EXPECT_EQ(input.data, "7\r\nfoo=bar\r\n0\r\n\r\n");
  EXPECT_TRUE(input.stop_magic);
  EXPECT_EQ(input.method, "POST");
  EXPECT_EQ(input.uri, "/upload");
  EXPECT_EQ(input.dest_addr, "192.0.2.1");
  EXPECT_EQ(input.port, 8080);
  EXPECT_EQ(tests[0].stages[0].output.no_log_contains, std::optional<std::string>("id \"920181\""));
}

TEST(FtwYaml, KeepsHeaderOrderAndNumbersAsWritten) {
  const auto tests = parseFtwYaml(kShapesYaml, "shapes.yaml");
  const auto& headers = tests[0].stages.at(0).input.headers;
  ASSERT_EQ(headers.size(), 4u);
  EXPECT_EQ(headers[0], (std::pair<std::string, std::string>("Host", "localhost")));
  EXPECT_EQ(headers[1].first, "Transfer-Encoding");
  EXPECT_EQ(headers[2], (std::pair<std::string, std::string>("Content-Length", "7")));
  EXPECT_EQ(headers[3], (std::pair<std::string, std::string>("Accept", "*/*")));
}

TEST(FtwYaml, LoadsRawAndEncodedRequestsAndStatusShapes) {
  const auto tests = parseFtwYaml(kShapesYaml, "shapes.yaml");
  EXPECT_EQ(tests[1].stages[0].input.raw_request,
            std::optional<std::string>("GET / HTTP/1.0\r\nHost: a\r\n\r\n"));
  EXPECT_EQ(tests[1].stages[0].output.status, (std::vector<int>{200, 403}));
  EXPECT_EQ(tests[2].stages[0].input.encoded_request,
            std::optional<std::string>("R0VUIC8gSFRUUC8xLjAKCg=="));
  EXPECT_EQ(tests[2].stages[0].output.status, (std::vector<int>{400}));
  EXPECT_TRUE(tests[2].stages[0].output.expect_error);
}

TEST(FtwYaml, AcceptsStagesWithoutStageKey) {
  const auto tests = parseFtwYaml(kShapesYaml, "shapes.yaml");
  const FtwStage& stage = tests[3].stages.at(0);
  EXPECT_EQ(stage.input.uri, "/x");
  EXPECT_EQ(stage.input.method, "GET");
  EXPECT_EQ(stage.input.version, "HTTP/1.1");
  EXPECT_EQ(stage.output.log_contains, std::optional<std::string>("id \"942100\""));
}

TEST(FtwYaml, DisabledFileMarksTestsDisabled) {
  const auto tests = parseFtwYaml(
      "meta: {enabled: false}\ntests:\n  - test_title: t\n    stages:\n      - stage:\n"
      "          input: {uri: /}\n          output: {status: 200}\n",
      "off.yaml");
  ASSERT_EQ(tests.size(), 1u);
  EXPECT_FALSE(tests[0].enabled);
}

TEST(FtwYaml, InvalidYamlThrowsConfigError) {
  EXPECT_THROW(parseFtwYaml("tests: [unclosed", "bad.yaml"), ConfigError);
}

TEST(FtwYaml, MissingTestsThrowsConfigErrorNamingFile) {
  try {
    parseFtwYaml("meta: {}\n", "empty.yaml");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("empty.yaml"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("tests"), std::string::npos);
  }
}

TEST(FtwYaml, MissingPathThrowsConfigError) {
  EXPECT_THROW(collectFtwFiles({"/nonexistent/webtrap/tests"}), ConfigError);
}

TEST(FtwYaml, LoadsEverySharedCrsTest) {
  const fs::path dir = sharedDir() / "crs-tests";
  if (!fs::exists(dir)) {
    GTEST_SKIP() << "no CRS test files at " << dir;
  }
  std::size_t count = 0;
  std::size_t with_list_data = 0;
  std::size_t with_encoded = 0;
  std::size_t with_raw = 0;
  for (const auto& file : collectFtwFiles({dir.string()})) {
    for (const auto& test : loadFtwFile(file)) {
      ++count;
      for (const auto& stage : test.stages) {
        with_list_data += stage.input.data.find("\r\n") != std::string::npos ? 1 : 0;
        with_encoded += stage.input.encoded_request ? 1 : 0;
        with_raw += stage.input.raw_request ? 1 : 0;
        EXPECT_TRUE(buildRequest(stage.input).error.empty()) << file << ": " << test.title;
      }
    }
  }
  EXPECT_EQ(count, 1505u);
  EXPECT_GE(with_list_data, 8u);
  EXPECT_EQ(with_encoded, 2u);
  EXPECT_EQ(with_raw, 1u);
}

TEST(FtwYaml, LoadsEverySharedCorpusCase) {
  const fs::path dir = sharedDir() / "corpus";
  if (!fs::exists(dir)) {
    GTEST_SKIP() << "no corpus at " << dir;
  }
  std::size_t count = 0;
  for (const auto& file : collectFtwFiles({dir.string()})) {
    for (const auto& test : loadFtwFile(file)) {
      ++count;
      EXPECT_TRUE(test.stages.at(0).output.log_contains.has_value()) << test.title;
    }
  }
  EXPECT_GE(count, 9u);
}

// ---------------------------------------------------------------------------
// Request bytes

TEST(RequestBuilder, BuildsRequestLineHeadersAndBody) {
  FtwInput input;
  input.method = "POST";
  input.uri = "/a?b=c";
  input.version = "HTTP/1.0";
  input.headers = {{"Host", "localhost"}, {"X-B", "2"}, {"X-A", "1"}};
  input.data = "x=%41";  // contains an escape, so it is not re-encoded
  const BuiltRequest built = buildRequest(input);
  ASSERT_TRUE(built.error.empty());
  EXPECT_EQ(built.bytes,
            "POST /a?b=c HTTP/1.0\r\n"
            "Host: localhost\r\n"
            "X-B: 2\r\n"
            "X-A: 1\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: 5\r\n"
            "\r\n"
            "x=%41");
}

TEST(RequestBuilder, ReencodesPlainFormBody) {
  FtwInput input;
  input.method = "POST";
  input.headers = {{"Content-Type", "application/x-www-form-urlencoded"}};
  input.data = "file=cat+/etc/passwd&empty=&noequals&q=1' or '1'='1";
  const BuiltRequest built = buildRequest(input);
  EXPECT_EQ(built.bytes,
            "POST / HTTP/1.1\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: 49\r\n"
            "\r\n"
            "file=cat+%2Fetc%2Fpasswd&q=1%27+or+%271%27%3D%271");
}

TEST(RequestBuilder, StopMagicSendsDataAsWritten) {
  FtwInput input;
  input.method = "POST";
  input.headers = {{"Content-Length", "99"}};
  input.data = "a=b c";
  input.stop_magic = true;
  EXPECT_EQ(buildRequest(input).bytes, "POST / HTTP/1.1\r\nContent-Length: 99\r\n\r\na=b c");
}

TEST(RequestBuilder, AutocompleteHeadersFalseActsLikeStopMagic) {
  FtwInput input;
  input.data = "a=b";
  input.autocomplete_headers = false;
  EXPECT_EQ(buildRequest(input).bytes, "GET / HTTP/1.1\r\n\r\na=b");
}

TEST(RequestBuilder, ExistingContentLengthMatchesWithoutCase) {
  FtwInput input;
  input.headers = {{"content-length", "1"}, {"content-type", "text/plain"}};
  input.data = "a=b";
  EXPECT_EQ(buildRequest(input).bytes,
            "GET / HTTP/1.1\r\ncontent-length: 1\r\ncontent-type: text/plain\r\n\r\na=b");
}

TEST(RequestBuilder, NoDataAddsNoHeaders) {
  FtwInput input;
  input.headers = {{"Host", "h"}};
  EXPECT_EQ(buildRequest(input).bytes, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
}

TEST(RequestBuilder, RawRequestIsSentAsWritten) {
  FtwInput input;
  input.raw_request = std::string("GET /\xc2\xac HTTP/1.0\r\n\r\n\0x", 22);
  input.headers = {{"Ignored", "yes"}};
  EXPECT_EQ(buildRequest(input).bytes, std::string("GET /\xc2\xac HTTP/1.0\r\n\r\n\0x", 22));
}

TEST(RequestBuilder, EncodedRequestIsDecodedThenUnescaped) {
  FtwInput input;
  // base64 of: GET / HTTP/1.0\n\nd=1\n2\!\x41
  input.encoded_request = "R0VUIC8gSFRUUC8xLjAKCmQ9MVxuMlwhXHg0MQ";
  const BuiltRequest built = buildRequest(input);
  ASSERT_TRUE(built.error.empty()) << built.error;
  EXPECT_EQ(built.bytes, "GET / HTTP/1.0\n\nd=1\n2\\!A");
}

TEST(RequestBuilder, InvalidBase64IsAnInputError) {
  FtwInput input;
  input.encoded_request = "not base64!";
  EXPECT_FALSE(buildRequest(input).error.empty());
}

TEST(RequestBuilder, RawAndEncodedTogetherIsAnInputError) {
  FtwInput input;
  input.raw_request = "GET / HTTP/1.0\r\n\r\n";
  input.encoded_request = "R0VU";
  EXPECT_FALSE(buildRequest(input).error.empty());
}

TEST(RequestBuilder, SharedCrsChunkedCaseIsByteExact) {
  const fs::path file = sharedDir() / "crs-tests/REQUEST-920-PROTOCOL-ENFORCEMENT/920181.yaml";
  if (!fs::exists(file)) {
    GTEST_SKIP() << "no " << file;
  }
  const auto tests = loadFtwFile(file);
  EXPECT_EQ(buildRequest(tests.at(0).stages.at(0).input).bytes,
            "POST / HTTP/1.1\r\n"
            "Host: localhost\r\n"
            "Accept: */*\r\n"
            "Content-Length: 7\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "Transfer-Encoding: chunked\r\n"
            "User-Agent: ModSecurity CRS 3 Tests\r\n"
            "\r\n"
            "7\r\nfoo=bar\r\n0\r\n\r\n");
}

TEST(PythonEscapes, DecodesPythonStringEscapes) {
  EXPECT_EQ(decodePythonEscapes(R"(a\r\nb\tc\\d\'e\"f)"),
            std::optional<std::string>("a\r\nb\tc\\d'e\"f"));
  EXPECT_EQ(decodePythonEscapes(R"(\x41\101\0)"),
            std::optional<std::string>(std::string("AA\0", 3)));
  EXPECT_EQ(decodePythonEscapes("\\!\\q"), std::optional<std::string>("\\!\\q"));
  EXPECT_EQ(decodePythonEscapes("a\\\nb"), std::optional<std::string>("ab"));
  EXPECT_EQ(decodePythonEscapes("trailing\\"), std::optional<std::string>("trailing\\"));
}

TEST(PythonEscapes, RejectsShortHexEscape) {
  EXPECT_EQ(decodePythonEscapes(R"(\x4)"), std::nullopt);
  EXPECT_EQ(decodePythonEscapes(R"(\xZZ)"), std::nullopt);
}

TEST(FormReencoding, KeepsDataWhenNoPairSurvives) {
  EXPECT_EQ(reencodeForm("<script>alert(1)</script>"), "<script>alert(1)</script>");
  EXPECT_EQ(reencodeForm("a="), "a=");
}

TEST(FormReencoding, QuotesLikePythonQuotePlus) {
  EXPECT_EQ(reencodeForm("a b=c~d_e.f-g&h=\xc3\xa9"), "a+b=c~d_e.f-g&h=%C3%A9");
}

// ---------------------------------------------------------------------------
// Audit records

// A record as nginx with ModSecurity 3.0.9 writes it (SecAuditLogFormat JSON),
// shortened.
constexpr const char* kNginxRecord =
    R"j({"transaction":{"client_ip":"127.0.0.1","time_stamp":"Fri Dec  4 12:32:54 2026",)j"
    R"j("server_id":"2ce1","client_port":48736,"host_ip":"127.0.0.1","host_port":18081,)j"
    R"j("unique_id":"179638757415.916930","request":{"method":"GET","http_version":1.1,)j"
    R"j("uri":"/?id=1 union select 1","headers":{"Host":"localhost"}},"response":{"body":"ok",)j"
    R"j("http_code":200,"headers":{}},"producer":{"modsecurity":"ModSecurity v3.0.9 (Linux)"},)j"
    R"j("messages":[{"message":"SQL Injection Attack Detected via libinjection",)j"
    R"j("details":{"match":"detected SQLi using libinjection.","reference":"v10,13",)j"
    R"j("ruleId":"942100","file":"/usr/share/modsecurity-crs/rules/x.conf",)j"
    R"j("lineNumber":"45","data":"Matched Data: 1UE1 found within ARGS:id: 1 union select 1",)j"
    R"j("severity":"2","ver":"OWASP_CRS/3.3.4","rev":"","tags":["application-multi",)j"
    R"j("attack-sqli"],"maturity":"0","accuracy":"0"}},{"message":"Inbound Anomaly Score",)j"
    R"j("details":{"ruleId":949110,"severity":2,"tags":[]}}]}})j";

TEST(AuditRecord, ParsesPortAddressAndRuleIds) {
  const auto record = parseAuditRecord(kNginxRecord);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->client_ip, "127.0.0.1");
  EXPECT_EQ(record->client_port, 48736);
  EXPECT_EQ(record->http_code, 200);
  EXPECT_EQ(record->rule_ids, (std::vector<std::string>{"942100", "949110"}));
}

TEST(AuditRecord, RendersMessagesInErrorLogForm) {
  const auto record = parseAuditRecord(kNginxRecord);
  ASSERT_TRUE(record.has_value());
  const std::string& text = record->log_text;
  EXPECT_NE(text.find(R"([id "942100"])"), std::string::npos) << text;
  EXPECT_NE(text.find(R"([msg "SQL Injection Attack Detected via libinjection"])"),
            std::string::npos);
  EXPECT_NE(text.find(R"([data "Matched Data: 1UE1 found within ARGS:id: 1 union select 1"])"),
            std::string::npos);
  EXPECT_NE(text.find(R"([severity "2"])"), std::string::npos);
  EXPECT_NE(text.find(R"([tag "attack-sqli"])"), std::string::npos);
  EXPECT_NE(text.find(R"([id "949110"])"), std::string::npos) << "numeric ruleId";
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
}

TEST(AuditRecord, ParsesLineWithInvalidUtf8) {
  std::string line = R"({"transaction":{"client_ip":"::ffff:127.0.0.1","client_port":"40000",)"
                     R"("request":{"uri":"/?test=)";
  line += "\xff\x80";
  line += R"("},"messages":[]}})";
  const auto record = parseAuditRecord(line);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->client_port, 40000);
  EXPECT_EQ(record->client_ip, "127.0.0.1");
}

TEST(AuditRecord, RejectsLinesThatAreNotRecords) {
  EXPECT_EQ(parseAuditRecord("not json"), std::nullopt);
  EXPECT_EQ(parseAuditRecord(R"({"other":1})"), std::nullopt);
  EXPECT_EQ(parseAuditRecord(R"({"transaction":{"client_ip":"127.0.0.1"}})"), std::nullopt);
}

// ---------------------------------------------------------------------------
// Stage evaluation

ExchangeResult okExchange(int status = 200) {
  ExchangeResult exchange;
  exchange.connected = true;
  exchange.local_ip = "127.0.0.1";
  exchange.local_port = 48736;
  exchange.status = status;
  return exchange;
}

TEST(StageEvaluation, LogContainsMatchesRenderedRecord) {
  FtwOutput output;
  output.log_contains = R"(id "942100")";
  const auto result = evaluateStage(output, okExchange(), parseAuditRecord(kNginxRecord), true, 1s);
  EXPECT_EQ(result.outcome, Outcome::kPass);
  EXPECT_TRUE(result.reasons.empty());
}

TEST(StageEvaluation, LogContainsMissingFailsWithRecordedIds) {
  FtwOutput output;
  output.log_contains = R"(id "941100")";
  const auto result = evaluateStage(output, okExchange(), parseAuditRecord(kNginxRecord), true, 1s);
  EXPECT_EQ(result.outcome, Outcome::kFail);
  ASSERT_EQ(result.reasons.size(), 1u);
  EXPECT_EQ(result.reasons[0],
            R"(log_contains 'id "941100"' not found; rule ids recorded: 942100 949110)");
}

TEST(StageEvaluation, NoLogContainsFailsWhenFound) {
  FtwOutput output;
  output.no_log_contains = R"(id "94210\d")";
  const auto result = evaluateStage(output, okExchange(), parseAuditRecord(kNginxRecord), true, 1s);
  EXPECT_EQ(result.outcome, Outcome::kFail);
  output.no_log_contains = "id:942100";
  EXPECT_EQ(evaluateStage(output, okExchange(), parseAuditRecord(kNginxRecord), true, 1s).outcome,
            Outcome::kPass);
}

TEST(StageEvaluation, MissingRecordNamesPortAndTimeout) {
  FtwOutput output;
  output.log_contains = R"(id "942100")";
  const auto result = evaluateStage(output, okExchange(), std::nullopt, true, 3000ms);
  ASSERT_EQ(result.reasons.size(), 1u);
  EXPECT_EQ(result.reasons[0], "no record for client port 48736 within 3000 ms");
}

TEST(StageEvaluation, StatusListAcceptsAnyListedStatus) {
  FtwOutput output;
  output.status = {403, 405};
  EXPECT_EQ(evaluateStage(output, okExchange(405), std::nullopt, false, 1s).outcome,
            Outcome::kPass);
  const auto result = evaluateStage(output, okExchange(200), std::nullopt, false, 1s);
  ASSERT_EQ(result.reasons.size(), 1u);
  EXPECT_EQ(result.reasons[0], "expected status one of 403, 405, got 200");
}

TEST(StageEvaluation, ExpectErrorPassesOnlyOnError) {
  FtwOutput output;
  output.expect_error = true;
  ExchangeResult failed;
  failed.connected = true;
  failed.error = "reading the response timed out";
  EXPECT_EQ(evaluateStage(output, failed, std::nullopt, true, 1s).outcome, Outcome::kPass);
  EXPECT_EQ(evaluateStage(output, okExchange(), std::nullopt, true, 1s).outcome, Outcome::kFail);
}

TEST(StageEvaluation, LeadingCaseFlagIgnoresCase) {
  FtwOutput output;
  output.log_contains = R"((?i)SQL INJECTION ATTACK)";
  const auto result = evaluateStage(output, okExchange(), parseAuditRecord(kNginxRecord), true, 1s);
  EXPECT_EQ(result.outcome, Outcome::kPass);
  output.log_contains = R"(SQL INJECTION ATTACK)";
  EXPECT_EQ(evaluateStage(output, okExchange(), parseAuditRecord(kNginxRecord), true, 1s).outcome,
            Outcome::kFail);
}

TEST(StageEvaluation, InvalidPatternFails) {
  FtwOutput output;
  output.log_contains = "(unclosed";
  const auto result = evaluateStage(output, okExchange(), parseAuditRecord(kNginxRecord), true, 1s);
  EXPECT_EQ(result.outcome, Outcome::kFail);
}

// ---------------------------------------------------------------------------
// Output format

TEST(ReplayOutput, SummaryLineFormat) {
  EXPECT_EQ(formatSummary({3, 1, 0}), "3 passed, 1 failed");
  EXPECT_EQ(formatSummary({0, 0, 2}), "0 passed, 0 failed, 2 skipped");
}

TEST(ReplayOutput, FailLineNamesFileTitleStageAndReason) {
  FtwTest test;
  test.file = "crs/942100.yaml";
  test.title = "942100-1";
  TestResult result;
  result.test = &test;
  result.outcome = Outcome::kFail;
  result.stages.resize(2);
  result.stages[1].outcome = Outcome::kFail;
  result.stages[1].reasons = {"first", "second"};
  EXPECT_EQ(formatResultLine(result), "FAIL crs/942100.yaml:942100-1 stage 2: first; second");
  result.outcome = Outcome::kSkip;
  EXPECT_EQ(formatResultLine(result), "SKIP crs/942100.yaml:942100-1");
}

// ---------------------------------------------------------------------------
// Target

TEST(ReplayTarget, AcceptsLoopbackTargets) {
  const Target v4 = parseTarget("http://127.0.0.1:8080");
  EXPECT_FALSE(v4.tls);
  EXPECT_EQ(v4.port, 8080);
  ASSERT_FALSE(v4.endpoints.empty());
  const Target v6 = parseTarget("https://[::1]/");
  EXPECT_TRUE(v6.tls);
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.port, 443);
  EXPECT_EQ(parseTarget("http://127.1.2.3").port, 80);
  EXPECT_NO_THROW(parseTarget("http://localhost:9"));
}

TEST(ReplayTarget, RejectsNonLoopbackTargets) {
  EXPECT_THROW(parseTarget("http://192.0.2.1:80"), ConfigError);
  EXPECT_THROW(parseTarget("http://10.0.0.1"), ConfigError);
  EXPECT_THROW(parseTarget("http://[2001:db8::1]:80"), ConfigError);
  EXPECT_THROW(parseTarget("http://0.0.0.0:80"), ConfigError);
  EXPECT_THROW(parseTarget("http://[::ffff:192.0.2.1]:80"), ConfigError);
}

TEST(ReplayTarget, RejectsMalformedUrls) {
  EXPECT_THROW(parseTarget("127.0.0.1:80"), ConfigError);
  EXPECT_THROW(parseTarget("ftp://127.0.0.1"), ConfigError);
  EXPECT_THROW(parseTarget("http://127.0.0.1:0"), ConfigError);
  EXPECT_THROW(parseTarget("http://127.0.0.1:65536"), ConfigError);
  EXPECT_THROW(parseTarget("http://127.0.0.1:80/path"), ConfigError);
  EXPECT_THROW(parseTarget("http://:80"), ConfigError);
}

TEST(ReplayTarget, RejectionMessageNamesAddress) {
  try {
    parseTarget("http://192.0.2.7:80");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("192.0.2.7, which is not a loopback address"),
              std::string::npos)
        << e.what();
  }
}

// ---------------------------------------------------------------------------
// Record index

std::string recordLine(int port, const std::string& rule_id) {
  return R"({"transaction":{"client_ip":"127.0.0.1","client_port":)" + std::to_string(port) +
         R"(,"messages":[{"message":"m","details":{"ruleId":")" + rule_id + R"("}}]}})" + "\n";
}

TEST(RecordIndex, IgnoresRecordsWrittenBeforeStart) {
  TempDir dir;
  const fs::path log = dir.path() / "audit.log";
  appendFile(log, recordLine(5000, "111111"));
  RecordIndex index(log);
  const auto mark = index.mark();
  EXPECT_EQ(index.waitFor("127.0.0.1", 5000, mark, std::chrono::steady_clock::now() + 50ms),
            std::nullopt);
  appendFile(log, recordLine(5000, "222222"));
  const auto record = index.waitFor("127.0.0.1", 5000, mark, std::chrono::steady_clock::now() + 5s);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->rule_ids, (std::vector<std::string>{"222222"}));
}

TEST(RecordIndex, FindsRecordAppendedLaterInPieces) {
  TempDir dir;
  const fs::path log = dir.path() / "audit.log";
  appendFile(log, "");
  RecordIndex index(log);
  const auto mark = index.mark();
  const std::string line = recordLine(5001, "942100");
  std::thread writer([&] {
    appendFile(log, line.substr(0, 20));
    std::this_thread::sleep_for(20ms);  // a writer that flushes half a line first
    appendFile(log, line.substr(20));
  });
  const auto record = index.waitFor("127.0.0.1", 5001, mark, std::chrono::steady_clock::now() + 5s);
  writer.join();
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->rule_ids, (std::vector<std::string>{"942100"}));
}

TEST(RecordIndex, ReusedPortMatchesOnlyRecordsAfterMark) {
  TempDir dir;
  const fs::path log = dir.path() / "audit.log";
  appendFile(log, "");
  RecordIndex index(log);
  appendFile(log, recordLine(5002, "100000"));
  const auto mark = index.mark();
  appendFile(log, recordLine(5002, "200000"));
  const auto record = index.waitFor("127.0.0.1", 5002, mark, std::chrono::steady_clock::now() + 5s);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->rule_ids, (std::vector<std::string>{"200000"}));
}

TEST(RecordIndex, TailsNewSegmentsInFolder) {
  TempDir dir;
  appendFile(dir.path() / "seg-000001.ndjson", recordLine(5003, "100000"));
  RecordIndex index(dir.path());
  const auto mark = index.mark();
  appendFile(dir.path() / "ignored.txt", recordLine(5004, "300000"));
  appendFile(dir.path() / "seg-000002.ndjson", recordLine(5004, "200000"));
  const auto record = index.waitFor("127.0.0.1", 5004, mark, std::chrono::steady_clock::now() + 5s);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->rule_ids, (std::vector<std::string>{"200000"}));
  EXPECT_EQ(index.waitFor("127.0.0.1", 5003, mark, std::chrono::steady_clock::now() + 20ms),
            std::nullopt);
}

TEST(RecordIndex, DifferentClientAddressDoesNotMatch) {
  TempDir dir;
  const fs::path log = dir.path() / "audit.log";
  appendFile(log, "");
  RecordIndex index(log);
  const auto mark = index.mark();
  appendFile(log, recordLine(5005, "100000"));
  EXPECT_EQ(index.waitFor("::1", 5005, mark, std::chrono::steady_clock::now() + 100ms),
            std::nullopt);
}

// ---------------------------------------------------------------------------
// End to end against a loopback test server

// Replies 200 to each connection and writes a record for its client port:
// rule 942100 when the request contains "union", none otherwise. Stops after
// `connections` connections.
class RecordingServer {
 public:
  RecordingServer(fs::path log, int connections)
      : log_(std::move(log)),
        acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}),
        thread_([this, connections] { serve(connections); }) {}
  ~RecordingServer() { thread_.join(); }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  void serve(int connections) {
    for (int i = 0; i < connections; ++i) {
      boost::asio::ip::tcp::socket socket(io_);
      acceptor_.accept(socket);
      std::string request;
      boost::system::error_code ec;
      boost::asio::read_until(socket, boost::asio::dynamic_buffer(request), "\r\n\r\n", ec);
      const std::string reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
      boost::asio::write(socket, boost::asio::buffer(reply), ec);
      const auto peer = socket.remote_endpoint(ec);
      const bool attack = request.find("union") != std::string::npos;
      appendFile(log_, R"({"transaction":{"client_ip":"127.0.0.1","client_port":)" +
                           std::to_string(peer.port()) + R"(,"messages":[)" +
                           (attack ? R"({"message":"SQLi","details":{"ruleId":"942100"}})" : "") +
                           "]}}\n");
    }
  }

  fs::path log_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
};

TEST(ReplayRun, CountsPassAndFailAgainstRecordingServer) {
  TempDir dir;
  const fs::path log = dir.path() / "audit.log";
  appendFile(log, "");
  const auto tests = parseFtwYaml(R"(
meta: {enabled: true}
tests:
  - test_title: detected
    stages:
      - stage:
          input: {uri: "/?id=1%20union%20select%201", headers: {Host: localhost}}
          output: {log_contains: id "942100"}
  - test_title: clean
    stages:
      - stage:
          input: {uri: "/", headers: {Host: localhost}}
          output: {no_log_contains: id "942100", status: 200}
  - test_title: wrong-expectation
    stages:
      - stage:
          input: {uri: "/", headers: {Host: localhost}}
          output: {log_contains: id "941100"}
)",
                                  "inline.yaml");
  RecordingServer server(log, 3);
  ReplayOptions options;
  options.target = parseTarget("http://127.0.0.1:" + std::to_string(server.port()));
  options.records = log;
  options.timeout = 5s;
  options.concurrency = 2;
  std::ostringstream out;
  Summary summary;
  const auto results = runTests(tests, options, out, summary);

  EXPECT_EQ(summary.passed, 2u);
  EXPECT_EQ(summary.failed, 1u);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[0].outcome, Outcome::kPass);
  EXPECT_EQ(results[1].outcome, Outcome::kPass);
  EXPECT_EQ(results[2].outcome, Outcome::kFail);
  EXPECT_EQ(results[1].stages.at(0).status, std::optional<int>(200));
  EXPECT_EQ(out.str(),
            "FAIL inline.yaml:wrong-expectation stage 1: log_contains 'id \"941100\"' not found; "
            "rule ids recorded: none\n2 passed, 1 failed\n");

  const std::string report = renderJsonReport(results, summary, options);
  EXPECT_NE(report.find(R"("summary":{"passed":2,"failed":1,"skipped":0})"), std::string::npos)
      << report;
}

TEST(ReplayRun, ConnectionRefusedIsAnError) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor probe(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  const auto port = probe.local_endpoint().port();
  probe.close();  // nothing listens on this port now
  const Target target = parseTarget("http://127.0.0.1:" + std::to_string(port));
  const ExchangeResult result = exchange(target, "GET / HTTP/1.0\r\n\r\n", 2s);
  EXPECT_FALSE(result.connected);
  EXPECT_FALSE(result.status.has_value());
  EXPECT_NE(result.error.find("connecting to 127.0.0.1"), std::string::npos) << result.error;
}

}  // namespace
}  // namespace webtrap::replay
