#include "probe/form_facts.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>

#include "common/encoding.h"
#include "probe/form_data.h"

namespace webtrap::probe {
namespace {

constexpr std::size_t kMaxCardDigits = 19;
constexpr std::size_t kMinMaskedDigits = 13;
// Digits kept at each end of a masked number: the BIN and the last four,
// which webtrap.form records anyway.
constexpr std::size_t kKeptLeading = 6;
constexpr std::size_t kKeptTrailing = 4;

constexpr std::array<std::string_view, 6> kUsernameFields = {"username", "user",  "login",
                                                             "log",      "uname", "usr"};
constexpr std::array<std::string_view, 5> kPasswordFields = {"password", "pass", "passwd", "pwd",
                                                             "pw"};
constexpr std::array<std::string_view, 4> kEmailFields = {"email", "mail", "e-mail", "user_email"};
constexpr std::array<std::string_view, 5> kCouponFields = {"coupon", "coupon_code", "promo_code",
                                                           "promo", "voucher"};
constexpr std::array<std::string_view, 7> kFreeTextFields = {
    "comment", "message", "text", "body", "content", "msg", "description"};

bool isDigit(char c) { return c >= '0' && c <= '9'; }

std::string lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

template <std::size_t N>
bool isOneOf(std::string_view name, const std::array<std::string_view, N>& names) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// Field names that a payment form uses for the card number: card_number,
// cardnumber, cc_number, ccnum, credit_card, pan, number.
bool isCardField(std::string_view lower_name) {
  return lower_name.find("card") != std::string_view::npos ||
         lower_name.find("credit") != std::string_view::npos || lower_name.starts_with("cc") ||
         lower_name == "pan" || lower_name == "number";
}

// Cuts `text` to at most `max` bytes without splitting a UTF-8 sequence.
std::string bounded(std::string_view text, std::size_t max) {
  if (text.size() <= max) {
    return std::string(text);
  }
  std::size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) {
    --cut;
  }
  return std::string(text.substr(0, cut));
}

std::size_t separatorLength(std::string_view text, std::size_t pos, bool encoded) {
  if (pos >= text.size()) {
    return 0;
  }
  char c = text[pos];
  if (c == ' ' || c == '-') {
    return 1;
  }
  if (!encoded) {
    return 0;
  }
  if (c == '+') {
    return 1;
  }
  if (c == '%' && pos + 2 < text.size() && text[pos + 1] == '2' &&
      (text[pos + 2] == '0' || text[pos + 2] == 'D' || text[pos + 2] == 'd')) {
    return 3;
  }
  return 0;
}

struct DigitGroup {
  std::size_t begin;
  std::size_t end;
};

std::string joinDigits(std::string_view text, const std::vector<DigitGroup>& groups,
                       std::size_t first, std::size_t last) {
  std::string digits;
  for (std::size_t i = first; i <= last; ++i) {
    digits.append(text.substr(groups[i].begin, groups[i].end - groups[i].begin));
  }
  return digits;
}

// Adds the candidates of one run of digit groups (see findCardCandidates).
void addRunCandidates(std::string_view text, const std::vector<DigitGroup>& groups,
                      std::size_t min_digits, std::vector<CardCandidate>& out) {
  std::size_t total = 0;
  for (const auto& group : groups) {
    total += group.end - group.begin;
  }
  std::optional<CardCandidate> whole;
  if (total >= min_digits && total <= kMaxCardDigits) {
    whole = CardCandidate{groups.front().begin, groups.back().end,
                          joinDigits(text, groups, 0, groups.size() - 1), false};
    whole->luhn_valid = luhnValid(whole->digits);
    if (whole->luhn_valid) {
      out.push_back(std::move(*whole));
      return;
    }
  }

  // Longest Luhn-valid stretches of whole groups, left to right.
  bool found = false;
  std::size_t start = 0;
  while (start < groups.size()) {
    std::size_t count = 0;
    std::optional<std::size_t> best;
    std::string best_digits;
    for (std::size_t last = start; last < groups.size(); ++last) {
      count += groups[last].end - groups[last].begin;
      if (count > kMaxCardDigits) {
        break;
      }
      if (count >= kMinMaskedDigits) {
        std::string digits = joinDigits(text, groups, start, last);
        if (luhnValid(digits)) {
          best = last;
          best_digits = std::move(digits);
        }
      }
    }
    if (!best) {
      ++start;
      continue;
    }
    out.push_back({groups[start].begin, groups[*best].end, std::move(best_digits), true});
    found = true;
    start = *best + 1;
  }
  if (!found && whole) {
    out.push_back(std::move(*whole));
  }
}

bool startsWithIgnoreCase(std::string_view text, std::size_t pos, std::string_view prefix) {
  return text.size() - pos >= prefix.size() &&
         equalsIgnoreCase(text.substr(pos, prefix.size()), prefix);
}

void addCards(std::string_view value, std::string_view card_key, FormFacts& facts) {
  for (CardCandidate& candidate : findCardCandidates(value, false, 12)) {
    CardFacts card;
    card.bin = candidate.digits.substr(0, kKeptLeading);
    card.last4 = candidate.digits.substr(candidate.digits.size() - kKeptTrailing);
    card.luhn_valid = candidate.luhn_valid;
    card.fingerprint = cardFingerprint(candidate.digits, card_key);
    bool seen = std::any_of(facts.cards.begin(), facts.cards.end(), [&](const CardFacts& other) {
      return other.fingerprint == card.fingerprint;
    });
    if (!seen && facts.cards.size() < kMaxFormCards) {
      facts.cards.push_back(std::move(card));
    }
  }
}

}  // namespace

