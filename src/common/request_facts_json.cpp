#include "common/request_facts_json.h"

#include <cmath>

#include <fmt/format.h>

namespace webtrap {

void writeOatTag(JsonWriter& writer, const OatTag& tag) {
  writer.beginObject();
  writer.member("id", tag.id);
  writer.member("name", tag.name);
  writer.member("basis", tag.basis);
  writer.key("confidence");
  // JSON has no NaN or infinity; a tag never carries one, but a document
  // that Elasticsearch rejects would lose the whole record.
  writer.raw(std::isfinite(tag.confidence) ? fmt::format("{}", tag.confidence) : "0");
  writer.member("reason", tag.reason);
  writer.key("attack");
  writer.beginArray();
  for (const std::string& technique : tag.attack) {
    writer.string(technique);
  }
  writer.endArray();
  writer.member("version", tag.version);
  if (!tag.key.empty()) {
    writer.member("key", tag.key);
    writer.member("provisional", tag.provisional);
  }
  writer.endObject();
}

void writeOatTags(JsonWriter& writer, std::span<const OatTag> tags) {
  writer.beginArray();
  for (const OatTag& tag : tags) {
    writeOatTag(writer, tag);
  }
  writer.endArray();
}

void writeFormFacts(JsonWriter& writer, const FormFacts& form) {
  writer.beginObject();
  writer.member("kind", form.kind);
  writer.member("username", form.username);
  writer.member("password_sha256", form.password_sha256);
  writer.member("email", form.email);
  writer.member("coupon", form.coupon);
  writer.key("cards");
  writer.beginArray();
  for (const CardFacts& card : form.cards) {
    writer.beginObject();
    writer.member("bin", card.bin);
    writer.member("last4", card.last4);
    writer.member("luhn_valid", card.luhn_valid);
    writer.member("fingerprint", card.fingerprint);
    writer.endObject();
  }
  writer.endArray();
  writer.member("links", static_cast<std::int64_t>(form.links));
  writer.member("text_bytes", static_cast<std::int64_t>(form.text_bytes));
  writer.endObject();
}

}  // namespace webtrap
