// Enrichment applied at ingest: GeoIP city and ASN from MaxMind-format
// databases the user supplies, and CRS rule ids to attack categories.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

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

// Thread-safe after construction (libmaxminddb lookups only read).
class Enricher {
 public:
  explicit Enricher(const EnrichOptions& options);  // throws ConfigError on a bad file
  ~Enricher();
  Enricher(const Enricher&) = delete;
  Enricher& operator=(const Enricher&) = delete;

  // Empty facts for addresses the databases do not hold, private addresses
  // and text that is not an IP address.
  GeoFacts lookup(std::string_view ip) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The CRS attack category of a rule id: "sqli", "xss", "rce", "lfi", "rfi",
// "php", "java", "nodejs", "session-fixation", "protocol-violation",
// "protocol-enforcement", "scanner-detection", "method-enforcement",
// "multipart", "generic", "anomaly-evaluation", "honeytrap" for webtrap's own
// rules, or "" when unknown.
std::string_view ruleCategory(std::string_view rule_id);

}  // namespace webtrap::collector
