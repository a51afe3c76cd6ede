// Byte-level helpers shared by the probe, the shipper and the collector:
// UTF-8 checks, base64, hex, SHA-256, gzip compression and ASCII
// case-insensitive comparison.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace webtrap {

// Returns true when `bytes` is well-formed UTF-8 (RFC 3629): no overlong
// forms, no surrogates (U+D800-U+DFFF), nothing above U+10FFFF.
bool isValidUtf8(std::string_view bytes);

// Returns the length (1-4) of the well-formed UTF-8 sequence that starts at
// `bytes[pos]`, or 0 when the byte there does not start one.
std::size_t utf8SequenceLength(std::string_view bytes, std::size_t pos);

// Appends `bytes` to `out` with U+FFFD in place of each byte that is not part
// of a well-formed UTF-8 sequence. Returns false when a byte was replaced.
bool appendSanitizedUtf8(std::string& out, std::string_view bytes);

// Returns the longest start of `text` that has at most `max_bytes` bytes and
// does not split a UTF-8 sequence. Bytes are not checked otherwise.
std::string_view utf8Prefix(std::string_view text, std::size_t max_bytes);

// Standard base64 (RFC 4648 section 4) with padding.
std::string base64Encode(std::string_view bytes);
void appendBase64(std::string& out, std::string_view bytes);

// Decodes padded standard base64. Returns nullopt on any character outside
// the alphabet, bad padding or a length that is not a multiple of 4.
std::optional<std::string> base64Decode(std::string_view text);

// Returns `text` with each character a terminal may obey written as
// \uXXXX, for text that attackers choose (URLs, headers) before it is
// printed. These are C0 controls, DEL, C1 controls (U+0080 to U+009F, of
// which U+009B starts an escape sequence on some terminals), and the
// bidirectional embeddings, overrides and isolates (U+202A to U+202E,
// U+2066 to U+2069), which reorder what is shown. Inside a JSON string the escape means the
// same character, so a JSON document without raw control bytes outside its
// strings stays valid and equal.
std::string terminalSafe(std::string_view text);

// Lowercase hexadecimal, two digits per byte.
std::string hexEncode(std::string_view bytes);

// Returns the value of one hex digit (either case), or -1 for any other byte.
int hexDigitValue(char c);

// ASCII case-insensitive equality; bytes >= 0x80 compare exactly.
bool equalsIgnoreCase(std::string_view a, std::string_view b);

// True when `text` starts with `prefix`, compared as equalsIgnoreCase does.
bool startsWithIgnoreCase(std::string_view text, std::string_view prefix);

// Returns `text` with ASCII letters in lower case; other bytes unchanged.
std::string asciiLowercase(std::string_view text);

// Incremental SHA-256 over OpenSSL EVP. Copying forks the running state, so
// a copy can be finished while the original keeps hashing.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256& other);
  Sha256& operator=(const Sha256& other);
  Sha256(Sha256&& other) noexcept;
  Sha256& operator=(Sha256&& other) noexcept;

  void update(std::string_view bytes);

  // Returns the lowercase hex digest of everything passed to update() and
  // resets the hasher, so it can start over.
  std::string finalHex();

 private:
  struct CtxDeleter {
    void operator()(void* ctx) const;
  };
  std::unique_ptr<void, CtxDeleter> ctx_;  // EVP_MD_CTX, kept opaque here
};

// Returns the lowercase hex SHA-256 of `bytes`.
std::string sha256Hex(std::string_view bytes);

}  // namespace webtrap
