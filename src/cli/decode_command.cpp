// `webtrap decode`: decodes audit log files (one JSON record per line) and
// prints each record as the collector decodes it, one JSON object per line.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/commands.h"
#include "collector/audit_record.h"
#include "common/error.h"

namespace webtrap::cli {
namespace {

// Exit codes: 0 every record decoded, 1 a record was rejected or a file could
// not be read, 2 invalid usage.
constexpr int kExitRejected = 1;

struct DecodeArguments {
  std::string format = "auto";
  std::string timezone;
  std::string origin;
  bool summary = false;
  std::vector<std::string> files;
};

struct DecodeCounts {
  std::size_t decoded = 0;
  std::size_t rejected = 0;
  std::uint64_t bytes = 0;
};

// Decodes every line of `stream` and prints each record, unless `summary`.
void decodeStream(std::istream& stream, const std::string& name,
                  const collector::DecodeOptions& options, bool summary, DecodeCounts& counts) {
  std::size_t line_number = 0;
  std::string line;
  std::string out;
  while (std::getline(stream, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      continue;
    }
    counts.bytes += line.size() + 1;
    collector::DecodeResult result = collector::decodeAuditRecord(line, options);
    if (!result.ok) {
      ++counts.rejected;
      fmt::print(stderr, "{}:{}: {}\n", name, line_number, result.error);
      continue;
    }
    ++counts.decoded;
    if (summary) {
      continue;
    }
    out = collector::auditRecordToJson(result.record);
    out.push_back('\n');
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
}

int runDecode(const DecodeArguments& args) {
  collector::DecodeOptions options;
  auto format = collector::parseRecordFormat(args.format);
  if (!format) {
    throw CommandError(fmt::format(
        "invalid --format '{}'; give auto, webtrap, modsec3 or modsec2", args.format));
  }
  options.format = *format;
  if (!args.timezone.empty()) {
    options.time_zone = collector::findTimeZone(args.timezone);
    if (options.time_zone == nullptr) {
      throw CommandError(fmt::format(
          "invalid --timezone '{}'; give a zone name from /usr/share/zoneinfo, such as "
          "Europe/Berlin or UTC",
          args.timezone));
    }
  }

  DecodeCounts counts;
  bool read_failed = false;
  auto started = std::chrono::steady_clock::now();
  std::clock_t cpu_started = std::clock();
  for (const std::string& file : args.files) {
    // Derived event ids hash the origin, so the same file path gives the
    // same ids as a file input reading that path.
    options.origin = args.origin.empty() ? std::string_view(file) : std::string_view(args.origin);
    if (file == "-") {
      decodeStream(std::cin, "<stdin>", options, args.summary, counts);
      continue;
    }
    std::ifstream stream(file, std::ios::binary);
    if (!stream) {
      fmt::print(stderr, "webtrap decode: cannot open '{}'; check the path and permissions\n",
                 file);
      read_failed = true;
      continue;
    }
    decodeStream(stream, file, options, args.summary, counts);
    if (stream.bad()) {
      fmt::print(stderr, "webtrap decode: read error in '{}'\n", file);
      read_failed = true;
    }
  }
  std::fflush(stdout);
  if (args.summary) {
    // CPU time as well as wall time, because on a shared machine the wall
    // time includes waiting for a core.
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    double cpu_seconds = static_cast<double>(std::clock() - cpu_started) / CLOCKS_PER_SEC;
    std::size_t records = counts.decoded + counts.rejected;
    fmt::print(
        "{} decoded, {} rejected, {:.1f} MiB, {:.3f} s wall, {:.3f} s CPU: {:.0f} records/s "
        "wall, {:.0f} records/s per CPU second (one thread, reading included)\n",
        counts.decoded, counts.rejected, counts.bytes / 1048576.0, seconds, cpu_seconds,
        seconds > 0 ? records / seconds : 0.0, cpu_seconds > 0 ? records / cpu_seconds : 0.0);
  }
  if (counts.rejected > 0) {
    fmt::print(stderr, "webtrap decode: {} record(s) rejected\n", counts.rejected);
  }
  return counts.rejected > 0 || read_failed ? kExitRejected : 0;
}

}  // namespace

void addDecodeCommand(CLI::App& app, CommandRunner& runner) {
  auto args = std::make_shared<DecodeArguments>();
  CLI::App* command = app.add_subcommand(
      "decode",
      "Decode audit log files (webtrap probe records, libmodsecurity v3 or mod_security2 JSON, "
      "one record per line) and print each record as one JSON line; errors go to stderr "
      "with the line number");
  command->add_option("--format", args->format,
                      "Record layout: auto (from each record's shape), webtrap, modsec3 or "
                      "modsec2")
      ->capture_default_str();
  command->add_option("--timezone", args->timezone,
                      "Zone of libmodsecurity v3 time stamps, which carry none, such as "
                      "Europe/Berlin (default: the local time zone)");
  command->add_option("--origin", args->origin,
                      "Origin hashed into the event ids of ModSecurity records (default: the "
                      "file path as given)");
  command->add_flag("--summary", args->summary,
                    "Print only the counts and the decoding rate (records/s, reading "
                    "included), not the records");
  command->add_option("FILE", args->files, "Audit log files; - reads standard input")
      ->required();
  command->callback([&runner, args] { runner = [args] { return runDecode(*args); }; });
}

}  // namespace webtrap::cli
