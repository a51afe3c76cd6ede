// Measures the CPU time of the collector's ingest stages one at a time, on
// records read from a file: gunzip of whole batches, decodeAuditRecord,
// buildEcsDocument (without event.original), BehaviourTagger::observe with
// the default options, and appendJsonEscaped of each record alone. Each
// stage runs over all records on one thread, and the time is that thread's
// CPU time. Not part of the
// build or the test suite.
//
// Build against a configured build folder (webtrap_core is its library; the
// defines are those the library is built with) and run from the source
// folder:
//   ninja -C BUILD webtrap_core
//   c++ -O2 -g -std=c++20 -Isrc -DSPDLOG_COMPILED_LIB -DSPDLOG_FMT_EXTERNAL \
//       -DSPDLOG_SHARED_LIB -DFMT_SHARED -DUSE_OS_TZDB=1 -DHAS_STRING_VIEW=1 \
//       -DONLY_C_LOCALE=1 bench/collector/ingest_bench.cpp BUILD/libwebtrap_core.a \
//       -ldeflate -lsimdjson -lz -lspdlog -lfmt -lyaml-cpp -lmaxminddb -lssl -lcrypto \
//       -lsqlite3 -lcurl -ldate-tz -ljemalloc -pthread -o /tmp/ingest_bench
//   head -5000 WORK_DIR/records-50000-seed1.ndjson > /tmp/records.ndjson
//   /tmp/ingest_bench /tmp/records.ndjson 5
//
// The second argument is the number of rounds. Each stage prints the best
// round, in microseconds of CPU time per record.
//
// Time per record moves with other load on a 2-CPU machine. To compare two
// builds, count instructions with callgrind instead: the count of one stage
// over 2 rounds minus the count over 1 round, divided by the records, is
// the stage's instructions per record without the one-time set-up, e.g.
//   valgrind --tool=callgrind --toggle-collect='webtrap::collector::buildEcsDocument*' \
//       --callgrind-out-file=/tmp/cg.2 /tmp/ingest_bench /tmp/rec1k.ndjson 2
#include <time.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "collector/audit_record.h"
#include "collector/behaviour.h"
#include "collector/ecs.h"
#include "collector/gunzip.h"
#include "collector/enrich.h"
#include "collector/server.h"
#include "common/json_writer.h"
#include "common/metrics.h"

namespace {

using webtrap::collector::AuditRecord;

double threadCpuSeconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

std::string gzipCompress(const std::string& text) {
  z_stream zs{};
  // Level 6 and gzip framing, as the benchmark's sender writes batches.
  if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    std::fprintf(stderr, "deflateInit2 failed\n");
    std::exit(1);
  }
  std::string out(deflateBound(&zs, text.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  zs.avail_in = static_cast<uInt>(text.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

void report(const char* stage, double best_seconds, std::size_t records, std::size_t sink) {
  std::printf("%-10s %7.2f us/record  (checksum %zu)\n", stage, best_seconds * 1e6 / records,
              sink);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: ingest_bench RECORDS.ndjson [ROUNDS]\n");
    return 2;
  }
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  // The tagger logs its settings each time one is created.
  spdlog::set_level(spdlog::level::warn);
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
  constexpr std::size_t kBatchRecords = 500;
  std::vector<std::string> batches;
  for (std::size_t first = 0; first < lines.size(); first += kBatchRecords) {
    std::string text;
    for (std::size_t i = first; i < std::min(lines.size(), first + kBatchRecords); ++i) {
      text += lines[i];
      text += '\n';
    }
    batches.push_back(gzipCompress(text));
  }
  const std::size_t count = lines.size();
  std::printf("%zu records, %zu gzip batches, %d rounds\n", count, batches.size(), rounds);

  double best = 1e9;
  std::size_t sink = 0;
  for (int round = 0; round < rounds; ++round) {
    double start = threadCpuSeconds();
    for (const std::string& batch : batches) {
      sink += webtrap::collector::gunzip(batch, std::uint64_t{1} << 30)->size();
    }
    best = std::min(best, threadCpuSeconds() - start);
  }
  report("gunzip", best, count, sink);

  // The records one after another, as in an inflated batch, so the decoder
  // may read past each line as it does in Ingest::ingestLines.
  std::string joined;
  std::vector<std::string_view> views;
  for (const std::string& line : lines) {
    joined += line;
    joined += '\n';
  }
  for (std::size_t offset = 0; const std::string& line : lines) {
    views.emplace_back(joined.data() + offset, line.size());
    offset += line.size() + 1;
  }
  std::vector<AuditRecord> records(count);
  best = 1e9;
  sink = 0;
  for (int round = 0; round < rounds; ++round) {
    double start = threadCpuSeconds();
    for (std::size_t i = 0; i < count; ++i) {
      webtrap::collector::DecodeOptions options;
      options.format = webtrap::collector::RecordFormat::kWebtrap;
      options.origin = "bench";
      options.copy_unchanged_original = false;  // as the ingest path decodes
      options.readable_after =
          static_cast<std::size_t>(joined.data() + joined.size() - (views[i].data() + views[i].size()));
      auto result = webtrap::collector::decodeAuditRecord(views[i], options);
      if (!result.ok) {
        std::fprintf(stderr, "record %zu: %s\n", i, result.error.c_str());
        return 1;
      }
      sink += result.record.request_headers.size() + result.record.messages.size();
      records[i] = std::move(result.record);
    }
    best = std::min(best, threadCpuSeconds() - start);
  }
  report("decode", best, count, sink);

  webtrap::collector::GeoFacts geo;
  webtrap::collector::SensorFacts sensor;
  sensor.sensor_id = "bench";
  sensor.input = "probe";
  // The first document loads the OAT ontology, which is not per-record work.
  {
    std::size_t original_at = 0;
    sink = webtrap::collector::buildEcsDocument(records[0], geo, sensor, 1764849600000, {}, {},
                                                &original_at)
               .size();
  }
  best = 1e9;
  sink = 0;
  for (int round = 0; round < rounds; ++round) {
    double start = threadCpuSeconds();
    for (const AuditRecord& record : records) {
      // Built without event.original, as for a record of a stored gzip body
      // (the collector's common case).
      std::size_t original_at = 0;
      sink += webtrap::collector::buildEcsDocument(record, geo, sensor, 1764849600000, {}, {},
                                                   &original_at)
                  .size();
    }
    best = std::min(best, threadCpuSeconds() - start);
  }
  report("ecs", best, count, sink);

  // A new tagger for each round, so every round starts with no keys. These
  // records have mostly distinct client addresses and two or three keys
  // each, so the default max_keys (20,000) is reached within the first
  // 10,000 records, and longer inputs also measure the eviction of keys.
  best = 1e9;
  sink = 0;
  for (int round = 0; round < rounds; ++round) {
    webtrap::MetricsRegistry metrics;
    webtrap::collector::BehaviourTagger tagger(webtrap::collector::BehaviourOptions{}, metrics);
    double start = threadCpuSeconds();
    for (const AuditRecord& record : records) {
      sink += tagger.observe(record, 1764849600000).size();
    }
    best = std::min(best, threadCpuSeconds() - start);
  }
  report("behaviour", best, count, sink);

  best = 1e9;
  sink = 0;
  std::string escaped;
  for (int round = 0; round < rounds; ++round) {
    double start = threadCpuSeconds();
    for (const std::string& line : lines) {
      escaped.clear();
      webtrap::appendJsonEscaped(escaped, line);
      sink += escaped.size();
    }
    best = std::min(best, threadCpuSeconds() - start);
  }
  report("escape", best, count, sink);
  return 0;
}
