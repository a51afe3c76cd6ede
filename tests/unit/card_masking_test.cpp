// Card number masking in records from ModSecurity servers: the JSON-aware
// masker, the decoder that applies it, and the dead letters of ingest.
#include "collector/card_masking.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <simdjson.h>

#include "collector/audit_record.h"
#include "collector/ingest.h"
#include "common/card_numbers.h"
#include "common/encoding.h"
#include "ingest_fixture.h"

namespace webtrap::collector {
namespace {

namespace fs = std::filesystem;

// Luhn-valid test numbers of the card schemes, and numbers that fail the check.
constexpr const char* kVisa = "4111111111111111";
constexpr const char* kMastercard = "5555555555554444";
constexpr const char* kAmex = "378282246310005";
constexpr const char* kVisa2 = "4012888888881881";
// Luhn-valid, but written as a bare JSON number, which is kept.
constexpr const char* kBareNumber = "6011111111111117";
constexpr const char* kNotLuhn16 = "4111111111111112";
constexpr const char* kNotLuhn13 = "1234567890123";
constexpr const char* kNotLuhn19 = "1234567890123456789";

const std::vector<std::string> kFullNumbers = {kVisa, kMastercard, kAmex, kVisa2};

bool parsesAsJson(const std::string& text) {
  simdjson::dom::parser parser;
  simdjson::dom::element element;
  return parser.parse(text).get(element) == simdjson::SUCCESS;
}

// Returns the text with every separator removed, so that a number split by
// spaces, dashes or '+' is found by a plain search.
std::string withoutSeparators(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c != ' ' && c != '-' && c != '+') {
      out += c;
    }
  }
  return out;
}

void expectNoFullNumber(const std::string& text, const std::string& where) {
  std::string joined = withoutSeparators(text);
  for (const std::string& number : kFullNumbers) {
    EXPECT_EQ(joined.find(number), std::string::npos) << number << " in " << where;
  }
}

// A libmodsecurity v3 record (nginx connector layout) with card numbers in
// the URI and its arguments, a header, the body, and a message's match and
// data, plus a bare JSON number that passes the Luhn check.
std::string modsec3Record() {
  std::string record = R"j({"transaction":{"client_ip":"203.0.113.9",)j";
  record += R"j("time_stamp":"Fri Dec  4 15:41:52 2026","server_id":"abc","client_port":51000,)j";
  record += R"j("host_ip":"127.0.0.1","host_port":80,"unique_id":"17963993203.232894",)j";
  record += R"j("x_bytes":6011111111111117,)j";
  record += R"j("request":{"method":"POST","http_version":1.1,)j";
  record += R"j("uri":"/checkout?cc=4111111111111111&order=4111111111111112&ref=1234567890123)j";
  record += R"j(&pan=%35%35%35%35%35%35%35%35%35%35%35%35%34%34%34%34",)j";
  record += R"j("body":"card=5555+5555+5555+4444&note=1234567890123456789",)j";
  record += R"j("headers":{"Host":"shop.example","X-Card":"3782 822463 10005",)j";
  record += R"j("Referer":"http://shop.example/?q=\"4012888888881881\""}},)j";
  record += R"j("response":{"body":"","http_code":200,"headers":{"Server":"nginx"}},)j";
  record += R"j("producer":{"modsecurity":"ModSecurity v3.0.9 (Linux)",)j";
  record += R"j("connector":"ModSecurity-nginx v1.0.3","secrules_engine":"DetectionOnly",)j";
  record += R"j("components":["OWASP_CRS/3.3.4\""]},)j";
  record += R"j("messages":[{"message":"Card number in argument",)j";
  record += R"j("details":{"match":"Matched \"Operator `Rx' against variable `ARGS:cc' )j";
  record += R"j((Value: `4111111111111111' )","reference":"o0,16",)j";
  record += R"j("ruleId":"920999","file":"/etc/modsecurity/custom.conf",)j";
  record += R"j("lineNumber":"12","data":"Matched Data: 4012-8888-8888-1881 found within ARGS:cc",)j";
  record += R"j("severity":"2","ver":"OWASP_CRS/3.3.4","rev":"","tags":["pci"],)j";
  record += R"j("maturity":"0","accuracy":"0"}}]}})j";
  return record;
}

