#include "probe/server.h"

#include <atomic>
#include <chrono>
#include <utility>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/core/detect_ssl.hpp>
#include <boost/beast/http.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/admin_listener.h"
#include "common/encoding.h"
#include "common/error.h"
#include "common/ids.h"
#include "probe/baits.h"
#include "probe/request_reader.h"

namespace webtrap::probe {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// Bytes asked of the socket per read. Larger reads gain little for HTTP
// heads and bounded bodies.
constexpr std::size_t kReadChunk = 16 * 1024;
// Time allowed for a TLS handshake and for a TLS close_notify exchange.
constexpr auto kTlsHandshakeTimeout = std::chrono::seconds(10);
constexpr auto kTlsShutdownTimeout = std::chrono::seconds(2);

std::atomic<std::uint64_t> next_connection_number{1};

Endpoint toEndpoint(const tcp::endpoint& endpoint) {
  auto address = endpoint.address();
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
  }
  return {address.to_string(), endpoint.port()};
}

std::int64_t microsecondsSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
}

std::string serializeResponse(const PersonaResponse& response) {
  std::string out;
  out.reserve(256 + response.body.size());
  out += fmt::format("HTTP/1.1 {} {}\r\n", response.status, response.reason);
  for (const auto& field : response.headers) {
    out += field.name;
    out += ": ";
    out += field.value;
    out += "\r\n";
  }
  out += "\r\n";
  if (!response.omit_body) {
    out += response.body;
  }
  return out;
}

// Connection facts shared by every request on one connection.
struct ConnectionInfo {
  std::string id;
  Endpoint client;
  Endpoint server;
  const ListenerConfig* listener = nullptr;
  TlsInfo tls;
  // A plain HTTP request arrived on a TLS listener.
  bool plain_on_tls_port = false;
};

// An HTTP/1.1 session, shared by the plain and TLS variants through CRTP:
// `Derived` provides stream() and close(). Steps come in do_x / on_x pairs;
// each request moves through read, parse, respond, write, then hand-off to the
// pipeline.
template <class Derived>
class HttpSession {
 public:
  HttpSession(std::shared_ptr<const ProbeServices> services, ConnectionInfo info,
              beast::flat_buffer buffer)
      : services_(std::move(services)),
        info_(std::move(info)),
        buffer_(std::move(buffer)),
        reader_(services_->config->limits, services_->config->body_capture_bytes) {}

  ~HttpSession() {
    services_->limiter->release(info_.client.address);
    services_->metrics->connections_open.add(-1);
  }

 protected:
  ConnectionInfo& connectionInfo() { return info_; }
  const ProbeServices& services() const { return *services_; }

  void startHttp() {
    beginRequest();
    parseBuffered();
  }

 private:
  Derived& derived() { return static_cast<Derived&>(*this); }
  const LimitsConfig& limits() const { return services_->config->limits; }

  void beginRequest() {
    CapturedRequest request;
    request.connection_id = info_.id;
    request.request_index = request_index_;
    request.client = info_.client;
    request.server = info_.server;
    request.listener = info_.listener->name;
    request.bait_listener = info_.listener->bait;
    request.tls = info_.tls;
    reader_.begin(std::move(request));
    outcome_ = RouteOutcome{};
    started_ = false;

    // An idle keep-alive connection gets the short idle timeout; the read
    // timeout starts with the first byte of a request.
    auto timeout = request_index_ == 0 ? limits().read_timeout_ms : limits().idle_timeout_ms;
    beast::get_lowest_layer(derived().stream()).expires_after(std::chrono::milliseconds(timeout));
    if (buffer_.size() > 0) {
      markStarted();
    }
  }

  void markStarted() {
    if (started_) {
      return;
    }
    started_ = true;
    started_at_ = Clock::now();
    reader_.request().received_at = std::chrono::system_clock::now();
    beast::get_lowest_layer(derived().stream())
        .expires_after(std::chrono::milliseconds(limits().read_timeout_ms));
  }

  void doRead() {
    derived().stream().async_read_some(
        buffer_.prepare(kReadChunk),
        [self = derived().shared_from_this()](beast::error_code ec, std::size_t bytes) {
          self->onRead(ec, bytes);
        });
  }

