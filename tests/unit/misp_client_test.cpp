// Drives MispClient against tests/tools/misp_double.py, the MISP 2.5.1 test
// double, started on loopback for each test. Two responses the double
// does not send (an HTML login redirect to a client that sends the right
// headers, and 429 with Retry-After) come from a one-shot socket server.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <simdjson.h>
#include <yaml-cpp/yaml.h>

#include "collector/misp_client.h"
#include "collector/stored_event.h"
#include "common/error.h"
#include "double_process.h"

namespace webtrap::collector {
namespace {

using testing::DoubleProcess;
using Status = MispItemResult::Status;

constexpr const char* kApiKey = "webtrapclienttestkey0000000000000000000000";
constexpr const char* kEventUuid = "7afb04a6-b593-512c-881c-a4099332f82d";

bool mispDataPresent() {
  return std::filesystem::exists(testing::sharedDir() / "misp" / "describeTypes.json");
}

class MispDouble {
 public:
  MispDouble()
      : process_("misp_double.py",
                 {"--api-key", kApiKey, "--quiet", "--data-dir",
                  (testing::sharedDir() / "misp").string()}) {}

  MispClientOptions options(std::string key = kApiKey) const {
    MispClientOptions options;
    options.url = process_.url();
    options.api_key = std::move(key);
    options.timeout = std::chrono::milliseconds(10000);
    return options;
  }

  // Sets fault keys by POST /_double/faults.
  void setFaults(std::string_view json) {
    MispClient control(options());
    auto response = control.request("POST", "/_double/faults", json);
    ASSERT_EQ(response.status, 200) << response.body;
  }

  // A number from GET /_double/stats?summary, by JSON pointer.
  std::int64_t stat(std::string_view pointer) {
    MispClient control(options());
    auto response = control.request("GET", "/_double/stats?summary", "");
    simdjson::dom::parser parser;
    std::int64_t value = -1;
    auto error = parser.parse(response.body).at_pointer(pointer).get_int64().get(value);
    return error ? -1 : value;
  }

  const DoubleProcess& process() const { return process_; }

 private:
  DoubleProcess process_;
};

std::string eventJson(std::string_view uuid) {
  return fmt::format(
      R"({{"Event":{{"uuid":"{}","info":"webtrap: client test","date":"2026-12-04",)"
      R"("distribution":"0","threat_level_id":"4","analysis":"0","published":false,)"
      R"("Tag":[{{"name":"tlp:clear"}},{{"name":"webtrap:honeypot"}}]}}}})",
      uuid);
}

std::string ipAttribute(std::string_view uuid, std::string_view value) {
  std::string uuid_member = uuid.empty() ? "" : fmt::format(R"("uuid":"{}",)", uuid);
  return fmt::format(
      R"({{{}"type":"ip-src","category":"Network activity","value":"{}","to_ids":false}})",
      uuid_member, value);
}

std::string httpRequestObject(std::string_view uuid, bool with_template_version = true) {
  std::string version = with_template_version ? R"("template_version":"4",)" : "";
  return fmt::format(
      R"({{"Object":{{"uuid":"{}","name":"http-request","meta-category":"network",)"
      R"("description":"A single HTTP request header",)"
      R"("template_uuid":"b4a8d163-8110-4239-bfcf-e08f3a9fdf7b",{}"distribution":"5",)"
      R"("Attribute":[)"
      R"({{"object_relation":"method","type":"http-method","value":"POST","to_ids":false}},)"
      R"({{"object_relation":"uri","type":"uri","value":"/wp-login.php","to_ids":false}},)"
      R"({{"object_relation":"host","type":"hostname","value":"honeypot.example","to_ids":false}},)"
      R"({{"object_relation":"ip-src","type":"ip-src","value":"203.0.113.10","to_ids":false}}]}}}})",
      uuid, version);
}

// Creates the test event and returns its id.
std::string createEvent(MispClient& client) {
  auto result = client.addEvent(eventJson(kEventUuid));
  EXPECT_EQ(result.status, MispAddEventResult::Status::kCreated);
  return result.id;
}

// Serves one connection on 127.0.0.1 with `response` (a whole HTTP/1.1
// response), for responses the MISP double does not send.
class OneShotServer {
 public:
  explicit OneShotServer(std::string response) : response_(std::move(response)) {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    if (bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        listen(listener_, 1) != 0) {
      throw std::runtime_error("one-shot server: bind or listen failed");
    }
    socklen_t length = sizeof address;
    getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }

