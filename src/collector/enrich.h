// Enrichment applied at ingest: GeoIP city and ASN from MaxMind-format
// databases the user supplies, and CRS rule ids to attack categories.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace YAML {
class Node;
}

namespace webtrap::collector {

struct GeoFacts {
  std::string country_iso;   // "DE"
  std::string country_name;  // English name
  std::string region_name;
  std::string city_name;
  std::optional<double> latitude;
  std::optional<double> longitude;
  std::optional<std::uint32_t> asn;
  std::string as_organization;
};

struct EnrichOptions {
  std::filesystem::path geoip_city;  // GeoLite2-City / GeoIP2-City format; empty: none
  std::filesystem::path geoip_asn;   // GeoLite2-ASN format; empty: none
};

// Parses the `enrich:` section ({geoip_city: PATH, geoip_asn: PATH}); both keys
// are optional. Throws ConfigError on an unknown key or a value that is not a
// string. Paths are kept as written, so relative ones resolve against the
// working directory when the Enricher opens them.
EnrichOptions parseEnrichOptions(const YAML::Node& node);

// Thread-safe after construction (libmaxminddb lookups only read).
class Enricher {
 public:
  explicit Enricher(const EnrichOptions& options);  // throws ConfigError on a bad file
  ~Enricher();
  Enricher(const Enricher&) = delete;
  Enricher& operator=(const Enricher&) = delete;

  // Empty facts for addresses the databases do not hold, private addresses
  // and text that is not an IP address. Addresses that no public database
  // can place are never looked up: loopback, RFC 1918 and RFC 4193 private,
  // link-local, carrier-grade NAT (100.64.0.0/10), unspecified and multicast.
  // The documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
  // 2001:db8::/32) are looked up, so test databases can hold them.
  GeoFacts lookup(std::string_view ip) const;

  bool hasCityDatabase() const;
  bool hasAsnDatabase() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// True for the addresses Enricher::lookup() skips (see there). False for text
// that is not an IP address.
bool isNonPublicAddress(std::string_view ip);

// Returns the attack category of a rule id. For OWASP CRS 3.3.4 the first
// three digits name the rule file, and so the category:
//   910 ip-reputation, 911 method-enforcement, 912 dos, 913 scanner-detection,
//   920 protocol-enforcement, 921 protocol-attack, 922 multipart, 930 lfi,
//   931 rfi, 932 rce, 933 php, 934 nodejs, 941 xss, 942 sqli,
//   943 session-fixation, 944 java, 949 and 959 anomaly-evaluation,
//   950-954 data-leakage, 980 correlation.
// webtrap's honeytrap rules (77000-77099) are "honeytrap". Each gap rule
// (77100-77299) gets the category of its attack tag ("java", "php", "rce",
// "ssrf", "disclosure", "bruteforce"), and an unlisted id in that range gets
// "webtrap-gap". Any other id gives "", and so do CRS's initialization (901)
// and exclusion (903.x, 905) rules, which report no attacks.
std::string_view ruleCategory(std::string_view rule_id);

}  // namespace webtrap::collector
