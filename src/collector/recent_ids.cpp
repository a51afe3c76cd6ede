#include "collector/recent_ids.h"

#include <functional>

namespace webtrap::collector {

RecentIds::RecentIds(std::size_t capacity) : ring_(capacity == 0 ? 1 : capacity), index_(capacity) {}

std::uint64_t RecentIds::hashOf(std::string_view id) {
  return static_cast<std::uint64_t>(std::hash<std::string_view>{}(id));
}

bool RecentIds::addIfNew(std::string_view id) {
  const std::uint64_t hash = hashOf(id);
  std::lock_guard lock(mutex_);
  if (index_.find(hash) != nullptr) {
    return false;
  }
  if (full_) {
    // The slot's old hash may be gone already, after forget().
    index_.erase(ring_[next_]);
  }
  ring_[next_] = hash;
  index_.insert(hash, true);
  next_ = (next_ + 1) % ring_.size();
  full_ = full_ || next_ == 0;
  return true;
}

void RecentIds::forget(std::string_view id) {
  std::lock_guard lock(mutex_);
  index_.erase(hashOf(id));
}

std::size_t RecentIds::size() const {
  std::lock_guard lock(mutex_);
  return index_.size();
}

}  // namespace webtrap::collector