  ~OneShotServer() {
    thread_.join();
    close(listener_);
  }

  std::string url() const { return fmt::format("http://127.0.0.1:{}", port_); }

  // The request head the client sent (request line and headers).
  std::string requestHead() {
    thread_.join();
    thread_ = std::thread([] {});
    return request_;
  }

 private:
  void serve() {
    int connection = accept(listener_, nullptr, nullptr);
    if (connection < 0) {
      return;
    }
    char buffer[8192];
    while (request_.find("\r\n\r\n") == std::string::npos) {
      ssize_t received = recv(connection, buffer, sizeof buffer, 0);
      if (received <= 0) {
        break;
      }
      request_.append(buffer, static_cast<std::size_t>(received));
    }
    request_ = request_.substr(0, request_.find("\r\n\r\n") + 2);
    send(connection, response_.data(), response_.size(), MSG_NOSIGNAL);
    close(connection);
  }

  std::string response_;
  std::string request_;
  int listener_ = -1;
  int port_ = 0;
  std::thread thread_;
};

class MispClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!mispDataPresent()) {
      GTEST_SKIP() << "MISP data folder not found under " << testing::sharedDir();
    }
  }
};

TEST_F(MispClientTest, AddEventCreatedThenExists) {
  MispDouble misp;
  MispClient client(misp.options());

  auto created = client.addEvent(eventJson(kEventUuid));
  EXPECT_EQ(created.status, MispAddEventResult::Status::kCreated);
  EXPECT_FALSE(created.id.empty());
  EXPECT_EQ(created.uuid, kEventUuid);

  auto again = client.addEvent(eventJson(kEventUuid));
  EXPECT_EQ(again.status, MispAddEventResult::Status::kExists);
  EXPECT_EQ(again.id, created.id);
  EXPECT_EQ(again.uuid, kEventUuid);

  EXPECT_EQ(misp.stat("/totals/events"), 1);
  EXPECT_EQ(misp.stat("/requests_without_json_accept"), 0);
  EXPECT_EQ(misp.stat("/bodies_without_json_content_type"), 0);
  EXPECT_EQ(misp.stat("/schema_violations"), 0);
}

TEST_F(MispClientTest, AddEventWithoutInfoThrows) {
  MispDouble misp;
  MispClient client(misp.options());
  std::string event = R"({"Event":{"uuid":"2b1e33c4-4c4f-5d0a-9a56-3f5f3f7f0a11"}})";
  try {
    client.addEvent(event);
    FAIL() << "expected MispRequestError";
  } catch (const MispRequestError& error) {
    EXPECT_EQ(error.status, 403);
    EXPECT_NE(std::string(error.what()).find("info"), std::string::npos) << error.what();
  }
}

