#include "common/ids.h"

#include <pthread.h>
#include <sys/random.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>

#include <openssl/rand.h>

#include "common/encoding.h"

namespace webtrap {

namespace {

// Bumped in a forked child, so that each thread's buffer of random bytes,
// copied by fork(), is thrown away instead of handing the child the same ids
// as the parent.
std::atomic<std::uint64_t> fork_generation{0};

void onForkChild() {
  fork_generation.fetch_add(1, std::memory_order_relaxed);
}

void fillRandom(unsigned char* data, std::size_t size) {
  if (RAND_bytes(data, static_cast<int>(size)) == 1) {
    return;
  }
  // OpenSSL only fails here when it cannot seed itself; the kernel pool is
  // the same source it would have used.
  std::size_t filled = 0;
  while (filled < size) {
    ssize_t got = getrandom(data + filled, size - filled, 0);
    if (got > 0) {
      filled += static_cast<std::size_t>(got);
    } else if (got < 0 && errno != EINTR) {
      std::perror("getrandom");
      std::abort();
    }
  }
}

// Per-thread state: a buffer of CSPRNG output, so one RAND_bytes call serves
// hundreds of ids, and the last id issued, for monotonic ordering.
struct UuidState {
  static constexpr std::size_t kBufferSize = 4096;
  unsigned char buffer[kBufferSize];
  std::size_t used = kBufferSize;
  std::uint64_t generation = ~0ull;

  std::uint64_t last_ms = 0;
  std::uint16_t rand_a = 0;  // 12 bits
  std::uint64_t rand_b = 0;  // 62 bits

  std::uint64_t random64() {
    std::uint64_t current = fork_generation.load(std::memory_order_relaxed);
    if (used + 8 > kBufferSize || generation != current) {
      fillRandom(buffer, kBufferSize);
      used = 0;
      generation = current;
    }
    std::uint64_t value = 0;
    for (int i = 0; i < 8; ++i) {
      value = value << 8 | buffer[used++];
    }
    return value;
  }

  void freshRandom() {
    std::uint64_t bits = random64();
    rand_a = static_cast<std::uint16_t>(bits >> 52);
    rand_b = random64() >> 2;
  }
};

UuidState& uuidState() {
  static std::once_flag registered;
  std::call_once(registered, [] { pthread_atfork(nullptr, nullptr, onForkChild); });
  thread_local UuidState state;
  return state;
}

constexpr std::uint64_t kRandBMask = (1ull << 62) - 1;
constexpr std::uint16_t kRandAMask = (1u << 12) - 1;

}  // namespace

std::string newUuidV7() {
  return newUuidV7(std::chrono::system_clock::now());
}

std::string newUuidV7(std::chrono::system_clock::time_point now) {
  UuidState& state = uuidState();
  auto ms_signed =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::uint64_t ms = ms_signed > 0 ? static_cast<std::uint64_t>(ms_signed) : 0;

  if (ms > state.last_ms) {
    state.last_ms = ms;
    state.freshRandom();
  } else {
    // Same millisecond, or the clock stepped back: keep the last timestamp
    // and add a random step to the 74 random bits (RFC 9562 section 6.2,
    // method 2). A carry out of them moves the timestamp one millisecond on.
    std::uint64_t step = (state.random64() >> 32) + 1;
    state.rand_b += step;
    if (state.rand_b > kRandBMask) {
      state.rand_b &= kRandBMask;
      state.rand_a = static_cast<std::uint16_t>(state.rand_a + 1);
      if (state.rand_a > kRandAMask) {
        state.last_ms += 1;
        state.freshRandom();
      }
    }
  }

  unsigned char bytes[16];
  for (int i = 0; i < 6; ++i) {
    bytes[i] = static_cast<unsigned char>(state.last_ms >> (40 - 8 * i));
  }
  bytes[6] = static_cast<unsigned char>(0x70 | (state.rand_a >> 8));
  bytes[7] = static_cast<unsigned char>(state.rand_a & 0xFF);
  bytes[8] = static_cast<unsigned char>(0x80 | (state.rand_b >> 56));
  for (int i = 9; i < 16; ++i) {
    bytes[i] = static_cast<unsigned char>(state.rand_b >> (8 * (15 - i)));
  }

  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text;
  text.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) {
      text.push_back('-');
    }
    text.push_back(kDigits[bytes[i] >> 4]);
    text.push_back(kDigits[bytes[i] & 0x0F]);
  }
  return text;
}

namespace {

// Splits a time point into whole seconds and microseconds, rounding towards
// the past so that times before 1970 still get 0-999999 microseconds.
void splitMicros(std::chrono::system_clock::time_point time, std::time_t& seconds, long& micros) {
  auto us = std::chrono::floor<std::chrono::microseconds>(time.time_since_epoch()).count();
  std::int64_t whole = us / 1'000'000;
  std::int64_t rest = us % 1'000'000;
  if (rest < 0) {
    rest += 1'000'000;
    whole -= 1;
  }
  seconds = static_cast<std::time_t>(whole);
  micros = static_cast<long>(rest);
}

}  // namespace

std::string isoTimestamp(std::chrono::system_clock::time_point time) {
  std::time_t seconds = 0;
  long micros = 0;
  splitMicros(time, seconds, micros);
  std::tm parts{};
  gmtime_r(&seconds, &parts);

  char text[40];
  int length = std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ",
                             parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday, parts.tm_hour,
                             parts.tm_min, parts.tm_sec, micros);
  return std::string(text, length > 0 ? static_cast<std::size_t>(length) : 0);
}

std::string isoTimestampFromUnixMs(std::int64_t unix_ms) {
  return isoTimestamp(std::chrono::system_clock::time_point(std::chrono::milliseconds(unix_ms)));
}

std::string ctimeTimestamp(std::chrono::system_clock::time_point time) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::time_t seconds = 0;
  long micros = 0;
  splitMicros(time, seconds, micros);
  std::tm parts{};
  gmtime_r(&seconds, &parts);

  // The asctime(3) layout, without its trailing newline, as libmodsecurity
  // strips it: day of month padded with a space to width 2.
  char text[40];
  int length = std::snprintf(text, sizeof text, "%s %s %2d %02d:%02d:%02d %d",
                             kDays[parts.tm_wday % 7], kMonths[parts.tm_mon % 12], parts.tm_mday,
                             parts.tm_hour, parts.tm_min, parts.tm_sec, parts.tm_year + 1900);
  return std::string(text, length > 0 ? static_cast<std::size_t>(length) : 0);
}

bool isUuidText(std::string_view text) {
  if (text.size() != 36) {
    return false;
  }
  for (std::size_t i = 0; i < text.size(); ++i) {
    bool dash_position = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash_position ? text[i] != '-' : hexDigitValue(text[i]) < 0) {
      return false;
    }
  }
  return true;
}

}  // namespace webtrap
