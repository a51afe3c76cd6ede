// The response a persona sends, and what the persona learnt about the request.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/request_facts.h"
#include "probe/capture.h"

namespace webtrap::probe {

struct PersonaResponse {
  int status = 200;
  std::string reason;                // status text on the status line
  std::vector<HeaderField> headers;  // sent in this order, exactly as given
  std::string body;
  bool omit_body = false;         // HEAD: headers announce the body, none is sent
  bool close_connection = false;  // the persona closes after this response
};

// One bait the request touched. `kind` is one of the names in baits.h.
struct BaitHit {
  std::string kind;
  std::string detail;
};

// What the persona found while building the response: the route, bait hits, and the TX
// variables that the honeytrap rules read.
struct RouteOutcome {
  std::string route;  // route name from the persona, "not_found" when none matched
  // page, login, register, comment, contact, product, coupon, checkout, admin,
  // trap, canary, static, error
  std::string route_kind;
  std::vector<BaitHit> baits;
  std::map<std::string, std::string> tx;  // injected into TX before phase 1
  std::vector<std::string> issued_tokens;  // honeytokens planted in this response
  FormFacts form;  // fields of a POST to a form route; kind is empty otherwise
};

}  // namespace webtrap::probe
