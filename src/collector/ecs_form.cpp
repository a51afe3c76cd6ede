#include "collector/ecs_form.h"

#include <cstdint>
#include <string_view>

namespace webtrap::collector {
void writeStringIfPresent(JsonWriter& writer, const LiteralKey& key, std::string_view value) {
  if (!value.empty()) {
    writer.member(key, value);
  }
}

namespace {

void writeCard(JsonWriter& writer, const CardFacts& card) {
  writer.beginObject();
  writeStringIfPresent(writer, "bin", card.bin);
  writeStringIfPresent(writer, "last4", card.last4);
  writer.member("luhn_valid", card.luhn_valid);
  writeStringIfPresent(writer, "fingerprint", card.fingerprint);
  writer.endObject();
}

}  // namespace

bool hasFormFacts(const FormFacts& form) {
  return !form.kind.empty() || !form.username.empty() || !form.password_sha256.empty() ||
         !form.email.empty() || !form.coupon.empty() || !form.cards.empty() || form.links > 0 ||
         form.text_bytes > 0;
}

void writeWebtrapForm(JsonWriter& writer, const FormFacts& form) {
  if (!hasFormFacts(form)) {
    return;
  }
  writer.key("form");
  writer.beginObject();
  writeStringIfPresent(writer, "kind", form.kind);
  writeStringIfPresent(writer, "username", form.username);
  writeStringIfPresent(writer, "password_sha256", form.password_sha256);
  writeStringIfPresent(writer, "email", form.email);
  writeStringIfPresent(writer, "coupon", form.coupon);
  if (!form.cards.empty()) {
    writer.key("cards");
    writer.beginArray();
    for (const CardFacts& card : form.cards) {
      writeCard(writer, card);
    }
    writer.endArray();
  }
  // The counts are written whenever the form has facts, zero included, so a
  // query for comments without links can match links: 0.
  writer.member("links", static_cast<std::int64_t>(form.links));
  writer.member("text_bytes", static_cast<std::int64_t>(form.text_bytes));
  writer.endObject();
}

}  // namespace webtrap::collector