// A mod_security2 record (Apache, JSON audit log) with card numbers in the
// request line, a header, the body and a message's data.
std::string modsec2Record() {
  std::string record = R"j({"transaction":{"time":"04/Dec/2026:16:13:03.951955 +0000",)j";
  record += R"j("transaction_id":"axLmj1PZs792kfjhpO8zoAAAAAA","remote_address":"198.51.100.4",)j";
  record += R"j("remote_port":42674,"local_address":"127.0.0.1","local_port":80},)j";
  record += R"j("request":{"request_line":"POST /pay?pan=4111111111111111&n=4111111111111112 HTTP/1.1",)j";
  record += R"j("headers":{"Host":"shop.example","Referer":"http://shop.example/?card=5555555555554444",)j";
  record += R"j("Content-Type":"application/x-www-form-urlencoded"},)j";
  record += R"j("body":["number=4012-8888-8888-1881&amex=378282246310005&ref=1234567890123"]},)j";
  record += R"j("response":{"protocol":"HTTP/1.1","status":403,"headers":{"Connection":"close"}},)j";
  record += R"j("audit_data":{"messages":["Warning. Pattern match \"\\\\d{16}\" at ARGS:pan. )j";
  record += R"j([file \"/etc/modsecurity/custom.conf\"] [line \"12\"] [id \"920999\"] )j";
  record += R"j([msg \"Card number in argument\"] )j";
  record += R"j([data \"Matched Data: 4111111111111111 found within ARGS:pan\"] )j";
  record += R"j([severity \"CRITICAL\"] [tag \"pci\"]"],)j";
  record += R"j("server":"Apache/2.4.62 (Debian)"}})j";
  return record;
}

std::string replaceAll(std::string text, const std::string& from, const std::string& to) {
  for (std::size_t pos = text.find(from); pos != std::string::npos;
       pos = text.find(from, pos + to.size())) {
    text.replace(pos, from.size(), to);
  }
  return text;
}

TEST(CardMaskingJson, MasksInsideStrings) {
  auto masked = maskCardNumbersInJson(R"j({"a":"x 4111111111111111 y"})j");
  ASSERT_TRUE(masked);
  EXPECT_EQ(*masked, R"j({"a":"x 411111******1111 y"})j");
}

TEST(CardMaskingJson, KeepsBareNumbers) {
  std::string text = R"j({"a":4111111111111111,"b":[5555555555554444],"c":-4111111111111111})j";
  EXPECT_FALSE(maskCardNumbersInJson(text));
}

TEST(CardMaskingJson, MasksStringNextToBareNumber) {
  auto masked = maskCardNumbersInJson(R"j({"n":4111111111111111,"s":"4111111111111111"})j");
  ASSERT_TRUE(masked);
  EXPECT_EQ(*masked, R"j({"n":4111111111111111,"s":"411111******1111"})j");
  EXPECT_TRUE(parsesAsJson(*masked));
}

TEST(CardMaskingJson, FollowsEscapedQuotes) {
  // The escaped quotes do not end the string, so the card is inside it.
  auto masked = maskCardNumbersInJson(R"j({"a":"\"x\\\":4111111111111111,"})j");
  ASSERT_TRUE(masked);
  EXPECT_EQ(masked->find(kVisa), std::string::npos);
  EXPECT_TRUE(parsesAsJson(*masked));
}

TEST(CardMaskingJson, KeepsNumbersFailingLuhn) {
  ASSERT_FALSE(luhnValid(kNotLuhn16));
  ASSERT_FALSE(luhnValid(kNotLuhn13));
  ASSERT_FALSE(luhnValid(kNotLuhn19));
  std::string text = std::string(R"j({"a":")j") + kNotLuhn16 + " " + kNotLuhn13 + "/" +
                     kNotLuhn19 + R"j("})j";
  EXPECT_FALSE(maskCardNumbersInJson(text));
}

TEST(CardMaskingJson, MasksAfterStrayQuote) {
  // An unescaped quote (as an old libmodsecurity writes after a component
  // name) flips what looks like a string. The card is still masked, because
  // the bytes around it are not those of a bare number.
  auto masked = maskCardNumbersInJson(R"j({"c":["CRS/3.3.4""],"d":"Matched 4111111111111111 x"})j");
  ASSERT_TRUE(masked);
  EXPECT_EQ(masked->find(kVisa), std::string::npos);
}

