// Data captured from one HTTP request, as read off the wire by a probe session.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace webtrap::probe {

struct HeaderField {
  std::string name;
  std::string value;
};

struct Endpoint {
  std::string address;  // numeric, without brackets for IPv6
  std::uint16_t port = 0;
};

struct TlsInfo {
  bool enabled = false;
  std::string sni;      // server name the client sent, empty when none
  std::string version;  // for example "TLSv1.3"
  std::string cipher;   // OpenSSL cipher name
};

// Microsecond offsets from the first byte of the request.
struct Timings {
  std::int64_t headers_us = -1;   // end of the header block
  std::int64_t body_us = -1;      // end of the body
  std::int64_t response_us = -1;  // response written
  std::int64_t inspection_us = -1;  // ModSecurity inspection duration
};

struct CapturedRequest {
  // Connection facts. The client address is the socket peer; headers such as
  // X-Forwarded-For stay in `headers` as the client's claims.
  std::string connection_id;
  std::uint64_t request_index = 0;  // 0 for the first request on a connection
  Endpoint client;
  Endpoint server;
  std::string listener;          // listener name from the configuration
  bool bait_listener = false;    // an extra port that no real user visits
  TlsInfo tls;

  // Parse outcome. When `parsed` is false, `parse_error` names the error and
  // `raw_head` contains the bytes read. The other fields contain what was parsed.
  bool parsed = false;
  std::string parse_error;
  std::string raw_head;  // bytes of the request line and header block, capped
  bool raw_head_truncated = false;

  std::string request_line;  // exactly as received, without CRLF
  std::string method;
  std::string target;        // request-target as received
  std::string http_version;  // "1.1", "1.0"
  std::vector<HeaderField> headers;  // in order, duplicates kept

  std::string body;  // the first `body_limit` bytes after transfer decoding
  std::uint64_t body_size = 0;  // every body byte received
  std::string body_sha256;      // lowercase hex over every body byte
  bool body_truncated = false;
  bool chunked = false;

  std::chrono::system_clock::time_point received_at;  // first byte
  Timings timings;
};

// Returns the value of the first header named `name` (ASCII case-insensitive),
// or nullptr.
const std::string* findHeader(const std::vector<HeaderField>& headers, std::string_view name);

}  // namespace webtrap::probe
