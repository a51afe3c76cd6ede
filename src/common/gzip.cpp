#include "common/gzip.h"

#include <stdexcept>

#include <fmt/format.h>
#include <zlib.h>

namespace webtrap {

std::string gzipCompress(std::string_view input, int level) {
  z_stream stream{};
  // windowBits 15 + 16 selects the gzip wrapper instead of zlib's.
  int result = deflateInit2(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  if (result != Z_OK) {
    throw std::runtime_error(fmt::format("gzip: zlib deflateInit2 failed with code {}", result));
  }
  // The zlib manual (deflateBound) guarantees that one deflate(Z_FINISH) call
  // with an output buffer of deflateBound() bytes returns Z_STREAM_END. The
  // bound counts the gzip header and trailer, because deflateInit2 ran first.
  std::string output;
  output.resize(deflateBound(&stream, input.size()));
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
  stream.avail_in = static_cast<uInt>(input.size());
  stream.next_out = reinterpret_cast<Bytef*>(output.data());
  stream.avail_out = static_cast<uInt>(output.size());
  result = deflate(&stream, Z_FINISH);
  deflateEnd(&stream);
  if (result != Z_STREAM_END) {
    throw std::runtime_error(fmt::format("gzip: zlib deflate failed with code {}", result));
  }
  output.resize(stream.total_out);
  return output;
}

}  // namespace webtrap
