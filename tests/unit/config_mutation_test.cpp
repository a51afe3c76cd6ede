// Z5: the probe and collector configuration loaders under mutated YAML.
//
// Two kinds of input:
// - every key of each loader's reference table, set alone to each value of a
//   list of wrong or odd values (negative, huge, overflowing, lists, maps,
//   NUL bytes and others). The loader must accept the value or throw a
//   ConfigError that names the key.
// - the example files in etc/ with random edits (bytes deleted, inserted or
//   replaced, lines deleted, repeated, swapped, indented or uncommented,
//   values replaced). The loader must accept the result or throw a
//   ConfigError whose message names the file or a key. Any other exception
//   fails the test, and a crash ends it.
//
// The random edits use a fixed seed, so a failure repeats. Set
// WEBTRAP_MUTATION_SEED to try other inputs and WEBTRAP_MUTATION_ROUNDS
// (default 600 per file) to run longer.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "collector/collector_config.h"
#include "collector/dashboard_service.h"
#include "common/error.h"
#include "probe/config.h"
#include "temp_path.h"

namespace webtrap {
namespace {

namespace fs = std::filesystem;

// Values that a key may get from a careless edit or a hostile file. Each is
// valid YAML, so a loader that rejects it has to say which key is wrong.
const std::vector<std::string> kOddValues = {
    "\"\"",
    "-1",
    "0",
    "1.5",
    "1e400",
    "0x10",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "17179869184GiB",
    "213503982334601d",
    "5000000000000000000ms",
    "abc",
    "\"a\\0b\"",
    "\"\\xff\\xfe\"",
    "[1, 2]",
    "[]",
    "{a: 1}",
    "{}",
    "{[a]: 1}",
    "{~: 1}",
    "~",
    "true",
    "!!binary aGVsbG8=",
    "\"[::1]:99999\"",
    "\"http://[::1\"",
    "/nonexistent/webtrap-mutation/file.pem",
};

// The keys in the first column of a reference table made by
// config_table::referenceRows, with `type` in the second column when given.
std::vector<std::string> referenceKeys(const std::string& reference,
                                       const std::string& type = "") {
  std::vector<std::string> keys;
  std::istringstream lines(reference);
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.starts_with("| ")) {
      continue;
    }
    std::size_t key_end = line.find(" | ", 2);
    if (key_end == std::string::npos) {
      continue;
    }
    std::string key = line.substr(2, key_end - 2);
    std::size_t type_end = line.find(" | ", key_end + 3);
    std::string key_type =
        type_end == std::string::npos ? "" : line.substr(key_end + 3, type_end - key_end - 3);
    if (key != "key" && key != "variable" && !key.empty() &&
        key.find(' ') == std::string::npos && (type.empty() || key_type == type)) {
      keys.push_back(key);
    }
  }
  return keys;
}

// `a.b.c` set to `value` as nested YAML maps.
std::string nestedYaml(const std::string& key, const std::string& value) {
  std::string text;
  std::string indent;
  std::size_t start = 0;
  while (true) {
    std::size_t dot = key.find('.', start);
    if (dot == std::string::npos) {
      text += indent + key.substr(start) + ": " + value + "\n";
      return text;
    }
    text += indent + key.substr(start, dot - start) + ":\n";
    indent += "  ";
    start = dot + 1;
  }
}

// An empty file that the loaders overwrite. It is removed when the returned
// object goes out of scope.
test_support::TempFile scratchFile(const std::string& stem) {
  return test_support::TempFile("webtrap-config-mutation-" + stem, {}, ".yaml");
}

struct Loader {
  std::string name;
  std::vector<std::string> keys;
  // Loads the YAML text. A loader that reads files writes the text to `file`.
  std::function<void(const std::string& text, const fs::path& file)> load;
};

Loader probeLoader() {
  return {"probe", referenceKeys(probe::configurationReference()),
          [](const std::string& text, const fs::path& file) {
            std::ofstream(file, std::ios::binary | std::ios::trunc) << text;
            probe::loadProbeConfig(file);
          }};
}

Loader collectorLoader() {
  return {"collector", referenceKeys(collector::collectorConfigurationReference()),
          [](const std::string& text, const fs::path& file) {
            collector::CollectorConfig config = collector::parseCollectorConfig(text, file.string());
            // `webtrap collector` reads the dashboard section when it starts.
            collector::parseDashboardOptions(config.dashboard);
          }};
}

