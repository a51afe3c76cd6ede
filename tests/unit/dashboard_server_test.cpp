// The dashboard on a real admin listener (CollectorServer on loopback). Its
// queries run on the dashboard's workers, so a query that is still running
// does not hold up /healthz on the same I/O thread. A full queue gets 503
// with Retry-After. Wrong admin tokens on every admin route are limited per
// client address, and behind a trusted proxy per X-Forwarded-For client.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "collector/admin_token_guard.h"
#include "collector/dashboard_http.h"
#include "collector/dashboard_index.h"
#include "collector/dashboard_queries.h"
#include "collector/dashboard_service.h"
#include "collector/dashboard_workers.h"
#include "collector/enrich.h"
#include "collector/ingest.h"
#include "collector/server.h"
#include "collector/login_limiter.h"
#include "collector/store.h"
#include "collector/trusted_proxies.h"
#include "common/error.h"
#include "common/metrics.h"

namespace webtrap::collector {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr const char* kToken = "dashboard-server-test-token";
// The fixture's login limit: 3 failures within a minute block an address.
constexpr std::uint32_t kTestMaxFailures = 3;
constexpr std::chrono::seconds kTestWindow{60};
// The fixture's reverse proxy, listed in admin_trusted_proxies. Every
// other loopback address is an untrusted peer.
constexpr const char* kProxy = "127.0.0.9";

class DashboardServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("webtrap-dashboard-server-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    StoreOptions store_options;
    store_options.path = dir_ / "store.sqlite";
    store_options.synchronous = "normal";
    store_ = std::make_unique<Store>(store_options);
    enricher_ = std::make_unique<Enricher>(EnrichOptions{});
    ingest_ = std::make_unique<Ingest>(*store_, *enricher_, metrics_, [] {});
    index_ = std::make_unique<DashboardIndex>(dir_ / "dashboard.sqlite");
    queries_ = std::make_unique<DashboardQueries>(dir_ / "dashboard.sqlite", *store_);
    // One query thread and a queue of one, so the test can fill both.
    LoginLimitOptions login_limits;
    login_limits.max_failures = kTestMaxFailures;
    login_limits.window = kTestWindow;
    auto guard = std::make_shared<AdminTokenGuard>(kToken, login_limits, &metrics_);
    dashboard_ = std::make_unique<DashboardHttp>(*queries_, guard, 1, 1, &metrics_);
    ServerOptions options;
    options.ingest = {"127.0.0.1", 0};
    options.admin = ListenAddress{"127.0.0.1", 0};
    options.admin_guard = guard;
    options.admin_trusted_proxies = TrustedProxies::parse({kProxy}, "admin.trusted_proxies");
    options.dashboard = dashboard_.get();
    server_ = std::make_unique<CollectorServer>(io_, options, *store_, *ingest_, metrics_, [] {
      return HealthReport{true, "{\"status\":\"ok\"}"};
    });
    server_->start();
    // One I/O thread: a query run on it would hold up every other request.
    io_thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    server_->stopAccepting();
    io_.stop();
    io_thread_.join();
    server_.reset();
    dashboard_.reset();
    queries_.reset();
    index_.reset();
    ingest_.reset();
    enricher_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  // Opens a connection to the admin listener and sends GET `target`.
  std::unique_ptr<tcp::socket> sendGet(const std::string& target) {
    auto socket = std::make_unique<tcp::socket>(client_io_);
    socket->connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), server_->adminPort()));
    http::request<http::empty_body> request{http::verb::get, target, 11};
    request.set(http::field::host, "127.0.0.1");
    request.set(http::field::authorization, std::string("Bearer ") + kToken);
    http::write(*socket, request);
    return socket;
  }

  // Sends `request` from `local_address` and returns the response. Every
  // address in 127.0.0.0/8 reaches the listener on 127.0.0.1, so a test can
  // play several clients.
  http::response<http::string_body> exchange(http::request<http::string_body> request,
                                             const std::string& local_address) {
    tcp::socket socket(client_io_);
    socket.open(tcp::v4());
    socket.bind(tcp::endpoint(asio::ip::make_address(local_address), 0));
    socket.connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), server_->adminPort()));
    request.set(http::field::host, "127.0.0.1");
    request.prepare_payload();
    http::write(socket, request);
    return readResponse(socket);
  }

  http::response<http::string_body> postLogin(const std::string& token,
                                              const std::string& local_address) {
    http::request<http::string_body> request{http::verb::post, "/dashboard/login", 11};
    request.set(http::field::content_type, "application/x-www-form-urlencoded");
    request.body() = "token=" + token;
    return exchange(std::move(request), local_address);
  }

  // Sends GET `target` with `token` as a Bearer token (none when empty) and
  // the X-Forwarded-For value `forwarded_for` (none when empty) from
  // `local_address`.
  http::response<http::string_body> getWithToken(const std::string& target,
                                                 const std::string& token,
                                                 const std::string& local_address,
                                                 const std::string& forwarded_for = "") {
    http::request<http::string_body> request{http::verb::get, target, 11};
    if (!token.empty()) {
      request.set(http::field::authorization, "Bearer " + token);
    }
    if (!forwarded_for.empty()) {
      request.set("X-Forwarded-For", forwarded_for);
    }
    return exchange(std::move(request), local_address);
  }

  // Returns the exposition of /metrics, read with the right token from
  // 127.0.0.254, an address no test blocks.
  std::string scrapeMetrics() {
    auto response = getWithToken("/metrics", kToken, "127.0.0.254");
    EXPECT_EQ(response.result(), http::status::ok) << response.body();
    return response.body();
  }

  static http::response<http::string_body> readResponse(tcp::socket& socket) {
    beast::flat_buffer buffer;
    http::response<http::string_body> response;
    http::read(socket, buffer, response);
    return response;
  }

  fs::path dir_;
  asio::io_context io_;
  asio::io_context client_io_;
  MetricsRegistry metrics_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Enricher> enricher_;
  std::unique_ptr<Ingest> ingest_;
  std::unique_ptr<DashboardIndex> index_;
  std::unique_ptr<DashboardQueries> queries_;
  std::unique_ptr<DashboardHttp> dashboard_;
  std::unique_ptr<CollectorServer> server_;
  std::thread io_thread_;
};

