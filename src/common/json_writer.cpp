#include "common/json_writer.h"

#include <array>
#include <atomic>
#include <cassert>
#include <charconv>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

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

// 1 for the bytes that go into a JSON string as they are: printable ASCII
// other than the quote and the backslash.
constexpr std::array<std::uint8_t, 256> makePlainTable() {
  std::array<std::uint8_t, 256> table{};
  for (int byte = 0x20; byte < 0x80; ++byte) {
    table[byte] = 1;
  }
  table['"'] = 0;
  table['\\'] = 0;
  return table;
}

constexpr auto kPlain = makePlainTable();

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

// Writes the byte at `pos` at `to` (room for 6 bytes), escaped as JSON needs
// and with the rest of its UTF-8 sequence. Advances `pos` and returns the
// number of bytes written.
inline std::size_t writeOne(std::string_view bytes, std::size_t& pos, char* to, bool& valid) {
  auto byte = static_cast<unsigned char>(bytes[pos]);
  if (byte >= 0x20 && byte < 0x80) {
    // A quote or a backslash gets its backslash without a branch.
    std::size_t needs_backslash = kNeedsBackslash[byte];
    to[0] = '\\';
    to[needs_backslash] = static_cast<char>(byte);
    ++pos;
    return 1 + needs_backslash;
  }
  return writeEscape(bytes, pos, to, valid);
}

#if defined(__SSE2__)
// Copies 16 bytes from `from` to `to`. Either may be unaligned.
inline void copy16(char* to, const char* from) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(to),
                   _mm_loadu_si128(reinterpret_cast<const __m128i*>(from)));
}
#endif

// Returns the length of the longest prefix of `bytes` that needs no escaping.
std::size_t plainPrefixLength(std::string_view bytes) {
  std::size_t pos = 0;
  const std::size_t size = bytes.size();
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i backslash = _mm_set1_epi8('\\');
  const __m128i space = _mm_set1_epi8(0x20);
  for (; pos + 16 <= size; pos += 16) {
    __m128i block = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes.data() + pos));
    // The signed comparison with 0x20 is true for control characters and
    // for every byte at or above 0x80.
    __m128i special =
        _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(block, quote), _mm_cmpeq_epi8(block, backslash)),
                     _mm_cmplt_epi8(block, space));
    auto mask = static_cast<unsigned>(_mm_movemask_epi8(special));
    if (mask != 0) {
      return pos + static_cast<std::size_t>(__builtin_ctz(mask));
    }
  }
#endif
  while (pos < size && kPlain[static_cast<unsigned char>(bytes[pos])] != 0) {
    ++pos;
  }
  return pos;
}

// Keys and most values are short and need no escaping. For those, the
// quotes and the text go into `out` with one append instead of three.
constexpr std::size_t kShortQuoted = 48;

// Appends `"bytes"`, followed by a colon when `colon` is true, if `bytes`
// is short and needs no escaping. Otherwise appends nothing and returns
// false.
inline bool appendShortQuoted(std::string& out, std::string_view bytes, bool colon) {
  const std::size_t size = bytes.size();
  if (size > kShortQuoted) {
    return false;
  }
  char buffer[kShortQuoted + 3];
  buffer[0] = '"';
  if (size < 16) {
    // Checked and copied in one pass: a block check and a memcpy call cost
    // more than these few bytes.
    for (std::size_t i = 0; i < size; ++i) {
      auto byte = static_cast<unsigned char>(bytes[i]);
      if (kPlain[byte] == 0) {
        return false;
      }
      buffer[i + 1] = static_cast<char>(byte);
    }
  } else {
    if (plainPrefixLength(bytes) != size) {
      return false;
    }
    std::memcpy(buffer + 1, bytes.data(), size);
  }
  buffer[size + 1] = '"';
  buffer[size + 2] = ':';
  out.append(buffer, size + 2 + (colon ? 1 : 0));
  return true;
}

// Escapes the bytes of `bytes` from `pos` on one at a time into `buffer`
// at `write`, appending the buffer to `out` whenever `write` passes
// `limit`, then appends what is left in it. Both kernels end with this for
// the bytes too few for a whole step. Returns false when a byte was
// replaced, here or before (`valid`).
bool escapeTail(std::string& out, std::string_view bytes, std::size_t pos, char* buffer,
                char* write, const char* limit, bool valid) {
  while (pos < bytes.size()) {
    if (write > limit) {
      out.append(buffer, static_cast<std::size_t>(write - buffer));
      write = buffer;
    }
    write += writeOne(bytes, pos, write, valid);
  }
  out.append(buffer, static_cast<std::size_t>(write - buffer));
  return valid;
}