// What happened to one input: "" when loaded, the ConfigError's message, or a
// description of any other exception.
struct Outcome {
  bool loaded = false;
  bool config_error = false;
  std::string message;
};

Outcome tryLoad(const Loader& loader, const std::string& text, const fs::path& file) {
  Outcome outcome;
  try {
    loader.load(text, file);
    outcome.loaded = true;
  } catch (const ConfigError& error) {
    outcome.config_error = true;
    outcome.message = error.what();
  } catch (const std::exception& error) {
    outcome.message = std::string("exception other than ConfigError: ") + error.what();
  } catch (...) {
    outcome.message = "exception of an unknown type";
  }
  return outcome;
}

void checkEveryKey(const Loader& loader) {
  ASSERT_GT(loader.keys.size(), 20u) << loader.name << ": the reference table was not read";
  test_support::TempFile scratch = scratchFile(loader.name + "-keys");
  const fs::path& file = scratch.path();
  int rejected = 0;
  for (const std::string& key : loader.keys) {
    for (const std::string& value : kOddValues) {
      std::string text = nestedYaml(key, value);
      Outcome outcome = tryLoad(loader, text, file);
      if (outcome.loaded) {
        continue;
      }
      ++rejected;
      EXPECT_TRUE(outcome.config_error) << loader.name << " " << key << ": " << value << "\n"
                                        << outcome.message;
      // Some keys are checked against each other, such as a size that must
      // not be below another. The message then names both.
      EXPECT_NE(outcome.message.find(key), std::string::npos)
          << loader.name << ": the error for `" << key << ": " << value
          << "` does not name the key: " << outcome.message;
    }
  }
  // Most of the values are wrong for most keys.
  EXPECT_GT(rejected, static_cast<int>(loader.keys.size()));
}

TEST(ConfigMutation, ProbeKeysWithOddValuesNameTheKey) { checkEveryKey(probeLoader()); }

TEST(ConfigMutation, CollectorKeysWithOddValuesNameTheKey) { checkEveryKey(collectorLoader()); }

// A size or duration whose number fits in 64 bits but whose value with the
// unit does not must be rejected, not wrapped around to a small value. A
// duration must also fit in signed 64-bit milliseconds, the type the
// timers take.
void checkOverflow(const Loader& loader, const std::string& reference) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> kinds = {
      {"size", {"17179869184GiB", "18014398509481984M", "18446744073709551615K"}},
      {"duration", {"213503982334601d", "5124095576030432h", "9223372036854775808ms"}},
  };
  test_support::TempFile scratch = scratchFile(loader.name + "-overflow");
  const fs::path& file = scratch.path();
  int checked = 0;
  for (const auto& [type, values] : kinds) {
    std::vector<std::string> keys = referenceKeys(reference, type);
    EXPECT_FALSE(keys.empty()) << loader.name << ": no key of type " << type;
    for (const std::string& key : keys) {
      for (const std::string& value : values) {
        ++checked;
        Outcome outcome = tryLoad(loader, nestedYaml(key, value), file);
        EXPECT_TRUE(outcome.config_error)
            << loader.name << ": `" << key << ": " << value << "` "
            << (outcome.loaded ? "was accepted" : outcome.message);
        EXPECT_NE(outcome.message.find(key), std::string::npos)
            << loader.name << " " << key << ": " << outcome.message;
      }
    }
  }
  EXPECT_GT(checked, 10);
}

TEST(ConfigMutation, ProbeSizesAndDurationsDoNotWrapAround) {
  checkOverflow(probeLoader(), probe::configurationReference());
}

TEST(ConfigMutation, CollectorSizesAndDurationsDoNotWrapAround) {
  checkOverflow(collectorLoader(), collector::collectorConfigurationReference());
}

// Random edits of a YAML text.
class Mutator {
 public:
  explicit Mutator(std::uint64_t seed) : random_(seed) {}

  std::string mutate(std::string text) {
    int edits = pick(1, 3);
    for (int i = 0; i < edits; ++i) {
      text = edit(std::move(text));
    }
    return text;
  }

 private:
  int pick(int low, int high) { return std::uniform_int_distribution<int>(low, high)(random_); }

