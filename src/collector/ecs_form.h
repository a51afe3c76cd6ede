// The form part of the collector's ECS document: webtrap.form, the facts the
// probe read from a POST to one of its persona's forms (user name, password
// hash, e-mail, coupon code, payment cards without their numbers, link count).
#pragma once

#include "common/json_writer.h"
#include "common/request_facts.h"

namespace webtrap::collector {

// Writes `key: value` unless `value` is empty. The ECS writers leave empty
// strings out.
void writeStringIfPresent(JsonWriter& writer, const LiteralKey& key, std::string_view value);

// Returns true when `form` contains any fact worth writing.
bool hasFormFacts(const FormFacts& form);

// Writes the `form` member of the document's webtrap object; nothing when
// the record carries no form facts. Empty strings are left out. A card has
// only its BIN, last four digits, Luhn result and keyed fingerprint, because
// the probe never records a full card number.
void writeWebtrapForm(JsonWriter& writer, const FormFacts& form);

}  // namespace webtrap::collector
