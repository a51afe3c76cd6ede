#include "replay/record_index.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>

#include <fmt/format.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include "common/encoding.h"

namespace webtrap::replay {
namespace {

namespace fs = std::filesystem;
using simdjson::dom::element;

// Reads a field as text whatever its JSON type, because producers differ:
// nginx writes severity as "2", other writers may write 2.
std::string fieldText(element object, std::string_view key) {
  element value;
  if (object.at_key(key).get(value) != simdjson::SUCCESS) {
    return {};
  }
  switch (value.type()) {
    case simdjson::dom::element_type::STRING:
      return std::string(value.get_string().value_unsafe());
    case simdjson::dom::element_type::INT64:
      return std::to_string(value.get_int64().value_unsafe());
    case simdjson::dom::element_type::UINT64:
      return std::to_string(value.get_uint64().value_unsafe());
    case simdjson::dom::element_type::DOUBLE:
      return fmt::format("{}", value.get_double().value_unsafe());
    case simdjson::dom::element_type::BOOL:
      return value.get_bool().value_unsafe() ? "true" : "false";
    default:
      return {};
  }
}

int fieldInt(element object, std::string_view key, int fallback) {
  const std::string text = fieldText(object, key);
  if (text.empty()) {
    return fallback;
  }
  try {
    return std::stoi(text);
  } catch (const std::exception&) {
    return fallback;
  }
}

void appendTag(std::string& out, std::string_view name, std::string_view value) {
  out += fmt::format(" [{} \"{}\"]", name, value);
}

// Renders one message like libmodsecurity 3's RuleMessage error log line.
void renderMessage(std::string& out, element message, const std::string& host_ip,
                   const std::string& uri, const std::string& unique_id) {
  element details;
  const bool has_details = message.at_key("details").get(details) == simdjson::SUCCESS &&
                           details.type() == simdjson::dom::element_type::OBJECT;
  auto detail = [&](std::string_view key) { return has_details ? fieldText(details, key) : ""; };

  out += "ModSecurity: Warning. ";
  out += detail("match");
  appendTag(out, "file", detail("file"));
  appendTag(out, "line", detail("lineNumber"));
  appendTag(out, "id", detail("ruleId"));
  appendTag(out, "rev", detail("rev"));
  appendTag(out, "msg", fieldText(message, "message"));
  appendTag(out, "data", detail("data"));
  appendTag(out, "severity", detail("severity"));
  appendTag(out, "ver", detail("ver"));
  appendTag(out, "maturity", detail("maturity"));
  appendTag(out, "accuracy", detail("accuracy"));
  simdjson::dom::array tags;
  if (has_details && details.at_key("tags").get(tags) == simdjson::SUCCESS) {
    for (element tag : tags) {
      std::string_view text;
      if (tag.get(text) == simdjson::SUCCESS) {
        appendTag(out, "tag", text);
      }
    }
  }
  appendTag(out, "hostname", host_ip);
  appendTag(out, "uri", uri);
  appendTag(out, "unique_id", unique_id);
  appendTag(out, "ref", detail("reference"));
  out += '\n';
}

std::uint64_t inodeOf(const fs::path& file, std::uint64_t& size) {
  struct stat info {};
  if (::stat(file.c_str(), &info) != 0) {
    size = 0;
    return 0;
  }
  size = static_cast<std::uint64_t>(info.st_size);
  return static_cast<std::uint64_t>(info.st_ino);
}

}  // namespace

std::string normalizeAddress(std::string_view address) {
  constexpr std::string_view kMapped = "::ffff:";
  if (address.size() > kMapped.size() && address.substr(0, kMapped.size()) == kMapped &&
      address.find('.') != std::string_view::npos) {
    address.remove_prefix(kMapped.size());
  }
  return std::string(address);
}

std::optional<AuditRecord> parseAuditRecord(std::string_view line) {
  // A parser per call keeps this function thread-safe; the index reuses one
  // thread for all its lines, so the allocation cost is per line read.
  simdjson::dom::parser parser;
  element doc;
  auto error = parser.parse(line.data(), line.size()).get(doc);
  std::string sanitized;
  if (error == simdjson::UTF8_ERROR) {
    // libmodsecurity 3.0.9 copies request bytes into its JSON unchanged, so
    // a request with %FF in the URI yields a line that is not valid UTF-8.
    appendSanitizedUtf8(sanitized, line);
    error = parser.parse(sanitized).get(doc);
  }
  if (error != simdjson::SUCCESS) {
    return std::nullopt;
  }
  element transaction;
  if (doc.at_key("transaction").get(transaction) != simdjson::SUCCESS ||
      transaction.type() != simdjson::dom::element_type::OBJECT) {
    return std::nullopt;
  }
  AuditRecord record;
  record.client_ip = normalizeAddress(fieldText(transaction, "client_ip"));
  record.client_port = fieldInt(transaction, "client_port", -1);
  if (record.client_port < 0) {
    return std::nullopt;
  }
  record.unique_id = fieldText(transaction, "unique_id");
  const std::string host_ip = fieldText(transaction, "host_ip");

  std::string uri;
  element request;
  if (transaction.at_key("request").get(request) == simdjson::SUCCESS &&
      request.type() == simdjson::dom::element_type::OBJECT) {
    uri = fieldText(request, "uri");
  }
  element response;
  if (transaction.at_key("response").get(response) == simdjson::SUCCESS &&
      response.type() == simdjson::dom::element_type::OBJECT) {
    record.http_code = fieldInt(response, "http_code", 0);
  }
  simdjson::dom::array messages;
  if (transaction.at_key("messages").get(messages) == simdjson::SUCCESS) {
    for (element message : messages) {
      if (message.type() != simdjson::dom::element_type::OBJECT) {
        continue;
      }
      renderMessage(record.log_text, message, host_ip, uri, record.unique_id);
      element details;
      if (message.at_key("details").get(details) == simdjson::SUCCESS &&
          details.type() == simdjson::dom::element_type::OBJECT) {
        record.rule_ids.push_back(fieldText(details, "ruleId"));
      }
    }
  }
  return record;
}

RecordIndex::RecordIndex(fs::path path, std::chrono::milliseconds poll_interval)
    : path_(std::move(path)), is_folder_(fs::is_directory(path_)), poll_interval_(poll_interval) {
  for (const auto& file : listFiles()) {
    FileState state;
    state.inode = inodeOf(file, state.offset);
    files_.emplace(file, std::move(state));
  }
  poller_ = std::thread([this] { pollLoop(); });
}

RecordIndex::~RecordIndex() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  poller_.join();
}

