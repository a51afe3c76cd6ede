#include "probe/baits.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include "common/encoding.h"
#include "common/error.h"
#include "probe/form_data.h"

namespace webtrap::probe {
namespace {

constexpr std::size_t kSecretBytes = 32;
// Bounds the HMAC work one request can cause in scanHoneytokens().
constexpr std::size_t kMaxCandidates = 64;

constexpr std::string_view kBase32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
constexpr std::string_view kBase62 =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
constexpr std::string_view kBase64 =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Layout of one token kind: prefix, then `body_length` characters derived
// from the address, then `mac_length` characters of MAC over prefix and body.
struct TokenFormat {
  TokenKind kind;
  std::string_view name;
  std::string_view prefix;
  std::string_view alphabet;
  std::size_t body_length;
  std::size_t mac_length;

  std::size_t length() const { return prefix.size() + body_length + mac_length; }
};

// The MAC part is 40 bits or more, so a random string passes verification
// with a probability below 2^-40.
constexpr std::array<TokenFormat, 4> kFormats = {{
    {TokenKind::kAwsAccessKeyId, "aws_access_key_id", "AKIA", kBase32, 8, 8},
    {TokenKind::kAwsSecretAccessKey, "aws_secret_access_key", "", kBase64, 24, 16},
    {TokenKind::kStripeSecretKey, "stripe_secret_key", "sk_live_", kBase62, 12, 12},
    {TokenKind::kDbPassword, "db_password", "", kBase62, 12, 8},
}};

const TokenFormat& formatOf(TokenKind kind) {
  for (const auto& format : kFormats) {
    if (format.kind == kind) {
      return format;
    }
  }
  return kFormats[0];
}

std::string encodeChars(std::string_view bytes, std::string_view alphabet, std::size_t count) {
  std::string out;
  out.reserve(count);
  for (std::size_t i = 0; i < count && i < bytes.size(); ++i) {
    out += alphabet[static_cast<unsigned char>(bytes[i]) % alphabet.size()];
  }
  return out;
}

bool allIn(std::string_view text, std::string_view alphabet) {
  return text.find_first_not_of(alphabet) == std::string_view::npos;
}

std::string readOrCreateSecret(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    unsigned char bytes[kSecretBytes];
    if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
      throw ConfigError(
          fmt::format("bait secret {}: could not draw random bytes from OpenSSL", path.string()));
    }
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) {
      throw ConfigError(fmt::format(
          "bait secret {}: cannot create: {}; make the state folder writable or set --state-dir",
          path.string(), std::strerror(errno)));
    }
    if (fd >= 0) {
      ssize_t written = ::write(fd, bytes, sizeof(bytes));
      ::close(fd);
      if (written != static_cast<ssize_t>(sizeof(bytes))) {
        throw ConfigError(
            fmt::format("bait secret {}: short write; check free disk space", path.string()));
      }
      spdlog::info("baits: created secret file path={}", path.string());
    }
  }

  std::ifstream in(path, std::ios::binary);
  std::string secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) {
    throw ConfigError(
        fmt::format("bait secret {}: cannot read; check its owner and mode", path.string()));
  }
  if (secret.size() < kSecretBytes) {
    throw ConfigError(fmt::format(
        "bait secret {}: contains {} bytes, expected at least {}; delete it to have a new one made "
        "(tokens issued under the old secret then stop verifying)",
        path.string(), secret.size(), kSecretBytes));
  }
  return secret;
}

void addHit(RouteOutcome& outcome, std::string kind, std::string detail) {
  outcome.baits.push_back(BaitHit{std::move(kind), std::move(detail)});
}

