// The reverse proxies whose X-Forwarded-For header the admin listener
// believes (admin.trusted_proxies). Behind a proxy every client connects
// from the proxy's address, so the login limit would count them all as one
// client. Each proxy appends the address it received the request from, so
// only the entries that listed proxies appended can be believed: the client
// is the right-most address that is not itself a listed proxy.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

namespace webtrap::collector {

class TrustedProxies {
 public:
  // Parses `entries`, each an IPv4 or IPv6 address or a network in CIDR
  // form (10.0.0.0/8, fd00::/8). Throws ConfigError naming `key`, the entry
  // and the fix.
  static TrustedProxies parse(const std::vector<std::string>& entries, const std::string& key);

  bool empty() const { return networks_.empty(); }
  // True when `address` lies in a listed network. An IPv4-mapped IPv6
  // address matches as its IPv4 address.
  bool contains(const boost::asio::ip::address& address) const;
  // Returns the client address of a request received from `peer` with the
  // X-Forwarded-For values `forwarded_for` (one per header line, in order).
  // That is `peer` itself unless `peer` is listed and the header is
  // present. A header entry that must be read and is not an address (with
  // an optional port) also gives `peer`. When every entry is a listed
  // proxy, the left-most entry is the client.
  boost::asio::ip::address clientAddress(
      const boost::asio::ip::address& peer,
      const std::vector<std::string_view>& forwarded_for) const;
  // The networks in CIDR form, comma-separated, for the start log.
  std::string describe() const;

 private:
  struct Network {
    bool v4 = false;
    // The address bytes: the first 4 for IPv4, all 16 for IPv6.
    std::array<unsigned char, 16> bytes{};
    unsigned prefix_length = 0;
  };

  std::vector<Network> networks_;
};

}  // namespace webtrap::collector
