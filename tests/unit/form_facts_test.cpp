// Tests for form facts, card number masking, and the masking of every string
// that serializeRecord writes.
#include "probe/form_facts.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string>

#include <gtest/gtest.h>
#include <simdjson.h>

#include "common/encoding.h"
#include "probe/record.h"

namespace webtrap::probe {
namespace {

const std::string kKey(32, 'k');

CapturedRequest post(std::string target, std::string content_type, std::string body) {
  CapturedRequest request;
  request.parsed = true;
  request.method = "POST";
  request.target = std::move(target);
  request.http_version = "1.1";
  request.request_line = "POST " + request.target + " HTTP/1.1";
  request.headers = {{"Host", "www.example.com"}, {"Content-Type", std::move(content_type)}};
  request.body = std::move(body);
  request.body_size = request.body.size();
  request.body_sha256 = sha256Hex(request.body);
  return request;
}

CapturedRequest urlencoded(std::string target, std::string body) {
  return post(std::move(target), "application/x-www-form-urlencoded", std::move(body));
}

TEST(Luhn, KnownNumbers) {
  EXPECT_TRUE(luhnValid("4111111111111111"));
  EXPECT_TRUE(luhnValid("5555555555554444"));
  EXPECT_TRUE(luhnValid("378282246310005"));
  EXPECT_TRUE(luhnValid("4222222222222"));
  EXPECT_TRUE(luhnValid("4000000000000000006"));
  EXPECT_FALSE(luhnValid("4111111111111112"));
  EXPECT_FALSE(luhnValid("123456789012"));
  EXPECT_FALSE(luhnValid(""));
  EXPECT_FALSE(luhnValid("41111111111111x1"));
}

TEST(CardCandidates, SeparatorsAndLengths) {
  auto found = findCardCandidates("pay 4111-1111-1111-1111 now", false, 12);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].digits, "4111111111111111");
  EXPECT_TRUE(found[0].luhn_valid);
  EXPECT_EQ(found[0].begin, 4u);
  EXPECT_EQ(found[0].end, 23u);

  // 12 digits is a candidate for the facts, 11 is not.
  EXPECT_EQ(findCardCandidates("123456789012", false, 12).size(), 1u);
  EXPECT_TRUE(findCardCandidates("12345678901", false, 12).empty());
  // 20 digits without separators is no card.
  EXPECT_TRUE(findCardCandidates("41111111111111110000", false, 12).empty());
  // Two separators in a row end the run.
  EXPECT_TRUE(findCardCandidates("4111  1111  1111  1111", false, 12).empty());
  // '+' and %20 separate digits only in encoded text.
  EXPECT_TRUE(findCardCandidates("4111+1111+1111+1111", false, 12).empty());
  auto encoded = findCardCandidates("4111+1111%201111%2D1111", true, 13);
  ASSERT_EQ(encoded.size(), 1u);
  EXPECT_EQ(encoded[0].digits, "4111111111111111");
}

TEST(CardCandidates, CardInsideLongerRun) {
  // An expiry and CVV written after the number make a 23-digit run.
  auto found = findCardCandidates("4111 1111 1111 1111 12 26 123", false, 12);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].digits, "4111111111111111");
  EXPECT_TRUE(found[0].luhn_valid);

  // A Luhn-invalid run in range stays a candidate when nothing inside passes.
  auto invalid = findCardCandidates("4111 1111 1111 1112", false, 12);
  ASSERT_EQ(invalid.size(), 1u);
  EXPECT_FALSE(invalid[0].luhn_valid);
}

TEST(MaskCardNumbers, KeepsBinAndLastFour) {
  EXPECT_EQ(maskCardNumbers("4111111111111111"), "411111******1111");
  EXPECT_EQ(maskCardNumbers("cc=4111 1111 1111 1111&x=1"), "cc=4111 11** **** 1111&x=1");
  EXPECT_EQ(maskCardNumbers("378282246310005"), "378282*****0005");
  EXPECT_EQ(maskCardNumbers("4222222222222"), "422222***2222");
  EXPECT_EQ(maskCardNumbers("4000000000000000006"), "400000*********0006");
  EXPECT_EQ(maskCardNumbers("n=4111+1111+1111+1111"), "n=4111+11**+****+1111");
  EXPECT_EQ(maskCardNumbers("n=4111%201111%201111%201111"), "n=4111%2011**%20****%201111");
  EXPECT_EQ(maskCardNumbers("a 4111111111111111 b 5555-5555-5555-4444"),
            "a 411111******1111 b 5555-55**-****-4444");
}

