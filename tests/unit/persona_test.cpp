// Tests for the persona loader and the apache-debian-php persona, including
// a byte comparison with real Apache responses in tests/fixtures/apache.
#include "probe/persona.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include "common/error.h"
#include "common/metrics.h"
#include "probe/baits.h"
#include "probe/config.h"
#include "probe/request_reader.h"

namespace webtrap::probe {
namespace {

namespace fs = std::filesystem;

const fs::path kSourceDir = WEBTRAP_SOURCE_DIR;
const fs::path kPersonaDir = kSourceDir / "personas" / "apache-debian-php";
const fs::path kFixtureDir = kSourceDir / "tests" / "fixtures" / "apache";
constexpr std::uint16_t kFixturePort = 18081;  // the port capture.py gives Apache

std::string readBytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void writeBytes(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "webtrap-persona-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Serialises a response the way the probe server writes it.
std::string wire(const PersonaResponse& response) {
  std::string out = fmt::format("HTTP/1.1 {} {}\r\n", response.status, response.reason);
  for (const auto& field : response.headers) {
    out += field.name + ": " + field.value + "\r\n";
  }
  out += "\r\n";
  if (!response.omit_body) {
    out += response.body;
  }
  return out;
}

// Replaces the Date value and sorts the methods of Allow, whose order
// Apache takes from a hash table.
std::string normalise(const std::string& response) {
  std::string out;
  std::size_t head_end = response.find("\r\n\r\n");
  std::string_view head = std::string_view(response).substr(0, head_end);
  std::size_t pos = 0;
  while (pos <= head.size()) {
    std::size_t end = head.find("\r\n", pos);
    std::string line(head.substr(pos, end == std::string_view::npos ? end : end - pos));
    if (line.starts_with("Date: ")) {
      line = "Date: (date)";
    } else if (line.starts_with("Allow: ")) {
      std::set<std::string> methods;
      std::string rest = line.substr(7);
      std::size_t start = 0;
      while (start < rest.size()) {
        std::size_t comma = rest.find(',', start);
        methods.insert(rest.substr(start, comma - start));
        start = comma == std::string::npos ? rest.size() : comma + 1;
      }
      line = "Allow: " + fmt::format("{}", fmt::join(methods, ","));
    }
    out += line + "\r\n";
    if (end == std::string_view::npos) {
      break;
    }
    pos = end + 2;
  }
  if (head_end != std::string::npos) {
    out += response.substr(head_end + 2);
  }
  return out;
}

class PersonaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    persona_ = Persona::load(kPersonaDir);
    baits_ = std::make_unique<Baits>(BaitsConfig{state_.path() / "bait-secret"}, metrics_);
  }

  CapturedRequest request(std::string method, std::string target,
                          std::vector<HeaderField> headers = {{"Host", "www.example.com"}}) {
    CapturedRequest request;
    request.parsed = true;
    request.method = std::move(method);
    request.target = std::move(target);
    request.http_version = "1.1";
    request.request_line = request.method + " " + request.target + " HTTP/1.1";
    request.headers = std::move(headers);
    request.client = {"198.51.100.7", 40000};
    request.server = {"127.0.0.1", 8080};
    return request;
  }

  PersonaResponse respond(const CapturedRequest& request) {
    outcome_ = RouteOutcome{};
    return persona_->respond(request, *baits_, outcome_);
  }

  static const std::string* header(const PersonaResponse& response, std::string_view name) {
    return findHeader(response.headers, name);
  }

  // Reads a raw fixture request with the probe's own request reader.
  PersonaResponse respondToRaw(const std::string& raw, const LimitsConfig& limits) {
    RequestReader reader(limits, 1 << 20);
    CapturedRequest connection;
    connection.client = {"127.0.0.1", 50000};
    connection.server = {"127.0.0.1", kFixturePort};
    reader.begin(connection);
    std::size_t consumed = 0;
    RequestReader::Step step = reader.parse(raw, consumed);
    outcome_ = RouteOutcome{};
    if (step == RequestReader::Step::kComplete) {
      return persona_->respond(reader.request(), *baits_, outcome_);
    }
    if (step != RequestReader::Step::kFailed) {
      reader.fail("connection closed before the request was complete", raw.substr(consumed));
    }
    return persona_->respondToParseError(reader.request(), outcome_);
  }

