#include "common/config_values.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>

#include <boost/asio/ip/address.hpp>
#include <fmt/format.h>

namespace webtrap::config_values {

std::string scalarText(const YAML::Node& node, const std::string& key) {
  if (!node.IsScalar()) {
    throw ConfigError(fmt::format("{}: expected a single value, found a list or map; write it as "
                                  "`{}: VALUE`",
                                  key, key));
  }
  return node.Scalar();
}

std::uint64_t parseUnsigned(const std::string& text, const std::string& key) {
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    throw ConfigError(fmt::format("{}: invalid number \"{}\"; use a whole number such as 100", key,
                                  text));
  }
  return value;
}

std::uint64_t parseBytes(const std::string& text, const std::string& key) {
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) {
    ++digits;
  }
  std::string unit = text.substr(digits);
  static const std::pair<const char*, std::uint64_t> kUnits[] = {
      {"", 1},          {"B", 1},          {"K", 1ull << 10},  {"KiB", 1ull << 10},
      {"M", 1ull << 20}, {"MiB", 1ull << 20}, {"G", 1ull << 30}, {"GiB", 1ull << 30}};
  for (const auto& [name, factor] : kUnits) {
    if (unit == name && digits > 0) {
      std::uint64_t count = parseUnsigned(text.substr(0, digits), key);
      // Without this check, 17179869184GiB would wrap around to 0 bytes.
      if (count > std::numeric_limits<std::uint64_t>::max() / factor) {
        throw ConfigError(fmt::format("{}: size \"{}\" is too large (more than 16 EiB); use a "
                                      "smaller size such as 1GiB",
                                      key, text));
      }
      return count * factor;
    }
  }
  throw ConfigError(fmt::format("{}: invalid size \"{}\"; use bytes with an optional unit, such as "
                                "1048576 or 1MiB (units: KiB, MiB, GiB)",
                                key, text));
}

std::uint64_t parseMilliseconds(const std::string& text, const std::string& key) {
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) {
    ++digits;
  }
  std::string unit = text.substr(digits);
  std::uint64_t factor = 0;
  if (unit == "ms") {
    factor = 1;
  } else if (unit == "s") {
    factor = 1000;
  } else if (unit == "m") {
    factor = 60'000;
  } else if (unit == "h") {
    factor = 3'600'000;
  } else if (unit == "d") {
    factor = 86'400'000;
  }
  if (digits == 0 || factor == 0) {
    throw ConfigError(fmt::format("{}: invalid duration \"{}\"; write a number with its unit, ms, "
                                  "s, m, h or d, such as 20s or 500ms",
                                  key, text));
  }
  std::uint64_t count = parseUnsigned(text.substr(0, digits), key);
  // Timers take signed 64-bit milliseconds, so a longer duration would wrap
  // around to a short or negative one.
  constexpr auto kMaxMilliseconds =
      static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  if (count > kMaxMilliseconds / factor) {
    throw ConfigError(fmt::format("{}: duration \"{}\" is too long (more than 292 million "
                                  "years); use a shorter duration such as 30d",
                                  key, text));
  }
  return count * factor;
}

bool parseBool(const std::string& text, const std::string& key) {
  if (text == "true" || text == "yes" || text == "on") {
    return true;
  }
  if (text == "false" || text == "no" || text == "off") {
    return false;
  }
  throw ConfigError(fmt::format("{}: invalid boolean \"{}\"; use true or false", key, text));
}


HostPort parseHostPort(const std::string& text, const std::string& key,
                       std::uint16_t example_port, const std::string& default_host) {
  std::string host = default_host;
  std::string port_text = text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      throw ConfigError(fmt::format("{}: invalid address \"{}\"; write IPv6 as [::1]:{}", key,
                                    text, example_port));
    }
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else if (auto colon = text.rfind(':'); colon != std::string::npos) {
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  } else if (default_host.empty() || text.find('.') != std::string::npos) {
    std::string address = text.find('.') != std::string::npos ? text : "127.0.0.1";
    throw ConfigError(fmt::format("{}: missing port in \"{}\"; write ADDRESS:PORT, such as {}:{}",
                                  key, text, address, example_port));
  }

  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(host, ec);
  if (ec) {
    throw ConfigError(fmt::format("{}: invalid address \"{}\"; use a numeric address such as "
                                  "127.0.0.1:{}, 0.0.0.0:{} or [::1]:{}",
                                  key, text, example_port, example_port, example_port));
  }
  std::uint64_t port = 0;
  auto [end, parse_ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (parse_ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535) {
    throw ConfigError(fmt::format("{}: invalid port in \"{}\"; use 0 to 65535", key, text));
  }
  return {address.to_string(), static_cast<std::uint16_t>(port)};
}

std::string parseHttpUrl(const std::string& text, const std::string& key,
                         const std::string& example) {
  if (text.rfind("http://", 0) != 0 && text.rfind("https://", 0) != 0) {
    throw ConfigError(
        fmt::format("{}: invalid URL \"{}\"; write it with its scheme, such as {}", key, text,
                    example));
  }
  std::string url = text;
  while (!url.empty() && url.back() == '/') {
    url.pop_back();
  }
  if (url.find('?') != std::string::npos || url.find('#') != std::string::npos) {
    throw ConfigError(fmt::format("{}: URL \"{}\" must not contain a query or fragment; give only "
                                  "scheme, host, port and an optional path prefix",
                                  key, text));
  }
  return url;
}

std::string parsePemFilePath(const std::string& path, const std::string& key) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    throw ConfigError(fmt::format("{}: file \"{}\" not found or not a regular file; give the path "
                                  "of a PEM file",
                                  key, path));
  }
  return path;
}

std::string readSecretFile(const std::string& path, const std::string& key) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    throw ConfigError(fmt::format("{}: cannot read \"{}\" ({}); check the path and its "
                                  "permissions",
                                  key, path, std::strerror(errno)));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    throw ConfigError(fmt::format("{}: \"{}\" is not a regular file (a folder, device or FIFO); "
                                  "give a file that contains only the secret",
                                  key, path));
  }
  if (static_cast<std::uint64_t>(info.st_size) > kMaxSecretFileBytes) {
    throw ConfigError(fmt::format("{}: \"{}\" has {} bytes, more than the {} a secret file may "
                                  "have; give a file that contains only the secret",
                                  key, path, info.st_size, kMaxSecretFileBytes));
  }
  std::string content;
  char buffer[4096];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      throw ConfigError(fmt::format("{}: reading \"{}\" failed ({}); check the file", key, path,
                                    std::strerror(errno)));
    }
    if (n == 0) {
      break;
    }
    content.append(buffer, static_cast<std::size_t>(n));
    // The file may grow after fstat; never hold more than the limit.
    if (content.size() > kMaxSecretFileBytes) {
      throw ConfigError(fmt::format("{}: \"{}\" has more than {} bytes; give a file that "
                                    "contains only the secret",
                                    key, path, kMaxSecretFileBytes));
    }
  }
  return content;
}

}  // namespace webtrap::config_values
