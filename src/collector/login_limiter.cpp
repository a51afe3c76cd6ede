#include "collector/login_limiter.h"

#include <array>

namespace webtrap::collector {

LoginLimiter::LoginLimiter(LoginLimitOptions options) : options_(options) {}

std::string LoginLimiter::clientKey(const boost::asio::ip::address& address) {
  if (address.is_v4()) {
    return address.to_v4().to_string();
  }
  const boost::asio::ip::address_v6 v6 = address.to_v6();
  if (v6.is_v4_mapped()) {
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).to_string();
  }
  std::array<unsigned char, 16> bytes = v6.to_bytes();
  std::fill(bytes.begin() + 8, bytes.end(), 0);
  return boost::asio::ip::address_v6(bytes).to_string() + "/64";
}

LoginLimiter::Clock::duration LoginLimiter::retryAfter(const std::string& client,
                                                       Clock::time_point now) {
  if (options_.max_failures == 0) {
    return Clock::duration::zero();
  }
  std::lock_guard lock(mutex_);
  auto found = by_client_.find(client);
  if (found == by_client_.end() || found->second->blocked_until <= now) {
    return Clock::duration::zero();
  }
  return found->second->blocked_until - now;
}

void LoginLimiter::recordFailure(const std::string& client, Clock::time_point now) {
  if (options_.max_failures == 0 || options_.max_clients == 0) {
    return;
  }
  std::lock_guard lock(mutex_);
  auto found = by_client_.find(client);
  std::list<Entry>::iterator entry;
  if (found != by_client_.end()) {
    entry = found->second;
    // The most recent failure goes last, so eviction takes the client
    // that has been quiet longest.
    entries_.splice(entries_.end(), entries_, entry);
  } else {
    while (entries_.size() >= options_.max_clients) {
      by_client_.erase(entries_.front().client);
      entries_.pop_front();
    }
    entry = entries_.insert(entries_.end(), Entry{client, now, 0, Clock::time_point::min()});
    by_client_.emplace(client, entry);
  }
  if (now - entry->window_start >= options_.window) {
    entry->window_start = now;
    entry->failures = 0;
  }
  ++entry->failures;
  if (entry->failures >= options_.max_failures) {
    entry->blocked_until = now + options_.window;
  }
}

std::size_t LoginLimiter::trackedClients() {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace webtrap::collector
