#include "common/admin_listener.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

namespace webtrap {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class AdminListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_.counter("webtrap_test_total", "A counter for the test").inc();
    listener_ = std::make_shared<AdminListener>(openAcceptor(io_, "127.0.0.1", 0, "test"),
                                                registry_);
    port_ = listener_->port();
    listener_->start();
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    io_.stop();
    thread_.join();
    listener_->close();
  }

  std::unique_ptr<tcp::socket> connect() {
    auto socket = std::make_unique<tcp::socket>(client_io_);
    socket->connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
    return socket;
  }

  // Sends GET `target` on a new connection and returns all it receives until
  // the server closes it.
  std::string get(const std::string& target) {
    auto socket = connect();
    std::string request = "GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n";
    asio::write(*socket, asio::buffer(request));
    std::string received;
    boost::system::error_code error;
    asio::read(*socket, asio::dynamic_buffer(received), error);
    return received;
  }

  asio::io_context io_;
  asio::io_context client_io_;
  MetricsRegistry registry_;
  std::shared_ptr<AdminListener> listener_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

TEST_F(AdminListenerTest, ServesMetrics) {
  std::string response = get("/metrics");
  EXPECT_TRUE(response.starts_with("HTTP/1.1 200")) << response;
  EXPECT_NE(response.find("webtrap_test_total 1"), std::string::npos) << response;
}

TEST_F(AdminListenerTest, ClosesConnectionsPastLimit) {
  std::vector<std::unique_ptr<tcp::socket>> idle;
  for (std::uint32_t i = 0; i < AdminListener::kMaxSessions; ++i) {
    idle.push_back(connect());
  }
  // The listener accepts in connection order, so this one comes after the
  // idle ones, which hold their sessions for 10 s.
  std::string refused = get("/metrics");
  EXPECT_EQ(refused, "") << "a connection past the limit was served";

  // The sessions end once they read the end of the closed connections.
  idle.clear();
  std::string served;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!served.starts_with("HTTP/1.1 200") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    served = get("/metrics");
  }
  EXPECT_TRUE(served.starts_with("HTTP/1.1 200")) << served;
}

}  // namespace
}  // namespace webtrap
