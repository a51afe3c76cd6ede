#include "common/admin_listener.h"

#include <chrono>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include "common/error.h"

namespace webtrap {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

class AdminSession : public std::enable_shared_from_this<AdminSession> {
 public:
  AdminSession(tcp::socket socket, MetricsRegistry& registry, std::function<void()> refresh)
      : stream_(std::move(socket)), registry_(registry), refresh_(std::move(refresh)) {}

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
    : acceptor_(std::move(acceptor)), registry_(registry), refresh_(std::move(refresh)) {}

void AdminListener::start() {
  doAccept();
}

void AdminListener::doAccept() {
  acceptor_.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) {
      return;
    }
    if (!ec) {
      std::make_shared<AdminSession>(std::move(socket), self->registry_, self->refresh_)->run();
    }
    self->doAccept();
  });
}

void AdminListener::close() {
  beast::error_code ignored;
  acceptor_.close(ignored);
}

std::uint16_t AdminListener::port() const {
  return acceptor_.local_endpoint().port();
}

}  // namespace webtrap
