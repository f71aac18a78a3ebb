#!/usr/bin/env bash
# tls.sh -- HTTPS on the public listener (--tls-cert, --tls-key; issue
# 17, item 4) against a real binary built with BearSSL: the protocol's
# operations over TLS with an RSA and an EC certificate, keep-alive and
# pipelining, SSE and long-poll, large bodies byte-exact, plain HTTP and
# silent clients on the TLS port, certificate verification, SIGHUP
# reloads (a good pair for new connections while an open one goes on; a
# bad pair kept out), bad pairs at start, and the official client over
# https (test/conformance/clients.mjs with URSULA_TLS_CERT/_KEY).
#
#   bash test/tls.sh [PLAIN-BIN [TLS-BIN]]     (make test-tls)
#
# PLAIN-BIN (default ./ursula) is a build without TLS; TLS-BIN (default
# build/ursula-tls) is built here from ursula.c with -DURSULA_ENABLE_TLS=1
# unless URSULA_TLS_BIN names one already built.  Skipped, with a line
# saying so, without /usr/include/bearssl.h.  A throwaway CA and its leaf
# certificates (RSA 2048, P-256) are made with openssl in a temporary
# directory, removed at the end.  Expected values come from RFC 9110/9112,
# the SSE format and ../shared/docs/protocol.md.  Every wait is bounded;
# everything is on 127.0.0.1.
set -u
cd "$(dirname "$0")/.." || exit 1
PLAIN=${1:-./ursula}
if [ ! -f /usr/include/bearssl.h ]; then
  echo "test-tls: skipped: /usr/include/bearssl.h is missing (apt-get install libbearssl-dev)"
  exit 0
fi
TLSBIN=${2:-${URSULA_TLS_BIN:-}}
if [ -z "$TLSBIN" ]; then
  TLSBIN=build/ursula-tls
  mkdir -p build
  ${CC:-cc} -std=c99 -pedantic -Wall -Wextra -Wundef -Wshadow -Wstrict-prototypes \
    -Werror -O2 -g -DURSULA_ENABLE_TLS=1 ursula.c -o "$TLSBIN" -pthread -lbearssl ||
    { echo "test-tls: cannot build $TLSBIN" >&2; exit 1; }
fi
TMP=$(mktemp -d)
. test/lib.sh
read -r H A H2 <<<"$(free_ports 3)"
U=https://127.0.0.1:$H
C=$TMP/certs
mkdir -p "$C"

# same DESCRIPTION GOT WANT
same() {
  if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "got '$2', want '$3'"; fi
}
# has DESCRIPTION FILE PATTERN: FILE holds a line matching PATTERN (grep -E)
has() {
  if grep -qE -- "$3" "$2"; then ok "$1"; else not_ok "$1" "no '$3' in $2: $(head -c 400 "$2" | tr '\r\n' '  ')"; fi
}
# wait_for FILE PATTERN SECONDS: until FILE holds PATTERN (bounded)
wait_for() {
  local end=$((SECONDS + $3))
  while [ $SECONDS -lt $end ]; do
    grep -qE -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}
TC=(--cacert "$C/ca.pem" --max-time 10 -sS)
# code METHOD URL [CURL-ARGS...]: the status code over https with the CA
code() {
  local m=$1 u=$2; shift 2
  curl "${TC[@]}" -o /dev/null -w '%{http_code}' -X "$m" "$@" "$u" 2>/dev/null
}
OCT=(-H 'Content-Type: application/octet-stream')

# --- a throwaway CA and leaves -------------------------------------------------
# leaf NAME CN KEYSPEC: $C/NAME.pem signed by the CA for localhost and
# 127.0.0.1, its key in $C/NAME.key (KEYSPEC: rsa or ec)
leaf() {
  if [ "$3" = ec ]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$C/$1.key" 2>/dev/null # EC PRIVATE KEY
  else
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$C/$1.key" 2>/dev/null # PRIVATE KEY (PKCS#8)
  fi
  openssl req -new -key "$C/$1.key" -subj "/CN=$2" -out "$C/$1.csr" 2>/dev/null &&
    openssl x509 -req -in "$C/$1.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" \
      -set_serial "$4" -days 2 -extfile "$C/ext" -out "$C/$1.pem" 2>/dev/null
}
printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1' 'basicConstraints=CA:FALSE' \
  'keyUsage=digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' >"$C/ext"
