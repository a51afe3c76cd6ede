#include "probe/journal_entry.h"

#include <chrono>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <boost/pfr/core.hpp>
#include <fmt/format.h>

namespace webtrap::probe {

namespace {

// A field added to one of these structs must be added to the encoder and
// the decoder below too, or recovered records lose it silently. Boost.PFR
// counts the fields of an aggregate, so an added field fails to compile
// here whatever its size. A size check alone misses a bool or a small
// integer placed in padding, such as one after CapturedRequest::bait_listener.
template <typename T, std::size_t kFields>
constexpr bool kHasFields = boost::pfr::tuple_size_v<T> == kFields;
static_assert(kHasFields<CapturedRequest, 23>, "CapturedRequest changed: update the entry codec");
static_assert(kHasFields<Endpoint, 2>, "Endpoint changed: update the entry codec");
static_assert(kHasFields<TlsInfo, 4>, "TlsInfo changed: update the entry codec");
static_assert(kHasFields<Timings, 4>, "Timings changed: update the entry codec");
static_assert(kHasFields<HeaderField, 2>, "HeaderField changed: update the entry codec");
static_assert(kHasFields<PersonaResponse, 6>, "PersonaResponse changed: update the entry codec");
static_assert(kHasFields<RouteOutcome, 6>, "RouteOutcome changed: update the entry codec");
static_assert(kHasFields<BaitHit, 2>, "BaitHit changed: update the entry codec");
static_assert(kHasFields<FormFacts, 8>, "FormFacts changed: update the entry codec");
static_assert(kHasFields<CardFacts, 4>, "CardFacts changed: update the entry codec");
static_assert(kHasFields<RecordMeta, 8>, "RecordMeta changed: update the entry codec");

// The sizes (x86-64, libstdc++) catch a field whose type changed, such as
// an int that became a 64-bit integer.
#if defined(__x86_64__) && defined(__GLIBCXX__)
static_assert(sizeof(CapturedRequest) == 616,
              "CapturedRequest changed: update encodeJournalEntry and decodeJournalEntry");
static_assert(sizeof(PersonaResponse) == 104,
              "PersonaResponse changed: update encodeJournalEntry and decodeJournalEntry");
static_assert(sizeof(RouteOutcome) == 352,
              "RouteOutcome changed: update encodeJournalEntry and decodeJournalEntry");
static_assert(sizeof(RecordMeta) == 248,
              "RecordMeta changed: update encodeJournalEntry and decodeJournalEntry");
static_assert(sizeof(CardFacts) == 104,
              "CardFacts changed: update encodeJournalEntry and decodeJournalEntry");
static_assert(sizeof(BaitHit) == 64,
              "BaitHit changed: update encodeJournalEntry and decodeJournalEntry");
#endif

// Writes fixed-width little-endian integers and strings prefixed with their
// 32-bit length.
class EntryWriter {
 public:
  explicit EntryWriter(std::string& out) : out_(out) {}

  void flag(bool value) { out_.push_back(value ? '\1' : '\0'); }
  void u32(std::uint32_t value) { fixed(value); }
  void u64(std::uint64_t value) { fixed(value); }
  void i64(std::int64_t value) { fixed(static_cast<std::uint64_t>(value)); }
  void text(std::string_view value) {
    u32(static_cast<std::uint32_t>(value.size()));
    out_.append(value);
  }
  void count(std::size_t value) { u32(static_cast<std::uint32_t>(value)); }

 private:
  template <typename T>
  void fixed(T value) {
    static_assert(std::is_unsigned_v<T>);
    char bytes[sizeof(T)];
    for (std::size_t i = 0; i < sizeof(T); ++i) {
      bytes[i] = static_cast<char>((value >> (8 * i)) & 0xff);
    }
    out_.append(bytes, sizeof(T));
  }

