// A limit of one log line per interval for a message that can repeat many
// times a second, such as a failed send or a failed accept, with a count of
// the lines left out.
#pragma once

#include <chrono>
#include <cstdint>

namespace webtrap {

class LogThrottle {
 public:
  using Clock = std::chrono::steady_clock;

  explicit LogThrottle(Clock::duration interval) : interval_(interval) {}

  // Returns true when a line may be logged now: on the first call, and then
  // once the interval has passed since the last line. Counts a false call as
  // suppressed.
  bool admit(Clock::time_point now = Clock::now()) {
    if (logged_ && now - last_ < interval_) {
      ++suppressed_;
      return false;
    }
    logged_ = true;
    last_ = now;
    return true;
  }

  // Returns the number of calls suppressed since the last admitted one, and
  // starts that count again. Call it for the line that admit() allowed.
  std::uint64_t takeSuppressed() {
    std::uint64_t count = suppressed_;
    suppressed_ = 0;
    return count;
  }

  // Forgets the last line, so the next admit() returns true.
  void reset() {
    logged_ = false;
    suppressed_ = 0;
  }

 private:
  Clock::duration interval_;
  Clock::time_point last_{};
  bool logged_ = false;
  std::uint64_t suppressed_ = 0;
};

}  // namespace webtrap
