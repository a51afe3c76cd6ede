// The dashboard on a real admin listener (CollectorServer on loopback). Its
// queries run on the dashboard's workers, so a query that is still running
// does not hold up /healthz on the same I/O thread. A full queue gets 503
// with Retry-After.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "collector/dashboard_http.h"
#include "collector/dashboard_index.h"
#include "collector/dashboard_queries.h"
#include "collector/dashboard_workers.h"
#include "collector/enrich.h"
#include "collector/ingest.h"
#include "collector/server.h"
#include "collector/store.h"
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
    dashboard_ = std::make_unique<DashboardHttp>(*queries_, kToken, 1, 1);
    ServerOptions options;
    options.ingest = {"127.0.0.1", 0};
    options.admin = ListenAddress{"127.0.0.1", 0};
    options.admin_token = kToken;
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

}  // namespace
}  // namespace webtrap::collector

namespace webtrap::collector {
namespace {

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
