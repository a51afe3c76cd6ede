#include "common/own_name.h"

#include "common/encoding.h"

namespace webtrap::oat {

bool isOwnNameMatch(std::string_view rule_id, std::string_view rule_data, std::string_view host) {
  // CRS 3.3 attack families: 930 LFI to 934 Node.js, 941 XSS to 944 Java.
  bool attack_rule = rule_id.size() == 6 && rule_id[0] == '9' &&
                     (rule_id[1] == '3' || (rule_id[1] == '4' && rule_id[2] >= '0' && rule_id[2] <= '4'));
  if (!attack_rule) {
    return false;
  }
  constexpr std::string_view kPrefix = "Matched Data: ";
  constexpr std::string_view kFound = " found within ";
  if (!rule_data.starts_with(kPrefix) || host.empty()) {
    return false;
  }
  std::string_view rest = rule_data.substr(kPrefix.size());
  std::size_t found = rest.find(kFound);
  if (found == std::string_view::npos || found == 0) {
    return false;
  }
  std::string_view matched = rest.substr(0, found);

  // "[::1]:8080" and "example.com:8080": the name without the port.
  if (host.front() == '[') {
    return false;  // an IPv6 literal names no site
  }
  std::size_t colon = host.find(':');
  if (colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  while (!host.empty() && host.back() == '.') {
    host.remove_suffix(1);
  }
  if (host.find_first_not_of("0123456789.") == std::string_view::npos) {
    return false;  // an IPv4 address names no site
  }
  std::size_t last_dot = host.rfind('.');
  if (last_dot == std::string_view::npos) {
    return false;  // a single label is a top-level name or an address part
  }
  std::string_view labels = host.substr(0, last_dot);
  while (!labels.empty()) {
    std::size_t dot = labels.find('.');
    std::string_view label = labels.substr(0, dot);
    if (equalsIgnoreCase(label, matched)) {
      return true;
    }
    labels = dot == std::string_view::npos ? std::string_view() : labels.substr(dot + 1);
  }
  return false;
}

}  // namespace webtrap::oat