TEST_F(DashboardServerTest, AnswersQueryOnWorker) {
  auto socket = sendGet("/dashboard/api/summary");
  auto response = readResponse(*socket);
  EXPECT_EQ(response.result(), http::status::ok) << response.body();
  EXPECT_NE(response.body().find("\"events\":0"), std::string::npos) << response.body();
}

TEST_F(DashboardServerTest, SlowQueryDoesNotBlockHealthz) {
  // Test double for a slow query: a task that holds the only query thread
  // until the test releases it.
  std::promise<void> started;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  ASSERT_TRUE(dashboard_->workers().submit([&started, released] {
    started.set_value();
    released.wait();
  }));
  started.get_future().wait();

  // This query waits in the queue behind the slow one.
  auto waiting = sendGet("/dashboard/api/summary");
  const auto queue_deadline = Clock::now() + std::chrono::seconds(10);
  while (dashboard_->workers().queued() < 1 && Clock::now() < queue_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(dashboard_->workers().queued(), 1u) << "the query did not reach the queue";

  const auto health_start = Clock::now();
  auto health_socket = sendGet("/healthz");
  auto health = readResponse(*health_socket);
  const double health_seconds =
      std::chrono::duration<double>(Clock::now() - health_start).count();
  EXPECT_EQ(health.result(), http::status::ok) << health.body();
  EXPECT_LT(health_seconds, 1.0);

  // The queue is full, so the next query is turned away at once.
  auto busy_socket = sendGet("/dashboard/api/timeline");
  auto busy = readResponse(*busy_socket);
  EXPECT_EQ(busy.result(), http::status::service_unavailable) << busy.body();
  EXPECT_EQ(std::string(busy[http::field::retry_after]), "1");

  // The page and its assets take no query thread.
  auto page_socket = sendGet("/dashboard/");
  EXPECT_EQ(readResponse(*page_socket).result(), http::status::ok);

  release.set_value();
  auto answered = readResponse(*waiting);
  EXPECT_EQ(answered.result(), http::status::ok) << answered.body();
  EXPECT_NE(answered.body().find("\"events\":0"), std::string::npos) << answered.body();
}

// Returns the value of one sample line of a Prometheus text exposition, -1
// when it is missing.
long long sampleValue(const std::string& exposition, const std::string& series) {
  const std::string prefix = series + " ";
  for (std::size_t at = 0; at < exposition.size();) {
    std::size_t end = exposition.find('\n', at);
    if (end == std::string::npos) {
      end = exposition.size();
    }
    std::string_view line(exposition.data() + at, end - at);
    if (line.starts_with(prefix)) {
      return std::stoll(std::string(line.substr(prefix.size())));
    }
    at = end + 1;
  }
  return -1;
}

// Anyone who reaches the admin listener may guess the admin token. After
// kTestMaxFailures failures, that address gets 429 with Retry-After, even
// with the right token, while another address still logs in. A wrong
// Bearer token counts like a failed login, and /metrics counts both.
TEST_F(DashboardServerTest, FailedLoginsGet429PerAddress) {
  const std::string attacker = "127.0.0.1";
  const std::string admin = "127.0.0.2";
  for (std::uint32_t i = 0; i < kTestMaxFailures; ++i) {
    auto failed = postLogin("guess-" + std::to_string(i), attacker);
    EXPECT_EQ(failed.result(), http::status::unauthorized) << "attempt " << i << ": "
                                                           << failed.body();
  }

  auto limited = postLogin("guess-next", attacker);
  EXPECT_EQ(limited.result(), http::status::too_many_requests) << limited.body();
  const std::string retry_after(limited[http::field::retry_after]);
  ASSERT_FALSE(retry_after.empty()) << "429 without Retry-After";
  EXPECT_GT(std::stoll(retry_after), 0);
  EXPECT_LE(std::stoll(retry_after), kTestWindow.count());

  auto right_but_blocked = postLogin(kToken, attacker);
  EXPECT_EQ(right_but_blocked.result(), http::status::too_many_requests)
      << "a blocked address could still test a token";

  http::request<http::string_body> bearer{http::verb::get, "/dashboard/api/summary", 11};
  bearer.set(http::field::authorization, "Bearer guess-bearer");
  auto bearer_limited = exchange(bearer, attacker);
  EXPECT_EQ(bearer_limited.result(), http::status::too_many_requests) << bearer_limited.body();

  auto other_address = postLogin(kToken, admin);
  EXPECT_EQ(other_address.result(), http::status::no_content) << other_address.body();
  EXPECT_FALSE(std::string(other_address[http::field::set_cookie]).empty());

  // Wrong Bearer tokens from a third address block it too.
  const std::string scanner = "127.0.0.3";
  for (std::uint32_t i = 0; i < kTestMaxFailures; ++i) {
    EXPECT_EQ(exchange(bearer, scanner).result(), http::status::unauthorized) << i;
  }
  EXPECT_EQ(exchange(bearer, scanner).result(), http::status::too_many_requests);

  http::request<http::string_body> metrics_request{http::verb::get, "/metrics", 11};
  metrics_request.set(http::field::authorization, std::string("Bearer ") + kToken);
  auto metrics = exchange(metrics_request, admin);
  ASSERT_EQ(metrics.result(), http::status::ok) << metrics.body();
  EXPECT_EQ(sampleValue(metrics.body(),
                        "webtrap_collector_dashboard_logins_rejected_total{reason=\"rate_limited\"}"),
            4)
      << metrics.body();
  EXPECT_EQ(sampleValue(metrics.body(),
                        "webtrap_collector_dashboard_logins_rejected_total{reason=\"wrong_token\"}"),
            2 * kTestMaxFailures)
      << metrics.body();
}

std::string rejectedSeries(const std::string& route, const std::string& reason) {
  return "webtrap_collector_admin_token_rejected_total{route=\"" + route + "\",reason=\"" +
         reason + "\"}";
}

// /metrics, /healthz and /v1/oat/verdicts check the admin token too, so
// guesses there count against the same limit as the dashboard's login.
// Once blocked, the address gets 429 on every route, with the right token
// too, while another address keeps its access.
TEST_F(DashboardServerTest, MetricsGuessesGet429OnEveryRoute) {
  const std::string attacker = "127.0.0.1";
  for (std::uint32_t i = 0; i < kTestMaxFailures; ++i) {
    auto failed = getWithToken("/metrics", "guess-" + std::to_string(i), attacker);
    EXPECT_EQ(failed.result(), http::status::unauthorized) << "attempt " << i << ": "
                                                           << failed.body();
  }

  auto limited = getWithToken("/metrics", "guess-next", attacker);
  EXPECT_EQ(limited.result(), http::status::too_many_requests) << limited.body();
  const std::string retry_after(limited[http::field::retry_after]);
  ASSERT_FALSE(retry_after.empty()) << "429 without Retry-After";
  EXPECT_GT(std::stoll(retry_after), 0);
  EXPECT_LE(std::stoll(retry_after), kTestWindow.count());
  EXPECT_NE(limited.body().find("too many wrong admin tokens"), std::string::npos)
      << limited.body();

  for (const char* target :
       {"/metrics", "/healthz", "/v1/oat/verdicts", "/dashboard/api/summary", "/unknown"}) {
    auto right_but_blocked = getWithToken(target, kToken, attacker);
    EXPECT_EQ(right_but_blocked.result(), http::status::too_many_requests)
        << target << ": " << right_but_blocked.body();
    EXPECT_FALSE(std::string(right_but_blocked[http::field::retry_after]).empty()) << target;
  }
  auto login = postLogin(kToken, attacker);
  EXPECT_EQ(login.result(), http::status::too_many_requests) << login.body();

  const std::string scraper = "127.0.0.2";
  EXPECT_EQ(getWithToken("/metrics", kToken, scraper).result(), http::status::ok);
  EXPECT_EQ(getWithToken("/healthz", kToken, scraper).result(), http::status::ok);
  EXPECT_EQ(postLogin(kToken, scraper).result(), http::status::no_content);

  const std::string metrics = scrapeMetrics();
  EXPECT_EQ(sampleValue(metrics, rejectedSeries("/metrics", "wrong_token")), kTestMaxFailures)
      << metrics;
  EXPECT_EQ(sampleValue(metrics, rejectedSeries("/metrics", "rate_limited")), 2) << metrics;
  EXPECT_EQ(sampleValue(metrics, rejectedSeries("/healthz", "rate_limited")), 1) << metrics;
  EXPECT_EQ(sampleValue(metrics, rejectedSeries("/v1/oat/verdicts", "rate_limited")), 1)
      << metrics;
  EXPECT_EQ(sampleValue(metrics, rejectedSeries("/dashboard/api", "rate_limited")), 1)
      << metrics;
  EXPECT_EQ(sampleValue(metrics, rejectedSeries("/dashboard/login", "rate_limited")), 1)
      << metrics;
  EXPECT_EQ(sampleValue(metrics, rejectedSeries("other", "rate_limited")), 1) << metrics;
  EXPECT_EQ(sampleValue(metrics, rejectedSeries("/healthz", "wrong_token")), 0) << metrics;
  // The dashboard's own counter keeps counting the dashboard's routes only.
  EXPECT_EQ(sampleValue(metrics,
                        "webtrap_collector_dashboard_logins_rejected_total{reason=\"rate_limited\"}"),
            2)
      << metrics;
  EXPECT_EQ(sampleValue(metrics,
                        "webtrap_collector_dashboard_logins_rejected_total{reason=\"wrong_token\"}"),
            0)
      << metrics;
}

// Failed dashboard logins block /metrics for that address too.
TEST_F(DashboardServerTest, FailedLoginsBlockMetrics) {
  const std::string attacker = "127.0.0.3";
  for (std::uint32_t i = 0; i < kTestMaxFailures; ++i) {
    EXPECT_EQ(postLogin("guess-" + std::to_string(i), attacker).result(),
              http::status::unauthorized)
        << i;
  }
  auto scrape = getWithToken("/metrics", kToken, attacker);
  EXPECT_EQ(scrape.result(), http::status::too_many_requests) << scrape.body();
  EXPECT_FALSE(std::string(scrape[http::field::retry_after]).empty());
}

// A scraper with the right token keeps its access while another address
// guesses. Right tokens clear no count, neither the scraper's nor the
// guessing address's own, so right tokens between the guesses do not buy
// more guesses.
TEST_F(DashboardServerTest, RightTokenClearsNoCount) {
  const std::string attacker = "127.0.0.4";
  const std::string scraper = "127.0.0.5";
  for (std::uint32_t i = 0; i < kTestMaxFailures; ++i) {
    EXPECT_EQ(getWithToken("/metrics", kToken, scraper).result(), http::status::ok) << i;
    EXPECT_EQ(getWithToken("/metrics", kToken, attacker).result(), http::status::ok) << i;
    EXPECT_EQ(getWithToken("/metrics", "guess", attacker).result(), http::status::unauthorized)
        << i;
  }
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(getWithToken("/metrics", "guess", attacker).result(),
              http::status::too_many_requests)
        << i;
    EXPECT_EQ(getWithToken("/metrics", kToken, scraper).result(), http::status::ok) << i;
  }
}

