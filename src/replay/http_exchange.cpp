#include "replay/http_exchange.h"

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

namespace webtrap::replay {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

// A larger response header block is an error, because test targets send
// small headers.
constexpr std::uint32_t kHeaderLimit = 64 * 1024;
// 100 Continue and other interim responses before the final one.
constexpr int kMaxInterimResponses = 5;

std::string describe(std::string_view step, const error_code& ec) {
  if (ec == beast::error::timeout) {
    return fmt::format("{} timed out", step);
  }
  return fmt::format("{} failed: {}", step, ec.message());
}

template <class Stream>
asio::awaitable<void> writeAndRead(Stream& stream, std::string_view request,
                                   std::chrono::milliseconds timeout, ExchangeResult& result) {
  error_code ec;
  beast::get_lowest_layer(stream).expires_after(timeout);
  co_await asio::async_write(stream, asio::buffer(request.data(), request.size()),
                             asio::redirect_error(asio::use_awaitable, ec));
  // A server may respond and close before it has read a long body, so the
  // response is read even after a failed write.
  const error_code write_error = ec;

  beast::flat_buffer buffer;
  for (int interim = 0; interim <= kMaxInterimResponses; ++interim) {
    http::response_parser<http::empty_body> parser;
    parser.header_limit(kHeaderLimit);
    ec = {};
    co_await http::async_read_header(stream, buffer, parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      result.error = write_error ? describe("writing the request", write_error)
                                 : describe("reading the response", ec);
      co_return;
    }
    const int status = parser.get().result_int();
    if (status >= 200 || status < 100) {
      result.status = status;
      co_return;
    }
  }
  result.error = "reading the response failed: too many interim (1xx) responses";
}

template <class Stream>
asio::awaitable<void> connectAndExchange(Stream& stream, const Target& target,
                                         std::string_view request,
                                         std::chrono::milliseconds timeout,
                                         ExchangeResult& result) {
  auto& tcp = beast::get_lowest_layer(stream);
  error_code ec;
  tcp.expires_after(timeout);
  co_await tcp.async_connect(target.endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    result.error = describe(fmt::format("connecting to {}:{}", target.host, target.port), ec);
    co_return;
  }
  result.connected = true;
  const auto local = tcp.socket().local_endpoint(ec);
  if (!ec) {
    result.local_ip = local.address().to_string();
    result.local_port = local.port();
  }

  if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
    co_await stream.async_handshake(asio::ssl::stream_base::client,
                                    asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      result.error = describe("TLS handshake", ec);
      co_return;
    }
  }
  co_await writeAndRead(stream, request, timeout, result);
  tcp.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  tcp.socket().close(ec);
}

}  // namespace

ExchangeResult exchange(const Target& target, std::string_view request,
                        std::chrono::milliseconds timeout) {
  ExchangeResult result;
  asio::io_context io;
  if (!target.tls) {
    beast::tcp_stream stream(io);
    asio::co_spawn(io, connectAndExchange(stream, target, request, timeout, result),
                   asio::detached);
    io.run();
    return result;
  }

  asio::ssl::context context(asio::ssl::context::tls_client);
  context.set_verify_mode(asio::ssl::verify_none);
  beast::ssl_stream<beast::tcp_stream> stream(io, context);
  // SNI only for names: RFC 6066 forbids IP literals in server_name.
  error_code ec;
  asio::ip::make_address(target.host, ec);
  if (ec) {
    SSL_set_tlsext_host_name(stream.native_handle(), target.host.c_str());
  }
  asio::co_spawn(io, connectAndExchange(stream, target, request, timeout, result), asio::detached);
  io.run();
  return result;
}

}  // namespace webtrap::replay