TEST(CardMaskingJson, MasksPercentEscapedDigits) {
  auto masked = maskCardNumbersInJson(
      R"j({"uri":"/pay?cc=%34%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31&n=1"})j");
  ASSERT_TRUE(masked);
  EXPECT_EQ(*masked,
            R"j({"uri":"/pay?cc=%34%31%31%31%31%31%2A%2A%2A%2A%2A%2A%31%31%31%31&n=1"})j");
  // Plain and escaped digits mixed, with encoded separators between groups.
  masked = maskCardNumbersInJson(R"j({"b":"cc=4111%20%31%3111%20%311%311%201111"})j");
  ASSERT_TRUE(masked);
  EXPECT_EQ(*masked, R"j({"b":"cc=4111%20%31%31**%20%2A*%2A*%201111"})j");
  EXPECT_TRUE(parsesAsJson(*masked));
}

TEST(CardMaskingJson, KeepsUuidTail) {
  // The tail 809847100000279 passes the Luhn check but starts with 8 and is
  // written 3-12, which no card is.
  std::string text = R"j({"unique_id":"0f8e2c1a-5d3b-4e6f-b809-847100000279","n":"x"})j";
  EXPECT_FALSE(maskCardNumbersInJson(text));
}

TEST(CardMaskingJson, MasksPlainText) {
  auto masked = maskCardNumbersInJson("card 4111-1111-1111-1111 expires 12/26");
  ASSERT_TRUE(masked);
  EXPECT_EQ(*masked, "card 4111-11**-****-1111 expires 12/26");
}

TEST(CardMaskingJson, CardAtEveryBlockOffset) {
  // The scan reads 16 bytes a step, so put the card at each offset across
  // a few steps, with and without separators.
  for (const std::string card : {"4111111111111111", "4111 1111 1111 1111", "378282246310005",
                                 "4111%201111%201111%201111"}) {
    for (std::size_t padding = 0; padding < 48; ++padding) {
      std::string inner = std::string(padding, 'x') + " " + card + " tail";
      std::string json = R"j({"a":")j" + inner + R"j("})j";
      auto masked = maskCardNumbersInJson(json);
      auto expected = maskCardNumbers(inner);
      ASSERT_TRUE(expected) << inner;
      ASSERT_TRUE(masked) << json;
      EXPECT_EQ(*masked, R"j({"a":")j" + *expected + R"j("})j") << padding;
    }
  }
}

TEST(CardMaskingJson, MatchesPlainMaskerOnRandomText) {
  // Inside one JSON string, the JSON masker must mask exactly what
  // maskCardNumbers masks. The texts mix digits, separators and letters.
  const std::string alphabet = "0123456789012345678901234567890123456789 -+%2Dd xa";
  std::uint32_t state = 12345;
  auto next = [&state] {
    state = state * 1103515245u + 12345u;
    return (state >> 16) & 0x7FFFu;
  };
  int masked_count = 0;
  int card_rounds = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string inner;
    std::size_t length = 1 + next() % 120;
    for (std::size_t i = 0; i < length; ++i) {
      inner += alphabet[next() % alphabet.size()];
    }
    bool with_card = round % 3 == 0;
    if (with_card) {
      inner.insert(next() % (inner.size() + 1), std::string(" ") + kVisa + " ");
    }
    if (inner.find("%3") != std::string::npos) {
      continue;  // escaped digits, which maskCardNumbers does not read
    }
    std::string json = R"j({"a":")j" + inner + R"j("})j";
    auto expected = maskCardNumbers(inner);
    auto masked = maskCardNumbersInJson(json);
    ASSERT_EQ(masked.has_value(), expected.has_value()) << inner;
    if (with_card) {
      ++card_rounds;
      ASSERT_TRUE(expected) << inner;
      EXPECT_EQ(expected->find(kVisa), std::string::npos) << inner;
    }
    if (expected) {
      ++masked_count;
      EXPECT_EQ(*masked, R"j({"a":")j" + *expected + R"j("})j") << inner;
    }
  }
  EXPECT_GE(card_rounds, 900);
  EXPECT_GT(masked_count, card_rounds);
}

