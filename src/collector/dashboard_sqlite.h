// Small RAII helpers over the SQLite C API for the dashboard's index file.
// The store keeps its own connection class; the dashboard index is a
// separate database file, so it needs only these few calls.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

namespace webtrap::collector::dashboard {

class SqliteError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One connection. `read_only` opens an existing file without the right to
// write, for the query side.
class Database {
 public:
  Database(const std::filesystem::path& path, bool read_only);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  sqlite3* handle() const { return db_; }
  void exec(const char* sql);
  [[noreturn]] void fail(int code, std::string_view action) const;

 private:
  std::filesystem::path path_;
  sqlite3* db_ = nullptr;
};

// A prepared statement, finalized when the object ends.
class Statement {
 public:
  Statement(Database& db, std::string_view sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int index, std::int64_t value);
  Statement& bind(int index, double value);
  Statement& bind(int index, std::string_view text);
  Statement& bindNull(int index);
  // Returns the index of a named parameter such as ":sensor", 0 when the
  // statement has none of that name.
  int parameter(const char* name) const { return sqlite3_bind_parameter_index(stmt_, name); }
  // Returns true while there is a row; throws on errors.
  bool step();
  void reset();

  std::int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }
  double real(int column) const { return sqlite3_column_double(stmt_, column); }
  bool isNull(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
  std::string_view text(int column) const;

 private:
  Database& db_;
  sqlite3_stmt* stmt_ = nullptr;
};

}  // namespace webtrap::collector::dashboard
