// Process hardening: seccomp filters for the probe, applied once its ports
// are bound, and for the shipper's processes.
#pragma once

namespace webtrap::probe {

// Installs a seccomp filter on every thread of the process that makes
// connect(), execve() and execveat() fail with EPERM. After this the probe
// cannot open an outbound connection (DNS included) or run a program,
// whatever a request or a rule requests. Throws ConfigError when the kernel
// rejects the filter.
void denyOutboundAndExec();

// Installs the same kind of filter for execve() and execveat() only, for the
// shipper, which must still connect to its collector.
void denyExec();

}  // namespace webtrap::probe
