#include "probe/capture.h"

#include "common/encoding.h"

namespace webtrap::probe {

const std::string* findHeader(const std::vector<HeaderField>& headers, std::string_view name) {
  for (const HeaderField& header : headers) {
    if (equalsIgnoreCase(header.name, name)) {
      return &header.value;
    }
  }
  return nullptr;
}

}  // namespace webtrap::probe