if openssl req -x509 -newkey rsa:2048 -nodes -keyout "$C/ca.key" -out "$C/ca.pem" \
     -days 2 -subj "/CN=ursula test CA" -addext basicConstraints=critical,CA:TRUE \
     -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null &&
   leaf rsa ursula-rsa rsa 1001 && leaf ec ursula-ec ec 1002 &&
   leaf new ursula-reloaded rsa 1003 && leaf other ursula-other rsa 1004; then
  ok "a test CA, an RSA 2048 and a P-256 leaf for localhost and 127.0.0.1"
else
  not_ok "a test CA and its leaves (openssl)"; exit 1
fi
# the RSA leaf's key also in the traditional form (RSA PRIVATE KEY)
openssl rsa -in "$C/rsa.key" -traditional -out "$C/rsa-trad.key" 2>/dev/null
# the chain file: leaf first, then the CA
cat "$C/rsa.pem" "$C/ca.pem" >"$C/rsa-chain.pem"

# start BIN PORT CERT KEY [ARGS...]: a TLS server, its pid in SRV (log
# $TMP/srv-PORT.log); 0 once its admin listener answers (5 s at most)
start() {
  local bin=$1 port=$2 cert=$3 key=$4 i; shift 4
  "$bin" --listen 127.0.0.1:"$port" --admin-listen 127.0.0.1:"$A" --core-count 2 \
    --raft-group-count 8 --idle-timeout-ms 1500 --long-poll-timeout-ms 3000 \
    --tls-cert "$cert" --tls-key "$key" "$@" >"$TMP/srv-$port.log" 2>&1 &
  SRV=$!
  lib_track "$SRV"
  for i in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$A/healthz")" = 200 ] && return 0
    kill -0 "$SRV" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# --- the operations, with an RSA key and with an EC key ---------------------------
ops() { # KIND
  local k=$1 body
  same "$k: PUT creates a stream (201)" "$(code PUT "$U/t/$k" "${OCT[@]}")" 201
  curl "${TC[@]}" -D "$TMP/h-$k" -o /dev/null -X POST "${OCT[@]}" --data-binary "hello $k" "$U/t/$k"
  same "$k: POST appends (204)" "$(sed -n '1s/^HTTP\/1.1 \([0-9]*\).*/\1/p' "$TMP/h-$k")" 204
  has "$k: the append answers Stream-Next-Offset" "$TMP/h-$k" '^Stream-Next-Offset: [^ ]+'
  curl "${TC[@]}" -X POST "${OCT[@]}" --data-binary " and more" "$U/t/$k"
  body=$(curl "${TC[@]}" "$U/t/$k?offset=-1")
  same "$k: a catch-up GET returns the exact bytes" "$body" "hello $k and more"
  curl "${TC[@]}" -I "$U/t/$k" >"$TMP/head-$k"
  has "$k: HEAD answers 200" "$TMP/head-$k" '^HTTP/1.1 200'
  has "$k: HEAD carries Stream-Next-Offset" "$TMP/head-$k" '^Stream-Next-Offset: '
}

if start "$TLSBIN" "$H" "$C/ec.pem" "$C/ec.key"; then
  ok "a server starts with the P-256 key (EC PRIVATE KEY)"
  has "it says it serves https" "$TMP/srv-$H.log" "listening on https://127.0.0.1:$H"
  ops ec
  openssl s_client -connect 127.0.0.1:"$H" -CAfile "$C/ca.pem" </dev/null >"$TMP/sc-ec" 2>&1
  has "ec: the handshake is TLS 1.2 with an ECDSA suite" "$TMP/sc-ec" 'Protocol *: TLSv1.2|New, TLSv1.2'
  has "ec: the chain verifies against the test CA" "$TMP/sc-ec" 'Verify return code: 0 \(ok\)'
else
  not_ok "a server starts with the P-256 key" "$(cat "$TMP/srv-$H.log")"