  TempDir state_;
  MetricsRegistry metrics_;
  std::unique_ptr<Persona> persona_;
  std::unique_ptr<Baits> baits_;
  RouteOutcome outcome_;
};

TEST_F(PersonaTest, MatchesApacheFixtures) {
  std::size_t compared = 0;
  for (const auto& entry : fs::directory_iterator(kFixtureDir)) {
    if (entry.path().extension() != ".request") {
      continue;
    }
    std::string name = entry.path().stem().string();
    LimitsConfig limits;
    if (name == "body_too_large") {
      limits.max_body_bytes = 10;  // Apache's fixture runs with LimitRequestBody 10
    }
    PersonaResponse response = respondToRaw(readBytes(entry.path()), limits);
    fs::path expected_path = entry.path();
    expected_path.replace_extension(".response");
    std::string expected = normalise(readBytes(expected_path));
    EXPECT_EQ(normalise(wire(response)), expected) << "fixture " << name;
    ++compared;
  }
  EXPECT_GE(compared, 30u);
}

TEST_F(PersonaTest, LoadsNameAndProduct) {
  EXPECT_EQ(persona_->name(), "apache-debian-php");
  EXPECT_EQ(persona_->product(), "Apache/2.4.71 (Debian)");
}

TEST_F(PersonaTest, RoutesPagesByPath) {
  struct Case {
    std::string target;
    int status;
    std::string route;
    std::string kind;
  };
  std::vector<Case> cases = {
      {"/", 200, "home", "page"},
      {"/index.php", 200, "home", "page"},
      {"/index.php?id=1", 200, "home", "page"},
      {"/about.php", 200, "about", "page"},
      {"/login.php", 200, "login", "login"},
      {"/contact.php", 200, "contact", "contact"},
      {"/register.php", 200, "register", "register"},
      {"/blog/", 200, "blog", "page"},
      {"/blog/post.php?id=1", 200, "blog_post", "comment"},
      {"/shop/", 200, "shop", "page"},
      {"/shop", 301, "shop", "page"},
      {"/blog", 301, "blog", "page"},
      {"/shop/nothing.php", 404, "not_found", "error"},
      {"/shop/product.php?id=2", 200, "product", "product"},
      {"/shop/product.php?id=99", 404, "product", "product"},
      {"/shop/cart.php", 200, "cart", "coupon"},
      {"/shop/checkout.php", 200, "checkout", "checkout"},
      {"/phpinfo.php", 200, "phpinfo", "page"},
      {"/admin/", 401, "admin", "admin"},
      {"/admin/users.php", 401, "admin", "admin"},
      {"/admin-old/", 401, "admin_old", "canary"},
      {"/backup-2019/", 403, "backup_2019", "trap"},
      {"/backup-2019", 301, "backup_2019", "trap"},
      {"/.env", 200, "env_file", "trap"},
      {"/.git/config", 200, "git_config", "trap"},
      {"/.git/HEAD", 403, "git_folder", "trap"},
      {"/.htaccess", 403, "htaccess", "static"},
      {"/.htpasswd", 403, "htaccess", "static"},
      {"/server-status", 403, "server_status", "admin"},
      {"/robots.txt", 200, "robots", "static"},
      {"/favicon.ico", 200, "favicon", "static"},
      {"/nonexistent", 404, "not_found", "error"},
      {"http://www.example.com/about.php", 200, "about", "page"},
      {"//about.php", 200, "about", "page"},
      {"/./about.php", 200, "about", "page"},
      {"/x/../about.php", 200, "about", "page"},
      {"/%61bout.php", 200, "about", "page"},
  };
  for (const auto& c : cases) {
    PersonaResponse response = respond(request("GET", c.target));
    EXPECT_EQ(response.status, c.status) << c.target;
    EXPECT_EQ(outcome_.route, c.route) << c.target;
    EXPECT_EQ(outcome_.route_kind, c.kind) << c.target;
  }
}

TEST_F(PersonaTest, ContentLengthMatchesBody) {
  for (const char* target : {"/", "/login.php", "/.env", "/favicon.ico", "/nope", "/admin/"}) {
    PersonaResponse response = respond(request("GET", target));
    const std::string* length = header(response, "Content-Length");
    ASSERT_NE(length, nullptr) << target;
    EXPECT_EQ(*length, std::to_string(response.body.size())) << target;
  }
}

TEST_F(PersonaTest, HeadKeepsHeadersAndOmitsBody) {
  PersonaResponse get = respond(request("GET", "/robots.txt"));
  PersonaResponse head = respond(request("HEAD", "/robots.txt"));
  EXPECT_TRUE(head.omit_body);
  EXPECT_FALSE(get.omit_body);
  EXPECT_EQ(head.status, 200);
  ASSERT_EQ(head.headers.size(), get.headers.size());
  for (std::size_t i = 0; i < head.headers.size(); ++i) {
    EXPECT_EQ(head.headers[i].name, get.headers[i].name);
  }
  EXPECT_EQ(*header(head, "Content-Length"), *header(get, "Content-Length"));
}

std::string gunzip(const std::string& compressed) {
  z_stream stream{};
  EXPECT_EQ(inflateInit2(&stream, 16 + MAX_WBITS), Z_OK);
  std::string out(1 << 20, '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  stream.avail_in = static_cast<uInt>(compressed.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(inflate(&stream, Z_FINISH), Z_STREAM_END);
  out.resize(stream.total_out);
  inflateEnd(&stream);
  return out;
}

TEST_F(PersonaTest, GzipForClientsThatAcceptIt) {
  PersonaResponse plain = respond(request("GET", "/about.php"));
  PersonaResponse gzip = respond(request(
      "GET", "/about.php", {{"Host", "www.example.com"}, {"Accept-Encoding", "gzip;q=1.0"}}));
  ASSERT_NE(header(gzip, "Content-Encoding"), nullptr);
  EXPECT_EQ(*header(gzip, "Content-Encoding"), "gzip");
  EXPECT_EQ(*header(gzip, "Vary"), "Accept-Encoding");
  EXPECT_EQ(*header(plain, "Vary"), "Accept-Encoding");
  EXPECT_EQ(header(plain, "Content-Encoding"), nullptr);
  EXPECT_EQ(*header(gzip, "Content-Length"), std::to_string(gzip.body.size()));
  EXPECT_LT(gzip.body.size(), plain.body.size());
  EXPECT_EQ(gunzip(gzip.body), plain.body);

  PersonaResponse icon = respond(
      request("GET", "/favicon.ico", {{"Host", "www.example.com"}, {"Accept-Encoding", "gzip"}}));
  EXPECT_EQ(header(icon, "Content-Encoding"), nullptr);
  EXPECT_EQ(header(icon, "Vary"), nullptr);
}

TEST_F(PersonaTest, NotModifiedForMatchingEtag) {
  PersonaResponse full = respond(request("GET", "/robots.txt"));
  std::string etag = *header(full, "ETag");
  PersonaResponse cached = respond(
      request("GET", "/robots.txt", {{"Host", "www.example.com"}, {"If-None-Match", etag}}));
  EXPECT_EQ(cached.status, 304);
  EXPECT_EQ(cached.reason, "Not Modified");
  EXPECT_TRUE(cached.body.empty());
  EXPECT_EQ(header(cached, "Content-Length"), nullptr);

  PersonaResponse stale = respond(
      request("GET", "/robots.txt", {{"Host", "www.example.com"}, {"If-None-Match", "\"1-2\""}}));
  EXPECT_EQ(stale.status, 200);
  PersonaResponse older = respond(request(
      "GET", "/robots.txt",
      {{"Host", "www.example.com"}, {"If-Modified-Since", "Sun, 10 Mar 2024 00:00:00 GMT"}}));
  EXPECT_EQ(older.status, 200);
}

TEST_F(PersonaTest, PhpPagesSendPhpHeaders) {
  PersonaResponse response = respond(request("GET", "/login.php"));
  ASSERT_NE(header(response, "X-Powered-By"), nullptr);
  EXPECT_EQ(*header(response, "X-Powered-By"), "PHP/8.2.36");
  EXPECT_EQ(*header(response, "Content-Type"), "text/html; charset=UTF-8");
  std::vector<std::string> cookies;
  for (const auto& field : response.headers) {
    if (field.name == "Set-Cookie") {
      cookies.push_back(field.value);
    }
  }
  ASSERT_EQ(cookies.size(), 2u);
  EXPECT_TRUE(cookies[0].starts_with("PHPSESSID=")) << cookies[0];
  EXPECT_EQ(cookies[0].size(), std::string("PHPSESSID=; path=/").size() + 26);
  EXPECT_EQ(cookies[1], "user_role=guest; path=/");
  EXPECT_NE(response.body.find(R"(<input type="hidden" name="bags" value="false">)"),
            std::string::npos);
}

TEST_F(PersonaTest, SessionCookieNotResent) {
  auto headers = std::vector<HeaderField>{{"Host", "www.example.com"},
                                          {"Cookie", "PHPSESSID=abc; user_role=guest"}};
  PersonaResponse response = respond(request("GET", "/login.php", headers));
  for (const auto& field : response.headers) {
    EXPECT_FALSE(field.name == "Set-Cookie" && field.value.starts_with("PHPSESSID"));
  }
  EXPECT_NE(header(response, "Expires"), nullptr);
}

TEST_F(PersonaTest, LoginPostShowsError) {
  CapturedRequest post =
      request("POST", "/login.php",
              {{"Host", "www.example.com"}, {"Content-Type", "application/x-www-form-urlencoded"}});
  post.body = "user=admin&pass=admin&bags=false";
  PersonaResponse response = respond(post);
  EXPECT_EQ(response.status, 200);
  EXPECT_NE(response.body.find("Invalid username or password."), std::string::npos);
  EXPECT_TRUE(outcome_.baits.empty());
}

TEST_F(PersonaTest, LoginPostCarriesFormFacts) {
  CapturedRequest post =
      request("POST", "/login.php",
              {{"Host", "www.example.com"}, {"Content-Type", "application/x-www-form-urlencoded"}});
  post.body = "user=admin&pass=admin&bags=false";
  respond(post);
  EXPECT_EQ(outcome_.form.kind, "login");
  EXPECT_EQ(outcome_.form.username, "admin");
  EXPECT_EQ(outcome_.form.password_sha256.size(), 64u);

  respond(request("GET", "/login.php"));
  EXPECT_TRUE(outcome_.form.kind.empty());
}

// Builds a urlencoded form POST to `target` with `body`.
CapturedRequest formPost(const std::string& target, const std::string& body) {
  CapturedRequest post;
  post.parsed = true;
  post.method = "POST";
  post.target = target;
  post.http_version = "1.1";
  post.request_line = "POST " + target + " HTTP/1.1";
  post.headers = {{"Host", "www.example.com"},
                  {"Content-Type", "application/x-www-form-urlencoded"}};
  post.body = body;
  post.client = {"198.51.100.7", 40000};
  post.server = {"127.0.0.1", 8080};
  return post;
}

TEST_F(PersonaTest, RegisterRejectsInvalidFields) {
  struct Case {
    std::string body;
    int status;
    std::string text;
  };
  std::vector<Case> cases = {
      {"username=&email=a%40b.example&password=x&confirm=x", 200, "Please fill in all fields."},
      {"username=carl&email=a%40b.example&password=x&confirm=y", 200,
       "The passwords do not match."},
      {"username=Admin&email=a%40b.example&password=x&confirm=x", 200,
       "This username is already taken."},
      {"username=knowak&email=a%40b.example&password=x&confirm=x", 200,
       "This username is already taken."},
      // PHP's trim() strips NUL and vertical tab, so these names are empty.
      {"username=%00&email=a%40b.example&password=x&confirm=x", 200, "Please fill in all fields."},
      {"username=carl&email=%0B%00&password=x&confirm=x", 200, "Please fill in all fields."},
  };
  for (const auto& c : cases) {
    PersonaResponse response = respond(formPost("/register.php", c.body));
    EXPECT_EQ(response.status, c.status) << c.body;
    EXPECT_NE(response.body.find(c.text), std::string::npos) << c.body;
    EXPECT_NE(response.body.find("name=\"confirm\""), std::string::npos) << c.body;
    EXPECT_EQ(outcome_.form.kind, "register") << c.body;
  }
}

TEST_F(PersonaTest, RegisterFormFeedNameIsNotBlank) {
  // PHP's trim() keeps a form feed, so a PHP script accepts this name.
  PersonaResponse response =
      respond(formPost("/register.php", "username=%0C&email=a%40b.example&password=x&confirm=x"));
  EXPECT_EQ(response.status, 302);
}

TEST_F(PersonaTest, RegisterCreatedRedirects) {
  PersonaResponse response =
      respond(formPost("/register.php", "username=carl&email=a%40b.example&password=x&confirm=x"));
  EXPECT_EQ(response.status, 302);
  EXPECT_EQ(response.reason, "Found");
  ASSERT_NE(header(response, "Location"), nullptr);
  EXPECT_EQ(*header(response, "Location"), "/register.php?registered=1");
  EXPECT_TRUE(response.body.empty());
  ASSERT_NE(header(response, "Content-Length"), nullptr);
  EXPECT_EQ(*header(response, "Content-Length"), "0");
  EXPECT_EQ(outcome_.form.username, "carl");
  // PHP's headers in their order: session headers, then Location.
  std::vector<std::string> names;
  for (const auto& field : response.headers) {
    names.push_back(field.name);
  }
  std::vector<std::string> expected = {"Date",    "Server",        "X-Powered-By", "Set-Cookie",
                                       "Expires", "Cache-Control", "Pragma",       "Location",
                                       "Content-Length", "Content-Type"};
  EXPECT_EQ(names, expected);

  PersonaResponse done = respond(request("GET", "/register.php?registered=1"));
  EXPECT_EQ(done.status, 200);
  EXPECT_NE(done.body.find("Your account has been created."), std::string::npos);
  EXPECT_EQ(done.body.find("name=\"confirm\""), std::string::npos);
}

TEST_F(PersonaTest, CommentValidatesAndModerates) {
  PersonaResponse invalid =
      respond(formPost("/blog/post.php?id=1", "name=x&email=&website=&comment=hi"));
  EXPECT_EQ(invalid.status, 200);
  EXPECT_NE(invalid.body.find("Please fill in your name"), std::string::npos);

  PersonaResponse accepted = respond(formPost(
      "/blog/post.php?id=1", "name=x&email=x%40y.example&website=&comment=see+http%3A%2F%2Fa.b"));
  EXPECT_EQ(accepted.status, 302);
  ASSERT_NE(header(accepted, "Location"), nullptr);
  EXPECT_EQ(*header(accepted, "Location"), "/blog/post.php?id=1&moderation=1");
  EXPECT_EQ(outcome_.form.kind, "comment");
  EXPECT_EQ(outcome_.form.links, 1u);

  PersonaResponse page = respond(request("GET", "/blog/post.php?id=1&moderation=1"));
  EXPECT_NE(page.body.find("Your comment is awaiting moderation."), std::string::npos);
  PersonaResponse plain = respond(request("GET", "/blog/post.php?id=1"));
  EXPECT_EQ(plain.body.find("awaiting moderation"), std::string::npos);
  EXPECT_NE(plain.body.find("name=\"website\""), std::string::npos);
}

TEST_F(PersonaTest, CommentOnMissingPostIsNotFound) {
  // The blog has one post. A PHP blog reads ?id= with intval() and returns
  // 404 for any other id, on GET and POST alike, and keeps the form facts.
  for (const std::string& target :
       {std::string("/blog/post.php?id=2"), std::string("/blog/post.php?id=abc"),
        std::string("/blog/post.php?id=")}) {
    PersonaResponse missing = respond(request("GET", target));
    EXPECT_EQ(missing.status, 404) << target;
    EXPECT_NE(missing.body.find("Post not found."), std::string::npos) << target;
    PersonaResponse posted =
        respond(formPost(target, "name=x&email=x%40y.example&comment=hi+http%3A%2F%2Fa.b"));
    EXPECT_EQ(posted.status, 404) << target;
    EXPECT_EQ(header(posted, "Location"), nullptr) << target;
    EXPECT_EQ(outcome_.form.kind, "comment") << target;
    EXPECT_EQ(outcome_.form.links, 1u) << target;
  }
  PersonaResponse found = respond(request("GET", "/blog/post.php?id=1'%20OR%201=1"));
  EXPECT_EQ(found.status, 200);
  // Without an id the newest post is shown.
  PersonaResponse newest = respond(request("GET", "/blog/post.php"));
  EXPECT_EQ(newest.status, 200);
}

TEST_F(PersonaTest, CouponValidatesCodes) {
  struct Case {
    std::string body;
    int status;
    std::string text;
  };
  std::vector<Case> cases = {
      {"coupon=NOPE10", 200, "This coupon is not valid."},
      {"coupon=", 200, "Please enter a coupon code."},
      {"coupon=spring24", 200, "Coupon applied"},
      // Pasted codes often end in a line break, which PHP's trim() strips.
      {"coupon=SPRING24%0D%0A", 200, "Coupon applied"},
      {"coupon=%00%0B", 200, "Please enter a coupon code."},
      {"coupon=+SPRING24+", 200, "Coupon applied"},
  };
  for (const auto& c : cases) {
    PersonaResponse response = respond(formPost("/shop/cart.php", c.body));
    EXPECT_EQ(response.status, c.status) << c.body;
    EXPECT_NE(response.body.find(c.text), std::string::npos) << c.body;
    EXPECT_EQ(outcome_.form.kind, "coupon") << c.body;
  }
  EXPECT_EQ(outcome_.form.coupon, " SPRING24 ");

  PersonaResponse added = respond(formPost("/shop/cart.php", "product_id=2&qty=1"));
  EXPECT_EQ(added.status, 302);
  ASSERT_NE(header(added, "Location"), nullptr);
  EXPECT_EQ(*header(added, "Location"), "/shop/cart.php?added=1");
}

TEST_F(PersonaTest, CheckoutDeclines) {
  PersonaResponse invalid = respond(formPost("/shop/checkout.php", "card_number=4111"));
  EXPECT_EQ(invalid.status, 200);
  EXPECT_NE(invalid.body.find("Please fill in all payment fields."), std::string::npos);

  PersonaResponse declined = respond(formPost(
      "/shop/checkout.php",
      "card_name=A+B&card_number=4111+1111+1111+1111&expiry=12%2F26&cvv=123"));
  EXPECT_EQ(declined.status, 200);
  EXPECT_NE(declined.body.find("Payment declined."), std::string::npos);
  EXPECT_EQ(outcome_.form.kind, "checkout");
  ASSERT_EQ(outcome_.form.cards.size(), 1u);
  EXPECT_EQ(outcome_.form.cards[0].bin, "411111");
  EXPECT_TRUE(outcome_.form.cards[0].luhn_valid);
  std::string fingerprint = outcome_.form.cards[0].fingerprint;
  EXPECT_EQ(fingerprint.size(), 16u);
  // The same card gets the same fingerprint on the next request.
  respond(formPost("/shop/checkout.php",
                   "card_name=C&card_number=4111111111111111&expiry=01%2F27&cvv=999"));
  ASSERT_EQ(outcome_.form.cards.size(), 1u);
  EXPECT_EQ(outcome_.form.cards[0].fingerprint, fingerprint);
}

TEST_F(PersonaTest, ShopListsProducts) {
  PersonaResponse list = respond(request("GET", "/shop/"));
  EXPECT_EQ(list.status, 200);
  EXPECT_NE(list.body.find("href=\"/shop/product.php?id=1\""), std::string::npos);
  EXPECT_NE(list.body.find("href=\"/shop/product.php?id=5\""), std::string::npos);
  EXPECT_NE(list.body.find("Pallet label printer"), std::string::npos);
}

TEST_F(PersonaTest, ProductPageReadsIdLikeIntval) {
  struct Case {
    std::string target;
    int status;
    std::string text;
  };
  std::vector<Case> cases = {
      {"/shop/product.php?id=3", 200, "<h1>Pallet label printer</h1>"},
      {"/shop/product.php?id=03", 200, "<h1>Pallet label printer</h1>"},
      {"/shop/product.php?id=2%27+AND+1%3D1", 200, "<h1>Stretch film"},
      {"/shop/product.php?id=99", 404, "Product not found."},
      {"/shop/product.php?id=abc", 404, "Product not found."},
      {"/shop/product.php", 404, "Product not found."},
  };
  for (const auto& c : cases) {
    PersonaResponse response = respond(request("GET", c.target));
    EXPECT_EQ(response.status, c.status) << c.target;
    EXPECT_NE(response.body.find(c.text), std::string::npos) << c.target;
    EXPECT_EQ(outcome_.route_kind, "product") << c.target;
  }
}

TEST_F(PersonaTest, NavigationLinksNewPages) {
  PersonaResponse home = respond(request("GET", "/"));
  for (const char* link : {"/blog/", "/shop/", "/register.php", "/blog/post.php?id=1"}) {
    EXPECT_NE(home.body.find(fmt::format("href=\"{}\"", link)), std::string::npos) << link;
  }
  EXPECT_NE(home.body.find("<title>Home - Northwind Logistics</title>"), std::string::npos);
}

TEST_F(PersonaTest, AdminAsksForBasicAuth) {
  PersonaResponse response = respond(request("GET", "/admin/"));
  EXPECT_EQ(response.status, 401);
  ASSERT_NE(header(response, "WWW-Authenticate"), nullptr);
  EXPECT_EQ(*header(response, "WWW-Authenticate"), "Basic realm=\"Restricted Area\"");
  EXPECT_NE(response.body.find("<title>401 Unauthorized</title>"), std::string::npos);
}

TEST_F(PersonaTest, ErrorPageNamesHostAndPort) {
  PersonaResponse response = respond(request("GET", "/nope", {{"Host", "Shop.Example.ORG:8443"}}));
  EXPECT_NE(response.body.find(
                "<address>Apache/2.4.71 (Debian) Server at shop.example.org Port 8443</address>"),
            std::string::npos)
      << response.body;
  PersonaResponse no_port = respond(request("GET", "/nope", {{"Host", "shop.example.org"}}));
  EXPECT_NE(no_port.body.find("Server at shop.example.org Port 8080</address>"), std::string::npos);
}

TEST_F(PersonaTest, EscapesScriptInPath) {
  PersonaResponse response = respond(request("GET", "/<script>alert(1)</script>"));
  EXPECT_EQ(response.status, 404);
  EXPECT_EQ(response.body.find("<script>"), std::string::npos);

  PersonaResponse encoded = respond(request("GET", "/%3Cscript%3Ealert(1)%3C/script%3E/"));
  EXPECT_EQ(encoded.body.find("<script>"), std::string::npos);
}

TEST_F(PersonaTest, EscapesScriptInMethodAndAgent) {
  CapturedRequest bad_method = request("<script>", "/");
  PersonaResponse response = respond(bad_method);
  EXPECT_EQ(response.status, 501);
  EXPECT_EQ(response.body.find("<script>"), std::string::npos);
  EXPECT_NE(response.body.find("&lt;script&gt; not supported"), std::string::npos);

  PersonaResponse info = respond(request(
      "GET", "/phpinfo.php", {{"Host", "www.example.com"}, {"User-Agent", "<script>x</script>"}}));
  EXPECT_EQ(info.body.find("<script>"), std::string::npos);
  EXPECT_NE(info.body.find("&lt;script&gt;x&lt;/script&gt;"), std::string::npos);
}

TEST_F(PersonaTest, RejectsHostWithMarkup) {
  PersonaResponse response = respond(request("GET", "/", {{"Host", "<b>x</b>"}}));
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(response.body.find("<b>"), std::string::npos);
  EXPECT_TRUE(response.close_connection);
}

TEST_F(PersonaTest, PathEscapesServeNoFile) {
  struct Case {
    std::string target;
    int status;
  };
  std::vector<Case> cases = {
      {"/../../etc/passwd", 400},
      {"/%2e%2e/%2e%2e/etc/passwd", 400},
      {"/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", 404},  // encoded '/' is 404 in Apache
      {"/robots.txt%00.php", 404},
      {"/a/../../persona.yaml", 400},
      {"/persona.yaml", 404},
      {"/pages/env.txt", 404},
      {"/static/../persona.yaml", 404},
      {"/%zz", 400},
      {"/%", 400},
      {"relative", 400},
  };
  for (const auto& c : cases) {
    PersonaResponse response = respond(request("GET", c.target));
    EXPECT_EQ(response.status, c.status) << c.target;
    EXPECT_EQ(response.body.find("name: apache-debian-php"), std::string::npos) << c.target;
    EXPECT_EQ(response.body.find("root:"), std::string::npos) << c.target;
  }
}

TEST_F(PersonaTest, ArbitraryBytesNeverThrow) {
  std::string bytes;
  for (int i = 0; i < 256; ++i) {
    bytes += static_cast<char>(i);
  }
  std::vector<std::string> targets = {"/" + bytes,          bytes, "http://" + bytes,
                                      "http://[",           "*",   "",
                                      "http://a:99999999/", "/%",  "/%%"};
  for (const auto& target : targets) {
    CapturedRequest r = request("GET", target, {{"Host", bytes}, {"Cookie", bytes}});
    r.body = bytes;
    EXPECT_NO_THROW(respond(r));
  }
}

TEST_F(PersonaTest, KeepAliveHeadersFollowApache) {
  PersonaResponse plain = respond(request("GET", "/robots.txt"));
  EXPECT_EQ(header(plain, "Connection"), nullptr);
  EXPECT_FALSE(plain.close_connection);

  CapturedRequest keep =
      request("GET", "/robots.txt", {{"Host", "a"}, {"Connection", "keep-alive"}});
  keep.request_index = 3;
  PersonaResponse kept = respond(keep);
  ASSERT_NE(header(kept, "Keep-Alive"), nullptr);
  EXPECT_EQ(*header(kept, "Keep-Alive"), "timeout=5, max=97");
  EXPECT_EQ(*header(kept, "Connection"), "Keep-Alive");

  CapturedRequest old = request("GET", "/robots.txt", {});
  old.http_version = "1.0";
  PersonaResponse closed = respond(old);
  EXPECT_EQ(*header(closed, "Connection"), "close");
  EXPECT_TRUE(closed.close_connection);
}

TEST_F(PersonaTest, ParseErrorsGetApachePages) {
  CapturedRequest failed;
  failed.server = {"127.0.0.1", 8080};
  failed.parse_error = "bad method";
  failed.raw_head = "\x01\x02 / HTTP/1.1\r\n";
  RouteOutcome outcome;
  PersonaResponse response = persona_->respondToParseError(failed, outcome);
  EXPECT_EQ(response.status, 400);
  EXPECT_TRUE(response.close_connection);
  EXPECT_EQ(*header(response, "Connection"), "close");
  EXPECT_EQ(outcome.route_kind, "error");

  failed.parse_error = "header limit exceeded";
  failed.raw_head = "GET /" + std::string(20000, 'a');
  EXPECT_EQ(persona_->respondToParseError(failed, outcome).status, 414);

  failed.raw_head = "GET / HTTP/1.1\r\nX-A: " + std::string(20000, 'a');
  PersonaResponse field = persona_->respondToParseError(failed, outcome);
  EXPECT_EQ(field.status, 400);
  EXPECT_NE(field.body.find("Size of a request header field exceeds server limit."),
            std::string::npos);

  failed.parse_error = "plain HTTP request on a TLS port";
  EXPECT_NE(persona_->respondToParseError(failed, outcome).body.find("speaking plain HTTP"),
            std::string::npos);
}

// Loader validation: each broken persona folder is rejected with the key.
class PersonaLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::copy(kPersonaDir, dir_.path() / "p", fs::copy_options::recursive);
    yaml_ = readBytes(dir_.path() / "p" / "persona.yaml");
  }

