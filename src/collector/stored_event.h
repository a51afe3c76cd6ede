// What the durable store hands to an output, and what an output answers for
// each event. Every output (Elasticsearch, NDJSON file, and later MISP) reads
// the same store through its own cursor.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace webtrap::collector {

// One event as stored: the ECS document built at ingest (one JSON object,
// no trailing newline) with the fields the store indexes.
struct StoredEvent {
  std::int64_t seq = 0;  // position in the queue, increasing
  std::string event_id;
  std::int64_t timestamp_ms = 0;  // event time
  std::string sensor_id;
  std::string document;
  // Empty, or why `document` lacks event.original: the batch that keeps it
  // is missing or damaged. The output runner dead-letters such an event.
  std::string damage;
  // Set only by a read that requests originals apart (OriginalForm::kApart):
  // `document` then lacks event.original, which goes back in at this
  // offset from `original`, a view into `original_text`. npos: `document`
  // is whole. appendWholeDocument() writes the document either way.
  std::size_t original_at = std::string::npos;
  std::string_view original;
  std::shared_ptr<const std::string> original_text;
};

// The form in which Store::readAfter returns originals kept in a probe batch.
enum class OriginalForm {
  kWhole,  // put back into each document
  kApart,  // left apart (StoredEvent::original), for an output that writes
           // the document straight into its request and so saves a copy
};

// Appends the event's whole document, with event.original, to `out`.
void appendWholeDocument(std::string& out, const StoredEvent& event);
// The event's whole document.
std::string wholeDocument(const StoredEvent& event);
// About the bytes appendWholeDocument() adds: exact for a whole document,
// an estimate from the original's size otherwise.
std::size_t wholeDocumentBytes(const StoredEvent& event);

// A new event on its way into the store.
struct NewEvent {
  std::string event_id;
  std::int64_t timestamp_ms = 0;
  std::string sensor_id;
  std::string source_ip;
  std::string document;
  // Set when `document` was built without event.original (see
  // buildEcsDocument) because the original is line [original_offset,
  // original_offset + original_length) of the batch passed with the insert.
  // npos: `document` is whole.
  std::size_t original_at = std::string::npos;
  std::size_t original_offset = 0;
  std::size_t original_length = 0;
};

// A probe batch as received: gzip of NDJSON text whose lines are the
// original records. The store keeps it once, so the documents of its events
// need not carry their originals. With the records of
// bench/collector/make_records.py, the compressed body is about a tenth of
// the bytes of the escaped originals it replaces.
struct OriginalBatch {
  std::string_view gzip;           // the request body, gzip as sent
  std::uint64_t inflated_size = 0;  // bytes of NDJSON text it inflates to
  // The inflated text, when the caller owns it through a shared pointer.
  // The store then caches it, so that outputs reading the batch soon after
  // need not inflate it again. Null: the store inflates the batch at its
  // first read.
  std::shared_ptr<const std::string> text;
};

enum class Delivery {
  kDelivered,  // accepted, or already there (a 409 on create)
  kRetry,      // transient: send again later
  kRejected,   // permanent: goes to the dead-letter store with the reason
};

struct ItemResult {
  Delivery delivery = Delivery::kDelivered;
  std::string reason;  // for kRetry and kRejected
};

// Thrown by Output::send when the whole batch failed and should be sent again
// (connection refused, timeout, HTTP 429 or 5xx). `retry_after_ms` is the
// server's hint, 0 when it gave none.
struct TransientError : std::runtime_error {
  TransientError(const std::string& what, std::int64_t retry_after = 0)
      : std::runtime_error(what), retry_after_ms(retry_after) {}
  std::int64_t retry_after_ms;
};

class Output {
 public:
  virtual ~Output() = default;
  // Stable name: the cursor key in the store and the `output` metric label.
  virtual std::string_view name() const = 0;
  // Sends `batch` and returns one result per event, in order. Throws
  // TransientError when nothing in the batch can be judged.
  virtual std::vector<ItemResult> send(std::span<const StoredEvent> batch) = 0;
  // The form in which send() expects originals kept in probe batches. An
  // output that returns kApart must write each document with
  // appendWholeDocument().
  virtual OriginalForm originalForm() const { return OriginalForm::kWhole; }
  // Called when the runner stops, so buffered data reaches its target.
  virtual void flush() {}
};

}  // namespace webtrap::collector
