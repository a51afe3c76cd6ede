#include "replay/target.h"

#include <charconv>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>

#include "common/error.h"

namespace webtrap::replay {
namespace {

[[noreturn]] void throwTargetError(std::string_view url, std::string_view problem) {
  throw ConfigError(
      fmt::format("invalid --target '{}': {}; give http://127.0.0.1:PORT or another "
                  "URL whose host is a loopback address",
                  url, problem));
}

}  // namespace

bool isLoopback(const boost::asio::ip::address& address) {
  if (address.is_v4()) {
    return address.to_v4().is_loopback();
  }
  const auto v6 = address.to_v6();
  if (v6.is_v4_mapped()) {
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).is_loopback();
  }
  return v6.is_loopback();
}

Target parseTarget(std::string_view url) {
  Target target;
  const std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) {
    throwTargetError(url, "no scheme");
  }
  const std::string_view scheme = url.substr(0, scheme_end);
  if (scheme == "http") {
    target.tls = false;
    target.port = 80;
  } else if (scheme == "https") {
    target.tls = true;
    target.port = 443;
  } else {
    throwTargetError(url, fmt::format("scheme '{}' is not http or https", scheme));
  }

  std::string_view authority = url.substr(scheme_end + 3);
  if (const std::size_t slash = authority.find('/'); slash != std::string_view::npos) {
    if (authority.substr(slash) != "/") {
      throwTargetError(url, "a path is not allowed, because each test names its own URI");
    }
    authority = authority.substr(0, slash);
  }

  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      throwTargetError(url, "unclosed '[' in the host");
    }
    target.host = std::string(authority.substr(1, close - 1));
    const std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        throwTargetError(url, "unexpected text after ']'");
      }
      port_text = rest.substr(1);
    }
  } else {
    const std::size_t colon = authority.rfind(':');
    target.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
    }
  }
  if (target.host.empty()) {
    throwTargetError(url, "the host is empty");
  }
  if (!port_text.empty()) {
    unsigned value = 0;
    const auto [end, ec] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || value == 0 ||
        value > 65535) {
      throwTargetError(url, fmt::format("port '{}' is not a number from 1 to 65535", port_text));
    }
    target.port = static_cast<std::uint16_t>(value);
  }

  boost::asio::io_context io;
  boost::asio::ip::tcp::resolver resolver(io);
  boost::system::error_code ec;
  const auto results = resolver.resolve(target.host, std::to_string(target.port),
                                        boost::asio::ip::tcp::resolver::numeric_service, ec);
  if (ec || results.empty()) {
    throwTargetError(url, fmt::format("host '{}' does not resolve ({})", target.host,
                                      ec ? ec.message() : "no addresses"));
  }
  for (const auto& entry : results) {
    const auto address = entry.endpoint().address();
    if (!isLoopback(address)) {
      throwTargetError(url, fmt::format("host '{}' resolves to {}, which is not a loopback address",
                                        target.host, address.to_string()));
    }
    target.endpoints.push_back(entry.endpoint());
  }
  return target;
}

}  // namespace webtrap::replay
