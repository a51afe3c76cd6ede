// A test fixture with an Ingest over a fresh store in a folder of its own,
// for the tests that send records through the ingest path.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "collector/enrich.h"
#include "collector/ingest.h"
#include "collector/store.h"
#include "common/metrics.h"

namespace webtrap::collector {

class IngestFixture : public ::testing::Test {
 protected:
  // `folder_prefix` names the test's folder under the temporary directory;
  // the process id and the test name follow it.
  IngestFixture(std::string folder_prefix, IngestSource source)
      : folder_prefix_(std::move(folder_prefix)), source_(std::move(source)) {}

  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           (folder_prefix_ + "-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    StoreOptions options;
    options.path = dir_ / "store.sqlite";
    options.synchronous = "normal";
    store_ = std::make_unique<Store>(options);
    enricher_ = std::make_unique<Enricher>(EnrichOptions{});
    ingest_ = std::make_unique<Ingest>(*store_, *enricher_, metrics_, [] {});
  }

  void TearDown() override {
    ingest_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::string folder_prefix_;
  std::filesystem::path dir_;
  MetricsRegistry metrics_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Enricher> enricher_;
  std::unique_ptr<Ingest> ingest_;
  IngestSource source_;
};

}  // namespace webtrap::collector
