#include "collector/dashboard_http.h"

#include <openssl/rand.h>

#include <charconv>
#include <optional>

#include <boost/url/parse.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/encoding.h"
#include "common/json_writer.h"

// The page and its assets, embedded by CMake (cmake/embed_text.cmake).
namespace webtrap::collector::dashboard_assets {
extern const char kIndexHtml[];
extern const std::size_t kIndexHtml_size;
extern const char kDashboardCss[];
extern const std::size_t kDashboardCss_size;
extern const char kDashboardJs[];
extern const std::size_t kDashboardJs_size;
extern const char kChartJs[];
extern const std::size_t kChartJs_size;
extern const char kWorldOutlineJson[];
extern const std::size_t kWorldOutlineJson_size;
}  // namespace webtrap::collector::dashboard_assets

namespace webtrap::collector {
namespace {

namespace http = boost::beast::http;
using Response = DashboardHttp::Response;

constexpr std::string_view kPrefix = "/dashboard";
constexpr std::string_view kCookieName = "webtrap_dashboard";
constexpr auto kSessionLifetime = std::chrono::hours(12);
// Sessions kept at once; the oldest go first past this, so repeated logins
// cannot grow memory without bound.
constexpr std::size_t kMaxSessions = 256;

// No inline script or style, no plugins, no framing, and requests only to
// the collector itself. Chart.js sizes its canvases through the CSSOM
// (element.style), which style-src does not restrict.
constexpr const char* kContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

Response makeResponse(const DashboardHttp::Request& request, http::status status,
                      std::string_view content_type, std::string body) {
  Response response{status, request.version()};
  response.set(http::field::server, "webtrap-collector");
  response.set(http::field::content_type, content_type);
  response.set("Content-Security-Policy", kContentSecurityPolicy);
  response.set("X-Content-Type-Options", "nosniff");
  response.set("X-Frame-Options", "DENY");
  response.set("Referrer-Policy", "no-referrer");
  response.set(http::field::cache_control, "no-store");
  response.body() = std::move(body);
  response.keep_alive(request.keep_alive());
  response.prepare_payload();
  if (request.method() == http::verb::head) {
    // The headers of the GET response without its body (RFC 9110, 9.3.2).
    const std::size_t size = response.body().size();
    response.body().clear();
    response.content_length(size);
  }
  return response;
}

Response jsonResponse(const DashboardHttp::Request& request, http::status status,
                      std::string body) {
  body += '\n';
  return makeResponse(request, status, "application/json", std::move(body));
}

Response jsonError(const DashboardHttp::Request& request, http::status status,
                   std::string_view message) {
  std::string body;
  JsonWriter json(body);
  json.beginObject();
  json.member("error", message);
  json.endObject();
  return jsonResponse(request, status, std::move(body));
}

std::optional<std::string_view> bearerToken(std::string_view header) {
  constexpr std::string_view kScheme = "Bearer ";
  if (header.size() <= kScheme.size() || !equalsIgnoreCase(header.substr(0, 6), "Bearer") ||
      header[6] != ' ') {
    return std::nullopt;
  }
  return header.substr(kScheme.size());
}

// Returns the value of the dashboard's cookie in a Cookie header.
std::optional<std::string_view> sessionCookie(std::string_view header) {
  while (!header.empty()) {
    auto end = header.find(';');
    std::string_view pair = header.substr(0, end);
    while (!pair.empty() && pair.front() == ' ') {
      pair.remove_prefix(1);
    }
    if (pair.size() > kCookieName.size() && pair.starts_with(kCookieName) &&
        pair[kCookieName.size()] == '=') {
      return pair.substr(kCookieName.size() + 1);
    }
    if (end == std::string_view::npos) {
      break;
    }
    header.remove_prefix(end + 1);
  }
  return std::nullopt;
}

std::optional<std::int64_t> parseInteger(std::string_view text) {
  std::int64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) {
    return std::nullopt;
  }
  return value;
}

struct ApiParameters {
  DashboardFilter filter;
  std::map<std::string, std::string, std::less<>> other;
};

// Decodes the parameters of a query string (percent-encoding and `+` for
// a space, as browsers send them). Returns the name of the first invalid
// parameter, if any, in `invalid`.
ApiParameters parseParameters(std::string_view query, std::string& invalid) {
  ApiParameters parameters;
  if (query.empty()) {
    return parameters;
  }
  std::string origin_form = "/?";
  origin_form += query;
  auto parsed = boost::urls::parse_origin_form(origin_form);
  if (!parsed) {
    invalid = "query";
    return parameters;
  }
  for (const auto& param : parsed->params()) {
    const std::string& key = param.key;
    const std::string& value = param.value;
    if (value.empty()) {
      continue;
    }
    if (key == "from" || key == "to") {
      // Any int64: record times may lie before 1970.
      auto number = parseInteger(value);
      if (!number) {
        invalid = key;
        return parameters;
      }
      (key == "from" ? parameters.filter.from_ms : parameters.filter.to_ms) = *number;
    } else if (key == "sensor") {
      parameters.filter.sensor = value;
    } else if (key == "oat") {
      parameters.filter.oat = value;
    } else if (key == "source") {
      parameters.filter.source = value;
    } else {
      parameters.other[key] = value;
    }
  }
  return parameters;
}

int limitParameter(const ApiParameters& parameters, int fallback) {
  auto it = parameters.other.find("limit");
  if (it == parameters.other.end()) {
    return fallback;
  }
  auto number = parseInteger(it->second);
  return number ? static_cast<int>(std::clamp<std::int64_t>(*number, 1, 10000)) : fallback;
}

std::int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Counter& loginsRejected(MetricsRegistry& registry, std::string_view reason) {
  return registry.counter("webtrap_collector_dashboard_logins_rejected_total",
                          "Dashboard logins and Bearer tokens rejected, by reason (wrong_token: "
                          "401 for a wrong token; rate_limited: 429 because the client address "
                          "sent too many wrong admin tokens on any admin route)",
                          fmt::format("reason=\"{}\"", reason));
}

std::shared_ptr<AdminTokenGuard> makeTokenGuard(std::string admin_token,
                                                LoginLimitOptions login_limits,
                                                MetricsRegistry* metrics) {
  if (admin_token.empty()) {
    throw std::invalid_argument(
        "the dashboard needs admin.token: it is never served without one");
  }
  return std::make_shared<AdminTokenGuard>(std::move(admin_token), login_limits, metrics);
}

}  // namespace