TEST_F(MispClientTest, AddAttributesSavedDuplicateRejected) {
  MispDouble misp;
  MispClient client(misp.options());
  createEvent(client);

  std::vector<std::string> first = {
      ipAttribute("0068826a-6097-560f-ad38-7d9148b1e5bc", "203.0.113.10"),
      ipAttribute("6c48c478-8ec3-56a6-b259-c9d4d3b0dcb2", "203.0.113.11"),
      ipAttribute("", "not-an-ip"),
      R"({"type":"not-a-type","value":"x"})",
      ipAttribute("", "203.0.113.12"),
  };
  auto results = client.addAttributes(kEventUuid, first);
  ASSERT_EQ(results.size(), 5u);
  EXPECT_EQ(results[0].status, Status::kSaved);
  EXPECT_EQ(results[0].uuid, "0068826a-6097-560f-ad38-7d9148b1e5bc");
  EXPECT_FALSE(results[0].id.empty());
  EXPECT_EQ(results[1].status, Status::kSaved);
  EXPECT_NE(results[1].id, results[0].id);
  EXPECT_EQ(results[2].status, Status::kRejected);
  EXPECT_NE(results[2].reason.find("IP address has an invalid format"), std::string::npos)
      << results[2].reason;
  EXPECT_EQ(results[3].status, Status::kRejected);
  EXPECT_NE(results[3].reason.find("Invalid type"), std::string::npos) << results[3].reason;
  // Sent without a uuid: MISP generates one, and the client reports it.
  EXPECT_EQ(results[4].status, Status::kSaved);
  EXPECT_EQ(results[4].uuid.size(), 36u);
  EXPECT_FALSE(results[4].id.empty());

  // The same value under a new uuid, and the same uuid again.
  std::vector<std::string> second = {
      ipAttribute("899928e9-0018-5270-90ff-e62a09e8728b", "203.0.113.10"),
      ipAttribute("6c48c478-8ec3-56a6-b259-c9d4d3b0dcb2", "203.0.113.11"),
      ipAttribute("08f54fe4-c5bb-5e7c-aedc-68a3e2f04505", "203.0.113.13"),
  };
  results = client.addAttributes(kEventUuid, second);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[0].status, Status::kDuplicate);
  EXPECT_EQ(results[1].status, Status::kDuplicate);
  EXPECT_EQ(results[2].status, Status::kSaved);
  EXPECT_EQ(results[2].uuid, "08f54fe4-c5bb-5e7c-aedc-68a3e2f04505");

  // A one-item list that fails gets 403 with saved false, still a duplicate.
  std::vector<std::string> single = {ipAttribute("", "203.0.113.13")};
  results = client.addAttributes(kEventUuid, single);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].status, Status::kDuplicate);

  EXPECT_EQ(misp.stat("/totals/attributes"), 4);
  EXPECT_EQ(misp.stat("/schema_violations"), 0);
}

TEST_F(MispClientTest, AddAttributesAllDuplicatesNoError) {
  MispDouble misp;
  MispClient client(misp.options());
  std::string event_id = createEvent(client);
  std::vector<std::string> attributes;
  for (int i = 1; i <= 50; ++i) {
    attributes.push_back(ipAttribute("", fmt::format("198.18.0.{}", i)));
  }
  auto results = client.addAttributes(event_id, attributes);
  ASSERT_EQ(results.size(), 50u);
  for (const auto& result : results) {
    EXPECT_EQ(result.status, Status::kSaved);
  }
  // Every item fails now, so the list gets 403 with per-item errors.
  results = client.addAttributes(event_id, attributes);
  ASSERT_EQ(results.size(), 50u);
  for (const auto& result : results) {
    EXPECT_EQ(result.status, Status::kDuplicate) << result.reason;
  }
  EXPECT_EQ(misp.stat("/totals/attributes"), 50);
}

TEST_F(MispClientTest, AddAttributesUnknownEventThrows) {
  MispDouble misp;
  MispClient client(misp.options());
  std::vector<std::string> attributes = {ipAttribute("", "203.0.113.99")};
  try {
    client.addAttributes("cc4460c7-259c-5c20-bf4f-2f3e6294f88a", attributes);
    FAIL() << "expected MispRequestError";
  } catch (const MispRequestError& error) {
    EXPECT_EQ(error.status, 404);
    EXPECT_NE(std::string(error.what()).find("Invalid event"), std::string::npos) << error.what();
  }
}

TEST_F(MispClientTest, InvalidEventIdRejectedBeforeSending) {
  MispDouble misp;
  MispClient client(misp.options());
  std::vector<std::string> attributes = {ipAttribute("", "203.0.113.99")};
  EXPECT_THROW(client.addAttributes("12/../../users", attributes), std::invalid_argument);
  EXPECT_THROW(client.publishEvent(""), std::invalid_argument);
}