TEST(MaskCardNumbers, LeavesOtherDigitsAlone) {
  EXPECT_FALSE(maskCardNumbers("4111111111111112").has_value());
  EXPECT_FALSE(maskCardNumbers("phone +49 941 1234567").has_value());
  EXPECT_FALSE(maskCardNumbers("").has_value());
  EXPECT_FALSE(maskCardNumbers("no digits at all").has_value());
  // 12 digits pass Luhn here but are too short to be masked.
  EXPECT_FALSE(maskCardNumbers("411111111116").has_value());
  // A 20-digit run without separators, such as an order id.
  EXPECT_FALSE(maskCardNumbers("41111111111111110000").has_value());
}

TEST(CountLinks, UrlsWwwAndBbcode) {
  EXPECT_EQ(countLinks(""), 0u);
  EXPECT_EQ(countLinks("no links here, just text."), 0u);
  EXPECT_EQ(countLinks("see http://a.example and https://b.example"), 2u);
  EXPECT_EQ(countLinks("visit www.c.example"), 1u);
  EXPECT_EQ(countLinks("HTTPS://WWW.D.EXAMPLE/x"), 1u);
  EXPECT_EQ(countLinks("[url=http://www.e.example]cheap[/url]"), 1u);
  EXPECT_EQ(countLinks("[url]http://f.example[/url] and [URL=g.example]g[/url]"), 2u);
  EXPECT_EQ(countLinks("<a href=\"http://h.example\">http://h.example</a>"), 2u);
}

TEST(CardFingerprint, MatchesHmacSha256) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  std::string digits = "4111111111111111";
  HMAC(EVP_sha256(), kKey.data(), static_cast<int>(kKey.size()),
       reinterpret_cast<const unsigned char*>(digits.data()), digits.size(), digest, &length);
  std::string expected =
      hexEncode(std::string_view(reinterpret_cast<const char*>(digest), length)).substr(0, 16);
  EXPECT_EQ(cardFingerprint(digits, kKey), expected);
  EXPECT_EQ(cardFingerprint(digits, kKey).size(), 16u);
  EXPECT_NE(cardFingerprint(digits, kKey), cardFingerprint(digits, std::string(32, 'x')));
  EXPECT_NE(cardFingerprint(digits, kKey), cardFingerprint("5555555555554444", kKey));
}

TEST(FormFacts, FormKinds) {
  for (const char* kind : {"login", "register", "comment", "contact", "coupon", "checkout"}) {
    EXPECT_TRUE(isFormKind(kind)) << kind;
  }
  for (const char* kind : {"page", "product", "admin", "static", "error", "form", ""}) {
    EXPECT_FALSE(isFormKind(kind)) << kind;
  }
}

TEST(FormFacts, LoginHashesPassword) {
  FormFacts facts = extractFormFacts(urlencoded("/login.php", "user=admin&pass=secret&bags=false"),
                                     "login", kKey);
  EXPECT_EQ(facts.kind, "login");
  EXPECT_EQ(facts.username, "admin");
  EXPECT_EQ(facts.password_sha256, sha256Hex("secret"));
  EXPECT_TRUE(facts.email.empty());
  EXPECT_TRUE(facts.cards.empty());
}

TEST(FormFacts, RegisterFields) {
  FormFacts facts = extractFormFacts(
      urlencoded("/register.php",
                 "username=bot%2B1&email=bot1%40mail.example&password=p%40ss&confirm=p%40ss"),
      "register", kKey);
  EXPECT_EQ(facts.username, "bot+1");
  EXPECT_EQ(facts.email, "bot1@mail.example");
  EXPECT_EQ(facts.password_sha256, sha256Hex("p@ss"));
}

