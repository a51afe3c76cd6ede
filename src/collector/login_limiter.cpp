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

bool LoginLimiter::recordFailure(const std::string& client, Clock::time_point now) {
  if (options_.max_failures == 0 || options_.max_clients == 0) {
    return false;
  }
  std::lock_guard lock(mutex_);
  bool evicted_counting = false;
  auto found = by_client_.find(client);
  std::list<Entry>::iterator entry;
  if (found != by_client_.end()) {
    entry = found->second;
  } else {
    while (unblocked_.size() + blocked_.size() >= options_.max_clients) {
      evicted_counting = evictOne(now) || evicted_counting;
    }
    entry = unblocked_.insert(unblocked_.end(),
                              Entry{client, now, 0, Clock::time_point::min(), now, false});
    by_client_.emplace(client, entry);
  }
  if (now - entry->window_start >= options_.window) {
    entry->window_start = now;
    entry->failures = 0;
  }
  ++entry->failures;
  entry->last_failure = now;
  if (entry->failures >= options_.max_failures) {
    entry->blocked_until = now + options_.window;
  }
  // The most recent failure or block goes last in its list. Splicing keeps
  // the iterator in by_client_ valid, also from one list to the other.
  const bool blocked = entry->blocked_until > now;
  std::list<Entry>& source = entry->in_blocked ? blocked_ : unblocked_;
  std::list<Entry>& target = blocked ? blocked_ : unblocked_;
  target.splice(target.end(), source, entry);
  entry->in_blocked = blocked;
  return evicted_counting;
}

bool LoginLimiter::evictOne(Clock::time_point now) {
  std::list<Entry>* victims = &blocked_;
  if (!unblocked_.empty() && (blocked_.empty() || blocked_.front().blocked_until > now)) {
    victims = &unblocked_;
  }
  const Entry& victim = victims->front();
  // A block lasts `window` past its failure, so an entry whose last
  // failure is `window` old no longer counts, blocked or not.
  const bool counting = now - victim.last_failure < options_.window;
  by_client_.erase(victim.client);
  victims->pop_front();
  return counting;
}

std::size_t LoginLimiter::trackedClients() {
  std::lock_guard lock(mutex_);
  return unblocked_.size() + blocked_.size();
}

}  // namespace webtrap::collector
