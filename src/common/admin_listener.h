// The admin listener: GET /metrics (Prometheus text format 0.0.4) and
// GET /healthz over plain HTTP, one request per connection. The probe and
// `webtrap ship` serve their metrics with it. It keeps at most
// AdminListener::kMaxSessions connections open and closes further ones at
// once, so that idle clients cannot use up the process's file descriptors.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/log_throttle.h"
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
  // Maximum connections served at once.
  static constexpr std::uint32_t kMaxSessions = 16;

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
  void retryAcceptLater(const boost::system::error_code& error);
  void noteRejectedConnection();

  boost::asio::ip::tcp::acceptor acceptor_;
  MetricsRegistry& registry_;
  std::function<void()> refresh_;
  // Shared with the sessions, which count themselves out when they end.
  std::shared_ptr<std::atomic<std::uint32_t>> open_sessions_;
  // Only the accept loop's handlers, which run one after another, touch
  // the fields below.
  boost::asio::steady_timer retry_timer_;
  std::chrono::milliseconds retry_delay_{0};
  // Both warnings share one limit, and each names the other's count.
  LogThrottle log_throttle_;
  std::uint64_t failures_since_log_ = 0;
  std::uint64_t rejections_since_log_ = 0;
};

}  // namespace webtrap
