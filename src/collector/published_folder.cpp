#include "collector/published_folder.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <ctime>
#include <fstream>
#include <system_error>

#include <openssl/crypto.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/config_table.h"
#include "common/config_values.h"
#include "common/encoding.h"
#include "common/error.h"

namespace webtrap::collector {

namespace http = boost::beast::http;

namespace {

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

// Shorter tokens are rejected, because the token is the only protection of
// the folder and a pulling MISP sends it on every request.
constexpr std::size_t kMinTokenLength = 16;

bool isPrefixCharacter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '~';
}

void checkPrefix(const std::string& prefix, const std::string& key) {
  auto invalid = [&](std::string_view why) {
    return ConfigError(
        fmt::format("{}: \"{}\" {}; give a URL path such as /feeds/misp", key, prefix, why));
  };
  if (prefix.size() < 2 || prefix.front() != '/') {
    throw invalid("must start with / and name at least one path segment");
  }
  if (prefix.back() == '/') {
    throw invalid("must not end with /");
  }
  std::size_t start = 1;
  while (start <= prefix.size()) {
    std::size_t end = prefix.find('/', start);
    if (end == std::string::npos) {
      end = prefix.size();
    }
    std::string_view segment = std::string_view(prefix).substr(start, end - start);
    if (segment.empty() || segment == "." || segment == "..") {
      throw invalid("contains an empty, . or .. segment");
    }
    for (char c : segment) {
      if (!isPrefixCharacter(c)) {
        throw invalid("contains a character other than letters, digits and -_.~/");
      }
    }
    start = end + 1;
  }
  if (prefix == "/v1" || prefix.starts_with("/v1/")) {
    throw invalid("lies under /v1, the path of the ingest endpoints");
  }
}

std::string readTokenFile(const std::string& path, const std::string& key) {
  std::string token = config_values::readSecretFile(path, key);
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ' ||
                            token.back() == '\t')) {
    token.pop_back();
  }
  return token;
}

void checkToken(const std::string& token, const std::string& key) {
  if (token.size() < kMinTokenLength) {
    throw ConfigError(
        fmt::format("{}: the token has {} characters, fewer than {}; make one "
                    "with `openssl rand -hex 32`",
                    key, token.size(), kMinTokenLength));
  }
  for (char c : token) {
    auto byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte == 0x7f) {
      throw ConfigError(
          fmt::format("{}: the token contains a space or control character; make "
                      "one with `openssl rand -hex 32`",
                      key));
    }
  }
}

// Returns the token of an Authorization header: `Bearer TOKEN`, or the bare
// token as MISP's own API keys are sent.
std::string_view tokenOf(std::string_view header) {
  std::size_t space = header.find(' ');
  if (space != std::string_view::npos && equalsIgnoreCase(header.substr(0, space), "Bearer")) {
    header.remove_prefix(space + 1);
    while (!header.empty() && header.front() == ' ') {
      header.remove_prefix(1);
    }
  }
  return header;
}

bool tokenMatches(std::string_view given, const std::string& expected) {
  return given.size() == expected.size() &&
         CRYPTO_memcmp(given.data(), expected.data(), expected.size()) == 0;
}

// Rejects names that could leave the folder or name a hidden file, before
// the output's own rule checks them, so that a loose rule cannot open more.
bool isPlainFileName(std::string_view name) {
  if (name.empty() || name.front() == '.') {
    return false;
  }
  for (char c : name) {
    auto byte = static_cast<unsigned char>(c);
    if (c == '/' || c == '\\' || c == '%' || byte < 0x20 || byte == 0x7f) {
      return false;
    }
  }
  return true;
}

std::string contentTypeOf(std::string_view name) {
  if (name.ends_with(".json")) {
    return "application/json";
  }
  if (name.ends_with(".csv")) {
    return "text/csv";
  }
  return "application/octet-stream";
}

Response makeResponse(const Request& request, http::status status) {
  Response response{status, request.version()};
  response.set(http::field::server, "webtrap-collector");
  response.keep_alive(request.keep_alive());
  return response;
}

Response textResponse(const Request& request, http::status status, std::string_view message) {
  Response response = makeResponse(request, status);
  response.set(http::field::content_type, "text/plain; charset=utf-8");
  if (request.method() != http::verb::head) {
    response.body() = std::string(message) + "\n";
  }
  response.content_length(message.size() + 1);
  return response;
}

PublishedFileResponse denied(Response response, std::string_view reason) {
  PublishedFileResponse result;
  result.response = std::move(response);
  result.denied = reason;
  return result;
}

