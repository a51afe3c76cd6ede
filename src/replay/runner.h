// Runs ftw tests against a target and checks each stage against the audit
// record that the target wrote for that stage's connection.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "replay/ftw_test.h"
#include "replay/http_exchange.h"
#include "replay/record_index.h"
#include "replay/target.h"

namespace webtrap::replay {

struct ReplayOptions {
  Target target;
  std::optional<std::filesystem::path> records;  // file or folder of *.ndjson
  std::chrono::milliseconds timeout{3000};       // per request, and again per record wait
  unsigned concurrency = 4;
  bool verbose = false;  // also print PASS and SKIP lines
};

enum class Outcome { kPass, kFail, kSkip };

struct StageResult {
  Outcome outcome = Outcome::kPass;
  std::vector<std::string> reasons;  // why it failed; empty on pass
  std::optional<int> status;
  std::string error;  // connection or response error, when one happened
  std::uint16_t client_port = 0;
  bool record_found = false;
  std::vector<std::string> rule_ids;  // from the matched record
  std::chrono::milliseconds duration{0};
};

struct TestResult {
  const FtwTest* test = nullptr;
  Outcome outcome = Outcome::kPass;
  std::vector<StageResult> stages;
};

struct Summary {
  std::size_t passed = 0;
  std::size_t failed = 0;
  std::size_t skipped = 0;
};

// Checks one stage's expectations. `record` is the audit record matched for
// the stage's connection, or nullopt when none arrived; `records_enabled` is
// false when no --records path was given.
StageResult evaluateStage(const FtwOutput& output, const ExchangeResult& exchange,
                          const std::optional<AuditRecord>& record, bool records_enabled,
                          std::chrono::milliseconds timeout);

// `FAIL <file>:<title> stage <n>: <reasons>` for a failed test, `PASS
// <file>:<title>` or `SKIP <file>:<title>` otherwise. Stages count from 1.
std::string formatResultLine(const TestResult& result);

// `N passed, M failed`, plus `, K skipped` when K is not zero.
std::string formatSummary(const Summary& summary);

// The per-test results as one JSON document, for pass-rate tables.
std::string renderJsonReport(const std::vector<TestResult>& results, const Summary& summary,
                             const ReplayOptions& options);

// Runs `tests` (disabled ones count as skipped) on `options.concurrency`
// threads, prints result lines in test order to `out` as they complete, then
// the summary line. Returns the results in test order.
std::vector<TestResult> runTests(const std::vector<FtwTest>& tests, const ReplayOptions& options,
                                 std::ostream& out, Summary& summary);

}  // namespace webtrap::replay
