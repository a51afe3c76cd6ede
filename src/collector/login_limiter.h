// A limit on failed admin tokens per client address, shared by every
// route of the admin listener that checks the token (AdminTokenGuard).
// Anyone who reaches the admin listener can guess admin tokens as fast as
// it responds, so after `max_failures` failed attempts within `window`, a
// client is blocked for `window` (429 with Retry-After). Clients are
// tracked by address: an IPv4 address, or the /64 prefix of an IPv6
// address, because one host usually gets a whole /64. At most
// `max_clients` are tracked. When a new client needs room, a client whose
// block has ended goes first, then the unblocked client whose last failure
// is oldest, and a blocked client only when every tracked client is
// blocked, the one whose block ends first. So a blocked attacker cannot
// push itself out with one failure from each of `max_clients` addresses.
// A right token clears no count, because clients that share a key would
// clear each other's failures.
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
  // Counts a failed attempt of `client`. Returns true when that pushed out
  // another client whose failures still counted (blocked, or inside its
  // window), which the caller counts as a lost limit.
  bool recordFailure(const std::string& client, Clock::time_point now);
  // Returns the number of clients tracked now.
  std::size_t trackedClients();
  const LoginLimitOptions& options() const { return options_; }

 private:
  struct Entry {
    std::string client;
    Clock::time_point window_start;
    std::uint32_t failures = 0;
    Clock::time_point blocked_until;
    Clock::time_point last_failure;
    // Whether the entry is in blocked_ (else in unblocked_).
    bool in_blocked = false;
  };

  // Removes one entry to make room, in the order the class comment gives.
  // Returns true when its failures still counted at `now`.
  bool evictOne(Clock::time_point now);

  const LoginLimitOptions options_;
  std::mutex mutex_;
  // Clients not blocked at their last failure, oldest last failure first.
  std::list<Entry> unblocked_;
  // Clients blocked at their last failure, earliest block end first,
  // because each block lasts `window` from the failure that set it.
  std::list<Entry> blocked_;
  std::unordered_map<std::string, std::list<Entry>::iterator> by_client_;
};

}  // namespace webtrap::collector
