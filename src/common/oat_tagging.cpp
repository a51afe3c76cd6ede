#include "common/oat_tagging.h"

#include <algorithm>
#include <array>
#include <string>

namespace webtrap::oat {

namespace {

constexpr std::string_view kBaitTagPrefix = "webtrap/bait/";
// CRS 3.3 rule that matches the User-Agent against scanners-user-agents.data.
constexpr std::string_view kScannerUserAgentRule = "913100";

// The ontology's request rules arranged for lookup, built once per ontology:
// the collector tags every record it stores, so the tagger avoids string
// comparisons against every rule and builds tags only for the winners.
class RuleIndex {
 public:
  explicit RuleIndex(const Ontology& ontology) : ontology_(ontology) {
    std::span<const RequestRule> rules = ontology.requestRules();
    for (std::size_t i = 0; i < rules.size(); ++i) {
      const RequestRule& rule = rules[i];
      if (rule.source == "crs") {
        groupFor(crs_, rule.match).rules.push_back(i);
      } else if (rule.source == "bait") {
        groupFor(baits_, rule.match).rules.push_back(i);
      } else {
        routes_.push_back(i);
      }
    }
    // Longest prefix first, so the first group that matches a rule id wins.
    std::stable_sort(crs_.begin(), crs_.end(), [](const Group& a, const Group& b) {
      return a.match.size() > b.match.size();
    });
  }

  const Ontology& ontology() const { return ontology_; }

  // Calls `apply(rule)` for the crs rules that apply to a message with
  // `rule_id` and matched `data`. A rule is a candidate when its match is a
  // prefix of the id and its `data`, when set, occurs in the data. Only the
  // candidates with the longest match apply.
  template <class Apply>
  void forCrsRules(std::string_view rule_id, std::string_view data, Apply&& apply) const {
    std::span<const RequestRule> rules = ontology_.requestRules();
    for (const Group& group : crs_) {
      if (!rule_id.starts_with(group.match)) {
        continue;
      }
      bool applied = false;
      for (std::size_t position : group.rules) {
        const RequestRule& rule = rules[position];
        if (dataMatches(rule, data)) {
          apply(rule);
          applied = true;
        }
      }
      if (applied) {
        return;
      }
    }
  }

  const std::vector<std::size_t>* baitRules(std::string_view kind) const {
    for (const Group& group : baits_) {
      if (group.match == kind) {
        return &group.rules;
      }
    }
    return nullptr;
  }

  const std::vector<std::size_t>& routeRules() const { return routes_; }

 private:
  struct Group {
    std::string match;
    std::vector<std::size_t> rules;  // positions in Ontology::requestRules()
  };

  static bool dataMatches(const RequestRule& rule, std::string_view data) {
    if (rule.data.empty()) {
      return true;
    }
    for (const std::string& needle : rule.data) {
      if (containsIgnoreCase(data, needle)) {
        return true;
      }
    }
    return false;
  }

  static Group& groupFor(std::vector<Group>& groups, const std::string& match) {
    for (Group& group : groups) {
      if (group.match == match) {
        return group;
      }
    }
    return groups.emplace_back(Group{match, {}});
  }

  const Ontology& ontology_;
  std::vector<Group> crs_;
  std::vector<Group> baits_;
  std::vector<std::size_t> routes_;
};

// The strongest rule seen so far for one OAT id, and what fired it. The
// reason text is built only for the winners.
struct Candidate {
  const RequestRule* rule = nullptr;
  std::string_view kind;   // "crs", "bait" or "route"
  std::string_view value;  // the rule id, bait kind or route kind
  double confidence = 0;   // the rule's, or kToolCheckConfidence for a tool's own check
  const Tool* tool = nullptr;  // set when a tool's own check capped the confidence
};

class CandidateSet {
 public:
  void offer(const RequestRule& rule, std::string_view kind, std::string_view value,
             const Tool* capped_by = nullptr) {
    double confidence =
        capped_by != nullptr ? std::min(rule.confidence, kToolCheckConfidence) : rule.confidence;
    Candidate offered{&rule, kind, value, confidence, capped_by};
    for (Candidate& candidate : candidates_) {
      if (candidate.rule->oat == rule.oat) {
        if (confidence > candidate.confidence) {
          candidate = offered;
        }
        return;
      }
    }
    candidates_.push_back(offered);
  }

