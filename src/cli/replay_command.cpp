// `webtrap replay`: sends ftw regression tests to a loopback target and checks
// the audit records it wrote.
#include <fstream>
#include <iostream>
#include <regex>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "common/error.h"
#include "replay/ftw_test.h"
#include "replay/runner.h"
#include "replay/target.h"

namespace webtrap::cli {
namespace {

// Exit codes: 0 every test passed, 1 a test failed, 2 invalid usage.
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

struct ReplayArguments {
  std::string target;
  std::string records;
  int timeout_ms = 3000;
  int concurrency = 4;
  std::string filter;
  std::string json_report;
  bool verbose = false;
  std::vector<std::string> paths;
};

std::vector<replay::FtwTest> loadTests(const ReplayArguments& args) {
  std::optional<std::regex> filter;
  if (!args.filter.empty()) {
    try {
      filter.emplace(args.filter, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw ConfigError("invalid --filter '" + args.filter + "': " + e.what() +
                        "; give an ECMAScript regular expression");
    }
  }
  std::vector<replay::FtwTest> tests;
  for (const auto& file : replay::collectFtwFiles(args.paths)) {
    for (auto& test : replay::loadFtwFile(file)) {
      if (!filter || std::regex_search(test.title, *filter)) {
        tests.push_back(std::move(test));
      }
    }
  }
  return tests;
}

int runReplay(const ReplayArguments& args) {
  replay::ReplayOptions options;
  std::vector<replay::FtwTest> tests;
  try {
    if (args.target.empty()) {
      throw ConfigError(
          "missing --target; give the loopback URL to test, such as "
          "http://127.0.0.1:8080");
    }
    if (args.timeout_ms <= 0) {
      throw ConfigError("invalid --timeout-ms " + std::to_string(args.timeout_ms) +
                        "; give a positive number of milliseconds");
    }
    if (args.concurrency <= 0 || args.concurrency > 256) {
      throw ConfigError("invalid --concurrency " + std::to_string(args.concurrency) +
                        "; give 1 to 256 connections");
    }
    options.target = replay::parseTarget(args.target);
    if (!args.records.empty()) {
      if (!std::filesystem::exists(args.records)) {
        throw ConfigError("--records path '" + args.records +
                          "' does not exist; give the audit log file or the spool folder");
      }
      options.records = args.records;
    }
    options.timeout = std::chrono::milliseconds(args.timeout_ms);
    options.concurrency = static_cast<unsigned>(args.concurrency);
    options.verbose = args.verbose;
    tests = loadTests(args);
    if (tests.empty()) {
      throw ConfigError("no ftw tests found in the given paths" +
                        std::string(args.filter.empty() ? "" : " that match --filter") +
                        "; check the paths and the filter");
    }
  } catch (const ConfigError& e) {
    spdlog::error("{}", e.what());
    return kExitUsage;
  }

  replay::Summary summary;
  const auto results = replay::runTests(tests, options, std::cout, summary);

  if (!args.json_report.empty()) {
    std::ofstream report(args.json_report, std::ios::binary | std::ios::trunc);
    report << replay::renderJsonReport(results, summary, options);
    if (!report) {
      spdlog::error(
          "failed to write --json-report '{}'; check that its folder exists and is "
          "writable",
          args.json_report);
      return kExitFailed;
    }
  }
  return summary.failed == 0 ? 0 : kExitFailed;
}

}  // namespace

void addReplayCommand(CLI::App& app, CommandRunner& runner) {
  auto args = std::make_shared<ReplayArguments>();
  CLI::App* command = app.add_subcommand(
      "replay",
      "Send ftw regression tests (CRS YAML) to a loopback target and check its audit records");
  command->add_option("--target", args->target,
                      "URL of the server under test: http(s)://HOST[:PORT]; HOST must be loopback");
  command->add_option("--records", args->records,
                      "Audit records of the target: a JSON audit log file, or a folder of *.ndjson "
                      "segments");
  command
      ->add_option("--timeout-ms", args->timeout_ms,
                   "Milliseconds to wait for a response, and again for its record")
      ->capture_default_str();
  command->add_option("--concurrency", args->concurrency, "Tests run in parallel")
      ->capture_default_str();
  command->add_option("--filter", args->filter,
                      "Run only tests whose test_title matches this regular expression");
  command->add_option("--json-report", args->json_report,
                      "Write per-test results as JSON to this file");
  command->add_flag("--verbose,-v", args->verbose, "Also print PASS and SKIP lines");
  command->add_option("paths", args->paths, "ftw YAML files or folders (searched recursively)")
      ->required();
  command->callback([args, &runner] { runner = [args] { return runReplay(*args); }; });
}

}  // namespace webtrap::cli
