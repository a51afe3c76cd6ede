// A test double (a Python script under tests/tools) run as a child process
// on 127.0.0.1 for one test, and stopped by its pid.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

namespace webtrap::testing {

inline std::filesystem::path sourceDir() {
  const char* env = std::getenv("WEBTRAP_SOURCE_DIR");
  return env != nullptr ? std::filesystem::path(env) : std::filesystem::path(WEBTRAP_SOURCE_DIR);
}

inline std::filesystem::path sharedDir() {
  const char* env = std::getenv("WEBTRAP_SHARED_DIR");
  return env != nullptr ? std::filesystem::path(env) : sourceDir() / ".." / "shared";
}

inline std::string readText(const std::filesystem::path& path) {
  std::ifstream stream(path, std::ios::binary);
  std::ostringstream text;
  text << stream.rdbuf();
  return text.str();
}

inline std::filesystem::path makeTempDir(std::string_view prefix) {
  std::string pattern =
      (std::filesystem::temp_directory_path() / fmt::format("{}-XXXXXX", prefix)).string();
  char* made = mkdtemp(pattern.data());
  if (made == nullptr) {
    throw std::runtime_error("mkdtemp failed");
  }
  return made;
}

// Starts `python3 tests/tools/<script> --port-file <file> <args...>` with its
// output in <dir>/double.log, and waits up to 5 s for the port file, which
// the double writes once it listens.
class DoubleProcess {
 public:
  DoubleProcess(std::string_view script, std::vector<std::string> extra_args) {
    dir_ = makeTempDir("double");
    port_file_ = dir_ / "port";
    std::vector<std::string> args = {"python3", (sourceDir() / "tests/tools" / script).string(),
                                     "--port-file", port_file_.string()};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& arg : args) {
        argv.push_back(arg.data());
      }
      argv.push_back(nullptr);
      std::string log = (dir_ / "double.log").string();
      FILE* out = std::freopen(log.c_str(), "w", stdout);
      (void)out;
      dup2(fileno(stdout), fileno(stderr));
      execvp("python3", argv.data());
      _exit(127);
    }
    for (int i = 0; i < 200 && !std::filesystem::exists(port_file_); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    if (!std::filesystem::exists(port_file_)) {
      throw std::runtime_error(fmt::format("{} did not start: {}", script,
                                           readText(dir_ / "double.log")));
    }
    port_ = std::stoi(readText(port_file_));
  }

  ~DoubleProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  DoubleProcess(const DoubleProcess&) = delete;
  DoubleProcess& operator=(const DoubleProcess&) = delete;

  int port() const { return port_; }
  std::string url(std::string_view scheme = "http") const {
    return fmt::format("{}://127.0.0.1:{}", scheme, port_);
  }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  std::filesystem::path port_file_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace webtrap::testing
