#include "probe/capture_parser.h"

#include <boost/beast/http/error.hpp>
#include <fmt/format.h>

namespace webtrap::probe {

void CaptureParser::on_request_impl(boost::beast::http::verb, string_view method,
                                    string_view target, int version, error_code&) {
  request_.method.assign(method.data(), method.size());
  request_.target.assign(target.data(), target.size());
  request_.http_version = fmt::format("{}.{}", version / 10, version % 10);
}

void CaptureParser::on_field_impl(boost::beast::http::field, string_view name, string_view value,
                                  error_code& ec) {
  if (request_.headers.size() >= max_header_count_) {
    too_many_fields_ = true;
    ec = boost::beast::http::error::header_limit;
    return;
  }
  request_.headers.push_back(
      {std::string(name.data(), name.size()), std::string(value.data(), value.size())});
}

std::size_t CaptureParser::on_body_impl(string_view body, error_code&) {
  keepBody(body);
  return body.size();
}

std::size_t CaptureParser::on_chunk_body_impl(std::uint64_t, string_view body, error_code&) {
  keepBody(body);
  return body.size();
}

void CaptureParser::keepBody(string_view bytes) {
  std::string_view view(bytes.data(), bytes.size());
  hash_.update(view);
  request_.body_size += view.size();
  std::size_t room =
      request_.body.size() < keep_limit_ ? keep_limit_ - request_.body.size() : 0;
  if (view.size() > room) {
    request_.body_truncated = true;
    view = view.substr(0, room);
  }
  request_.body.append(view);
}

void CaptureParser::finishBody() {
  request_.chunked = chunked();
  request_.body_sha256 = hash_.finalHex();
}

}  // namespace webtrap::probe
