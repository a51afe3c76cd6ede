#include "probe/form_facts.h"

#include <algorithm>
#include <array>

#include "common/encoding.h"
#include "probe/form_data.h"

namespace webtrap::probe {
namespace {

// webtrap.form keeps the BIN and the last four digits of each card.
constexpr std::size_t kBinDigits = 6;
constexpr std::size_t kLastDigits = 4;

constexpr std::array<std::string_view, 6> kUsernameFields = {"username", "user",  "login",
                                                             "log",      "uname", "usr"};
constexpr std::array<std::string_view, 5> kPasswordFields = {"password", "pass", "passwd", "pwd",
                                                             "pw"};
constexpr std::array<std::string_view, 4> kEmailFields = {"email", "mail", "e-mail", "user_email"};
constexpr std::array<std::string_view, 5> kCouponFields = {"coupon", "coupon_code", "promo_code",
                                                           "promo", "voucher"};
constexpr std::array<std::string_view, 7> kFreeTextFields = {
    "comment", "message", "text", "body", "content", "msg", "description"};

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
  return std::string(utf8Prefix(text, max));
}

bool startsWithIgnoreCase(std::string_view text, std::size_t pos, std::string_view prefix) {
  return text.size() - pos >= prefix.size() &&
         equalsIgnoreCase(text.substr(pos, prefix.size()), prefix);
}

// Rewrites a card field's value in the form findCardCandidates reads:
// full-width digits (U+FF10 to U+FF19) become ASCII digits, and each run of
// separators a payment form would accept (space, '-', '.', '/', '_', tab,
// CR, LF) becomes one space. So "4111.1111.1111.1111" and "4111\r\n1111..."
// count as the same card as "4111 1111 1111 1111".
std::string normalizeCardField(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  bool in_separator = false;
  for (std::size_t pos = 0; pos < value.size(); ++pos) {
    char c = value[pos];
    auto next = [&](std::size_t offset) {
      return pos + offset < value.size() ? static_cast<unsigned char>(value[pos + offset]) : 0;
    };
    if (static_cast<unsigned char>(c) == 0xEF && next(1) == 0xBC && next(2) >= 0x90 &&
        next(2) <= 0x99) {
      out.push_back(static_cast<char>('0' + (next(2) - 0x90)));
      pos += 2;
      in_separator = false;
      continue;
    }
    bool separator = c == ' ' || c == '-' || c == '.' || c == '/' || c == '_' || c == '\t' ||
                     c == '\r' || c == '\n';
    if (separator) {
      if (!in_separator) {
        out.push_back(' ');
      }
      in_separator = true;
      continue;
    }
    out.push_back(c);
    in_separator = false;
  }
  return out;
}

void addCards(std::string_view value, std::string_view card_key, FormFacts& facts) {
  for (CardCandidate& candidate : findCardCandidates(value, false, 12)) {
    CardFacts card;
    card.bin = candidate.digits.substr(0, kBinDigits);
    card.last4 = candidate.digits.substr(candidate.digits.size() - kLastDigits);
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
    if (isCardField(name)) {
      addCards(normalizeCardField(value), card_key, facts);
    } else if (free_text) {
      addCards(value, card_key, facts);
    }
  }
  facts.text_bytes = static_cast<std::uint32_t>(std::min<std::uint64_t>(text_bytes, UINT32_MAX));
  return facts;
}

}  // namespace webtrap::probe
