#include "common/log_throttle.h"

#include <chrono>

#include <gtest/gtest.h>

namespace webtrap {
namespace {

using std::chrono::seconds;

TEST(LogThrottle, AdmitsFirstCall) {
  LogThrottle throttle(seconds(10));
  EXPECT_TRUE(throttle.admit(LogThrottle::Clock::time_point{} + seconds(1)));
  EXPECT_EQ(throttle.takeSuppressed(), 0u);
}

TEST(LogThrottle, SuppressesWithinInterval) {
  const auto start = LogThrottle::Clock::now();
  LogThrottle throttle(seconds(10));
  ASSERT_TRUE(throttle.admit(start));
  EXPECT_FALSE(throttle.admit(start + seconds(1)));
  EXPECT_FALSE(throttle.admit(start + seconds(9)));
  EXPECT_TRUE(throttle.admit(start + seconds(10)));
  EXPECT_EQ(throttle.takeSuppressed(), 2u);
  EXPECT_EQ(throttle.takeSuppressed(), 0u);
}

TEST(LogThrottle, ResetAdmitsNextCall) {
  const auto start = LogThrottle::Clock::now();
  LogThrottle throttle(seconds(10));
  ASSERT_TRUE(throttle.admit(start));
  EXPECT_FALSE(throttle.admit(start + seconds(1)));
  throttle.reset();
  EXPECT_TRUE(throttle.admit(start + seconds(2)));
  EXPECT_EQ(throttle.takeSuppressed(), 0u);
}

}  // namespace
}  // namespace webtrap