// Escapes `bytes`, which starts with a byte that needs escaping, onto `out`
// through a stack buffer that is appended to `out` in pieces of up to
// kBufferSize bytes. With SSE2 (every x86-64 CPU) it classifies 16 bytes at
// a time. A block without quotes, backslashes, control characters or bytes
// at or above 0x80 is copied whole. In a block with quotes or backslashes,
// each run of plain bytes between them is copied with one 16-byte load and
// store, and the escape that follows overwrites what the store wrote past
// the run. Control characters and bytes at or above 0x80 (UTF-8 checked by
// writeEscape) go one at a time. The last 31 bytes go one byte per step,
// since a run copy reads up to 32 bytes ahead.
//
// JSON text has about one quote per 9 bytes. bench/collector/ingest_bench.cpp
// escaped 5,000 records from bench/collector/make_records.py (4.3 KB on
// average) in 2.2 to 2.5 us of CPU time per record with this code. A loop of
// one byte per step took 3.0 to 3.4 us, and reloading the block after each
// escape took 3.3 to 3.7 us.
bool escapeRestSse2(std::string& out, std::string_view bytes) {
  constexpr std::size_t kBufferSize = 4096;
  // A block writes at most 32 bytes (16 quotes), and a run copy stores up to
  // 16 bytes past the end of the run.
  constexpr std::size_t kStepRoom = 64;
  char buffer[kBufferSize];
  char* write = buffer;
  char* const limit = buffer + kBufferSize - kStepRoom;
  bool valid = true;
  std::size_t pos = 0;
  const std::size_t size = bytes.size();
  const char* const data = bytes.data();

#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i backslash = _mm_set1_epi8('\\');
  const __m128i space = _mm_set1_epi8(0x20);
  while (pos + 32 <= size) {
    if (write > limit) {
      out.append(buffer, static_cast<std::size_t>(write - buffer));
      write = buffer;
    }
    const char* block_start = data + pos;
    __m128i block = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block_start));
    auto backslashed = static_cast<unsigned>(_mm_movemask_epi8(
        _mm_or_si128(_mm_cmpeq_epi8(block, quote), _mm_cmpeq_epi8(block, backslash))));
    // The signed comparison with 0x20 is true for control characters and
    // for every byte at or above 0x80.
    auto other = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmplt_epi8(block, space)));
    if ((backslashed | other) == 0) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(write), block);
      write += 16;
      pos += 16;
      continue;
    }
    // Bytes of the block up to `stop` are handled here: all 16, or those
    // before the first byte that writeEscape must see.
    unsigned stop = other == 0 ? 16 : static_cast<unsigned>(__builtin_ctz(other));
    backslashed &= (1U << stop) - 1;
    unsigned run_start = 0;
    while (backslashed != 0) {
      auto at = static_cast<unsigned>(__builtin_ctz(backslashed));
      backslashed &= backslashed - 1;
      copy16(write, block_start + run_start);
      write += at - run_start;
      write[0] = '\\';
      write[1] = block_start[at];
      write += 2;
      run_start = at + 1;
    }
    copy16(write, block_start + run_start);
    write += stop - run_start;
    pos += stop;
    if (stop < 16) {
      write += writeEscape(bytes, pos, write, valid);
    }
  }
#endif

  return escapeTail(out, bytes, pos, buffer, write, limit, valid);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define WEBTRAP_JSON_ESCAPE_WIDE 1

