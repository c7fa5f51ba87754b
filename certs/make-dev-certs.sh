#!/usr/bin/env bash
# Makes the development CA and the localhost server certificate in this folder.
# For local use and tests only: the private keys are committed, so they protect nothing.
set -euo pipefail
cd "$(dirname "$0")"
days=3650
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days "$days" \
  -keyout dev-ca.key -out dev-ca.pem -subj "/CN=persona-gate dev CA (local use only)" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout dev-key.pem -out dev.csr -subj "/CN=localhost"
openssl x509 -req -in dev.csr -CA dev-ca.pem -CAkey dev-ca.key -CAcreateserial -days "$days" -out dev-cert.pem \
  -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE')
rm -f dev.csr dev-ca.srl