TEST_F(MispClientTest, AddObjectSavedDuplicateRejected) {
  MispDouble misp;
  MispClient client(misp.options());
  std::string event_id = createEvent(client);
  constexpr const char* kObjectUuid = "f7290f17-3395-5fd7-b77c-4ddbd47e7997";

  auto saved = client.addObject(event_id, httpRequestObject(kObjectUuid));
  EXPECT_EQ(saved.status, Status::kSaved) << saved.reason;
  EXPECT_EQ(saved.uuid, kObjectUuid);
  EXPECT_FALSE(saved.id.empty());

  auto duplicate = client.addObject(kEventUuid, httpRequestObject(kObjectUuid));
  EXPECT_EQ(duplicate.status, Status::kDuplicate) << duplicate.reason;
  EXPECT_EQ(duplicate.uuid, kObjectUuid);

  auto rejected = client.addObject(
      event_id, httpRequestObject("f713abf7-6070-52e9-a392-47749f471eff", false));
  EXPECT_EQ(rejected.status, Status::kRejected);
  EXPECT_NE(rejected.reason.find("template_version"), std::string::npos) << rejected.reason;

  EXPECT_EQ(misp.stat("/totals/objects"), 1);
}

TEST_F(MispClientTest, SightingSavedOrFailedOnMessage) {
  MispDouble misp;
  MispClient client(misp.options());
  createEvent(client);
  constexpr const char* kAttributeUuid = "0068826a-6097-560f-ad38-7d9148b1e5bc";
  std::vector<std::string> attributes = {ipAttribute(kAttributeUuid, "203.0.113.10")};
  ASSERT_EQ(client.addAttributes(kEventUuid, attributes)[0].status, Status::kSaved);

  auto saved = client.addSighting(kAttributeUuid, "webtrap-sensor-1", 1796383962);
  EXPECT_TRUE(saved.saved) << saved.message;
  EXPECT_FALSE(saved.id.empty());

  // An unknown uuid gets HTTP 200 with only a message.
  auto failed = client.addSighting("5321bea3-07ab-5353-9c1a-559a803d7fd1", "webtrap-sensor-1",
                                   1796383962);
  EXPECT_FALSE(failed.saved);
  EXPECT_NE(failed.message.find("No valid attributes"), std::string::npos) << failed.message;

  EXPECT_EQ(misp.stat("/totals/sightings"), 1);
}

TEST_F(MispClientTest, AttachTagSavedOrFailed) {
  MispDouble misp;
  MispClient client(misp.options());
  createEvent(client);

  auto saved = client.attachTag(kEventUuid, "tlp:amber");
  EXPECT_TRUE(saved.saved) << saved.message;

  auto unknown = client.attachTag("5c16f0ee-3a19-5d92-8830-33c4aba5852f", "tlp:amber");
  EXPECT_FALSE(unknown.saved);
  EXPECT_NE(unknown.message.find("Invalid Target"), std::string::npos) << unknown.message;

  // HTTP 200 with saved false is a failure.
  misp.setFaults(R"({"soft_fail_next": 1})");
  auto soft = client.attachTag(kEventUuid, "webtrap:scanner");
  EXPECT_FALSE(soft.saved);
  EXPECT_FALSE(soft.message.empty());
  EXPECT_EQ(misp.stat("/soft_failures"), 1);

  auto info = client.viewEvent(kEventUuid);
  ASSERT_TRUE(info.has_value());
  EXPECT_NE(std::find(info->tags.begin(), info->tags.end(), "tlp:amber"), info->tags.end());
  EXPECT_EQ(std::find(info->tags.begin(), info->tags.end(), "webtrap:scanner"), info->tags.end());
}