  std::string& out_;
};

// Reads what EntryWriter wrote. The first invalid read (past the end, or a
// flag byte other than 0 and 1) sets failed() and reason(), and every later
// read then returns zero values.
class EntryReader {
 public:
  explicit EntryReader(std::string_view encoded) : rest_(encoded) {}

  bool failed() const { return failed_; }
  bool atEnd() const { return rest_.empty(); }
  const char* reason() const { return reason_; }

  bool flag() {
    std::string_view byte = take(1);
    if (!byte.empty() && byte[0] != '\0' && byte[0] != '\1') {
      fail("a flag is neither 0 nor 1");
    }
    return !byte.empty() && byte[0] == '\1';
  }
  std::uint32_t u32() { return fixed<std::uint32_t>(); }
  std::uint64_t u64() { return fixed<std::uint64_t>(); }
  std::int64_t i64() { return static_cast<std::int64_t>(fixed<std::uint64_t>()); }
  std::string text() { return std::string(take(u32())); }
  // Reads an element count. Every element takes at least
  // `min_element_bytes` of the entry (its length prefixes, flags and fixed
  // fields), so a larger count is invalid. This check bounds the vector that
  // a crafted count makes to a few times the entry's size.
  std::size_t count(std::size_t min_element_bytes) {
    std::uint32_t value = u32();
    if (value > rest_.size() / min_element_bytes) {
      fail("an element count exceeds the entry's size");
      return 0;
    }
    return value;
  }

 private:
  std::string_view take(std::size_t size) {
    if (failed_ || size > rest_.size()) {
      fail("the entry ends inside a field");
      return {};
    }
    std::string_view bytes = rest_.substr(0, size);
    rest_.remove_prefix(size);
    return bytes;
  }
  void fail(const char* message) {
    if (!failed_) {
      failed_ = true;
      reason_ = message;
    }
  }
  template <typename T>
  T fixed() {
    std::string_view bytes = take(sizeof(T));
    T value = 0;
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      value |= static_cast<T>(static_cast<unsigned char>(bytes[i])) << (8 * i);
    }
    return value;
  }