  void onRead(beast::error_code ec, std::size_t bytes) {
    if (ec) {
      onReadError(ec);
      return;
    }
    buffer_.commit(bytes);
    services_->metrics->request_bytes.inc(bytes);
    markStarted();
    parseBuffered();
  }

  void onReadError(beast::error_code ec) {
    // Bytes that never became a whole request are still an event.
    if (ec == beast::error::timeout) {
      services_->metrics->timeouts.inc();
      if (started_) {
        failRequest("timeout: the request was not complete within limits.read_timeout", false);
      }
    } else if (started_) {
      failRequest("connection closed before the request was complete: " + ec.message(), false);
    }
    derived().close();
  }

  void parseBuffered() {
    std::string_view pending(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    std::size_t used = 0;
    RequestReader::Step step = reader_.parse(pending, used);
    buffer_.consume(used);
    if (reader_.request().timings.headers_us < 0 && !reader_.request().raw_head.empty()) {
      reader_.request().timings.headers_us = microsecondsSince(started_at_);
    }

    switch (step) {
      case RequestReader::Step::kNeedMore:
        doRead();
        return;
      case RequestReader::Step::kSendContinue:
        doWriteContinue();
        return;
      case RequestReader::Step::kComplete:
        completeRequest();
        return;
      case RequestReader::Step::kFailed:
        services_->metrics->parse_errors.inc();
        respondToFailure(true);
        return;
    }
  }

  // Apache sends "100 Continue" when it starts to read the body; clients
  // such as curl otherwise wait a second before they send it.
  void doWriteContinue() {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    asio::async_write(derived().stream(), asio::buffer(kContinue.data(), kContinue.size()),
                      [self = derived().shared_from_this()](beast::error_code ec, std::size_t) {
                        if (ec) {
                          self->derived().close();
                          return;
                        }
                        self->parseBuffered();
                      });
  }

  void completeRequest() {
    CapturedRequest& request = reader_.request();
    request.timings.body_us = microsecondsSince(started_at_);
    services_->metrics->requests.inc();

    const Persona& persona = personaForListener();
    PersonaResponse response;
    if (info_.plain_on_tls_port) {
      request.parse_error = "plain HTTP request on a TLS port";
      response = persona.respondToParseError(request, outcome_);
    } else {
      try {
        response = persona.respond(request, *services_->baits, outcome_);
      } catch (const std::exception& error) {
        // A persona bug must not cost the record or the connection.
        services_->metrics->persona_failures.inc();
        spdlog::error("persona: respond failed connection={} error={}", info_.id, error.what());
        response = persona.respondToParseError(request, outcome_);
      }
    }

    bool keep_alive = reader_.keepAlive() && !response.close_connection &&
                      !info_.plain_on_tls_port;
    if (keep_alive && request_index_ + 1 >= limits().max_requests_per_connection) {
      // The configured cap ends the connection before the persona's own
      // countdown does, so tell the client, as Apache does on its last
      // request.
      keep_alive = false;
      announceClose(response);
    }
    doWrite(std::move(response), keep_alive);
  }

  static void announceClose(PersonaResponse& response) {
    auto& headers = response.headers;
    std::erase_if(headers, [](const HeaderField& field) {
      return equalsIgnoreCase(field.name, "Keep-Alive");
    });
    for (auto& field : headers) {
      if (equalsIgnoreCase(field.name, "Connection")) {
        field.value = "close";
        return;
      }
    }
    headers.push_back({"Connection", "close"});
  }

  // Records a request that ended early. Only a parse error gets a response:
  // a client that left or stalled is not written to.
  void failRequest(const std::string& reason, bool respond) {
    services_->metrics->parse_errors.inc();
    std::string_view pending(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    reader_.fail(reason, pending);
    respondToFailure(respond);
  }

  void respondToFailure(bool respond) {
    if (!respond) {
      // The record shows status 0: nothing was sent.
      PersonaResponse none;
      none.status = 0;
      outcome_.route = "parse_error";
      handOff(std::move(none));
      return;
    }
    doWrite(personaForListener().respondToParseError(reader_.request(), outcome_), false);
  }

  const Persona& personaForListener() const {
    return *services_->personas.at(info_.listener->name);
  }

  void doWrite(PersonaResponse response, bool keep_alive) {
    keep_alive_ = keep_alive;
    // The journal entry is written before the response leaves, so that a
    // client that has read the response never lacks its record after a
    // SIGKILL. Its record then has a null response_us.
    event_id_ = newUuidV7();
    journal_ticket_ = services_->pipeline->journalBeforeResponse(reader_.request(), response,
                                                                 outcome_, event_id_);
    wire_ = serializeResponse(response);
    response_ = std::move(response);
    asio::async_write(derived().stream(), asio::buffer(wire_),
                      [self = derived().shared_from_this()](beast::error_code ec,
                                                            std::size_t bytes) {
                        self->onWrite(ec, bytes);
                      });
  }

  void onWrite(beast::error_code ec, std::size_t bytes) {
    services_->metrics->response_bytes.inc(bytes);
    reader_.request().timings.response_us = microsecondsSince(started_at_);
    handOff(std::move(response_));

    if (ec || !keep_alive_) {
      derived().close();
      return;
    }
    ++request_index_;
    beginRequest();
    parseBuffered();
  }

  void handOff(PersonaResponse response) {
    for (const auto& bait : outcome_.baits) {
      services_->metrics->countBait(bait.kind);
    }
    PipelineJob job;
    job.request = std::move(reader_.request());
    job.response = std::move(response);
    job.outcome = std::move(outcome_);
    // An empty event_id_ means no response was sent, so doWrite() wrote no
    // journal entry and submit() does.
    job.journal_attempted = !event_id_.empty();
    job.event_id = event_id_.empty() ? newUuidV7() : std::move(event_id_);
    job.journal_ticket = std::exchange(journal_ticket_, 0);
    event_id_.clear();
    services_->pipeline->submit(std::move(job));
  }

  std::shared_ptr<const ProbeServices> services_;
  ConnectionInfo info_;
  beast::flat_buffer buffer_;
  RequestReader reader_;
  RouteOutcome outcome_;
  PersonaResponse response_;
  std::string wire_;
  std::string event_id_;             // set by doWrite(), moved into the job by handOff()
  std::uint64_t journal_ticket_ = 0;  // the journal entry written by doWrite(), 0 when none
  std::uint64_t request_index_ = 0;
  bool keep_alive_ = false;
  bool started_ = false;
  Clock::time_point started_at_;
};

class PlainSession : public HttpSession<PlainSession>,
                     public std::enable_shared_from_this<PlainSession> {
 public:
  PlainSession(beast::tcp_stream stream, std::shared_ptr<const ProbeServices> services,
               ConnectionInfo info, beast::flat_buffer buffer)
      : HttpSession(std::move(services), std::move(info), std::move(buffer)),
        stream_(std::move(stream)) {}

  void run() { startHttp(); }
  beast::tcp_stream& stream() { return stream_; }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.socket().close(ec);
  }

 private:
  beast::tcp_stream stream_;
};

class TlsSession : public HttpSession<TlsSession>,
                   public std::enable_shared_from_this<TlsSession> {
 public:
  TlsSession(beast::tcp_stream stream, ssl::context& context,
             std::shared_ptr<const ProbeServices> services, ConnectionInfo info,
             beast::flat_buffer buffer)
      : HttpSession(std::move(services), std::move(info), {}),
        stream_(std::move(stream), context),
        handshake_buffer_(std::move(buffer)) {}

  void run() {
    beast::get_lowest_layer(stream_).expires_after(kTlsHandshakeTimeout);
    stream_.async_handshake(
        ssl::stream_base::server, handshake_buffer_.data(),
        [self = shared_from_this()](beast::error_code ec, std::size_t used) {
          self->onHandshake(ec, used);
        });
  }

  ssl::stream<beast::tcp_stream>& stream() { return stream_; }

  void close() {
    beast::get_lowest_layer(stream_).expires_after(kTlsShutdownTimeout);
    stream_.async_shutdown([self = shared_from_this()](beast::error_code) {
      beast::error_code ignored;
      beast::get_lowest_layer(self->stream_).socket().close(ignored);
    });
  }

 private:
  void onHandshake(beast::error_code ec, std::size_t) {
    if (ec) {
      services().metrics->tls_handshake_failures.inc();
      spdlog::debug("tls: handshake failed error={}", ec.message());
      beast::error_code ignored;
      beast::get_lowest_layer(stream_).socket().close(ignored);
      return;
    }
    services().metrics->tls_handshakes.inc();
    SSL* handle = stream_.native_handle();
    TlsInfo& tls = connectionInfo().tls;
    tls.enabled = true;
    if (const char* name = SSL_get_servername(handle, TLSEXT_NAMETYPE_host_name)) {
      tls.sni = name;
    }
    tls.version = SSL_get_version(handle);
    tls.cipher = SSL_get_cipher_name(handle);
    startHttp();
  }

  ssl::stream<beast::tcp_stream> stream_;
  beast::flat_buffer handshake_buffer_;
};


// Reads the first bytes of a connection on a TLS listener and hands it to a
// TLS session, or to a plain session when the client speaks plain HTTP.
class TlsDetector : public std::enable_shared_from_this<TlsDetector> {
 public:
  TlsDetector(beast::tcp_stream stream, std::shared_ptr<const ProbeServices> services,
              ConnectionInfo info)
      : stream_(std::move(stream)), services_(std::move(services)), info_(std::move(info)) {}

