// The event ids of the most recent records, so that a record sent again
// (after a lost acknowledgement, or from a probe's journal recovery) is not
// counted twice by the behavioural tagger.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string_view>
#include <vector>

#include "collector/key_index.h"

namespace webtrap::collector {

// Remembers the 64-bit hashes of the last `capacity` event ids. Thread safe.
// The list starts empty at each start of the collector, as the tagger's
// windows do, so a record sent again after a restart counts once in them.
// NOTE: a record sent again after `capacity` newer ones counts twice.
class RecentIds {
 public:
  explicit RecentIds(std::size_t capacity);

  // Returns true and remembers `id` when it is not among the recent ids.
  bool addIfNew(std::string_view id);
  // Forgets `id`, as when the batch that added it failed to commit.
  void forget(std::string_view id);

  std::size_t size() const;

 private:
  static std::uint64_t hashOf(std::string_view id);

  mutable std::mutex mutex_;
  std::vector<std::uint64_t> ring_;  // oldest at `next_` once full
  std::size_t next_ = 0;
  bool full_ = false;
  KeyIndex<bool> index_;
};

}  // namespace webtrap::collector