TEST(FormFacts, LastValueOfRepeatedField) {
  FormFacts facts =
      extractFormFacts(urlencoded("/login.php?user=first", "user=second"), "login", kKey);
  EXPECT_EQ(facts.username, "second");
}

TEST(FormFacts, BoundedTextFields) {
  std::string long_coupon(500, 'A');
  FormFacts facts = extractFormFacts(urlencoded("/shop/cart.php", "coupon=" + long_coupon),
                                     "coupon", kKey);
  EXPECT_EQ(facts.coupon, std::string(kMaxFormCouponBytes, 'A'));

  // A cut never splits a UTF-8 sequence: 63 ASCII bytes, then a 2-byte letter.
  std::string text(63, 'B');
  text += "\xC3\xA9";
  facts = extractFormFacts(urlencoded("/shop/cart.php", "coupon=" + text), "coupon", kKey);
  EXPECT_EQ(facts.coupon, std::string(63, 'B'));

  std::string long_user(1000, 'u');
  facts = extractFormFacts(urlencoded("/login.php", "user=" + long_user), "login", kKey);
  EXPECT_EQ(facts.username.size(), kMaxFormUsernameBytes);
}

TEST(FormFacts, CheckoutCards) {
  FormFacts facts = extractFormFacts(
      urlencoded("/shop/checkout.php",
                 "card_name=A+B&card_number=4111+1111+1111+1111&expiry=12%2F26&cvv=123"),
      "checkout", kKey);
  ASSERT_EQ(facts.cards.size(), 1u);
  EXPECT_EQ(facts.cards[0].bin, "411111");
  EXPECT_EQ(facts.cards[0].last4, "1111");
  EXPECT_TRUE(facts.cards[0].luhn_valid);
  EXPECT_EQ(facts.cards[0].fingerprint, cardFingerprint("4111111111111111", kKey));
}

TEST(FormFacts, CardFieldSpellings) {
  // A card tester can write the number in ways a payment form would still
  // accept; each must count as the same card.
  const std::string full_width =
      "%EF%BC%94%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91"
      "%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91";
  for (const std::string& value :
       {std::string("4111.1111.1111.1111"), std::string("4111%0D%0A1111%0D%0A1111%0D%0A1111"),
        std::string("4111/1111/1111/1111"), std::string("4111+-+1111+-+1111+-+1111"),
        std::string("4111_1111_1111_1111"), full_width}) {
    FormFacts facts = extractFormFacts(
        urlencoded("/shop/checkout.php", "card_number=" + value), "checkout", kKey);
    ASSERT_EQ(facts.cards.size(), 1u) << value;
    EXPECT_EQ(facts.cards[0].fingerprint, cardFingerprint("4111111111111111", kKey)) << value;
    EXPECT_TRUE(facts.cards[0].luhn_valid) << value;
  }
}

TEST(FormFacts, InvalidCardKeptWithFlag) {
  FormFacts facts = extractFormFacts(
      urlencoded("/shop/checkout.php", "cc_number=4111-1111-1111-1112"), "checkout", kKey);
  ASSERT_EQ(facts.cards.size(), 1u);
  EXPECT_FALSE(facts.cards[0].luhn_valid);
  EXPECT_EQ(facts.cards[0].last4, "1112");
}

TEST(FormFacts, DigitsOutsideCardFieldsIgnored) {
  FormFacts facts = extractFormFacts(
      urlencoded("/contact.php", "name=x&phone=4111111111111111&message=hello"), "contact", kKey);
  EXPECT_TRUE(facts.cards.empty());
}

TEST(FormFacts, SameCardCountedOnce) {
  FormFacts facts = extractFormFacts(
      urlencoded("/shop/checkout.php",
                 "card_number=4111111111111111&card_number_again=4111-1111-1111-1111"),
      "checkout", kKey);
  EXPECT_EQ(facts.cards.size(), 1u);
}