// Texts scanned for honeytokens: the target, every header value, the body,
// their percent-decoded forms, and decoded Basic credentials.
std::vector<std::string> scanTexts(const CapturedRequest& request) {
  std::vector<std::string> texts;
  texts.push_back(request.target);
  for (const auto& field : request.headers) {
    texts.push_back(field.value);
    if (equalsIgnoreCase(field.name, "Authorization")) {
      if (auto credentials = decodeBasicCredentials(field.value)) {
        texts.push_back(credentials->first + ":" + credentials->second);
      }
    }
  }
  texts.push_back(request.body);
  for (const std::string* raw : {&request.target, &request.body}) {
    if (raw->find('%') != std::string::npos || raw->find('+') != std::string::npos) {
      texts.push_back(formDecode(*raw));
    }
  }
  return texts;
}

}  // namespace

bool tokenKindFromName(std::string_view name, TokenKind& kind) {
  for (const auto& format : kFormats) {
    if (format.name == name) {
      kind = format.kind;
      return true;
    }
  }
  return false;
}

Baits::Baits(const BaitsConfig& config, MetricsRegistry& metrics)
    : secret_(readOrCreateSecret(config.secret_file)),
      capacity_(config.issued_token_capacity),
      tokens_issued_(
          metrics.counter("webtrap_honeytokens_issued_total", "Honeytokens planted in responses.")),
      tokens_detected_(metrics.counter("webtrap_honeytokens_detected_total",
                                       "Honeytokens found in requests.")) {}

std::string Baits::mac(std::string_view label, std::string_view data) const {
  std::string input;
  input.reserve(label.size() + 1 + data.size());
  input.append(label);
  input.push_back('\0');
  input.append(data);

  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest, &length);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

std::string Baits::cardKey() const { return mac("card-fingerprint", ""); }

std::string Baits::issueToken(TokenKind kind, const std::string& address) {
  const TokenFormat& format = formatOf(kind);
  std::string derived = mac(fmt::format("issue\x1f{}", format.name), address);
  std::string token(format.prefix);
  token += encodeChars(derived, format.alphabet, format.body_length);
  token += encodeChars(mac(fmt::format("verify\x1f{}", format.name), token), format.alphabet,
                       format.mac_length);

  tokens_issued_.inc();
  std::lock_guard lock(mutex_);
  auto [it, inserted] = issued_.try_emplace(token, address);
  if (inserted) {
    issued_order_.push_back(token);
    while (issued_order_.size() > capacity_) {
      issued_.erase(issued_order_.front());
      issued_order_.pop_front();
    }
  }
  return token;
}

bool Baits::verifyToken(TokenKind kind, std::string_view token) const {
  const TokenFormat& format = formatOf(kind);
  if (token.size() != format.length() || !token.starts_with(format.prefix)) {
    return false;
  }
  std::string_view rest = token.substr(format.prefix.size());
  if (!allIn(rest, format.alphabet)) {
    return false;
  }
  std::string_view signed_part = token.substr(0, format.prefix.size() + format.body_length);
  std::string expected = encodeChars(mac(fmt::format("verify\x1f{}", format.name), signed_part),
                                     format.alphabet, format.mac_length);
  std::string_view given = token.substr(signed_part.size());
  // Constant time is not needed for a bait, but costs nothing here.
  return CRYPTO_memcmp(expected.data(), given.data(), given.size()) == 0;
}

std::string Baits::issuedTo(const std::string& token) {
  std::lock_guard lock(mutex_);
  auto it = issued_.find(token);
  return it == issued_.end() ? "unknown" : it->second;
}

void Baits::checkListener(const CapturedRequest& request, RouteOutcome& outcome) const {
  if (!request.bait_listener) {
    return;
  }
  addHit(outcome, "fake_port",
         fmt::format("listener={} port={}", request.listener, request.server.port));
  outcome.tx["webtrap_bait_listener"] = "1";
}

void Baits::recordTrap(std::string_view trap, const std::string& path,
                       RouteOutcome& outcome) const {
  addHit(outcome, fmt::format("{}_trap", trap), fmt::format("path={}", path));
  outcome.tx["webtrap_trap"] = std::string(trap);
  outcome.tx["webtrap_trap_path"] = path;
}

