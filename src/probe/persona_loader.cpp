#include <algorithm>
#include <cctype>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "common/encoding.h"
#include "common/error.h"
#include "probe/persona_data.h"

namespace webtrap::probe {
namespace {

namespace fs = std::filesystem;

// Persona files are pages, not downloads.
constexpr std::uintmax_t kMaxFileBytes = 1024 * 1024;

const std::set<std::string> kTopKeys = {
    "name",          "product", "server_header", "server_name", "keep_alive",
    "last_modified", "php",     "bait_field",    "bait_cookie", "header_profiles",
    "error_pages",   "routes",  "deflate_types", "forms",       "shop",
    "error_content_type", "reason_phrases"};
const std::set<std::string> kRouteKeys = {
    "name", "path",      "aliases",  "match",        "kind",         "profile", "status",
    "body", "post_body", "template", "headers",      "content_type", "session", "set_bait_cookie",
    "trap", "canary",    "realm",    "last_modified", "answers"};
const std::set<std::string> kKinds = {"page",    "login",    "register", "comment", "contact",
                                      "product", "coupon",   "checkout", "admin",   "trap",
                                      "canary",  "static"};
// Outcomes that persona_forms.cpp picks for each route kind with answers. A
// route of that kind needs an answer for each outcome.
const std::map<std::string, std::set<std::string>> kAnswersByKind = {
    {"register", {"invalid", "mismatch", "taken", "created"}},
    {"comment", {"invalid", "moderation", "not_found"}},
    {"coupon", {"added", "empty", "invalid", "valid"}},
    {"checkout", {"invalid", "declined"}},
    {"product", {"not_found"}},
};
const std::set<std::string> kProfileHeaders = {
    "Date",         "Server",   "Last-Modified",    "ETag",       "Accept-Ranges", "Content-Length",
    "X-Powered-By", "Vary",     "Content-Encoding", "Keep-Alive", "Connection",    "Content-Type",
    "Allow",        "Location", "WWW-Authenticate", "*"};
const std::set<std::string> kVariables = {
    "host",   "port", "path",     "method", "client_ip",       "user_agent",
    "server", "date", "location", "detail", "bait_field_name", "bait_field_value",
    "notice", "products", "product.id", "product.name", "product.price", "product.description"};

std::string joinKeys(const std::set<std::string>& keys) {
  std::string out;
  for (const auto& key : keys) {
    out += out.empty() ? key : ", " + key;
  }
  return out;
}

class Loader {
 public:
  explicit Loader(const fs::path& dir) : dir_(dir), yaml_path_(dir / "persona.yaml") {}

  PersonaData load() {
    std::error_code ec;
    fs::path canonical = fs::canonical(dir_, ec);
    if (ec || !fs::is_directory(canonical)) {
      throw ConfigError(
          fmt::format("persona folder {}: not found; set personas_dir or persona "
                      "to an existing persona folder",
                      dir_.string()));
    }
    root_ = canonical;

    YAML::Node node;
    try {
      node = YAML::LoadFile(yaml_path_.string());
    } catch (const YAML::BadFile&) {
      throw ConfigError(fmt::format("{}: cannot read; every persona folder needs a persona.yaml",
                                    yaml_path_.string()));
    } catch (const YAML::Exception& error) {
      throw ConfigError(fmt::format("{}: invalid YAML at line {}: {}", yaml_path_.string(),
                                    error.mark.line + 1, error.msg));
    }
    if (!node.IsMap()) {
      throw fail("(top level)", "expected a map of persona settings");
    }
    try {
      return build(node);
    } catch (const YAML::Exception& error) {
      throw ConfigError(fmt::format("{}: invalid value at line {}: {}", yaml_path_.string(),
                                    error.mark.line + 1, error.msg));
    }
  }

 private:
  ConfigError fail(const std::string& key, const std::string& message) const {
    return ConfigError(fmt::format("{}: {}: {}", yaml_path_.string(), key, message));
  }

  void checkKeys(const YAML::Node& node, const std::set<std::string>& known,
                 const std::string& where) const {
    for (const auto& entry : node) {
      std::string key = entry.first.as<std::string>();
      if (!known.contains(key)) {
        throw fail(where.empty() ? key : where + "." + key,
                   "unknown key; known keys are " + joinKeys(known));
      }
    }
  }

  std::string text(const YAML::Node& node, const std::string& key, bool required) const {
    if (!node) {
      if (required) {
        throw fail(key, "missing; add it");
      }
      return {};
    }
    if (!node.IsScalar()) {
      throw fail(key, "expected a string");
    }
    return node.as<std::string>();
  }