// A request without a token guesses nothing: it gets 401 and is not
// counted, however often it comes.
TEST_F(DashboardServerTest, MissingTokenIsNotCounted) {
  const std::string client = "127.0.0.6";
  for (std::uint32_t i = 0; i < 3 * kTestMaxFailures; ++i) {
    auto response = getWithToken("/metrics", "", client);
    EXPECT_EQ(response.result(), http::status::unauthorized) << i << ": " << response.body();
  }
  EXPECT_EQ(getWithToken("/metrics", kToken, client).result(), http::status::ok);
}

// A peer that is not a trusted proxy cannot spread its guesses over made-up
// addresses in X-Forwarded-For, nor get another address blocked by naming it.
TEST_F(DashboardServerTest, ForwardedForFromUntrustedPeerIgnored) {
  const std::string attacker = "127.0.0.7";
  for (std::uint32_t i = 0; i < kTestMaxFailures; ++i) {
    auto failed =
        getWithToken("/metrics", "guess", attacker, "198.51.100." + std::to_string(i + 1));
    EXPECT_EQ(failed.result(), http::status::unauthorized) << i << ": " << failed.body();
  }
  EXPECT_EQ(getWithToken("/metrics", kToken, attacker, "198.51.100.200").result(),
            http::status::too_many_requests);
  EXPECT_EQ(getWithToken("/metrics", kToken, "127.0.0.8", attacker).result(), http::status::ok);
}

