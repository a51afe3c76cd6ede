// Turns the bytes of a connection into CapturedRequests, with no I/O, so that
// the capture path can be tested at every split point and fuzzed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "probe/capture.h"
#include "probe/capture_parser.h"
#include "probe/config.h"

namespace webtrap::probe {

class RequestReader {
 public:
  RequestReader(const LimitsConfig& limits, std::uint64_t body_capture_bytes);

  // Starts a new request. `request` carries the connection facts (addresses,
  // listener, TLS); its parse fields are filled by parse() or fail().
  void begin(CapturedRequest request);

  enum class Step {
    kNeedMore,      // every byte was consumed; read more
    kSendContinue,  // the client waits for "100 Continue" before its body
    kComplete,      // request() contains a whole request
    kFailed,        // request() contains what arrived and the parse error
  };

  // Parses from `input` and sets `consumed` to the bytes used. Bytes after a
  // complete request stay unconsumed: they belong to the next request.
  Step parse(std::string_view input, std::size_t& consumed);

  // Ends the request before it was complete (timeout, client gone).
  // `pending` is what arrived but was not consumed.
  void fail(const std::string& reason, std::string_view pending);

  // Whether the request may be followed by another on the same connection.
  bool keepAlive() const;

  CapturedRequest& request() { return request_; }

 private:
  void keepHeadBytes(std::string_view bytes);
  void setRequestLine();
  void setFailure(const std::string& reason);

  LimitsConfig limits_;
  std::uint64_t body_capture_bytes_;
  CapturedRequest request_;
  std::optional<CaptureParser> parser_;
  bool continue_checked_ = false;
  bool finished_ = false;
};

}  // namespace webtrap::probe
