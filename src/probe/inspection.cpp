#include "probe/inspection.h"

namespace webtrap::probe {

const char* toString(InspectionStatus status) {
  switch (status) {
    case InspectionStatus::kComplete:
      return "complete";
    case InspectionStatus::kCached:
      return "cached";
    case InspectionStatus::kShed:
      return "shed";
    case InspectionStatus::kFailed:
      return "failed";
    case InspectionStatus::kInterrupted:
      return "interrupted";
  }
  return "unknown";
}

}  // namespace webtrap::probe