  // Replaces `from` with `to` in persona.yaml and returns the load error.
  std::string loadError(const std::string& from, const std::string& to) {
    std::string changed = yaml_;
    std::size_t at = changed.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) {
      changed.replace(at, from.size(), to);
    }
    writeBytes(dir_.path() / "p" / "persona.yaml", changed);
    try {
      Persona::load(dir_.path() / "p");
    } catch (const ConfigError& error) {
      return error.what();
    }
    return "";
  }

  TempDir dir_;
  std::string yaml_;
};

TEST_F(PersonaLoaderTest, RejectsUnknownTopKey) {
  std::string error = loadError("server_name: \"\"", "server_name: \"\"\nsevrer: x");
  EXPECT_NE(error.find("sevrer"), std::string::npos) << error;
  EXPECT_NE(error.find("persona.yaml"), std::string::npos) << error;
}

TEST_F(PersonaLoaderTest, RejectsUnknownRouteKey) {
  std::string error = loadError("    kind: page\n", "    kind: page\n    colour: red\n");
  EXPECT_NE(error.find("routes[0].colour"), std::string::npos) << error;
}

TEST_F(PersonaLoaderTest, RejectsParentPath) {
  std::string error = loadError("body: pages/about.html", "body: ../../etc/passwd");
  EXPECT_NE(error.find("routes[1].body"), std::string::npos) << error;
}

