// The probe's network side: listeners, connection limits, HTTP sessions over
// plain TCP and TLS, and the admin listener.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include "common/admin_listener.h"
#include "common/metrics.h"
#include "probe/config.h"
#include "probe/persona.h"
#include "probe/pipeline.h"

namespace webtrap::probe {

class Baits;

// Counts open connections in total and per source address.
class ConnectionLimiter {
 public:
  ConnectionLimiter(std::uint32_t max_total, std::uint32_t max_per_source)
      : max_total_(max_total), max_per_source_(max_per_source) {}

  enum class Verdict { kAccepted, kTotalCap, kSourceCap };
  Verdict tryAcquire(const std::string& source);
  void release(const std::string& source);
  std::uint32_t open() const;

 private:
  mutable std::mutex mutex_;
  std::uint32_t max_total_;
  std::uint32_t max_per_source_;
  std::uint32_t open_ = 0;
  std::unordered_map<std::string, std::uint32_t> per_source_;
};

// Metrics of the network side, declared in one list.
struct ServerMetrics {
  explicit ServerMetrics(MetricsRegistry& registry);

  MetricsRegistry& registry;
  Counter& connections_accepted;
  Counter& connections_rejected_total_cap;
  Counter& connections_rejected_source_cap;
  Gauge& connections_open;
  Counter& requests;
  Counter& parse_errors;
  Counter& timeouts;
  Counter& request_bytes;
  Counter& response_bytes;
  Counter& tls_handshakes;
  Counter& tls_handshake_failures;
  Counter& persona_failures;

  // One counter per bait kind, made on first use.
  void countBait(const std::string& kind);
};

// Everything a session needs, shared by all sessions and read-only after
// start except for the thread-safe parts.
struct ProbeServices {
  const ProbeConfig* config = nullptr;
  std::map<std::string, const Persona*> personas;  // by listener name
  Baits* baits = nullptr;
  Pipeline* pipeline = nullptr;
  ConnectionLimiter* limiter = nullptr;
  ServerMetrics* metrics = nullptr;
  boost::asio::ssl::context* tls = nullptr;  // null when no listener uses TLS
};

class Server {
 public:
  Server(boost::asio::io_context& io, ProbeServices services);
  ~Server();

  // Opens every configured listener and the admin listener. Throws
  // ConfigError naming the listener and the system error.
  void bind();

  // Starts accepting on the opened listeners.
  void start();

  // Closes the listeners. Open connections finish on their own timeouts.
  void stopAccepting();

  // The bound port of each listener, by name (useful with port 0).
  std::map<std::string, std::uint16_t> boundPorts() const;

 private:
  struct Listener;
  void doAccept(Listener& listener);

  boost::asio::io_context& io_;
  std::shared_ptr<const ProbeServices> services_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::shared_ptr<AdminListener> admin_;
};

}  // namespace webtrap::probe
