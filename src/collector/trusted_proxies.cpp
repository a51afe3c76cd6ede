#include "collector/trusted_proxies.h"

#include <algorithm>
#include <charconv>
#include <optional>

#include <boost/asio/error.hpp>
#include <fmt/format.h>

#include "common/error.h"

namespace webtrap::collector {
namespace {

namespace ip = boost::asio::ip;

constexpr const char* kEntryExamples =
    "use an address such as 10.0.0.5 or ::1, or a network such as 10.0.0.0/8 or fd00::/8";

// Returns `text` with control bytes written as \xNN, for error messages.
std::string printable(std::string_view text) {
  std::string out;
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      out += fmt::format("\\x{:02x}", byte);
    } else {
      out += c;
    }
  }
  return out;
}

// Returns `address` as IPv4 when it is an IPv4-mapped IPv6 address.
ip::address unmapped(const ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return ip::make_address_v4(ip::v4_mapped, address.to_v6());
  }
  return address;
}

// Parses `text` as an IPv4 or IPv6 address, or sets `ec`. Boost reads the
// text as a C string, so a NUL byte would cut it short: text with one is
// invalid.
ip::address parseAddress(std::string_view text, boost::system::error_code& ec) {
  if (text.find('\0') != std::string_view::npos) {
    ec = boost::asio::error::invalid_argument;
    return {};
  }
  return ip::make_address(std::string(text), ec);
}

// True when the first `prefix_length` bits of `a` and `b` are equal.
bool samePrefix(const unsigned char* a, const unsigned char* b, unsigned prefix_length) {
  const unsigned whole_bytes = prefix_length / 8;
  if (!std::equal(a, a + whole_bytes, b)) {
    return false;
  }
  const unsigned rest_bits = prefix_length % 8;
  if (rest_bits == 0) {
    return true;
  }
  const auto mask = static_cast<unsigned char>(0xFF << (8 - rest_bits));
  return (a[whole_bytes] & mask) == (b[whole_bytes] & mask);
}

// Parses one X-Forwarded-For entry: an IPv4 address with an optional
// ":PORT", an IPv6 address, or an IPv6 address in brackets with an optional
// ":PORT". Returns nullopt for anything else, such as "unknown" or an
// obfuscated RFC 7239 identifier.
std::optional<ip::address> parseForwardedAddress(std::string_view entry) {
  // The longest IPv6 text with brackets and a port, and without a zone
  // index, has 53 characters.
  constexpr std::size_t kMaxEntryLength = 64;
  if (entry.empty() || entry.size() > kMaxEntryLength) {
    return std::nullopt;
  }
  auto validPort = [](std::string_view port) {
    return !port.empty() && port.size() <= 5 &&
           std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  boost::system::error_code ec;
  if (entry.front() == '[') {
    const auto close = entry.find(']');
    if (close == std::string_view::npos) {
      return std::nullopt;
    }
    std::string_view after = entry.substr(close + 1);
    if (!after.empty() && (after.front() != ':' || !validPort(after.substr(1)))) {
      return std::nullopt;
    }
    ip::address v6 = parseAddress(entry.substr(1, close - 1), ec);
    return ec || !v6.is_v6() ? std::nullopt : std::optional<ip::address>(v6);
  }
  const auto colon = entry.find(':');
  if (colon != std::string_view::npos && entry.find(':', colon + 1) == std::string_view::npos) {
    if (!validPort(entry.substr(colon + 1))) {
      return std::nullopt;
    }
    ip::address v4 = parseAddress(entry.substr(0, colon), ec);
    return ec || !v4.is_v4() ? std::nullopt : std::optional<ip::address>(v4);
  }
  ip::address address = parseAddress(entry, ec);
  return ec ? std::nullopt : std::optional<ip::address>(address);
}

// Returns the network address of an IPv4 (`v4`, the first 4 bytes) or
// IPv6 network as text.
std::string addressText(bool v4, const std::array<unsigned char, 16>& bytes) {
  if (v4) {
    return ip::address_v4(ip::address_v4::bytes_type{bytes[0], bytes[1], bytes[2], bytes[3]})
        .to_string();
  }
  return ip::address_v6(bytes).to_string();
}

std::string_view trimmed(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  return text;
}

}  // namespace