bool isFormKind(std::string_view kind) {
  return kind == "login" || kind == "register" || kind == "comment" || kind == "contact" ||
         kind == "coupon" || kind == "checkout";
}

bool luhnValid(std::string_view digits) {
  if (digits.empty()) {
    return false;
  }
  int sum = 0;
  bool double_it = false;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    if (!isDigit(*it)) {
      return false;
    }
    int digit = *it - '0';
    if (double_it) {
      digit *= 2;
      if (digit > 9) {
        digit -= 9;
      }
    }
    sum += digit;
    double_it = !double_it;
  }
  return sum % 10 == 0;
}

std::vector<CardCandidate> findCardCandidates(std::string_view text, bool encoded_separators,
                                              std::size_t min_digits) {
  std::vector<CardCandidate> out;
  std::vector<DigitGroup> groups;
  std::size_t pos = 0;
  while (pos < text.size()) {
    if (!isDigit(text[pos])) {
      ++pos;
      continue;
    }
    groups.clear();
    while (true) {
      std::size_t begin = pos;
      while (pos < text.size() && isDigit(text[pos])) {
        ++pos;
      }
      groups.push_back({begin, pos});
      std::size_t separator = separatorLength(text, pos, encoded_separators);
      if (separator == 0 || pos + separator >= text.size() || !isDigit(text[pos + separator])) {
        break;
      }
      pos += separator;
    }
    addRunCandidates(text, groups, min_digits, out);
  }
  return out;
}

std::optional<std::string> maskCardNumbers(std::string_view text) {
  // Most strings hold fewer than 13 digits in all, and cannot hold a card.
  std::size_t digits = 0;
  for (char c : text) {
    digits += isDigit(c) ? 1 : 0;
  }
  if (digits < kMinMaskedDigits) {
    return std::nullopt;
  }

  std::optional<std::string> masked;
  for (const CardCandidate& candidate : findCardCandidates(text, true, kMinMaskedDigits)) {
    if (!candidate.luhn_valid || candidate.digits.size() < kMinMaskedDigits) {
      continue;
    }
    if (!masked) {
      masked.emplace(text);
    }
    std::size_t last_masked = candidate.digits.size() - kKeptTrailing;
    std::size_t index = 0;
    std::size_t pos = candidate.begin;
    while (pos < candidate.end) {
      std::size_t separator = separatorLength(text, pos, true);
      if (separator > 0) {
        pos += separator;
        continue;
      }
      if (index >= kKeptLeading && index < last_masked) {
        (*masked)[pos] = '*';
      }
      ++index;
      ++pos;
    }
  }
  return masked;
}

std::uint32_t countLinks(std::string_view text) {
  std::uint32_t links = 0;
  std::size_t pos = 0;
  auto skipScheme = [&] {
    for (std::string_view scheme : {"https://", "http://"}) {
      if (startsWithIgnoreCase(text, pos, scheme)) {
        pos += scheme.size();
        break;
      }
    }
    if (startsWithIgnoreCase(text, pos, "www.")) {
      pos += 4;
    }
  };
  while (pos < text.size()) {
    if (startsWithIgnoreCase(text, pos, "[url=") || startsWithIgnoreCase(text, pos, "[url]")) {
      ++links;
      pos += 5;
      skipScheme();
    } else if (startsWithIgnoreCase(text, pos, "http://") ||
               startsWithIgnoreCase(text, pos, "https://") ||
               startsWithIgnoreCase(text, pos, "www.")) {
      ++links;
      skipScheme();
    } else {
      ++pos;
    }
  }
  return links;
}

std::string cardFingerprint(std::string_view digits, std::string_view key) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(digits.data()), digits.size(), digest, &length);
  return hexEncode(std::string_view(reinterpret_cast<const char*>(digest), length)).substr(0, 16);
}

FormFacts extractFormFacts(const CapturedRequest& request, std::string_view kind,
                           std::string_view card_key) {
  FormFacts facts;
  facts.kind = std::string(kind);
  std::uint64_t text_bytes = 0;
  // PHP keeps the last value of a repeated field, and so do these facts.
  for (const FormField& field : formFields(request)) {
    std::string name = lowercase(field.name);
    const std::string& value = field.value;
    if (isOneOf(name, kUsernameFields)) {
      facts.username = bounded(value, kMaxFormUsernameBytes);
    } else if (isOneOf(name, kPasswordFields)) {
      Sha256 hash;
      hash.update(value);
      facts.password_sha256 = hash.finalHex();
    } else if (isOneOf(name, kEmailFields)) {
      facts.email = bounded(value, kMaxFormEmailBytes);
    } else if (isOneOf(name, kCouponFields)) {
      facts.coupon = bounded(value, kMaxFormCouponBytes);
    }
    bool free_text = isOneOf(name, kFreeTextFields);
    if (free_text) {
      facts.links += countLinks(value);
      text_bytes += value.size();
    }
    if (free_text || isCardField(name)) {
      addCards(value, card_key, facts);
    }
  }
  facts.text_bytes = static_cast<std::uint32_t>(std::min<std::uint64_t>(text_bytes, UINT32_MAX));
  return facts;
}

}  // namespace webtrap::probe
