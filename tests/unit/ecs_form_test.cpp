// Tests of webtrap.form in the collector's ECS document: the facts the probe
// read from a form POST, written without any full card number.
#include "collector/ecs_form.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <string>

#include "collector/audit_record.h"
#include "collector/ecs.h"

namespace webtrap::collector {
namespace {

constexpr std::int64_t kIngestMs = 1'764'849'600'000;

AuditRecord formRecord() {
  AuditRecord record;
  record.format = RecordFormat::kWebtrap;
  record.event_id = "01938f5e-1c2a-7abc-8def-0123456789ab";
  record.timestamp_us = kIngestMs * 1000;
  record.client_ip = "192.0.2.10";
  record.method = "POST";
  record.uri = "/shop/checkout.php";
  record.response_status = 200;
  return record;
}

std::string formJson(const FormFacts& form) {
  std::string out;
  JsonWriter writer(out);
  writer.beginObject();
  writeWebtrapForm(writer, form);
  writer.endObject();
  return out;
}

TEST(EcsForm, CheckoutCardsKeepOnlyMaskedFacts) {
  AuditRecord record = formRecord();
  record.form.kind = "checkout";
  record.form.email = "j.doe@example.com";
  record.form.cards.push_back({"411111", "1111", true, "0123456789abcdef"});
  record.form.cards.push_back({"550000", "0004", false, "fedcba9876543210"});
  std::string document = buildEcsDocument(record, GeoFacts{}, SensorFacts{}, kIngestMs);

  simdjson::dom::parser parser;
  simdjson::dom::element root = parser.parse(document);
  simdjson::dom::element form = root.at_pointer("/webtrap/form");
  EXPECT_EQ(std::string_view(form["kind"].get_string()), "checkout");
  EXPECT_EQ(std::string_view(form["email"].get_string()), "j.doe@example.com");
  EXPECT_EQ(int64_t(form["links"].get_int64()), 0);
  simdjson::dom::array cards = form["cards"].get_array();
  ASSERT_EQ(cards.size(), 2u);
  simdjson::dom::element first = cards.at(0);
  EXPECT_EQ(std::string_view(first["bin"].get_string()), "411111");
  EXPECT_EQ(std::string_view(first["last4"].get_string()), "1111");
  EXPECT_TRUE(bool(first["luhn_valid"].get_bool()));
  EXPECT_EQ(std::string_view(first["fingerprint"].get_string()), "0123456789abcdef");
  EXPECT_FALSE(bool(cards.at(1)["luhn_valid"].get_bool()));
  // Fields the form did not have stay out.
  EXPECT_TRUE(form["username"].error() == simdjson::NO_SUCH_FIELD);
  EXPECT_TRUE(form["coupon"].error() == simdjson::NO_SUCH_FIELD);
}

TEST(EcsForm, LoginWritesUserAndPasswordHash) {
  FormFacts form;
  form.kind = "login";
  form.username = "admin";
  form.password_sha256 = std::string(64, 'b');
  simdjson::dom::parser parser;
  simdjson::dom::element written = parser.parse(formJson(form))["form"];
  EXPECT_EQ(std::string_view(written["username"].get_string()), "admin");
  EXPECT_EQ(std::string_view(written["password_sha256"].get_string()), std::string(64, 'b'));
  EXPECT_TRUE(written["cards"].error() == simdjson::NO_SUCH_FIELD);
}

TEST(EcsForm, CommentCountsLinksAndText) {
  FormFacts form;
  form.kind = "comment";
  form.links = 3;
  form.text_bytes = 180;
  simdjson::dom::parser parser;
  simdjson::dom::element written = parser.parse(formJson(form))["form"];
  EXPECT_EQ(int64_t(written["links"].get_int64()), 3);
  EXPECT_EQ(int64_t(written["text_bytes"].get_int64()), 180);
}

TEST(EcsForm, NoFormWritesNothing) {
  EXPECT_FALSE(hasFormFacts(FormFacts{}));
  EXPECT_EQ(formJson(FormFacts{}), "{}");
  std::string document = buildEcsDocument(formRecord(), GeoFacts{}, SensorFacts{}, kIngestMs);
  EXPECT_EQ(document.find("\"form\""), std::string::npos) << document;
}

}  // namespace
}  // namespace webtrap::collector
