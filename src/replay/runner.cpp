#include "replay/runner.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <regex>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "common/json_writer.h"
#include "replay/request_builder.h"

namespace webtrap::replay {
namespace {

using Clock = std::chrono::steady_clock;

// ftw patterns are Python regular expressions. The CRS files use only the
// subset that ECMAScript shares with Python (`id "942100"`), so std::regex is
// enough for them. A leading `(?i)`, common in go-ftw files, becomes icase.
// NOTE: other Python-only syntax, such as (?P<name>...), fails to compile here
// and makes the stage fail with "invalid ... pattern".
std::optional<bool> searchPattern(std::string_view pattern, const std::string& text,
                                  std::string& error) {
  auto flags = std::regex::ECMAScript;
  constexpr std::string_view kIgnoreCase = "(?i)";
  if (pattern.substr(0, kIgnoreCase.size()) == kIgnoreCase) {
    pattern.remove_prefix(kIgnoreCase.size());
    flags |= std::regex::icase;
  }
  try {
    const std::regex re(pattern.begin(), pattern.end(), flags);
    return std::regex_search(text, re);
  } catch (const std::regex_error& e) {
    error = e.what();
    return std::nullopt;
  }
}

std::string formatIds(const std::vector<std::string>& ids) {
  if (ids.empty()) {
    return "none";
  }
  return fmt::format("{}", fmt::join(ids, " "));
}

void checkLogs(const FtwOutput& output, const AuditRecord& record, StageResult& result) {
  std::string error;
  if (output.log_contains) {
    const auto found = searchPattern(*output.log_contains, record.log_text, error);
    if (!found) {
      result.reasons.push_back(
          fmt::format("invalid log_contains pattern '{}': {}", *output.log_contains, error));
    } else if (!*found) {
      result.reasons.push_back(fmt::format("log_contains '{}' not found; rule ids recorded: {}",
                                           *output.log_contains, formatIds(record.rule_ids)));
    }
  }
  if (output.no_log_contains) {
    const auto found = searchPattern(*output.no_log_contains, record.log_text, error);
    if (!found) {
      result.reasons.push_back(
          fmt::format("invalid no_log_contains pattern '{}': {}", *output.no_log_contains, error));
    } else if (*found) {
      result.reasons.push_back(fmt::format("no_log_contains '{}' found; rule ids recorded: {}",
                                           *output.no_log_contains, formatIds(record.rule_ids)));
    }
  }
}

void checkStatus(const FtwOutput& output, const ExchangeResult& exchange, StageResult& result) {
  if (output.status.empty()) {
    return;
  }
  const std::string expected = output.status.size() == 1
                                   ? std::to_string(output.status.front())
                                   : fmt::format("one of {}", fmt::join(output.status, ", "));
  if (!exchange.status) {
    result.reasons.push_back(
        fmt::format("expected status {}, got no response ({})", expected, exchange.error));
    return;
  }
  if (std::find(output.status.begin(), output.status.end(), *exchange.status) ==
      output.status.end()) {
    result.reasons.push_back(fmt::format("expected status {}, got {}", expected, *exchange.status));
  }
}

std::string_view outcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kPass:
      return "pass";
    case Outcome::kFail:
      return "fail";
    case Outcome::kSkip:
      return "skip";
  }
  return "fail";
}

StageResult runStage(const FtwStage& stage, const ReplayOptions& options, RecordIndex* index) {
  const auto started = Clock::now();
  const BuiltRequest built = buildRequest(stage.input);
  if (!built.error.empty()) {
    StageResult result;
    result.outcome = Outcome::kFail;
    result.reasons.push_back("invalid input: " + built.error);
    return result;
  }

  const bool wants_record = index != nullptr && stage.output.needsRecord();
  // The mark comes before the connection exists, so any record read later
  // that carries this connection's port belongs to this stage.
  const std::uint64_t mark = wants_record ? index->mark() : 0;
  const ExchangeResult reply = exchange(options.target, built.bytes, options.timeout);

  std::optional<AuditRecord> record;
  const bool error_expected = stage.output.expect_error && !reply.error.empty();
  if (wants_record && reply.connected && !error_expected) {
    record = index->waitFor(reply.local_ip, reply.local_port, mark, Clock::now() + options.timeout);
  }
  StageResult result =
      evaluateStage(stage.output, reply, record, index != nullptr, options.timeout);
  result.duration = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  return result;
}

TestResult runTest(const FtwTest& test, const ReplayOptions& options, RecordIndex* index) {
  TestResult result;
  result.test = &test;
  if (!test.enabled) {
    result.outcome = Outcome::kSkip;
    return result;
  }
  for (const auto& stage : test.stages) {
    result.stages.push_back(runStage(stage, options, index));
    if (result.stages.back().outcome == Outcome::kFail) {
      result.outcome = Outcome::kFail;
    }
  }
  return result;
}

}  // namespace

StageResult evaluateStage(const FtwOutput& output, const ExchangeResult& exchange,
                          const std::optional<AuditRecord>& record, bool records_enabled,
                          std::chrono::milliseconds timeout) {
  StageResult result;
  result.status = exchange.status;
  result.error = exchange.error;
  result.client_port = exchange.local_port;
  result.record_found = record.has_value();
  if (record) {
    result.rule_ids = record->rule_ids;
  }

  if (output.expect_error) {
    if (exchange.error.empty()) {
      result.reasons.push_back(
          fmt::format("expected an error, got status {}", exchange.status.value_or(0)));
    }
  } else {
    checkStatus(output, exchange, result);
    if (output.needsRecord()) {
      if (!records_enabled) {
        result.reasons.push_back("log checks need --records");
      } else if (!exchange.connected) {
        result.reasons.push_back(exchange.error);
      } else if (!record) {
        std::string reason = fmt::format("no record for client port {} within {} ms",
                                         exchange.local_port, timeout.count());
        if (!exchange.error.empty()) {
          reason += fmt::format(" ({})", exchange.error);
        }
        result.reasons.push_back(std::move(reason));
      } else {
        checkLogs(output, *record, result);
      }
    }
  }
  result.outcome = result.reasons.empty() ? Outcome::kPass : Outcome::kFail;
  return result;
}

