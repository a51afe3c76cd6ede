// Facts the probe reads from one request beyond the audit record, and the
// OWASP Automated Threat (OAT) tags given to a request. The probe writes both
// into its record as webtrap.form and webtrap.oat. The collector reads them
// back into its AuditRecord, adds behavioural tags, and writes them all into
// the ECS document.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace webtrap {

// One OAT tag. Record JSON (webtrap.oat[] and the document's webtrap.oat[]):
//   {"id":"OAT-014","name":"Vulnerability Scanning","basis":"rule",
//    "confidence":0.6,"reason":"crs:942100","attack":["T1190"],
//    "version":"<ontology version>"}
struct OatTag {
  std::string id;       // "OAT-014"
  std::string name;     // handbook v1.3 name, "Vulnerability Scanning"
  std::string basis;    // "rule" (per request) or "behaviour" (windows in the collector)
  double confidence = 0.0;  // 0 to 1
  // Why, in a short machine-readable form: "crs:942100", "bait:robots",
  // "route:login POST", "behaviour:distinct_paths=41 ratio_404=0.83 window=60s".
  std::string reason;
  std::vector<std::string> attack;  // MITRE ATT&CK technique ids, "T1110.004"
  std::string version;              // ontology version that produced the tag
  // Behavioural tags only: the window key whose signal gave the tag
  // ("ip_ua:0123456789abcdef"), and whether later records of that key may
  // still withdraw the verdict behind it (see the collector's OatVerdict).
  std::string key;
  bool provisional = false;
};

// A payment card seen in a form, never the full number.
struct CardFacts {
  std::string bin;          // first 6 digits
  std::string last4;        // last 4 digits
  bool luhn_valid = false;  // the whole number passes the Luhn check
  // Keyed hash of the full number (hex, 16 characters), so the collector can
  // count distinct cards without ever seeing one.
  std::string fingerprint;
};

// Fields the probe read from a POST to one of its persona's forms
// (webtrap.form in the record). An empty kind means no form was submitted.
struct FormFacts {
  // The route kind that took the form: "login", "register", "comment",
  // "contact", "coupon", "checkout".
  std::string kind;
  std::string username;         // login and register
  std::string password_sha256;  // hex SHA-256 of the password tried; never the password
  std::string email;            // register, comment, contact
  std::string coupon;           // coupon code tried
  std::vector<CardFacts> cards;  // checkout
  std::uint32_t links = 0;       // URLs in the free text (comment, contact)
  std::uint32_t text_bytes = 0;  // size of the free text
};

}  // namespace webtrap
