// The in-memory form of a persona folder, built once by loadPersonaData()
// and read-only afterwards, so that many threads can respond from it.
#pragma once

#include <ctime>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "probe/baits.h"
#include "probe/capture.h"

namespace webtrap::probe {

// A body split into literal text and {{variable}} references.
struct PersonaTemplate {
  struct Segment {
    bool is_variable = false;
    std::string text;  // literal bytes, or the variable name
  };
  std::vector<Segment> segments;
};

// Response of a form or product route for one outcome, such as "taken" on a
// registration form. The page is `body`, or the route's body when has_body is
// false, rendered with `notice` at {{notice}}. When `redirect` is set, a POST
// gets a 302 to it instead, as a PHP script sends after handling a form, and
// a GET of exactly that target gets the page.
struct FormAnswer {
  int status = 200;
  std::string notice;    // HTML chosen by the persona, never request bytes
  std::string redirect;  // path and query, starting with '/'
  bool has_body = false;
  PersonaTemplate body;
};

// One product of the persona's shop.
struct Product {
  std::string id;  // decimal, as in ?id=N
  std::string name;
  std::string price;  // as displayed, "49.90"
  std::string description;
};

enum class RouteMatch { kExact, kPrefix, kDirectory };
// kStaticGzip and kPhpGzip: the same responses compressed by mod_deflate,
// which moves Content-Length after Vary and Content-Encoding.
enum class HeaderProfile { kStatic, kPhp, kError, kOptions, kStaticGzip, kPhpGzip };


struct PersonaRoute {
  std::string name;
  std::vector<std::string> paths;  // `path` first, then `aliases`
  RouteMatch match = RouteMatch::kExact;
  // page, login, register, comment, contact, product, coupon, checkout, admin,
  // trap, canary, static
  std::string kind;
  HeaderProfile profile = HeaderProfile::kError;
  int status = 200;
  PersonaTemplate body;
  bool has_post_body = false;
  PersonaTemplate post_body;  // body sent for POST, when set
  std::string content_type;
  std::vector<HeaderField> headers;  // the route's own headers, at "*" in the profile
  bool session = false;              // PHP session_start(): PHPSESSID and cache headers
  bool set_bait_cookie = false;
  std::string trap;  // "", "robots" or "comment"
  bool canary = false;
  std::string realm;  // non-empty: responds 401 Basic with this realm
  std::time_t last_modified = 0;
  std::map<std::string, FormAnswer> answers;  // by outcome name, for form and product kinds
};

struct PersonaData {
  std::filesystem::path dir;
  std::string name;
  std::string product;
  std::string server_header;
  std::string server_name;
  int keep_alive_timeout = 5;
  int keep_alive_max = 100;
  // Content-Type of the server's own error pages (Apache's by default).
  std::string error_content_type = "text/html; charset=iso-8859-1";
  // Reason phrases that replace the built-in ones, by status code.
  std::map<int, std::string> reason_phrases;
  std::time_t last_modified = 0;
  // Media types mod_deflate compresses (AddOutputFilterByType DEFLATE).
  std::vector<std::string> deflate_types;
  std::string x_powered_by;
  std::string session_cookie;
  BaitValue bait_field;
  BaitValue bait_cookie;
  std::map<HeaderProfile, std::vector<std::string>> header_order;
  std::map<int, PersonaTemplate> error_pages;
  std::vector<PersonaRoute> routes;

  // Registration: user names that get the "taken" outcome, lowercase.
  std::vector<std::string> taken_usernames;
  // Coupon codes the cart accepts, compared ASCII case-insensitively.
  std::vector<std::string> valid_coupons;
  // Ids of the blog posts that comment routes show. Any other ?id= gets the
  // not_found answer. When the list is empty, every id shows the page.
  std::vector<std::string> blog_posts;
  std::vector<Product> products;
  // Rendered once per product for {{products}}, with {{product.*}} set.
  PersonaTemplate product_list_item;
};

// Reads and validates `dir`/persona.yaml and every file it names. Throws
// ConfigError naming the file, the key and the fix. Files are read only from
// inside `dir`: absolute paths, `..` and symbolic links are rejected.
PersonaData loadPersonaData(const std::filesystem::path& dir);

}  // namespace webtrap::probe
