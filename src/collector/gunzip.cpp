#include "collector/gunzip.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <new>
#include <stdexcept>

#include <libdeflate.h>

namespace webtrap::collector {

// Inflates each gzip member whole with libdeflate, which needs an output
// buffer large enough for the member. The buffer starts at the size that the
// last member's trailer states (its size modulo 2^32) and doubles up to
// `max_bytes` whenever a member does not fit. Each retry inflates that member
// again. A sender controls the trailer, so it only sets the first guess, and
// that guess is capped at what deflate can produce from the body's size.
std::optional<std::string> gunzip(std::string_view compressed, std::uint64_t max_bytes,
                                  bool* plain_headers) {
  struct DecompressorDeleter {
    void operator()(libdeflate_decompressor* decompressor) const {
      libdeflate_free_decompressor(decompressor);
    }
  };
  thread_local std::unique_ptr<libdeflate_decompressor, DecompressorDeleter> decompressor(
      libdeflate_alloc_decompressor());
  if (!decompressor) {
    throw std::bad_alloc();
  }

  // The smallest gzip member: a 10-byte header, an empty deflate block and
  // the 8-byte trailer.
  constexpr std::size_t kMinMemberBytes = 18;
  // Deflate expands at most about 1032 to 1 (258 bytes from one 2-bit
  // length/distance pair), so no honest trailer states more than this.
  constexpr std::uint64_t kMaxDeflateRatio = 1032;
  std::uint64_t capacity = 4096;
  if (compressed.size() >= kMinMemberBytes) {
    const auto* tail =
        reinterpret_cast<const unsigned char*>(compressed.data() + compressed.size() - 4);
    std::uint64_t hint = tail[0] | (tail[1] << 8) | (tail[2] << 16) |
                         (static_cast<std::uint64_t>(tail[3]) << 24);
    hint = std::min<std::uint64_t>(hint, compressed.size() * kMaxDeflateRatio);
    capacity = std::max<std::uint64_t>(capacity, hint);
  }
  capacity = std::min(capacity, max_bytes);

  std::string out;
  std::size_t produced = 0;
  std::size_t consumed = 0;
  if (plain_headers != nullptr) {
    *plain_headers = true;
  }
  do {
    // Byte 3 of a member's header is FLG: FTEXT, FHCRC, FEXTRA, FNAME and
    // FCOMMENT (RFC 1952). Any but FTEXT adds bytes that inflate to nothing.
    constexpr unsigned char kFlagsBeyondText = 0xfe;
    if (plain_headers != nullptr && compressed.size() - consumed > 3 &&
        (static_cast<unsigned char>(compressed[consumed + 3]) & kFlagsBeyondText) != 0) {
      *plain_headers = false;
    }
    if (out.size() < capacity) {
      out.resize(capacity);
    }
    std::size_t member_in = 0;
    std::size_t member_out = 0;
    libdeflate_result result = libdeflate_gzip_decompress_ex(
        decompressor.get(), compressed.data() + consumed, compressed.size() - consumed,
        out.data() + produced, out.size() - produced, &member_in, &member_out);
    if (result == LIBDEFLATE_INSUFFICIENT_SPACE) {
      if (out.size() >= max_bytes) {
        return std::nullopt;
      }
      capacity = std::min<std::uint64_t>(max_bytes, std::uint64_t{out.size()} * 2);
      continue;
    }
    if (result != LIBDEFLATE_SUCCESS) {
      // libdeflate names no reason: a bad header, bad deflate data, a
      // checksum mismatch and a truncated member all give LIBDEFLATE_BAD_DATA.
      throw std::invalid_argument("invalid or truncated gzip data");
    }
    produced += member_out;
    consumed += member_in;
    // Another gzip member may follow (concatenated gzip files are valid).
  } while (consumed < compressed.size());
  out.resize(produced);
  return out;
}

}  // namespace webtrap::collector
