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

TEST_F(PersonaLoaderTest, RejectsMissingFolder) {
  EXPECT_THROW(Persona::load(dir_.path() / "missing"), ConfigError);
}

}  // namespace
}  // namespace webtrap::probe
