#include "probe/hardening.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include <gtest/gtest.h>

namespace {

// Runs `body` in a forked child, where the filter cannot affect the test
// runner, and returns the child's exit code.
template <typename Body>
int runInChild(Body body) {
  pid_t pid = fork();
  if (pid == 0) {
    _exit(body());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

// A loopback listener so that connect() would succeed without the filter.
int listenOnLoopback(sockaddr_in& address) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  listen(fd, 4);
  return fd;
}

int connectTo(const sockaddr_in& address) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int result = connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  int error = result == 0 ? 0 : errno;
  close(fd);
  return error;
}

TEST(Hardening, ConnectWorksWithoutFilter) {
  sockaddr_in address;
  int listener = listenOnLoopback(address);
  EXPECT_EQ(runInChild([&] { return connectTo(address); }), 0);
  close(listener);
}

TEST(Hardening, ConnectIsDeniedWithFilter) {
  sockaddr_in address;
  int listener = listenOnLoopback(address);
  int code = runInChild([&] {
    webtrap::probe::denyOutboundAndExec();
    return connectTo(address);
  });
  EXPECT_EQ(code, EPERM);
  close(listener);
}

TEST(Hardening, ExecIsDeniedWithFilter) {
  int code = runInChild([] {
    webtrap::probe::denyOutboundAndExec();
    char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
    execv("/bin/true", argv);
    return errno;
  });
  EXPECT_EQ(code, EPERM);
}

}  // namespace