// Returns true when an If-None-Match value lists `etag` or is "*". Entity
// tags compare weakly (a W/ prefix is ignored), as RFC 9110 requires here.
bool noneMatchHits(std::string_view header, std::string_view etag) {
  std::string_view opaque = etag;  // with its quotes
  std::size_t i = 0;
  while (i < header.size()) {
    while (i < header.size() && (header[i] == ' ' || header[i] == '\t' || header[i] == ',')) {
      ++i;
    }
    if (i >= header.size()) {
      break;
    }
    if (header[i] == '*') {
      return true;
    }
    if (header.substr(i, 2) == "W/") {
      i += 2;
    }
    if (i >= header.size() || header[i] != '"') {
      return false;
    }
    std::size_t close = header.find('"', i + 1);
    if (close == std::string_view::npos) {
      return false;
    }
    if (header.substr(i, close + 1 - i) == opaque) {
      return true;
    }
    i = close + 1;
  }
  return false;
}

// Reads the whole file from `fd`, which the caller opened and fstat'ed.
// Returns false when the file turned out shorter than `size` (changed in
// place) or a read failed.
bool readWhole(int fd, std::uint64_t size, std::string& body, int& error) {
  body.resize(size);
  std::uint64_t done = 0;
  while (done < size) {
    ssize_t got = ::read(fd, body.data() + done, size - done);
    if (got < 0) {
      if (errno == EINTR) {
        continue;
      }
      error = errno;
      return false;
    }
    if (got == 0) {
      error = 0;
      return false;
    }
    done += static_cast<std::uint64_t>(got);
  }
  return true;
}

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

}  // namespace

std::string httpDate(std::int64_t seconds) {
  std::time_t time = static_cast<std::time_t>(seconds);
  std::tm parts{};
  gmtime_r(&time, &parts);
  return fmt::format("{}, {:02d} {} {:04d} {:02d}:{:02d}:{:02d} GMT", kDays[parts.tm_wday],
                     parts.tm_mday, kMonths[parts.tm_mon], parts.tm_year + 1900, parts.tm_hour,
                     parts.tm_min, parts.tm_sec);
}

std::int64_t parseHttpDate(std::string_view text) {
  // "Sun, 06 Nov 1994 08:49:37 GMT": 29 characters at fixed places.
  if (text.size() != 29 || text.substr(3, 2) != ", " || text.substr(25) != " GMT" ||
      text[7] != ' ' || text[11] != ' ' || text[16] != ' ' || text[19] != ':' || text[22] != ':') {
    return -1;
  }
  auto number = [&](std::size_t at, std::size_t length, int& out) {
    const char* begin = text.data() + at;
    auto [end, ec] = std::from_chars(begin, begin + length, out);
    return ec == std::errc() && end == begin + length;
  };
  int month = -1;
  for (int i = 0; i < 12; ++i) {
    if (text.substr(8, 3) == kMonths[i]) {
      month = i;
    }
  }
  std::tm parts{};
  if (month < 0 || !number(5, 2, parts.tm_mday) || !number(12, 4, parts.tm_year) ||
      !number(17, 2, parts.tm_hour) || !number(20, 2, parts.tm_min) ||
      !number(23, 2, parts.tm_sec)) {
    return -1;
  }
  parts.tm_mon = month;
  parts.tm_year -= 1900;
  // timegm() carries an out-of-range field over ("31 Feb" is 3 March), so
  // the date counts only when it formats back to the same text, which also
  // checks the weekday.
  auto seconds = static_cast<std::int64_t>(timegm(&parts));
  return httpDate(seconds) == text ? seconds : -1;
}