void Baits::checkFormField(const CapturedRequest& request, const BaitValue& field,
                           RouteOutcome& outcome) const {
  if (field.name.empty()) {
    return;
  }
  for (const auto& value : formFieldValues(request, field.name)) {
    if (value != field.value) {
      addHit(outcome, "form_field", fmt::format("{}={}", field.name, value));
      return;
    }
  }
}

void Baits::checkCookie(const CapturedRequest& request, const BaitValue& cookie,
                        RouteOutcome& outcome) const {
  if (cookie.name.empty()) {
    return;
  }
  for (const auto& value : cookieValues(request.headers, cookie.name)) {
    if (value != cookie.value) {
      std::string pair = fmt::format("{}={}", cookie.name, value);
      addHit(outcome, "cookie", pair);
      outcome.tx["webtrap_cookie_tampered"] = pair;
      return;
    }
  }
}

void Baits::recordCredentials(const CapturedRequest& request, RouteOutcome& outcome) const {
  for (const auto& field : request.headers) {
    if (!equalsIgnoreCase(field.name, "Authorization")) {
      continue;
    }
    auto credentials = decodeBasicCredentials(field.value);
    if (!credentials) {
      // Not Basic, or not valid base64: keep what was sent.
      addHit(outcome, "credential_canary", fmt::format("undecodable={}", field.value));
      outcome.tx.try_emplace("webtrap_canary_user", field.value);
      continue;
    }
    addHit(outcome, "credential_canary",
           fmt::format("user={} password={}", credentials->first, credentials->second));
    outcome.tx.try_emplace("webtrap_canary_user", credentials->first);
    outcome.tx.try_emplace("webtrap_canary_password", credentials->second);
  }
}

void Baits::scanText(std::string_view text, std::vector<std::string>& found) const {
  std::size_t candidates = 0;
  auto check = [&](TokenKind kind, std::string_view candidate) {
    if (candidates >= kMaxCandidates) {
      return;
    }
    ++candidates;
    if (verifyToken(kind, candidate)) {
      found.emplace_back(candidate);
    }
  };

  // Prefixed kinds: look for the prefix, then verify the fixed-length rest.
  for (const auto& format : kFormats) {
    if (format.prefix.empty()) {
      continue;
    }
    for (std::size_t at = text.find(format.prefix); at != std::string_view::npos;
         at = text.find(format.prefix, at + 1)) {
      if (at + format.length() <= text.size()) {
        check(format.kind, text.substr(at, format.length()));
      }
    }
  }

  // Kinds without a prefix: maximal runs of their alphabet of exactly the
  // token length.
  for (const auto& format : kFormats) {
    if (!format.prefix.empty()) {
      continue;
    }
    std::size_t pos = 0;
    while (pos < text.size()) {
      std::size_t start = text.find_first_of(format.alphabet, pos);
      if (start == std::string_view::npos) {
        break;
      }
      std::size_t end = text.find_first_not_of(format.alphabet, start);
      if (end == std::string_view::npos) {
        end = text.size();
      }
      if (end - start == format.length()) {
        check(format.kind, text.substr(start, end - start));
      }
      pos = end;
    }
  }
}

void Baits::scanHoneytokens(const CapturedRequest& request, RouteOutcome& outcome) {
  std::vector<std::string> found;
  for (const auto& text : scanTexts(request)) {
    scanText(text, found);
  }
  std::set<std::string> seen;
  for (const auto& token : found) {
    if (!seen.insert(token).second) {
      continue;
    }
    tokens_detected_.inc();
    std::string issued_to = issuedTo(token);
    addHit(outcome, "honeytoken", fmt::format("token={} issued_to={}", token, issued_to));
    outcome.tx.try_emplace("webtrap_honeytoken", token);
    outcome.tx.try_emplace("webtrap_honeytoken_issued_to", issued_to);
  }
}

}  // namespace webtrap::probe