TEST_F(MispClientTest, PublishViewAndSearch) {
  MispDouble misp;
  MispClient client(misp.options());
  std::string event_id = createEvent(client);

  auto published = client.publishEvent(event_id);
  EXPECT_TRUE(published.saved) << published.message;
  EXPECT_EQ(published.id, event_id);

  auto viewed = client.viewEvent(kEventUuid);
  ASSERT_TRUE(viewed.has_value());
  EXPECT_EQ(viewed->id, event_id);
  EXPECT_EQ(viewed->uuid, kEventUuid);
  EXPECT_TRUE(viewed->published);
  EXPECT_GT(viewed->publish_timestamp, 0);

  // Adding an attribute unpublishes the event, as MISP 2.5.1 does.
  std::vector<std::string> attributes = {ipAttribute("", "203.0.113.20")};
  ASSERT_EQ(client.addAttributes(event_id, attributes)[0].status, Status::kSaved);
  auto found = client.searchEventMetadata(kEventUuid);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->id, event_id);
  EXPECT_FALSE(found->published);
  EXPECT_EQ(found->attribute_count, 1);
  EXPECT_NE(std::find(found->tags.begin(), found->tags.end(), "webtrap:honeypot"),
            found->tags.end());

  EXPECT_FALSE(client.viewEvent("cc4460c7-259c-5c20-bf4f-2f3e6294f88a").has_value());
  EXPECT_FALSE(client.searchEventMetadata("cc4460c7-259c-5c20-bf4f-2f3e6294f88a").has_value());

  EXPECT_EQ(misp.stat("/requests_without_json_accept"), 0);
  EXPECT_EQ(misp.stat("/bodies_without_json_content_type"), 0);
  EXPECT_EQ(misp.stat("/login_redirects"), 0);
}

TEST_F(MispClientTest, WrongKeyThrowsAuthError) {
  MispDouble misp;
  MispClient client(misp.options(std::string(40, 'x')));
  try {
    client.viewEvent(kEventUuid);
    FAIL() << "expected MispAuthError";
  } catch (const MispAuthError& error) {
    std::string message = error.what();
    EXPECT_NE(message.find("outputs.misp.api_key"), std::string::npos) << message;
    EXPECT_NE(message.find("Authentication failed"), std::string::npos) << message;
  }
  EXPECT_THROW(client.addEvent(eventJson(kEventUuid)), MispAuthError);
  std::vector<std::string> attributes = {ipAttribute("", "203.0.113.99")};
  EXPECT_THROW(client.addAttributes(kEventUuid, attributes), MispAuthError);
  EXPECT_THROW(client.addSighting(kEventUuid, "s", 1), MispAuthError);
  EXPECT_THROW(client.attachTag(kEventUuid, "tlp:clear"), MispAuthError);
}

TEST_F(MispClientTest, ServerErrorsAreTransient) {
  MispDouble misp;
  MispClient client(misp.options());

  misp.setFaults(R"({"fail_next": 1, "fail_status": 500})");
  try {
    client.addEvent(eventJson(kEventUuid));
    FAIL() << "expected TransientError";
  } catch (const TransientError& error) {
    EXPECT_NE(std::string(error.what()).find("HTTP 500"), std::string::npos) << error.what();
  }
  // Proxies send 502-504 responses as HTML, which is still transient.
  misp.setFaults(R"({"fail_next": 1, "fail_status": 502})");
  EXPECT_THROW(client.addEvent(eventJson(kEventUuid)), TransientError);

  misp.setFaults(R"({"down_seconds": 30, "outage_mode": "503"})");
  EXPECT_THROW(client.viewEvent(kEventUuid), TransientError);
  misp.setFaults(R"({"down_seconds": 30, "outage_mode": "close"})");
  EXPECT_THROW(client.viewEvent(kEventUuid), TransientError);
  misp.setFaults(R"({"down_seconds": 0})");

  EXPECT_EQ(misp.stat("/totals/events"), 0);
  createEvent(client);
}

