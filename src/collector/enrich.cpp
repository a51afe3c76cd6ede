#include "collector/enrich.h"

#include <arpa/inet.h>
#include <maxminddb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include "common/config_table.h"
#include "common/config_values.h"
#include "common/error.h"

namespace webtrap::collector {

namespace {

// A parsed IPv4 or IPv6 address in a form MMDB_lookup_sockaddr accepts.
struct ParsedAddress {
  bool ok = false;
  bool v6 = false;
  sockaddr_in in4{};
  sockaddr_in6 in6{};

  const sockaddr* sockaddrPointer() const {
    return v6 ? reinterpret_cast<const sockaddr*>(&in6) : reinterpret_cast<const sockaddr*>(&in4);
  }
};

ParsedAddress parseAddress(std::string_view text) {
  ParsedAddress address;
  // inet_pton needs a NUL-terminated string; the longest IPv6 text form with
  // an embedded IPv4 part is 45 characters.
  char buffer[64];
  if (text.empty() || text.size() >= sizeof buffer) {
    return address;
  }
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  if (inet_pton(AF_INET, buffer, &address.in4.sin_addr) == 1) {
    address.in4.sin_family = AF_INET;
    address.ok = true;
  } else if (inet_pton(AF_INET6, buffer, &address.in6.sin6_addr) == 1) {
    address.in6.sin6_family = AF_INET6;
    address.v6 = true;
    address.ok = true;
    // Looks up ::ffff:a.b.c.d as a.b.c.d, so IPv4-only databases find it too.
    if (IN6_IS_ADDR_V4MAPPED(&address.in6.sin6_addr)) {
      address.in4.sin_family = AF_INET;
      std::memcpy(&address.in4.sin_addr, address.in6.sin6_addr.s6_addr + 12, 4);
      address.v6 = false;
    }
  }
  return address;
}

bool isNonPublicV4(const std::uint8_t* b) {
  return b[0] == 0 ||                                   // 0.0.0.0/8 "this network"
         b[0] == 10 ||                                  // 10.0.0.0/8 private
         b[0] == 127 ||                                 // loopback
         (b[0] == 100 && (b[1] & 0xC0) == 64) ||        // 100.64.0.0/10 carrier-grade NAT
         (b[0] == 169 && b[1] == 254) ||                // link-local
         (b[0] == 172 && (b[1] & 0xF0) == 16) ||        // 172.16.0.0/12 private
         (b[0] == 192 && b[1] == 168) ||                // 192.168.0.0/16 private
         b[0] >= 224;                                   // multicast, reserved, broadcast
}

bool isNonPublic(const ParsedAddress& address) {
  if (!address.v6) {
    return isNonPublicV4(reinterpret_cast<const std::uint8_t*>(&address.in4.sin_addr));
  }
  const auto* b = reinterpret_cast<const std::uint8_t*>(&address.in6.sin6_addr);
  bool all_zero_but_last = true;
  for (int i = 0; i < 15; ++i) {
    all_zero_but_last = all_zero_but_last && b[i] == 0;
  }
  if (all_zero_but_last && (b[15] == 0 || b[15] == 1)) {
    return true;  // :: and ::1
  }
  return (b[0] & 0xFE) == 0xFC ||                // fc00::/7 unique local
         (b[0] == 0xFE && (b[1] & 0xC0) == 0x80) ||  // fe80::/10 link-local
         b[0] == 0xFF;                           // multicast
}

std::string_view databaseType(const MMDB_s& db) {
  return db.metadata.database_type != nullptr ? std::string_view(db.metadata.database_type)
                                              : std::string_view();
}

// Opens one database, or throws ConfigError naming the key, the path and the fix.
void openDatabase(const std::filesystem::path& path, const char* key, MMDB_s& db) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    throw ConfigError(fmt::format(
        "enrich.{}: GeoIP database {} not found or not a regular file; give the path of a "
        "MaxMind DB (.mmdb) file, or remove the key to run without it",
        key, path.string()));
  }
  int status = MMDB_open(path.c_str(), MMDB_MODE_MMAP, &db);
  if (status != MMDB_SUCCESS) {
    throw ConfigError(fmt::format(
        "enrich.{}: cannot open GeoIP database {}: {}; give a MaxMind DB (.mmdb) file such as "
        "GeoLite2-City.mmdb or GeoLite2-ASN.mmdb",
        key, path.string(), MMDB_strerror(status)));
  }
}

// Returns the UTF-8 string at `path` under `entry`, or "" when absent.
std::string stringAt(MMDB_entry_s& entry, const char* const* path) {
  MMDB_entry_data_s data{};
  if (MMDB_aget_value(&entry, &data, path) != MMDB_SUCCESS || !data.has_data ||
      data.type != MMDB_DATA_TYPE_UTF8_STRING) {
    return {};
  }
  return std::string(data.utf8_string, data.data_size);
}

