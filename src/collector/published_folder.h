// Read-only publication of an output's folder on the ingest listener, so
// that a consumer such as a MISP instance pulling the MISP feed can fetch
// its files over the collector's own HTTP or HTTPS listener.
//
// Only GET and HEAD are served, and only for regular files directly in the
// folder whose names the output accepts (for the MISP feed: manifest.json,
// hashes.csv and <uuid>.json). Each file is opened once, without following a
// symlink, and read whole from that descriptor, so a file that the output
// renames over the old one mid-request gives the old or the new body, never
// a mix. Responses carry ETag and Last-Modified, and a matching If-None-Match
// or If-Modified-Since gets 304.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

namespace webtrap::collector {

struct PublishedFolder {
  std::string name;    // the output that writes the folder, such as misp_feed (metrics label)
  std::string prefix;  // URL path prefix, such as /feeds/misp, without a trailing slash
  std::filesystem::path folder;
  std::string token;  // empty only when allow_anonymous is set
  // The setting the token came from, "token" or "token_file", which the
  // 401 message names.
  std::string token_setting = "token";
  bool allow_anonymous = false;
  std::uint64_t max_file_bytes = 64ULL << 20;
  // File names that may be served; a name reaching it contains no '/'.
  std::function<bool(std::string_view)> is_published_name;
};

// Parses the `serve` map of an output section (`key` is its full name, such
// as outputs.misp_feed.serve): prefix (required), token or token_file,
// allow_anonymous and max_file_size. The caller sets name, folder and
// is_published_name. Throws ConfigError naming the key.
PublishedFolder parsePublishedFolder(const YAML::Node& node, const std::string& key);

// Throws ConfigError when two folders share a prefix or one prefix lies
// under another, because a request could then match either.
void checkPublishedPrefixes(const std::vector<PublishedFolder>& folders);

// Counts the file bodies being read or sent at once, over all folders, so
// that they take at most `capacity` times max_file_bytes of memory.
class PublishedReadSlots {
 public:
  explicit PublishedReadSlots(std::uint32_t capacity) : capacity_(capacity) {}
  // Returns a slot that is given back when the last copy is destroyed, or
  // null when every slot is taken.
  std::shared_ptr<void> tryAcquire();

 private:
  std::uint32_t capacity_;
  std::shared_ptr<std::atomic<std::uint32_t>> in_use_ =
      std::make_shared<std::atomic<std::uint32_t>>(0);
};

struct PublishedFileResponse {
  boost::beast::http::response<boost::beast::http::string_body> response;
  // Empty when the request was served (200 or 304) or the file is missing
  // (404); otherwise why it was denied: token, method, name, symlink,
  // not_regular, hardlink, too_large, busy or read_error.
  std::string_view denied;
  std::uint64_t body_bytes = 0;     // body bytes in the response (0 for HEAD and 304)
  std::shared_ptr<void> read_slot;  // held until the response is written
};

// Returns true when `target` (path and optional query) is under `folder`'s prefix.
bool isUnderPrefix(const PublishedFolder& folder, std::string_view target);

// Serves one request for a file of `folder`; the caller checked
// isUnderPrefix().
PublishedFileResponse servePublishedFile(
    const PublishedFolder& folder,
    const boost::beast::http::request<boost::beast::http::string_body>& request,
    PublishedReadSlots& slots);

// The HTTP date form (RFC 9110 IMF-fixdate) of a time in seconds since the epoch.
std::string httpDate(std::int64_t seconds);

// Parses an IMF-fixdate, such as "Sun, 06 Nov 1994 08:49:37 GMT". Returns
// -1 for any other form, which makes If-Modified-Since be ignored.
std::int64_t parseHttpDate(std::string_view text);

}  // namespace webtrap::collector
