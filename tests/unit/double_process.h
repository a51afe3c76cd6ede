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

// A CA and a server certificate for 127.0.0.1 signed by it, made with the
// openssl command in a temporary folder: ca.pem, server.pem, server.key.
class TlsCertificates {
 public:
  TlsCertificates() : dir_(makeTempDir("tls-certificates")) {
    std::string script = fmt::format(
        "cd {} && "
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
        "-subj /CN=webtrap-test-ca >/dev/null 2>&1 && "
        "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
        "-subj /CN=127.0.0.1 >/dev/null 2>&1 && "
        "printf 'subjectAltName=IP:127.0.0.1\\n' > ext.cnf && "
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "-out server.pem -days 2 -extfile ext.cnf >/dev/null 2>&1",
        dir_.string());
    ok_ = std::system(script.c_str()) == 0;
  }
  ~TlsCertificates() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  TlsCertificates(const TlsCertificates&) = delete;
  TlsCertificates& operator=(const TlsCertificates&) = delete;

  bool ok() const { return ok_; }
  std::filesystem::path path(const char* name) const { return dir_ / name; }

 private:
  std::filesystem::path dir_;
  bool ok_ = false;
};

}  // namespace webtrap::testing
