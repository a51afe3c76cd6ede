// Measures what card number masking costs the collector per ModSecurity
// record, in CPU time of one thread. Three stages run over the records:
// maskCardNumbersInJson alone (the whole added cost for a record without a
// card number), decodeAuditRecord with its masking, and decodeAuditRecord
// on the same records with a card number put into each URI (the masked
// text is then decoded a second time). Not part of the build or the test
// suite.
//
// Build like ingest_bench.cpp, against a configured build folder:
//   ninja -C BUILD webtrap_core
//   c++ -O2 -g -std=c++20 -Isrc -DSPDLOG_COMPILED_LIB -DSPDLOG_FMT_EXTERNAL \
//       -DSPDLOG_SHARED_LIB -DFMT_SHARED -DUSE_OS_TZDB=1 -DHAS_STRING_VIEW=1 \
//       -DONLY_C_LOCALE=1 bench/collector/card_mask_bench.cpp BUILD/libwebtrap_core.a \
//       -ldeflate -lsimdjson -lz -lspdlog -lfmt -lyaml-cpp -lmaxminddb -lssl -lcrypto \
//       -lsqlite3 -lcurl -ldate-tz -ljemalloc -pthread -o /tmp/card_mask_bench
//   python3 bench/collector/make_records.py --count 5000 \
//       --modsecurity-output /tmp/modsec.ndjson
//   /tmp/card_mask_bench /tmp/modsec.ndjson 5
//
// The second argument is the number of rounds. Each stage prints the best
// round, in microseconds of CPU time per record.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "collector/audit_record.h"
#include "collector/card_masking.h"

namespace {

using webtrap::collector::DecodeOptions;
using webtrap::collector::RecordFormat;

double threadCpuSeconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

// Runs `stage` over every record `rounds` times and prints the best round.
void measure(const char* name, int rounds, std::size_t count,
             const std::function<std::size_t()>& stage) {
  double best = 1e9;
  std::size_t sink = 0;
  for (int round = 0; round < rounds; ++round) {
    double start = threadCpuSeconds();
    sink = stage();
    best = std::min(best, threadCpuSeconds() - start);
  }
  std::printf("%-22s %7.3f us/record  (count %zu)\n", name, best * 1e6 / count, sink);
}

// Returns the records joined with newlines and views of each line, so the
// decoder may read past each record as it does in Ingest::ingestLines.
std::vector<std::string_view> joinLines(const std::vector<std::string>& lines,
                                        std::string& joined) {
  joined.clear();
  for (const std::string& line : lines) {
    joined += line;
    joined += '\n';
  }
  std::vector<std::string_view> views;
  std::size_t offset = 0;
  for (const std::string& line : lines) {
    views.emplace_back(joined.data() + offset, line.size());
    offset += line.size() + 1;
  }
  return views;
}

std::size_t decodeAll(const std::string& joined, const std::vector<std::string_view>& views) {
  std::size_t masked = 0;
  for (std::string_view view : views) {
    DecodeOptions options;
    options.format = RecordFormat::kModsec3;
    options.origin = "bench";
    options.readable_after =
        static_cast<std::size_t>(joined.data() + joined.size() - (view.data() + view.size()));
    auto result = webtrap::collector::decodeAuditRecord(view, options);
    if (!result.ok) {
      std::fprintf(stderr, "decode failed: %s\n", result.error.c_str());
      std::exit(1);
    }
    masked += result.record.original.find("******") != std::string::npos ? 1 : 0;
  }
  return masked;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: card_mask_bench MODSEC3_RECORDS.ndjson [ROUNDS]\n");
    return 2;
  }
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  std::vector<std::string> lines;
  {
    std::ifstream input(argv[1]);
    std::string line;
    while (std::getline(input, line)) {
      if (!line.empty()) {
        lines.push_back(std::move(line));
      }
    }
  }
  if (lines.empty()) {
    std::fprintf(stderr, "no records in %s\n", argv[1]);
    return 1;
  }
  const std::size_t count = lines.size();

  // The same records with a card number as the first query argument.
  std::vector<std::string> with_cards;
  for (const std::string& line : lines) {
    std::string copy = line;
    std::size_t uri = copy.find("\"uri\":\"");
    if (uri == std::string::npos) {
      std::fprintf(stderr, "a record has no uri field\n");
      return 1;
    }
    std::size_t value = uri + 7;
    std::size_t end = copy.find('"', value);
    std::size_t query = copy.find('?', value);
    if (query != std::string::npos && query < end) {
      copy.insert(query + 1, "cc=4111111111111111&");
    } else {
      copy.insert(end, "?cc=4111111111111111");
    }
    with_cards.push_back(std::move(copy));
  }
  std::printf("%zu records, %d rounds\n", count, rounds);

  measure("mask scan only", rounds, count, [&] {
    std::size_t masked = 0;
    for (const std::string& line : lines) {
      masked += webtrap::collector::maskCardNumbersInJson(line) ? 1 : 0;
    }
    return masked;
  });

  std::string joined;
  std::vector<std::string_view> views = joinLines(lines, joined);
  measure("decode (no cards)", rounds, count, [&] { return decodeAll(joined, views); });

  std::string joined_cards;
  std::vector<std::string_view> card_views = joinLines(with_cards, joined_cards);
  measure("decode (card in uri)", rounds, count,
          [&] { return decodeAll(joined_cards, card_views); });
  return 0;
}
