#include "common/oat_tagging.h"

#include <algorithm>
#include <string>

namespace webtrap::oat {

namespace {

constexpr std::string_view kBaitTagPrefix = "webtrap/bait/";

// Adds the tag for `rule`, or raises the confidence of the tag already there.
void addRuleTag(std::vector<OatTag>& tags, const Ontology& ontology, const RequestRule& rule,
                std::string reason) {
  OatTag tag = ontology.tag(rule.oat, "rule", rule.confidence, std::move(reason));
  if (!rule.attack.empty()) {
    tag.attack = rule.attack;
  }
  mergeOatTags(tags, std::span<const OatTag>(&tag, 1));
}

// Applies the crs rules whose `match` is the longest prefix of `rule_id`, so
// a rule for "913102" overrides the rules for its family "913".
void tagRuleId(std::vector<OatTag>& tags, const Ontology& ontology, std::string_view rule_id) {
  std::size_t longest = 0;
  for (const RequestRule& rule : ontology.requestRules()) {
    if (rule.source == "crs" && rule_id.starts_with(rule.match)) {
      longest = std::max(longest, rule.match.size());
    }
  }
  if (longest == 0) {
    return;
  }
  for (const RequestRule& rule : ontology.requestRules()) {
    if (rule.source == "crs" && rule.match.size() == longest && rule_id.starts_with(rule.match)) {
      addRuleTag(tags, ontology, rule, "crs:" + std::string(rule_id));
    }
  }
}

void tagBait(std::vector<OatTag>& tags, const Ontology& ontology, std::string_view kind) {
  for (const RequestRule& rule : ontology.requestRules()) {
    if (rule.source == "bait" && rule.match == kind) {
      addRuleTag(tags, ontology, rule, "bait:" + std::string(kind));
    }
  }
}

bool routeRuleApplies(const RequestRule& rule, const RequestEvidence& evidence) {
  std::string_view match = rule.match;
  std::size_t space = match.find(' ');
  std::string_view kind = match.substr(0, space);
  std::string_view method = match.substr(space + 1);
  if (kind != evidence.route_kind || (method != "*" && method != evidence.method)) {
    return false;
  }
  if (rule.condition == "links") {
    return evidence.form != nullptr && evidence.form->links > 0;
  }
  return true;
}

void tagRoute(std::vector<OatTag>& tags, const Ontology& ontology,
              const RequestEvidence& evidence) {
  if (evidence.route_kind.empty()) {
    return;
  }
  for (const RequestRule& rule : ontology.requestRules()) {
    if (rule.source == "route" && routeRuleApplies(rule, evidence)) {
      std::string reason = "route:" + std::string(evidence.route_kind) + " " +
                           std::string(evidence.method);
      if (rule.condition == "links") {
        reason += " links=" + std::to_string(evidence.form->links);
      }
      addRuleTag(tags, ontology, rule, std::move(reason));
    }
  }
}

}  // namespace

std::vector<OatTag> tagRequest(const RequestEvidence& evidence, const Ontology& ontology) {
  std::vector<OatTag> tags;
  for (std::string_view rule_id : evidence.rule_ids) {
    tagRuleId(tags, ontology, rule_id);
  }
  for (std::string_view kind : evidence.bait_kinds) {
    tagBait(tags, ontology, kind);
  }
  for (std::string_view rule_tag : evidence.rule_tags) {
    if (rule_tag.starts_with(kBaitTagPrefix)) {
      tagBait(tags, ontology, rule_tag.substr(kBaitTagPrefix.size()));
    }
  }
  tagRoute(tags, ontology, evidence);
  return tags;
}

void mergeOatTags(std::vector<OatTag>& tags, std::span<const OatTag> more) {
  for (const OatTag& tag : more) {
    auto same = std::find_if(tags.begin(), tags.end(),
                             [&](const OatTag& existing) { return existing.id == tag.id; });
    if (same == tags.end()) {
      tags.push_back(tag);
    } else if (tag.confidence > same->confidence) {
      *same = tag;
    }
  }
  std::stable_sort(tags.begin(), tags.end(),
                   [](const OatTag& a, const OatTag& b) { return a.id < b.id; });
}

}  // namespace webtrap::oat