fi
lib_kill "$SRV"

if start "$TLSBIN" "$H" "$C/rsa-chain.pem" "$C/rsa-trad.key"; then
  ok "a server starts with the RSA chain (leaf, CA) and an RSA PRIVATE KEY"
  ops rsa
  same "the admin listener stays plain HTTP" \
    "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$A/healthz")" 200
else
  not_ok "a server starts with the RSA key" "$(cat "$TMP/srv-$H.log")"
fi
lib_kill "$SRV"

# --- the main server: the RSA leaf in PKCS#8, files that a reload replaces -------
cp "$C/rsa.pem" "$TMP/cert.pem"
cp "$C/rsa.key" "$TMP/key.pem"
start "$TLSBIN" "$H" "$TMP/cert.pem" "$TMP/key.pem" ||
  { not_ok "the main server starts" "$(cat "$TMP/srv-$H.log")"; exit 1; }
MAIN=$SRV
ok "a server starts with the RSA leaf and a PKCS#8 PRIVATE KEY"

# --- verification is real ----------------------------------------------------------
curl -sS --max-time 10 -o /dev/null "$U/" 2>"$TMP/noca"; rc=$?
same "curl without --cacert fails verification (exit 60)" "$rc" 60
same "with --cacert the same request is answered" "$(code GET "$U/nothing-here")" 404

# --- keep-alive and pipelining -----------------------------------------------------
code PUT "$U/k/one" "${OCT[@]}" >/dev/null
code PUT "$U/k/two" "${OCT[@]}" >/dev/null
curl "${TC[@]}" -X POST "${OCT[@]}" --data-binary "first-stream" "$U/k/one"
curl "${TC[@]}" -X POST "${OCT[@]}" --data-binary "second-stream" "$U/k/two"
curl -v "${TC[@]}" "$U/k/one?offset=-1" "$U/k/two?offset=-1" >"$TMP/ka-out" 2>"$TMP/ka-err"
has "keep-alive: two requests in one curl reuse one connection" "$TMP/ka-err" 'Re-using existing connection'
same "keep-alive: both answers are right" "$(cat "$TMP/ka-out")" "first-stream""second-stream"
printf 'GET /k/one?offset=-1 HTTP/1.1\r\nHost: localhost\r\n\r\nGET /k/two?offset=-1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
  timeout 10 openssl s_client -quiet -connect 127.0.0.1:"$H" -CAfile "$C/ca.pem" >"$TMP/pipe" 2>"$TMP/pipe-err"
same "pipelining: two answers, in order" \
  "$(grep -aoE 'HTTP/1.1 [0-9]+|first-stream|second-stream' "$TMP/pipe" | tr '\r\n' '  ' | sed 's/ *$//')" \
  "HTTP/1.1 200 first-stream HTTP/1.1 200 second-stream"

# 120 pipelined requests of 1 KiB in one go: more than one read takes
# (64 KiB), so the engine is left holding decrypted requests that no
# readiness event announces; every one must still be answered
pad=$(head -c 900 /dev/zero | tr '\0' 'p')
{ for i in $(seq 1 119); do
    printf 'GET /k/one?offset=-1 HTTP/1.1\r\nHost: localhost\r\nX-Pad: %s\r\n\r\n' "$pad"
  done
  printf 'GET /k/two?offset=-1 HTTP/1.1\r\nHost: localhost\r\nX-Pad: %s\r\nConnection: close\r\n\r\n' "$pad"
} >"$TMP/deep-req"
timeout 15 openssl s_client -quiet -connect 127.0.0.1:"$H" -CAfile "$C/ca.pem" <"$TMP/deep-req" >"$TMP/deep" 2>/dev/null
same "pipelining 120 requests (120 KiB) in one write: all answered, in order" \
  "$(grep -aoE 'HTTP/1.1 200|first-stream|second-stream' "$TMP/deep" | sort | uniq -c | tr -s ' ' | tr '\n' ',')" \
  " 120 HTTP/1.1 200, 119 first-stream, 1 second-stream,"
same "... the last answer is the last request's" "$(grep -aoE 'first-stream|second-stream' "$TMP/deep" | tail -1)" second-stream

