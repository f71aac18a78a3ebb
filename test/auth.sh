#!/usr/bin/env bash
# auth.sh -- bearer tokens (--auth-file; issue 17, item 5) against the
# real binary: who gets what on the public and the admin listener, the
# answers' WWW-Authenticate (RFC 6750 section 3), the CORS preflight, a
# bad file at start, and SIGHUP: a reload that adds a token, one that
# fails and keeps the table in force, and live readers whose token a
# reload removed being ended (and the others not).
#
#   bash test/auth.sh                # uses ./ursula (built by make)
#   URSULA_BIN=path bash test/auth.sh
#
# Tokens are made here, and the file holds their SHA-256 as sha256sum
# prints it.  Every wait is bounded; nothing leaves 127.0.0.1.
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${1:-${URSULA_BIN:-./ursula}}
TMP=$(mktemp -d)
. test/lib.sh
read -r H A H0 <<<"$(free_ports 3)"
U=http://127.0.0.1:$H
AU=http://127.0.0.1:$A

# same DESCRIPTION GOT WANT
same() {
  if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "got $2, want $3"; fi
}
# code METHOD URL [CURL ARGS...]: the status of one request
code() {
  local m=$1 u=$2; shift 2
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X "$m" "$@" "$u"
}
# field METHOD URL NAME [CURL ARGS...]: "STATUS|VALUE" of response field NAME
field() {
  local m=$1 u=$2 n=$3; shift 3
  curl -s -D "$TMP/head" -o /dev/null --max-time 5 -X "$m" "$@" "$u" >/dev/null
  printf '%s|%s' "$(sed -n '1s/^HTTP\/1.1 \([0-9]*\).*/\1/p' "$TMP/head")" \
    "$(tr -d '\r' <"$TMP/head" | sed -n "s/^$n: //Ip" | head -1)"
}
hash() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
# wait_up PORT: until the listener answers (at most 5 s)
wait_up() {
  local i
  for i in $(seq 1 100); do
    [ "$(code GET "http://127.0.0.1:$1/healthz")" != 000 ] && return 0
    sleep 0.05
  done
  return 1
}
# metric NAME{LABELS}: its value in a scrape with the admin token
metric() {
  curl -s --max-time 5 -H "Authorization: Bearer $ADM" "$AU/metrics" |
    awk -v k="$1" '$1 == k { print $2 }'
}

CT=(-H 'Content-Type: text/plain')
RD=reader-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
WR=writer-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
PF=prefix-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
ADM=admin-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
NEW=late-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
GONE=gone-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
KEEP=keep-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
SHORT=fifteen-bytes-x # 15 bytes: too short whatever the file says
bearer() { echo "Authorization: Bearer $1"; }

# --- no auth file: open, as before -------------------------------------------
"$BIN" --listen 127.0.0.1:$H0 --admin-listen off --core-count 2 \
  >"$TMP/open.log" 2>&1 &
OPEN=$!
lib_track $OPEN
for i in $(seq 1 100); do
  [ "$(code GET "http://127.0.0.1:$H0/x")" != 000 ] && break
  sleep 0.05
done
same "no auth file: PUT, POST, GET without a token (201 204 200)" \
  "$(code PUT "http://127.0.0.1:$H0/s" "${CT[@]}") $(code POST "http://127.0.0.1:$H0/s" "${CT[@]}" --data-binary x) $(code GET "http://127.0.0.1:$H0/s")" \
  "201 204 200"
lib_kill $OPEN

# --- a bad auth file at start: exit 2, FILE:LINE ------------------------------
printf '# tokens\nreader read /r/ %s\nwriter reed * %s\n' "$(hash "$RD")" \
  "$(hash "$WR")" >"$TMP/bad"
"$BIN" --listen 127.0.0.1:$H0 --admin-listen off --auth-file "$TMP/bad" \
  >"$TMP/bad.out" 2>&1 &
BADPID=$!
lib_track $BADPID
rc=999
for i in $(seq 1 100); do
  if ! kill -0 $BADPID 2>/dev/null; then wait $BADPID; rc=$?; break; fi
  sleep 0.05
done
lib_untrack $BADPID
same "a bad auth file at start: exit status 2" "$rc" 2
if grep -qF "$TMP/bad:3: scopes: unknown scope" "$TMP/bad.out"; then
  ok "... naming FILE:LINE and why"
else
  not_ok "... naming FILE:LINE and why" "$(tr '\n' '|' <"$TMP/bad.out")"
fi

# --- the table ------------------------------------------------------------------
# base: the table the server starts with, less the tokens a reload removes
base() {
  cat <<EOF
# NAME SCOPES PREFIX SHA256HEX
reader  read        *      $(hash "$RD")
writer  read,write  *      $(hash "$WR")
scoped  read,write  /p/    $(hash "$PF")
ops     admin       *      $(hash "$ADM")
short   read        *      $(hash "$SHORT")
keep    read        /s     $(hash "$KEEP")
EOF
}
{ base; echo "gone read * $(hash "$GONE")"; } >"$TMP/tokens"
"$BIN" --listen 127.0.0.1:$H --admin-listen 127.0.0.1:$A --core-count 2 \
  --auth-file "$TMP/tokens" --sse-keepalive-ms 200 --public-status 1 \
  >"$TMP/auth.log" 2>&1 &
SRV=$!
lib_track $SRV
wait_up "$A" || not_ok "the server starts with the auth file"

same "no token: 401 with WWW-Authenticate: Bearer realm=\"ursula\"" \
  "$(field GET "$U/s" WWW-Authenticate)" '401|Bearer realm="ursula"'
same "another scheme (Basic): 401, the same challenge" \
  "$(field GET "$U/s" WWW-Authenticate -H 'Authorization: Basic dXNlcjpwYXNz')" \
  '401|Bearer realm="ursula"'
same "an unknown token: 401 with error=\"invalid_token\"" \
  "$(field GET "$U/s" WWW-Authenticate -H "$(bearer not-a-token-anyone-has)")" \
  '401|Bearer realm="ursula", error="invalid_token"'
same "a malformed one (two words): 401 invalid_token" \
  "$(field GET "$U/s" WWW-Authenticate -H 'Authorization: Bearer two words')" \
  '401|Bearer realm="ursula", error="invalid_token"'
same "a 15-byte token, though its hash is in the file: 401 invalid_token" \
  "$(field GET "$U/s" WWW-Authenticate -H "$(bearer "$SHORT")")" \
  '401|Bearer realm="ursula", error="invalid_token"'
body=$(curl -s --max-time 5 "$U/s")
same "the body of a 401 is one text line" "$body" \
  "authentication required: send Authorization: Bearer TOKEN"

same "write token: PUT 201, POST 204" \
  "$(code PUT "$U/s" "${CT[@]}" -H "$(bearer "$WR")") $(code POST "$U/s" "${CT[@]}" --data-binary hello -H "$(bearer "$WR")")" \
  "201 204"
same "the scheme name in any case (bearer): POST 204" \
  "$(code POST "$U/s" "${CT[@]}" --data-binary ! -H "authorization: bEaReR $WR")" 204
same "read token: GET 200 with the data" \
  "$(curl -s --max-time 5 -H "$(bearer "$RD")" "$U/s") $(code GET "$U/s" -H "$(bearer "$RD")")" \
  "hello! 200"
same "read token: HEAD 200" "$(code HEAD "$U/s" -H "$(bearer "$RD")")" 200
same "read token: POST 403 with error=\"insufficient_scope\"" \
  "$(field POST "$U/s" WWW-Authenticate "${CT[@]}" --data-binary x -H "$(bearer "$RD")")" \
  '403|Bearer realm="ursula", error="insufficient_scope"'
same "read token: PUT and DELETE 403" \
  "$(code PUT "$U/t" "${CT[@]}" -H "$(bearer "$RD")") $(code DELETE "$U/s" -H "$(bearer "$RD")")" \
  "403 403"
same "the read token's refused POST appended nothing" \
  "$(curl -s --max-time 5 -H "$(bearer "$RD")" "$U/s")" "hello!"

same "prefix token (/p/): PUT, POST, GET under /p/ (201 204 200)" \
  "$(code PUT "$U/p/a" "${CT[@]}" -H "$(bearer "$PF")") $(code POST "$U/p/a" "${CT[@]}" --data-binary x -H "$(bearer "$PF")") $(code GET "$U/p/a" -H "$(bearer "$PF")")" \
  "201 204 200"
same "prefix token on another prefix: GET of an existing stream 403 insufficient_scope" \
  "$(field GET "$U/s" WWW-Authenticate -H "$(bearer "$PF")")" \
  '403|Bearer realm="ursula", error="insufficient_scope"'
same "... and of a stream that does not exist: 403 too, not 404" \
  "$(code GET "$U/nothing/here" -H "$(bearer "$PF")") $(code GET "$U/nothing/here" -H "$(bearer "$RD")")" \
  "403 404"
same "... /p (no slash) and /px are not under /p/: 403 403" \
  "$(code GET "$U/p" -H "$(bearer "$PF")") $(code PUT "$U/px" "${CT[@]}" -H "$(bearer "$PF")")" \
  "403 403"

pre=$(field OPTIONS "$U/p/a" Access-Control-Allow-Headers \
  -H 'Origin: https://example.com' -H 'Access-Control-Request-Method: POST' \
  -H 'Access-Control-Request-Headers: authorization')
case ${pre,,} in
  204\|*authorization*) ok "OPTIONS preflight without a token: 204, Authorization allowed" ;;
  *) not_ok "OPTIONS preflight without a token: 204, Authorization allowed" "$pre" ;;