DashboardHttp::DashboardHttp(DashboardQueries& queries,
                             std::shared_ptr<AdminTokenGuard> token_guard,
                             std::size_t query_threads, std::size_t max_queued_queries,
                             MetricsRegistry* metrics)
    : queries_(queries),
      token_guard_(std::move(token_guard)),
      logins_wrong_token_(loginsRejected(metrics ? *metrics : own_metrics_, "wrong_token")),
      logins_rate_limited_(loginsRejected(metrics ? *metrics : own_metrics_, "rate_limited")),
      workers_(query_threads, max_queued_queries) {
  if (!token_guard_) {
    throw std::invalid_argument(
        "the dashboard needs admin.token: it is never served without one");
  }
}

DashboardHttp::DashboardHttp(DashboardQueries& queries, std::string admin_token,
                             std::size_t query_threads, std::size_t max_queued_queries,
                             LoginLimitOptions login_limits, MetricsRegistry* metrics)
    : DashboardHttp(queries, makeTokenGuard(std::move(admin_token), login_limits, metrics),
                    query_threads, max_queued_queries, metrics) {}

bool DashboardHttp::handles(std::string_view target) {
  return target == kPrefix || target.starts_with("/dashboard/") ||
         target.starts_with("/dashboard?");
}

Response DashboardHttp::handle(const Request& request,
                               const boost::asio::ip::address& client) {
  try {
    return route(request, client);
  } catch (const std::exception& error) {
    spdlog::error("dashboard: {} {} failed: {}", std::string(request.method_string()),
                  std::string(request.target()), error.what());
    return jsonError(request, http::status::internal_server_error,
                     "the dashboard query failed; see the collector's log");
  }
}