  std::string_view rest_;
  bool failed_ = false;
  const char* reason_ = "";
};

void writeEndpoint(EntryWriter& writer, const Endpoint& endpoint) {
  writer.text(endpoint.address);
  writer.u32(endpoint.port);
}

Endpoint readEndpoint(EntryReader& reader) {
  Endpoint endpoint;
  endpoint.address = reader.text();
  endpoint.port = static_cast<std::uint16_t>(reader.u32());
  return endpoint;
}

void writeHeaders(EntryWriter& writer, const std::vector<HeaderField>& headers) {
  writer.count(headers.size());
  for (const HeaderField& header : headers) {
    writer.text(header.name);
    writer.text(header.value);
  }
}

// The minimum size in bytes of one element in an entry, for EntryReader::count().
constexpr std::size_t kMinHeaderBytes = 2 * 4;   // two empty strings
constexpr std::size_t kMinStringBytes = 4;       // an empty string
constexpr std::size_t kMinBaitBytes = 2 * 4;     // two empty strings
constexpr std::size_t kMinTxBytes = 2 * 4;       // two empty strings
constexpr std::size_t kMinCardBytes = 3 * 4 + 1;  // three empty strings and a flag

std::vector<HeaderField> readHeaders(EntryReader& reader) {
  std::vector<HeaderField> headers(reader.count(kMinHeaderBytes));
  for (HeaderField& header : headers) {
    header.name = reader.text();
    header.value = reader.text();
  }
  return headers;
}

void writeStrings(EntryWriter& writer, const std::vector<std::string>& values) {
  writer.count(values.size());
  for (const std::string& value : values) {
    writer.text(value);
  }
}

std::vector<std::string> readStrings(EntryReader& reader) {
  std::vector<std::string> values(reader.count(kMinStringBytes));
  for (std::string& value : values) {
    value = reader.text();
  }
  return values;
}

void writeMeta(EntryWriter& writer, const RecordMeta& meta) {
  writer.text(meta.sensor_id);
  writer.text(meta.sensor_group);
  writer.text(meta.persona);
  writer.text(meta.product);
  writer.text(meta.engine_version);
  writeStrings(writer, meta.components);
  writer.text(meta.secrules_engine);
}

void readMeta(EntryReader& reader, RecordMeta& meta) {
  meta.sensor_id = reader.text();
  meta.sensor_group = reader.text();
  meta.persona = reader.text();
  meta.product = reader.text();
  meta.engine_version = reader.text();
  meta.components = readStrings(reader);
  meta.secrules_engine = reader.text();
}

void writeRequest(EntryWriter& writer, const CapturedRequest& request) {
  writer.text(request.connection_id);
  writer.u64(request.request_index);
  writeEndpoint(writer, request.client);
  writeEndpoint(writer, request.server);
  writer.text(request.listener);
  writer.flag(request.bait_listener);
  writer.flag(request.tls.enabled);
  writer.text(request.tls.sni);
  writer.text(request.tls.version);
  writer.text(request.tls.cipher);

  writer.flag(request.parsed);
  writer.text(request.parse_error);
  writer.text(request.raw_head);
  writer.flag(request.raw_head_truncated);
  writer.text(request.request_line);
  writer.text(request.method);
  writer.text(request.target);
  writer.text(request.http_version);
  writeHeaders(writer, request.headers);

  writer.text(request.body);
  writer.u64(request.body_size);
  writer.text(request.body_sha256);
  writer.flag(request.body_truncated);
  writer.flag(request.chunked);

  writer.i64(request.received_at.time_since_epoch().count());
  writer.i64(request.timings.headers_us);
  writer.i64(request.timings.body_us);
  writer.i64(request.timings.response_us);
  writer.i64(request.timings.inspection_us);
}

void readRequest(EntryReader& reader, CapturedRequest& request) {
  request.connection_id = reader.text();
  request.request_index = reader.u64();
  request.client = readEndpoint(reader);
  request.server = readEndpoint(reader);
  request.listener = reader.text();
  request.bait_listener = reader.flag();
  request.tls.enabled = reader.flag();
  request.tls.sni = reader.text();
  request.tls.version = reader.text();
  request.tls.cipher = reader.text();

  request.parsed = reader.flag();
  request.parse_error = reader.text();
  request.raw_head = reader.text();
  request.raw_head_truncated = reader.flag();
  request.request_line = reader.text();
  request.method = reader.text();
  request.target = reader.text();
  request.http_version = reader.text();
  request.headers = readHeaders(reader);

  request.body = reader.text();
  request.body_size = reader.u64();
  request.body_sha256 = reader.text();
  request.body_truncated = reader.flag();
  request.chunked = reader.flag();

  using Clock = std::chrono::system_clock;
  request.received_at = Clock::time_point(Clock::duration(reader.i64()));
  request.timings.headers_us = reader.i64();
  request.timings.body_us = reader.i64();
  request.timings.response_us = reader.i64();
  request.timings.inspection_us = reader.i64();
}

void writeResponse(EntryWriter& writer, const PersonaResponse& response) {
  writer.i64(response.status);
  writer.text(response.reason);
  writeHeaders(writer, response.headers);
  writer.text(response.body);
  writer.flag(response.omit_body);
  writer.flag(response.close_connection);
}

void readResponse(EntryReader& reader, PersonaResponse& response) {
  response.status = static_cast<int>(reader.i64());
  response.reason = reader.text();
  response.headers = readHeaders(reader);
  response.body = reader.text();
  response.omit_body = reader.flag();
  response.close_connection = reader.flag();
}

void writeOutcome(EntryWriter& writer, const RouteOutcome& outcome) {
  writer.text(outcome.route);
  writer.text(outcome.route_kind);
  writer.count(outcome.baits.size());
  for (const BaitHit& bait : outcome.baits) {
    writer.text(bait.kind);
    writer.text(bait.detail);
  }
  writer.count(outcome.tx.size());
  for (const auto& [name, value] : outcome.tx) {
    writer.text(name);
    writer.text(value);
  }
  writeStrings(writer, outcome.issued_tokens);

  const FormFacts& form = outcome.form;
  writer.text(form.kind);
  writer.text(form.username);
  writer.text(form.password_sha256);
  writer.text(form.email);
  writer.text(form.coupon);
  writer.count(form.cards.size());
  for (const CardFacts& card : form.cards) {
    writer.text(card.bin);
    writer.text(card.last4);
    writer.flag(card.luhn_valid);
    writer.text(card.fingerprint);
  }
  writer.u32(form.links);
  writer.u32(form.text_bytes);
}

void readOutcome(EntryReader& reader, RouteOutcome& outcome) {
  outcome.route = reader.text();
  outcome.route_kind = reader.text();
  outcome.baits.resize(reader.count(kMinBaitBytes));
  for (BaitHit& bait : outcome.baits) {
    bait.kind = reader.text();
    bait.detail = reader.text();
  }
  std::size_t tx_count = reader.count(kMinTxBytes);
  for (std::size_t i = 0; i < tx_count && !reader.failed(); ++i) {
    std::string name = reader.text();
    outcome.tx[std::move(name)] = reader.text();
  }
  outcome.issued_tokens = readStrings(reader);

  FormFacts& form = outcome.form;
  form.kind = reader.text();
  form.username = reader.text();
  form.password_sha256 = reader.text();
  form.email = reader.text();
  form.coupon = reader.text();
  form.cards.resize(reader.count(kMinCardBytes));
  for (CardFacts& card : form.cards) {
    card.bin = reader.text();
    card.last4 = reader.text();
    card.luhn_valid = reader.flag();
    card.fingerprint = reader.text();
  }
  form.links = reader.u32();
  form.text_bytes = reader.u32();
}

}  // namespace

