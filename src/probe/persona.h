// A persona: the web application a probe imitates, loaded from a data folder.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "probe/capture.h"
#include "probe/response.h"

namespace webtrap::probe {

class Baits;

class Persona {
 public:
  virtual ~Persona() = default;

  // Loads and validates the persona in `dir` (persona.yaml plus its files).
  // Throws ConfigError naming the file, the key and the fix.
  static std::unique_ptr<Persona> load(const std::filesystem::path& dir);

  virtual const std::string& name() const = 0;
  // Server software the persona imitates, for the record, e.g. "Apache/2.4.62 (Debian)".
  virtual const std::string& product() const = 0;

  // Builds the response to a parsed request and fills `outcome` with the
  // route, bait hits and TX variables. Thread-safe; never throws for any
  // request content.
  virtual PersonaResponse respond(const CapturedRequest& request, Baits& baits,
                                  RouteOutcome& outcome) const = 0;

  // Builds the response the imitated server sends to bytes it cannot parse
  // (Apache: 400 Bad Request, 414, 431 and so on), chosen from the parse error.
  virtual PersonaResponse respondToParseError(const CapturedRequest& request,
                                              RouteOutcome& outcome) const = 0;
};

}  // namespace webtrap::probe