TEST(FormFacts, CommentLinksTextAndCards) {
  std::string comment =
      "Great post! Visit http://spam.example and [url=http://www.spam2.example]this[/url], "
      "card 5555 5555 5555 4444";
  CapturedRequest request = urlencoded(
      "/blog/post.php?id=1",
      "name=Bob&email=bob%40x.example&website=http%3A%2F%2Fbob.example&comment=" +
          std::string("Great+post%21+Visit+http%3A%2F%2Fspam.example+and+%5Burl%3Dhttp%3A%2F%2F"
                      "www.spam2.example%5Dthis%5B%2Furl%5D%2C+card+5555+5555+5555+4444"));
  FormFacts facts = extractFormFacts(request, "comment", kKey);
  EXPECT_EQ(facts.kind, "comment");
  EXPECT_EQ(facts.email, "bob@x.example");
  EXPECT_EQ(facts.links, 2u);
  EXPECT_EQ(facts.text_bytes, comment.size());
  ASSERT_EQ(facts.cards.size(), 1u);
  EXPECT_EQ(facts.cards[0].bin, "555555");
  EXPECT_EQ(facts.cards[0].last4, "4444");
}

TEST(FormFacts, MultipartBody) {
  std::string body =
      "--XyZ\r\n"
      "Content-Disposition: form-data; name=\"username\"\r\n\r\n"
      "multi\r\n"
      "--XyZ\r\n"
      "Content-Disposition: form-data; name=\"password\"\r\n\r\n"
      "pw\r\n"
      "--XyZ\r\n"
      "Content-Disposition: form-data; name=\"message\"\r\n\r\n"
      "see www.x.example\r\n"
      "--XyZ\r\n"
      "Content-Disposition: form-data; name=\"cardnumber\"\r\n\r\n"
      "378282246310005\r\n"
      "--XyZ--\r\n";
  FormFacts facts = extractFormFacts(
      post("/register.php", "multipart/form-data; boundary=XyZ", body), "register", kKey);
  EXPECT_EQ(facts.username, "multi");
  EXPECT_EQ(facts.password_sha256, sha256Hex("pw"));
  EXPECT_EQ(facts.links, 1u);
  EXPECT_EQ(facts.text_bytes, 17u);
  ASSERT_EQ(facts.cards.size(), 1u);
  EXPECT_EQ(facts.cards[0].bin, "378282");
  EXPECT_EQ(facts.cards[0].last4, "0005");
}

TEST(FormFacts, JsonBody) {
  FormFacts facts = extractFormFacts(
      post("/shop/cart.php", "application/json", R"({"coupon":"SAVE10","qty":2})"), "coupon",
      kKey);
  EXPECT_EQ(facts.coupon, "SAVE10");
}

TEST(FormFacts, GarbageBodyGivesEmptyFacts) {
  FormFacts facts = extractFormFacts(
      post("/register.php", "multipart/form-data; boundary=", std::string("\x00\xFF--", 4)),
      "register", kKey);
  EXPECT_EQ(facts.kind, "register");
  EXPECT_TRUE(facts.username.empty());
  EXPECT_TRUE(facts.password_sha256.empty());
  EXPECT_TRUE(facts.cards.empty());
}

// serializeRecord masks card numbers wherever they appear.

const std::string kCard = "4111111111111111";
const std::string kMasked = "411111******1111";

std::string recordWithCards(RouteOutcome outcome = {}) {
  CapturedRequest request = urlencoded(
      "/shop/checkout.php?pan=" + kCard,
      "card_number=" + kCard + "&comment=card+4111+1111+1111+1111&bin=\xFF" + kCard);
  request.headers.push_back({"X-Card", kCard});
  request.headers.push_back({"X-" + kCard, "name"});
  request.headers.push_back({"X-Binary", "\xFE" + kCard});
  request.connection_id = "c-1";
  PersonaResponse response;
  response.status = 404;
  response.body = "<p>The requested URL /" + kCard + " was not found</p>";
  outcome.route = "checkout";
  outcome.route_kind = "checkout";
  outcome.baits = {{"credential_canary", "user=" + kCard}};
  InspectionResult inspection;
  inspection.status = InspectionStatus::kComplete;
  RuleMatch match;
  match.id = "920273";
  match.message = "Invalid character in request";
  match.data = "Matched Data: " + kCard + " found within ARGS:card_number: " + kCard;
  match.match = "Matched \"Operator `Rx' with parameter `x' against variable `ARGS:card_number' "
                "(Value: `" +
                kCard + "' )";
  inspection.matches = {match};
  RecordMeta meta;
  meta.event_id = "01938f5e-1c2a-7abc-8def-0123456789ab";
  return serializeRecord(request, response, outcome, inspection, meta);
}