  std::vector<Candidate>& candidates() { return candidates_; }

 private:
  std::vector<Candidate> candidates_;
};

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

std::string reasonFor(const Candidate& candidate, const RequestEvidence& evidence) {
  std::string reason;
  reason.reserve(candidate.kind.size() + 1 + candidate.value.size() + 16);
  reason.append(candidate.kind).push_back(':');
  reason.append(candidate.value);
  if (candidate.kind == "route") {
    reason.push_back(' ');
    reason.append(evidence.method);
    if (candidate.rule->condition == "links") {
      reason += " links=" + std::to_string(evidence.form->links);
    }
  }
  if (candidate.tool != nullptr) {
    reason += " tool:" + candidate.tool->name;
  }
  return reason;
}

std::vector<OatTag> tagWithIndex(const RuleIndex& index, const RequestEvidence& evidence) {
  std::span<const RequestRule> rules = index.ontology().requestRules();
  // CRS 913100 quotes the User-Agent in its matched data, which names the
  // tool whose own checks are discounted below.
  const Tool* tool = nullptr;
  for (std::size_t i = 0; i < evidence.rule_ids.size() && i < evidence.rule_data.size(); ++i) {
    if (evidence.rule_ids[i] == kScannerUserAgentRule) {
      tool = index.ontology().findTool(evidence.rule_data[i]);
      break;
    }
  }
  CandidateSet set;
  for (std::size_t i = 0; i < evidence.rule_ids.size(); ++i) {
    std::string_view rule_id = evidence.rule_ids[i];
    std::string_view data = i < evidence.rule_data.size() ? evidence.rule_data[i] : "";
    bool tool_check = tool != nullptr && tool->checkTriggers(rule_id);
    index.forCrsRules(rule_id, data, [&](const RequestRule& rule) {
      bool capped = tool_check && !tool->isFor(rule.oat);
      set.offer(rule, "crs", rule_id, capped ? tool : nullptr);
    });
  }
  auto offerBait = [&](std::string_view kind) {
    if (const auto* matches = index.baitRules(kind)) {
      for (std::size_t position : *matches) {
        set.offer(rules[position], "bait", kind);
      }
    }
  };
  for (std::string_view kind : evidence.bait_kinds) {
    offerBait(kind);
  }
  for (std::string_view rule_tag : evidence.rule_tags) {
    if (rule_tag.starts_with(kBaitTagPrefix)) {
      offerBait(rule_tag.substr(kBaitTagPrefix.size()));
    }
  }
  if (!evidence.route_kind.empty()) {
    for (std::size_t position : index.routeRules()) {
      if (routeRuleApplies(rules[position], evidence)) {
        set.offer(rules[position], "route", evidence.route_kind);
      }
    }
  }

  std::vector<Candidate>& candidates = set.candidates();
  std::sort(candidates.begin(), candidates.end(),
            [](const Candidate& a, const Candidate& b) { return a.rule->oat < b.rule->oat; });
  std::vector<OatTag> tags;
  tags.reserve(candidates.size());
  for (const Candidate& candidate : candidates) {
    const RequestRule& rule = *candidate.rule;
    OatTag& tag = tags.emplace_back(index.ontology().tag(
        rule.oat, "rule", candidate.confidence, reasonFor(candidate, evidence)));
    if (!rule.attack.empty()) {
      tag.attack = rule.attack;
    }
  }
  return tags;
}

}  // namespace

std::vector<OatTag> tagRequest(const RequestEvidence& evidence, const Ontology& ontology) {
  // The embedded ontology is the one the probe and the collector use; its
  // index is built once. Any other ontology (tests) gets a fresh index.
  if (&ontology == &Ontology::embedded()) {
    static const RuleIndex embedded_index(ontology);
    return tagWithIndex(embedded_index, evidence);
  }
  return tagWithIndex(RuleIndex(ontology), evidence);
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
