// Measures the CPU time of BehaviourTagger::observe per record, the cost the
// behavioural OAT tagger adds to ingest. Records are synthetic: a mix of
// page views with assets, 404 probes, login, registration and checkout
// posts, from many sources with browser-sized header lists and a session
// cookie on half of them. The time is the calling thread's CPU time, so
// other load on the machine changes it little. Not part of the build or the
// test suite.
//
// Build against a configured build folder (webtrap_core is its library):
//   ninja -C build-behaviour webtrap_core
//   c++ -O2 -g -std=c++20 -Isrc bench/collector/behaviour_bench.cpp \
//       build-behaviour/libwebtrap_core.a -lyaml-cpp -lspdlog -lfmt -pthread \
//       -o /tmp/behaviour_bench
//   /tmp/behaviour_bench 200000 5000 3
//
// Arguments: records per round, distinct sources, rounds. Prints the best
// round in microseconds of CPU time per record, one thread.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "collector/behaviour.h"
#include "common/metrics.h"

namespace {

double threadCpuSeconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9;
}

using webtrap::collector::AuditRecord;

std::vector<AuditRecord> makeRecords(std::size_t count, std::size_t sources) {
  std::vector<AuditRecord> records;
  records.reserve(count);
  const std::int64_t start_ms = 1'764'849'600'000;
  const char* paths[] = {"/",          "/about.php",      "/style.css",  "/app.js",
                         "/logo.png",  "/blog/",          "/shop/",      "/wp-login.php",
                         "/.env",      "/admin/",         "/login.php",  "/register.php",
                         "/shop/checkout.php", "/shop/product.php?id=7", "/nope", "/favicon.ico"};
  unsigned seed = 12345;
  auto next = [&seed] {
    seed = seed * 1103515245u + 12345u;
    return seed >> 8;
  };
  for (std::size_t i = 0; i < count; ++i) {
    AuditRecord record;
    std::size_t source = next() % sources;
    record.client_ip = "10." + std::to_string(source / 65536) + "." +
                       std::to_string((source / 256) % 256) + "." + std::to_string(source % 256);
    record.timestamp_us = (start_ms + static_cast<std::int64_t>(i) * 2) * 1000;
    std::size_t kind = next() % 16;
    record.uri = paths[kind];
    record.method = kind >= 10 && kind <= 12 ? "POST" : "GET";
    record.response_status = kind == 14 || kind == 7 ? 404 : 200;
    record.request_headers = {
        {"Host", "shop.example"},
        {"User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                       "Chrome/131.0.0.0 Safari/537.36"},
        {"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
        {"Accept-Language", "en-US,en;q=0.9"},
        {"Accept-Encoding", "gzip, deflate, br"},
        {"Connection", "keep-alive"},
    };
    if (source % 2 == 0) {
      record.request_headers.push_back(
          {"Cookie", "lang=en; PHPSESSID=" + std::to_string(source * 7919) + "; theme=dark"});
    }
    if (kind == 10) {
      record.form.kind = "login";
      record.form.username = "user" + std::to_string(next() % 50);
      record.form.password_sha256 = std::to_string(next());
    } else if (kind == 11) {
      record.form.kind = "register";
      record.form.email = "a@example.com";
    } else if (kind == 12) {
      record.form.kind = "checkout";
      webtrap::CardFacts card;
      card.bin = "411111";
      card.last4 = "1111";
      card.luhn_valid = true;
      card.fingerprint = std::to_string(next() % 1000);
      record.form.cards.push_back(card);
    }
    if (kind == 8) {
      webtrap::collector::RuleMessage message;
      message.rule_id = "930130";
      record.messages.push_back(message);
    }
    records.push_back(std::move(record));
  }
  return records;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t count = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 200'000;
  std::size_t sources = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 5'000;
  int rounds = argc > 3 ? std::atoi(argv[3]) : 3;
  std::vector<AuditRecord> records = makeRecords(count, sources);

  double best = 1e9;
  std::size_t tags = 0;
  for (int round = 0; round < rounds; ++round) {
    webtrap::MetricsRegistry metrics;
    webtrap::collector::BehaviourTagger tagger(webtrap::collector::BehaviourOptions{}, metrics);
    double begin = threadCpuSeconds();
    for (const AuditRecord& record : records) {
      tags += tagger.observe(record, record.timestamp_us / 1000).size();
    }
    double seconds = threadCpuSeconds() - begin;
    best = std::min(best, seconds);
    std::printf("round %d: %.3f us CPU per record, tracked keys %zu\n", round,
                seconds / static_cast<double>(count) * 1e6, tagger.trackedKeys());
  }
  std::printf("observe: %.3f us CPU per record (best of %d rounds, %zu records, %zu sources, "
              "%zu tags)\n",
              best / static_cast<double>(count) * 1e6, rounds, count, sources, tags);
  return 0;
}
