#include "probe/persona_forms.h"

#include <algorithm>
#include <cctype>

#include "common/encoding.h"
#include "probe/form_data.h"

namespace webtrap::probe {
namespace {

// The value PHP puts in $_POST[name] (or $_GET): the last one sent, where
// formFieldValues lists the query's values before the body's.
std::string lastValue(const CapturedRequest& request, std::string_view name) {
  std::vector<std::string> values = formFieldValues(request, name);
  return values.empty() ? std::string() : values.back();
}

// The bytes PHP's trim() strips: space, tab, LF, CR, NUL and vertical tab.
// It keeps form feed, so isspace() is not the same set.
constexpr std::string_view kPhpTrimCharacters(" \t\n\r\0\x0B", 6);

bool isBlank(std::string_view text) {
  return text.find_first_not_of(kPhpTrimCharacters) == std::string_view::npos;
}

// PHP's intval() on a query value: leading whitespace, then digits up to
// the first other byte, so "2' AND 1=1" reads as 2, as the real page would.
std::string intvalDigits(std::string_view text) {
  std::size_t start = 0;
  while (start < text.size() && std::isspace(static_cast<unsigned char>(text[start])) != 0) {
    ++start;
  }
  if (start < text.size() && text[start] == '+') {
    ++start;
  }
  std::size_t end = start;
  while (end < text.size() && text[end] >= '0' && text[end] <= '9') {
    ++end;
  }
  std::string_view digits = text.substr(start, end - start);
  while (digits.size() > 1 && digits.front() == '0') {
    digits.remove_prefix(1);
  }
  return std::string(digits);
}

std::string registerAnswer(const PersonaData& data, const CapturedRequest& request) {
  std::string username = lastValue(request, "username");
  std::string email = lastValue(request, "email");
  std::string password = lastValue(request, "password");
  std::string confirm = lastValue(request, "confirm");
  if (isBlank(username) || isBlank(email) || password.empty() || confirm.empty()) {
    return "invalid";
  }
  if (password != confirm) {
    return "mismatch";
  }
  const auto& taken_names = data.taken_usernames;
  if (std::find(taken_names.begin(), taken_names.end(), asciiLowercase(username)) !=
      taken_names.end()) {
    return "taken";
  }
  return "created";
}

std::string commentAnswer(const CapturedRequest& request) {
  if (isBlank(lastValue(request, "name")) || isBlank(lastValue(request, "email")) ||
      isBlank(lastValue(request, "comment"))) {
    return "invalid";
  }
  return "moderation";
}

std::string couponAnswer(const PersonaData& data, const CapturedRequest& request) {
  std::vector<std::string> values = formFieldValues(request, "coupon");
  if (values.empty()) {
    // The product page's "add to cart" form posts here without a coupon field.
    return "added";
  }
  std::string code = values.back();
  code.erase(0, code.find_first_not_of(kPhpTrimCharacters));
  code.erase(code.find_last_not_of(kPhpTrimCharacters) + 1);
  if (code.empty()) {
    return "empty";
  }
  for (const auto& valid : data.valid_coupons) {
    if (equalsIgnoreCase(code, valid)) {
      return "valid";
    }
  }
  return "invalid";
}

std::string checkoutAnswer(const CapturedRequest& request) {
  for (std::string_view field : {"card_number", "expiry", "cvv", "card_name"}) {
    if (isBlank(lastValue(request, field))) {
      return "invalid";
    }
  }
  // The shop declines every card: nothing is ever charged or verified.
  return "declined";
}

}  // namespace

FormChoice chooseFormAnswer(const PersonaData& data, const PersonaRoute& route,
                            const CapturedRequest& request, std::string_view path,
                            std::string_view query) {
  FormChoice choice;
  if (route.answers.empty()) {
    return choice;
  }

  if (route.kind == "product") {
    std::string id;
    for (const std::string& value : formFieldValues(request, "id")) {
      id = intvalDigits(value);
    }
    for (const Product& product : data.products) {
      if (product.id == id) {
        choice.product = &product;
        return choice;
      }
    }
    choice.answer = "not_found";
    return choice;
  }

  // A comment route without ?id= shows the newest post, as the blog's links
  // and form actions without an id expect.
  std::vector<std::string> post_ids = formFieldValues(request, "id");
  if (route.kind == "comment" && !data.blog_posts.empty() && !post_ids.empty()) {
    std::string id = intvalDigits(post_ids.back());
    if (std::find(data.blog_posts.begin(), data.blog_posts.end(), id) == data.blog_posts.end()) {
      choice.answer = "not_found";
      return choice;
    }
  }

  if (request.method == "POST") {
    if (route.kind == "register") {
      choice.answer = registerAnswer(data, request);
    } else if (route.kind == "comment") {
      choice.answer = commentAnswer(request);
    } else if (route.kind == "coupon") {
      choice.answer = couponAnswer(data, request);
    } else if (route.kind == "checkout") {
      choice.answer = checkoutAnswer(request);
    }
    return choice;
  }

  // The page a POST redirected to shows that outcome's notice.
  std::string target(path);
  if (!query.empty()) {
    target += '?';
    target += query;
  }
  for (const auto& [name, answer] : route.answers) {
    if (!answer.redirect.empty() && answer.redirect == target) {
      choice.answer = name;
      break;
    }
  }
  return choice;
}

}  // namespace webtrap::probe
