// The admin listener: GET /metrics (Prometheus text format 0.0.4) and
// GET /healthz over plain HTTP, one request per connection. The probe and
// `webtrap ship` serve their metrics with it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "common/metrics.h"

namespace webtrap {

// Opens, binds and listens on ADDRESS:PORT (port 0 picks a free port). An
// IPv6 address listens on IPv6 only. Throws ConfigError naming `what` (the
// key or flag) and the system error.
boost::asio::ip::tcp::acceptor openAcceptor(boost::asio::io_context& io,
                                            const std::string& address, std::uint16_t port,
                                            const std::string& what);

class AdminListener : public std::enable_shared_from_this<AdminListener> {
 public:
  // `refresh` runs before each /metrics response, for metrics that are
  // copied into `registry` from elsewhere. It may be empty.
  AdminListener(boost::asio::ip::tcp::acceptor acceptor, MetricsRegistry& registry,
                std::function<void()> refresh = {});

  // Accepts connections until close(), on the acceptor's io_context.
  void start();
  void close();

  std::uint16_t port() const;

 private:
  void doAccept();

  boost::asio::ip::tcp::acceptor acceptor_;
  MetricsRegistry& registry_;
  std::function<void()> refresh_;
};

}  // namespace webtrap