TEST_F(MispClientTest, LostResponseConvergesOnRetry) {
  MispDouble misp;
  MispClient client(misp.options());
  // The event is stored, but the response is a 500, as when a response is lost.
  misp.setFaults(R"({"fail_after_write_rate": 1.0})");
  EXPECT_THROW(client.addEvent(eventJson(kEventUuid)), TransientError);
  misp.setFaults(R"({"fail_after_write_rate": 0})");

  auto retried = client.addEvent(eventJson(kEventUuid));
  EXPECT_EQ(retried.status, MispAddEventResult::Status::kExists);
  EXPECT_FALSE(retried.id.empty());
  EXPECT_EQ(misp.stat("/totals/events"), 1);
}

TEST_F(MispClientTest, SlowServerTimesOut) {
  MispDouble misp;
  auto options = misp.options();
  options.timeout = std::chrono::milliseconds(300);
  MispClient client(options);
  misp.setFaults(R"({"slow_ms": 2000})");
  try {
    client.viewEvent(kEventUuid);
    FAIL() << "expected TransientError";
  } catch (const TransientError& error) {
    EXPECT_NE(std::string(error.what()).find("timed out"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("outputs.misp.timeout"), std::string::npos);
  }
  misp.setFaults(R"({"slow_ms": 0})");
}

TEST_F(MispClientTest, ThroughHttpProxy) {
  MispDouble misp;
  // es_double.py also acts as a plain HTTP proxy to loopback servers.
  DoubleProcess proxy("es_double.py", {});
  auto options = misp.options();
  options.proxy = proxy.url();
  MispClient client(options);

  auto created = client.addEvent(eventJson(kEventUuid));
  EXPECT_EQ(created.status, MispAddEventResult::Status::kCreated);
  EXPECT_EQ(misp.stat("/totals/events"), 1);

  MispClientOptions proxy_options;
  proxy_options.url = proxy.url();
  proxy_options.api_key = kApiKey;
  MispClient proxy_control(proxy_options);
  auto stats = proxy_control.request("GET", "/_double/stats", "");
  simdjson::dom::parser parser;
  std::int64_t proxied = -1;
  ASSERT_EQ(parser.parse(stats.body).at_pointer("/proxied_requests").get_int64().get(proxied),
            simdjson::SUCCESS)
      << stats.body;
  EXPECT_EQ(proxied, 1);
}

TEST(MispClient, TlsCertificateCheck) {
  testing::TlsCertificates certificates;
  ASSERT_TRUE(certificates.ok()) << "openssl could not make the test certificates";
  // Any HTTPS server shows the certificate check, so es_double.py serves here.
  DoubleProcess server("es_double.py", {"--tls-cert", certificates.path("server.pem").string(),
                                        "--tls-key", certificates.path("server.key").string()});
  MispClientOptions options;
  options.url = server.url("https");
  options.api_key = kApiKey;
  options.ca_file = certificates.path("ca.pem").string();
  MispClient trusted(options);
  EXPECT_EQ(trusted.request("GET", "/_double/stats", "").status, 200);

  options.ca_file.clear();
  MispClient untrusted(options);
  try {
    untrusted.request("GET", "/_double/stats", "");
    FAIL() << "the server certificate was accepted without its CA";
  } catch (const MispConfigError& error) {
    EXPECT_NE(std::string(error.what()).find("outputs.misp.ca_file"), std::string::npos)
        << error.what();
  }
}

TEST(MispClient, ConnectionRefusedIsTransient) {
  // Bind a port and close it, so nothing listens there.
  int probe = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(probe, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  socklen_t length = sizeof address;
  getsockname(probe, reinterpret_cast<sockaddr*>(&address), &length);
  close(probe);

  MispClientOptions options;
  options.url = fmt::format("http://127.0.0.1:{}", ntohs(address.sin_port));
  options.api_key = kApiKey;
  MispClient client(options);
  EXPECT_THROW(client.viewEvent(kEventUuid), TransientError);
}

TEST(MispClient, LoginRedirectIsConfigError) {
  // MISP 2.5.1's response to a request it does not take as an API request.
  OneShotServer server(
      "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:8080/users/login\r\n"
      "Content-Type: text/html; charset=UTF-8\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  MispClientOptions options;
  options.url = server.url();
  options.api_key = kApiKey;
  MispClient client(options);
  try {
    client.viewEvent(kEventUuid);
    FAIL() << "expected MispConfigError";
  } catch (const MispAuthError& error) {
    FAIL() << "expected MispConfigError, not MispAuthError: " << error.what();
  } catch (const MispConfigError& error) {
    std::string message = error.what();
    EXPECT_NE(message.find("302"), std::string::npos) << message;
    EXPECT_NE(message.find("/users/login"), std::string::npos) << message;
    EXPECT_NE(message.find("Accept: application/json"), std::string::npos) << message;
    EXPECT_NE(message.find("outputs.misp.api_key"), std::string::npos) << message;
  }
  std::string head = server.requestHead();
  EXPECT_NE(head.find(fmt::format("Authorization: {}\r\n", kApiKey)), std::string::npos) << head;
  EXPECT_NE(head.find("Accept: application/json\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("Content-Type: application/json\r\n"), std::string::npos) << head;
}

TEST(MispClient, TooManyRequestsKeepsRetryAfter) {
  OneShotServer server(
      "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Type: application/json\r\n"
      "Content-Length: 2\r\nConnection: close\r\n\r\n{}");
  MispClientOptions options;
  options.url = server.url();
  options.api_key = kApiKey;
  MispClient client(options);
  try {
    client.attachTag(kEventUuid, "tlp:clear");
    FAIL() << "expected TransientError";
  } catch (const TransientError& error) {
    EXPECT_EQ(error.retry_after_ms, 7000);
  }
}

std::string jsonResponse(int status, std::string_view reason, std::string_view body) {
  return fmt::format("HTTP/1.1 {} {}\r\nContent-Type: application/json; charset=UTF-8\r\n"
                     "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
                     status, reason, body.size(), body);
}

MispClientOptions optionsFor(const OneShotServer& server) {
  MispClientOptions options;
  options.url = server.url();
  options.api_key = kApiKey;
  return options;
}

TEST(MispClient, ListRejectedWithoutItemErrors) {
  // A 403 whose errors are keyed by field, not by list position.
  OneShotServer server(jsonResponse(
      403, "Forbidden",
      R"({"saved":false,"message":"Could not add Attribute","errors":{"value":["bad value"]}})"));
  MispClient client(optionsFor(server));
  std::vector<std::string> attributes = {ipAttribute("", "203.0.113.1"),
                                         ipAttribute("", "203.0.113.2")};
  auto results = client.addAttributes("12", attributes);
  ASSERT_EQ(results.size(), 2u);
  for (const auto& result : results) {
    EXPECT_EQ(result.status, Status::kRejected);
    EXPECT_NE(result.reason.find("bad value"), std::string::npos) << result.reason;
  }
}

TEST(MispClient, MissingItemResultIsTransient) {
  // HTTP 200 with one saved attribute and no errors for a list of two.
  OneShotServer server(
      jsonResponse(200, "OK", R"({"Attribute":{"id":"15","uuid":"u-15"},"AttributeTag":[]})"));
  MispClient client(optionsFor(server));
  std::vector<std::string> attributes = {ipAttribute("", "203.0.113.1"),
                                         ipAttribute("", "203.0.113.2")};
  EXPECT_THROW(client.addAttributes("12", attributes), TransientError);
}

TEST(MispClient, SavedUuidMismatchIsTransient) {
  // The saved attribute is not the one sent, so the sent one has no result.
  OneShotServer server(jsonResponse(
      200, "OK",
      R"({"Attribute":{"id":"15","uuid":"6c48c478-8ec3-56a6-b259-c9d4d3b0dcb2"},"AttributeTag":[]})"));
  MispClient client(optionsFor(server));
  std::vector<std::string> attributes = {
      ipAttribute("0068826a-6097-560f-ad38-7d9148b1e5bc", "203.0.113.1")};
  EXPECT_THROW(client.addAttributes("12", attributes), TransientError);
}

TEST(MispClient, BodyThatIsNotJsonIsConfigError) {
  // A proxy or another application at the URL answers 200 with plain text.
  // Rejecting the event for good would drop a whole day of a group.
  OneShotServer server(
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
      "Connection: close\r\n\r\nOK");
  MispClient client(optionsFor(server));
  try {
    client.addEvent(eventJson(kEventUuid));
    FAIL() << "expected MispConfigError";
  } catch (const MispAuthError& error) {
    FAIL() << "expected MispConfigError, not MispAuthError: " << error.what();
  } catch (const MispConfigError& error) {
    std::string message = error.what();
    EXPECT_NE(message.find("not JSON"), std::string::npos) << message;
    EXPECT_NE(message.find("outputs.misp.url"), std::string::npos) << message;
  }
}

MispClientOptions parseClientKeys(const std::string& yaml) {
  MispClientOptions options;
  YAML::Node node = YAML::Load(yaml);
  for (const auto& entry : node) {
    std::string key = entry.first.as<std::string>();
    if (!parseMispClientKey(options, key, entry.second, "outputs.misp." + key)) {
      throw std::invalid_argument("not a client key: " + key);
    }
  }
  return options;
}

TEST(MispClient, ParsesConnectionKeys) {
  testing::TlsCertificates certificates;
  ASSERT_TRUE(certificates.ok()) << "openssl could not make the test certificates";
  auto options = parseClientKeys(fmt::format(
      "{{url: 'https://misp.example/', api_key: {}, ca_file: '{}', tls_verify: false, "
      "proxy: 'http://127.0.0.1:3128', timeout: 45s, connect_timeout: 500ms}}",
      kApiKey, certificates.path("ca.pem").string()));
  EXPECT_EQ(options.url, "https://misp.example");
  EXPECT_EQ(options.api_key, kApiKey);
  EXPECT_EQ(options.ca_file, certificates.path("ca.pem").string());
  EXPECT_FALSE(options.tls_verify);
  EXPECT_EQ(options.proxy, "http://127.0.0.1:3128");
  EXPECT_EQ(options.timeout, std::chrono::milliseconds(45000));
  EXPECT_EQ(options.connect_timeout, std::chrono::milliseconds(500));

  MispClientOptions unchanged;
  EXPECT_FALSE(parseMispClientKey(unchanged, "event_per", YAML::Load("group"),
                                  "outputs.misp.event_per"));
}

TEST(MispClient, RejectsInvalidConnectionKeys) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{url: misp.example}", "outputs.misp.url"},
      {"{url: 'https://misp.example/?a=1'}", "outputs.misp.url"},
      {"{api_key: ''}", "outputs.misp.api_key"},
      {"{api_key: 'Bearer abc'}", "Bearer"},
      {"{ca_file: /nonexistent/ca.pem}", "outputs.misp.ca_file"},
      {"{tls_verify: maybe}", "outputs.misp.tls_verify"},
      {"{timeout: 0s}", "outputs.misp.timeout"},
      {"{connect_timeout: 10}", "outputs.misp.connect_timeout"},
  };
  for (const auto& [yaml, expected] : cases) {
    try {
      parseClientKeys(yaml);
      ADD_FAILURE() << "accepted " << yaml;
    } catch (const ConfigError& error) {
      EXPECT_NE(std::string(error.what()).find(expected), std::string::npos)
          << yaml << ": " << error.what();
    }
  }
}

TEST(MispClient, MissingKeyOrUrlRejected) {
  MispClientOptions options;
  options.url = "http://127.0.0.1:1";
  EXPECT_THROW(MispClient client(options), std::invalid_argument);
  options.url.clear();
  options.api_key = kApiKey;
  EXPECT_THROW(MispClient client(options), std::invalid_argument);
}

}  // namespace
}  // namespace webtrap::collector
