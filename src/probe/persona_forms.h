// The choice of answer for the persona's form and product routes: which
// outcome a registration, comment, cart or checkout POST gets, and which
// product a product page shows. The texts of each outcome are persona data
// (PersonaRoute::answers); this file only decides between them.
#pragma once

#include <string>
#include <string_view>

#include "probe/capture.h"
#include "probe/persona_data.h"

namespace webtrap::probe {

struct FormChoice {
  std::string answer;                // key into PersonaRoute::answers; empty: the plain page
  const Product* product = nullptr;  // product routes: the product to show
};

// Chooses the answer to `request` on `route`, whose decoded path is `path`
// and whose query string (without '?') is `query`. Deterministic: the same
// fields give the same answer. Returns an empty choice for routes without
// answers. Never throws for any request content.
FormChoice chooseFormAnswer(const PersonaData& data, const PersonaRoute& route,
                            const CapturedRequest& request, std::string_view path,
                            std::string_view query);

}  // namespace webtrap::probe
