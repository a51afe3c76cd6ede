#include "common/json_writer.h"

#include <array>
#include <cassert>
#include <charconv>
#include <cstring>

#include "common/encoding.h"

namespace webtrap {

namespace {

// 1 for bytes that can be copied into a JSON string as they are: printable
// ASCII other than the quote and the backslash.
constexpr std::array<bool, 256> makePlainTable() {
  std::array<bool, 256> table{};
  for (int byte = 0x20; byte < 0x80; ++byte) {
    table[byte] = byte != '"' && byte != '\\';
  }
  return table;
}

constexpr auto kPlain = makePlainTable();

// Returns the length of the run of plain bytes at the start of `bytes`,
// testing eight bytes per step: a word passes when no byte is below 0x20,
// at or above 0x80, a quote or a backslash.
std::size_t plainRunLength(const char* bytes, std::size_t size) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ull;
  constexpr std::uint64_t kHighBits = 0x8080808080808080ull;
  std::size_t pos = 0;
  for (; pos + 8 <= size; pos += 8) {
    std::uint64_t word;
    std::memcpy(&word, bytes + pos, 8);
    std::uint64_t below_space = word - kOnes * 0x20;
    std::uint64_t quote = (word ^ (kOnes * '"')) - kOnes;
    std::uint64_t backslash = (word ^ (kOnes * '\\')) - kOnes;
    if (((below_space | quote | backslash) & ~word & kHighBits) != 0 || (word & kHighBits) != 0) {
      break;
    }
  }
  while (pos < size && kPlain[static_cast<unsigned char>(bytes[pos])]) {
    ++pos;
  }
  return pos;
}

}  // namespace

bool appendJsonEscaped(std::string& out, std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  bool valid = true;
  std::size_t pos = 0;
  const std::size_t size = bytes.size();

  while (pos < size) {
    std::size_t run = pos + plainRunLength(bytes.data() + pos, size - pos);
    out.append(bytes.data() + pos, run - pos);
    pos = run;
    if (pos == size) {
      break;
    }

    auto byte = static_cast<unsigned char>(bytes[pos]);
    if (byte == '"' || byte == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(byte));
      ++pos;
    } else if (byte < 0x20) {
      const char escape[6] = {'\\', 'u', '0', '0', kDigits[byte >> 4], kDigits[byte & 0x0F]};
      out.append(escape, sizeof escape);
      ++pos;
    } else {
      std::size_t length = utf8SequenceLength(bytes, pos);
      if (length == 0) {
        out.append(kReplacement);
        valid = false;
        ++pos;
      } else {
        out.append(bytes.data() + pos, length);
        pos += length;
      }
    }
  }
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