# The same with the server stopped (SIGSTOP) while 66 requests, 65 KiB
# in all, arrive: its first read then takes 64 KiB and leaves the last
# request in the engine, decrypted, with the socket empty; it must be
# answered all the same.
mkfifo "$TMP/fifo"
{ for i in $(seq 1 65); do
    printf 'GET /k/one?offset=-1 HTTP/1.1\r\nHost: localhost\r\nX-Pad: %s\r\n\r\n' "${pad}pppppppppppppppppppppppppppppppppppppppppppppppppp"
  done
  printf 'GET /k/two?offset=-1 HTTP/1.1\r\nHost: localhost\r\nX-Pad: %s\r\nConnection: close\r\n\r\n' "$pad"
} >"$TMP/deep2-req"
timeout 20 openssl s_client -quiet -connect 127.0.0.1:"$H" -CAfile "$C/ca.pem" <"$TMP/fifo" >"$TMP/deep2" 2>/dev/null &
SC=$!
exec 4>"$TMP/fifo"
sleep 0.3 # the handshake (well within --idle-timeout-ms)
kill -STOP "$MAIN"
cat "$TMP/deep2-req" >&4
sleep 0.3
kill -CONT "$MAIN"
wait "$SC"
exec 4>&-
same "$(wc -c <"$TMP/deep2-req") bytes of pipelined requests that arrive while the server is stopped: all answered" \
  "$(grep -aoE 'HTTP/1.1 200|first-stream|second-stream' "$TMP/deep2" | sort | uniq -c | tr -s ' ' | tr '\n' ',')" \
  " 66 HTTP/1.1 200, 65 first-stream, 1 second-stream,"

# --- SSE and long-poll ---------------------------------------------------------------
code PUT "$U/live/sse" -H 'Content-Type: text/plain' >/dev/null
curl "${TC[@]}" -X POST -H 'Content-Type: text/plain' --data-binary "early-event" "$U/live/sse"
curl -N --cacert "$C/ca.pem" -sS --max-time 8 "$U/live/sse?offset=-1&live=sse" >"$TMP/sse" 2>/dev/null &
SSE=$!
if wait_for "$TMP/sse" '^data: ?early-event' 5; then ok "SSE over https: the stored data arrives as an event"
else not_ok "SSE over https: the stored data arrives" "$(head -c 300 "$TMP/sse")"; fi
has "SSE: event: data, then event: control" "$TMP/sse" '^event: control'
curl "${TC[@]}" -X POST -H 'Content-Type: text/plain' --data-binary "late-event" "$U/live/sse"
if wait_for "$TMP/sse" '^data: ?late-event' 5; then ok "SSE: a POST while the stream is open is delivered"
else not_ok "SSE: a POST while the stream is open is delivered" "$(tail -c 300 "$TMP/sse")"; fi
kill "$SSE" 2>/dev/null; wait "$SSE" 2>/dev/null

code PUT "$U/live/lp" "${OCT[@]}" >/dev/null
tail=$(curl "${TC[@]}" -I "$U/live/lp" | tr -d '\r' | sed -n 's/^Stream-Next-Offset: //Ip')
curl "${TC[@]}" -D "$TMP/lp-h" "$U/live/lp?offset=$tail&live=long-poll" >"$TMP/lp" 2>/dev/null &
LP=$!
sleep 0.5
curl "${TC[@]}" -X POST "${OCT[@]}" --data-binary "woken" "$U/live/lp"
wait "$LP"
has "long-poll over https: answered 200 when data is appended" "$TMP/lp-h" '^HTTP/1.1 200'
same "long-poll: the appended bytes" "$(cat "$TMP/lp")" woken

# --- large bodies, byte-exact ---------------------------------------------------------
head -c $((6 * 1024 * 1024 + 12345)) /dev/urandom >"$TMP/big"
code PUT "$U/big/s" "${OCT[@]}" >/dev/null
same "a 6 MiB POST over https is taken (204)" \
  "$(code POST "$U/big/s" "${OCT[@]}" --data-binary @"$TMP/big")" 204
