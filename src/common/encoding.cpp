#include "common/encoding.h"

#include <array>
#include <cassert>
#include <new>

#include <openssl/evp.h>
#include <simdjson.h>

namespace webtrap {

bool isValidUtf8(std::string_view bytes) {
  return simdjson::validate_utf8(bytes.data(), bytes.size());
}

std::size_t utf8SequenceLength(std::string_view bytes, std::size_t pos) {
  auto at = [&](std::size_t i) -> unsigned { return static_cast<unsigned char>(bytes[pos + i]); };
  auto continuation = [&](std::size_t i, unsigned low, unsigned high) {
    return pos + i < bytes.size() && at(i) >= low && at(i) <= high;
  };

  unsigned lead = at(0);
  if (lead < 0x80) {
    return 1;
  }
  // The second-byte ranges after E0, ED, F0 and F4 are what exclude overlong
  // forms, surrogates and code points above U+10FFFF (RFC 3629 section 4).
  if (lead >= 0xC2 && lead <= 0xDF) {
    return continuation(1, 0x80, 0xBF) ? 2 : 0;
  }
  if (lead >= 0xE0 && lead <= 0xEF) {
    unsigned low = lead == 0xE0 ? 0xA0 : 0x80;
    unsigned high = lead == 0xED ? 0x9F : 0xBF;
    return continuation(1, low, high) && continuation(2, 0x80, 0xBF) ? 3 : 0;
  }
  if (lead >= 0xF0 && lead <= 0xF4) {
    unsigned low = lead == 0xF0 ? 0x90 : 0x80;
    unsigned high = lead == 0xF4 ? 0x8F : 0xBF;
    return continuation(1, low, high) && continuation(2, 0x80, 0xBF) && continuation(3, 0x80, 0xBF)
               ? 4
               : 0;
  }
  return 0;
}

std::string_view utf8Prefix(std::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) {
    return text;
  }
  std::size_t end = max_bytes;
  // Back up over continuation bytes (10xxxxxx) to the start of a character.
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) {
    --end;
  }
  return text.substr(0, end);
}

bool appendSanitizedUtf8(std::string& out, std::string_view bytes) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  bool valid = true;
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    std::size_t length = utf8SequenceLength(bytes, pos);
    if (length == 0) {
      out.append(kReplacement);
      valid = false;
      ++pos;
      continue;
    }
    out.append(bytes.substr(pos, length));
    pos += length;
  }
  return valid;
}

namespace {

constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<std::int8_t, 256> makeBase64Table() {
  std::array<std::int8_t, 256> table{};
  for (auto& entry : table) {
    entry = -1;
  }
  for (int i = 0; i < 64; ++i) {
    table[static_cast<unsigned char>(kBase64Alphabet[i])] = static_cast<std::int8_t>(i);
  }
  return table;
}

constexpr auto kBase64Table = makeBase64Table();

}  // namespace

void appendBase64(std::string& out, std::string_view bytes) {
  std::size_t start = out.size();
  out.resize(start + (bytes.size() + 2) / 3 * 4);
  char* dest = out.data() + start;

  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    std::uint32_t chunk = static_cast<unsigned char>(bytes[i]) << 16 |
                          static_cast<unsigned char>(bytes[i + 1]) << 8 |
                          static_cast<unsigned char>(bytes[i + 2]);
    *dest++ = kBase64Alphabet[chunk >> 18 & 0x3F];
    *dest++ = kBase64Alphabet[chunk >> 12 & 0x3F];
    *dest++ = kBase64Alphabet[chunk >> 6 & 0x3F];
    *dest++ = kBase64Alphabet[chunk & 0x3F];
  }

  std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t chunk = static_cast<unsigned char>(bytes[i]) << 16;
    if (rest == 2) {
      chunk |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    }
    *dest++ = kBase64Alphabet[chunk >> 18 & 0x3F];
    *dest++ = kBase64Alphabet[chunk >> 12 & 0x3F];
    *dest++ = rest == 2 ? kBase64Alphabet[chunk >> 6 & 0x3F] : '=';
    *dest++ = '=';
  }
}

std::string base64Encode(std::string_view bytes) {
  std::string out;
  appendBase64(out, bytes);
  return out;
}

