// The built-in dashboard's HTTP side, served on the collector's admin
// listener under /dashboard/: the page and its assets (compiled into the
// binary, Chart.js included, so no request leaves for a CDN) and read-only
// JSON endpoints under /dashboard/api/ for each panel.
//
// Protection: every endpoint but the page shell and its assets requires
// the collector's admin token, either as `Authorization: Bearer TOKEN` or as
// a session cookie that POST /dashboard/login sets after checking the token
// (HttpOnly, SameSite=Strict, Path=/dashboard). Failed logins and wrong
// Bearer tokens are limited per client address by the AdminTokenGuard that
// the whole admin listener shares. Past the limit, the client gets 429
// with Retry-After. Every response carries a
// Content-Security-Policy without inline script or style and
// X-Content-Type-Options: nosniff. The page writes record text with
// textContent only.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <boost/asio/ip/address.hpp>
#include <boost/beast/http.hpp>

#include "collector/admin_token_guard.h"
#include "collector/dashboard_queries.h"
#include "collector/dashboard_workers.h"
#include "collector/login_limiter.h"
#include "common/log_throttle.h"
#include "common/metrics.h"

namespace webtrap::collector {

class DashboardHttp {
 public:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  using Response = boost::beast::http::response<boost::beast::http::string_body>;

  // Query workers: threads beside the admin listener's I/O threads, and
  // requests that may wait for one before the next gets 503.
  static constexpr std::size_t kQueryThreads = 2;
  static constexpr std::size_t kMaxQueuedQueries = 32;
  static constexpr int kBusyRetryAfterSeconds = 1;

  // Checks tokens with `token_guard`, which the admin listener must share
  // (ServerOptions::admin_guard). The login counters go to `metrics` when
  // it is set, else to a registry of this object's own.
  DashboardHttp(DashboardQueries& queries, std::shared_ptr<AdminTokenGuard> token_guard,
                std::size_t query_threads = kQueryThreads,
                std::size_t max_queued_queries = kMaxQueuedQueries,
                MetricsRegistry* metrics = nullptr);
  // Makes a guard of its own for `admin_token`, for tests of the dashboard
  // alone. `admin_token` must not be empty: the dashboard is never served
  // open.
  DashboardHttp(DashboardQueries& queries, std::string admin_token,
                std::size_t query_threads = kQueryThreads,
                std::size_t max_queued_queries = kMaxQueuedQueries,
                LoginLimitOptions login_limits = {}, MetricsRegistry* metrics = nullptr);

  // True for targets under /dashboard, which handle() serves.
  static bool handles(std::string_view target);
  // Handles a request from `client` (the client address, which failed
  // logins are counted by) on the calling thread.
  Response handle(const Request& request, const boost::asio::ip::address& client = {});
  // Handles a request and passes the response to `done`: requests under
  // /dashboard/api/ on a query worker thread, others at once on the calling
  // thread. When every worker is busy and the queue is full, `done` gets
  // 503 with Retry-After at once.
  void handleAsync(Request request, boost::asio::ip::address client,
                   std::function<void(Response)> done);
  DashboardWorkers& workers() { return workers_; }
  const AdminTokenGuard& tokenGuard() const { return *token_guard_; }
  // Stops the query workers (see DashboardWorkers::stop()). Call it before
  // the io_context of the connections waiting for a query is destroyed,
  // because their queued tasks hold work on it.
  void stopQueries() { workers_.stop(); }

 private:
  enum class Access { kGranted, kDenied, kRateLimited };

  Response route(const Request& request, const boost::asio::ip::address& client);
  Response api(const Request& request, std::string_view path, std::string_view query);
  Response login(const Request& request, const boost::asio::ip::address& client);
  Response logout(const Request& request);
  // Checks the session cookie, then the Bearer token. A wrong Bearer token
  // counts as a failed login of `client`. Sets `retry_after` for
  // kRateLimited.
  Access authorize(const Request& request, const boost::asio::ip::address& client,
                   LoginLimiter::Clock::duration& retry_after);
  bool validSession(const Request& request);
  // Returns 429 for a client blocked by the login limit, counted.
  Response rateLimited(const Request& request, LoginLimiter::Clock::duration retry_after);
  std::string newSession();

  DashboardQueries& queries_;
  std::shared_ptr<AdminTokenGuard> token_guard_;
  std::mutex sessions_mutex_;
  // Session id to its expiry, in steady-clock time.
  std::map<std::string, std::chrono::steady_clock::time_point, std::less<>> sessions_;
  std::mutex busy_log_mutex_;
  LogThrottle busy_log_{std::chrono::seconds(60)};
  // Used when the constructor gets no registry, as in unit tests.
  MetricsRegistry own_metrics_;
  Counter& logins_wrong_token_;
  Counter& logins_rate_limited_;
  // Last, so that its threads stop before the members they use go.
  DashboardWorkers workers_;
};

}  // namespace webtrap::collector