TEST(CardMaskingDecode, Modsec3FieldsMasked) {
  DecodeResult result = decodeAuditRecord(modsec3Record(), RecordFormat::kModsec3, "web1");
  ASSERT_TRUE(result.ok) << result.error;
  const AuditRecord& record = result.record;
  EXPECT_EQ(record.uri,
            "/checkout?cc=411111******1111&order=4111111111111112&ref=1234567890123"
            "&pan=%35%35%35%35%35%35%2A%2A%2A%2A%2A%2A%34%34%34%34");
  EXPECT_EQ(record.request_body, "card=5555+55**+****+4444&note=1234567890123456789");
  std::string headers;
  for (const HeaderField& header : record.request_headers) {
    headers += header.name + ": " + header.value + "\n";
  }
  EXPECT_NE(headers.find("X-Card: 3782 82**** *0005"), std::string::npos) << headers;
  EXPECT_NE(headers.find(R"j(?q="401288******1881")j"), std::string::npos) << headers;
  ASSERT_EQ(record.messages.size(), 1u);
  EXPECT_EQ(record.messages[0].data, "Matched Data: 4012-88**-****-1881 found within ARGS:cc");
  EXPECT_NE(record.messages[0].match.find("`411111******1111'"), std::string::npos)
      << record.messages[0].match;

  expectNoFullNumber(auditRecordToJson(record), "the decoded record");
  expectNoFullNumber(record.original, "original");
  EXPECT_TRUE(parsesAsJson(record.original));
  // The bare number and the numbers that fail the Luhn check stay.
  EXPECT_NE(record.original.find(R"j("x_bytes":6011111111111117,)j"), std::string::npos);
  EXPECT_NE(record.original.find(kNotLuhn16), std::string::npos);
  EXPECT_NE(record.original.find(kNotLuhn13), std::string::npos);
  EXPECT_NE(record.original.find(kNotLuhn19), std::string::npos);
}

TEST(CardMaskingDecode, Modsec2FieldsMasked) {
  DecodeResult result = decodeAuditRecord(modsec2Record(), RecordFormat::kAuto, "web2");
  ASSERT_TRUE(result.ok) << result.error;
  const AuditRecord& record = result.record;
  EXPECT_EQ(record.format, RecordFormat::kModsec2);
  EXPECT_EQ(record.request_line, "POST /pay?pan=411111******1111&n=4111111111111112 HTTP/1.1");
  EXPECT_EQ(record.uri, "/pay?pan=411111******1111&n=4111111111111112");
  EXPECT_EQ(record.request_body,
            "number=4012-88**-****-1881&amex=378282*****0005&ref=1234567890123");
  std::string referer;
  for (const HeaderField& header : record.request_headers) {
    if (header.name == "Referer") {
      referer = header.value;
    }
  }
  EXPECT_EQ(referer, "http://shop.example/?card=555555******4444");
  ASSERT_EQ(record.messages.size(), 1u);
  EXPECT_EQ(record.messages[0].data, "Matched Data: 411111******1111 found within ARGS:pan");

  expectNoFullNumber(auditRecordToJson(record), "the decoded record");
  expectNoFullNumber(record.original, "original");
  EXPECT_TRUE(parsesAsJson(record.original));
  EXPECT_NE(record.original.find(kNotLuhn16), std::string::npos);
  EXPECT_NE(record.original.find(kNotLuhn13), std::string::npos);
}

