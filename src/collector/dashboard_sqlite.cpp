#include "collector/dashboard_sqlite.h"

#include <fmt/format.h>

#include "common/file_io.h"

namespace webtrap::collector::dashboard {

Database::Database(const std::filesystem::path& path, bool read_only) : path_(path) {
  int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (!read_only) {
    // The index repeats sources, paths and user agents from the store, so
    // it is private to the collector's user like the store.
    createPrivateFile(path);
  }
  int rc = sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string detail = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw SqliteError(fmt::format("dashboard index {}: cannot open the database: {}; check that "
                                  "the collector's user can write the folder",
                                  path.string(), detail));
  }
  sqlite3_busy_timeout(db_, 5000);
}

Database::~Database() { sqlite3_close_v2(db_); }

void Database::exec(const char* sql) {
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    fail(rc, sql);
  }
}

void Database::fail(int code, std::string_view action) const {
  throw SqliteError(fmt::format("dashboard index {}: {} failed: {} ({})", path_.string(), action,
                                sqlite3_errmsg(db_), sqlite3_errstr(code)));
}

Statement::Statement(Database& db, std::string_view sql) : db_(db) {
  int rc = sqlite3_prepare_v2(db.handle(), sql.data(), static_cast<int>(sql.size()), &stmt_,
                              nullptr);
  if (rc != SQLITE_OK) {
    db.fail(rc, fmt::format("preparing \"{}\"", sql));
  }
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement& Statement::bind(int index, std::int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

Statement& Statement::bind(int index, double value) {
  sqlite3_bind_double(stmt_, index, value);
  return *this;
}

Statement& Statement::bind(int index, std::string_view text) {
  // A default-constructed string_view has a null data pointer, which SQLite
  // would bind as NULL rather than as an empty string.
  const char* data = text.data() != nullptr ? text.data() : "";
  sqlite3_bind_text64(stmt_, index, data, text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  return *this;
}

Statement& Statement::bindNull(int index) {
  sqlite3_bind_null(stmt_, index);
  return *this;
}

bool Statement::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) {
    return true;
  }
  if (rc == SQLITE_DONE) {
    return false;
  }
  db_.fail(rc, sqlite3_sql(stmt_));
}

void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::string_view Statement::text(int column) const {
  const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt_, column));
  int size = sqlite3_column_bytes(stmt_, column);
  return data ? std::string_view(data, static_cast<std::size_t>(size)) : std::string_view();
}

}  // namespace webtrap::collector::dashboard