// Behind the trusted proxy, wrong tokens count against the client that the
// proxy names in X-Forwarded-For: the right-most address that is not the
// proxy itself. Other clients behind the proxy, and the proxy itself, keep
// their access. A header with an entry that is not an address counts the
// proxy.
TEST_F(DashboardServerTest, ForwardedForFromTrustedProxyNamesClient) {
  const std::string blocked = "198.51.100.7";
  for (std::uint32_t i = 0; i < kTestMaxFailures; ++i) {
    auto failed = getWithToken("/metrics", "guess", kProxy, blocked);
    EXPECT_EQ(failed.result(), http::status::unauthorized) << i << ": " << failed.body();
  }
  struct Case {
    std::string forwarded_for;
    http::status expected;
  };
  const std::vector<Case> cases = {
      {blocked, http::status::too_many_requests},
      {blocked + ", " + kProxy, http::status::too_many_requests},
      {blocked + ":50123", http::status::too_many_requests},
      {"::ffff:" + blocked, http::status::too_many_requests},
      // The client wrote the blocked address, and the proxy appended its own.
      {blocked + ", 198.51.100.8", http::status::ok},
      {"198.51.100.8", http::status::ok},
      {"[2001:db8::1]:443", http::status::ok},
      // No header: the proxy itself is the client.
      {"", http::status::ok},
      {" , ,", http::status::ok},
      // Not addresses: the proxy is the client.
      {"unknown", http::status::ok},
      {blocked + ", 300.1.1.1", http::status::ok},
      {blocked + ", [2001:db8::1", http::status::ok},
      {blocked + ", 198.51.100.8:http", http::status::ok},
      {blocked + ", " + std::string(200, '1'), http::status::ok},
      {blocked + ", _hidden", http::status::ok},
  };
  for (const Case& test_case : cases) {
    auto response = getWithToken("/metrics", kToken, kProxy, test_case.forwarded_for);
    EXPECT_EQ(response.result(), test_case.expected)
        << "X-Forwarded-For: " << test_case.forwarded_for << ": " << response.body();
  }

  // Header lines of one field form one list, so the last line names the client.
  http::request<http::string_body> two_lines{http::verb::get, "/metrics", 11};
  two_lines.set(http::field::authorization, std::string("Bearer ") + kToken);
  two_lines.insert("X-Forwarded-For", "198.51.100.8");
  two_lines.insert("X-Forwarded-For", blocked);
  EXPECT_EQ(exchange(two_lines, kProxy).result(), http::status::too_many_requests);

  // Wrong tokens with a broken header count against the proxy itself.
  for (std::uint32_t i = 0; i < kTestMaxFailures; ++i) {
    EXPECT_EQ(getWithToken("/metrics", "guess", kProxy, "unknown").result(),
              http::status::unauthorized)
        << i;
  }
  EXPECT_EQ(getWithToken("/metrics", kToken, kProxy).result(), http::status::too_many_requests);
  EXPECT_EQ(getWithToken("/metrics", kToken, kProxy, "198.51.100.8").result(), http::status::ok);
}