TEST_F(PersonaLoaderTest, RejectsAbsolutePath) {
  std::string error = loadError("body: pages/about.html", "body: /etc/passwd");
  EXPECT_NE(error.find("relative"), std::string::npos) << error;
}

TEST_F(PersonaLoaderTest, RejectsSymlink) {
  fs::create_symlink("/etc/hostname", dir_.path() / "p" / "pages" / "link.html");
  std::string error = loadError("body: pages/about.html", "body: pages/link.html");
  EXPECT_NE(error.find("symbolic link"), std::string::npos) << error;
}

TEST_F(PersonaLoaderTest, RejectsUnknownVariable) {
  std::ofstream(dir_.path() / "p" / "pages" / "about.html", std::ios::app) << "{{secret}}";
  std::string error = loadError("name: apache-debian-php", "name: apache-debian-php");
  EXPECT_NE(error.find("{{secret}}"), std::string::npos) << error;
}

TEST_F(PersonaLoaderTest, RejectsUnknownAnswerName) {
  std::string error = loadError("      mismatch:\n", "      mismatched:\n");
  EXPECT_NE(error.find("unknown answer"), std::string::npos) << error;
  EXPECT_NE(error.find("mismatched"), std::string::npos) << error;
}

TEST_F(PersonaLoaderTest, RejectsFormRouteWithoutAnswers) {
  std::string error = loadError("    kind: contact\n", "    kind: coupon\n");
  EXPECT_NE(error.find("needs answers"), std::string::npos) << error;
}