std::optional<double> doubleAt(MMDB_entry_s& entry, const char* const* path) {
  MMDB_entry_data_s data{};
  if (MMDB_aget_value(&entry, &data, path) != MMDB_SUCCESS || !data.has_data) {
    return std::nullopt;
  }
  if (data.type == MMDB_DATA_TYPE_DOUBLE) {
    return data.double_value;
  }
  if (data.type == MMDB_DATA_TYPE_FLOAT) {
    return static_cast<double>(data.float_value);
  }
  return std::nullopt;
}

std::optional<std::uint32_t> unsignedAt(MMDB_entry_s& entry, const char* const* path) {
  MMDB_entry_data_s data{};
  if (MMDB_aget_value(&entry, &data, path) != MMDB_SUCCESS || !data.has_data) {
    return std::nullopt;
  }
  switch (data.type) {
    case MMDB_DATA_TYPE_UINT16:
      return data.uint16;
    case MMDB_DATA_TYPE_UINT32:
      return data.uint32;
    case MMDB_DATA_TYPE_INT32:
      return data.int32 >= 0 ? std::optional<std::uint32_t>(data.int32) : std::nullopt;
    case MMDB_DATA_TYPE_UINT64:
      return data.uint64 <= UINT32_MAX ? std::optional<std::uint32_t>(data.uint64) : std::nullopt;
    default:
      return std::nullopt;
  }
}

// Looks the address up; returns false when the database has no entry for it.
bool findEntry(const MMDB_s& db, const ParsedAddress& address, MMDB_entry_s& entry) {
  int status = MMDB_SUCCESS;
  MMDB_lookup_result_s result = MMDB_lookup_sockaddr(&db, address.sockaddrPointer(), &status);
  // MMDB_IPV6_LOOKUP_IN_IPV4_DATABASE_ERROR: an IPv6 address against an
  // IPv4-only database, which contains no entry for it.
  if (status != MMDB_SUCCESS || !result.found_entry) {
    return false;
  }
  entry = result.entry;
  return true;
}

}  // namespace

struct Enricher::Impl {
  MMDB_s city{};
  MMDB_s asn{};
  bool has_city = false;
  bool has_asn = false;

  ~Impl() {
    if (has_city) {
      MMDB_close(&city);
    }
    if (has_asn) {
      MMDB_close(&asn);
    }
  }
};

Enricher::Enricher(const EnrichOptions& options) : impl_(std::make_unique<Impl>()) {
  if (!options.geoip_city.empty()) {
    openDatabase(options.geoip_city, "geoip_city", impl_->city);
    impl_->has_city = true;
    std::string_view type = databaseType(impl_->city);
    if (type.find("ASN") != std::string_view::npos) {
      throw ConfigError(fmt::format(
          "enrich.geoip_city: {} is an ASN database (type {}); give it as enrich.geoip_asn and "
          "give a City database as enrich.geoip_city",
          options.geoip_city.string(), type));
    }
    spdlog::info("GeoIP city database opened: {} (type {}, built {})",
                 options.geoip_city.string(), type, impl_->city.metadata.build_epoch);
  }
  if (!options.geoip_asn.empty()) {
    openDatabase(options.geoip_asn, "geoip_asn", impl_->asn);
    impl_->has_asn = true;
    std::string_view type = databaseType(impl_->asn);
    if (type.find("City") != std::string_view::npos ||
        type.find("Country") != std::string_view::npos) {
      throw ConfigError(fmt::format(
          "enrich.geoip_asn: {} is a location database (type {}); give it as "
          "enrich.geoip_city and give an ASN database as enrich.geoip_asn",
          options.geoip_asn.string(), type));
    }
    spdlog::info("GeoIP ASN database opened: {} (type {}, built {})",
                 options.geoip_asn.string(), type, impl_->asn.metadata.build_epoch);
  }
}

Enricher::~Enricher() = default;

bool Enricher::hasCityDatabase() const { return impl_->has_city; }
bool Enricher::hasAsnDatabase() const { return impl_->has_asn; }