// A dashboard with a guard of its own would let a client blocked on the
// dashboard go on guessing on /metrics, so the server rejects it.
TEST_F(DashboardServerTest, ServerRequiresSharedGuard) {
  ServerOptions options;
  options.ingest = {"127.0.0.1", 0};
  options.admin = ListenAddress{"127.0.0.1", 0};
  options.admin_guard = std::make_shared<AdminTokenGuard>(kToken, LoginLimitOptions{});
  options.dashboard = dashboard_.get();
  auto health = [] { return HealthReport{true, "{}"}; };
  EXPECT_THROW(CollectorServer(io_, options, *store_, *ingest_, metrics_, health),
               std::invalid_argument);
  options.admin_guard.reset();
  EXPECT_THROW(CollectorServer(io_, options, *store_, *ingest_, metrics_, health),
               std::invalid_argument);
}

}  // namespace
}  // namespace webtrap::collector

namespace webtrap::collector {
namespace {

using LimiterClock = LoginLimiter::Clock;

TEST(LoginLimiterTest, BlocksUntilWindowPasses) {
  LoginLimiter limiter(LoginLimitOptions{3, std::chrono::seconds(60), 100});
  const auto start = LimiterClock::now();
  limiter.recordFailure("192.0.2.1", start);
  limiter.recordFailure("192.0.2.1", start + std::chrono::seconds(1));
  EXPECT_EQ(limiter.retryAfter("192.0.2.1", start + std::chrono::seconds(2)),
            LimiterClock::duration::zero())
      << "blocked after 2 of 3 failures";
  limiter.recordFailure("192.0.2.1", start + std::chrono::seconds(2));
  EXPECT_EQ(limiter.retryAfter("192.0.2.1", start + std::chrono::seconds(2)),
            std::chrono::seconds(60));
  EXPECT_EQ(limiter.retryAfter("192.0.2.1", start + std::chrono::seconds(61)),
            std::chrono::seconds(1));
  EXPECT_EQ(limiter.retryAfter("192.0.2.2", start + std::chrono::seconds(2)),
            LimiterClock::duration::zero())
      << "another address was blocked";
  EXPECT_EQ(limiter.retryAfter("192.0.2.1", start + std::chrono::seconds(62)),
            LimiterClock::duration::zero())
      << "still blocked after the window";

  // After the block, a new window starts: one failure does not block again.
  limiter.recordFailure("192.0.2.1", start + std::chrono::seconds(63));
  EXPECT_EQ(limiter.retryAfter("192.0.2.1", start + std::chrono::seconds(63)),
            LimiterClock::duration::zero());
}

TEST(LoginLimiterTest, FailuresOutsideWindowDoNotAddUp) {
  LoginLimiter limiter(LoginLimitOptions{2, std::chrono::seconds(10), 100});
  const auto start = LimiterClock::now();
  limiter.recordFailure("192.0.2.1", start);
  limiter.recordFailure("192.0.2.1", start + std::chrono::seconds(10));
  EXPECT_EQ(limiter.retryAfter("192.0.2.1", start + std::chrono::seconds(10)),
            LimiterClock::duration::zero());
  limiter.recordFailure("192.0.2.1", start + std::chrono::seconds(11));
  EXPECT_GT(limiter.retryAfter("192.0.2.1", start + std::chrono::seconds(11)),
            LimiterClock::duration::zero());
}

// Clients that share a key (one IPv6 /64, a NAT, a proxy that is not
// trusted) must not clear each other's failures with a right token.
TEST(AdminTokenGuardTest, RightTokenClearsNoCount) {
  using boost::asio::ip::make_address;
  MetricsRegistry metrics;
  AdminTokenGuard guard("right-token", LoginLimitOptions{2, std::chrono::seconds(60), 100},
                        &metrics);
  const auto client = make_address("192.0.2.1");
  EXPECT_FALSE(guard.check("wrong-token", client, AdminRoute::kMetrics));
  EXPECT_FALSE(guard.check("right-tokeN", client, AdminRoute::kMetrics));
  EXPECT_FALSE(guard.check("", client, AdminRoute::kMetrics));
  EXPECT_TRUE(guard.check("right-token", make_address("192.0.2.2"), AdminRoute::kMetrics));
  EXPECT_GT(guard.blockedFor(client, AdminRoute::kDashboardLogin),
            AdminTokenGuard::Clock::duration::zero())
      << "a right token of another client cleared the count";

  const auto shared = make_address("2001:db8:1:2::10");
  const auto neighbour = make_address("2001:db8:1:2::20");
  EXPECT_FALSE(guard.check("wrong-token", shared, AdminRoute::kHealthz));
  EXPECT_TRUE(guard.check("right-token", neighbour, AdminRoute::kHealthz));
  EXPECT_TRUE(guard.check("right-token", shared, AdminRoute::kHealthz));
  EXPECT_FALSE(guard.check("wrong-token", shared, AdminRoute::kHealthz));
  EXPECT_GT(guard.blockedFor(neighbour, AdminRoute::kHealthz),
            AdminTokenGuard::Clock::duration::zero())
      << "a right token from the same /64 cleared the count";

  auto count = [&metrics](const char* route, const char* reason) {
    return metrics
        .counter("webtrap_collector_admin_token_rejected_total", "",
                 std::string("route=\"") + route + "\",reason=\"" + reason + "\"")
        .value();
  };
  EXPECT_EQ(count("/metrics", "wrong_token"), 3u);
  EXPECT_EQ(count("/healthz", "wrong_token"), 2u);
  EXPECT_EQ(count("/dashboard/login", "rate_limited"), 1u);
  EXPECT_EQ(count("/healthz", "rate_limited"), 1u);
  EXPECT_EQ(count("/metrics", "rate_limited"), 0u);
}

TEST(AdminTokenGuardTest, RejectsEmptyToken) {
  EXPECT_THROW(AdminTokenGuard("", LoginLimitOptions{}), std::invalid_argument);
}

TEST(AdminTokenGuardTest, RetryAfterRoundsUp) {
  using std::chrono::milliseconds;
  EXPECT_EQ(AdminTokenGuard::retryAfterSeconds(milliseconds(1)), 1);
  EXPECT_EQ(AdminTokenGuard::retryAfterSeconds(milliseconds(1500)), 2);
  EXPECT_EQ(AdminTokenGuard::retryAfterSeconds(std::chrono::seconds(60)), 60);
  const std::string message = AdminTokenGuard::blockedMessage(milliseconds(1500));
  EXPECT_NE(message.find("too many wrong admin tokens"), std::string::npos) << message;
  EXPECT_NE(message.find("retry after 2 s"), std::string::npos) << message;
}

TEST(LoginLimiterTest, EvictsOldestClient) {
  LoginLimiter limiter(LoginLimitOptions{1, std::chrono::seconds(60), 2});
  const auto start = LimiterClock::now();
  limiter.recordFailure("192.0.2.1", start);
  limiter.recordFailure("192.0.2.2", start + std::chrono::seconds(1));
  // A new failure of .1 makes .2 the client quiet longest.
  limiter.recordFailure("192.0.2.1", start + std::chrono::seconds(2));
  limiter.recordFailure("192.0.2.3", start + std::chrono::seconds(3));
  EXPECT_EQ(limiter.trackedClients(), 2u);
  const auto now = start + std::chrono::seconds(4);
  EXPECT_GT(limiter.retryAfter("192.0.2.1", now), LimiterClock::duration::zero());
  EXPECT_EQ(limiter.retryAfter("192.0.2.2", now), LimiterClock::duration::zero())
      << "the oldest client was not evicted";
  EXPECT_GT(limiter.retryAfter("192.0.2.3", now), LimiterClock::duration::zero());
  for (int i = 0; i < 1000; ++i) {
    limiter.recordFailure("198.51.100." + std::to_string(i % 250) + "/" + std::to_string(i), now);
  }
  EXPECT_EQ(limiter.trackedClients(), 2u);
}

// A blocked attacker with many addresses must not free its own block with
// one cheap failure from each of max_clients other addresses.
TEST(LoginLimiterTest, BlockedClientOutlastsEviction) {
  LoginLimiter limiter(LoginLimitOptions{3, std::chrono::seconds(60), 4});
  const auto start = LimiterClock::now();
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(limiter.recordFailure("192.0.2.1", start));
  }
  ASSERT_GT(limiter.retryAfter("192.0.2.1", start), LimiterClock::duration::zero());
  int evicted_counting = 0;
  for (int i = 0; i < 40; ++i) {
    const auto now = start + std::chrono::milliseconds(100 * (i + 1));
    evicted_counting += limiter.recordFailure("198.51.100." + std::to_string(i), now) ? 1 : 0;
  }
  const auto now = start + std::chrono::seconds(5);
  EXPECT_GT(limiter.retryAfter("192.0.2.1", now), LimiterClock::duration::zero())
      << "failures of other addresses pushed the blocked client out";
  EXPECT_EQ(limiter.trackedClients(), 4u);
  EXPECT_EQ(evicted_counting, 37) << "each address past the first 3 pushed out one that counted";
}

// When every tracked client is blocked, the one whose block ends first
// goes, and a block that has ended goes before an unblocked client.
TEST(LoginLimiterTest, EvictsEndedBlockFirst) {
  LoginLimiter limiter(LoginLimitOptions{2, std::chrono::seconds(10), 2});
  const auto start = LimiterClock::now();
  limiter.recordFailure("192.0.2.1", start);
  limiter.recordFailure("192.0.2.1", start);
  limiter.recordFailure("192.0.2.2", start + std::chrono::seconds(11));
  // .1's block ended at 10 s, so it goes, not .2 with one failure left.
  EXPECT_FALSE(limiter.recordFailure("192.0.2.3", start + std::chrono::seconds(12)))
      << "an ended block was reported as a limit lost";
  limiter.recordFailure("192.0.2.2", start + std::chrono::seconds(13));
  EXPECT_GT(limiter.retryAfter("192.0.2.2", start + std::chrono::seconds(13)),
            LimiterClock::duration::zero())
      << "the unblocked client went before the ended block";

  // Both tracked clients blocked: .2 (blocked at 13 s) goes before .3.
  limiter.recordFailure("192.0.2.3", start + std::chrono::seconds(14));
  EXPECT_TRUE(limiter.recordFailure("192.0.2.4", start + std::chrono::seconds(15)));
  const auto now = start + std::chrono::seconds(16);
  EXPECT_EQ(limiter.retryAfter("192.0.2.2", now), LimiterClock::duration::zero());
  EXPECT_GT(limiter.retryAfter("192.0.2.3", now), LimiterClock::duration::zero());
  EXPECT_EQ(limiter.trackedClients(), 2u);
}

TEST(AdminTokenGuardTest, CountsEvictedClients) {
  using boost::asio::ip::make_address;
  MetricsRegistry metrics;
  AdminTokenGuard guard("right-token", LoginLimitOptions{5, std::chrono::seconds(60), 2},
                        &metrics);
  EXPECT_FALSE(guard.check("wrong", make_address("192.0.2.1"), AdminRoute::kMetrics));
  EXPECT_FALSE(guard.check("wrong", make_address("192.0.2.2"), AdminRoute::kMetrics));
  EXPECT_FALSE(guard.check("wrong", make_address("192.0.2.3"), AdminRoute::kMetrics));
  EXPECT_EQ(metrics.counter("webtrap_collector_admin_token_clients_evicted_total", "").value(),
            1u);
}

TEST(LoginLimiterTest, ZeroFailuresTurnsLimitOff) {
  LoginLimiter limiter(LoginLimitOptions{0, std::chrono::seconds(60), 100});
  const auto start = LimiterClock::now();
  for (int i = 0; i < 100; ++i) {
    limiter.recordFailure("192.0.2.1", start);
  }
  EXPECT_EQ(limiter.retryAfter("192.0.2.1", start), LimiterClock::duration::zero());
  EXPECT_EQ(limiter.trackedClients(), 0u);
}

TEST(LoginLimiterTest, KeysIpv6ByPrefix) {
  using boost::asio::ip::make_address;
  EXPECT_EQ(LoginLimiter::clientKey(make_address("203.0.113.7")), "203.0.113.7");
  EXPECT_EQ(LoginLimiter::clientKey(make_address("::ffff:203.0.113.7")), "203.0.113.7");
  EXPECT_EQ(LoginLimiter::clientKey(make_address("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
  EXPECT_EQ(LoginLimiter::clientKey(make_address("2001:db8:1:2:bbbb::9")),
            LoginLimiter::clientKey(make_address("2001:db8:1:2:aaaa::1")));
  EXPECT_NE(LoginLimiter::clientKey(make_address("2001:db8:1:3::1")),
            LoginLimiter::clientKey(make_address("2001:db8:1:2::1")));
}

TEST(DashboardOptionsTest, ParsesLoginLimits) {
  DashboardOptions defaults = parseDashboardOptions(YAML::Load("{enabled: true}"));
  EXPECT_EQ(defaults.login_limits.max_failures, 10u);
  EXPECT_EQ(defaults.login_limits.window, std::chrono::seconds(300));
  EXPECT_EQ(defaults.login_limits.max_clients, 10000u);

  DashboardOptions set = parseDashboardOptions(YAML::Load(
      "{enabled: true, login_max_failures: 5, login_window: 2m, login_max_clients: 50}"));
  EXPECT_EQ(set.login_limits.max_failures, 5u);
  EXPECT_EQ(set.login_limits.window, std::chrono::seconds(120));
  EXPECT_EQ(set.login_limits.max_clients, 50u);

  for (const char* invalid : {"{login_window: 500ms}", "{login_window: 1500ms}",
                              "{login_window: 60}", "{login_max_clients: 0}",
                              "{login_max_failures: -1}", "{login_limit: 3}"}) {
    EXPECT_THROW(parseDashboardOptions(YAML::Load(invalid)), ConfigError) << invalid;
  }
}

TEST(DashboardWorkersTest, BoundsQueueAndStops) {
  DashboardWorkers workers(1, 2);
  std::promise<void> started;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  ASSERT_TRUE(workers.submit([&started, released] {
    started.set_value();
    released.wait();
  }));
  started.get_future().wait();

  std::atomic<int> ran{0};
  EXPECT_TRUE(workers.submit([&ran] { ++ran; }));
  EXPECT_TRUE(workers.submit([&ran] { ++ran; }));
  EXPECT_FALSE(workers.submit([&ran] { ++ran; })) << "a third task fit in a queue of two";
  EXPECT_EQ(workers.queued(), 2u);

  // stop() waits for the running task, so it runs on another thread until
  // the task is released. The queued tasks are dropped without running.
  std::thread stopper([&workers] { workers.stop(); });
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (workers.queued() != 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  release.set_value();
  stopper.join();
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(workers.queued(), 0u);
  EXPECT_FALSE(workers.submit([&ran] { ++ran; })) << "a stopped pool took a task";
}

}  // namespace
}  // namespace webtrap::collector