  std::vector<std::string> splitLines(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream stream(text);
    std::string line;
    while (std::getline(stream, line)) {
      lines.push_back(line);
    }
    return lines;
  }

  std::string joinLines(const std::vector<std::string>& lines) {
    std::string text;
    for (const auto& line : lines) {
      text += line + "\n";
    }
    return text;
  }

  std::string edit(std::string text) {
    static const std::string kSyntax = ":-[]{}&*!|>'\"%@`#,? \t\n\\";
    if (text.empty()) {
      return "x: [";
    }
    std::size_t at = static_cast<std::size_t>(pick(0, static_cast<int>(text.size()) - 1));
    std::vector<std::string> lines = splitLines(text);
    std::size_t line = static_cast<std::size_t>(pick(0, static_cast<int>(lines.size()) - 1));
    switch (pick(0, 10)) {
      case 0:  // delete a few bytes
        text.erase(at, static_cast<std::size_t>(pick(1, 8)));
        return text;
      case 1:  // insert a YAML syntax character
        text.insert(at, 1, kSyntax[static_cast<std::size_t>(pick(0, kSyntax.size() - 1))]);
        return text;
      case 2:  // replace a byte with any byte
        text[at] = static_cast<char>(pick(0, 255));
        return text;
      case 3:  // delete a line
        lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(line));
        return joinLines(lines);
      case 4:  // repeat a line
        lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(line), lines[line]);
        return joinLines(lines);
      case 5:  // swap two lines
        std::swap(lines[line], lines[static_cast<std::size_t>(
                                   pick(0, static_cast<int>(lines.size()) - 1))]);
        return joinLines(lines);
      case 6:  // indent or dedent a line
        if (pick(0, 1) == 0) {
          lines[line].insert(0, static_cast<std::size_t>(pick(1, 4)), ' ');
        } else {
          lines[line].erase(0, lines[line].find_first_not_of(' ') == 0 ? 0 : 2);
        }
        return joinLines(lines);
      case 7: {  // uncomment a line, which may turn on a whole section
        std::size_t hash = lines[line].find("# ");
        if (hash != std::string::npos) {
          lines[line].erase(hash, 2);
        }
        return joinLines(lines);
      }
      case 8: {  // replace the value of a `key: value` line
        std::size_t colon = lines[line].find(": ");
        if (colon != std::string::npos) {
          lines[line] = lines[line].substr(0, colon + 2) +
                        kOddValues[static_cast<std::size_t>(
                            pick(0, static_cast<int>(kOddValues.size()) - 1))];
        }
        return joinLines(lines);
      }
      case 9: {  // turn a key into a list or a map, which YAML allows
        std::size_t colon = lines[line].find(':');
        std::size_t first = lines[line].find_first_not_of(' ');
        if (colon != std::string::npos && first != std::string::npos && first < colon) {
          std::string key = lines[line].substr(first, colon - first);
          lines[line] = lines[line].substr(0, first) + (pick(0, 1) == 0 ? "[" + key + "]"
                                                                        : "{" + key + ": 1}") +
                        lines[line].substr(colon);
        }
        return joinLines(lines);
      }
      default:  // an anchor and an alias, or a merge key
        lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(line),
                     pick(0, 1) == 0 ? "<<: {sensor: {id: merged}}" : "x: &a [*a]");
        return joinLines(lines);
    }
  }

  std::mt19937_64 random_;
};

std::uint64_t environmentNumber(const char* name, std::uint64_t fallback) {
  const char* text = std::getenv(name);
  return text != nullptr && *text != '\0' ? std::strtoull(text, nullptr, 10) : fallback;
}

// `text` with each run of spaces, tabs and line ends replaced by one space,
// and other control bytes left out, because a key with such a byte does not
// always come back in the message as it was written.
std::string collapseWhitespace(const std::string& text) {
  std::string out;
  for (char c : text) {
    bool blank = c == ' ' || c == '\t' || c == '\n' || c == '\r';
    if (!blank && static_cast<unsigned char>(c) < 0x20) {
      continue;
    }
    if (!blank || out.empty() || out.back() != ' ') {
      out += blank ? ' ' : c;
    }
  }
  return out;
}