TEST(RecordMasking, NoFullCardAnywhere) {
  std::string record = recordWithCards();
  EXPECT_EQ(record.find(kCard), std::string::npos) << record;
  EXPECT_EQ(record.find("4111 1111 1111 1111"), std::string::npos);
  EXPECT_EQ(record.find("4111+1111+1111+1111"), std::string::npos);
  EXPECT_NE(record.find("pan=" + kMasked), std::string::npos);
  EXPECT_NE(record.find("X-" + kMasked), std::string::npos);
  EXPECT_NE(record.find("Matched Data: " + kMasked), std::string::npos);
  EXPECT_NE(record.find("user=" + kMasked), std::string::npos);
  EXPECT_NE(record.find("/" + kMasked + " was not found"), std::string::npos);
}

TEST(RecordMasking, HiddenSpellingsMasked) {
  // Spellings that an attacker could use to keep a number out of the plain
  // masker: percent escapes in the body, the query and a cookie, dots,
  // newlines, extra digits around the number, and full-width digits.
  std::string percent;
  for (char c : kCard) {
    percent += "%3";
    percent += c;
  }
  CapturedRequest request = urlencoded(
      "/shop/checkout.php?pan=" + percent,
      "card_number=" + percent + "&a=4111.1111.1111.1111&b=4111%0A1111%0A1111%0A1111&c=9" +
          kCard + "000&d=\xEF\xBC\x94\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91"
          "\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91"
          "\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91");
  request.headers.push_back({"Cookie", "cc=" + percent});
  request.headers.push_back({"Host", kCard + ".example"});
  std::string record = serializeRecord(request, {}, {}, {}, {});
  EXPECT_EQ(record.find(percent), std::string::npos) << record;
  EXPECT_EQ(record.find("4111.1111.1111.1111"), std::string::npos);
  EXPECT_EQ(record.find("4111%0A1111%0A1111%0A1111"), std::string::npos);
  EXPECT_EQ(record.find(kCard), std::string::npos);
  EXPECT_EQ(record.find("\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91"
                        "\xEF\xBC\x91\xEF\xBC\x91"),
            std::string::npos);
  EXPECT_NE(record.find("\"body_masked\":true"), std::string::npos);
}

TEST(RecordMasking, MaskedHeaderNamesStayDistinct) {
  // Two numbers with the same first 6 and last 4 digits mask alike, so their
  // headers share one key in the transaction's header object.
  CapturedRequest request = urlencoded("/", "");
  request.headers.push_back({"X-4111111111111111", "a"});
  request.headers.push_back({"X-4111110000091111", "b"});
  ASSERT_TRUE(luhnValid("4111110000091111"));
  std::string record = serializeRecord(request, {}, {}, {}, {});
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  ASSERT_EQ(parser.parse(record).get(root), simdjson::SUCCESS);
  simdjson::dom::object headers;
  ASSERT_EQ(root.at_pointer("/transaction/request/headers").get_object().get(headers),
            simdjson::SUCCESS);
  std::size_t keys = 0;
  std::string_view joined;
  for (auto field : headers) {
    ++keys;
    if (field.key == "X-" + kMasked) {
      ASSERT_EQ(field.value.get_string().get(joined), simdjson::SUCCESS);
    }
  }
  EXPECT_EQ(keys, 3u);  // Host, Content-Type and the joined X- header
  EXPECT_EQ(joined, "a, b");
}

