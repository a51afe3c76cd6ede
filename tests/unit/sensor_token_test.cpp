// Token input of `webtrap collector enrol --existing-token-file`.
#include "collector/sensor_token.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/error.h"
#include "temp_path.h"

namespace webtrap::collector {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string kToken = "0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789abcdef";

std::string parseError(const std::string& text) {
  try {
    parseSensorToken(text, "test");
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "";
}

std::string readError(const std::string& path) {
  std::istringstream input;
  try {
    readSensorToken(path, input);
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "";
}

// The file is removed when the returned object goes out of scope.
test_support::TempFile writeFile(const std::string& text) {
  return test_support::TempFile("webtrap-sensor-token-test", text);
}

TEST(SensorToken, TrimsWhiteSpace) {
  EXPECT_EQ(parseSensorToken("  " + kToken + "\r\n", "test"), kToken);
}

TEST(SensorToken, RejectsShortToken) {
  std::string error = parseError(kToken.substr(1));
  EXPECT_THAT(error, HasSubstr("test: invalid token (63 characters"));
  EXPECT_THAT(error, HasSubstr("64 hex digits"));
}

TEST(SensorToken, RejectsNonHexWithoutEchoingIt) {
  std::string text = "secret-" + kToken.substr(7);
  std::string error = parseError(text);
  EXPECT_THAT(error, HasSubstr("invalid token (64 characters"));
  EXPECT_THAT(error, Not(HasSubstr("secret-")));
}

TEST(SensorToken, RejectsEmptyInput) {
  EXPECT_THAT(parseError("\n"), HasSubstr("invalid token (0 characters"));
}

TEST(SensorToken, RejectsTwoTokens) {
  EXPECT_THAT(parseError(kToken + "\n" + kToken + "\n"), HasSubstr("(129 characters"));
}

TEST(SensorToken, ReadsStandardInput) {
  std::istringstream input(kToken + "\n");
  EXPECT_EQ(readSensorToken("-", input), kToken);
}

TEST(SensorToken, ReadsFile) {
  std::istringstream unused;
  EXPECT_EQ(readSensorToken(writeFile(kToken + "\n").string(), unused), kToken);
}

TEST(SensorToken, RejectsMissingFile) {
  std::string error = readError("/nonexistent/web1.token");
  EXPECT_THAT(error, HasSubstr("--existing-token-file /nonexistent/web1.token: cannot read the "
                               "file"));
}

TEST(SensorToken, StopsReadingLongFile) {
  std::string error = readError(writeFile(std::string(1 << 20, 'a')).string());
  EXPECT_THAT(error, HasSubstr("invalid token (4097 characters"));
}

}  // namespace
}  // namespace webtrap::collector
