// Test certificates made with the openssl command line: a CA (ca.pem /
// ca.key) and a server and a client certificate it signed (server.pem /
// server.key, client.pem / client.key), valid for 127.0.0.1 and localhost.
//
// Thread-safety: functions of files; one caller per directory.
#ifndef ALIBI_TESTS_TESTING_TLS_CERTIFICATES_H_
#define ALIBI_TESTS_TESTING_TLS_CERTIFICATES_H_

#include <string>

#include "absl/status/status.h"

namespace alibi::testing {

// Whether the openssl command is installed (tests skip without it).
bool HaveOpenssl();

// Writes the certificates into `dir` (created if needed).
absl::Status WriteTestCertificates(const std::string& dir);

// The contents of a file ("" when it cannot be read).
std::string ReadFileToString(const std::string& path);

// Sends `request` over TLS to 127.0.0.1:`port` (verifying the server against
// `dir`/ca.pem, and presenting `dir`/client.pem when `client_cert`), and
// returns what the server sends until it closes; "" when the handshake
// fails.
std::string HttpsExchange(int port, const std::string& request,
                          const std::string& dir, bool client_cert);

}  // namespace alibi::testing

#endif  // ALIBI_TESTS_TESTING_TLS_CERTIFICATES_H_
