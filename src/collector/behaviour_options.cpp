// The `behaviour:` section of the collector configuration: one option table
// used for parsing, for rejecting unknown keys and for the reference table.
#include <algorithm>
#include <charconv>
#include <functional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "collector/behaviour.h"
#include "common/config_table.h"
#include "common/config_values.h"
#include "common/error.h"

namespace webtrap::collector {
namespace {

using config_values::parseBool;
using config_values::parseMilliseconds;
using config_values::parseUnsigned;
using config_values::scalarText;

using Apply = std::function<void(BehaviourOptions&, const YAML::Node&, const std::string&)>;
using BehaviourOption = config_table::Option<Apply>;

std::uint64_t parseCountUpTo(const YAML::Node& node, const std::string& key, std::uint64_t max) {
  std::string text = scalarText(node, key);
  std::uint64_t value = parseUnsigned(text, key);
  if (value < 1 || value > max) {
    throw ConfigError(
        fmt::format("{}: invalid value {}; use a count from 1 to {}", key, text, max));
  }
  return value;
}

std::uint32_t parseCount(const YAML::Node& node, const std::string& key) {
  return static_cast<std::uint32_t>(parseCountUpTo(node, key, 1'000'000));
}

double parseNumber(const YAML::Node& node, const std::string& key, double min, double max) {
  std::string text = scalarText(node, key);
  double value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    throw ConfigError(fmt::format("{}: invalid value \"{}\"; use a number from {} to {}", key,
                                  text, min, max));
  }
  return value;
}

double parseRatio(const YAML::Node& node, const std::string& key) {
  return parseNumber(node, key, 0.0, 1.0);
}

std::int64_t parseDuration(const YAML::Node& node, const std::string& key) {
  std::string text = scalarText(node, key);
  std::uint64_t milliseconds = parseMilliseconds(text, key);
  if (milliseconds < 1000 || milliseconds > 86'400'000) {
    throw ConfigError(fmt::format("{}: invalid value {}; use a duration from 1s to 24h", key,
                                  text));
  }
  return static_cast<std::int64_t>(milliseconds);
}

std::vector<std::string> parseCookieNames(const YAML::Node& node, const std::string& key) {
  if (!node.IsSequence()) {
    throw ConfigError(fmt::format("{}: invalid value; use a list of cookie names, such as "
                                  "[PHPSESSID]",
                                  key));
  }
  std::vector<std::string> names;
  for (const auto& item : node) {
    std::string name = scalarText(item, key);
    bool valid = !name.empty() && std::none_of(name.begin(), name.end(), [](char c) {
      return c <= ' ' || c >= 127 || c == '=' || c == ';' || c == ',';
    });
    if (!valid) {
      throw ConfigError(fmt::format("{}: invalid cookie name \"{}\"; use the name as the "
                                    "server sets it, such as PHPSESSID",
                                    key, name));
    }
    names.push_back(name);
  }
  return names;
}

const std::vector<BehaviourOption>& behaviourOptions() {
  using O = BehaviourOptions;
  using N = YAML::Node;
  using S = std::string;
  static const std::vector<BehaviourOption> kOptions = {
      {"behaviour.enabled", "bool", "true",
       "Tag records with behavioural OAT tags from sliding windows per source; see docs/oat.md.",
       [](O& o, const N& n, const S& k) { o.enabled = parseBool(scalarText(n, k), k); }},
      {"behaviour.window", "duration", "2m",
       "Length of the sliding window of every behavioural signal, from 1s to 24h.",
       [](O& o, const N& n, const S& k) { o.window_ms = parseDuration(n, k); }},
      {"behaviour.max_keys", "count", "20000",
       "Keys (source, source and user agent, session) tracked at once; the least recently seen "
       "is dropped past this. About 1.4 KiB per key, 8 KiB at most (an estimate from the "
       "sizes of its counters and sets).",
       [](O& o, const N& n, const S& k) {
         o.max_keys = static_cast<std::size_t>(parseCountUpTo(n, k, 10'000'000));
       }},
      {"behaviour.ua_rotation", "count", "4",
       "Distinct user agents from one address in the window that make the address alone a key "
       "(one actor rotating user agents).",
       [](O& o, const N& n, const S& k) { o.ua_rotation = parseCount(n, k); }},
      {"behaviour.session_cookies", "list", "[PHPSESSID]",
       "Cookies whose value keys a session; list the personas' session cookies.",
       [](O& o, const N& n, const S& k) { o.session_cookies = parseCookieNames(n, k); }},
      {"behaviour.credential_stuffing.min_usernames", "count", "8",
       "OAT-008: distinct user names in login posts.",
       [](O& o, const N& n, const S& k) { o.credential_stuffing.min_usernames = parseCount(n, k); }},
      {"behaviour.credential_stuffing.max_attempts_per_username", "number", "2",
       "OAT-008: at most this many login posts per distinct user name.",
       [](O& o, const N& n, const S& k) {
         o.credential_stuffing.max_attempts_per_username = parseNumber(n, k, 1.0, 1000.0);
       }},
      {"behaviour.credential_cracking.min_passwords", "count", "8",
       "OAT-007: distinct passwords (SHA-256) in login posts.",
       [](O& o, const N& n, const S& k) {
         o.credential_cracking.min_passwords = parseCount(n, k);
       }},
      {"behaviour.credential_cracking.min_passwords_per_username", "number", "4",
       "OAT-007: at least this many distinct passwords per distinct user name.",
       [](O& o, const N& n, const S& k) {
         o.credential_cracking.min_passwords_per_username = parseNumber(n, k, 1.0, 1000.0);
       }},
      {"behaviour.vulnerability_scanning.min_attack_requests", "count", "3",
       "OAT-014: requests that matched CRS attack rules (930000-944999).",
       [](O& o, const N& n, const S& k) {
         o.vulnerability_scanning.min_attack_requests = parseCount(n, k);
       }},
      {"behaviour.vulnerability_scanning.min_distinct_paths", "count", "40",
       "OAT-014 without attack rules: distinct paths, with min_ratio_404.",
       [](O& o, const N& n, const S& k) {
         o.vulnerability_scanning.min_distinct_paths = parseCount(n, k);
       }},
      {"behaviour.vulnerability_scanning.min_ratio_404", "ratio", "0.5",
       "OAT-014 without attack rules: share of requests with a 404 response.",
       [](O& o, const N& n, const S& k) {
         o.vulnerability_scanning.min_ratio_404 = parseRatio(n, k);
       }},
      {"behaviour.footprinting.min_product_paths", "count", "5",
       "OAT-018: distinct paths of well-known products, version files and site metadata "
       "(robots.txt, sitemap.xml, security.txt; see docs/oat.md).",
       [](O& o, const N& n, const S& k) { o.footprinting.min_product_paths = parseCount(n, k); }},
      {"behaviour.footprinting.min_unusual_methods", "count", "3",
       "OAT-018: requests with methods other than GET, HEAD, POST and OPTIONS.",
       [](O& o, const N& n, const S& k) {
         o.footprinting.min_unusual_methods = parseCount(n, k);
       }},
      {"behaviour.fingerprinting.min_probes", "count", "2",
       "OAT-004: distinct product or version probes (product paths, version files, favicon, "
       "HEAD or OPTIONS requests).",
       [](O& o, const N& n, const S& k) { o.fingerprinting.min_probes = parseCount(n, k); }},
      {"behaviour.fingerprinting.max_requests", "count", "30",
       "OAT-004: at most this many requests in the window; more is scanning or footprinting. "
       "A footprinting sweep (min_product_paths) also rules out OAT-004.",
       [](O& o, const N& n, const S& k) { o.fingerprinting.max_requests = parseCount(n, k); }},
      {"behaviour.scraping.min_pages", "count", "8",
       "OAT-011: distinct non-static URLs (path and query) with a 2xx response.",
       [](O& o, const N& n, const S& k) { o.scraping.min_pages = parseCount(n, k); }},
      {"behaviour.scraping.max_ratio_404", "ratio", "0.1",
       "OAT-011: at most this share of requests with a 404 response. A crawler that follows "
       "links gets a 404 only for a broken link.",
       [](O& o, const N& n, const S& k) { o.scraping.max_ratio_404 = parseRatio(n, k); }},
      {"behaviour.scraping.max_posts", "count", "1",
       "OAT-011: at most this many POST requests in the window; a crawl that submits more "
       "forms is a scanner's crawl.",
       [](O& o, const N& n, const S& k) { o.scraping.max_posts = parseCount(n, k); }},
      {"behaviour.scraping.min_query_urls", "count", "16",
       "OAT-011 by query walk: distinct non-static URLs (any status) over at most a quarter as "
       "many distinct paths, such as product.php?id=1 to 40.",
       [](O& o, const N& n, const S& k) { o.scraping.min_query_urls = parseCount(n, k); }},
      {"behaviour.denial_of_service.span", "duration", "10s",
       "OAT-015: the span min_requests is counted over, from 1s to the window.",
       [](O& o, const N& n, const S& k) { o.denial_of_service.span_ms = parseDuration(n, k); }},
      {"behaviour.denial_of_service.min_requests", "count", "200",
       "OAT-015: requests within the span.",
       [](O& o, const N& n, const S& k) {
         o.denial_of_service.min_requests = parseCount(n, k);
       }},
      {"behaviour.denial_of_service.max_distinct_path_ratio", "ratio", "0.2",
       "OAT-015: at most this many distinct paths per request (a flood repeats a few URLs).",
       [](O& o, const N& n, const S& k) {
         o.denial_of_service.max_distinct_path_ratio = parseRatio(n, k);
       }},
      {"behaviour.account_creation.min_registrations", "count", "3",
       "OAT-019: registration posts.",
       [](O& o, const N& n, const S& k) {
         o.account_creation.min_registrations = parseCount(n, k);
       }},
      {"behaviour.token_cracking.min_coupons", "count", "5", "OAT-002: distinct coupon codes.",
       [](O& o, const N& n, const S& k) { o.token_cracking.min_coupons = parseCount(n, k); }},
      {"behaviour.carding.min_cards", "count", "3",
       "OAT-001: distinct Luhn-valid cards (by fingerprint) in checkout posts.",
       [](O& o, const N& n, const S& k) { o.carding.min_cards = parseCount(n, k); }},
      {"behaviour.card_cracking.min_attempts", "count", "4",
       "OAT-010: checkout posts with one and the same card.",
       [](O& o, const N& n, const S& k) { o.card_cracking.min_attempts = parseCount(n, k); }},
      {"behaviour.spamming.min_link_posts", "count", "2",
       "OAT-017: comment or contact posts with at least one link.",
       [](O& o, const N& n, const S& k) { o.spamming.min_link_posts = parseCount(n, k); }},
      {"behaviour.spamming.min_posts", "count", "10",
       "OAT-017: comment or contact posts, links or not.",
       [](O& o, const N& n, const S& k) { o.spamming.min_posts = parseCount(n, k); }},
      {"behaviour.spamming.min_links_per_post", "count", "5",
       "OAT-017: links in one post that make it spam on its own.",
       [](O& o, const N& n, const S& k) { o.spamming.min_links_per_post = parseCount(n, k); }},
  };
  return kOptions;
}

}  // namespace

