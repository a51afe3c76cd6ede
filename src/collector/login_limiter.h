// A limit on failed admin tokens per client address, shared by every
// route of the admin listener that checks the token (AdminTokenGuard).
// Anyone who reaches the admin listener can guess admin tokens as fast as
// it responds, so after `max_failures` failed attempts within `window`, a
// client is blocked for `window` (429 with Retry-After). Clients are
// tracked by address: an IPv4 address, or the /64 prefix of an IPv6
// address, because one host usually gets a whole /64. At most
// `max_clients` are tracked, and the one whose last failure is oldest is
// forgotten first. A right token clears no count, because clients that
// share a key would clear each other's failures.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>

#include <boost/asio/ip/address.hpp>

namespace webtrap::collector {

struct LoginLimitOptions {
  // Failed logins within `window` that block a client. 0 turns the limit off.
  std::uint32_t max_failures = 10;
  std::chrono::seconds window{300};
  std::size_t max_clients = 10000;
};

class LoginLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  explicit LoginLimiter(LoginLimitOptions options);

  // Returns the key that failures are counted by: the IPv4 address (also
  // for an IPv4-mapped IPv6 address), or the IPv6 /64 prefix as "ADDR/64".
  static std::string clientKey(const boost::asio::ip::address& address);

  // Returns how long `client` must wait before its next login attempt, or
  // zero when it may try now.
  Clock::duration retryAfter(const std::string& client, Clock::time_point now);
  // Counts a failed attempt of `client`.
  void recordFailure(const std::string& client, Clock::time_point now);
  // Returns the number of clients tracked now.
  std::size_t trackedClients();
  const LoginLimitOptions& options() const { return options_; }

 private:
  struct Entry {
    std::string client;
    Clock::time_point window_start;
    std::uint32_t failures = 0;
    Clock::time_point blocked_until;
  };

  const LoginLimitOptions options_;
  std::mutex mutex_;
  // Oldest last failure first.
  std::list<Entry> entries_;
  std::unordered_map<std::string, std::list<Entry>::iterator> by_client_;
};

}  // namespace webtrap::collector