// Whether an error message names the file, or starts with the path of a key
// whose first or last part is in the input: "KEY: what is wrong and the fix"
// or "KEY (VALUE) is ...". A path such as listeners[1].tls or
// outputs.ndjson.retry_max may end in a key that the input leaves at its
// default. A key with no name (`: x`) is named by its line.
bool namesFileOrKey(const std::string& message, const fs::path& file, const std::string& text) {
  if (message.find(file.string()) != std::string::npos ||
      message.find("the key at line ") != std::string::npos) {
    return true;
  }
  std::size_t end = std::min(message.find(": "), message.find(" ("));
  if (end == std::string::npos || end == 0) {
    return false;
  }
  std::string key = message.substr(0, end);
  std::size_t first_dot = key.find('.');
  std::size_t last_dot = key.rfind('.');
  std::vector<std::string> parts = {
      first_dot == std::string::npos ? key : key.substr(0, first_dot),
      last_dot == std::string::npos ? key : key.substr(last_dot + 1)};
  // A multi-line plain key is named with its lines folded into one, and
  // control bytes are written as \xHH in messages (ConfigError).
  std::string folded_text = collapseWhitespace(withVisibleControlBytes(text));
  for (std::string part : parts) {
    if (std::size_t bracket = part.find('['); bracket != std::string::npos && bracket > 0) {
      part.erase(bracket);
    }
    part = collapseWhitespace(part);
    part.erase(0, part.find_first_not_of(' '));
    part.erase(part.find_last_not_of(' ') + 1);
    if (!part.empty() && folded_text.find(part) != std::string::npos) {
      return true;
    }
  }
  return false;
}

void checkRandomEdits(const Loader& loader, const std::string& example) {
  std::ifstream stream(fs::path(WEBTRAP_SOURCE_DIR) / "etc" / example, std::ios::binary);
  ASSERT_TRUE(stream) << "etc/" << example << " not found";
  std::string original((std::istreambuf_iterator<char>(stream)), std::istreambuf_iterator<char>());
  // The collector checks that a CA file of an output exists when it loads
  // the file, so the example's path is replaced with one that exists.
  test_support::TempFile ca_scratch = scratchFile(loader.name + "-ca");
  const fs::path& ca_file = ca_scratch.path();
  std::ofstream(ca_file) << "-----BEGIN CERTIFICATE-----\n";
  for (std::size_t at = original.find("/etc/webtrap/elasticsearch-ca.pem");
       at != std::string::npos; at = original.find("/etc/webtrap/elasticsearch-ca.pem")) {
    original.replace(at, std::strlen("/etc/webtrap/elasticsearch-ca.pem"), ca_file.string());
  }
  std::uint64_t seed = environmentNumber("WEBTRAP_MUTATION_SEED", 20261205);
  std::uint64_t rounds = environmentNumber("WEBTRAP_MUTATION_ROUNDS", 600);
  Mutator mutator(seed ^ std::hash<std::string>{}(example));
  test_support::TempFile scratch = scratchFile(loader.name + "-edits");
  const fs::path& file = scratch.path();

  Outcome baseline = tryLoad(loader, original, file);
  ASSERT_TRUE(baseline.loaded) << "etc/" << example << ": " << baseline.message;

  int loaded = 0;
  int failures = 0;
  for (std::uint64_t round = 0; round < rounds && failures < 10; ++round) {
    std::string text = mutator.mutate(original);
    Outcome outcome = tryLoad(loader, text, file);
    if (outcome.loaded) {
      ++loaded;
      continue;
    }
    if (!outcome.config_error || !namesFileOrKey(outcome.message, file, text)) {
      ++failures;
      ADD_FAILURE() << "etc/" << example << " round " << round << " (seed " << seed
                    << "): " << outcome.message << "\n--- input ---\n"
                    << text << "--- end ---";
    }
  }
  EXPECT_GT(loaded, 0) << "no edit of etc/" << example << " loaded; the edits are too rough";
}

TEST(ConfigMutation, RandomEditsOfProbeExample) { checkRandomEdits(probeLoader(), "probe.yaml"); }

TEST(ConfigMutation, RandomEditsOfCollectorExample) {
  checkRandomEdits(collectorLoader(), "collector.yaml");
}

TEST(ConfigMutation, RandomEditsOfCollectorElasticsearchExample) {
  checkRandomEdits(collectorLoader(), "collector-elasticsearch.example.yaml");
}

}  // namespace
}  // namespace webtrap