std::optional<std::string> base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) {
    return std::nullopt;
  }
  std::string out;
  out.reserve(text.size() / 4 * 3);

  for (std::size_t i = 0; i < text.size(); i += 4) {
    bool last = i + 4 == text.size();
    int padding = 0;
    if (last && text[i + 3] == '=') {
      padding = text[i + 2] == '=' ? 2 : 1;
    }

    std::uint32_t chunk = 0;
    for (int j = 0; j < 4 - padding; ++j) {
      std::int8_t value = kBase64Table[static_cast<unsigned char>(text[i + j])];
      if (value < 0) {
        return std::nullopt;
      }
      chunk |= static_cast<std::uint32_t>(value) << (18 - 6 * j);
    }

    // Padding leaves low bits unused; RFC 4648 section 3.5 lets a decoder
    // reject encodings where they are not zero, which keeps decoding 1:1.
    if ((padding == 1 && (chunk & 0xFF) != 0) || (padding == 2 && (chunk & 0xFFFF) != 0)) {
      return std::nullopt;
    }
    out.push_back(static_cast<char>(chunk >> 16));
    if (padding < 2) {
      out.push_back(static_cast<char>(chunk >> 8 & 0xFF));
    }
    if (padding < 1) {
      out.push_back(static_cast<char>(chunk & 0xFF));
    }
  }
  return out;
}

std::string hexEncode(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    auto byte = static_cast<unsigned char>(bytes[i]);
    out[2 * i] = kDigits[byte >> 4];
    out[2 * i + 1] = kDigits[byte & 0x0F];
  }
  return out;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto x = static_cast<unsigned char>(a[i]);
    auto y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') {
      x += 'a' - 'A';
    }
    if (y >= 'A' && y <= 'Z') {
      y += 'a' - 'A';
    }
    if (x != y) {
      return false;
    }
  }
  return true;
}

bool startsWithIgnoreCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && equalsIgnoreCase(text.substr(0, prefix.size()), prefix);
}

std::string asciiLowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c + ('a' - 'A'));
    }
  }
  return out;
}

void Sha256::CtxDeleter::operator()(void* ctx) const {
  EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx));
}

namespace {

EVP_MD_CTX* newSha256Context() {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr || EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(ctx);
    throw std::bad_alloc();
  }
  return ctx;
}

}  // namespace

Sha256::Sha256() : ctx_(newSha256Context()) {}

Sha256::~Sha256() = default;

Sha256::Sha256(const Sha256& other) : ctx_(newSha256Context()) {
  if (other.ctx_ && EVP_MD_CTX_copy_ex(static_cast<EVP_MD_CTX*>(ctx_.get()),
                                       static_cast<const EVP_MD_CTX*>(other.ctx_.get())) != 1) {
    throw std::bad_alloc();
  }
}

Sha256& Sha256::operator=(const Sha256& other) {
  if (this != &other) {
    Sha256 copy(other);
    ctx_ = std::move(copy.ctx_);
  }
  return *this;
}

// A moved-from hasher has no context and creates a fresh one when used again.
Sha256::Sha256(Sha256&& other) noexcept = default;
Sha256& Sha256::operator=(Sha256&& other) noexcept = default;

void Sha256::update(std::string_view bytes) {
  if (!ctx_) {
    ctx_.reset(newSha256Context());
  }
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_.get()), bytes.data(), bytes.size());
}

std::string Sha256::finalHex() {
  if (!ctx_) {
    ctx_.reset(newSha256Context());
  }
  auto* ctx = static_cast<EVP_MD_CTX*>(ctx_.get());
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx, digest, &length);
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  return hexEncode(std::string_view(reinterpret_cast<const char*>(digest), length));
}

std::string sha256Hex(std::string_view bytes) {
  Sha256 hasher;
  hasher.update(bytes);
  return hasher.finalHex();
}

int hexDigitValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

std::string terminalSafe(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    auto byte = static_cast<unsigned char>(text[i]);
    unsigned code = 0;
    std::size_t length = 0;
    if (byte < 0x20 || byte == 0x7f) {
      code = byte;
      length = 1;
    } else if (byte == 0xc2 && i + 1 < text.size()) {
      auto next = static_cast<unsigned char>(text[i + 1]);
      if (next >= 0x80 && next <= 0x9f) {
        code = next;
        length = 2;
      }
    } else if (byte == 0xe2 && i + 2 < text.size()) {
      auto second = static_cast<unsigned char>(text[i + 1]);
      auto third = static_cast<unsigned char>(text[i + 2]);
      if ((second == 0x80 && third >= 0xaa && third <= 0xae) ||
          (second == 0x81 && third >= 0xa6 && third <= 0xa9)) {
        code = 0x2000u | ((second & 0x3fu) << 6) | (third & 0x3fu);
        length = 3;
      }
    }
    if (length == 0) {
      out.push_back(text[i]);
      continue;
    }
    static constexpr char kHex[] = "0123456789abcdef";
    out += "\\u";
    for (int shift = 12; shift >= 0; shift -= 4) {
      out.push_back(kHex[(code >> shift) & 0xfu]);
    }
    i += length - 1;
  }
  return out;
}

}  // namespace webtrap
