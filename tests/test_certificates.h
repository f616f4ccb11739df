// Certificates for tests of TLS and mutual TLS, made with the openssl
// command (Debian's openssl package).
#ifndef SEQKV_TESTS_TEST_CERTIFICATES_H_
#define SEQKV_TESTS_TEST_CERTIFICATES_H_

#include <cstdlib>
#include <string>

namespace seqkv::testing {

// Writes into the directory `dir`: ca.pem and ca.key (a CA), server.pem and
// server.key (signed by it, for 127.0.0.1 and localhost), client.pem and
// client.key (signed by it, subject CN=acme-worker, for mutual TLS).
// False when openssl failed.
inline bool MakeTestCertificates(const std::string& dir) {
  const std::string script =
      "cd '" + dir +
      "' && "
      "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "
      "/CN=seqkv-test-ca -keyout ca.key -out ca.pem 2>/dev/null && "
      "openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "
      "server.key -out server.csr 2>/dev/null && "
      "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext && "
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key "
      "-CAcreateserial -days 2 -extfile san.ext -out server.pem 2>/dev/null "
      "&& openssl req -newkey rsa:2048 -nodes -subj /CN=acme-worker -keyout "
      "client.key -out client.csr 2>/dev/null && "
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key "
      "-CAcreateserial -days 2 -out client.pem 2>/dev/null";
  return std::system(script.c_str()) == 0;
}

}  // namespace seqkv::testing

#endif  // SEQKV_TESTS_TEST_CERTIFICATES_H_
