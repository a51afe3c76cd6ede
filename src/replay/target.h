// The one server that replay sends requests to, restricted to loopback.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

namespace webtrap::replay {

struct Target {
  bool tls = false;  // https
  std::string host;  // as written in the URL, without IPv6 brackets
  std::uint16_t port = 0;
  std::vector<boost::asio::ip::tcp::endpoint> endpoints;  // every one is a loopback address
};

// Parses `scheme://host[:port][/]` (http or https, default ports 80 and 443)
// and resolves the host. Throws ConfigError when the URL is invalid, the host
// does not resolve, or any address it resolves to is outside 127.0.0.0/8 and
// ::1, because replay sends attack traffic and must never leave the machine.
Target parseTarget(std::string_view url);

// True for 127.0.0.0/8, ::1 and IPv4-mapped 127.0.0.0/8.
bool isLoopback(const boost::asio::ip::address& address);

}  // namespace webtrap::replay
