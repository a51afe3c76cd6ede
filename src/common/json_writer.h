// A streaming JSON writer that always produces valid JSON (RFC 8259),
// whatever bytes it is given.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace webtrap {

// Appends JSON text to a caller-owned string. Commas and colons are placed by
// the writer, so callers only open, write and close. Strings are escaped per
// RFC 8259 (quote, backslash and every control character, the latter as
// \u00XX), and each byte that is not part of well-formed UTF-8 becomes U+FFFD.
// The string methods return false when they replaced a byte, so the caller
// can keep the exact bytes somewhere else.
//
// Misuse (a value where a key is due, unbalanced closes) is a programming
// error and is not diagnosed beyond debug assertions.
class JsonWriter {
 public:
  explicit JsonWriter(std::string& out) : out_(out) { first_.reserve(16); }

  void beginObject();
  void endObject();
  void beginArray();
  void endArray();

  // Writes an object key. Returns false when invalid UTF-8 was replaced.
  bool key(std::string_view name);

  // Writes a string value. Returns false when invalid UTF-8 was replaced.
  bool string(std::string_view value);

  // Writes one string value in parts, so callers can join pieces without
  // building the joined copy. Returns false when invalid UTF-8 was replaced
  // in this part; each part is checked on its own.
  void beginString();
  bool stringPart(std::string_view part);
  void endString();

  void integer(std::int64_t value);
  void unsignedInteger(std::uint64_t value);
  void boolean(bool value);
  void null();

  // Writes `json` as a value, unchanged. The caller guarantees it is valid.
  void raw(std::string_view json);

  // Shorthands for a key followed by a value.
  bool member(std::string_view name, std::string_view value) {
    key(name);
    return string(value);
  }
  bool member(std::string_view name, const char* value) {
    return member(name, std::string_view(value));
  }
  void member(std::string_view name, std::int64_t value) {
    key(name);
    integer(value);
  }
  void member(std::string_view name, bool value) {
    key(name);
    boolean(value);
  }

  std::string& output() { return out_; }

 private:
  void separate();
  void open(char bracket);
  void close(char bracket);

  std::string& out_;
  // One entry per open container, 1 while nothing is written in it yet. A
  // byte each rather than vector<bool>'s bits, because separate() reads and
  // writes the last entry before every value.
  std::vector<std::uint8_t> first_;
  bool after_key_ = false;
};

// Appends `bytes` escaped as the inside of a JSON string (no quotes). Returns
// false when invalid UTF-8 was replaced with U+FFFD.
bool appendJsonEscaped(std::string& out, std::string_view bytes);

// True when this CPU runs appendJsonEscaped's AVX-512 kernel (AVX-512 VBMI2
// and BMI2), which the library then uses by default.
bool jsonEscapeWideSupported();

// Switches the AVX-512 kernel off or back on, so tests can check the SSE2
// kernel on any CPU. Has no effect where the kernel is not supported.
void setJsonEscapeWide(bool enabled);

}  // namespace webtrap