void encodeJournalEntry(std::string& out, const CapturedRequest& request,
                        const PersonaResponse& response, const RouteOutcome& outcome,
                        const RecordMeta& meta) {
  EntryWriter writer(out);
  out.push_back(static_cast<char>(kJournalEntryFormat));
  writeMeta(writer, meta);
  writeRequest(writer, request);
  writeResponse(writer, response);
  writeOutcome(writer, outcome);
}

std::optional<JournalEntry> decodeJournalEntry(std::string_view encoded,
                                               std::string_view event_id, std::string& reason) {
  if (encoded.empty() || static_cast<unsigned char>(encoded[0]) != kJournalEntryFormat) {
    reason = encoded.empty()
                 ? std::string("empty entry")
                 : fmt::format("unknown entry format {} (this probe reads format {})",
                               static_cast<unsigned>(static_cast<unsigned char>(encoded[0])),
                               static_cast<unsigned>(kJournalEntryFormat));
    return std::nullopt;
  }
  EntryReader reader(encoded.substr(1));
  JournalEntry entry;
  readMeta(reader, entry.meta);
  entry.meta.event_id = std::string(event_id);
  readRequest(reader, entry.request);
  readResponse(reader, entry.response);
  readOutcome(reader, entry.outcome);
  if (reader.failed()) {
    reason = reader.reason();
    return std::nullopt;
  }
  if (!reader.atEnd()) {
    reason = "bytes left after the last field";
    return std::nullopt;
  }
  return entry;
}

InspectionResult interruptedInspection() {
  InspectionResult interrupted;
  interrupted.status = InspectionStatus::kInterrupted;
  interrupted.recovered = true;
  interrupted.error =
      "not inspected: the probe stopped without draining its inspection queue (killed or "
      "crashed); recorded from the inspection journal at the next start";
  return interrupted;
}

std::string serializeInterruptedRecord(const JournalEntry& entry) {
  return serializeRecord(entry.request, entry.response, entry.outcome, interruptedInspection(),
                         entry.meta);
}

}  // namespace webtrap::probe