  bool flag(const YAML::Node& node, const std::string& key) const {
    if (!node) {
      return false;
    }
    std::string value = text(node, key, true);
    if (value == "true") {
      return true;
    }
    if (value == "false") {
      return false;
    }
    throw fail(key, fmt::format("invalid value \"{}\"; use true or false", value));
  }

  std::time_t timestamp(const YAML::Node& node, const std::string& key) const {
    std::string value = text(node, key, true);
    std::tm tm{};
    char zone = 0;
    if (std::sscanf(value.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &tm.tm_year, &tm.tm_mon,
                    &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &zone) != 7 ||
        zone != 'Z') {
      throw fail(key, fmt::format("invalid time \"{}\"; use UTC like 2024-03-11T09:14:27Z", value));
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return timegm(&tm);
  }

  // Resolves `relative` inside the persona folder and reads it. Rejects
  // absolute paths, `..`, symbolic links on the way and anything that
  // resolves outside the folder.
  std::string readFile(const std::string& relative, const std::string& key) const {
    fs::path path(relative);
    if (relative.empty() || path.is_absolute()) {
      throw fail(key,
                 fmt::format("\"{}\" must be a path relative to the persona folder", relative));
    }

    fs::path current = root_;
    for (const auto& part : path) {
      if (part == ".." || part == ".") {
        throw fail(key, fmt::format("\"{}\" must not contain . or .. parts", relative));
      }
      current /= part;
      std::error_code ec;
      if (fs::is_symlink(fs::symlink_status(current, ec))) {
        throw fail(key, fmt::format("\"{}\" goes through the symbolic link {}; copy the file "
                                    "into the persona folder instead",
                                    relative, current.string()));
      }
    }

    std::error_code ec;
    fs::path resolved = fs::canonical(current, ec);
    if (ec || !fs::is_regular_file(resolved)) {
      throw fail(key, fmt::format("file \"{}\" not found in {}", relative, root_.string()));
    }
    auto [end, _] = std::mismatch(root_.begin(), root_.end(), resolved.begin(), resolved.end());
    if (end != root_.end()) {
      throw fail(key, fmt::format("\"{}\" resolves outside the persona folder", relative));
    }

    if (fs::file_size(resolved) > kMaxFileBytes) {
      throw fail(key, fmt::format("file \"{}\" is larger than {} bytes", relative, kMaxFileBytes));
    }
    std::ifstream in(resolved, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }

  PersonaTemplate parseTemplate(const std::string& bytes, bool with_variables,
                                const std::string& key) const {
    PersonaTemplate result;
    if (!with_variables) {
      result.segments.push_back({false, bytes});
      return result;
    }
    std::size_t pos = 0;
    while (pos < bytes.size()) {
      std::size_t open = bytes.find("{{", pos);
      if (open == std::string::npos) {
        result.segments.push_back({false, bytes.substr(pos)});
        break;
      }
      if (open > pos) {
        result.segments.push_back({false, bytes.substr(pos, open - pos)});
      }
      std::size_t close = bytes.find("}}", open + 2);
      if (close == std::string::npos) {
        throw fail(key, "a \"{{\" has no closing \"}}\"");
      }
      std::string name = bytes.substr(open + 2, close - open - 2);
      checkVariable(name, key);
      result.segments.push_back({true, name});
      pos = close + 2;
    }
    return result;
  }

  void checkVariable(const std::string& name, const std::string& key) const {
    if (kVariables.contains(name)) {
      return;
    }
    constexpr std::string_view kTokenPrefix = "honeytoken.";
    TokenKind kind;
    if (name.starts_with(kTokenPrefix) &&
        tokenKindFromName(std::string_view(name).substr(kTokenPrefix.size()), kind)) {
      return;
    }
    throw fail(key, fmt::format("unknown template variable {{{{{}}}}}; known are {}, "
                                "honeytoken.aws_access_key_id, honeytoken.aws_secret_access_key, "
                                "honeytoken.stripe_secret_key, honeytoken.db_password",
                                name, joinKeys(kVariables)));
  }

  BaitValue baitValue(const YAML::Node& node, const std::string& key) const {
    if (!node) {
      return {};
    }
    if (!node.IsMap()) {
      throw fail(key, "expected a map with name and value");
    }
    checkKeys(node, {"name", "value"}, key);
    return BaitValue{text(node["name"], key + ".name", true),
                     text(node["value"], key + ".value", true)};
  }

  HeaderProfile profileByName(const std::string& name, const std::string& key) const {
    if (name == "static") {
      return HeaderProfile::kStatic;
    }
    if (name == "php") {
      return HeaderProfile::kPhp;
    }
    if (name == "error") {
      return HeaderProfile::kError;
    }
    if (name == "options") {
      return HeaderProfile::kOptions;
    }
    if (name == "static_gzip") {
      return HeaderProfile::kStaticGzip;
    }
    if (name == "php_gzip") {
      return HeaderProfile::kPhpGzip;
    }
    throw fail(key, fmt::format("invalid profile \"{}\"; use static, php, error, options, "
                                "static_gzip or php_gzip",
                                name));
  }

  PersonaData build(const YAML::Node& node) {
    checkKeys(node, kTopKeys, "");
    PersonaData data;
    data.dir = root_;
    data.name = text(node["name"], "name", true);
    data.product = text(node["product"], "product", true);
    data.server_header = text(node["server_header"], "server_header", false);
    if (data.server_header.empty()) {
      data.server_header = data.product;
    }
    data.server_name = text(node["server_name"], "server_name", false);
    if (node["keep_alive"]) {
      checkKeys(node["keep_alive"], {"timeout", "max"}, "keep_alive");
      data.keep_alive_timeout = node["keep_alive"]["timeout"].as<int>(5);
      data.keep_alive_max = node["keep_alive"]["max"].as<int>(100);
    }
    if (node["error_content_type"]) {
      data.error_content_type = text(node["error_content_type"], "error_content_type", true);
    }
    if (node["reason_phrases"]) {
      readReasonPhrases(node["reason_phrases"], data);
    }
    if (node["last_modified"]) {
      data.last_modified = timestamp(node["last_modified"], "last_modified");
    }
    if (node["php"]) {
      checkKeys(node["php"], {"x_powered_by", "session_cookie"}, "php");
      data.x_powered_by = text(node["php"]["x_powered_by"], "php.x_powered_by", false);
      data.session_cookie = text(node["php"]["session_cookie"], "php.session_cookie", false);
    }
    if (node["deflate_types"]) {
      if (!node["deflate_types"].IsSequence()) {
        throw fail("deflate_types", "expected a list of media types such as text/html");
      }
      for (const auto& item : node["deflate_types"]) {
        data.deflate_types.push_back(text(item, "deflate_types", true));
      }
    }
    data.bait_field = baitValue(node["bait_field"], "bait_field");
    data.bait_cookie = baitValue(node["bait_cookie"], "bait_cookie");

    loadProfiles(node["header_profiles"], data);
    loadErrorPages(node["error_pages"], data);
    loadForms(node["forms"], data);
    loadShop(node["shop"], data);
    loadRoutes(node["routes"], data);
    return data;
  }

  std::vector<std::string> textList(const YAML::Node& node, const std::string& key) const {
    std::vector<std::string> values;
    if (!node) {
      return values;
    }
    if (!node.IsSequence()) {
      throw fail(key, "expected a list of strings");
    }
    for (const auto& item : node) {
      values.push_back(text(item, key, true));
    }
    return values;
  }

  void loadForms(const YAML::Node& node, PersonaData& data) const {
    if (!node) {
      return;
    }
    if (!node.IsMap()) {
      throw fail("forms", "expected a map with taken_usernames, valid_coupons and blog_posts");
    }
    checkKeys(node, {"taken_usernames", "valid_coupons", "blog_posts"}, "forms");
    for (const std::string& name : textList(node["taken_usernames"], "forms.taken_usernames")) {
      data.taken_usernames.push_back(asciiLowercase(name));
    }
    data.valid_coupons = textList(node["valid_coupons"], "forms.valid_coupons");
    data.blog_posts = textList(node["blog_posts"], "forms.blog_posts");
  }

  void loadShop(const YAML::Node& node, PersonaData& data) const {
    if (!node) {
      return;
    }
    if (!node.IsMap()) {
      throw fail("shop", "expected a map with products and list_item");
    }
    checkKeys(node, {"products", "list_item"}, "shop");
    const YAML::Node& products = node["products"];
    if (!products || !products.IsSequence() || products.size() == 0) {
      throw fail("shop.products", "missing; add a list of products with id, name, price and "
                                  "description");
    }
    std::set<std::string> ids;
    for (std::size_t i = 0; i < products.size(); ++i) {
      std::string where = fmt::format("shop.products[{}]", i);
      if (!products[i].IsMap()) {
        throw fail(where, "expected a map with id, name, price and description");
      }
      checkKeys(products[i], {"id", "name", "price", "description"}, where);
      Product product{text(products[i]["id"], where + ".id", true),
                      text(products[i]["name"], where + ".name", true),
                      text(products[i]["price"], where + ".price", true),
                      text(products[i]["description"], where + ".description", false)};
      if (product.id.empty() || product.id.size() > 9 ||
          product.id.find_first_not_of("0123456789") != std::string::npos ||
          (product.id.size() > 1 && product.id.front() == '0')) {
        throw fail(where + ".id",
                   fmt::format("invalid id \"{}\"; use a decimal number without leading zeros",
                               product.id));
      }
      if (!ids.insert(product.id).second) {
        throw fail(where + ".id", fmt::format("duplicate product id {}", product.id));
      }
      data.products.push_back(std::move(product));
    }
    data.product_list_item =
        parseTemplate(text(node["list_item"], "shop.list_item", true), true, "shop.list_item");
  }

  std::map<std::string, FormAnswer> loadAnswers(const YAML::Node& node, const std::string& where,
                                                const std::string& kind,
                                                bool with_variables) const {
    std::map<std::string, FormAnswer> answers;
    auto needed = kAnswersByKind.find(kind);
    if (needed == kAnswersByKind.end()) {
      if (node) {
        throw fail(where, fmt::format("a route of kind {} takes no answers; remove them (only "
                                      "register, comment, coupon, checkout and product routes "
                                      "have answers)",
                                      kind));
      }
      return answers;
    }
    if (!node || !node.IsMap()) {
      throw fail(where, fmt::format("missing; a {} route needs answers for the outcomes {}", kind,
                                    joinKeys(needed->second)));
    }
    for (const auto& entry : node) {
      std::string name = entry.first.as<std::string>();
      std::string key = where + "." + name;
      if (!needed->second.contains(name)) {
        throw fail(key, fmt::format("unknown answer; the outcomes of a {} route are {}", kind,
                                    joinKeys(needed->second)));
      }
      if (!entry.second.IsMap()) {
        throw fail(key, "expected a map with notice and optionally body, status or redirect");
      }
      checkKeys(entry.second, {"notice", "body", "status", "redirect"}, key);
      FormAnswer answer;
      answer.notice = text(entry.second["notice"], key + ".notice", true);
      if (entry.second["body"]) {
        std::string body_key = key + ".body";
        answer.body = parseTemplate(readFile(text(entry.second["body"], body_key, true), body_key),
                                    with_variables, body_key);
        answer.has_body = true;
      }
      answer.redirect = text(entry.second["redirect"], key + ".redirect", false);
      if (!answer.redirect.empty() &&
          (answer.redirect.front() != '/' ||
           answer.redirect.find_first_of(" \r\n\t") != std::string::npos)) {
        throw fail(key + ".redirect",
                   fmt::format("\"{}\" must be a path starting with / and without spaces",
                               answer.redirect));
      }
      if (entry.second["status"]) {
        answer.status = entry.second["status"].as<int>();
        if (answer.status < 200 || answer.status > 599 || answer.status == 302) {
          throw fail(key + ".status",
                     "expected an HTTP status code from 200 to 599 (use redirect for a 302)");
        }
      }
      answers[name] = std::move(answer);
    }
    for (const auto& name : needed->second) {
      if (!answers.contains(name)) {
        throw fail(where, fmt::format("missing the answer \"{}\"; the outcomes of a {} route are {}",
                                      name,
                                      kind, joinKeys(needed->second)));
      }
    }
    return answers;
  }

  void loadProfiles(const YAML::Node& node, PersonaData& data) const {
    if (!node || !node.IsMap()) {
      throw fail("header_profiles", "missing; add header lists for static, php, error, options");
    }
    for (const auto& entry : node) {
      std::string name = entry.first.as<std::string>();
      std::string key = "header_profiles." + name;
      HeaderProfile profile = profileByName(name, key);
      if (!entry.second.IsSequence()) {
        throw fail(key, "expected a list of header names");
      }
      for (const auto& item : entry.second) {
        std::string header = text(item, key, true);
        if (!kProfileHeaders.contains(header)) {
          throw fail(key, fmt::format("unknown header \"{}\"; known are {}", header,
                                      joinKeys(kProfileHeaders)));
        }
        data.header_order[profile].push_back(header);
      }
    }
    for (auto profile :
         {HeaderProfile::kStatic, HeaderProfile::kPhp, HeaderProfile::kError,
          HeaderProfile::kOptions, HeaderProfile::kStaticGzip, HeaderProfile::kPhpGzip}) {
      if (!data.header_order.contains(profile)) {
        throw fail("header_profiles",
                   "missing one of static, php, error, options, static_gzip, php_gzip; add it");
      }
    }
  }

  // Reason phrases by status code, for a server whose phrases differ from
  // the built-in (Apache's) ones, such as nginx's "405 Not Allowed".
  void readReasonPhrases(const YAML::Node& node, PersonaData& data) const {
    if (!node.IsMap()) {
      throw fail("reason_phrases", "expected a map of status codes to phrases");
    }
    for (const auto& entry : node) {
      std::string key = "reason_phrases." + entry.first.as<std::string>();
      int status = 0;
      try {
        status = entry.first.as<int>();
      } catch (const YAML::Exception&) {
        throw fail(key, "expected an HTTP status code");
      }
      if (status < 100 || status > 599) {
        throw fail(key, "expected an HTTP status code");
      }
      std::string phrase = text(entry.second, key, true);
      bool printable = std::all_of(phrase.begin(), phrase.end(),
                                   [](unsigned char c) { return c >= 0x20 && c < 0x7f; });
      if (phrase.empty() || !printable) {
        throw fail(key, "expected a phrase of printable ASCII characters");
      }
      data.reason_phrases[status] = std::move(phrase);
    }
  }

  void loadErrorPages(const YAML::Node& node, PersonaData& data) const {
    if (!node || !node.IsMap()) {
      throw fail("error_pages", "missing; map status codes to template files");
    }
    for (const auto& entry : node) {
      std::string key = "error_pages." + entry.first.as<std::string>();
      int status = entry.first.as<int>();
      if (status < 100 || status > 599) {
        throw fail(key, "expected an HTTP status code");
      }
      data.error_pages[status] =
          parseTemplate(readFile(text(entry.second, key, true), key), true, key);
    }
    for (int status : {301, 400, 401, 403, 404, 405, 413, 414, 500, 501}) {
      if (!data.error_pages.contains(status)) {
        throw fail("error_pages", fmt::format("missing the page for status {}; add it", status));
      }
    }
  }

  void loadRoutes(const YAML::Node& node, PersonaData& data) const {
    if (!node || !node.IsSequence()) {
      throw fail("routes", "missing; add a list of routes");
    }
    std::set<std::string> names;
    for (std::size_t i = 0; i < node.size(); ++i) {
      PersonaRoute route = loadRoute(node[i], fmt::format("routes[{}]", i), data);
      if (!names.insert(route.name).second) {
        throw fail(fmt::format("routes[{}].name", i),
                   fmt::format("duplicate route name \"{}\"", route.name));
      }
      data.routes.push_back(std::move(route));
    }
  }

  PersonaRoute loadRoute(const YAML::Node& node, const std::string& where,
                         const PersonaData& data) const {
    if (!node.IsMap()) {
      throw fail(where, "expected a map with at least name, path and kind");
    }
    checkKeys(node, kRouteKeys, where);
    PersonaRoute route;
    route.name = text(node["name"], where + ".name", true);
    route.paths.push_back(text(node["path"], where + ".path", true));
    if (node["aliases"]) {
      if (!node["aliases"].IsSequence()) {
        throw fail(where + ".aliases", "expected a list of paths");
      }
      for (const auto& alias : node["aliases"]) {
        route.paths.push_back(text(alias, where + ".aliases", true));
      }
    }
    for (const auto& path : route.paths) {
      if (path.empty() || path.front() != '/') {
        throw fail(where + ".path", fmt::format("\"{}\" must start with /", path));
      }
    }

    std::string match = node["match"] ? text(node["match"], where + ".match", true) : "exact";
    if (match == "exact") {
      route.match = RouteMatch::kExact;
    } else if (match == "prefix") {
      route.match = RouteMatch::kPrefix;
    } else if (match == "directory") {
      route.match = RouteMatch::kDirectory;
      if (route.paths.front().back() != '/') {
        throw fail(where + ".path", "a directory route's path must end with /");
      }
    } else {
      throw fail(where + ".match",
                 fmt::format("invalid value \"{}\"; use exact, prefix or directory", match));
    }

    route.kind = text(node["kind"], where + ".kind", true);
    if (!kKinds.contains(route.kind)) {
      throw fail(where + ".kind",
                 fmt::format("invalid kind \"{}\"; use one of {}", route.kind, joinKeys(kKinds)));
    }
    route.answers = loadAnswers(node["answers"], where + ".answers", route.kind,
                                flag(node["template"], where + ".template"));
    if (!route.answers.empty() && !node["profile"]) {
      throw fail(where + ".profile", "missing; set profile: php, because routes with answers are "
                                     "PHP pages");
    }
    if (route.kind == "product" && data.products.empty()) {
      throw fail(where + ".kind", "a product route needs a top-level shop with products");
    }
    route.trap = text(node["trap"], where + ".trap", false);
    if (!route.trap.empty() && route.trap != "robots" && route.trap != "comment") {
      throw fail(where + ".trap",
                 fmt::format("invalid value \"{}\"; use robots or comment", route.trap));
    }
    route.canary = flag(node["canary"], where + ".canary");
    route.realm = text(node["realm"], where + ".realm", false);
    if (route.realm.find_first_of("\"\r\n") != std::string::npos) {
      throw fail(where + ".realm", "must not contain quotes or line breaks");
    }
    route.session = flag(node["session"], where + ".session");
    route.set_bait_cookie = flag(node["set_bait_cookie"], where + ".set_bait_cookie");
    if (route.set_bait_cookie && data.bait_cookie.name.empty()) {
      throw fail(where + ".set_bait_cookie", "needs a top-level bait_cookie with name and value");
    }
    if (route.session && data.session_cookie.empty()) {
      throw fail(where + ".session", "needs php.session_cookie");
    }
    route.last_modified = node["last_modified"]
                              ? timestamp(node["last_modified"], where + ".last_modified")
                              : data.last_modified;

    if (node["status"]) {
      route.status = node["status"].as<int>();
      if (route.status < 200 || route.status > 599) {
        throw fail(where + ".status", "expected an HTTP status code from 200 to 599");
      }
    }
    if (!route.realm.empty()) {
      route.status = 401;
    }

    bool has_body = static_cast<bool>(node["body"]);
    route.profile = node["profile"] ? profileByName(text(node["profile"], where + ".profile", true),
                                                    where + ".profile")
                                    : (has_body ? HeaderProfile::kStatic : HeaderProfile::kError);
    if (route.profile == HeaderProfile::kError) {
      if (route.status == 200) {
        throw fail(where + ".status", "a route without a body needs an error status or a realm");
      }
      if (!data.error_pages.contains(route.status)) {
        throw fail(where + ".status",
                   fmt::format("no error page for status {}; add it to error_pages", route.status));
      }
    } else if (!has_body) {
      throw fail(where + ".body", "missing; a static or php route serves a file");
    }

    bool with_variables = flag(node["template"], where + ".template");
    if (has_body) {
      std::string key = where + ".body";
      route.body = parseTemplate(readFile(text(node["body"], key, true), key), with_variables, key);
    }
    if (node["post_body"]) {
      std::string key = where + ".post_body";
      route.post_body =
          parseTemplate(readFile(text(node["post_body"], key, true), key), with_variables, key);
      route.has_post_body = true;
    }

    if (node["content_type"]) {
      route.content_type = text(node["content_type"], where + ".content_type", false);
    } else if (route.profile == HeaderProfile::kPhp) {
      route.content_type = "text/html; charset=UTF-8";
    } else if (route.profile == HeaderProfile::kStatic) {
      throw fail(where + ".content_type", "missing; a static route names its type (\"\" for none)");
    }

    if (node["headers"]) {
      if (!node["headers"].IsSequence()) {
        throw fail(where + ".headers", "expected a list of one-entry maps like `- Vary: Accept`");
      }
      for (const auto& item : node["headers"]) {
        if (!item.IsMap() || item.size() != 1) {
          throw fail(where + ".headers",
                     "each entry must be a one-entry map like `- Vary: Accept`");
        }
        auto entry = *item.begin();
        HeaderField field{entry.first.as<std::string>(), entry.second.as<std::string>()};
        if ((field.name + field.value).find_first_of("\r\n") != std::string::npos) {
          throw fail(where + ".headers", "header names and values must not contain line breaks");
        }
        route.headers.push_back(std::move(field));
      }
    }
    return route;
  }

  fs::path dir_;
  fs::path yaml_path_;
  fs::path root_;
};

}  // namespace

PersonaData loadPersonaData(const std::filesystem::path& dir) {
  return Loader(dir).load();
}

}  // namespace webtrap::probe
