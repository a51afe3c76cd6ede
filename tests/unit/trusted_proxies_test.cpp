// admin.trusted_proxies: parsing the list, matching peers, and reading the
// client from X-Forwarded-For only for a request from a listed proxy.
#include "collector/trusted_proxies.h"

#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/error.h"

namespace webtrap::collector {
namespace {

using boost::asio::ip::make_address;
using ::testing::HasSubstr;

constexpr const char* kKey = "admin.trusted_proxies";

std::string parseError(const std::string& entry) {
  try {
    TrustedProxies::parse({entry}, kKey);
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "";
}

TEST(TrustedProxies, MatchesAddressesAndNetworks) {
  const TrustedProxies proxies =
      TrustedProxies::parse({"10.0.0.5", "192.0.2.0/24", "fd00::/8", "::1", "198.51.100.2/31"},
                            kKey);
  EXPECT_FALSE(proxies.empty());
  EXPECT_EQ(proxies.describe(),
            "10.0.0.5/32, 192.0.2.0/24, fd00::/8, ::1/128, 198.51.100.2/31");
  struct Case {
    const char* address;
    bool listed;
  };
  for (const Case& test_case : std::vector<Case>{
           {"10.0.0.5", true},
           {"10.0.0.6", false},
           {"192.0.2.0", true},
           {"192.0.2.255", true},
           {"192.0.3.0", false},
           {"::ffff:192.0.2.7", true},
           {"::ffff:10.0.0.6", false},
           {"fd12:3456::1", true},
           {"fe00::1", false},
           {"::1", true},
           {"::2", false},
           {"198.51.100.2", true},
           {"198.51.100.3", true},
           {"198.51.100.4", false},
           {"198.51.100.1", false},
           // An IPv4 network does not match the IPv6 address with the same bytes.
           {"c000:0200::", false},
       }) {
    EXPECT_EQ(proxies.contains(make_address(test_case.address)), test_case.listed)
        << test_case.address;
  }
  EXPECT_TRUE(TrustedProxies::parse({}, kKey).empty());
}

TEST(TrustedProxies, RejectsInvalidEntries) {
  struct Case {
    std::string entry;
    std::string fix;
  };
  for (const Case& test_case : std::vector<Case>{
           {"", "not an IPv4 or IPv6 address"},
           {"10.0.0", "not an IPv4 or IPv6 address"},
           {"proxy.example", "not an IPv4 or IPv6 address"},
           {" 10.0.0.1", "not an IPv4 or IPv6 address"},
           {"10.0.0.0/33", "a number from 1 to 32"},
           {"fd00::/129", "a number from 1 to 128"},
           {"10.0.0.0/", "a number from 1 to 32"},
           {"10.0.0.0/x", "a number from 1 to 32"},
           {"10.0.0.0/-1", "a number from 1 to 32"},
           {"10.0.0.0/8/8", "a number from 1 to 32"},
           {"0.0.0.0/0", "trusts every address"},
           {"::/0", "trusts every address"},
           {"10.0.0.1/8", "write the network as 10.0.0.0/8"},
           {"192.0.2.128/24", "write the network as 192.0.2.0/24"},
           {"fd00::1/8", "write the network as fd00::/8"},
           {"::ffff:10.0.0.1", "write the IPv4 address"},
       }) {
    const std::string message = parseError(test_case.entry);
    EXPECT_THAT(message, HasSubstr(std::string(kKey) + ": invalid entry \"" + test_case.entry +
                                   "\""))
        << test_case.entry;
    EXPECT_THAT(message, HasSubstr(test_case.fix)) << test_case.entry;
  }
}

// Boost accepts a zone index, which TrustedProxies would drop, so
// fe80::1%eth0 would match fe80::1 on every interface.
TEST(TrustedProxies, RejectsZoneIndex) {
  EXPECT_THAT(parseError("fe80::1%eth0"),
              HasSubstr("admin.trusted_proxies: invalid entry \"fe80::1%eth0\": a zone index "
                        "(%eth0) is not supported; write the address without it, as fe80::1"));
  EXPECT_THAT(parseError("fe80::%2/64"),
              HasSubstr("a zone index (%2) is not supported; write the address without it, as "
                        "fe80::/64"));
}

// Boost parses addresses as C strings, so "10.0.0.1" followed by a NUL byte
// would pass as 10.0.0.1. The error shows control bytes as \xNN, because
// the message is a C string too.
TEST(TrustedProxies, RejectsControlBytes) {
  EXPECT_THAT(parseError(std::string("10.0.0.1\0", 9)),
              HasSubstr("invalid entry \"10.0.0.1\\x00\": not an IPv4 or IPv6 address"));
  EXPECT_THAT(parseError("10.0.0.1\n"),
              HasSubstr("invalid entry \"10.0.0.1\\x0a\": not an IPv4 or IPv6 address"));
}

TEST(TrustedProxies, ClientFromForwardedFor) {
  const TrustedProxies proxies = TrustedProxies::parse({"10.0.0.0/8", "fd00::/8"}, kKey);
  struct Case {
    const char* peer;
    std::vector<std::string_view> forwarded_for;
    const char* client;
  };
  for (const Case& test_case : std::vector<Case>{
           // An untrusted peer is the client, whatever it sends.
           {"192.0.2.1", {"198.51.100.7"}, "192.0.2.1"},
           {"192.0.2.1", {"10.0.0.1"}, "192.0.2.1"},
           // A trusted peer without the header is the client.
           {"10.0.0.1", {}, "10.0.0.1"},
           {"10.0.0.1", {"198.51.100.7"}, "198.51.100.7"},
           {"::ffff:10.0.0.1", {"198.51.100.7"}, "198.51.100.7"},
           {"fd00::1", {"2001:db8::7"}, "2001:db8::7"},
           // The right-most address that is no listed proxy.
           {"10.0.0.1", {"203.0.113.9, 198.51.100.7"}, "198.51.100.7"},
           {"10.0.0.1", {"198.51.100.7, 10.0.0.2, 10.9.9.9"}, "198.51.100.7"},
           {"10.0.0.1", {"198.51.100.7,10.0.0.2 ,\t fd00::2"}, "198.51.100.7"},
           // When every entry is a listed proxy, the left-most one is the client.
           {"10.0.0.1", {"10.0.0.3, 10.0.0.2"}, "10.0.0.3"},
           // Several header lines form one list.
           {"10.0.0.1", {"203.0.113.9", "198.51.100.7, 10.0.0.2"}, "198.51.100.7"},
           {"10.0.0.1", {"198.51.100.7", ""}, "198.51.100.7"},
           // Ports and brackets, as some proxies write them.
           {"10.0.0.1", {"198.51.100.7:50123"}, "198.51.100.7"},
           {"10.0.0.1", {"[2001:db8::7]:443"}, "2001:db8::7"},
           {"10.0.0.1", {"[2001:db8::7]"}, "2001:db8::7"},
           {"10.0.0.1", {"::ffff:198.51.100.7"}, "198.51.100.7"},
           // Empty elements are skipped, and with nothing left the peer is the client.
           {"10.0.0.1", {" , ,"}, "10.0.0.1"},
           {"10.0.0.1", {",198.51.100.7,"}, "198.51.100.7"},
           // An entry that must be read and is not an address gives the peer.
           {"10.0.0.1", {"unknown"}, "10.0.0.1"},
           {"10.0.0.1", {"198.51.100.7, _hidden"}, "10.0.0.1"},
           {"10.0.0.1", {"198.51.100.7, 300.1.1.1"}, "10.0.0.1"},
           {"10.0.0.1", {"198.51.100.7, 198.51.100.8:http"}, "10.0.0.1"},
           {"10.0.0.1", {"198.51.100.7, 198.51.100.8:123456"}, "10.0.0.1"},
           {"10.0.0.1", {"198.51.100.7, [2001:db8::7"}, "10.0.0.1"},
           {"10.0.0.1", {"198.51.100.7, [2001:db8::7]x"}, "10.0.0.1"},
           {"10.0.0.1", {"198.51.100.7, [198.51.100.8]"}, "10.0.0.1"},
           {"10.0.0.1", {"198.51.100.7, 198.51.100.8/32"}, "10.0.0.1"},
           {"10.0.0.1", {"for=198.51.100.7"}, "10.0.0.1"},
           {"10.0.0.1", {std::string_view("198.51.100.7\0", 13)}, "10.0.0.1"},
           // A broken entry left of the client is never read.
           {"10.0.0.1", {"garbage, 198.51.100.7"}, "198.51.100.7"},
       }) {
    std::string forwarded;
    for (std::string_view value : test_case.forwarded_for) {
      forwarded += std::string(value) + " | ";
    }
    EXPECT_EQ(proxies.clientAddress(make_address(test_case.peer), test_case.forwarded_for),
              make_address(test_case.client))
        << "peer " << test_case.peer << ", X-Forwarded-For " << forwarded;
  }
}

TEST(TrustedProxies, EmptyListIgnoresHeader) {
  const TrustedProxies none;
  const auto peer = make_address("10.0.0.1");
  EXPECT_EQ(none.clientAddress(peer, {"198.51.100.7"}), peer);
}

TEST(TrustedProxies, LongEntryIsNoAddress) {
  const TrustedProxies proxies = TrustedProxies::parse({"10.0.0.1"}, kKey);
  const auto peer = make_address("10.0.0.1");
  const std::string long_entry(100000, '1');
  EXPECT_EQ(proxies.clientAddress(peer, {long_entry}), peer);
  const std::string many_commas(60000, ',');
  EXPECT_EQ(proxies.clientAddress(peer, {many_commas}), peer);
}

// Header values built from the characters of addresses, lists and ports,
// with a fixed seed. Each one gives an address without throwing, and the
// set reaches both outcomes.
TEST(TrustedProxies, RandomHeadersNeverThrow) {
  const TrustedProxies proxies = TrustedProxies::parse({"10.0.0.0/8", "fd00::/8"}, kKey);
  const auto peer = make_address("10.0.0.1");
  const std::string alphabet = "0123456789abcdef:.,[] \t%/10.0.0.fd00::198.51.100.7";
  std::mt19937 random(20261205);
  int peer_results = 0;
  int other_results = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string value(random() % 48, ' ');
    for (char& c : value) {
      c = alphabet[random() % alphabet.size()];
    }
    boost::asio::ip::address client;
    ASSERT_NO_THROW(client = proxies.clientAddress(peer, {value})) << value;
    ++(client == peer ? peer_results : other_results);
  }
  EXPECT_GT(peer_results, 0);
  EXPECT_GT(other_results, 0);
}

}  // namespace
}  // namespace webtrap::collector
