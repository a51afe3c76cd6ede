#include "collector/admin_token_guard.h"

#include <openssl/crypto.h>

#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace webtrap::collector {
namespace {

constexpr AdminRoute kAllRoutes[] = {AdminRoute::kMetrics,        AdminRoute::kHealthz,
                                     AdminRoute::kOatVerdicts,    AdminRoute::kDashboardLogin,
                                     AdminRoute::kDashboardApi,   AdminRoute::kOther};
static_assert(std::size(kAllRoutes) == kAdminRouteCount);

Counter& rejectedCounter(MetricsRegistry& registry, AdminRoute route, std::string_view reason) {
  return registry.counter(
      "webtrap_collector_admin_token_rejected_total",
      "Requests on the admin listener rejected for their admin token, by route and reason "
      "(wrong_token: 401 for a wrong token; rate_limited: 429 because the client address sent "
      "too many wrong tokens)",
      fmt::format("route=\"{}\",reason=\"{}\"", adminRouteLabel(route), reason));
}

}  // namespace

std::string_view adminRouteLabel(AdminRoute route) {
  switch (route) {
    case AdminRoute::kMetrics:
      return "/metrics";
    case AdminRoute::kHealthz:
      return "/healthz";
    case AdminRoute::kOatVerdicts:
      return "/v1/oat/verdicts";
    case AdminRoute::kDashboardLogin:
      return "/dashboard/login";
    case AdminRoute::kDashboardApi:
      return "/dashboard/api";
    case AdminRoute::kOther:
      break;
  }
  return "other";
}

AdminTokenGuard::AdminTokenGuard(std::string token, LoginLimitOptions limits,
                                 MetricsRegistry* metrics)
    : token_(std::move(token)), limiter_(limits) {
  if (token_.empty()) {
    throw std::invalid_argument("AdminTokenGuard needs a token; an empty admin.token leaves "
                                "the admin listener open and needs no guard");
  }
  if (metrics == nullptr) {
    own_metrics_ = std::make_unique<MetricsRegistry>();
    metrics = own_metrics_.get();
  }
  for (AdminRoute route : kAllRoutes) {
    const auto index = static_cast<std::size_t>(route);
    wrong_token_[index] = &rejectedCounter(*metrics, route, "wrong_token");
    rate_limited_[index] = &rejectedCounter(*metrics, route, "rate_limited");
  }
  clients_evicted_ = &metrics->counter(
      "webtrap_collector_admin_token_clients_evicted_total",
      "Clients whose wrong admin tokens still counted, forgotten because "
      "dashboard.login_max_clients other clients sent wrong tokens since");
}

AdminTokenGuard::Clock::duration AdminTokenGuard::blockedFor(
    const boost::asio::ip::address& client, AdminRoute route) {
  const std::string client_key = LoginLimiter::clientKey(client);
  const Clock::duration retry_after = limiter_.retryAfter(client_key, Clock::now());
  if (retry_after <= Clock::duration::zero()) {
    return Clock::duration::zero();
  }
  rate_limited_[static_cast<std::size_t>(route)]->inc();
  std::lock_guard lock(log_mutex_);
  if (blocked_log_.admit()) {
    spdlog::warn(
        "admin listener: rejected a request from {} on {} with 429, because it sent {} "
        "wrong admin tokens within {} s (rejections since the last message: {})",
        client_key, adminRouteLabel(route), limiter_.options().max_failures,
        limiter_.options().window.count(), blocked_log_.takeSuppressed() + 1);
  }
  return retry_after;
}

bool AdminTokenGuard::check(std::string_view given, const boost::asio::ip::address& client,
                            AdminRoute route) {
  if (given.size() == token_.size() &&
      CRYPTO_memcmp(given.data(), token_.data(), token_.size()) == 0) {
    return true;
  }
  const std::string client_key = LoginLimiter::clientKey(client);
  const bool evicted_counting = limiter_.recordFailure(client_key, Clock::now());
  wrong_token_[static_cast<std::size_t>(route)]->inc();
  std::lock_guard lock(log_mutex_);
  if (evicted_counting) {
    clients_evicted_->inc();
    if (evicted_log_.admit()) {
      spdlog::warn(
          "admin listener: forgot a client whose wrong admin tokens still counted, "
          "because {} clients sent wrong tokens; raise dashboard.login_max_clients if "
          "this repeats (clients forgotten since the last message: {})",
          limiter_.options().max_clients, evicted_log_.takeSuppressed() + 1);
    }
  }
  if (failure_log_.admit()) {
    spdlog::warn(
        "admin listener: wrong admin token from {} on {} (failures since the last "
        "message: {})",
        client_key, adminRouteLabel(route), failure_log_.takeSuppressed() + 1);
  }
  return false;
}

std::int64_t AdminTokenGuard::retryAfterSeconds(Clock::duration retry_after) {
  return std::chrono::ceil<std::chrono::seconds>(retry_after).count();
}

std::string AdminTokenGuard::blockedMessage(Clock::duration retry_after) {
  return fmt::format("too many wrong admin tokens from this address; retry after {} s",
                     retryAfterSeconds(retry_after));
}

}  // namespace webtrap::collector
