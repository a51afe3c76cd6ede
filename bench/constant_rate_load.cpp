// Open-loop HTTP/1.1 load generator for the benchmark: sends one fixed request
// at a constant rate to a loopback server and prints latency percentiles as
// one JSON object on stdout.
//
// Request i is due at start + i / rate, whether or not earlier responses have
// arrived. Its latency runs from that due time to the end of its response, so
// a server that stalls is charged for every request that waited behind the
// stall (no coordinated omission). A request goes out on an idle keep-alive
// connection, else on a new connection while fewer than --max-connections
// are open, else it waits in a FIFO until a connection frees up. Requests
// still unanswered when the drain timeout ends count as unfinished and rank
// above every measured latency in the percentiles.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;
  double rate = 0;
  double duration_s = 0;
  double drain_s = 10;
  std::size_t max_connections = 512;
  std::string request_file;
};

struct Stats {
  std::vector<std::int64_t> latencies_us;
  std::uint64_t completed = 0;
  std::uint64_t failed = 0;
  std::uint64_t status_2xx = 0;
  std::uint64_t status_other = 0;
  std::uint64_t connections_opened = 0;
  std::uint64_t retries = 0;
  std::uint64_t max_backlog = 0;
  Clock::time_point last_completion;
};

class LoadRun;

// One client connection that carries requests one after another (no
// pipelining), reconnecting when the server closes it.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::io_context& io, LoadRun& run) : socket_(io), run_(run) {}

  void send(std::uint64_t index);

 private:
  void onConnect(const boost::system::error_code& error);
  void writeRequest();
  void onWrite(const boost::system::error_code& error);
  void onRead(const boost::system::error_code& error);
  void fail();
  void finish(bool ok, unsigned status);

  tcp::socket socket_;
  LoadRun& run_;
  beast::flat_buffer buffer_;
  std::optional<http::response_parser<http::string_body>> parser_;
  std::uint64_t index_ = 0;
  bool connected_ = false;
  // Whether the request in flight went out on a connection that had
  // carried an earlier request, which the server may have closed as idle.
  bool reused_ = false;
};

class LoadRun {
 public:
  LoadRun(asio::io_context& io, const Options& options, std::string request)
      : io_(io),
        options_(options),
        request_(std::move(request)),
        endpoint_(asio::ip::make_address(options.address), options.port),
        timer_(io),
        total_(static_cast<std::uint64_t>(std::llround(options.rate * options.duration_s))) {
    stats_.latencies_us.reserve(total_);
  }

  void start() {
    start_ = Clock::now() + std::chrono::milliseconds(50);
    scheduleNext();
  }

  Clock::time_point dueTime(std::uint64_t index) const {
    auto offset = std::chrono::duration<double>(static_cast<double>(index) / options_.rate);
    return start_ + std::chrono::duration_cast<Clock::duration>(offset);
  }

  const std::string& request() const { return request_; }
  const tcp::endpoint& endpoint() const { return endpoint_; }

  // Records the outcome of request `index` and hands the connection the next
  // waiting request, if any.
  void complete(const std::shared_ptr<Connection>& connection, std::uint64_t index, bool ok,
                unsigned status) {
    auto now = Clock::now();
    if (ok) {
      ++stats_.completed;
      stats_.last_completion = now;
      auto latency = std::chrono::duration_cast<std::chrono::microseconds>(now - dueTime(index));
      stats_.latencies_us.push_back(latency.count());
      if (status >= 200 && status < 300) {
        ++stats_.status_2xx;
      } else {
        ++stats_.status_other;
      }
    } else {
      ++stats_.failed;
    }

    if (!backlog_.empty()) {
      std::uint64_t next = backlog_.front();
      backlog_.pop_front();
      connection->send(next);
    } else {
      idle_.push_back(connection);
    }
    stopIfDone();
  }

  const Stats& stats() const { return stats_; }
  std::uint64_t total() const { return total_; }
  Clock::time_point startTime() const { return start_; }
  std::size_t connectionsOpen() const { return connections_; }

  void countConnect() { ++stats_.connections_opened; }
  void countRetry() { ++stats_.retries; }

 private:
  void scheduleNext() {
    timer_.expires_at(dueTime(next_));
    timer_.async_wait([this](const boost::system::error_code& error) {
      if (error) {
        return;
      }
      onTimer();
    });
  }

