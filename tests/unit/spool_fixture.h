// A test fixture with an empty spool folder of its own, and helpers that
// write its segments, for the spool reader and shipper tests.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "shipper/spool_reader.h"

namespace webtrap::shipper {

class SpoolFolderTest : public testing::Test {
 protected:
  // `folder_prefix` names the folder under the temporary directory; the
  // process id and the test name follow it.
  explicit SpoolFolderTest(std::string folder_prefix) : folder_prefix_(std::move(folder_prefix)) {}

  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           (folder_prefix_ + "-" + std::to_string(::getpid()) + "-" +
            testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path segment(std::uint64_t number) const {
    return dir_ / segmentFileName(number);
  }

  void append(std::uint64_t number, const std::string& text) const {
    std::ofstream(segment(number), std::ios::app | std::ios::binary) << text;
  }

  std::string folder_prefix_;
  std::filesystem::path dir_;
};

}  // namespace webtrap::shipper
