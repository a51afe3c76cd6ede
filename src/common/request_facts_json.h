// JSON forms of OatTag and FormFacts, as the collector writes them into
// documents and `webtrap decode` output: the same keys as the probe record's
// webtrap.oat[] and webtrap.form.
#pragma once

#include <span>

#include "common/json_writer.h"
#include "common/request_facts.h"

namespace webtrap {

// Writes one tag as an object: id, name, basis, confidence, reason, attack,
// version.
void writeOatTag(JsonWriter& writer, const OatTag& tag);

// Writes the tags as an array of objects.
void writeOatTags(JsonWriter& writer, std::span<const OatTag> tags);

// Writes the form as an object: kind, username, password_sha256, email,
// coupon, cards[], links, text_bytes.
void writeFormFacts(JsonWriter& writer, const FormFacts& form);

}  // namespace webtrap