  // Dispatches every request that is due by now, so a late timer catches up
  // instead of lowering the rate.
  void onTimer() {
    auto now = Clock::now();
    while (next_ < total_ && dueTime(next_) <= now) {
      dispatch(next_++);
    }
    if (next_ < total_) {
      scheduleNext();
      return;
    }
    drain_deadline_ = now + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(options_.drain_s));
    timer_.expires_at(drain_deadline_);
    timer_.async_wait([this](const boost::system::error_code& error) {
      if (!error) {
        io_.stop();
      }
    });
    stopIfDone();
  }

  void dispatch(std::uint64_t index) {
    if (!idle_.empty()) {
      auto connection = idle_.back();
      idle_.pop_back();
      connection->send(index);
      return;
    }
    if (connections_ < options_.max_connections) {
      ++connections_;
      std::make_shared<Connection>(io_, *this)->send(index);
      return;
    }
    backlog_.push_back(index);
    stats_.max_backlog = std::max<std::uint64_t>(stats_.max_backlog, backlog_.size());
  }

  void stopIfDone() {
    if (next_ == total_ && stats_.completed + stats_.failed == total_) {
      io_.stop();
    }
  }

  asio::io_context& io_;
  const Options& options_;
  std::string request_;
  tcp::endpoint endpoint_;
  asio::steady_timer timer_;
  std::uint64_t total_;
  std::uint64_t next_ = 0;
  Clock::time_point start_;
  Clock::time_point drain_deadline_;
  std::size_t connections_ = 0;
  std::vector<std::shared_ptr<Connection>> idle_;
  std::deque<std::uint64_t> backlog_;
  Stats stats_;
};

void Connection::send(std::uint64_t index) {
  index_ = index;
  reused_ = connected_;
  parser_.reset();
  if (connected_) {
    writeRequest();
    return;
  }
  run_.countConnect();
  socket_.async_connect(run_.endpoint(),
                        [self = shared_from_this()](const boost::system::error_code& error) {
                          self->onConnect(error);
                        });
}

void Connection::onConnect(const boost::system::error_code& error) {
  if (error) {
    finish(false, 0);
    return;
  }
  connected_ = true;
  socket_.set_option(tcp::no_delay(true));
  writeRequest();
}

void Connection::writeRequest() {
  asio::async_write(socket_, asio::buffer(run_.request()),
                    [self = shared_from_this()](const boost::system::error_code& error,
                                                std::size_t) { self->onWrite(error); });
}

void Connection::onWrite(const boost::system::error_code& error) {
  if (error) {
    fail();
    return;
  }
  parser_.emplace();
  parser_->body_limit(64 * 1024 * 1024);
  http::async_read(socket_, buffer_, *parser_,
                   [self = shared_from_this()](const boost::system::error_code& error,
                                               std::size_t) { self->onRead(error); });
}

void Connection::onRead(const boost::system::error_code& error) {
  if (error) {
    fail();
    return;
  }
  bool keep_alive = parser_->keep_alive();
  unsigned status = parser_->get().result_int();
  if (!keep_alive) {
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    connected_ = false;
    buffer_.clear();
  }
  finish(true, status);
}

// A keep-alive connection that the server closed while it was idle fails on
// its next request before any response byte arrives. Like a browser, send
// that request again once on a new connection; its latency still runs from
// the original due time.
void Connection::fail() {
  bool stale = reused_ && !(parser_ && parser_->got_some());
  boost::system::error_code ignored;
  socket_.close(ignored);
  connected_ = false;
  buffer_.clear();
  if (stale) {
    run_.countRetry();
    socket_ = tcp::socket(socket_.get_executor());
    send(index_);
    return;
  }
  finish(false, 0);
}

void Connection::finish(bool ok, unsigned status) {
  if (!ok) {
    boost::system::error_code ignored;
    socket_.close(ignored);
    connected_ = false;
    buffer_.clear();
  }
  run_.complete(shared_from_this(), index_, ok, status);
}

