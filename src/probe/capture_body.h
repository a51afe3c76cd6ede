// A Beast body type that keeps the first bytes of a request body, hashes all
// of it, and counts its size, so that memory stays bounded whatever the
// client sends.
#pragma once

#include <cstdint>
#include <string>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/optional/optional.hpp>

#include "common/encoding.h"

namespace webtrap::probe {

struct CaptureBody {
  struct value_type {
    std::string kept;
    std::uint64_t size = 0;
    std::size_t keep_limit = 1 << 20;
    bool truncated = false;
    Sha256 hash;
  };

  class reader {
   public:
    template <bool isRequest, class Fields>
    reader(boost::beast::http::header<isRequest, Fields>&, value_type& body) : body_(body) {}

    void init(const boost::optional<std::uint64_t>&, boost::beast::error_code& ec) { ec = {}; }

    template <class ConstBufferSequence>
    std::size_t put(const ConstBufferSequence& buffers, boost::beast::error_code& ec) {
      std::size_t total = 0;
      for (auto it = boost::asio::buffer_sequence_begin(buffers);
           it != boost::asio::buffer_sequence_end(buffers); ++it) {
        boost::asio::const_buffer buffer = *it;
        std::string_view bytes(static_cast<const char*>(buffer.data()), buffer.size());
        body_.hash.update(bytes);
        std::size_t room =
            body_.kept.size() < body_.keep_limit ? body_.keep_limit - body_.kept.size() : 0;
        body_.kept.append(bytes.substr(0, room));
        if (bytes.size() > room) {
          body_.truncated = true;
        }
        body_.size += bytes.size();
        total += bytes.size();
      }
      ec = {};
      return total;
    }

    void finish(boost::beast::error_code& ec) { ec = {}; }

   private:
    value_type& body_;
  };
};

}  // namespace webtrap::probe
