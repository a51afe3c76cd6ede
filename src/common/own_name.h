// Recognises CRS matches whose matched data is only the site's own name.
// CRS 942140 lists database names such as "northwind", so a login name like
// admin@northwind.example on a site reached as www.northwind.example reads
// as SQL injection. A match on the name that the client itself used to
// reach the site is no evidence of an attack.
#pragma once

#include <string_view>

namespace webtrap::oat {

// Returns true when `rule_id` is a CRS attack rule (930000-944999) and
// `rule_data`, its message data in the CRS form "Matched Data: <text> found
// within <variable>: <value>", matched only a name of the site: <text>
// equals, ignoring case, a label of `host` other than its last (the
// top-level domain). `host` is the request's Host header; a port after it
// is ignored, and an IP address names no site. Returns false when the data
// has another form.
// NOTE: the Host header is sent by the client, so a client can make one
// single-word match its own host label and so keep that match from counting.
bool isOwnNameMatch(std::string_view rule_id, std::string_view rule_data, std::string_view host);

}  // namespace webtrap::oat