curl "${TC[@]}" -o "$TMP/big-back" "$U/big/s?offset=-1"
same "a 6 MiB read comes back byte-exact (sha256)" \
  "$(sha256sum <"$TMP/big-back" | cut -d' ' -f1)" "$(sha256sum <"$TMP/big" | cut -d' ' -f1)"
# chunked request body
same "a chunked POST over https is taken (204)" \
  "$(code POST "$U/big/s" "${OCT[@]}" -H 'Transfer-Encoding: chunked' --data-binary "tail-bytes")" 204

# --- the wrong protocol, and silence --------------------------------------------------
exec 3<>/dev/tcp/127.0.0.1/"$H"
# (the server may drop the connection between two of printf's writes:
# no SIGPIPE for this shell)
(trap '' PIPE; printf 'GET /k/one?offset=-1 HTTP/1.1\r\nHost: localhost\r\n\r\n' >&3) 2>/dev/null
timeout 5 cat <&3 >"$TMP/plain" 2>/dev/null
exec 3<&- 3>&-
if grep -aq '^HTTP/' "$TMP/plain"; then not_ok "plain HTTP to the TLS port gets no HTTP answer" "$(head -c 200 "$TMP/plain")"
else ok "plain HTTP to the TLS port gets no HTTP answer"; fi
same "the next TLS client is served" "$(curl "${TC[@]}" "$U/k/one?offset=-1")" first-stream
exec 3<>/dev/tcp/127.0.0.1/"$H"
t0=$(date +%s%N)
timeout 8 cat <&3 >/dev/null 2>&1; rc=$?
t1=$(date +%s%N)
exec 3<&- 3>&-
ms=$(((t1 - t0) / 1000000))
if [ "$rc" = 0 ] && [ "$ms" -ge 1000 ] && [ "$ms" -le 5000 ]; then
  ok "a client that sends nothing is closed by the idle timeout (1500 ms: closed after $ms ms)"
else
  not_ok "a client that sends nothing is closed by the idle timeout" "cat exit $rc after $ms ms"
fi
exec 3<>/dev/tcp/127.0.0.1/"$H"
(trap '' PIPE; printf '\026\003\001\000\100' >&3) 2>/dev/null # a handshake record's header, and no more
t0=$(date +%s%N)
timeout 8 cat <&3 >/dev/null 2>&1; rc=$?
t1=$(date +%s%N)
exec 3<&- 3>&-
ms=$(((t1 - t0) / 1000000))
if [ "$rc" = 0 ] && [ "$ms" -le 5000 ]; then
  ok "a client that stops inside the handshake is closed too (after $ms ms)"
else
  not_ok "a client that stops inside the handshake is closed" "cat exit $rc after $ms ms"
fi

# --- SIGHUP: a new pair for new connections, the open ones go on -----------------------
subject() { # the subject of the certificate a new connection sees
  openssl s_client -connect 127.0.0.1:"$H" -CAfile "$C/ca.pem" </dev/null 2>/dev/null |
    sed -n 's/^subject=//p' | head -1
}
same "before the reload, the first certificate is served" "$(subject | grep -o 'ursula-[a-z]*')" ursula-rsa
code PUT "$U/reload/s" -H 'Content-Type: text/plain' >/dev/null
curl -N --cacert "$C/ca.pem" -sS --max-time 12 "$U/reload/s?offset=-1&live=sse" >"$TMP/sse2" 2>/dev/null &
SSE=$!
wait_for "$TMP/sse2" '^event: control' 5 || not_ok "an SSE reader is open before the reload"
cp "$C/new.pem" "$TMP/cert.pem"
cp "$C/new.key" "$TMP/key.pem"
kill -HUP "$MAIN"
if wait_for "$TMP/srv-$H.log" 'tls: reloaded' 5; then ok "SIGHUP: the new pair is loaded (logged)"
else not_ok "SIGHUP: the new pair is loaded" "$(tail -3 "$TMP/srv-$H.log")"; fi
same "after the reload, a new connection sees the new certificate" "$(subject | grep -o 'ursula-[a-z]*')" ursula-reloaded
same "and is served with it (curl --cacert)" "$(curl "${TC[@]}" "$U/k/two?offset=-1")" second-stream
curl "${TC[@]}" -X POST -H 'Content-Type: text/plain' --data-binary "after-reload" "$U/reload/s"
if wait_for "$TMP/sse2" '^data: ?after-reload' 5; then ok "an SSE connection opened before the reload keeps receiving"
else not_ok "an SSE connection opened before the reload keeps receiving" "$(tail -c 300 "$TMP/sse2")"; fi
printf 'not a key at all\n' >"$TMP/key.pem"
kill -HUP "$MAIN"
if wait_for "$TMP/srv-$H.log" 'tls: reload failed, the certificate in force stays: --tls-key .*key.pem' 5; then
  ok "SIGHUP with a bad key: logged with the file and the reason"
