#include "common/admin_listener.h"

#include <algorithm>
#include <chrono>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/error.h"

namespace webtrap {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// Wait before retrying a failed accept (EMFILE and the like), doubled after
// each further failure up to the maximum. Retrying at once would spin,
// because the pending connection stays in the backlog.
constexpr auto kAcceptRetryInitial = std::chrono::milliseconds(100);
constexpr auto kAcceptRetryMax = std::chrono::milliseconds(2000);
// At most one log line in this interval for failed accepts and for
// connections closed at the session limit.
constexpr auto kLogInterval = std::chrono::seconds(10);

class AdminSession : public std::enable_shared_from_this<AdminSession> {
 public:
  AdminSession(tcp::socket socket, MetricsRegistry& registry, std::function<void()> refresh,
               std::shared_ptr<std::atomic<std::uint32_t>> open_sessions)
      : stream_(std::move(socket)),
        registry_(registry),
        refresh_(std::move(refresh)),
        open_sessions_(std::move(open_sessions)) {}

  ~AdminSession() { open_sessions_->fetch_sub(1); }

  void run() {
    stream_.expires_after(std::chrono::seconds(10));
    parser_.header_limit(8192);
    parser_.body_limit(0);
    http::async_read(stream_, buffer_, parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       self->onRead(ec);
                     });
  }

 private:
  void onRead(beast::error_code ec) {
    if (ec) {
      return;
    }
    const auto& request = parser_.get();
    response_.version(11);
    response_.set(http::field::server, "webtrap-admin");
    response_.keep_alive(false);
    if (request.target() == "/metrics") {
      if (refresh_) {
        refresh_();
      }
      response_.result(http::status::ok);
      response_.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      response_.body() = registry_.render();
    } else if (request.target() == "/healthz") {
      response_.result(http::status::ok);
      response_.set(http::field::content_type, "text/plain");
      response_.body() = "ok\n";
    } else {
      response_.result(http::status::not_found);
      response_.set(http::field::content_type, "text/plain");
      response_.body() = "not found: use /metrics or /healthz\n";
    }
    response_.prepare_payload();
    http::async_write(stream_, response_,
                      [self = shared_from_this()](beast::error_code, std::size_t) {
                        beast::error_code ignored;
                        self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
                      });
  }

  beast::tcp_stream stream_;
  MetricsRegistry& registry_;
  std::function<void()> refresh_;
  beast::flat_buffer buffer_;
  http::request_parser<http::empty_body> parser_;
  http::response<http::string_body> response_;
  std::shared_ptr<std::atomic<std::uint32_t>> open_sessions_;
};

}  // namespace

tcp::acceptor openAcceptor(asio::io_context& io, const std::string& address, std::uint16_t port,
                           const std::string& what) {
  boost::system::error_code ec;
  tcp::endpoint endpoint(asio::ip::make_address(address), port);
  tcp::acceptor acceptor(io);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec && endpoint.address().is_v6()) {
    // An IPv6 listener serves IPv6 only, so that [::]:80 and 0.0.0.0:80 can
    // both be configured.
    acceptor.set_option(asio::ip::v6_only(true), ec);
  }
  if (!ec) {
    acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    acceptor.bind(endpoint, ec);
  }
  if (!ec) {
    acceptor.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    throw ConfigError(fmt::format("{}: cannot listen on {}:{}: {}; choose a free port or an "
                                  "address of this host",
                                  what, address, port, ec.message()));
  }
  return acceptor;
}

AdminListener::AdminListener(tcp::acceptor acceptor, MetricsRegistry& registry,
                             std::function<void()> refresh)
    : acceptor_(std::move(acceptor)),
      registry_(registry),
      refresh_(std::move(refresh)),
      open_sessions_(std::make_shared<std::atomic<std::uint32_t>>(0)),
      retry_timer_(acceptor_.get_executor()),
      log_throttle_(kLogInterval) {
  const boost::asio::ip::address address = acceptor_.local_endpoint().address();
  if (!address.is_loopback()) {
    spdlog::warn("admin: listening on non-loopback address={}; metrics are readable from the "
                 "network",
                 address.to_string());
  }
}

void AdminListener::start() {
  doAccept();
}

void AdminListener::doAccept() {
  acceptor_.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !self->acceptor_.is_open()) {
      return;
    }
    if (ec) {
      self->retryAcceptLater(ec);
      return;
    }
    self->retry_delay_ = std::chrono::milliseconds(0);
    if (self->open_sessions_->load() >= kMaxSessions) {
      beast::error_code ignored;
      socket.close(ignored);
      self->noteRejectedConnection();
    } else {
      self->open_sessions_->fetch_add(1);
      std::make_shared<AdminSession>(std::move(socket), self->registry_, self->refresh_,
                                     self->open_sessions_)
          ->run();
    }
    self->doAccept();
  });
}

void AdminListener::retryAcceptLater(const boost::system::error_code& error) {
  retry_delay_ = retry_delay_.count() == 0 ? kAcceptRetryInitial
                                           : std::min(retry_delay_ * 2, kAcceptRetryMax);
  ++failures_since_log_;
  if (log_throttle_.admit()) {
    spdlog::warn("admin: accept on port {} failed: {} ({} failures and {} connections closed at "
                 "the limit of {} since the last message); retrying in {} ms. EMFILE means no "
                 "file descriptor is free: raise RLIMIT_NOFILE",
                 port(), error.message(), failures_since_log_, rejections_since_log_,
                 kMaxSessions, retry_delay_.count());
    failures_since_log_ = 0;
    rejections_since_log_ = 0;
  }
  retry_timer_.expires_after(retry_delay_);
  retry_timer_.async_wait([self = shared_from_this()](beast::error_code timer_error) {
    if (!timer_error) {
      self->doAccept();
    }
  });
}

void AdminListener::noteRejectedConnection() {
  ++rejections_since_log_;
  if (log_throttle_.admit()) {
    spdlog::warn("admin: closed a connection on port {} at once because {} connections are open "
                 "({} such connections and {} failed accepts since the last message)",
                 port(), kMaxSessions, rejections_since_log_, failures_since_log_);
    failures_since_log_ = 0;
    rejections_since_log_ = 0;
  }
}

void AdminListener::close() {
  beast::error_code ignored;
  acceptor_.close(ignored);
  retry_timer_.cancel();
}

std::uint16_t AdminListener::port() const {
  return acceptor_.local_endpoint().port();
}

}  // namespace webtrap