BehaviourOptions parseBehaviourOptions(const YAML::Node& node) {
  BehaviourOptions options;
  if (!node.IsDefined() || node.IsNull()) {
    return options;
  }
  if (!node.IsMap()) {
    throw ConfigError("behaviour: expected a map of keys, such as `behaviour:` followed by "
                      "indented `window: 2m`");
  }
  const auto& all = behaviourOptions();
  config_table::KeyWalk walk{
      .apply =
          [&](const std::string& key, const YAML::Node& value) {
            const BehaviourOption* option = config_table::findOption(all, key);
            if (option == nullptr) {
              return false;
            }
            option->apply(options, value, key);
            return true;
          },
      .is_group = [&](const std::string& key) { return config_table::hasGroup(all, key); },
      .program = "collector",
  };
  config_table::walkKeys(node, "behaviour.", walk);
  if (options.denial_of_service.span_ms > options.window_ms) {
    throw ConfigError(fmt::format("behaviour.denial_of_service.span: {}ms is longer than "
                                  "behaviour.window ({}ms); shorten the span or lengthen the "
                                  "window",
                                  options.denial_of_service.span_ms, options.window_ms));
  }
  return options;
}

std::string behaviourConfigurationRows() {
  return config_table::referenceRows(behaviourOptions());
}

