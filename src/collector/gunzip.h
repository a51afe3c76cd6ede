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
// is not valid gzip.
std::optional<std::string> gunzip(std::string_view compressed, std::uint64_t max_bytes);

}  // namespace webtrap::collector