  void run() {
    stream_.expires_after(std::chrono::milliseconds(services_->config->limits.read_timeout_ms));
    beast::async_detect_ssl(stream_, buffer_,
                            [self = shared_from_this()](beast::error_code ec, bool is_tls) {
                              self->onDetect(ec, is_tls);
                            });
  }

 private:
  void onDetect(beast::error_code ec, bool is_tls) {
    if (ec) {
      // The client sent nothing, or closed, before its first bytes.
      services_->limiter->release(info_.client.address);
      services_->metrics->connections_open.add(-1);
      return;
    }
    if (is_tls) {
      std::make_shared<TlsSession>(std::move(stream_), *services_->tls, services_,
                                   std::move(info_), std::move(buffer_))
          ->run();
      return;
    }
    info_.plain_on_tls_port = true;
    std::make_shared<PlainSession>(std::move(stream_), services_, std::move(info_),
                                   std::move(buffer_))
        ->run();
  }

  beast::tcp_stream stream_;
  std::shared_ptr<const ProbeServices> services_;
  ConnectionInfo info_;
  beast::flat_buffer buffer_;
};

void acceptConnection(const ListenerConfig& listener,
                      const std::shared_ptr<const ProbeServices>& services, tcp::socket socket) {
  beast::error_code ec;
  auto remote = socket.remote_endpoint(ec);
  if (ec) {
    return;  // the client left before we looked
  }
  auto local = socket.local_endpoint(ec);
  if (ec) {
    return;
  }

  ConnectionInfo info;
  info.client = toEndpoint(remote);
  info.server = toEndpoint(local);
  info.listener = &listener;

  ServerMetrics& metrics = *services->metrics;
  switch (services->limiter->tryAcquire(info.client.address)) {
    case ConnectionLimiter::Verdict::kTotalCap:
      metrics.connections_rejected_total_cap.inc();
      socket.close(ec);
      return;
    case ConnectionLimiter::Verdict::kSourceCap:
      metrics.connections_rejected_source_cap.inc();
      socket.close(ec);
      return;
    case ConnectionLimiter::Verdict::kAccepted:
      break;
  }
  metrics.connections_accepted.inc();
  metrics.connections_open.add(1);

  info.id = fmt::format("{}-{}", listener.name, next_connection_number.fetch_add(1));
  socket.set_option(tcp::no_delay(true), ec);
  beast::tcp_stream stream(std::move(socket));
  if (listener.tls) {
    std::make_shared<TlsDetector>(std::move(stream), services, std::move(info))->run();
  } else {
    std::make_shared<PlainSession>(std::move(stream), services, std::move(info),
                                   beast::flat_buffer())
        ->run();
  }
}

}  // namespace

