#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace webtrap {

// Returns `text` with each control byte other than newline and tab written
// as \xHH, so that a NUL byte in a quoted value cannot end the C string
// that what() returns, and no byte can move the terminal's cursor.
inline std::string withVisibleControlBytes(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if ((byte < 0x20 && c != '\n' && c != '\t') || byte == 0x7f) {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

// Invalid configuration, detected at start. The message names the key or
// file, the value, and the fix. Control bytes in it are made visible.
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(const std::string& what)
      : std::runtime_error(withVisibleControlBytes(what)) {}
  explicit ConfigError(const char* what) : ConfigError(std::string(what)) {}
};

// A command that cannot run as requested although the configuration is
// valid: an invalid option, a store in use, an unknown sensor or output.
// Like ConfigError, the message names the value and the fix.
class CommandError : public std::runtime_error {
 public:
  explicit CommandError(const std::string& what)
      : std::runtime_error(withVisibleControlBytes(what)) {}
  explicit CommandError(const char* what) : CommandError(std::string(what)) {}
};

}  // namespace webtrap