void DashboardHttp::handleAsync(Request request, boost::asio::ip::address client,
                                std::function<void(Response)> done) {
  const auto beast_target = request.target();
  std::string target(beast_target.data(), beast_target.size());
  if (!target.starts_with("/dashboard/api/")) {
    done(handle(request, client));
    return;
  }
  auto shared_request = std::make_shared<Request>(std::move(request));
  auto shared_done = std::make_shared<std::function<void(Response)>>(std::move(done));
  if (workers_.submit([this, shared_request, shared_done, client] {
        (*shared_done)(handle(*shared_request, client));
      })) {
    return;
  }
  {
    std::lock_guard lock(busy_log_mutex_);
    if (busy_log_.admit()) {
      spdlog::warn("dashboard: every query worker is busy and the queue is full; returned 503 "
                   "for {} ({} such responses since the last message)",
                   target, busy_log_.takeSuppressed() + 1);
    }
  }
  Response busy = jsonError(*shared_request, http::status::service_unavailable,
                            "the dashboard is busy with other queries; retry shortly");
  busy.set(http::field::retry_after, std::to_string(kBusyRetryAfterSeconds));
  (*shared_done)(std::move(busy));
}

DashboardHttp::Access DashboardHttp::authorize(const Request& request,
                                               const boost::asio::ip::address& client,
                                               LoginLimiter::Clock::duration& retry_after) {
  // A session id is 256 random bits, so a wrong cookie is no token guess
  // and is not counted. A page reloaded after a restart sends a stale one
  // with each of its queries.
  if (validSession(request)) {
    return Access::kGranted;
  }
  if (request.count(http::field::authorization) != 1) {
    return Access::kDenied;
  }
  auto token = bearerToken(request[http::field::authorization]);
  if (!token) {
    return Access::kDenied;
  }
  retry_after = token_guard_->blockedFor(client, AdminRoute::kDashboardApi);
  if (retry_after > LoginLimiter::Clock::duration::zero()) {
    return Access::kRateLimited;
  }
  if (!token_guard_->check(*token, client, AdminRoute::kDashboardApi)) {
    logins_wrong_token_.inc();
    return Access::kDenied;
  }
  return Access::kGranted;
}

Response DashboardHttp::rateLimited(const Request& request,
                                    LoginLimiter::Clock::duration retry_after) {
  logins_rate_limited_.inc();
  Response response = jsonError(request, http::status::too_many_requests,
                                AdminTokenGuard::blockedMessage(retry_after));
  response.set(http::field::retry_after,
               std::to_string(AdminTokenGuard::retryAfterSeconds(retry_after)));
  return response;
}

bool DashboardHttp::validSession(const Request& request) {
  if (request.count(http::field::cookie) == 0) {
    return false;
  }
  auto session = sessionCookie(request[http::field::cookie]);
  if (!session) {
    return false;
  }
  std::lock_guard lock(sessions_mutex_);
  auto it = sessions_.find(*session);
  if (it == sessions_.end()) {
    return false;
  }
  if (it->second < std::chrono::steady_clock::now()) {
    sessions_.erase(it);
    return false;
  }
  return true;
}

std::string DashboardHttp::newSession() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    throw std::runtime_error("OpenSSL RAND_bytes failed; cannot make a session id");
  }
  std::string id = hexEncode(std::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
  std::lock_guard lock(sessions_mutex_);
  const auto now = std::chrono::steady_clock::now();
  std::erase_if(sessions_, [&](const auto& entry) { return entry.second < now; });
  while (sessions_.size() >= kMaxSessions) {
    auto oldest = std::min_element(sessions_.begin(), sessions_.end(),
                                   [](const auto& a, const auto& b) { return a.second < b.second; });
    sessions_.erase(oldest);
  }
  sessions_.emplace(id, now + kSessionLifetime);
  return id;
}