// The AVX-512 form of escapeRestSse2, for CPUs with AVX-512 VBMI2 (Intel
// from Ice Lake, AMD from Zen 4). It takes 32 bytes per step. Each quote or
// backslash needs a backslash before it, so the step builds the mask of the
// output bytes that come from the input. PDEP gives each input byte two
// bits: a slot for a backslash, present only before a quote or backslash,
// and the byte's own slot. PEXT keeps the slots that are present.
// VPEXPANDB then places the 32 bytes at their own slots and fills the
// backslash slots. A step stops before the first control character or byte
// at or above 0x80, which writeEscape handles. On the records described at
// escapeRestSse2, ingest_bench measured 0.85 to 0.88 us per record with
// this kernel and 2.24 to 2.27 us with escapeRestSse2 (Xeon with AVX-512).
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi2,bmi,bmi2,popcnt"))) bool
escapeRestWide(std::string& out, std::string_view bytes) {
  constexpr std::size_t kBufferSize = 4096;
  // A step stores 64 bytes, and writeEscape writes up to 6 after it.
  constexpr std::size_t kStepRoom = 80;
  char buffer[kBufferSize];
  char* write = buffer;
  char* const limit = buffer + kBufferSize - kStepRoom;
  bool valid = true;
  std::size_t pos = 0;
  const std::size_t size = bytes.size();
  const char* const data = bytes.data();

  const __m256i quote = _mm256_set1_epi8('"');
  const __m256i backslash = _mm256_set1_epi8('\\');
  const __m256i space = _mm256_set1_epi8(0x20);
  const __m512i fill = _mm512_set1_epi8('\\');
  constexpr std::uint64_t kOwnSlots = 0xAAAAAAAAAAAAAAAAULL;  // odd bits
  constexpr std::uint64_t kExtraSlots = 0x5555555555555555ULL;  // even bits
  while (pos + 32 <= size) {
    if (write > limit) {
      out.append(buffer, static_cast<std::size_t>(write - buffer));
      write = buffer;
    }
    __m256i block = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(data + pos));
    auto special = static_cast<std::uint32_t>(_mm256_cmpeq_epi8_mask(block, quote) |
                                              _mm256_cmpeq_epi8_mask(block, backslash));
    // The signed comparison with 0x20 is true for control characters and
    // for every byte at or above 0x80.
    auto other = static_cast<std::uint32_t>(_mm256_cmplt_epi8_mask(block, space));
    unsigned stop = other == 0 ? 32 : static_cast<unsigned>(__builtin_ctz(other));
    std::uint64_t own = kOwnSlots;
    if (stop < 32) {
      special &= (1U << stop) - 1;
      own &= (std::uint64_t{1} << (2 * stop)) - 1;
    }
    std::uint64_t slots = _pdep_u64(special, kExtraSlots) | own;
    auto from_input = static_cast<__mmask64>(_pext_u64(kOwnSlots, slots));
    __m512i escaped = _mm512_mask_expand_epi8(fill, from_input, _mm512_castsi256_si512(block));
    _mm512_storeu_si512(write, escaped);
    write += stop + static_cast<unsigned>(__builtin_popcount(special));
    pos += stop;
    if (stop < 32) {
      write += writeEscape(bytes, pos, write, valid);
    }
  }
  return escapeTail(out, bytes, pos, buffer, write, limit, valid);
}

bool wideEscapeSupported() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vbmi2") &&
         __builtin_cpu_supports("bmi2");
}
#else
bool wideEscapeSupported() { return false; }
#endif

const bool kWideEscapeSupported = wideEscapeSupported();
std::atomic<bool> wide_escape_enabled{kWideEscapeSupported};

}  // namespace

bool jsonEscapeWideSupported() { return kWideEscapeSupported; }

void setJsonEscapeWide(bool enabled) {
  wide_escape_enabled.store(enabled && kWideEscapeSupported, std::memory_order_relaxed);
}

bool appendJsonEscaped(std::string& out, std::string_view bytes) {
  // Most keys and values need no escaping at all: they are appended in one
  // piece, and so is the plain start of the others.
  std::size_t plain = plainPrefixLength(bytes);
  out.append(bytes.data(), plain);
  if (plain == bytes.size()) {
    return true;
  }
  bytes.remove_prefix(plain);
#if defined(WEBTRAP_JSON_ESCAPE_WIDE)
  if (wide_escape_enabled.load(std::memory_order_relaxed)) {
    return escapeRestWide(out, bytes);
  }
#endif
  return escapeRestSse2(out, bytes);
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

bool JsonWriter::textKey(std::string_view name) {
  assert(!after_key_);
  separate();
  after_key_ = true;
  if (appendShortQuoted(out_, name, true)) {
    return true;
  }
  out_.push_back('"');
  bool valid = appendJsonEscaped(out_, name);
  out_.append("\":", 2);
  return valid;
}

bool JsonWriter::string(std::string_view value) {
  separate();
  if (appendShortQuoted(out_, value, false)) {
    return true;
  }
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