TEST(RecordMasking, EncodedCopiesAreMasked) {
  std::string record = recordWithCards();
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  ASSERT_EQ(parser.parse(record).get(root), simdjson::SUCCESS);
  simdjson::dom::object encoded;
  ASSERT_EQ(root.at_pointer("/webtrap/encoded").get_object().get(encoded), simdjson::SUCCESS);
  std::size_t entries = 0;
  for (auto field : encoded) {
    std::string_view base64;
    ASSERT_EQ(field.value.get_string().get(base64), simdjson::SUCCESS);
    std::optional<std::string> bytes = base64Decode(base64);
    ASSERT_TRUE(bytes.has_value()) << field.key;
    EXPECT_EQ(bytes->find(kCard), std::string::npos) << field.key;
    ++entries;
  }
  // The X-Binary header in both header lists.
  EXPECT_GE(entries, 2u);
}

TEST(RecordMasking, BodyHashCoversMaskedBody) {
  std::string record = recordWithCards();
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  ASSERT_EQ(parser.parse(record).get(root), simdjson::SUCCESS);
  std::string_view body;
  ASSERT_EQ(root.at_pointer("/transaction/request/body").get_string().get(body),
            simdjson::SUCCESS);
  std::string_view hash;
  ASSERT_EQ(root.at_pointer("/webtrap/request/body_sha256").get_string().get(hash),
            simdjson::SUCCESS);
  bool masked = false;
  ASSERT_EQ(root.at_pointer("/webtrap/request/body_masked").get_bool().get(masked),
            simdjson::SUCCESS);
  EXPECT_TRUE(masked);
  // The body has a byte that is not UTF-8, so its masked bytes are in the
  // encoded map; the hash is over those.
  simdjson::dom::element encoded_body;
  std::string_view base64;
  ASSERT_EQ(root.at_pointer("/webtrap/encoded").at_key("/transaction/request/body").get(
                encoded_body),
            simdjson::SUCCESS);
  ASSERT_EQ(encoded_body.get_string().get(base64), simdjson::SUCCESS);
  std::optional<std::string> bytes = base64Decode(base64);
  ASSERT_TRUE(bytes.has_value());
  EXPECT_EQ(hash, sha256Hex(*bytes));
  EXPECT_NE(hash, sha256Hex(urlencoded("", "card_number=" + kCard +
                                               "&comment=card+4111+1111+1111+1111&bin=\xFF" + kCard)
                                .body));
}

TEST(RecordMasking, UnmaskedBodyKeepsCapturedHash) {
  CapturedRequest request = urlencoded("/login.php", "user=a&pass=b");
  request.body_sha256 = "ab" + std::string(62, '0');
  std::string record = serializeRecord(request, {}, {}, {}, {});
  EXPECT_NE(record.find("\"body_sha256\":\"ab" + std::string(62, '0') + "\""), std::string::npos);
  EXPECT_NE(record.find("\"body_masked\":false"), std::string::npos);
}

TEST(RecordMasking, FormObjectWritten) {
  RouteOutcome outcome;
  outcome.form.kind = "checkout";
  outcome.form.username = "u";
  outcome.form.cards = {{"411111", "1111", true, "0123456789abcdef"}};
  outcome.form.links = 3;
  outcome.form.text_bytes = 42;
  std::string record = recordWithCards(outcome);
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  ASSERT_EQ(parser.parse(record).get(root), simdjson::SUCCESS);
  std::string_view text;
  ASSERT_EQ(root.at_pointer("/webtrap/form/kind").get_string().get(text), simdjson::SUCCESS);
  EXPECT_EQ(text, "checkout");
  ASSERT_EQ(root.at_pointer("/webtrap/form/cards/0/fingerprint").get_string().get(text),
            simdjson::SUCCESS);
  EXPECT_EQ(text, "0123456789abcdef");
  std::int64_t links = 0;
  ASSERT_EQ(root.at_pointer("/webtrap/form/links").get_int64().get(links), simdjson::SUCCESS);
  EXPECT_EQ(links, 3);

  std::string without = recordWithCards();
  EXPECT_EQ(without.find("\"form\":"), std::string::npos);
}

}  // namespace
}  // namespace webtrap::probe