GeoFacts Enricher::lookup(std::string_view ip) const {
  GeoFacts facts;
  if (!impl_->has_city && !impl_->has_asn) {
    return facts;
  }
  ParsedAddress address = parseAddress(ip);
  if (!address.ok || isNonPublic(address)) {
    return facts;
  }

  MMDB_entry_s entry{};
  if (impl_->has_city && findEntry(impl_->city, address, entry)) {
    static const char* const kCountryIso[] = {"country", "iso_code", nullptr};
    static const char* const kCountryName[] = {"country", "names", "en", nullptr};
    static const char* const kRegionName[] = {"subdivisions", "0", "names", "en", nullptr};
    static const char* const kCityName[] = {"city", "names", "en", nullptr};
    static const char* const kLatitude[] = {"location", "latitude", nullptr};
    static const char* const kLongitude[] = {"location", "longitude", nullptr};
    facts.country_iso = stringAt(entry, kCountryIso);
    facts.country_name = stringAt(entry, kCountryName);
    facts.region_name = stringAt(entry, kRegionName);
    facts.city_name = stringAt(entry, kCityName);
    facts.latitude = doubleAt(entry, kLatitude);
    facts.longitude = doubleAt(entry, kLongitude);
    // A location is only useful with both coordinates.
    if (!facts.latitude || !facts.longitude) {
      facts.latitude.reset();
      facts.longitude.reset();
    }
  }
  if (impl_->has_asn && findEntry(impl_->asn, address, entry)) {
    static const char* const kAsNumber[] = {"autonomous_system_number", nullptr};
    static const char* const kAsOrganization[] = {"autonomous_system_organization", nullptr};
    facts.asn = unsignedAt(entry, kAsNumber);
    facts.as_organization = stringAt(entry, kAsOrganization);
  }
  return facts;
}

bool isNonPublicAddress(std::string_view ip) {
  ParsedAddress address = parseAddress(ip);
  return address.ok && isNonPublic(address);
}

EnrichOptions parseEnrichOptions(const YAML::Node& node) {
  EnrichOptions options;
  if (!node || node.IsNull()) {
    return options;
  }
  if (!node.IsMap()) {
    throw ConfigError(
        "enrich: expected a map such as {geoip_city: PATH, geoip_asn: PATH}; remove the key or "
        "give it as a map");
  }
  for (const auto& entry : node) {
    const std::string key = config_table::keyText(entry.first, "enrich");
    if (key == "geoip_city") {
      options.geoip_city = config_values::scalarText(entry.second, "enrich.geoip_city");
    } else if (key == "geoip_asn") {
      options.geoip_asn = config_values::scalarText(entry.second, "enrich.geoip_asn");
    } else {
      throw ConfigError(fmt::format(
          "enrich.{}: unknown key; the enrich section takes geoip_city and geoip_asn", key));
    }
  }
  return options;
}

namespace {

struct IdCategory {
  std::uint32_t id;
  std::string_view category;
};

// webtrap's gap rules (rules/webtrap-gaps.conf), by the rule's attack tag:
// attack-injection-java, attack-injection-php, attack-rce, attack-ssrf,
// attack-disclosure and attack-bruteforce. The unit test reads the rule file
// and fails when a rule is missing here or its tag disagrees.
constexpr IdCategory kGapRules[] = {
    {77100, "java"}, {77101, "java"},       {77110, "php"},        {77111, "rce"},
    {77120, "java"}, {77130, "java"},       {77140, "rce"},        {77150, "rce"},
    {77160, "rce"},  {77170, "rce"},        {77180, "java"},       {77190, "rce"},
    {77200, "ssrf"}, {77210, "rce"},        {77211, "rce"},        {77220, "rce"},
    {77230, "disclosure"}, {77240, "rce"},  {77250, "disclosure"}, {77260, "rce"},
    {77270, "rce"},  {77280, "rce"},        {77281, "disclosure"}, {77282, "disclosure"},
    {77290, "bruteforce"},
};

// CRS 3.3.4 six-digit ids, by the rule file's number (the first three digits).
std::string_view crsCategory(std::uint32_t family) {
  switch (family) {
    case 910: return "ip-reputation";
    case 911: return "method-enforcement";
    case 912: return "dos";
    case 913: return "scanner-detection";
    case 920: return "protocol-enforcement";
    case 921: return "protocol-attack";
    case 922: return "multipart";
    case 930: return "lfi";
    case 931: return "rfi";
    case 932: return "rce";
    case 933: return "php";
    case 934: return "nodejs";
    case 941: return "xss";
    case 942: return "sqli";
    case 943: return "session-fixation";
    case 944: return "java";
    case 949:
    case 959: return "anomaly-evaluation";
    case 950:
    case 951:
    case 952:
    case 953:
    case 954: return "data-leakage";
    case 980: return "correlation";
    default: return {};
  }
}

}  // namespace

std::string_view ruleCategory(std::string_view rule_id) {
  if (rule_id.empty() || rule_id.size() > 9) {
    return {};
  }
  std::uint32_t id = 0;
  for (char c : rule_id) {
    if (c < '0' || c > '9') {
      return {};
    }
    id = id * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (id >= 77000 && id <= 77099) {
    return "honeytrap";
  }
  if (id >= 77100 && id <= 77299) {
    for (const auto& rule : kGapRules) {
      if (rule.id == id) {
        return rule.category;
      }
    }
    return "webtrap-gap";
  }
  if (rule_id.size() == 6 && id >= 900000) {
    return crsCategory(id / 1000);
  }
  return {};
}

}  // namespace webtrap::collector