std::int64_t percentile(const std::vector<std::int64_t>& sorted, std::uint64_t total, double q) {
  if (total == 0) {
    return -1;
  }
  // Nearest-rank over every scheduled request; ranks past the measured ones
  // belong to failed or unfinished requests and have no finite latency.
  auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total)));
  rank = std::max<std::uint64_t>(rank, 1);
  if (rank > sorted.size()) {
    return -1;
  }
  return sorted[rank - 1];
}

void printUsage() {
  std::cerr << "usage: constant_rate_load --port PORT --rate REQ_PER_S --duration SECONDS\n"
               "         --request-file FILE [--address 127.0.0.1] [--drain SECONDS]\n"
               "         [--max-connections N]\n"
               "FILE holds the raw HTTP/1.1 request bytes, sent unchanged each time.\n"
               "Only loopback addresses are accepted.\n";
}

std::optional<Options> parseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string key = argv[i];
    if (i + 1 >= argc) {
      std::cerr << "error: option " << key << " needs a value\n";
      return std::nullopt;
    }
    std::string value = argv[++i];
    try {
      if (key == "--address") {
        options.address = value;
      } else if (key == "--port") {
        options.port = static_cast<std::uint16_t>(std::stoul(value));
      } else if (key == "--rate") {
        options.rate = std::stod(value);
      } else if (key == "--duration") {
        options.duration_s = std::stod(value);
      } else if (key == "--drain") {
        options.drain_s = std::stod(value);
      } else if (key == "--max-connections") {
        options.max_connections = std::stoul(value);
      } else if (key == "--request-file") {
        options.request_file = value;
      } else {
        std::cerr << "error: unknown option " << key << "\n";
        return std::nullopt;
      }
    } catch (const std::exception&) {
      std::cerr << "error: invalid value '" << value << "' for " << key << "\n";
      return std::nullopt;
    }
  }
  if (options.port == 0 || options.rate <= 0 || options.duration_s <= 0 ||
      options.duration_s > 600 || options.max_connections == 0 || options.request_file.empty()) {
    std::cerr << "error: --port, --rate > 0, --duration in (0, 600] and --request-file are "
                 "required\n";
    return std::nullopt;
  }
  boost::system::error_code error;
  auto address = asio::ip::make_address(options.address, error);
  if (error || !address.is_loopback()) {
    std::cerr << "error: invalid --address '" << options.address
              << "'; this generator only targets loopback (127.0.0.0/8 or ::1)\n";
    return std::nullopt;
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  auto options = parseOptions(argc, argv);
  if (!options) {
    printUsage();
    return 2;
  }
  std::ifstream file(options->request_file, std::ios::binary);
  if (!file) {
    std::cerr << "error: cannot read request file " << options->request_file << "\n";
    return 2;
  }
  std::string request((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());

  asio::io_context io(1);
  LoadRun run(io, *options, std::move(request));
  run.start();
  io.run();

  const Stats& stats = run.stats();
  std::vector<std::int64_t> sorted = stats.latencies_us;
  std::sort(sorted.begin(), sorted.end());
  double elapsed_s =
      stats.completed == 0
          ? 0
          : std::chrono::duration<double>(stats.last_completion - run.startTime()).count();
  std::uint64_t unfinished = run.total() - stats.completed - stats.failed;

  std::ostringstream out;
  out << "{\"target_rate\":" << options->rate << ",\"duration_s\":" << options->duration_s
      << ",\"scheduled\":" << run.total() << ",\"completed\":" << stats.completed
      << ",\"failed\":" << stats.failed << ",\"unfinished\":" << unfinished
      << ",\"status_2xx\":" << stats.status_2xx << ",\"status_other\":" << stats.status_other
      << ",\"achieved_rate\":" << (elapsed_s > 0 ? stats.completed / elapsed_s : 0)
      << ",\"connections_opened\":" << stats.connections_opened
      << ",\"retries\":" << stats.retries
      << ",\"max_backlog\":" << stats.max_backlog
      << ",\"p50_us\":" << percentile(sorted, run.total(), 0.50)
      << ",\"p90_us\":" << percentile(sorted, run.total(), 0.90)
      << ",\"p99_us\":" << percentile(sorted, run.total(), 0.99)
      << ",\"p999_us\":" << percentile(sorted, run.total(), 0.999)
      << ",\"max_us\":" << (sorted.empty() ? -1 : sorted.back()) << "}\n";
  std::cout << out.str();
  return 0;
}
