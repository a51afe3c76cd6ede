// gzip compression with zlib, kept apart from common/encoding so that code
// built without zlib (the fuzz targets) can still use the encoding helpers.
#pragma once

#include <string>
#include <string_view>

namespace webtrap {

// Compresses `input` as one gzip member (RFC 1952) with zlib at `level`
// (0-9, or Z_DEFAULT_COMPRESSION). Throws std::runtime_error when zlib fails.
std::string gzipCompress(std::string_view input, int level);

}  // namespace webtrap
