// Reads a row count from a SQLite file, or runs a statement on it, through a
// connection of its own, for the tests that check or change what the store
// wrote.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace webtrap::collector {

// Returns the number of rows of `table` in `database`, or -1 on failure.
inline std::int64_t countRows(const std::filesystem::path& database, const std::string& table) {
  sqlite3* db = nullptr;
  std::int64_t rows = -1;
  if (sqlite3_open(database.c_str(), &db) == SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    std::string sql = "SELECT count(*) FROM " + table;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      rows = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  EXPECT_GE(rows, 0) << "cannot count the rows of " << table << " in " << database;
  return rows;
}

// Runs one SQL statement on `database` and fails the test when it fails.
inline void execSql(const std::filesystem::path& database, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(database.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  char* error = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  std::string message = error != nullptr ? error : "";
  sqlite3_free(error);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << sql << ": " << message;
}

}  // namespace webtrap::collector
