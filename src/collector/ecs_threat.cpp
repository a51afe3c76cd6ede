#include "collector/ecs_threat.h"

#include "common/oat_ontology.h"
#include "common/encoding.h"
#include "common/oat_tagging.h"
#include "common/own_name.h"
#include "common/request_facts_json.h"

namespace webtrap::collector {

std::vector<OatTag> recordOatTags(const AuditRecord& record) {
  if (record.oat_tagged || !record.oat_tags.empty()) {
    return record.oat_tags;
  }
  std::string_view host;
  for (const HeaderField& header : record.request_headers) {
    if (equalsIgnoreCase(header.name, "host")) {
      host = header.value;
      break;
    }
  }
  oat::RequestEvidence evidence;
  for (const RuleMessage& message : record.messages) {
    // A match on the site's own name is no attack evidence.
    if (oat::isOwnNameMatch(message.rule_id, message.data, host)) {
      continue;
    }
    evidence.rule_ids.push_back(message.rule_id);
    evidence.rule_data.push_back(message.data);
    for (const std::string& tag : message.tags) {
      evidence.rule_tags.push_back(tag);
    }
  }
  for (const std::string& kind : record.bait_hits) {
    evidence.bait_kinds.push_back(kind);
  }
  evidence.method = record.method;
  return oat::tagRequest(evidence);
}

std::vector<OatTag> documentOatTags(const AuditRecord& record,
                                    std::span<const OatTag> behaviour_tags) {
  std::vector<OatTag> tags;
  if (!record.oat_tagged && record.oat_tags.empty()) {
    tags = recordOatTags(record);  // one tag per id already
  } else {
    // Merging the record's own tags drops duplicate ids that a producer may
    // have written.
    oat::mergeOatTags(tags, record.oat_tags);
  }
  if (!behaviour_tags.empty()) {
    oat::mergeOatTags(tags, behaviour_tags);
  }
  return tags;
}

void writeEcsThreat(JsonWriter& writer, std::span<const OatTag> tags) {
  if (tags.empty()) {
    return;
  }
  const oat::Ontology& ontology = oat::Ontology::embedded();
  writer.key("threat");
  writer.beginObject();
  writer.member("framework", kOatFramework);

  writer.key("technique");
  writer.beginObject();
  writer.key("id");
  writer.beginArray();
  for (const OatTag& tag : tags) {
    writer.string(tag.id);
  }
  writer.endArray();

  writer.key("name");
  writer.beginArray();
  for (const OatTag& tag : tags) {
    writer.string(tag.name);
  }
  writer.endArray();

  // A tag from a probe with a newer ontology may name an id that this
  // collector does not know. Such a tag gets no entry in the reference list.
  std::vector<std::string_view> references;
  for (const OatTag& tag : tags) {
    if (const oat::Threat* threat = ontology.find(tag.id)) {
      references.push_back(threat->reference);
    }
  }
  if (!references.empty()) {
    writer.key("reference");
    writer.beginArray();
    for (std::string_view reference : references) {
      writer.string(reference);
    }
    writer.endArray();
  }
  writer.endObject();
  writer.endObject();
}

void writeWebtrapOat(JsonWriter& writer, std::span<const OatTag> tags) {
  if (tags.empty()) {
    return;
  }
  writer.key("oat");
  writeOatTags(writer, tags);
}

}  // namespace webtrap::collector
