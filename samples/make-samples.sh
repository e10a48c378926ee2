#!/usr/bin/env bash
# Rebuilds the sample material used by `make run` and the documentation.
# A private "partner" CA issues a client certificate (clientAuth, 10 years), exported
# the way OpenSSL 1.x and Windows do it (-legacy: RC2-40 + 3DES, SHA-1 MAC).
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -keyout "$work/ca.key" -out partner-ca.pem -subj "/O=Example Partner/CN=Example Partner Root CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$work/client.key" -out "$work/client.csr" -subj "/O=Shop/CN=shop-production"
openssl x509 -req -in "$work/client.csr" -CA partner-ca.pem -CAkey "$work/ca.key" \
  -CAcreateserial -days 3650 -out "$work/client.pem" \
  -extfile <(printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n')
printf 'sample, with a comma' > partner-client.password
openssl pkcs12 -export -legacy -in "$work/client.pem" -inkey "$work/client.key" \
  -certfile partner-ca.pem -name "shop-production" \
  -passout file:partner-client.password -out partner-client.p12
rm -f partner-ca.srl
