// Whole-buffer gzip decompression with libdeflate, shared by the ingest
// endpoints and the store, which keeps each probe batch as it was received.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace webtrap::collector {

// Decompresses a gzip body (one or more members). Returns nullopt when the
// output would pass `max_bytes`; throws std::invalid_argument when the body
// is not valid gzip. `plain_headers`, when given, is set to false if a
// member's header has an extra field, a file name, a comment or a header CRC.
std::optional<std::string> gunzip(std::string_view compressed, std::uint64_t max_bytes,
                                  bool* plain_headers = nullptr);

}  // namespace webtrap::collector
