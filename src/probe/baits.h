// Baits (honeytraps) that the probe plants in its responses, and the checks
// that find their use in later requests.
//
// Bait hit kinds, as written to RouteOutcome::baits and the records:
//   fake_port, robots_trap, comment_trap, form_field, cookie,
//   credential_canary, honeytoken.
// TX variables (a contract with rules/webtrap-honeytrap.conf):
//   webtrap_bait_listener, webtrap_trap, webtrap_trap_path,
//   webtrap_cookie_tampered, webtrap_canary_user, webtrap_canary_password,
//   webtrap_honeytoken, webtrap_honeytoken_issued_to.
#pragma once

#include <cstddef>
#include <deque>
#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/metrics.h"
#include "probe/capture.h"
#include "probe/response.h"

namespace webtrap::probe {

struct BaitsConfig {
  // File with the 32-byte secret behind every honeytoken. Created with mode
  // 0600 and fresh random bytes when absent, so tokens stay valid across restarts.
  std::filesystem::path secret_file;
  // Issued tokens remembered with the address they went to. Older entries are
  // dropped first; a token seen after that still verifies, with issued_to "unknown".
  std::size_t issued_token_capacity = 65536;
};

// Honeytoken kinds that a persona template can name as {{honeytoken.<kind>}}.
enum class TokenKind {
  kAwsAccessKeyId,      // AKIA + 16 base32 characters, 20 in all
  kAwsSecretAccessKey,  // 40 characters of [A-Za-z0-9+/]
  kStripeSecretKey,     // sk_live_ + 24 alphanumeric characters
  kDbPassword,          // 20 alphanumeric characters
};

// Returns the kind for a template name such as "aws_access_key_id", or false.
bool tokenKindFromName(std::string_view name, TokenKind& kind);

// A hidden form field or cookie whose value the persona sets and a client
// has no reason to change.
struct BaitValue {
  std::string name;
  std::string value;
};

class Baits {
 public:
  // Reads or creates the secret file. Throws ConfigError when the file cannot
  // be read or created, or contains fewer than 32 bytes.
  Baits(const BaitsConfig& config, MetricsRegistry& metrics);

  // Returns the honeytoken of `kind` for `address`: the same for the same
  // secret, kind and address. Remembers which address it was issued to.
  std::string issueToken(TokenKind kind, const std::string& address);

  // Returns true when `token` is a well-formed token of `kind` whose MAC
  // verifies under this secret.
  bool verifyToken(TokenKind kind, std::string_view token) const;

  // Returns a 32-byte key derived from the secret for the card fingerprints
  // in FormFacts, so one probe gives one card the same fingerprint across
  // restarts, and no one without the secret file can test a guessed number.
  std::string cardKey() const;

  // The checks below add a BaitHit and the TX variables to `outcome` when
  // the bait was touched, and nothing otherwise. None of them throws for any
  // request content.

  // Requests on a bait listener: kind fake_port.
  void checkListener(const CapturedRequest& request, RouteOutcome& outcome) const;

  // A request for a path advertised only in robots.txt (`trap` "robots") or
  // in an HTML comment (`trap` "comment").
  void recordTrap(std::string_view trap, const std::string& path, RouteOutcome& outcome) const;

  // The hidden field `field` in the query string or in a urlencoded,
  // multipart or JSON body, with any value other than `field.value`.
  void checkFormField(const CapturedRequest& request, const BaitValue& field,
                      RouteOutcome& outcome) const;

  // The cookie `cookie.name` sent with a value other than `cookie.value`.
  void checkCookie(const CapturedRequest& request, const BaitValue& cookie,
                   RouteOutcome& outcome) const;

  // Every `Authorization: Basic` header on a canary path, decoded.
  void recordCredentials(const CapturedRequest& request, RouteOutcome& outcome) const;

  // Honeytokens anywhere in the request target, headers or captured body,
  // from any address.
  void scanHoneytokens(const CapturedRequest& request, RouteOutcome& outcome);

 private:
  std::string mac(std::string_view label, std::string_view data) const;
  std::string issuedTo(const std::string& token);
  void scanText(std::string_view text, std::vector<std::string>& found) const;

  std::string secret_;
  std::size_t capacity_;
  Counter& tokens_issued_;
  Counter& tokens_detected_;

  std::mutex mutex_;                                     // guards issued_ and issued_order_
  std::unordered_map<std::string, std::string> issued_;  // token -> address
  std::deque<std::string> issued_order_;                 // oldest first
};

}  // namespace webtrap::probe
