// Small POSIX file helpers shared by the parts that write files.
#pragma once

#include <filesystem>
#include <string_view>

namespace webtrap {

// Owns a file descriptor and closes it when destroyed (-1 means no descriptor).
struct FileHandle {
  int fd = -1;
  explicit FileHandle(int descriptor) : fd(descriptor) {}
  ~FileHandle();
  FileHandle(const FileHandle&) = delete;
  FileHandle& operator=(const FileHandle&) = delete;
};

// Writes all of `bytes` to `fd`, retrying short writes and EINTR. Returns 0,
// or the errno of the write that failed.
int writeAll(int fd, std::string_view bytes);

// Fsyncs `folder`, so that files created or renamed in it stay after a
// crash. Errors are ignored, because some file systems reject a folder fsync.
void syncFolder(const std::filesystem::path& folder);

// Creates `path` as an empty file that only its owner may read and write
// (mode 0600), unless it exists. A symbolic link at `path` whose target
// does not exist yet gets that target created so. A SQLite database created this way gives
// its WAL and shared-memory files the same mode. Errors are left to the
// open that follows, which reports them with its own context.
void createPrivateFile(const std::filesystem::path& path);

}  // namespace webtrap
