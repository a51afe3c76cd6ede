// Files and folders under the temporary directory that a test owns and
// removes when the owning object goes out of scope, so a failed ASSERT or an
// exception does not leave them behind.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace webtrap::test_support {

// A new file <temp_directory_path>/<prefix>-XXXXXX<suffix> containing `text`,
// created with mkstemps so that parallel test processes never share a name.
class TempFile {
 public:
  explicit TempFile(std::string_view prefix, std::string_view text = {},
                    std::string_view suffix = {}) {
    std::string pattern = (std::filesystem::temp_directory_path() /
                           (std::string(prefix) + "-XXXXXX" + std::string(suffix)))
                              .string();
    int fd = ::mkstemps(pattern.data(), static_cast<int>(suffix.size()));
    if (fd < 0) {
      throw std::runtime_error("mkstemps failed for " + pattern + ": " + std::strerror(errno) +
                               "; check that the temporary directory is writable");
    }
    path_ = pattern;
    std::string_view rest = text;
    while (!rest.empty()) {
      ssize_t written = ::write(fd, rest.data(), rest.size());
      if (written < 0 && errno == EINTR) {
        continue;
      }
      if (written <= 0) {
        int error = errno;
        ::close(fd);
        removeQuietly();
        throw std::runtime_error("write failed for " + pattern + ": " + std::strerror(error));
      }
      rest.remove_prefix(static_cast<std::size_t>(written));
    }
    ::close(fd);
  }
  ~TempFile() { removeQuietly(); }

  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string string() const { return path_.string(); }
  // Lets a temporary TempFile stand in for a path argument, because the
  // object and its file live until the end of the full expression.
  operator const std::filesystem::path&() const { return path_; }

 private:
  void removeQuietly() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }

  std::filesystem::path path_;
};

// A new empty folder <temp_directory_path>/<prefix>-XXXXXX, removed with
// everything in it.
class TempDir {
 public:
  explicit TempDir(std::string_view prefix) {
    std::string pattern =
        (std::filesystem::temp_directory_path() / (std::string(prefix) + "-XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error("mkdtemp failed for " + pattern + ": " + std::strerror(errno) +
                               "; check that the temporary directory is writable");
    }
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }

  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::filesystem::path& name) const {
    return path_ / name;
  }

 private:
  std::filesystem::path path_;
};

}  // namespace webtrap::test_support
