#include "probe/request_reader.h"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>

#include "common/encoding.h"

namespace webtrap::probe {
namespace http = boost::beast::http;

RequestReader::RequestReader(const LimitsConfig& limits, std::uint64_t body_capture_bytes)
    : limits_(limits), body_capture_bytes_(body_capture_bytes) {}

void RequestReader::begin(CapturedRequest request) {
  request_ = std::move(request);
  parser_.emplace(request_, body_capture_bytes_, limits_.max_header_count);
  parser_->header_limit(limits_.max_header_bytes);
  parser_->body_limit(limits_.max_body_bytes);
  continue_checked_ = false;
  finished_ = false;
}

RequestReader::Step RequestReader::parse(std::string_view input, std::size_t& consumed) {
  consumed = 0;
  while (consumed < input.size()) {
    std::string_view rest = input.substr(consumed);
    boost::beast::error_code ec;
    bool header_was_done = parser_->is_header_done();
    std::size_t used = parser_->put(boost::asio::buffer(rest.data(), rest.size()), ec);
    if (!header_was_done) {
      // The parser consumes the start line and each field as it completes.
      // With eager off it stops right after the header, so these bytes are
      // exactly the request head.
      keepHeadBytes(rest.substr(0, used));
      if (parser_->is_header_done()) {
        setRequestLine();
        parser_->eager(true);
      }
    }
    consumed += used;

    if (ec == http::error::need_more) {
      // Beast consumes body bytes as they arrive but buffers a chunk line until
      // its CRLF, however long, so the unconsumed bytes need a limit here.
      if (parser_->is_header_done() && input.size() - consumed > limits_.max_header_bytes) {
        setFailure("chunk line longer than limits.max_header_bytes");
        return Step::kFailed;
      }
      return Step::kNeedMore;
    }
    if (ec) {
      if (!parser_->is_header_done()) {
        keepHeadBytes(rest.substr(used));
      }
      setFailure(parser_->tooManyFields()
                     ? "too many header fields: more than limits.max_header_count"
                     : ec.message());
      return Step::kFailed;
    }
    if (parser_->is_done()) {
      parser_->finishBody();
      finished_ = true;
      request_.parsed = true;
      return Step::kComplete;
    }
    if (parser_->is_header_done() && !continue_checked_) {
      continue_checked_ = true;
      bool expects = false;
      for (const auto& field : request_.headers) {
        expects = expects || (equalsIgnoreCase(field.name, "Expect") &&
                              equalsIgnoreCase(field.value, "100-continue"));
      }
      if (expects && request_.http_version == "1.1" && consumed == input.size()) {
        return Step::kSendContinue;
      }
    }
    if (used == 0) {
      return Step::kNeedMore;
    }
  }
  return Step::kNeedMore;
}

void RequestReader::fail(const std::string& reason, std::string_view pending) {
  if (!parser_->is_header_done()) {
    keepHeadBytes(pending);
  }
  setFailure(reason);
}

bool RequestReader::keepAlive() const {
  return request_.parsed && parser_->keep_alive();
}

void RequestReader::keepHeadBytes(std::string_view bytes) {
  std::size_t room = request_.raw_head.size() < limits_.max_header_bytes
                         ? limits_.max_header_bytes - request_.raw_head.size()
                         : 0;
  if (bytes.size() > room) {
    request_.raw_head_truncated = true;
    bytes = bytes.substr(0, room);
  }
  request_.raw_head.append(bytes);
}

void RequestReader::setRequestLine() {
  std::string_view head = request_.raw_head;
  std::string_view line = head.substr(0, std::min(head.find('\n'), head.size()));
  if (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
  }
  request_.request_line.assign(line);
}

void RequestReader::setFailure(const std::string& reason) {
  setRequestLine();
  if (!finished_) {
    parser_->finishBody();
    finished_ = true;
  }
  request_.parsed = false;
  request_.parse_error = reason;
}

}  // namespace webtrap::probe
