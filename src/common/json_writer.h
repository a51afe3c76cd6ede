// A streaming JSON writer that always produces valid JSON (RFC 8259),
// whatever bytes it is given.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace webtrap {

// An object key written in the source as a string literal, such as
// JsonWriter::key("source"). The compiler rejects a key longer than
// kMaxSize or with a quote, a backslash, a control character or a byte at
// or above 0x80. The key is kept quoted with its colon, so writing it is one
// append with no check. Keys from anywhere else go through the
// std::string_view overloads, which escape them.
class LiteralKey {
 public:
  static constexpr std::size_t kMaxSize = 29;

  template <std::size_t N>
  consteval LiteralKey(const char (&text)[N]) : size_(static_cast<std::uint8_t>(N + 2)) {
    if (N - 1 > kMaxSize || text[N - 1] != '\0') {
      throw "a literal JSON key must be a string literal of at most LiteralKey::kMaxSize bytes";
    }
    quoted_[0] = '"';
    for (std::size_t i = 0; i + 1 < N; ++i) {
      const auto byte = static_cast<unsigned char>(text[i]);
      if (byte < 0x20 || byte >= 0x80 || byte == '"' || byte == '\\') {
        throw "a literal JSON key must be printable ASCII without quotes or backslashes";
      }
      quoted_[i + 1] = text[i];
    }
    quoted_[N] = '"';
    quoted_[N + 1] = ':';
  }

  // The key with its quotes and the colon after it.
  std::string_view quoted() const { return {quoted_, size_}; }
  // The key alone.
  std::string_view text() const { return {quoted_ + 1, static_cast<std::size_t>(size_ - 3)}; }

 private:
  char quoted_[kMaxSize + 3] = {};
  std::uint8_t size_;
};

// Anything that converts to std::string_view, other than a character array
// (a string literal goes to the LiteralKey overloads instead).
template <class Text>
concept KeyText = std::is_convertible_v<const Text&, std::string_view> && !std::is_array_v<Text>;

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
  template <KeyText Text>
  bool key(const Text& name) {
    return textKey(std::string_view(name));
  }
  // Writes an object key checked when the program was compiled.
  bool key(const LiteralKey& name) {
    assert(!after_key_);
    separate();
    after_key_ = true;
    out_.append(name.quoted());
    return true;
  }

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

  // Shorthands for a key followed by a value, for keys of both kinds.
  template <KeyText Text>
  bool member(const Text& name, std::string_view value) {
    key(name);
    return string(value);
  }
  template <KeyText Text>
  bool member(const Text& name, const char* value) {
    key(name);
    return string(value);
  }
  template <KeyText Text>
  void member(const Text& name, std::int64_t value) {
    key(name);
    integer(value);
  }
  template <KeyText Text>
  void member(const Text& name, bool value) {
    key(name);
    boolean(value);
  }
  bool member(const LiteralKey& name, std::string_view value) {
    key(name);
    return string(value);
  }
  bool member(const LiteralKey& name, const char* value) {
    key(name);
    return string(value);
  }
  void member(const LiteralKey& name, std::int64_t value) {
    key(name);
    integer(value);
  }
  void member(const LiteralKey& name, bool value) {
    key(name);
    boolean(value);
  }

  std::string& output() { return out_; }

 private:
  bool textKey(std::string_view name);
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
