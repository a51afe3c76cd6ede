#include "collector/stored_event.h"

#include "collector/ecs.h"

namespace webtrap::collector {

void appendWholeDocument(std::string& out, const StoredEvent& event) {
  if (event.original_at == std::string::npos) {
    out += event.document;
    return;
  }
  spliceOriginal(out, event.document, event.original_at, event.original);
}

std::string wholeDocument(const StoredEvent& event) {
  std::string out;
  appendWholeDocument(out, event);
  return out;
}

std::size_t wholeDocumentBytes(const StoredEvent& event) {
  if (event.original_at == std::string::npos) {
    return event.document.size();
  }
  // Escaping a JSON record's quotes makes it about 30% longer.
  return event.document.size() + 14 + event.original.size() + event.original.size() * 3 / 10;
}

}  // namespace webtrap::collector