TEST(CardMaskingDecode, IdsAndMessageNumbersKept) {
  // A UUID unique_id and an ISBN in a rule message pass the Luhn check, but
  // are no card numbers, so the record keeps them as sent. The cards of the
  // record are still masked.
  const std::string uuid = "0f8e2c1a-5d3b-4e6f-b809-847100000279";
  const std::string isbn = "978-3-16-148409-4";
  std::string record = replaceAll(modsec3Record(), "17963993203.232894", uuid);
  record = replaceAll(record, R"j("message":"Card number in argument")j",
                      R"j("message":"ISBN )j" + isbn + R"j( in argument")j");
  DecodeResult result = decodeAuditRecord(record, RecordFormat::kModsec3, "web1");
  ASSERT_TRUE(result.ok) << result.error;
  EXPECT_EQ(result.record.transaction_id, uuid);
  ASSERT_EQ(result.record.messages.size(), 1u);
  EXPECT_EQ(result.record.messages[0].message, "ISBN " + isbn + " in argument");
  EXPECT_NE(result.record.original.find(uuid), std::string::npos);
  EXPECT_NE(result.record.original.find(isbn), std::string::npos);
  expectNoFullNumber(result.record.original, "original");
  expectNoFullNumber(auditRecordToJson(result.record), "the decoded record");
}

TEST(CardMaskingDecode, EventIdFromMaskedBytes) {
  std::string record = modsec3Record();
  DecodeResult first = decodeAuditRecord(record, RecordFormat::kModsec3, "web1");
  DecodeResult again = decodeAuditRecord(record, RecordFormat::kModsec3, "web1");
  ASSERT_TRUE(first.ok) << first.error;
  ASSERT_TRUE(again.ok) << again.error;
  EXPECT_EQ(first.record.event_id, again.record.event_id);

  // A record already masked by hand gives the same id, so the id is a hash
  // of the masked bytes and cannot be used to test guessed numbers.
  DecodeResult masked = decodeAuditRecord(first.record.original, RecordFormat::kModsec3, "web1");
  ASSERT_TRUE(masked.ok) << masked.error;
  EXPECT_EQ(masked.record.event_id, first.record.event_id);
  EXPECT_EQ(masked.record.original, first.record.original);
}

TEST(CardMaskingDecode, RecordsWithoutCardsUnchanged) {
  std::string record = replaceAll(replaceAll(modsec3Record(), kVisa, "41111"), kMastercard, "5");
  record = replaceAll(replaceAll(record, kAmex, "3"), kVisa2, "4");
  record = replaceAll(record, "4012-8888-8888-1881", "4");
  record = replaceAll(record, "5555+5555+5555+4444", "5");
  record = replaceAll(record, "3782 822463 10005", "3");
  record = replaceAll(record, "%35%35%35%35%35%35%35%35%35%35%35%35%34%34%34%34", "5");
  DecodeResult result = decodeAuditRecord(record, RecordFormat::kModsec3, "web1");
  ASSERT_TRUE(result.ok) << result.error;
  EXPECT_EQ(result.record.original, record);
}

TEST(CardMaskingDecode, InvalidUtf8Base64Masked) {
  std::string record = modsec2Record();
  std::size_t body = record.find("number=");
  ASSERT_NE(body, std::string::npos);
  record.insert(body, "\xC3\x28");
  DecodeResult result = decodeAuditRecord(record, RecordFormat::kModsec2, "web2");
  ASSERT_TRUE(result.ok) << result.error;
  EXPECT_TRUE(result.record.invalid_utf8);
  std::string exact = base64Decode(result.record.original_base64).value_or("");
  ASSERT_FALSE(exact.empty());
  EXPECT_NE(exact.find("\xC3\x28"), std::string::npos);
  expectNoFullNumber(exact, "original_base64");
  expectNoFullNumber(result.record.original, "original");
  expectNoFullNumber(auditRecordToJson(result.record), "the decoded record");
}

TEST(CardMaskingDecode, StrayComponentQuoteMasked) {
  // A libmodsecurity build that does not escape the component's trailing
  // quote writes invalid JSON, which the decoder repairs. The messages come
  // after the components, where a quote count is off by one.
  std::string record = replaceAll(modsec3Record(), R"j("OWASP_CRS/3.3.4\"")j",
                                  R"j("OWASP_CRS/3.3.4"")j");
  ASSERT_NE(record.find(R"j(["OWASP_CRS/3.3.4""])j"), std::string::npos);
  DecodeResult result = decodeAuditRecord(record, RecordFormat::kModsec3, "web1");
  ASSERT_TRUE(result.ok) << result.error;
  ASSERT_EQ(result.record.messages.size(), 1u);
  EXPECT_EQ(result.record.messages[0].data,
            "Matched Data: 4012-88**-****-1881 found within ARGS:cc");
  expectNoFullNumber(auditRecordToJson(result.record), "the decoded record");
  EXPECT_TRUE(parsesAsJson(result.record.original));

  DecodeResult again = decodeAuditRecord(record, RecordFormat::kModsec3, "web1");
  ASSERT_TRUE(again.ok) << again.error;
  EXPECT_EQ(again.record.event_id, result.record.event_id);
}

