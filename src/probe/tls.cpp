#include "probe/tls.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include <cstdio>
#include <memory>

#include <fmt/format.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include "common/error.h"

namespace webtrap::probe {
namespace {

struct FileCloser {
  void operator()(FILE* file) const { std::fclose(file); }
};
using UniqueFile = std::unique_ptr<FILE, FileCloser>;

UniqueFile openForWrite(const std::filesystem::path& path, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    throw ConfigError(fmt::format("{}: cannot create the file ({}); check that the state folder is "
                                  "writable",
                                  path.string(), std::strerror(errno)));
  }
  return UniqueFile(fdopen(fd, "w"));
}

void throwOpenSsl(const std::string& what) {
  throw ConfigError(fmt::format("making the self-signed certificate failed at {}", what));
}

}  // namespace

void writeSelfSignedCertificate(const std::filesystem::path& certificate,
                                const std::filesystem::path& private_key,
                                const std::string& common_name) {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  if (!key) {
    throwOpenSsl("key generation");
  }
  std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), X509_free);
  X509_set_version(cert.get(), 2);

  // A random serial, as real CAs and Debian's make-ssl-cert do.
  unsigned char serial_bytes[16];
  RAND_bytes(serial_bytes, sizeof(serial_bytes));
  serial_bytes[0] &= 0x7f;
  std::unique_ptr<BIGNUM, decltype(&BN_free)> serial(
      BN_bin2bn(serial_bytes, sizeof(serial_bytes), nullptr), BN_free);
  BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get()));

  X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 10L * 365 * 24 * 3600);
  X509_set_pubkey(cert.get(), key.get());

  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  X509_set_issuer_name(cert.get(), name);
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) {
    throwOpenSsl("signing");
  }

  std::filesystem::create_directories(private_key.parent_path());
  auto key_file = openForWrite(private_key, 0600);
  auto cert_file = openForWrite(certificate, 0644);
  if (!PEM_write_PrivateKey(key_file.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) ||
      !PEM_write_X509(cert_file.get(), cert.get())) {
    throwOpenSsl("writing PEM files");
  }
}

boost::asio::ssl::context makeServerContext(const TlsConfig& tls,
                                            const std::filesystem::path& state_dir,
                                            const std::string& common_name) {
  std::filesystem::path certificate = tls.certificate;
  std::filesystem::path private_key = tls.private_key;
  if (certificate.empty()) {
    certificate = state_dir / "tls" / "self-signed.crt";
    private_key = state_dir / "tls" / "self-signed.key";
    if (!std::filesystem::exists(certificate) || !std::filesystem::exists(private_key)) {
      writeSelfSignedCertificate(certificate, private_key, common_name);
      spdlog::info("tls: made a self-signed certificate cn={} path={}", common_name,
                   certificate.string());
    }
  } else if (private_key.empty()) {
    throw ConfigError("tls.private_key: missing; set it to the PEM key of tls.certificate");
  }

  namespace ssl = boost::asio::ssl;
  ssl::context context(ssl::context::tls_server);
  // TLS 1.0 and 1.1 stay enabled: scanners still offer them, and the record
  // of which version a client chose is part of what the probe captures.
  context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::single_dh_use);
  boost::system::error_code ec;
  context.use_certificate_chain_file(certificate.string(), ec);
  if (ec) {
    throw ConfigError(fmt::format("tls.certificate: cannot load \"{}\": {}", certificate.string(),
                                  ec.message()));
  }
  context.use_private_key_file(private_key.string(), ssl::context::pem, ec);
  if (ec) {
    throw ConfigError(fmt::format("tls.private_key: cannot load \"{}\": {}; check that it is the "
                                  "key of the certificate",
                                  private_key.string(), ec.message()));
  }
  SSL_CTX_set_min_proto_version(context.native_handle(), TLS1_VERSION);
  SSL_CTX_set_security_level(context.native_handle(), 0);
  return context;
}

}  // namespace webtrap::probe
