// Fuzzes the request capture path: arbitrary bytes, cut at fuzzer-chosen
// points, go through RequestReader; every request it ends must be
// self-consistent.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/encoding.h"
#include "probe/request_reader.h"

namespace {

void check(bool condition) {
  if (!condition) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) {
    return 0;
  }
  webtrap::probe::LimitsConfig limits;
  limits.max_header_bytes = 2048;
  limits.max_body_bytes = 4096;
  limits.max_header_count = 20;
  constexpr std::uint64_t kKeep = 256;

  // The first byte chooses the read size, so the fuzzer explores splits.
  std::size_t chunk = data[0] % 64 + 1;
  std::string_view wire(reinterpret_cast<const char*>(data + 1), size - 1);

  webtrap::probe::RequestReader reader(limits, kKeep);
  reader.begin({});
  std::string buffer;
  for (std::size_t offset = 0; offset < wire.size(); offset += chunk) {
    buffer.append(wire.substr(offset, chunk));
    while (!buffer.empty()) {
      std::size_t used = 0;
      auto step = reader.parse(buffer, used);
      check(used <= buffer.size());
      buffer.erase(0, used);
      if (step == webtrap::probe::RequestReader::Step::kComplete) {
        const auto& request = reader.request();
        check(request.parsed);
        check(request.body.size() <= kKeep);
        check(request.body.size() <= request.body_size);
        check(request.body_truncated == (request.body_size > kKeep));
        check(request.body_sha256.size() == 64);
        check(request.raw_head.size() <= limits.max_header_bytes);
        reader.begin({});
        continue;
      }
      if (step == webtrap::probe::RequestReader::Step::kFailed) {
        check(!reader.request().parsed);
        check(!reader.request().parse_error.empty());
        check(reader.request().raw_head.size() <= limits.max_header_bytes);
        return 0;
      }
      break;
    }
  }
  reader.fail("end of input", buffer);
  check(!reader.request().parsed);
  return 0;
}
