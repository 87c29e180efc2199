#!/bin/sh
# Writes a throwaway PKI into $1 for the TLS tests: ca.{pem,key}, a server
# certificate for 127.0.0.1 / localhost (server.{pem,key}), a client
# certificate signed by the same CA (client.{pem,key}), and a second CA with
# its own client (other-ca.pem, other-client.{pem,key}) that must be refused.
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"
days=2
q() { "$@" >/dev/null 2>&1; }

ca() {  # name
  q openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.pem" \
    -days $days -subj "/CN=echelon-test-$1" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
}

leaf() {  # name ca ext
  q openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" \
    -subj "/CN=echelon-test-$1"
  printf '%s\n' "$3" > "$1.ext"
  q openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" \
    -CAcreateserial -out "$1.pem" -days $days -extfile "$1.ext"
}

ca ca
ca other-ca
leaf server ca "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
leaf client ca "extendedKeyUsage=clientAuth"
leaf other-client other-ca "extendedKeyUsage=clientAuth"
