// The built-in dashboard's HTTP side, served on the collector's admin
// listener under /dashboard/: the page and its assets (compiled into the
// binary, Chart.js included, so no request leaves for a CDN) and read-only
// JSON endpoints under /dashboard/api/ for each panel.
//
// Protection: every endpoint but the page shell and its assets requires
// the collector's admin token, either as `Authorization: Bearer TOKEN` or as
// a session cookie that POST /dashboard/login sets after checking the token
// (HttpOnly, SameSite=Strict, Path=/dashboard). Every response carries a
// Content-Security-Policy without inline script or style and
// X-Content-Type-Options: nosniff. The page writes record text with
// textContent only.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <boost/beast/http.hpp>

#include "collector/dashboard_queries.h"

namespace webtrap::collector {

class DashboardHttp {
 public:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  using Response = boost::beast::http::response<boost::beast::http::string_body>;

  // `admin_token` must not be empty: the dashboard is never served open.
  DashboardHttp(DashboardQueries& queries, std::string admin_token);

  // True for targets under /dashboard, which handle() answers.
  static bool handles(std::string_view target);
  // NOTE: runs on the admin listener's I/O thread, which the ingest
  // listener shares, so a slow query delays ingest connections on that
  // thread for as long as it runs.
  Response handle(const Request& request);

 private:
  Response route(const Request& request);
  Response api(const Request& request, std::string_view path, std::string_view query);
  Response login(const Request& request);
  Response logout(const Request& request);
  bool authorized(const Request& request);
  std::string newSession();

  DashboardQueries& queries_;
  std::string admin_token_;
  std::mutex sessions_mutex_;
  // Session id to its expiry, in steady-clock time.
  std::map<std::string, std::chrono::steady_clock::time_point, std::less<>> sessions_;
};

}  // namespace webtrap::collector