std::vector<fs::path> RecordIndex::listFiles() const {
  std::vector<fs::path> files;
  if (!is_folder_) {
    files.push_back(path_);
    return files;
  }
  std::error_code ec;
  for (fs::directory_iterator it(path_, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".ndjson") {
      files.push_back(it->path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

void RecordIndex::pollLoop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    {
      std::lock_guard poll_lock(poll_mutex_);
      pollFiles();
    }
    lock.lock();
    changed_.wait_for(lock, poll_interval_, [this] { return stopping_; });
  }
}

void RecordIndex::pollFiles() {
  for (const auto& file : listFiles()) {
    readAppended(file, files_[file]);
  }
}

void RecordIndex::readAppended(const fs::path& file, FileState& state) {
  std::uint64_t size = 0;
  const std::uint64_t inode = inodeOf(file, size);
  if (inode == 0) {
    return;  // not there (yet)
  }
  if (inode != state.inode || size < state.offset) {
    // Rotated or truncated: the file at this path is a new one.
    state = FileState{};
    state.inode = inode;
  }
  if (size == state.offset) {
    return;
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return;
  }
  in.seekg(static_cast<std::streamoff>(state.offset));
  std::string chunk(size - state.offset, '\0');
  in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  chunk.resize(static_cast<std::size_t>(in.gcount()));
  state.offset += chunk.size();

  std::string text = std::move(state.partial);
  text += chunk;
  std::vector<AuditRecord> parsed;
  std::uint64_t skipped = 0;
  std::size_t start = 0;
  for (std::size_t newline = text.find('\n'); newline != std::string::npos;
       newline = text.find('\n', start)) {
    const std::string_view line(text.data() + start, newline - start);
    start = newline + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) {
      continue;
    }
    if (auto record = parseAuditRecord(line)) {
      parsed.push_back(std::move(*record));
    } else {
      ++skipped;
    }
  }
  state.partial = text.substr(start);

  if (parsed.empty() && skipped == 0) {
    return;
  }
  {
    std::lock_guard lock(mutex_);
    skipped_lines_ += skipped;
    for (auto& record : parsed) {
      const auto port = static_cast<std::uint16_t>(record.client_port);
      by_port_[port].push_back(Entry{++sequence_, std::move(record)});
    }
  }
  changed_.notify_all();
}

std::uint64_t RecordIndex::mark() {
  std::lock_guard poll_lock(poll_mutex_);
  pollFiles();
  std::lock_guard lock(mutex_);
  return sequence_;
}

std::optional<AuditRecord> RecordIndex::waitFor(const std::string& client_ip,
                                                std::uint16_t client_port, std::uint64_t mark,
                                                std::chrono::steady_clock::time_point deadline) {
  const std::string expected_ip = normalizeAddress(client_ip);
  auto find = [&]() -> const AuditRecord* {
    const auto it = by_port_.find(client_port);
    if (it == by_port_.end()) {
      return nullptr;
    }
    for (const auto& entry : it->second) {
      // A record without a client address still counts: the port alone is
      // unique among open connections.
      if (entry.sequence > mark &&
          (entry.record.client_ip.empty() || entry.record.client_ip == expected_ip)) {
        return &entry.record;
      }
    }
    return nullptr;
  };

  std::unique_lock lock(mutex_);
  while (true) {
    if (const AuditRecord* record = find()) {
      return *record;
    }
    if (stopping_ || changed_.wait_until(lock, deadline) == std::cv_status::timeout) {
      const AuditRecord* record = find();
      return record ? std::optional<AuditRecord>(*record) : std::nullopt;
    }
  }
}

std::uint64_t RecordIndex::skippedLines() const {
  std::lock_guard lock(mutex_);
  return skipped_lines_;
}

}  // namespace webtrap::replay
