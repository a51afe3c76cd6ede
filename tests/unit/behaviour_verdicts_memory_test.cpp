// The verdict table of GET /v1/oat/verdicts copies at most `limit` rows,
// however many keys have a verdict (behaviour.max_keys allows 10 million).
// A separate binary, because it replaces the global operator new to measure
// the peak of the bytes allocated while the table is built.
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "collector/behaviour.h"
#include "common/metrics.h"

namespace {

std::atomic<bool> g_counting{false};
std::atomic<std::int64_t> g_live{0};
std::atomic<std::int64_t> g_peak{0};

void* allocate(std::size_t size) {
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) {
    throw std::bad_alloc();
  }
  if (g_counting.load(std::memory_order_relaxed)) {
    std::int64_t live = g_live.fetch_add(static_cast<std::int64_t>(malloc_usable_size(p))) +
                        static_cast<std::int64_t>(malloc_usable_size(p));
    std::int64_t peak = g_peak.load();
    while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
    }
  }
  return p;
}

void release(void* p) {
  if (p == nullptr) {
    return;
  }
  if (g_counting.load(std::memory_order_relaxed)) {
    g_live.fetch_sub(static_cast<std::int64_t>(malloc_usable_size(p)));
  }
  std::free(p);
}

}  // namespace

void* operator new(std::size_t size) { return allocate(size); }
void* operator new[](std::size_t size) { return allocate(size); }
void operator delete(void* p) noexcept { release(p); }
void operator delete[](void* p) noexcept { release(p); }
void operator delete(void* p, std::size_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t) noexcept { release(p); }

namespace webtrap::collector {
namespace {

constexpr std::int64_t kStartMs = 1'764'849'600'000;  // 2025-12-04T12:00:00Z
constexpr int kKeys = 5000;

AuditRecord page(const std::string& ip, int n, std::int64_t time_ms) {
  AuditRecord record;
  record.client_ip = ip;
  record.method = "GET";
  record.uri = fmt::format("/page{}.php", n);
  record.response_status = 200;
  record.timestamp_us = time_ms * 1000;
  record.request_headers.push_back({"Host", "shop.example"});
  record.request_headers.push_back(
      {"User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"});
  return record;
}

TEST(BehaviourVerdictsMemory, TableCopiesOnlyTheRowsItReturns) {
  BehaviourOptions options;
  MetricsRegistry metrics;
  BehaviourTagger tagger(options, metrics);
  // Eight pages from one client give its address and user agent key an
  // OAT-011 verdict. Each client comes 1 ms after the one before.
  std::int64_t t = kStartMs;
  for (int k = 0; k < kKeys; ++k) {
    std::string ip = fmt::format("10.{}.{}.{}", k / 65536, (k / 256) % 256, k % 256);
    for (int i = 0; i < 8; ++i) {
      tagger.observe(page(ip, i, t), t);
    }
    t += 1;
  }
  std::vector<KeyVerdicts> all = tagger.verdicts(t, kKeys * 2);
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kKeys));

  g_peak = 0;
  g_live = 0;
  g_counting = true;
  std::vector<KeyVerdicts> top = tagger.verdicts(t, 10);
  g_counting = false;
  std::int64_t peak = g_peak.load();

  // The ten most recently seen keys, in the same order as in the whole table.
  ASSERT_EQ(top.size(), 10u);
  for (std::size_t i = 0; i < top.size(); ++i) {
    EXPECT_EQ(top[i].key, all[i].key) << i;
    EXPECT_EQ(top[i].newest_ms, all[i].newest_ms) << i;
    EXPECT_EQ(top[i].source_ip, fmt::format("10.0.{}.{}", (kKeys - 1 - i) / 256,
                                            (kKeys - 1 - i) % 256))
        << i;
  }
  // Ten rows take a few KiB; a copy of all 5,000 rows takes over a MiB.
  EXPECT_LT(peak, 64 * 1024) << "peak bytes while building a 10-row table of " << kKeys
                             << " keys";
  std::printf("peak %lld bytes for a 10-row table of %d keys with verdicts\n",
              static_cast<long long>(peak), kKeys);
}

}  // namespace
}  // namespace webtrap::collector