PublishedFolder parsePublishedFolder(const YAML::Node& node, const std::string& key) {
  using namespace config_values;
  if (!node.IsMap()) {
    throw ConfigError(
        fmt::format("{}: expected a map such as `serve: {{prefix: /feeds/misp, "
                    "token_file: /etc/webtrap/feed.token}}`",
                    key));
  }
  PublishedFolder folder;
  bool has_prefix = false;
  bool has_token = false;
  for (const auto& entry : node) {
    const std::string name = config_table::keyText(entry.first, key);
    const std::string path = key + "." + name;
    if (name == "prefix") {
      folder.prefix = scalarText(entry.second, path);
      checkPrefix(folder.prefix, path);
      has_prefix = true;
    } else if (name == "token" || name == "token_file") {
      if (has_token) {
        throw ConfigError(fmt::format("{}: give either token or token_file, not both", path));
      }
      std::string text = scalarText(entry.second, path);
      folder.token = name == "token" ? text : readTokenFile(text, path);
      folder.token_setting = name;
      checkToken(folder.token, path);
      has_token = true;
    } else if (name == "allow_anonymous") {
      folder.allow_anonymous = parseBool(scalarText(entry.second, path), path);
    } else if (name == "max_file_size") {
      std::string text = scalarText(entry.second, path);
      folder.max_file_bytes = parseBytes(text, path);
      if (folder.max_file_bytes < (1ULL << 10) || folder.max_file_bytes > (4ULL << 30)) {
        throw ConfigError(
            fmt::format("{}: {} is out of range; give a size from 1KiB to 4GiB", path, text));
      }
    } else {
      throw ConfigError(
          fmt::format("{}: unknown key; valid keys are prefix, token, token_file, "
                      "allow_anonymous and max_file_size",
                      path));
    }
  }
  if (!has_prefix) {
    throw ConfigError(
        fmt::format("{}.prefix: missing; give the URL path to serve the folder "
                    "under, such as /feeds/misp",
                    key));
  }
  if (has_token && folder.allow_anonymous) {
    throw ConfigError(
        fmt::format("{}: both a token and allow_anonymous: true are set; remove "
                    "one of them",
                    key));
  }
  if (!has_token && !folder.allow_anonymous) {
    throw ConfigError(
        fmt::format("{}.token: missing; set token or token_file, or set "
                    "allow_anonymous: true to serve the folder without a token",
                    key));
  }
  return folder;
}

void checkPublishedPrefixes(const std::vector<PublishedFolder>& folders) {
  for (std::size_t i = 0; i < folders.size(); ++i) {
    for (std::size_t j = 0; j < folders.size(); ++j) {
      const std::string& a = folders[i].prefix;
      const std::string& b = folders[j].prefix;
      if (i != j && (a == b || b.starts_with(a + "/"))) {
        throw ConfigError(
            fmt::format("outputs.{}.serve.prefix \"{}\" and outputs.{}.serve.prefix \"{}\" "
                        "overlap; give each output its own URL path",
                        folders[i].name, a, folders[j].name, b));
      }
    }
  }
}

std::shared_ptr<void> PublishedReadSlots::tryAcquire() {
  if (in_use_->fetch_add(1) >= capacity_) {
    in_use_->fetch_sub(1);
    return nullptr;
  }
  auto in_use = in_use_;
  return std::shared_ptr<void>(new char, [in_use](void* slot) {
    delete static_cast<char*>(slot);
    in_use->fetch_sub(1);
  });
}

bool isUnderPrefix(const PublishedFolder& folder, std::string_view target) {
  std::string_view path = target.substr(0, target.find('?'));
  return path == folder.prefix ||
         (path.starts_with(folder.prefix) && path.size() > folder.prefix.size() &&
          path[folder.prefix.size()] == '/');
}