else not_ok "SIGHUP with a bad key: logged" "$(tail -3 "$TMP/srv-$H.log")"; fi
has "the reason says what is wrong" "$TMP/srv-$H.log" 'reload failed.*no RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY block'
same "the last good pair still serves new connections" "$(subject | grep -o 'ursula-[a-z]*')" ursula-reloaded
same "and the server still answers" "$(curl "${TC[@]}" "$U/k/one?offset=-1")" first-stream
curl "${TC[@]}" -X POST -H 'Content-Type: text/plain' --data-binary "after-bad-reload" "$U/reload/s"
if wait_for "$TMP/sse2" '^data: ?after-bad-reload' 5; then ok "the SSE reader from before both reloads still receives"
else not_ok "the SSE reader from before both reloads still receives"; fi
kill "$SSE" 2>/dev/null; wait "$SSE" 2>/dev/null
if grep -q 'ursula\[W\].*tls\|ursula\[E\].*BearSSL' "$TMP/srv-$H.log"; then
  not_ok "no per-connection warnings for failed handshakes" "$(grep 'BearSSL' "$TMP/srv-$H.log" | head -2)"
else ok "no per-connection warnings for failed handshakes (plain HTTP, silent clients)"; fi
lib_kill "$MAIN"

# --- bad pairs at start: exit 2, naming the file -----------------------------------------
# fails DESCRIPTION PATTERN BIN ARGS...: exits 2 with PATTERN on stderr
fails() {
  local d=$1 p=$2 b=$3 rc; shift 3
  timeout 10 "$b" --listen 127.0.0.1:"$H2" --admin-listen off "$@" >/dev/null 2>"$TMP/fail"; rc=$?
  if [ "$rc" = 2 ] && grep -qE -- "$p" "$TMP/fail"; then ok "$d"
  else not_ok "$d" "exit $rc: $(cat "$TMP/fail")"; fi
}
printf -- '-----BEGIN CERTIFICATE-----\nthis is !! not base64 at all\n-----END CERTIFICATE-----\n' >"$TMP/garbage.pem"
printf 'just some text\n' >"$TMP/text.pem"
fails "--tls-cert without --tls-key: exit 2" '--tls-cert without --tls-key' \
  "$TLSBIN" --tls-cert "$C/rsa.pem"
fails "--tls-key without --tls-cert: exit 2" '--tls-key without --tls-cert' \
  "$TLSBIN" --tls-key "$C/rsa.key"
fails "a missing key file: exit 2, naming it" "--tls-key $TMP/nope.key: No such file" \
  "$TLSBIN" --tls-cert "$C/rsa.pem" --tls-key "$TMP/nope.key"
fails "a key that is not the certificate's: exit 2" "--tls-key $C/other.key and --tls-cert $C/rsa.pem: the key does not match" \
  "$TLSBIN" --tls-cert "$C/rsa.pem" --tls-key "$C/other.key"
fails "an EC key for an RSA certificate: exit 2" "--tls-key $C/ec.key and --tls-cert $C/rsa.pem: the key is not of the leaf" \
  "$TLSBIN" --tls-cert "$C/rsa.pem" --tls-key "$C/ec.key"
fails "a certificate file of garbage PEM: exit 2, naming it" "--tls-cert $TMP/garbage.pem: malformed PEM" \
  "$TLSBIN" --tls-cert "$TMP/garbage.pem" --tls-key "$C/rsa.key"