std::string formatResultLine(const TestResult& result) {
  const std::string name =
      fmt::format("{}:{}", result.test->file.generic_string(), result.test->title);
  if (result.outcome == Outcome::kSkip) {
    return "SKIP " + name;
  }
  for (std::size_t i = 0; i < result.stages.size(); ++i) {
    const StageResult& stage = result.stages[i];
    if (stage.outcome == Outcome::kFail) {
      return fmt::format("FAIL {} stage {}: {}", name, i + 1, fmt::join(stage.reasons, "; "));
    }
  }
  return "PASS " + name;
}

std::string formatSummary(const Summary& summary) {
  std::string line = fmt::format("{} passed, {} failed", summary.passed, summary.failed);
  if (summary.skipped > 0) {
    line += fmt::format(", {} skipped", summary.skipped);
  }
  return line;
}

std::string renderJsonReport(const std::vector<TestResult>& results, const Summary& summary,
                             const ReplayOptions& options) {
  std::string out;
  JsonWriter json(out);
  json.beginObject();
  json.member("target", fmt::format("{}://{}:{}", options.target.tls ? "https" : "http",
                                    options.target.host, options.target.port));
  json.key("records");
  if (options.records) {
    json.string(options.records->string());
  } else {
    json.null();
  }
  json.member("timeout_ms", static_cast<std::int64_t>(options.timeout.count()));
  json.key("summary");
  json.beginObject();
  json.member("passed", static_cast<std::int64_t>(summary.passed));
  json.member("failed", static_cast<std::int64_t>(summary.failed));
  json.member("skipped", static_cast<std::int64_t>(summary.skipped));
  json.endObject();

  json.key("tests");
  json.beginArray();
  for (const TestResult& result : results) {
    json.beginObject();
    json.member("file", result.test->file.generic_string());
    json.member("title", result.test->title);
    json.member("result", outcomeName(result.outcome));
    json.key("stages");
    json.beginArray();
    for (std::size_t s = 0; s < result.stages.size(); ++s) {
      const StageResult& stage = result.stages[s];
      json.beginObject();
      json.member("stage", static_cast<std::int64_t>(s + 1));
      json.member("result", outcomeName(stage.outcome));
      json.key("status");
      if (stage.status) {
        json.integer(*stage.status);
      } else {
        json.null();
      }
      json.key("error");
      if (stage.error.empty()) {
        json.null();
      } else {
        json.string(stage.error);
      }
      json.member("client_port", static_cast<std::int64_t>(stage.client_port));
      json.member("record_found", stage.record_found);
      json.key("rule_ids");
      json.beginArray();
      for (const auto& id : stage.rule_ids) {
        json.string(id);
      }
      json.endArray();
      json.key("reasons");
      json.beginArray();
      for (const auto& reason : stage.reasons) {
        json.string(reason);
      }
      json.endArray();
      json.member("duration_ms", static_cast<std::int64_t>(stage.duration.count()));
      json.endObject();
    }
    json.endArray();
    json.endObject();
  }
  json.endArray();
  json.endObject();
  out += '\n';
  return out;
}

std::vector<TestResult> runTests(const std::vector<FtwTest>& tests, const ReplayOptions& options,
                                 std::ostream& out, Summary& summary) {
  std::unique_ptr<RecordIndex> index;
  if (options.records) {
    index = std::make_unique<RecordIndex>(*options.records);
  }

  std::vector<TestResult> results(tests.size());
  std::vector<char> done(tests.size(), 0);
  std::atomic<std::size_t> next{0};
  std::mutex print_mutex;
  std::size_t next_to_print = 0;

  // Lines go out in test order, each as soon as every earlier test is done,
  // so the output of two runs can be compared line by line.
  auto publish = [&](std::size_t i, TestResult result) {
    std::lock_guard lock(print_mutex);
    results[i] = std::move(result);
    done[i] = 1;
    while (next_to_print < tests.size() && done[next_to_print] != 0) {
      const TestResult& ready = results[next_to_print];
      if (ready.outcome == Outcome::kFail || options.verbose) {
        out << formatResultLine(ready) << '\n' << std::flush;
      }
      ++next_to_print;
    }
  };

  auto work = [&] {
    for (std::size_t i = next.fetch_add(1); i < tests.size(); i = next.fetch_add(1)) {
      publish(i, runTest(tests[i], options, index.get()));
    }
  };

  const unsigned threads = std::max(1u, options.concurrency);
  std::vector<std::thread> workers;
  workers.reserve(threads);
  for (unsigned t = 0; t < threads; ++t) {
    workers.emplace_back(work);
  }
  for (auto& worker : workers) {
    worker.join();
  }

  summary = Summary{};
  for (const auto& result : results) {
    switch (result.outcome) {
      case Outcome::kPass:
        ++summary.passed;
        break;
      case Outcome::kFail:
        ++summary.failed;
        break;
      case Outcome::kSkip:
        ++summary.skipped;
        break;
    }
  }
  if (index && index->skippedLines() > 0) {
    spdlog::warn("skipped {} lines in {} that are not JSON audit records", index->skippedLines(),
                 options.records->string());
  }
  out << formatSummary(summary) << '\n' << std::flush;
  return results;
}

}  // namespace webtrap::replay
