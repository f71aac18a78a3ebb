#!/usr/bin/env bash
# s3.sh -- the S3 client against a real local S3 server that checks
# signatures (@20minutes/s3rver, test/s3/start.sh), over http, and over
# https when the TLS build is possible.
#
#   bash test/s3.sh          (make test-s3)
#
# http:  test/s3_client (built here with ASan and UBSan) runs PUT, GET,
#        ranges, HEAD, DELETE, ListObjectsV2 paging, odd keys, a 5 MB
#        object, and the refusals: a wrong secret (403
#        SignatureDoesNotMatch), a missing bucket, nothing listening, and
#        a lying endpoint (an 8 EiB Content-Length, a body past the
#        limit) refused without taking the memory.
# https: a CA and a server certificate for "localhost" are made here with
#        openssl; the client built with -DURSULA_ENABLE_TLS=1 -lbearssl runs
#        the same against https://localhost:PORT, then must fail against a
#        CA that did not sign the server ("not trusted") and when the host
#        name is 127.0.0.1 ("does not match").  Without BearSSL the script
#        installs libbearssl-dev when it runs as root with apt-get, and
#        otherwise says clearly that the TLS part is skipped.
# Everything runs on 127.0.0.1 and is killed on exit.
set -u
cd "$(dirname "$0")/.." || exit 1
TMP=$(mktemp -d)
PIDS=""
FAILS=0
cleanup() {
  for p in $PIDS; do kill "$p" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { node test/ports.mjs 1; } # below the ephemeral range

mkdir -p build
CFLAGS_T="-std=c99 -pedantic -Wall -Wextra -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all"
# a body limit of 8 MiB (above the 5 MB object) so the liar's test is quick
cc $CFLAGS_T -DS3_MAX_BODY=8388608 test/s3_client.c -o build/s3_client -pthread || exit 1

echo "# s3.sh: http"
PORT=$(free_port)
PID=$(bash test/s3/start.sh "$TMP/data" "$PORT") || exit 1
PIDS="$PIDS $PID"
./build/s3_client "http://127.0.0.1:$PORT" || FAILS=$((FAILS + 1))

# ---------------------------------------------------------------- https
have_bearssl() { [ -f /usr/include/bearssl.h ] || echo '#include <bearssl.h>' | cc -E - >/dev/null 2>&1; }
if ! have_bearssl && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "# s3.sh: installing libbearssl-dev for the TLS tests"
  apt-get install -y libbearssl-dev >/dev/null 2>&1 ||
    { apt-get update >/dev/null 2>&1 && apt-get install -y libbearssl-dev >/dev/null 2>&1; }
fi
if ! have_bearssl; then
  echo "# s3.sh: TLS tests skipped: libbearssl-dev is not installed (and could not be)"
elif ! command -v openssl >/dev/null &&
  ! { [ "$(id -u)" = 0 ] && apt-get install -y openssl >/dev/null 2>&1; }; then
  echo "# s3.sh: TLS tests skipped: openssl is not installed"
else
  echo "# s3.sh: https"
  cc $CFLAGS_T -DURSULA_ENABLE_TLS=1 test/s3_client.c -o build/s3_client_tls -pthread -lbearssl || exit 1
  C=$TMP/certs
  mkdir -p "$C"
  ( cd "$C" &&
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
      -subj "/CN=ursula test CA" -addext basicConstraints=critical,CA:TRUE \
      -addext keyUsage=critical,keyCertSign,cRLSign &&
    openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.pem -days 30 \
      -subj "/CN=another CA" -addext basicConstraints=critical,CA:TRUE &&
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost &&
    printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >ext.cnf &&
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
      -out server.pem -days 30 -extfile ext.cnf ) >/dev/null 2>&1 ||
    { echo "not ok - making the test certificates"; exit 1; }
  TPORT=$(free_port)
  TPID=$(bash test/s3/start.sh "$TMP/tdata" "$TPORT" "$C/server.key" "$C/server.pem") || exit 1
  PIDS="$PIDS $TPID"
  ./build/s3_client_tls "https://localhost:$TPORT" "$C/ca.pem" || FAILS=$((FAILS + 1))
  ./build/s3_client_tls --expect-error "https://localhost:$TPORT" "$C/other.pem" "not trusted" ||
    FAILS=$((FAILS + 1))
  ./build/s3_client_tls --expect-error "https://127.0.0.1:$TPORT" "$C/ca.pem" "does not match" ||
    FAILS=$((FAILS + 1))
fi

if [ "$FAILS" -gt 0 ]; then
  echo "# s3.sh: $FAILS part(s) failed"
  exit 1
fi
echo "# s3.sh: all passed"