TrustedProxies TrustedProxies::parse(const std::vector<std::string>& entries,
                                     const std::string& key) {
  TrustedProxies proxies;
  for (const std::string& entry : entries) {
    const auto slash = entry.find('/');
    boost::system::error_code ec;
    const ip::address address = parseAddress(std::string_view(entry).substr(0, slash), ec);
    if (ec) {
      throw ConfigError(fmt::format("{}: invalid entry \"{}\": not an IPv4 or IPv6 address; {}",
                                    key, printable(entry), kEntryExamples));
    }
    if (const auto percent = entry.find('%'); percent < slash) {
      // Peers are matched by their bytes, so a zone index would be dropped
      // without a word and the entry would match that address on every
      // interface.
      throw ConfigError(fmt::format("{}: invalid entry \"{}\": a zone index ({}) is not "
                                    "supported; write the address without it, as {}",
                                    key, printable(entry),
                                    printable(entry.substr(percent, slash - percent)),
                                    printable(entry.substr(0, percent) +
                                              (slash == std::string::npos
                                                   ? std::string()
                                                   : entry.substr(slash)))));
    }
    if (address.is_v6() && address.to_v6().is_v4_mapped()) {
      throw ConfigError(fmt::format("{}: invalid entry \"{}\": an IPv4-mapped IPv6 address; "
                                    "write the IPv4 address, which also matches mapped peers",
                                    key, printable(entry)));
    }
    Network network;
    network.v4 = address.is_v4();
    const unsigned max_length = network.v4 ? 32 : 128;
    if (network.v4) {
      const auto bytes = address.to_v4().to_bytes();
      std::copy(bytes.begin(), bytes.end(), network.bytes.begin());
    } else {
      network.bytes = address.to_v6().to_bytes();
    }
    network.prefix_length = max_length;
    if (slash != std::string::npos) {
      const std::string_view length_text = std::string_view(entry).substr(slash + 1);
      unsigned length = 0;
      auto [end, error] =
          std::from_chars(length_text.data(), length_text.data() + length_text.size(), length);
      if (error != std::errc() || end != length_text.data() + length_text.size() ||
          length > max_length) {
        throw ConfigError(fmt::format("{}: invalid entry \"{}\": the prefix length must be a "
                                      "number from 1 to {}; {}",
                                      key, printable(entry), max_length, kEntryExamples));
      }
      if (length == 0) {
        throw ConfigError(fmt::format(
            "{}: invalid entry \"{}\": a prefix length of 0 trusts every address, so any "
            "client could choose its address in X-Forwarded-For; list only the addresses of "
            "your reverse proxies",
            key, printable(entry)));
      }
      Network masked = network;
      masked.prefix_length = length;
      const unsigned size = network.v4 ? 4 : 16;
      for (unsigned bit = length; bit < size * 8; ++bit) {
        masked.bytes[bit / 8] &= static_cast<unsigned char>(~(0x80 >> (bit % 8)));
      }
      if (masked.bytes != network.bytes) {
        throw ConfigError(fmt::format("{}: invalid entry \"{}\": bits are set after the /{} "
                                      "prefix; write the network as {}/{}",
                                      key, printable(entry), length,
                                      addressText(masked.v4, masked.bytes), length));
      }
      network = masked;
    }
    proxies.networks_.push_back(network);
  }
  return proxies;
}

bool TrustedProxies::contains(const ip::address& address) const {
  const ip::address plain = unmapped(address);
  std::array<unsigned char, 16> bytes{};
  if (plain.is_v4()) {
    const auto v4 = plain.to_v4().to_bytes();
    std::copy(v4.begin(), v4.end(), bytes.begin());
  } else {
    bytes = plain.to_v6().to_bytes();
  }
  return std::any_of(networks_.begin(), networks_.end(), [&](const Network& network) {
    return network.v4 == plain.is_v4() &&
           samePrefix(network.bytes.data(), bytes.data(), network.prefix_length);
  });
}

ip::address TrustedProxies::clientAddress(
    const ip::address& peer, const std::vector<std::string_view>& forwarded_for) const {
  if (networks_.empty() || !contains(peer)) {
    return peer;
  }
  // Header lines of one field form one comma-separated list (RFC 9110,
  // 5.3). Empty list elements are ignored, as RFC 9110, 5.6.1 requires.
  // The request head limit of the admin listener bounds their number.
  std::vector<std::string_view> entries;
  for (std::string_view value : forwarded_for) {
    while (true) {
      const auto comma = value.find(',');
      std::string_view entry = trimmed(value.substr(0, comma));
      if (!entry.empty()) {
        entries.push_back(entry);
      }
      if (comma == std::string_view::npos) {
        break;
      }
      value.remove_prefix(comma + 1);
    }
  }
  ip::address client = peer;
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    std::optional<ip::address> address = parseForwardedAddress(*it);
    if (!address) {
      // Every entry right of this one is a listed proxy, so no client
      // address that a listed proxy wrote is left: count the peer.
      return peer;
    }
    client = unmapped(*address);
    if (!contains(client)) {
      return client;
    }
  }
  return client;
}

std::string TrustedProxies::describe() const {
  std::string text;
  for (const Network& network : networks_) {
    if (!text.empty()) {
      text += ", ";
    }
    text += fmt::format("{}/{}", addressText(network.v4, network.bytes), network.prefix_length);
  }
  return text;
}

}  // namespace webtrap::collector
