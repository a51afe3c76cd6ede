// forEachLine() and forEachRecordLine(): where an NDJSON body is cut into
// lines, and which lines contain a record.
#include "common/ndjson_lines.h"

#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace webtrap {
namespace {

std::vector<std::string> lines(std::string_view text) {
  std::vector<std::string> out;
  forEachLine(text, [&](std::string_view line) { out.emplace_back(line); });
  return out;
}

std::vector<std::string> recordLines(std::string_view text) {
  std::vector<std::string> out;
  forEachRecordLine(text, [&](std::string_view line) { out.emplace_back(line); });
  return out;
}

using Lines = std::vector<std::string>;

TEST(NdjsonLines, EmptyTextHasNoLines) {
  EXPECT_EQ(lines(""), Lines{});
  EXPECT_EQ(recordLines(""), Lines{});
}

TEST(NdjsonLines, LastLineNeedsNoNewline) {
  EXPECT_EQ(lines("a\nb"), (Lines{"a", "b"}));
  EXPECT_EQ(lines("a\nb\n"), (Lines{"a", "b"}));
  EXPECT_EQ(lines("a"), (Lines{"a"}));
}

TEST(NdjsonLines, KeepsEmptyLinesAndCarriageReturns) {
  EXPECT_EQ(lines("\n"), (Lines{""}));
  EXPECT_EQ(lines("a\n\n"), (Lines{"a", ""}));
  EXPECT_EQ(lines("a\r\n \t\n\rb"), (Lines{"a\r", " \t", "\rb"}));
}

TEST(NdjsonLines, LinesAreViewsIntoText) {
  std::string text = "ab\ncd";
  std::vector<const char*> starts;
  forEachLine(text, [&](std::string_view line) { starts.push_back(line.data()); });
  ASSERT_EQ(starts.size(), 2u);
  EXPECT_EQ(starts[0], text.data());
  EXPECT_EQ(starts[1], text.data() + 3);
}

TEST(NdjsonLines, RecordLinesDropOneCarriageReturn) {
  EXPECT_EQ(recordLines("{}\r\n{\"a\":1}\r\n"), (Lines{"{}", "{\"a\":1}"}));
  EXPECT_EQ(recordLines("x\r\r\n"), (Lines{"x\r"}));
  EXPECT_EQ(recordLines("\rx\n"), (Lines{"\rx"}));
}

TEST(NdjsonLines, RecordLinesSkipBlankLines) {
  EXPECT_EQ(recordLines("\n\n \t\n\r\n \t\r\na\n"), (Lines{"a"}));
  // Only spaces and tabs count as blank: a lone '\r' left in a line does not.
  EXPECT_EQ(recordLines("\r\r\n"), (Lines{"\r"}));
  EXPECT_EQ(recordLines(" a \n"), (Lines{" a "}));
}

}  // namespace
}  // namespace webtrap
