#include "probe/hardening.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <vector>

#include <fmt/format.h>

#include "common/error.h"

namespace webtrap::probe {
namespace {

#if defined(__x86_64__)
constexpr unsigned kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr unsigned kAuditArch = AUDIT_ARCH_AARCH64;
#else
#error "denyOutboundAndExec: add this architecture's AUDIT_ARCH value"
#endif

}  // namespace

namespace {

// Installs, on every thread (TSYNC), a filter that kills calls made under
// another architecture's ABI, makes the calls in `denied` fail with EPERM and
// allows the rest.
void denySyscalls(std::initializer_list<unsigned> denied) {
  constexpr unsigned kErrno = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);
  std::vector<sock_filter> program = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
  };
  for (unsigned call : denied) {
    program.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, call, 0, 1));
    program.push_back(BPF_STMT(BPF_RET | BPF_K, kErrno));
  }
  program.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  sock_fprog fprog{static_cast<unsigned short>(program.size()), program.data()};

  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    throw ConfigError(fmt::format("hardening: prctl(PR_SET_NO_NEW_PRIVS) failed: {}",
                                  std::strerror(errno)));
  }
  // TSYNC applies the filter to the threads already running too (the
  // inspection workers).
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &fprog) != 0) {
    throw ConfigError(fmt::format("hardening: installing the seccomp filter failed: {}; set "
                                  "hardening.seccomp: false on kernels without seccomp",
                                  std::strerror(errno)));
  }
}

}  // namespace

void denyOutboundAndExec() { denySyscalls({__NR_connect, __NR_execve, __NR_execveat}); }

void denyExec() { denySyscalls({__NR_execve, __NR_execveat}); }

}  // namespace webtrap::probe