esac
exp=$(field GET "$U/s" Access-Control-Expose-Headers)
case $exp in
  401\|*WWW-Authenticate*) ok "WWW-Authenticate is an exposed header (CORS)" ;;
  *) not_ok "WWW-Authenticate is an exposed header (CORS)" "$exp" ;;
esac

same "public /__ursula/cluster (--public-status 1): 401 without a token, 403 read, 200 admin" \
  "$(code GET "$U/__ursula/cluster") $(code GET "$U/__ursula/cluster" -H "$(bearer "$RD")") $(code GET "$U/__ursula/cluster" -H "$(bearer "$ADM")")" \
  "401 403 200"
same "admin listener: /metrics 401 without a token, 403 write, 200 admin" \
  "$(code GET "$AU/metrics") $(code GET "$AU/metrics" -H "$(bearer "$WR")") $(code GET "$AU/metrics" -H "$(bearer "$ADM")")" \
  "401 403 200"
same "admin listener: /__ursula/cluster 401 without, 200 admin" \
  "$(code GET "$AU/__ursula/cluster") $(code GET "$AU/__ursula/cluster" -H "$(bearer "$ADM")")" \
  "401 200"
same "admin listener: /healthz and /readyz 200 without a token" \
  "$(code GET "$AU/healthz") $(code GET "$AU/readyz")" "200 200"