ConnectionLimiter::Verdict ConnectionLimiter::tryAcquire(const std::string& source) {
  std::lock_guard lock(mutex_);
  if (open_ >= max_total_) {
    return Verdict::kTotalCap;
  }
  auto& count = per_source_[source];
  if (count >= max_per_source_) {
    if (count == 0) {
      per_source_.erase(source);
    }
    return Verdict::kSourceCap;
  }
  ++count;
  ++open_;
  return Verdict::kAccepted;
}

void ConnectionLimiter::release(const std::string& source) {
  std::lock_guard lock(mutex_);
  auto found = per_source_.find(source);
  if (found == per_source_.end()) {
    return;
  }
  if (--found->second == 0) {
    per_source_.erase(found);
  }
  --open_;
}

std::uint32_t ConnectionLimiter::open() const {
  std::lock_guard lock(mutex_);
  return open_;
}

ServerMetrics::ServerMetrics(MetricsRegistry& registry)
    : registry(registry),
      connections_accepted(registry.counter("webtrap_connections_accepted_total",
                                            "Connections accepted on all listeners.")),
      connections_rejected_total_cap(
          registry.counter("webtrap_connections_rejected_total",
                           "Connections closed at once because a connection cap was reached.",
                           "reason=\"total_cap\"")),
      connections_rejected_source_cap(
          registry.counter("webtrap_connections_rejected_total",
                           "Connections closed at once because a connection cap was reached.",
                           "reason=\"source_cap\"")),
      connections_open(registry.gauge("webtrap_connections_open", "Connections open now.")),
      requests(registry.counter("webtrap_requests_total", "Requests parsed whole.")),
      parse_errors(registry.counter(
          "webtrap_parse_errors_total",
          "Requests the HTTP parser rejected, or that stopped before they were complete.")),
      timeouts(registry.counter("webtrap_timeouts_total",
                                "Connections closed by the read or idle timeout.")),
      request_bytes(registry.counter("webtrap_request_bytes_total", "Bytes received.")),
      response_bytes(registry.counter("webtrap_response_bytes_total", "Bytes sent.")),
      tls_handshakes(registry.counter("webtrap_tls_handshakes_total", "TLS handshakes completed.")),
      tls_handshake_failures(registry.counter("webtrap_tls_handshake_failures_total",
                                              "TLS handshakes that failed or timed out.")),
      persona_failures(registry.counter("webtrap_persona_failures_total",
                                        "Requests where the persona failed to build an answer.")) {}