Response DashboardHttp::route(const Request& request, const boost::asio::ip::address& client) {
  // Built from data and size: converting Beast's string_view to a
  // std::string_view goes through a temporary std::string, which would dangle.
  const auto beast_target = request.target();
  std::string_view target(beast_target.data(), beast_target.size());
  std::string_view path = target.substr(0, target.find('?'));
  std::string_view query =
      path.size() < target.size() ? target.substr(path.size() + 1) : std::string_view();

  if (path == "/dashboard/login") {
    return login(request, client);
  }
  if (path == "/dashboard/logout") {
    return logout(request);
  }
  if (request.method() != http::verb::get && request.method() != http::verb::head) {
    return jsonError(request, http::status::method_not_allowed, "use GET");
  }
  // The page shell and its assets hold no records, so they load without a
  // session and the page can show its login form.
  using namespace dashboard_assets;
  if (path == kPrefix) {
    Response response = makeResponse(request, http::status::permanent_redirect, "text/plain", "");
    response.set(http::field::location, "/dashboard/");
    return response;
  }
  if (path == "/dashboard/" || path == "/dashboard/index.html") {
    return makeResponse(request, http::status::ok, "text/html; charset=utf-8",
                        std::string(kIndexHtml, kIndexHtml_size));
  }
  if (path == "/dashboard/dashboard.css") {
    return makeResponse(request, http::status::ok, "text/css; charset=utf-8",
                        std::string(kDashboardCss, kDashboardCss_size));
  }
  if (path == "/dashboard/dashboard.js") {
    return makeResponse(request, http::status::ok, "text/javascript; charset=utf-8",
                        std::string(kDashboardJs, kDashboardJs_size));
  }
  if (path == "/dashboard/chart.min.js") {
    return makeResponse(request, http::status::ok, "text/javascript; charset=utf-8",
                        std::string(kChartJs, kChartJs_size));
  }
  if (path == "/dashboard/world-outline.json") {
    return makeResponse(request, http::status::ok, "application/json",
                        std::string(kWorldOutlineJson, kWorldOutlineJson_size));
  }
  if (path.starts_with("/dashboard/api/")) {
    LoginLimiter::Clock::duration retry_after{};
    const Access access = authorize(request, client, retry_after);
    if (access == Access::kRateLimited) {
      return rateLimited(request, retry_after);
    }
    if (access == Access::kDenied) {
      Response response = jsonError(request, http::status::unauthorized,
                                    "log in with the collector's admin.token, or send "
                                    "Authorization: Bearer <admin.token>");
      response.set(http::field::www_authenticate, "Bearer");
      return response;
    }
    return api(request, path.substr(std::string_view("/dashboard/api/").size()), query);
  }
  return jsonError(request, http::status::not_found, "not found; the dashboard is at /dashboard/");
}