r401=$(metric 'ursula_auth_refused_total{code="401"}')
r403=$(metric 'ursula_auth_refused_total{code="403"}')
code GET "$U/s" >/dev/null
code POST "$U/s" "${CT[@]}" --data-binary x -H "$(bearer "$RD")" >/dev/null
same "refusals counted: ursula_auth_refused_total 401 and 403 one more each" \
  "$(( $(metric 'ursula_auth_refused_total{code="401"}') - r401 )) $(( $(metric 'ursula_auth_refused_total{code="403"}') - r403 ))" \
  "1 1"

# --- SIGHUP: reloads --------------------------------------------------------------
# within SECS PID: wait at most SECS seconds for PID to end; 0 if it did
within() {
  local end=$(( $(date +%s%N) + $1 * 1000000000 ))
  while [ "$(date +%s%N)" -lt $end ]; do
    kill -0 "$2" 2>/dev/null || return 0
    sleep 0.02
  done
  return 1
}
# logged PATTERN: wait at most 2 s for a line of the server's log
logged() {
  local i
  for i in $(seq 1 100); do
    grep -qF "$1" "$TMP/auth.log" && return 0
    sleep 0.02
  done
  return 1
}
# swap: the file becomes $TMP/tokens.new (at once, as an editor's save)
swap() { mv "$TMP/tokens.new" "$TMP/tokens"; }
same "before the reload, the late token is unknown: 401" \
  "$(code GET "$U/s" -H "$(bearer "$NEW")")" 401
{ base; echo "gone read * $(hash "$GONE")"; echo "late read * $(hash "$NEW")"; } \
  >"$TMP/tokens.new" && swap
kill -HUP $SRV
got=401
for i in $(seq 1 100); do # at most 2 s
  got=$(code GET "$U/s" -H "$(bearer "$NEW")")
  [ "$got" = 200 ] && break
  sleep 0.02
done
same "a token added to the file works right after kill -HUP" "$got" 200
check "... and the log says the table was reloaded" \
  logged "auth: reloaded $TMP/tokens: 8 token(s)"

cp "$TMP/tokens" "$TMP/tokens.good"
{ base; echo "late read * $(hash "$NEW")"; echo "broken read,nope * $(hash x)"; } \
  >"$TMP/tokens.new" && swap
kill -HUP $SRV
check "a bad file on reload: the error is logged with FILE:LINE" \
  logged "auth: reload failed, the table in force stays: $TMP/tokens:9: scopes: unknown scope"
