#include "common/ids.h"

#include <sys/wait.h>
#include <unistd.h>

#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace webtrap {
namespace {

using std::chrono::milliseconds;
using std::chrono::system_clock;

system_clock::time_point atMillis(std::int64_t ms) {
  return system_clock::time_point(milliseconds(ms));
}

// Runs `body` on a new thread, so it starts from fresh per-thread id state
// whatever ids earlier tests issued.
template <class Body>
void onFreshThread(Body body) {
  std::thread thread(body);
  thread.join();
}

// Returns the 48-bit timestamp of a UUIDv7 in its text form.
std::uint64_t uuidMillis(const std::string& uuid) {
  std::string hex = uuid.substr(0, 8) + uuid.substr(9, 4);
  return std::stoull(hex, nullptr, 16);
}

TEST(UuidV7, HasVersionAndVariant) {
  static const std::regex kForm(
      "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  for (int i = 0; i < 1000; ++i) {
    std::string id = newUuidV7();
    ASSERT_TRUE(std::regex_match(id, kForm)) << id;
  }
}

TEST(UuidV7, CarriesUnixMilliseconds) {
  std::int64_t ms = 1796385600123;  // 2026-12-04T12:00:00.123Z
  std::string id;
  onFreshThread([&] { id = newUuidV7(atMillis(ms)); });
  EXPECT_EQ(uuidMillis(id), static_cast<std::uint64_t>(ms));
}

TEST(UuidV7, IncreasesWithinOneMillisecond) {
  auto now = atMillis(1896385600000);
  std::string previous = newUuidV7(now);
  for (int i = 0; i < 100000; ++i) {
    std::string next = newUuidV7(now);
    ASSERT_LT(previous, next);
    previous = next;
  }
}

TEST(UuidV7, IncreasesWhenClockStepsBack) {
  std::string later;
  std::string earlier_clock;
  onFreshThread([&] {
    later = newUuidV7(atMillis(1996385600000));
    earlier_clock = newUuidV7(atMillis(1996385500000));
  });
  EXPECT_LT(later, earlier_clock);
  EXPECT_EQ(uuidMillis(earlier_clock), 1996385600000u);
}

TEST(UuidV7, UniqueAcrossThreads) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::vector<std::vector<std::string>> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&results, t] {
      for (int i = 0; i < kPerThread; ++i) {
        results[t].push_back(newUuidV7());
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  std::set<std::string> all;
  for (const auto& ids : results) {
    all.insert(ids.begin(), ids.end());
  }
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kThreads * kPerThread));
}

TEST(UuidV7, ForkedChildDoesNotRepeatParent) {
  newUuidV7();  // fills this thread's random buffer before the fork
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::string id = newUuidV7();
    ssize_t written = ::write(fds[1], id.data(), id.size());
    ::_exit(written == static_cast<ssize_t>(id.size()) ? 0 : 1);
  }
  ::close(fds[1]);
  std::string parent_id = newUuidV7();
  char buffer[36];
  ssize_t got = ::read(fds[0], buffer, sizeof buffer);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_EQ(got, 36);
  std::string child_id(buffer, 36);
  // Same millisecond is likely, so only the random bits tell them apart.
  EXPECT_NE(child_id.substr(14), parent_id.substr(14));
}

TEST(UuidText, AcceptsAnyVersionAndCase) {
  EXPECT_TRUE(isUuidText("6f1e2b0c-9a55-4c7e-8d2f-0b9a3c4d5e6f"));
  EXPECT_TRUE(isUuidText("6F1E2B0C-9A55-4C7E-8D2F-0B9A3C4D5E6F"));
  EXPECT_TRUE(isUuidText("00000000-0000-0000-0000-000000000000"));
  EXPECT_TRUE(isUuidText(newUuidV7()));
}

TEST(UuidText, RejectsOtherText) {
  EXPECT_FALSE(isUuidText(""));
  EXPECT_FALSE(isUuidText("6f1e2b0c-9a55-4c7e-8d2f-0b9a3c4d5e6"));    // 35 characters
  EXPECT_FALSE(isUuidText("6f1e2b0c-9a55-4c7e-8d2f-0b9a3c4d5e6f0"));  // 37 characters
  EXPECT_FALSE(isUuidText("6f1e2b0c9a55-4c7e-8d2f-0b9a3c4d5e6f0"));   // dash moved
  EXPECT_FALSE(isUuidText("6f1e2b0c-9a55-4c7e-8d2f-0b9a3c4d5e6g"));   // g is not hex
  EXPECT_FALSE(isUuidText("6f1e2b0c-9a55-4c7e-8d2f+0b9a3c4d5e6f"));   // + for a dash
  EXPECT_FALSE(isUuidText("{6f1e2b0c-9a55-4c7e-8d2f-0b9a3c4d5e6}"));  // braces
}

TEST(Timestamps, IsoHasMicroseconds) {
  auto time = system_clock::time_point(std::chrono::microseconds(1796385600123456));
  EXPECT_EQ(isoTimestamp(time), "2026-12-04T12:00:00.123456Z");
  EXPECT_EQ(isoTimestamp(system_clock::time_point{}), "1970-01-01T00:00:00.000000Z");
}

TEST(Timestamps, IsoBeforeEpochRoundsDown) {
  auto time = system_clock::time_point(std::chrono::microseconds(-1));
  EXPECT_EQ(isoTimestamp(time), "1969-12-31T23:59:59.999999Z");
}

TEST(Timestamps, IsoFromUnixMilliseconds) {
  EXPECT_EQ(isoTimestampFromUnixMs(1796385600123), "2026-12-04T12:00:00.123000Z");
  EXPECT_EQ(isoTimestampFromUnixMs(0), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(isoTimestampFromUnixMs(-1), "1969-12-31T23:59:59.999000Z");
}

TEST(Timestamps, CtimePadsDayWithSpace) {
  auto time = system_clock::time_point(std::chrono::microseconds(1796385600123456));
  EXPECT_EQ(ctimeTimestamp(time), "Fri Dec  4 12:00:00 2026");
  EXPECT_EQ(ctimeTimestamp(time + std::chrono::hours(24 * 10)), "Mon Dec 14 12:00:00 2026");
}

}  // namespace
}  // namespace webtrap
