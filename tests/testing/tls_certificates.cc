#include "tests/testing/tls_certificates.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "tests/testing/raw_socket.h"

namespace alibi::testing {
namespace {

absl::Status Run(const std::string& command) {
  if (std::system((command + " > /dev/null 2>&1").c_str()) != 0) {
    return absl::InternalError(absl::StrCat("failed: ", command));
  }
  return absl::OkStatus();
}

}  // namespace

bool HaveOpenssl() {
  return std::system("openssl version > /dev/null 2>&1") == 0;
}

absl::Status WriteTestCertificates(const std::string& dir) {
  std::filesystem::create_directories(dir);
  if (absl::Status s = Run(
          "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca "
          "-keyout " +
          dir + "/ca.key -out " + dir + "/ca.pem");
      !s.ok()) {
    return s;
  }
  std::ofstream(dir + "/ext.cnf")
      << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
  for (const std::string name : {"server", "client"}) {
    const std::string base = dir + "/" + name;
    if (absl::Status s =
            Run("openssl req -newkey rsa:2048 -nodes -subj /CN=" + name +
                " -keyout " + base + ".key -out " + base + ".csr");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = Run("openssl x509 -req -in " + base + ".csr -CA " +
                             dir + "/ca.pem -CAkey " + dir +
                             "/ca.key -CAcreateserial -days 1 "
                             "-extfile " +
                             dir + "/ext.cnf -out " + base + ".pem");
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

std::string ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string HttpsExchange(int port, const std::string& request,
                          const std::string& dir, bool client_cert) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_load_verify_locations(ctx, (dir + "/ca.pem").c_str(), nullptr);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (client_cert) {
    SSL_CTX_use_certificate_file(ctx, (dir + "/client.pem").c_str(),
                                 SSL_FILETYPE_PEM);
    SSL_CTX_use_PrivateKey_file(ctx, (dir + "/client.key").c_str(),
                                SSL_FILETYPE_PEM);
  }
  auto c = RawConnection::Connect(port);
  std::string out;
  if (c.ok()) {
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, c->fd());
    SSL_set_tlsext_host_name(ssl, "localhost");
    if (SSL_connect(ssl) == 1) {
      SSL_write(ssl, request.data(), static_cast<int>(request.size()));
      char buffer[4096];
      int n;
      while ((n = SSL_read(ssl, buffer, sizeof(buffer))) > 0) {
        out.append(buffer, n);
      }
    }
    SSL_free(ssl);
  }
  ERR_clear_error();
  SSL_CTX_free(ctx);
  return out;
}

}  // namespace alibi::testing