TEST_F(PersonaLoaderTest, RejectsBadProductId) {
  std::string error = loadError("    - id: \"3\"", "    - id: \"03\"");
  EXPECT_NE(error.find("shop.products[2].id"), std::string::npos) << error;
}

TEST_F(PersonaLoaderTest, RejectsRelativeRedirect) {
  std::string error =
      loadError("redirect: /register.php?registered=1", "redirect: register.php?registered=1");
  EXPECT_NE(error.find("must be a path starting with /"), std::string::npos) << error;
}

TEST_F(PersonaLoaderTest, RejectsMissingFolder) {
  EXPECT_THROW(Persona::load(dir_.path() / "missing"), ConfigError);
}

TEST_F(PersonaLoaderTest, RejectsBadReasonPhrase) {
  std::string error =
      loadError("server_name: \"\"", "server_name: \"\"\nreason_phrases:\n  405: \"Not\\r\\nX: y\"");
  EXPECT_NE(error.find("reason_phrases.405"), std::string::npos) << error;
  error = loadError("server_name: \"\"", "server_name: \"\"\nreason_phrases:\n  abc: Nope");
  EXPECT_NE(error.find("reason_phrases.abc"), std::string::npos) << error;
}

// The nginx persona sets the two keys that the Apache persona leaves at
// their defaults: nginx's error page Content-Type and its reason phrases.
TEST(NginxPersonaTest, ErrorPagesUseNginxTypeAndPhrases) {
  std::unique_ptr<Persona> persona =
      Persona::load(kSourceDir / "personas" / "nginx-debian-php");
  TempDir state;
  MetricsRegistry metrics;
  Baits baits(BaitsConfig{state.path() / "bait-secret"}, metrics);
  CapturedRequest request;
  request.parsed = true;
  request.method = "PUT";
  request.target = "/robots.txt";
  request.http_version = "1.1";
  request.request_line = "PUT /robots.txt HTTP/1.1";
  request.headers = {{"Host", "www.example.com"}};
  request.client = {"198.51.100.7", 40000};
  request.server = {"127.0.0.1", 8080};
  RouteOutcome outcome;
  PersonaResponse response = persona->respond(request, baits, outcome);
  EXPECT_EQ(response.status, 405);
  EXPECT_EQ(response.reason, "Not Allowed");
  ASSERT_NE(findHeader(response.headers, "Content-Type"), nullptr);
  EXPECT_EQ(*findHeader(response.headers, "Content-Type"), "text/html");
  EXPECT_EQ(findHeader(response.headers, "Allow"), nullptr);
  EXPECT_EQ(findHeader(response.headers, "Keep-Alive"), nullptr);

  request.method = "GET";
  request.target = "/nope";
  request.request_line = "GET /nope HTTP/1.1";
  outcome = RouteOutcome{};
  response = persona->respond(request, baits, outcome);
  EXPECT_EQ(response.status, 404);
  EXPECT_EQ(response.reason, "Not Found");  // not overridden: the built-in phrase
  ASSERT_FALSE(response.headers.empty());
  EXPECT_EQ(response.headers.front().name, "Server");
  EXPECT_EQ(response.headers.front().value, "nginx/1.22.1");
}

}  // namespace
}  // namespace webtrap::probe
