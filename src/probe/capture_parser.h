// A Beast parser that writes what it parses straight into a CapturedRequest.
// Header fields keep their wire order, with duplicates where they stood. The
// body is kept up to a cap but hashed and counted whole, so memory stays
// bounded whatever the client sends.
#pragma once

#include <cstdint>

#include <boost/beast/http/basic_parser.hpp>

#include "common/encoding.h"
#include "probe/capture.h"

namespace webtrap::probe {

class CaptureParser : public boost::beast::http::basic_parser<true> {
 public:
  using string_view = boost::beast::string_view;
  using error_code = boost::beast::error_code;

  CaptureParser(CapturedRequest& request, std::uint64_t body_keep_limit,
                std::uint32_t max_header_count)
      : request_(request), keep_limit_(body_keep_limit), max_header_count_(max_header_count) {}

  // True when parsing stopped because of limits.max_header_count.
  bool tooManyFields() const { return too_many_fields_; }

  // Writes the body's size, hash and truncation flag into the request.
  void finishBody();

 private:
  void on_request_impl(boost::beast::http::verb, string_view method, string_view target,
                       int version, error_code& ec) override;
  void on_response_impl(int, string_view, int, error_code&) override {}
  void on_field_impl(boost::beast::http::field, string_view name, string_view value,
                     error_code& ec) override;
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>&, error_code&) override {}
  std::size_t on_body_impl(string_view body, error_code& ec) override;
  void on_chunk_header_impl(std::uint64_t, string_view, error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, string_view body, error_code& ec) override;
  void on_finish_impl(error_code&) override {}

  void keepBody(string_view bytes);

  CapturedRequest& request_;
  std::uint64_t keep_limit_;
  std::uint32_t max_header_count_;
  bool too_many_fields_ = false;
  Sha256 hash_;
};

}  // namespace webtrap::probe
