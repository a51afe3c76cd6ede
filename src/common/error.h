#pragma once

#include <stdexcept>
#include <string>

namespace webtrap {

// Invalid configuration, detected at start. The message names the key or
// file, the value, and the fix.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace webtrap
