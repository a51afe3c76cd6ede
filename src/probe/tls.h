// TLS for the probe's listeners.
#pragma once

#include <filesystem>
#include <string>

#include <boost/asio/ssl/context.hpp>

#include "probe/config.h"

namespace webtrap::probe {

// Makes the server context. With no certificate configured, uses (or makes at
// first start) a self-signed certificate in `state_dir`/tls whose subject is
// `common_name`, the way Debian's ssl-cert package makes its snakeoil
// certificate. Throws ConfigError on unreadable or mismatched files.
boost::asio::ssl::context makeServerContext(const TlsConfig& tls,
                                            const std::filesystem::path& state_dir,
                                            const std::string& common_name);

// Writes a new self-signed certificate and key (P-256, ten years) as PEM.
void writeSelfSignedCertificate(const std::filesystem::path& certificate,
                                const std::filesystem::path& private_key,
                                const std::string& common_name);

}  // namespace webtrap::probe
