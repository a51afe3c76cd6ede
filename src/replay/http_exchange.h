// One request over a fresh TCP (or TLS) connection to the replay target.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "replay/target.h"

namespace webtrap::replay {

struct ExchangeResult {
  bool connected = false;
  std::string local_ip;  // the client side of the connection, as the server records it
  std::uint16_t local_port = 0;
  std::optional<int> status;  // the final (non-1xx) response status
  std::string error;          // empty when a response header arrived; otherwise what failed
};

// Connects to `target`, writes `request` byte for byte, and reads the response
// header with Boost.Beast's parser. `timeout` bounds the connect, and then the
// write and read together. The connection is closed without reading the body.
// TLS targets are not verified, because parseTarget only accepts loopback.
ExchangeResult exchange(const Target& target, std::string_view request,
                        std::chrono::milliseconds timeout);

}  // namespace webtrap::replay