PublishedFileResponse servePublishedFile(const PublishedFolder& folder, const Request& request,
                                         PublishedReadSlots& slots) {
  if (request.method() != http::verb::get && request.method() != http::verb::head) {
    Response response = textResponse(request, http::status::method_not_allowed,
                                     "method not allowed; the folder is read-only, use GET or "
                                     "HEAD");
    response.set(http::field::allow, "GET, HEAD");
    return denied(std::move(response), "method");
  }
  if (!folder.allow_anonymous) {
    bool ok = request.count(http::field::authorization) == 1 &&
              tokenMatches(tokenOf(request[http::field::authorization]), folder.token);
    if (!ok) {
      std::string message =
          folder.token_setting == "token_file"
              ? "missing or wrong token; send Authorization: Bearer <the token in "
                "serve.token_file>"
              : "missing or wrong token; send Authorization: Bearer <serve.token>";
      Response response = textResponse(request, http::status::unauthorized, message);
      response.set(http::field::www_authenticate, "Bearer");
      return denied(std::move(response), "token");
    }
  }

  std::string_view path = request.target();
  path = path.substr(0, path.find('?'));
  std::string_view name = path.substr(std::min(path.size(), folder.prefix.size() + 1));
  if (path.size() <= folder.prefix.size() + 1 || !isPlainFileName(name) ||
      !folder.is_published_name(name)) {
    return denied(textResponse(request, http::status::not_found, "not found"), "name");
  }

  const std::filesystem::path file = folder.folder / std::string(name);
  // O_NOFOLLOW makes a symlink fail with ELOOP, so no link placed in the
  // folder leads out of it. O_NONBLOCK keeps a FIFO from blocking the open.
  FileDescriptor fd(
      ::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (fd.get() < 0) {
    int error = errno;
    if (error == ENOENT || error == ENOTDIR) {
      return {textResponse(request, http::status::not_found, "not found"), {}, 0, nullptr};
    }
    if (error == ELOOP) {
      return denied(textResponse(request, http::status::not_found, "not found"), "symlink");
    }
    spdlog::warn("collector: opening {} of outputs.{}.serve failed: {}", file.string(), folder.name,
                 std::system_category().message(error));
    return denied(
        textResponse(request, http::status::internal_server_error, "the file cannot be read"),
        "read_error");
  }
  struct stat status {};
  if (::fstat(fd.get(), &status) != 0 || !S_ISREG(status.st_mode)) {
    return denied(textResponse(request, http::status::not_found, "not found"), "not_regular");
  }
  // The writer renames each file into place, so it has one link. A second
  // link may be a hard link to a file elsewhere on the file system, which
  // O_NOFOLLOW does not catch.
  if (status.st_nlink != 1) {
    return denied(textResponse(request, http::status::not_found, "not found"), "hardlink");
  }
  auto size = static_cast<std::uint64_t>(status.st_size);
  if (size > folder.max_file_bytes) {
    spdlog::warn(
        "collector: {} is {} bytes, more than outputs.{}.serve.max_file_size ({} bytes); raise "
        "the limit to serve it",
        file.string(), size, folder.name, folder.max_file_bytes);
    return denied(textResponse(request, http::status::internal_server_error,
                               "the file is larger than the configured limit"),
                  "too_large");
  }

  // The inode changes with every rename of a new version over the file, so
  // the tag changes whenever the body may have.
  std::int64_t mtime_ns =
      static_cast<std::int64_t>(status.st_mtim.tv_sec) * 1000000000 + status.st_mtim.tv_nsec;
  std::string etag =
      fmt::format("\"{:x}-{:x}-{:x}\"", static_cast<std::uint64_t>(status.st_ino), size, mtime_ns);
  // Last-Modified has whole seconds, so a file changed in the current
  // second may change again within it and keep the same value. Such a file
  // gets no Last-Modified, and If-Modified-Since cannot make it a 304. The
  // change time counts too: a rename updates it, while the mtime is that of
  // the write, which may be older than a response sent in between.
  const std::int64_t now_s = static_cast<std::int64_t>(std::time(nullptr));
  const std::int64_t changed_s =
      std::max<std::int64_t>(status.st_mtim.tv_sec, status.st_ctim.tv_sec);
  const bool settled = changed_s < now_s;
  Response response = makeResponse(request, http::status::ok);
  response.set(http::field::etag, etag);
  if (settled) {
    response.set(http::field::last_modified, httpDate(changed_s));
  }
  response.set(http::field::cache_control, "no-cache");
  response.set("X-Content-Type-Options", "nosniff");

  // If-None-Match takes precedence; If-Modified-Since counts only without it.
  bool not_modified = false;
  if (request.count(http::field::if_none_match) > 0) {
    not_modified = noneMatchHits(request[http::field::if_none_match], etag);
  } else if (request.count(http::field::if_modified_since) > 0) {
    // A date after the current time is not a date this server sent, and is ignored.
    std::int64_t since = parseHttpDate(request[http::field::if_modified_since]);
    not_modified = settled && since >= 0 && since <= now_s && changed_s <= since;
  }
  if (not_modified) {
    response.result(http::status::not_modified);
    return {std::move(response), {}, 0, nullptr};
  }

  response.set(http::field::content_type, contentTypeOf(name));
  response.content_length(size);
  if (request.method() == http::verb::head) {
    return {std::move(response), {}, 0, nullptr};
  }
  std::shared_ptr<void> slot = slots.tryAcquire();
  if (!slot) {
    Response busy = textResponse(request, http::status::service_unavailable,
                                 "too many files being sent at once; retry later");
    busy.set(http::field::retry_after, "1");
    return denied(std::move(busy), "busy");
  }
  int error = 0;
  if (!readWhole(fd.get(), size, response.body(), error)) {
    spdlog::warn("collector: reading {} of outputs.{}.serve failed: {}", file.string(), folder.name,
                 error != 0 ? std::system_category().message(error)
                            : std::string("the file got shorter while it was read"));
    return denied(
        textResponse(request, http::status::internal_server_error, "the file cannot be read"),
        "read_error");
  }
  return {std::move(response), {}, size, std::move(slot)};
}

}  // namespace webtrap::collector