void ServerMetrics::countBait(const std::string& kind) {
  registry
      .counter("webtrap_bait_hits_total", "Requests that touched a bait, by bait kind.",
               fmt::format("kind=\"{}\"", kind))
      .inc();
}

struct Server::Listener {
  const ListenerConfig* config = nullptr;
  tcp::acceptor acceptor;
};

Server::Server(asio::io_context& io, ProbeServices services)
    : io_(io), services_(std::make_shared<const ProbeServices>(std::move(services))) {}

Server::~Server() = default;

void Server::bind() {
  for (const auto& listener : services_->config->listeners) {
    auto entry = std::make_unique<Listener>(
        Listener{&listener, openAcceptor(io_, listener.address, listener.port,
                                         "listener " + listener.name)});
    spdlog::info("probe: listening name={} address={} port={} tls={} bait={}", listener.name,
                 listener.address, entry->acceptor.local_endpoint().port(), listener.tls,
                 listener.bait);
    listeners_.push_back(std::move(entry));
  }

  const std::string& admin = services_->config->admin_listen;
  if (!admin.empty()) {
    ListenerConfig parsed = parseListenAddress(admin, "admin.listen");
    admin_ = std::make_shared<AdminListener>(
        openAcceptor(io_, parsed.address, parsed.port, "admin.listen"), services_->metrics->registry);
  }
}

void Server::start() {
  for (auto& listener : listeners_) {
    doAccept(*listener);
  }
  if (admin_) {
    admin_->start();
  }
}

void Server::doAccept(Listener& listener) {
  listener.acceptor.async_accept(
      asio::make_strand(io_), [this, &listener](beast::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted) {
          return;
        }
        if (ec) {
          // Out of file descriptors, for example: try again shortly.
          spdlog::warn("probe: accept failed listener={} error={}", listener.config->name,
                       ec.message());
        } else {
          acceptConnection(*listener.config, services_, std::move(socket));
        }
        doAccept(listener);
      });
}

std::map<std::string, std::uint16_t> Server::boundPorts() const {
  std::map<std::string, std::uint16_t> ports;
  for (const auto& listener : listeners_) {
    ports[listener->config->name] = listener->acceptor.local_endpoint().port();
  }
  if (admin_) {
    ports["admin"] = admin_->port();
  }
  return ports;
}

void Server::stopAccepting() {
  for (auto& listener : listeners_) {
    beast::error_code ignored;
    listener->acceptor.close(ignored);
  }
  if (admin_) {
    admin_->close();
  }
}

}  // namespace webtrap::probe
