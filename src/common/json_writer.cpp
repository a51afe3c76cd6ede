#include "common/json_writer.h"

#include <array>
#include <cassert>
#include <charconv>
#include <cstring>

#include "common/encoding.h"

namespace webtrap {

namespace {

// 1 for the two printable ASCII bytes that need a backslash in a JSON string.
constexpr std::array<std::uint8_t, 256> makeNeedsBackslashTable() {
  std::array<std::uint8_t, 256> table{};
  table['"'] = 1;
  table['\\'] = 1;
  return table;
}

constexpr auto kNeedsBackslash = makeNeedsBackslashTable();

// Writes a control character or a byte at or above 0x80 (with the rest of
// its UTF-8 sequence) at `to`, which has room for 6 bytes. Advances `pos`,
// returns the number of bytes written and clears `valid` when it wrote U+FFFD.
std::size_t writeEscape(std::string_view bytes, std::size_t& pos, char* to, bool& valid) {
  static constexpr char kDigits[] = "0123456789abcdef";
  auto byte = static_cast<unsigned char>(bytes[pos]);
  if (byte < 0x20) {
    const char escape[6] = {'\\', 'u', '0', '0', kDigits[byte >> 4], kDigits[byte & 0x0F]};
    std::memcpy(to, escape, sizeof escape);
    ++pos;
    return sizeof escape;
  }
  std::size_t length = utf8SequenceLength(bytes, pos);
  if (length == 0) {
    std::memcpy(to, "\xEF\xBF\xBD", 3);
    valid = false;
    ++pos;
    return 3;
  }
  std::memcpy(to, bytes.data() + pos, length);
  pos += length;
  return length;
}

}  // namespace

// Escapes into a stack buffer that is appended to `out` in pieces of up to
// kBufferSize bytes, one byte per step. ModSecurity records have about one
// quote per 9 bytes. On 20,000 records from bench/collector/make_records.py
// (4.4 KB on average), this took 2.8 us of process CPU time per record. A
// loop that found plain runs eight bytes at a time and appended each run
// took 4.0 us.
bool appendJsonEscaped(std::string& out, std::string_view bytes) {
  constexpr std::size_t kBufferSize = 4096;
  constexpr std::size_t kStepRoom = 6;  // maximum escape length: backslash, u, 4 hex digits
  char buffer[kBufferSize];
  char* write = buffer;
  char* const limit = buffer + kBufferSize - kStepRoom;
  bool valid = true;
  std::size_t pos = 0;
  const std::size_t size = bytes.size();

  while (pos < size) {
    if (write > limit) {
      out.append(buffer, static_cast<std::size_t>(write - buffer));
      write = buffer;
    }
    // ASCII other than control characters: a quote or a backslash gets its
    // backslash without a branch, because their positions are too irregular
    // for the branch predictor.
    auto byte = static_cast<unsigned char>(bytes[pos]);
    if (byte >= 0x20 && byte < 0x80) {
      std::size_t needs_backslash = kNeedsBackslash[byte];
      write[0] = '\\';
      write[needs_backslash] = static_cast<char>(byte);
      write += 1 + needs_backslash;
      ++pos;
    } else {
      write += writeEscape(bytes, pos, write, valid);
    }
  }
  out.append(buffer, static_cast<std::size_t>(write - buffer));
  return valid;
}

void JsonWriter::separate() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!first_.empty()) {
    if (first_.back()) {
      first_.back() = false;
    } else {
      out_.push_back(',');
    }
  }
}

void JsonWriter::open(char bracket) {
  separate();
  out_.push_back(bracket);
  first_.push_back(true);
}

void JsonWriter::close(char bracket) {
  assert(!first_.empty());
  assert(!after_key_);
  first_.pop_back();
  out_.push_back(bracket);
}

void JsonWriter::beginObject() {
  open('{');
}
void JsonWriter::endObject() {
  close('}');
}
void JsonWriter::beginArray() {
  open('[');
}
void JsonWriter::endArray() {
  close(']');
}

bool JsonWriter::key(std::string_view name) {
  assert(!after_key_);
  separate();
  out_.push_back('"');
  bool valid = appendJsonEscaped(out_, name);
  out_.append("\":", 2);
  after_key_ = true;
  return valid;
}

bool JsonWriter::string(std::string_view value) {
  separate();
  out_.push_back('"');
  bool valid = appendJsonEscaped(out_, value);
  out_.push_back('"');
  return valid;
}

void JsonWriter::beginString() {
  separate();
  out_.push_back('"');
}

bool JsonWriter::stringPart(std::string_view part) {
  return appendJsonEscaped(out_, part);
}

void JsonWriter::endString() {
  out_.push_back('"');
}

void JsonWriter::integer(std::int64_t value) {
  separate();
  char text[24];
  auto result = std::to_chars(text, text + sizeof text, value);
  out_.append(text, result.ptr);
}

void JsonWriter::unsignedInteger(std::uint64_t value) {
  separate();
  char text[24];
  auto result = std::to_chars(text, text + sizeof text, value);
  out_.append(text, result.ptr);
}

void JsonWriter::boolean(bool value) {
  separate();
  out_.append(value ? "true" : "false");
}

void JsonWriter::null() {
  separate();
  out_.append("null", 4);
}

void JsonWriter::raw(std::string_view json) {
  separate();
  out_.append(json);
}

}  // namespace webtrap
