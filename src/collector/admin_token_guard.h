// The admin token check of every route on the admin listener that needs the
// token: /metrics, /healthz, /v1/oat/verdicts, any other target there, and
// the dashboard's login and API. They all count failures in one
// LoginLimiter, so a client blocked on one route is blocked on all of them.
// A blocked client gets 429 for each request that sends a token, even the
// right one, so guesses past the limit learn nothing. Clients are
// distinguished by address (see TrustedProxies for clients behind a proxy),
// so a scraper with the right token is blocked only when it shares its
// client key with the client that failed.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <boost/asio/ip/address.hpp>

#include "collector/login_limiter.h"
#include "common/log_throttle.h"
#include "common/metrics.h"

namespace webtrap::collector {

// The route of a token check, the `route` label of
// webtrap_collector_admin_token_rejected_total.
enum class AdminRoute { kMetrics, kHealthz, kOatVerdicts, kDashboardLogin, kDashboardApi, kOther };
inline constexpr std::size_t kAdminRouteCount = 6;

// Returns the route label value: "/metrics", "/dashboard/api" or "other".
std::string_view adminRouteLabel(AdminRoute route);

class AdminTokenGuard {
 public:
  using Clock = LoginLimiter::Clock;

  // Throws std::invalid_argument when `token` is empty. The counters go to
  // `metrics`, or to a registry of the guard's own when it is null.
  AdminTokenGuard(std::string token, LoginLimitOptions limits,
                  MetricsRegistry* metrics = nullptr);

  // Returns how long `client` must wait before it may send a token again,
  // or zero. A nonzero result counts as a rate_limited rejection on `route`
  // and is logged at most once a minute, with a count.
  Clock::duration blockedFor(const boost::asio::ip::address& client, AdminRoute route);
  // Compares `given` with the admin token in time that depends only on the
  // lengths. A wrong token counts as a failure of `client` and as a
  // wrong_token rejection on `route`, and is logged at most once a minute.
  bool check(std::string_view given, const boost::asio::ip::address& client, AdminRoute route);

  const LoginLimitOptions& limits() const { return limiter_.options(); }

  // Returns `retry_after` in whole seconds, rounded up, so a client that
  // waits that long is let in.
  static std::int64_t retryAfterSeconds(Clock::duration retry_after);
  // Returns the error text of a 429 for a client blocked for `retry_after`.
  static std::string blockedMessage(Clock::duration retry_after);

 private:
  const std::string token_;
  LoginLimiter limiter_;
  // Used when the constructor gets no registry, as in unit tests.
  std::unique_ptr<MetricsRegistry> own_metrics_;
  // By route, registered up front so that /metrics shows them as 0.
  std::array<Counter*, kAdminRouteCount> wrong_token_{};
  std::array<Counter*, kAdminRouteCount> rate_limited_{};
  Counter* clients_evicted_ = nullptr;
  // Anyone who reaches the listener can send tokens as fast as it responds,
  // so failures and 429s are each logged once a minute with a count.
  std::mutex log_mutex_;
  LogThrottle failure_log_{std::chrono::seconds(60)};
  LogThrottle blocked_log_{std::chrono::seconds(60)};
  LogThrottle evicted_log_{std::chrono::seconds(60)};
};

}  // namespace webtrap::collector
