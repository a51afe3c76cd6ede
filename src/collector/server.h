// The collector's network side: the ingest listener (POST /v1/records for
// probe batches, POST /v1/modsecurity for libmodsecurity's HTTPS audit log)
// over HTTP or HTTPS, and the admin listener (GET /metrics, GET /healthz,
// GET /v1/oat/verdicts and the dashboard).
// The ingest listener also serves the published output folders read-only
// (GET and HEAD under each folder's prefix; see published_folder.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>

#include "collector/admin_token_guard.h"
#include "collector/collector_config.h"
#include "collector/dashboard_http.h"
#include "collector/ingest.h"
#include "collector/published_folder.h"
#include "collector/store.h"
#include "collector/trusted_proxies.h"
#include "common/metrics.h"

namespace webtrap::collector {

// The response of GET /healthz: `healthy` false gives status 503.
struct HealthReport {
  bool healthy = true;
  std::string json;
};

struct ServerOptions {
  ListenAddress ingest;
  std::optional<ListenAddress> admin;  // nullopt: no admin listener
  // Checks the admin token on every admin route and limits wrong tokens
  // per client; null: the admin endpoints are open. The dashboard must use
  // this same guard, so a client blocked on one route is blocked on all.
  std::shared_ptr<AdminTokenGuard> admin_guard;
  // Peers whose X-Forwarded-For names the client of an admin request.
  TrustedProxies admin_trusted_proxies;
  IngestLimits limits;
  bool probe_input = true;
  bool modsecurity_http_input = true;
  boost::asio::ssl::context* tls = nullptr;  // null: plain HTTP on the ingest listener
  std::uint32_t ingest_workers = 4;          // threads that decode and commit request bodies
  std::vector<PublishedFolder> published_folders;  // served on the ingest listener
  DashboardHttp* dashboard = nullptr;  // served on the admin listener under /dashboard/
};

// Makes the TLS context of the ingest listener: certificate, key and, when
// client_ca is set, verification of client certificates. Throws ConfigError
// naming the file that cannot be loaded.
boost::asio::ssl::context makeIngestTlsContext(const IngestTlsOptions& options);

// Reads the first certificate of a PEM file and returns the SHA-256 of its
// DER encoding as 64 lowercase hex digits, the form a sensor's certificate
// binding is stored in. Throws ConfigError naming the file.
std::string certificateFileSha256(const std::filesystem::path& path);

// An address to listen on, with the configuration key that set it.
struct ListenCheck {
  ListenAddress address;
  const char* key;
};

// Binds all of `checks` at once and lets them go again, so that a collector
// that cannot listen, or whose two addresses clash, fails before it creates
// a store. Throws ConfigError naming the key of the first that failed.
void checkCanListen(const std::vector<ListenCheck>& checks);

class CollectorServer {
 public:
  CollectorServer(boost::asio::io_context& io, ServerOptions options, Store& store,
                  Ingest& ingest, MetricsRegistry& metrics,
                  std::function<HealthReport()> health);
  ~CollectorServer();
  CollectorServer(const CollectorServer&) = delete;
  CollectorServer& operator=(const CollectorServer&) = delete;

  // Binds both listeners and starts accepting. Throws ConfigError when an
  // address cannot be bound.
  void start();
  // Closes the listeners. From then on, new ingest requests on open
  // connections get 503 with Retry-After and Connection: close, while
  // requests already admitted are committed and answered.
  void stopAccepting();
  // Waits (at most 60 s) until every admitted ingest request has been
  // committed and its response written, then stops the workers. Also stops
  // admitting requests, as stopAccepting() does.
  void drain();

  std::uint16_t ingestPort() const;
  std::uint16_t adminPort() const;  // 0 when there is no admin listener

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace webtrap::collector
