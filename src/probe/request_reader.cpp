#include "probe/request_reader.h"

#include <boost/beast/core/string.hpp>
#include <fmt/format.h>

#include "common/encoding.h"

namespace webtrap::probe {
namespace http = boost::beast::http;

RequestReader::RequestReader(const LimitsConfig& limits, std::uint64_t body_capture_bytes)
    : limits_(limits), body_capture_bytes_(body_capture_bytes) {}

void RequestReader::begin(CapturedRequest request) {
  parser_.emplace();
  parser_->header_limit(limits_.max_header_bytes);
  parser_->body_limit(limits_.max_body_bytes);
  parser_->get().body().keep_limit = body_capture_bytes_;
  request_ = std::move(request);
  head_captured_ = false;
  continue_checked_ = false;
}

RequestReader::Step RequestReader::parse(std::string_view input, std::size_t& consumed) {
  consumed = 0;
  while (consumed < input.size()) {
    std::string_view rest = input.substr(consumed);
    boost::beast::error_code ec;
    bool header_was_done = parser_->is_header_done();
    std::size_t used = parser_->put(boost::asio::buffer(rest.data(), rest.size()), ec);
    if (!header_was_done && parser_->is_header_done()) {
      // With eager off the parser stops right after the header, so `used`
      // is exactly the request line and header block.
      captureHead(rest.substr(0, used));
      parser_->eager(true);
    }
    consumed += used;

    if (ec == http::error::need_more) {
      return Step::kNeedMore;
    }
    if (ec) {
      if (!head_captured_) {
        captureUnparsedHead(rest);
      }
      setFailure(ec.message());
      return Step::kFailed;
    }
    if (parser_->is_done()) {
      fillFromParser();
      if (request_.headers.size() > limits_.max_header_count) {
        setFailure("too many header fields: more than limits.max_header_count");
        return Step::kFailed;
      }
      request_.parsed = true;
      return Step::kComplete;
    }
    if (parser_->is_header_done() && !continue_checked_) {
      continue_checked_ = true;
      const auto& header = parser_->get();
      bool expects = boost::beast::iequals(header[http::field::expect], "100-continue") &&
                     header.version() >= 11;
      if (expects && consumed == input.size()) {
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
  if (!head_captured_) {
    captureUnparsedHead(pending);
  }
  setFailure(reason);
}

bool RequestReader::keepAlive() const {
  return request_.parsed && parser_->get().keep_alive();
}

void RequestReader::captureHead(std::string_view head) {
  request_.raw_head.assign(head);
  head_captured_ = true;
}

// Keeps the bytes of a head the parser did not accept, up to the header limit.
void RequestReader::captureUnparsedHead(std::string_view pending) {
  std::size_t keep = std::min<std::size_t>(pending.size(), limits_.max_header_bytes);
  request_.raw_head.assign(pending.substr(0, keep));
  request_.raw_head_truncated = pending.size() > keep;
  auto line_end = request_.raw_head.find('\n');
  std::string_view line(request_.raw_head.data(),
                        line_end == std::string::npos ? request_.raw_head.size() : line_end);
  if (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
  }
  request_.request_line.assign(line);
}

void RequestReader::fillFromParser() {
  if (!head_captured_) {
    return;
  }
  const auto& message = parser_->get();
  auto line_end = request_.raw_head.find('\n');
  std::string_view line(request_.raw_head.data(),
                        line_end == std::string::npos ? request_.raw_head.size() : line_end);
  if (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
  }
  request_.request_line.assign(line);
  request_.method.assign(message.method_string());
  request_.target.assign(message.target());
  request_.http_version = fmt::format("{}.{}", message.version() / 10, message.version() % 10);
  request_.headers.clear();
  for (const auto& field : message) {
    request_.headers.push_back({std::string(field.name_string()), std::string(field.value())});
  }
  request_.chunked = parser_->chunked();

  auto& body = parser_->get().body();
  request_.body = std::move(body.kept);
  request_.body_size = body.size;
  request_.body_truncated = body.truncated;
  request_.body_sha256 = body.hash.finalHex();
}

void RequestReader::setFailure(const std::string& reason) {
  if (head_captured_ && request_.method.empty()) {
    fillFromParser();
  }
  request_.parsed = false;
  request_.parse_error = reason;
  if (request_.body_sha256.empty()) {
    request_.body_sha256 = sha256Hex({});
  }
}

}  // namespace webtrap::probe