TEST(CardMaskingDecode, ErrorTextMasked) {
  std::string record = R"j({"transaction":{"client_ip":"a","time_stamp":"Fri Dec  4 15:41:52 2026",)j"
                       R"j("client_port":"4111111111111111","request":{"method":"GET","uri":"/"}}})j";
  DecodeResult result = decodeAuditRecord(record, RecordFormat::kModsec3, "web1");
  ASSERT_FALSE(result.ok);
  EXPECT_NE(result.error.find("client_port"), std::string::npos) << result.error;
  EXPECT_EQ(result.error.find(kVisa), std::string::npos) << result.error;
}

TEST(CardMaskingDecode, WebtrapRecordsNotScanned) {
  // The probe masks its records before writing them, so the collector does
  // not scan them again. A full number here shows the scan was skipped.
  std::ifstream stream(std::string(WEBTRAP_SOURCE_DIR) +
                           "/tests/fixtures/modsecurity/webtrap-probe-login.json",
                       std::ios::binary);
  ASSERT_TRUE(stream);
  std::stringstream content;
  content << stream.rdbuf();
  std::string record = replaceAll(content.str(), "/login.php?next=%2F",
                                  std::string("/login.php?next=") + kVisa);
  DecodeResult result = decodeAuditRecord(record, RecordFormat::kAuto, "probe1");
  ASSERT_TRUE(result.ok) << result.error;
  EXPECT_EQ(result.record.format, RecordFormat::kWebtrap);
  EXPECT_NE(result.record.uri.find(kVisa), std::string::npos);
}

class CardMaskingIngest : public IngestFixture {
 protected:
  CardMaskingIngest() : IngestFixture("webtrap-card-masking-test", source()) {}

  static IngestSource source() {
    IngestSource source;
    source.input = InputKind::kModsecurityHttp;
    source.format = RecordFormat::kAuto;
    source.sensor_id = "web1";
    return source;
  }
};

TEST_F(CardMaskingIngest, DeadLetterLinesMasked) {
  std::string broken = R"j({"transaction":{"uri":"/pay?cc=4111111111111111"},"n":6011111111111117)j";
  IngestResult result = ingest_->ingestLines(broken + "\n", source_);
  EXPECT_EQ(result.rejected, 1u);
  std::vector<DeadLetter> letters = store_->deadLetters(10);
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].payload.find(kVisa), std::string::npos) << letters[0].payload;
  EXPECT_NE(letters[0].payload.find("411111******1111"), std::string::npos) << letters[0].payload;
  // A bare number is a number, not request text, and is kept.
  EXPECT_NE(letters[0].payload.find(kBareNumber), std::string::npos) << letters[0].payload;
}

TEST_F(CardMaskingIngest, DecodedDeadLettersMasked) {
  DeadLetter letter;
  letter.reason = "input=file path=/var/log/audit.json offset=0: record: invalid JSON";
  letter.payload = "garbage card=4111 1111 1111 1111";
  std::vector<DeadLetter> letters;
  letters.push_back(letter);
  IngestResult result = ingest_->ingestDecoded({}, std::move(letters), source_);
  EXPECT_EQ(result.rejected, 1u);
  std::vector<DeadLetter> stored = store_->deadLetters(10);
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].payload, "garbage card=4111 11** **** 1111");
}

TEST_F(CardMaskingIngest, StoredDocumentMasked) {
  IngestResult result = ingest_->ingestLines(modsec3Record() + "\n", source_);
  ASSERT_EQ(result.stored, 1u);
  std::vector<StoredEvent> events = store_->readAfter(0, 10, 1 << 24);
  ASSERT_EQ(events.size(), 1u);
  expectNoFullNumber(events[0].document, "the stored document");
  EXPECT_NE(events[0].document.find("411111******1111"), std::string::npos);
}

}  // namespace
}  // namespace webtrap::collector
