#!/usr/bin/env bash
# buckets.sh -- buckets and path affinity (issue 16, items 1 and 2)
# against the real binary: the bucket routes (PUT, GET, HEAD, DELETE
# /{b}; GET /{b}/streams; GET /__ursula/buckets), the path rule (which
# paths are buckets, which stay streams), implicit buckets, the listing's
# paging, path-affinity-v1 (a key's streams share one group), and all of
# it in memory, with --wal-dir across kill -9 and a clean stop (and after
# a snapshot), on a 3-node cluster (written through one node, listed
# from each), and with --auth-file.
#
#   bash test/buckets.sh             # uses ./ursula (built by make)
#   URSULA_BIN=path bash test/buckets.sh
#
# Expected values come from the rules (README, Buckets; api.c, BUCKETS),
# never from a run.  Every wait is bounded; nothing leaves 127.0.0.1;
# every process is killed on exit and the temporary directory removed.
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${1:-${URSULA_BIN:-./ursula}}
TMP=$(mktemp -d)
. test/lib.sh
read -r H1 H2 H3 P1 P2 P3 HA <<<"$(free_ports 7)"
CT=(-H 'Content-Type: text/plain')

# same DESCRIPTION GOT WANT
same() {
  if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "got $2, want $3"; fi
}
# code METHOD URL [CURL ARGS...]: the status of one request
code() {
  local m=$1 u=$2; shift 2
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X "$m" "$@" "$u"
}
# get URL [CURL ARGS...]: the body of a GET
get() { local u=$1; shift; curl -s --max-time 5 "$@" "$u"; }
# field METHOD URL NAME [CURL ARGS...]: "STATUS|VALUE" of response field NAME
field() {
  local m=$1 u=$2 n=$3; shift 3
  if [ "$m" = HEAD ]; then set -- -I "$@"; else set -- -X "$m" "$@"; fi
  curl -s -D "$TMP/head" -o /dev/null --max-time 5 "$@" "$u" >/dev/null
  printf '%s|%s' "$(sed -n '1s/^HTTP\/1.1 \([0-9]*\).*/\1/p' "$TMP/head")" \
    "$(tr -d '\r' <"$TMP/head" | sed -n "s/^$n: //Ip" | head -1)"
}
# js EXPR: EXPR evaluated with j = the JSON read from stdin ("BAD" if it
# does not parse)
js() {
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let j;try{j=JSON.parse(s)}catch(e){console.log("BAD");return}console.log(eval(process.argv[1]))})' "$1"
}
# wait_up PORT: until the listener answers (at most 10 s)
wait_up() {
  local i
  for i in $(seq 1 200); do
    [ "$(code GET "http://127.0.0.1:$1/__ursula/buckets")" != 000 ] && return 0
    sleep 0.05
  done
  return 1
}
# start NAME PORT ARGS...: a server in the background, its log $TMP/NAME.log
start() {
  local name=$1 port=$2; shift 2
  "$BIN" --listen 127.0.0.1:$port --core-count 2 --public-status 1 "$@" \
    >"$TMP/$name.log" 2>&1 &
  eval "PID_$name=$!"
  lib_track $!
  wait_up "$port" || not_ok "$name answers" "$(tail -3 "$TMP/$name.log" | tr '\n' '|')"
}
now_ms() { node -e 'console.log(Date.now())'; }

# The ids of the 25 streams of bucket "demo" (varied: digits, '-', '_',
# '.', an affinity key, a 122-byte id), and the body appended to each:
# id number i gets i+1 bytes.
IDS=(a b c 0 9 a-b a_b a.b zz z-1 k/one k/two k/three long/x x.y.z
  "$(printf 'q%.0s' $(seq 1 122))" m1 m2 m3 m10 m11 m100 n- n_ n9)
SORTED=$(printf '%s\n' "${IDS[@]}" | LC_ALL=C sort | tr '\n' ' ')
SUM=0
for i in "${!IDS[@]}"; do SUM=$((SUM + i + 1)); done

# fill URL: bucket "demo" and its 25 streams, each with its body
fill() {
  local u=$1 i
  for i in "${!IDS[@]}"; do
    code PUT "$u/demo/${IDS[$i]}" "${CT[@]}" >/dev/null
    code POST "$u/demo/${IDS[$i]}" "${CT[@]}" --data-binary "$(head -c $((i + 1)) /dev/zero | tr '\0' x)" >/dev/null
  done
}
# pages URL LIMIT: every id of demo's listing, page after page of LIMIT,
# one line each, and "PAGES n" last (at most 30 pages)
pages() {
  local u=$1 lim=$2 after="" n=0 body nx
  while [ $n -lt 30 ]; do
    n=$((n + 1))
    body=$(get "$u/demo/streams?limit=$lim${after:+&after=$after}")
    echo "$body" | js 'j.streams.map(s=>s.name).join("\n")'
    nx=$(echo "$body" | js 'j.next_after===null?"":encodeURIComponent(j.next_after)')
    [ -z "$nx" ] && break
    after=$nx
  done
  echo "PAGES $n"
}

# listed NAME URL: the checks of demo's 25 streams through URL
listed() {
  local n=$1 u=$2 got
  same "$n: GET /demo counts the 25 streams and their bytes" \
    "$(get "$u/demo" | js '[j.name,j.streams,j.bytes].join(",")')" "demo,25,$SUM"
  got=$(pages "$u" 10)
  same "$n: limit=10 pages give every id once, in byte order" \
    "$(echo "$got" | grep -v '^PAGES' | tr '\n' ' ')" "$SORTED"
  same "$n: ... in 3 pages" "$(echo "$got" | grep '^PAGES')" "PAGES 3"
  same "$n: the first page's next_after is its last id" \
    "$(get "$u/demo/streams?limit=10" | js '[j.streams.length,j.next_after===j.streams[9].name].join(",")')" "10,true"
  same "$n: prefix=m1 lists m1 m10 m100 m11" \
    "$(get "$u/demo/streams?prefix=m1" | js 'j.streams.map(s=>s.name).join(" ")+"|"+j.next_after')" "m1 m10 m100 m11|null"
  same "$n: prefix=k/ with after=k/one lists k/three k/two" \
    "$(get "$u/demo/streams?prefix=k%2F&after=k%2Fone" | js 'j.streams.map(s=>s.name).join(" ")')" "k/three k/two"
  same "$n: a listed stream's fields (a.b: 8 bytes)" \
    "$(get "$u/demo/streams?prefix=a.b" | js 'JSON.stringify(j)')" \
    '{"bucket":"demo","streams":[{"name":"a.b","content_type":"text/plain","next_offset":"0000000000000000_0000000000000008","closed":false}],"next_after":null}'
}

# ------------------------------------------------------------ in memory
echo "# buckets.sh: in memory, port $H1"
start mem $H1
U=http://127.0.0.1:$H1

t0=$(now_ms)
same "PUT /demo makes the bucket: 201, Location /demo" \
  "$(field PUT "$U/demo" Location)" "201|/demo"
t1=$(now_ms)
same "PUT /demo again: 200" "$(code PUT "$U/demo")" 200
same "GET /demo: name, no streams, no bytes" \
  "$(get "$U/demo" | js 'Object.keys(j).join(",")+"|"+[j.name,j.streams,j.bytes].join(",")')" \
  "name,streams,bytes,created_ms|demo,0,0"
cm=$(get "$U/demo" | js 'j.created_ms')
if [ "$cm" -ge "$t0" ] 2>/dev/null && [ "$cm" -le "$t1" ]; then ok "created_ms is the time of the PUT ($cm)"
else not_ok "created_ms is the time of the PUT" "got $cm, want $t0..$t1"; fi
same "GET /demo is application/json" "$(field GET "$U/demo" Content-Type)" "200|application/json"
len=$(get "$U/demo" | wc -c)
same "HEAD /demo: 200, the GET's Content-Length, no body" \
  "$(field HEAD "$U/demo" Content-Length)|$(curl -s -I --max-time 5 "$U/demo" | tr -d '\r' | sed '1,/^$/d' | wc -c)" "200|$len|0"
same "POST /demo: 405 with Allow" "$(field POST "$U/demo" Allow "${CT[@]}" --data-binary x)" \
  "405|GET, HEAD, PUT, DELETE, OPTIONS"
same "DELETE /demo (empty, with a record): 204" "$(code DELETE "$U/demo")" 204
same "DELETE /demo again: 404" "$(code DELETE "$U/demo")" 404
same "GET /demo after it: 404" "$(code GET "$U/demo")" 404
same "GET /nosuchbucket: 404" "$(code GET "$U/nosuchbucket")" 404
same "bad bucket names are stream paths as before: PUT /ab, /Demo 201" \
  "$(code PUT "$U/ab" "${CT[@]}") $(code PUT "$U/Demo" "${CT[@]}")" "201 201"
same "... HEAD /ab, /Demo are streams (Stream-Next-Offset)" \
  "$(field HEAD "$U/ab" Stream-Next-Offset) $(field HEAD "$U/Demo" Stream-Next-Offset)" \
  "200|0000000000000000_0000000000000000 200|0000000000000000_0000000000000000"
same "a name starting with __ is no bucket: PUT /__abcd makes a stream" \
  "$(code PUT "$U/__abcd" "${CT[@]}")|$(field HEAD "$U/__abcd" Stream-Next-Offset)" \
  "201|200|0000000000000000_0000000000000000"
same "a path under no bucket name (/v1/stream/x) is a stream as before" \
  "$(code PUT "$U/v1/stream/x" "${CT[@]}") $(code GET "$U/v1/stream/x")" "201 200"

code PUT "$U/demo" >/dev/null
fill "$U"
listed mem "$U"
same "limit=0, 1001, abc, -1, 01: 400" \
  "$(for l in 0 1001 abc -1 01; do echo $(code GET "$U/demo/streams?limit=$l"); done | tr "\n" " ")" \
  "400 400 400 400 400 "
same "limit=1000 is allowed" "$(code GET "$U/demo/streams?limit=1000")" 200
same "PUT /demo/streams: 405 with Allow" "$(field PUT "$U/demo/streams" Allow)" "405|GET, HEAD, OPTIONS"
same "GET /nosuchbucket/streams: 404" "$(code GET "$U/nosuchbucket/streams")" 404
same "a reserved id under a bucket (/demo/attrs) is no stream: 404" \
  "$(code PUT "$U/demo/attrs" "${CT[@]}")" 404
same "DELETE /demo with streams: 409" "$(code DELETE "$U/demo")" 409
same "... which says why, in one line" \
  "$(get "$U/demo" -X DELETE)" "bucket is not empty: it has 25 stream(s); delete them first"
same "... and the bucket is still there" "$(get "$U/demo" | js 'j.streams')" 25

# an implicit bucket: a stream, no PUT /impl
code PUT "$U/impl/x" "${CT[@]}" >/dev/null
same "implicit bucket: GET /impl is 200 with created_ms null" \
  "$(get "$U/impl" | js 'JSON.stringify(j)')" '{"name":"impl","streams":1,"bytes":0,"created_ms":null}'
same "GET /__ursula/buckets lists them by name" \
  "$(get "$U/__ursula/buckets" | js 'JSON.stringify(j)')" \
  "[{\"name\":\"demo\",\"streams\":25,\"bytes\":$SUM},{\"name\":\"impl\",\"streams\":1,\"bytes\":0}]"
same "POST /__ursula/buckets: 405" "$(code POST "$U/__ursula/buckets")" 405
same "DELETE /impl (streams, no record): 409" "$(code DELETE "$U/impl")" 409
code DELETE "$U/impl/x" >/dev/null
same "... once its stream is gone, /impl does not exist: GET, DELETE 404" \
  "$(code GET "$U/impl") $(code DELETE "$U/impl")" "404 404"

# affinity: the groups whose applied index moved
applied() { get "$U/__ursula/cluster" | js 'j.groups.map(g=>g.applied).join(" ")'; }
moved() { # moved BEFORE AFTER: how many groups differ
  local -a a=($1) b=($2); local i n=0
  for i in "${!a[@]}"; do [ "${a[$i]}" != "${b[$i]}" ] && n=$((n + 1)); done
  echo $n
}
before=$(applied)
for i in 1 2 3 4 5 6 7 8; do code PUT "$U/aff1/k/s$i" "${CT[@]}" >/dev/null; done
for i in 1 2 3 4 5 6 7 8; do code POST "$U/aff1/k/s$i" "${CT[@]}" --data-binary x >/dev/null; done
after=$(applied)
same "affinity: /aff1/k/s1..s8 all went to one group" "$(moved "$before" "$after")" 1
before=$after
for i in 1 2 3 4 5 6 7 8; do code PUT "$U/aff1/s$i" "${CT[@]}" >/dev/null; done
after=$(applied)
n=$(moved "$before" "$after")
if [ "$n" -gt 1 ]; then ok "no affinity: /aff1/s1..s8 went to $n groups"
else not_ok "no affinity: /aff1/s1..s8 went to several groups" "$n"; fi
EXT="path-affinity-v1, group-append-transaction-v1"
same "a 3-segment bucket path's responses say Stream-Extensions: $EXT" \
  "$(field GET "$U/aff1/k/s1" Stream-Extensions) $(field HEAD "$U/aff1/k/s1" Stream-Extensions) $(field POST "$U/aff1/k/s1" Stream-Extensions "${CT[@]}" --data-binary y) $(field GET "$U/aff1/k/nope" Stream-Extensions)" \
  "200|$EXT 200|$EXT 204|$EXT 404|$EXT"
same "... a 2-segment one's and another path's do not" \
  "$(field GET "$U/aff1/s1" Stream-Extensions) $(field GET "$U/v1/stream/x" Stream-Extensions) $(field GET "$U/aff1" Stream-Extensions)" \
  "200| 200| 200|"
same "affinity streams list as aff/s" \
  "$(get "$U/aff1/streams?prefix=k%2F" | js 'j.streams.map(s=>s.name).join(" ")')" \
  "k/s1 k/s2 k/s3 k/s4 k/s5 k/s6 k/s7 k/s8"

for id in "${IDS[@]}"; do code DELETE "$U/demo/$id" >/dev/null; done
same "the streams deleted, DELETE /demo: 204" "$(code DELETE "$U/demo")" 204
same "... and GET /demo 404" "$(code GET "$U/demo")" 404
lib_kill $PID_mem

# the README's bucket commands, verbatim but for the port, and what it
# says they print (created_ms aside)
start readme $H2
sed -n '/^```sh buckets/,/^```/p' README.md | sed '1d;$d' |
  sed "s/127\.0\.0\.1:4437/127.0.0.1:$H2/g" >"$TMP/readme.sh"
awk '/^```sh buckets/{f=1} f&&/^prints/{g=1;next} g&&/^```$/{if(h)exit;h=1;next} g&&h' README.md >"$TMP/readme.want"
if [ -s "$TMP/readme.sh" ] && [ -s "$TMP/readme.want" ]; then
  timeout 20 bash "$TMP/readme.sh" 2>&1 | tr -d '\r' |
    sed 's/"created_ms":[0-9]*/"created_ms":T/' >"$TMP/readme.got"
  sed -i 's/"created_ms":[0-9]*/"created_ms":T/' "$TMP/readme.want"
  if cmp -s "$TMP/readme.got" "$TMP/readme.want"; then ok "the README's bucket commands print what it says"
  else not_ok "the README's bucket commands print what it says" "$(diff "$TMP/readme.want" "$TMP/readme.got" | tr '\n' '|')"; fi
else
  not_ok "the README has its bucket commands and their output"
fi
lib_kill $PID_readme

# ------------------------------------------------------------ with --wal-dir
echo "# buckets.sh: --wal-dir, kill -9 and a clean stop"
W=$TMP/wal
start wal $H1 --wal-dir "$W"
code PUT "$U/demo" >/dev/null
code PUT "$U/empty" >/dev/null
fill "$U"
rec=$(get "$U/demo" | js 'j.created_ms')
lib_kill $PID_wal
start wal $H1 --wal-dir "$W"
same "after kill -9: demo's record and its 25 streams" \
  "$(get "$U/demo" | js '[j.streams,j.bytes,j.created_ms].join(",")')" "25,$SUM,$rec"
same "after kill -9: the empty bucket's record" "$(code GET "$U/empty")" 200
listed "after kill -9" "$U"
kill -TERM $PID_wal
for i in $(seq 1 100); do kill -0 $PID_wal 2>/dev/null || break; sleep 0.1; done
lib_kill $PID_wal
start wal $H1 --wal-dir "$W"
same "after a clean stop: the records and the streams" \
  "$(get "$U/__ursula/buckets" | js 'JSON.stringify(j)')" \
  "[{\"name\":\"demo\",\"streams\":25,\"bytes\":$SUM},{\"name\":\"empty\",\"streams\":0,\"bytes\":0}]"
same "after a clean stop: DELETE /empty 204, then 404" \
  "$(code DELETE "$U/empty") $(code DELETE "$U/empty")" "204 404"
lib_kill $PID_wal
start wal $H1 --wal-dir "$W"
same "a deleted record stays deleted across a restart" "$(code GET "$U/empty")" 404
lib_kill $PID_wal

# one group, small snapshots: the records must be in the snapshot
W2=$TMP/wal2
start snap $H1 --wal-dir "$W2" --raft-group-count 1 --snapshot-bytes 4096
code PUT "$U/snapbkt" >/dev/null
for i in $(seq 1 60); do
  code PUT "$U/v1/stream/churn$i" "${CT[@]}" --data-binary "$(head -c 200 /dev/zero | tr '\0' y)" >/dev/null
  code DELETE "$U/v1/stream/churn$i" >/dev/null
done
check "a snapshot was written" [ -f "$W2/g00000/snapshot" ]
lib_kill $PID_snap
start snap $H1 --wal-dir "$W2" --raft-group-count 1 --snapshot-bytes 4096
same "after a snapshot and kill -9: the record (from the snapshot)" \
  "$(get "$U/snapbkt" | js '[j.name,j.created_ms!==null].join(",")')" "snapbkt,true"
lib_kill $PID_snap

# ------------------------------------------------------------ auth
echo "# buckets.sh: --auth-file"
TOK=demo-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
SUB=sub-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
hash() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
printf 'demo read,write /demo %s\nsub read,write /demo/ %s\n' "$(hash "$TOK")" "$(hash "$SUB")" >"$TMP/auth"
"$BIN" --listen 127.0.0.1:$H1 --admin-listen off --core-count 2 --auth-file "$TMP/auth" \
  >"$TMP/auth.log" 2>&1 &
PID_auth=$!
lib_track $PID_auth
for i in $(seq 1 100); do [ "$(code GET "$U/x")" != 000 ] && break; sleep 0.05; done
B=(-H "Authorization: Bearer $TOK")
S=(-H "Authorization: Bearer $SUB")
same "a /demo token: PUT /demo, PUT and POST /demo/s, GET /demo, /demo/streams, /demo/s" \
  "$(code PUT "$U/demo" "${B[@]}") $(code PUT "$U/demo/s" "${B[@]}" "${CT[@]}") $(code POST "$U/demo/s" "${B[@]}" "${CT[@]}" --data-binary x) $(code GET "$U/demo" "${B[@]}") $(code GET "$U/demo/streams" "${B[@]}") $(code GET "$U/demo/s" "${B[@]}")" \
  "201 201 204 200 200 200"
same "... not /other: PUT, GET, GET /other/streams 403" \
  "$(code PUT "$U/other" "${B[@]}") $(code GET "$U/other" "${B[@]}") $(code GET "$U/other/streams" "${B[@]}")" \
  "403 403 403"
same "... no token: 401" "$(code GET "$U/demo")" 401
same "a /demo/ token covers demo's streams, not the bucket routes" \
  "$(code GET "$U/demo/s" "${S[@]}") $(code GET "$U/demo" "${S[@]}") $(code GET "$U/demo/streams" "${S[@]}")" \
  "200 403 403"
same "GET /__ursula/buckets needs a token whose prefix covers it" \
  "$(code GET "$U/__ursula/buckets" "${B[@]}")" 403
lib_kill $PID_auth

# ------------------------------------------------------------ a 3-node cluster
echo "# buckets.sh: a 3-node cluster, peers $P1 $P2 $P3"
printf 'the secret of the buckets test cluster\n' >"$TMP/secret"
chmod 600 "$TMP/secret"
PEERS=(--peer 1=127.0.0.1:$P1 --peer 2=127.0.0.1:$P2 --peer 3=127.0.0.1:$P3
  --cluster-secret-file "$TMP/secret")
start n1 $H1 --wal-dir "$TMP/c1" --node-id 1 "${PEERS[@]}"
start n2 $H2 --wal-dir "$TMP/c2" --node-id 2 "${PEERS[@]}"
start n3 $H3 --wal-dir "$TMP/c3" --node-id 3 "${PEERS[@]}"
# writes through node 1 (retried while groups elect: lib.sh's req)
same "cluster: PUT /demo through node 1: 201" "$(req 1 PUT /demo)" 201
for i in "${!IDS[@]}"; do
  req 1 PUT "/demo/${IDS[$i]}" >/dev/null
  req 1 POST "/demo/${IDS[$i]}" "$(head -c $((i + 1)) /dev/zero | tr '\0' x)" 0 >/dev/null
done
for n in 1 2 3; do
  u=$(url $n "")
  got=""
  for i in $(seq 1 100); do # every node applies in a moment: at most 10 s
    got=$(get "$u/demo" | js '[j.streams,j.bytes,j.created_ms!==null].join(",")')
    [ "$got" = "25,$SUM,true" ] && break
    sleep 0.1
  done
  same "cluster: node $n's GET /demo: 25 streams, their bytes, the record" "$got" "25,$SUM,true"
  same "cluster: node $n lists every id once, in order" \
    "$(pages "$u" 10 | grep -v '^PAGES' | tr '\n' ' ')" "$SORTED"
done
same "cluster: DELETE /demo with streams: 409" "$(req 2 DELETE /demo)" 409
for n in 1 2 3; do lib_kill "$(eval echo \$PID_n$n)"; done

echo "1..$LIB_N"
[ "$FAILS" -eq 0 ] && echo "# buckets.sh: all passed" || echo "# buckets.sh: $FAILS failed"
[ "$FAILS" -eq 0 ]