Response DashboardHttp::api(const Request& request, std::string_view name,
                            std::string_view query) {
  std::string invalid;
  ApiParameters parameters = parseParameters(query, invalid);
  if (!invalid.empty()) {
    return jsonError(request, http::status::bad_request,
                     fmt::format("parameter {} is invalid; times are ms since the epoch",
                                 invalid));
  }
  const DashboardFilter& filter = parameters.filter;
  auto parameter = [&](std::string_view key) -> std::string_view {
    auto it = parameters.other.find(key);
    return it == parameters.other.end() ? std::string_view() : std::string_view(it->second);
  };
  if (name == "summary") {
    return jsonResponse(request, http::status::ok, queries_.summary(filter));
  }
  if (name == "timeline") {
    return jsonResponse(request, http::status::ok,
                        queries_.timeline(filter, limitParameter(parameters, 120), nowMs()));
  }
  if (name == "top") {
    std::string_view field = parameter("field");
    TopField top_field;
    if (field == "source") {
      top_field = TopField::kSource;
    } else if (field == "path") {
      top_field = TopField::kPath;
    } else if (field == "user_agent") {
      top_field = TopField::kUserAgent;
    } else if (field == "country") {
      top_field = TopField::kCountry;
    } else {
      return jsonError(request, http::status::bad_request,
                       "field must be source, path, user_agent or country");
    }
    return jsonResponse(request, http::status::ok,
                        queries_.top(filter, top_field, limitParameter(parameters, 10)));
  }
  if (name == "tags") {
    std::string_view kind = parameter("kind");
    TagKind tag_kind;
    if (kind == "oat") {
      tag_kind = TagKind::kOat;
    } else if (kind == "crs") {
      tag_kind = TagKind::kCrsCategory;
    } else if (kind == "bait") {
      tag_kind = TagKind::kBait;
    } else {
      return jsonError(request, http::status::bad_request, "kind must be oat, crs or bait");
    }
    return jsonResponse(request, http::status::ok,
                        queries_.tags(filter, tag_kind, limitParameter(parameters, 25)));
  }
  if (name == "geo") {
    return jsonResponse(request, http::status::ok,
                        queries_.geo(filter, limitParameter(parameters, 2000)));
  }
  if (name == "health") {
    return jsonResponse(request, http::status::ok, queries_.health(filter, nowMs()));
  }
  if (name == "feed") {
    return jsonResponse(request, http::status::ok,
                        queries_.feed(filter, limitParameter(parameters, 50)));
  }
  if (name == "event") {
    std::string_view id = parameter("id");
    if (id.empty()) {
      return jsonError(request, http::status::bad_request, "parameter id is missing");
    }
    auto document = queries_.event(id);
    if (!document) {
      return jsonError(request, http::status::not_found,
                       "no stored event has this id; retention may have removed it");
    }
    return jsonResponse(request, http::status::ok, std::move(*document));
  }
  return jsonError(request, http::status::not_found,
                   "unknown endpoint; use summary, timeline, top, tags, geo, health, feed or "
                   "event");
}

Response DashboardHttp::login(const Request& request, const boost::asio::ip::address& client) {
  if (request.method() != http::verb::post) {
    return jsonError(request, http::status::method_not_allowed, "use POST");
  }
  // A blocked client gets 429 before its token is checked, so guesses past
  // the limit learn nothing.
  if (auto retry_after = token_guard_->blockedFor(client, AdminRoute::kDashboardLogin);
      retry_after > LoginLimiter::Clock::duration::zero()) {
    return rateLimited(request, retry_after);
  }
  std::string invalid;
  ApiParameters form = parseParameters(request.body(), invalid);
  auto field = form.other.find("token");
  std::string token = field == form.other.end() ? std::string() : field->second;
  // A body without a token guesses nothing, so it is not a failed login.
  if (token.empty()) {
    return jsonError(request, http::status::bad_request,
                     "missing form field token; send the admin token as an "
                     "application/x-www-form-urlencoded body: token=<admin.token>");
  }
  if (!token_guard_->check(token, client, AdminRoute::kDashboardLogin)) {
    logins_wrong_token_.inc();
    return jsonError(request, http::status::unauthorized, "wrong admin token");
  }
  std::string session = newSession();
  Response response = makeResponse(request, http::status::no_content, "text/plain", "");
  response.set(http::field::set_cookie,
               fmt::format("{}={}; Path=/dashboard; Max-Age={}; HttpOnly; SameSite=Strict",
                           kCookieName, session,
                           std::chrono::seconds(kSessionLifetime).count()));
  return response;
}

Response DashboardHttp::logout(const Request& request) {
  if (request.method() != http::verb::post) {
    return jsonError(request, http::status::method_not_allowed, "use POST");
  }
  if (request.count(http::field::cookie) == 1) {
    if (auto session = sessionCookie(request[http::field::cookie])) {
      std::lock_guard lock(sessions_mutex_);
      if (auto it = sessions_.find(*session); it != sessions_.end()) {
        sessions_.erase(it);
      }
    }
  }
  Response response = makeResponse(request, http::status::no_content, "text/plain", "");
  response.set(http::field::set_cookie,
               fmt::format("{}=; Path=/dashboard; Max-Age=0; HttpOnly; SameSite=Strict",
                           kCookieName));
  return response;
}

}  // namespace webtrap::collector
