// Process hardening applied once the probe's ports are bound.
#pragma once

namespace webtrap::probe {

// Installs a seccomp filter on every thread of the process that makes
// connect(), execve() and execveat() fail with EPERM. After this the probe
// cannot open an outbound connection (DNS included) or run a program,
// whatever a request or a rule requests. Throws ConfigError when the kernel
// rejects the filter.
void denyOutboundAndExec();

}  // namespace webtrap::probe