fails "a certificate file with no PEM: exit 2, naming it" "--tls-cert $TMP/text.pem: no CERTIFICATE" \
  "$TLSBIN" --tls-cert "$TMP/text.pem" --tls-key "$C/rsa.key"
fails "a key file of text: exit 2, naming it" "--tls-key $TMP/text.pem: no RSA PRIVATE KEY" \
  "$TLSBIN" --tls-cert "$C/rsa.pem" --tls-key "$TMP/text.pem"
printf 'tls-cert %s\ntls-key %s\n' "$C/rsa.pem" "$C/other.key" >"$TMP/bad.conf"
fails "--check-config reports a mismatched pair" "the key does not match" \
  "$TLSBIN" --check-config "$TMP/bad.conf"
printf 'tls-cert %s\ntls-key %s\n' "$C/rsa.pem" "$C/rsa.key" >"$TMP/good.conf"
out=$("$TLSBIN" --check-config "$TMP/good.conf" 2>&1); rc=$?
same "--check-config accepts a good pair" "$rc:$out" "0:$TMP/good.conf: ok"
if [ -x "$PLAIN" ]; then
  fails "a build without TLS given --tls-cert: exit 2" 'this build has no TLS: build with make TLS=1' \
    "$PLAIN" --tls-cert "$C/rsa.pem" --tls-key "$C/rsa.key"
  fails "... and given --tls-key alone" 'this build has no TLS: build with make TLS=1' \
    "$PLAIN" --tls-key "$C/rsa.key"
else
  not_ok "a build without TLS to try (${PLAIN} is missing: make)"
fi

# --- refused at --max-connections: a TLS client gets no plaintext 503 (it
# would read it as a broken record), only the close; the admin's count says so
read -r HM <<<"$(free_ports 1)"
if start "$TLSBIN" "$HM" "$C/rsa-chain.pem" "$C/rsa.key" --max-connections 1; then
  exec 4<>/dev/tcp/127.0.0.1/"$HM" # holds the one connection
  sleep 0.3
  exec 3<>/dev/tcp/127.0.0.1/"$HM"
  timeout 3 cat <&3 >"$TMP/refused" 2>/dev/null; rc=$?
  exec 3<&- 3>&-
  same "at --max-connections 1, a second client is closed at once with no bytes (no plaintext 503)" \
    "$rc:$(wc -c <"$TMP/refused")" "0:0"
  same "... and counted in ursula_connections_refused_total" \
    "$(curl -s --max-time 5 "http://127.0.0.1:$A/metrics" | sed -n 's/^ursula_connections_refused_total //p')" 1
  exec 4<&- 4>&-
  lib_kill "$SRV"
else
  not_ok "a TLS server with --max-connections 1 starts" "$(tail -3 "$TMP/srv-$HM.log")"
fi

# --- the official client over https ----------------------------------------------------------
if [ -d test/conformance/node_modules/@durable-streams/client ]; then
  URSULA_BIN="$TLSBIN" URSULA_TLS_CERT="$C/rsa-chain.pem" URSULA_TLS_KEY="$C/rsa.key" \
    NODE_EXTRA_CA_CERTS="$C/ca.pem" timeout 300 node test/conformance/clients.mjs >"$TMP/clients" 2>&1
  rc=$?
  sed 's/^/#   clients: /' "$TMP/clients" | grep -E 'not ok|passed|failed' | head -20
  n_ok=$(grep -c '^ok ' "$TMP/clients")
  n_bad=$(grep -c '^not ok ' "$TMP/clients")
  if [ "$rc" = 0 ] && [ "$n_bad" = 0 ] && [ "$n_ok" -gt 0 ] && grep -q 'over https' "$TMP/clients"; then
    ok "the official client over https: all $n_ok checks of clients.mjs pass"
  else
    not_ok "the official client over https" "exit $rc, $n_ok ok, $n_bad not ok: $(grep -A1 '^not ok' "$TMP/clients" | head -6)"
  fi
else
  not_ok "the official client over https (cd test/conformance && npm ci)"
fi

echo "1..$LIB_N"
echo "$((LIB_N - FAILS)) passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