std::string describeBehaviourOptions(const BehaviourOptions& o) {
  return fmt::format(
      "window={}s max_keys={} ua_rotation={} session_cookies=[{}] "
      "stuffing(usernames>={} attempts/username<={}) cracking(passwords>={} "
      "passwords/username>={}) scanning(attack_requests>={} | paths>={} ratio_404>={}) "
      "footprinting(product_paths>={} | unusual_methods>={}) "
      "fingerprinting(probes>={} requests<={}) scraping(pages>={} ratio_404<={} | "
      "query_urls>={}; posts<={}) "
      "dos(requests>={} in {}s distinct_path_ratio<={}) account_creation(registrations>={}) "
      "token_cracking(coupons>={}) carding(cards>={}) card_cracking(attempts>={}) "
      "spamming(link_posts>={} | posts>={} | links_per_post>={})",
      o.window_ms / 1000, o.max_keys, o.ua_rotation, fmt::join(o.session_cookies, ","),
      o.credential_stuffing.min_usernames, o.credential_stuffing.max_attempts_per_username,
      o.credential_cracking.min_passwords, o.credential_cracking.min_passwords_per_username,
      o.vulnerability_scanning.min_attack_requests, o.vulnerability_scanning.min_distinct_paths,
      o.vulnerability_scanning.min_ratio_404, o.footprinting.min_product_paths,
      o.footprinting.min_unusual_methods, o.fingerprinting.min_probes,
      o.fingerprinting.max_requests, o.scraping.min_pages, o.scraping.max_ratio_404,
      o.scraping.min_query_urls, o.scraping.max_posts,
      o.denial_of_service.min_requests, o.denial_of_service.span_ms / 1000.0,
      o.denial_of_service.max_distinct_path_ratio, o.account_creation.min_registrations,
      o.token_cracking.min_coupons, o.carding.min_cards, o.card_cracking.min_attempts,
      o.spamming.min_link_posts, o.spamming.min_posts, o.spamming.min_links_per_post);
}

}  // namespace webtrap::collector