same "... and the table in force stays: the late and the gone tokens still read (200 200)" \
  "$(code GET "$U/s" -H "$(bearer "$NEW")") $(code GET "$U/s" -H "$(bearer "$GONE")")" \
  "200 200"
mv "$TMP/tokens.good" "$TMP/tokens"

# live readers: SSE with the token a reload removes, SSE with one it
# keeps, a long-poll with the removed one
off=$(curl -s -D - -o /dev/null -H "$(bearer "$RD")" "$U/s" | tr -d '\r' |
  sed -n 's/^Stream-Next-Offset: //Ip')
curl -s -N --max-time 30 -H "$(bearer "$GONE")" "$U/s?offset=-1&live=sse" \
  >"$TMP/sse-gone" 2>&1 &
SG=$!
curl -s -N --max-time 30 -H "$(bearer "$KEEP")" "$U/s?offset=-1&live=sse" \
  >"$TMP/sse-keep" 2>&1 &
SK=$!
curl -s -o "$TMP/poll-gone" -D "$TMP/poll-gone.head" --max-time 30 \
  -H "$(bearer "$GONE")" "$U/s?offset=$off&live=long-poll" &
PG=$!
lib_track $SG; lib_track $SK; lib_track $PG
live=0
for i in $(seq 1 100); do
  live=$(metric 'ursula_live_connections')
  [ "${live:-0}" -ge 3 ] && grep -q 'event:' "$TMP/sse-gone" &&
    grep -q 'event:' "$TMP/sse-keep" && break
  sleep 0.05
done
same "three live readers are waiting" "$live" 3
{ base; echo "late read * $(hash "$NEW")"; } >"$TMP/tokens.new" && swap
kill -HUP $SRV
if within 2 $SG; then
  ok "an SSE reader whose token a reload removed: its response ends within 2 s"
else
  not_ok "an SSE reader whose token a reload removed: its response ends within 2 s"
fi
if within 2 $PG; then
  same "a long-poll whose token a reload removed: 401 invalid_token within 2 s" \
    "$(tr -d '\r' <"$TMP/poll-gone.head" | sed -n '1s/^HTTP\/1.1 \([0-9]*\).*/\1/p')|$(tr -d '\r' <"$TMP/poll-gone.head" | sed -n 's/^WWW-Authenticate: //Ip')" \
    '401|Bearer realm="ursula", error="invalid_token"'
else
  not_ok "a long-poll whose token a reload removed: 401 invalid_token within 2 s"
fi
sleep 0.5
if kill -0 $SK 2>/dev/null; then
  ok "an SSE reader whose token stays is not ended"
else
  not_ok "an SSE reader whose token stays is not ended" "$(tr '\n' '|' <"$TMP/sse-keep")"
fi
code POST "$U/s" "${CT[@]}" --data-binary after-reload -H "$(bearer "$WR")" >/dev/null
for i in $(seq 1 100); do grep -q after-reload "$TMP/sse-keep" && break; sleep 0.02; done
check "... and it goes on getting the stream's data" grep -q after-reload "$TMP/sse-keep"
same "the removed token is refused after the reload: 401" \
  "$(code GET "$U/s" -H "$(bearer "$GONE")")" 401
lines=$(grep -F 'took the reloaded auth table (7 token(s))' "$TMP/auth.log")
same "one INFO line per core for that reload (2 cores)" \
  "$(printf '%s\n' "$lines" | grep -c .)" 2
same "... which ended the 2 live readers of the removed token in all" \
  "$(printf '%s\n' "$lines" | sed -n 's/.*): \([0-9]*\) of .*/\1/p' | awk '{ n += $1 } END { print n + 0 }')" 2
lib_kill $SK

# --- the log ---------------------------------------------------------------------
leak=""
for s in "$RD" "$WR" "$PF" "$ADM" "$NEW" "$GONE" "$KEEP" "$(hash "$RD")" \
  "$(hash "$WR")" "$(hash "$PF")" "$(hash "$ADM")" "$(hash "$NEW")" \
  "$(hash "$GONE")" "$(hash "$KEEP")"; do
  grep -qF "$s" "$TMP/auth.log" "$TMP/bad.out" && leak="$leak $s"
done
same "the log names no token and no hash" "${leak:-none}" none
if grep -q 'ursula\[I\].*\(401\|403\)' "$TMP/auth.log"; then
  not_ok "refusals are not logged at info" "$(grep 'ursula\[I\]' "$TMP/auth.log" | tr '\n' '|')"
else
  ok "refusals are not logged at info"
fi

echo "1..$LIB_N"
[ "$FAILS" -eq 0 ]
