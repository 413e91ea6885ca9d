#include "tests/testing/tls_certificates.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"

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

}  // namespace alibi::testing
