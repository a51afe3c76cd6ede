#include "common/file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace webtrap {

FileHandle::~FileHandle() {
  if (fd >= 0) {
    ::close(fd);
  }
}

int writeAll(int fd, std::string_view bytes) {
  std::size_t written = 0;
  while (written < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return errno;
    }
    written += static_cast<std::size_t>(n);
  }
  return 0;
}

void syncFolder(const std::filesystem::path& folder) {
  int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

void createPrivateFile(const std::filesystem::path& path) {
  // No O_EXCL: with it, a symbolic link whose target does not exist yet
  // fails, and SQLite then creates the target with the umask's mode. An
  // existing file keeps its mode. O_NONBLOCK keeps a FIFO from blocking.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0600);
  if (fd >= 0) {
    ::close(fd);
  }
}

}  // namespace webtrap
