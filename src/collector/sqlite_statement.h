// A prepared SQLite statement, finalized on destruction, for the state
// files of the MISP and STIX outputs. Errors throw std::runtime_error
// whose message starts with the `what` given to the constructor, such as
// "MISP state". The dashboard index has its own wrapper in
// dashboard_sqlite.h.
#pragma once

#include <sqlite3.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace webtrap::collector {

class SqliteStatement {
 public:
  // `what` must outlive the statement; a string literal is meant.
  SqliteStatement(sqlite3* db, const char* sql, const char* what) : what_(what) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) {
      throw std::runtime_error(
          fmt::format("{}: preparing `{}` failed: {}", what_, sql, sqlite3_errmsg(db)));
    }
  }
  ~SqliteStatement() { sqlite3_finalize(stmt_); }
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;

  SqliteStatement& bind(int index, std::string_view text) {
    sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    return *this;
  }
  SqliteStatement& bind(int index, std::int64_t value) {
    sqlite3_bind_int64(stmt_, index, value);
    return *this;
  }
  SqliteStatement& bindNull(int index) {
    sqlite3_bind_null(stmt_, index);
    return *this;
  }
  // Returns true when a row is ready.
  bool step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) {
      return true;
    }
    if (rc != SQLITE_DONE) {
      throw std::runtime_error(
          fmt::format("{}: {}", what_, sqlite3_errmsg(sqlite3_db_handle(stmt_))));
    }
    return false;
  }
  void run() {
    step();
    reset();
  }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  std::string text(int column) const {
    const unsigned char* value = sqlite3_column_text(stmt_, column);
    return value ? std::string(reinterpret_cast<const char*>(value),
                               static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column)))
                 : std::string();
  }
  std::int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }
  bool isNull(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }

 private:
  const char* what_;
  sqlite3_stmt* stmt_ = nullptr;
};

}  // namespace webtrap::collector
