#!/usr/bin/env bash
# snapshots.sh -- snapshots, retention and bootstrap (issue 16, item 6:
# the Loro design) against the real binary: every route, status and
# header of README "Snapshots and bootstrap" (api.c, SNAPSHOTS; stream.c,
# SNAPSHOTS), each error rule, the bootstrap's multipart body read by the
# test's own strict parser (test/multipart.mjs), in memory, with
# --wal-dir across kill -9 and across a state-machine snapshot (small
# --snapshot-bytes), on a 3-node cluster (published through one node,
# read from each), with --auth-file, and a Loro session (test/loro.mjs).
#
#   bash test/snapshots.sh             # uses ./ursula (built by make)
#   URSULA_BIN=path bash test/snapshots.sh
#   NO_LORO=1 bash test/snapshots.sh   # without test/loro.mjs
#
# Expected values come from the rules, never from a run.  Every wait is
# bounded; nothing leaves 127.0.0.1; every process is killed on exit and
# the temporary directory removed.
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${1:-${URSULA_BIN:-./ursula}}
TMP=$(mktemp -d)
. test/lib.sh
read -r H1 H2 H3 P1 P2 P3 <<<"$(free_ports 6)"
OCT=(-H 'Content-Type: application/octet-stream')

# same DESCRIPTION GOT WANT
same() {
  if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "got $2, want $3"; fi
}
# code METHOD URL [CURL ARGS...]: the status of one request
code() {
  local m=$1 u=$2; shift 2
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X "$m" "$@" "$u"
}
get() { local u=$1; shift; curl -s --max-time 5 "$@" "$u"; }
# field METHOD URL NAME [CURL ARGS...]: "STATUS|VALUE" of response field NAME
field() {
  local m=$1 u=$2 n=$3; shift 3
  if [ "$m" = HEAD ]; then set -- -I "$@"; else set -- -X "$m" "$@"; fi
  curl -s -D "$TMP/head" -o /dev/null --max-time 5 "$@" "$u" >/dev/null
  printf '%s|%s' "$(sed -n '1s/^HTTP\/1.1 \([0-9]*\).*/\1/p' "$TMP/head")" \
    "$(tr -d '\r' <"$TMP/head" | sed -n "s/^$n: //Ip" | head -1)"
}
# fields METHOD URL N1,N2,.. [CURL ARGS...]: "STATUS|V1|V2.." (absent: "")
fields() {
  local m=$1 u=$2 ns=$3 n out; shift 3
  if [ "$m" = HEAD ]; then set -- -I "$@"; else set -- -X "$m" "$@"; fi
  curl -s -D "$TMP/head" -o "$TMP/body" --max-time 5 "$@" "$u" >/dev/null
  out=$(sed -n '1s/^HTTP\/1.1 \([0-9]*\).*/\1/p' "$TMP/head")
  for n in ${ns//,/ }; do
    out="$out|$(tr -d '\r' <"$TMP/head" | sed -n "s/^$n: //Ip" | head -1)"
  done
  printf '%s' "$out"
}
# boot URL: the parts of a GET bootstrap as JSON (or "BAD: why"), and
# the response's head in $TMP/bhead
boot() {
  curl -s -D "$TMP/bhead" -o "$TMP/bbody" --max-time 10 "$1" >/dev/null
  node test/multipart.mjs "$TMP/bhead" "$TMP/bbody"
}
bh() { tr -d '\r' <"$TMP/bhead" | sed -n "s/^$1: //Ip" | head -1; }
# digest TYPE BYTES: what Stream-Snapshot-Digest must be
digest() { printf 'sha256:%s' "$( { printf '%s\0' "$1"; printf '%s' "$2"; } | sha256sum | cut -d' ' -f1)"; }
pad() { printf '%020d' "$1"; }
off() { printf '0000000000000000_%016d' "$1"; }
wait_up() {
  local i
  for i in $(seq 1 200); do
    [ "$(code GET "http://127.0.0.1:$1/__ursula/buckets")" != 000 ] && return 0
    sleep 0.05
  done
  return 1
}
start() {
  local name=$1 port=$2; shift 2
  "$BIN" --listen 127.0.0.1:$port --core-count 2 "$@" >"$TMP/$name.log" 2>&1 &
  eval "PID_$name=$!"
  lib_track $!
  wait_up "$port" || not_ok "$name answers" "$(tail -3 "$TMP/$name.log" | tr '\n' '|')"
}

U=http://127.0.0.1:$H1
S=$U/demo/doc
X='application/x-test'
D1=$(digest $X SNAP1)
D2=$(digest $X SNAP2)

# fill: bucket demo, stream doc (octet-stream) with appends aa, bbb,
# cccc: boundaries 0 2 5 9
fill() {
  code PUT "$U/demo" >/dev/null
  code PUT "$S" "${OCT[@]}" >/dev/null
  for b in aa bbb cccc; do code POST "$S" "${OCT[@]}" --data-binary $b >/dev/null; done
}

# ------------------------------------------------------------ in memory
echo "# snapshots.sh: in memory"
start mem $H1 --max-catchup-bytes 4096
fill
same "no snapshot yet: GET, HEAD .../snapshot 404" \
  "$(code GET "$S/snapshot") $(curl -s -o /dev/null -I -w '%{http_code}' "$S/snapshot")" "404 404"
same "no snapshot yet: bootstrap: an empty octet-stream part, then each append" \
  "$(boot "$S/bootstrap")" \
  '[["application/octet-stream",""],["application/octet-stream","aa"],["application/octet-stream","bbb"],["application/octet-stream","cccc"]]'
same "... Stream-Snapshot-Offset -1, Stream-Next-Offset the tail, Up-To-Date" \
  "$(bh Stream-Snapshot-Offset) $(bh Stream-Next-Offset) $(bh Stream-Up-To-Date) $(bh Stream-Closed)" \
  "-1 $(off 9) true "
P=(-H "Content-Type: $X" --data-binary SNAP1)
same "PUT snapshot at 3 (inside an append): 400" "$(code PUT "$S/snapshot/3" "${P[@]}")" 400
same "PUT snapshot at 10 (past the tail): 400" "$(code PUT "$S/snapshot/10" "${P[@]}")" 400
same "PUT snapshot at abc, -1, 1.5: 400" \
  "$(code PUT "$S/snapshot/abc" "${P[@]}") $(code PUT "$S/snapshot/-1" "${P[@]}") $(code PUT "$S/snapshot/1.5" "${P[@]}")" "400 400 400"
same "PUT snapshot of a stream that does not exist: 404" \
  "$(code PUT "$U/demo/nope/snapshot/0" "${P[@]}")" 404
same "Stream-Snapshot-Match of a digest while there is none: 409" \
  "$(code PUT "$S/snapshot/5" "${P[@]}" -H "Stream-Snapshot-Match: $D2")" 409
same "PUT snapshot at 5, Stream-Snapshot-Match: none: 201, Location, offset, digest" \
  "$(fields PUT "$S/snapshot/5" Location,Stream-Snapshot-Offset,Stream-Snapshot-Digest "${P[@]}" -H 'Stream-Snapshot-Match: none')" \
  "201|/demo/doc/snapshot/$(pad 5)|$(pad 5)|$D1"
same "the same again (20-digit offset): 200, the same headers" \
  "$(fields PUT "$S/snapshot/$(pad 5)" Location,Stream-Snapshot-Offset,Stream-Snapshot-Digest "${P[@]}")" \
  "200|/demo/doc/snapshot/$(pad 5)|$(pad 5)|$D1"
same "... and with this server's offset form: 200" \
  "$(code PUT "$S/snapshot/$(off 5)" "${P[@]}")" 200
same "other bytes at 5: 409; another type, the same bytes: 409" \
  "$(code PUT "$S/snapshot/5" -H "Content-Type: $X" --data-binary SNAP2) $(code PUT "$S/snapshot/5" -H 'Content-Type: text/plain' --data-binary SNAP1)" \
  "409 409"
same "an offset below the current snapshot's (2): 409" \
  "$(code PUT "$S/snapshot/2" "${P[@]}")" 409
same "GET .../snapshot: 307 to its offset (absolute path), with its headers" \
  "$(fields GET "$S/snapshot" Location,Stream-Snapshot-Offset,Stream-Snapshot-Digest)" \
  "307|/demo/doc/snapshot/$(pad 5)|$(pad 5)|$D1"
same "HEAD .../snapshot: 307 likewise" \
  "$(fields HEAD "$S/snapshot" Location)" "307|/demo/doc/snapshot/$(pad 5)"
same "GET .../snapshot/5: 200, the bytes, its type, offset, digest" \
  "$(fields GET "$S/snapshot/5" Content-Type,Stream-Snapshot-Offset,Stream-Snapshot-Digest)|$(cat "$TMP/body")" \
  "200|$X|$(pad 5)|$D1|SNAP1"
same "HEAD .../snapshot/5: 200, Content-Length 5, no body" \
  "$(fields HEAD "$S/snapshot/5" Content-Length)|$(curl -s --head -o /dev/null -w '%{size_download}' "$S/snapshot/5")" "200|5|0"
same "GET .../snapshot/9 (none there): 404" "$(code GET "$S/snapshot/9")" 404
same "Stream-Snapshot-Match: none while there is one: 409" \
  "$(code PUT "$S/snapshot/9" -H "Content-Type: $X" --data-binary SNAP2 -H 'Stream-Snapshot-Match: none')" 409
same "Stream-Snapshot-Match of another digest: 409" \
  "$(code PUT "$S/snapshot/9" -H "Content-Type: $X" --data-binary SNAP2 -H "Stream-Snapshot-Match: $D2")" 409
same "a newer one at 9, Stream-Snapshot-Match: the current digest: 201" \
  "$(fields PUT "$S/snapshot/9" Stream-Snapshot-Digest -H "Content-Type: $X" --data-binary SNAP2 -H "Stream-Snapshot-Match: $D1")" \
  "201|$D2"
same "... it replaced the older one: GET /5 404, /9 200, .../snapshot 307 to 9" \
  "$(code GET "$S/snapshot/5") $(code GET "$S/snapshot/9") $(field GET "$S/snapshot" Location)" \
  "404 200 307|/demo/doc/snapshot/$(pad 9)"
same "HEAD of the stream: its snapshot's offset and digest" \
  "$(fields HEAD "$S" Stream-Snapshot-Offset,Stream-Snapshot-Digest)" "200|$(pad 9)|$D2"
same "DELETE the visible snapshot: 409; one that is not there: 404" \
  "$(code DELETE "$S/snapshot/9") $(code DELETE "$S/snapshot/5")" "409 404"
same "405 with Allow: POST .../snapshot/9" \
  "$(field POST "$S/snapshot/9" Allow)" "405|GET, HEAD, PUT, DELETE, OPTIONS"
same "405 with Allow: PUT .../snapshot, GET .../retention/5, POST .../bootstrap" \
  "$(field PUT "$S/snapshot" Allow) $(field GET "$S/retention/5" Allow) $(field POST "$S/bootstrap" Allow)" \
  "405|GET, HEAD, OPTIONS 405|PUT, OPTIONS 405|GET, HEAD, OPTIONS"
same "bootstrap?live=sse, ?live=long-poll: 400" \
  "$(code GET "$S/bootstrap?live=sse") $(code GET "$S/bootstrap?live=long-poll")" "400 400"
same "bootstrap from the snapshot at 9: its part, no update part" \
  "$(boot "$S/bootstrap")|$(bh Stream-Snapshot-Offset)|$(bh Stream-Next-Offset)|$(bh Stream-Up-To-Date)" \
  "[[\"$X\",\"SNAP2\"]]|$(pad 9)|$(off 9)|true"

# a second stream for retention: appends of 2, 3, 4 bytes, snapshot at 5
R=$U/demo/ret
code PUT "$R" "${OCT[@]}" >/dev/null
for b in aa bbb cccc; do code POST "$R" "${OCT[@]}" --data-binary $b >/dev/null; done
code PUT "$R/snapshot/5" "${P[@]}" >/dev/null
same "PUT retention at 3 (inside an append): 400; at 10 (past the tail): 400" \
  "$(code PUT "$R/retention/3") $(code PUT "$R/retention/10")" "400 400"
same "PUT retention at 9, past the snapshot at 5: 409" "$(code PUT "$R/retention/9")" 409
same "PUT .../retention without an offset: 400" "$(code PUT "$R/retention")" 400
same "PUT retention of a stream that does not exist: 404" "$(code PUT "$U/demo/nope/retention/0")" 404
same "PUT retention at 5: 204, Stream-Retained-Offset: 5" \
  "$(field PUT "$R/retention/5" Stream-Retained-Offset)" "204|5"
same "again at 5, and at 2 (below): 204 with the current one, 5" \
  "$(field PUT "$R/retention/$(pad 5)" Stream-Retained-Offset) $(field PUT "$R/retention/2" Stream-Retained-Offset)" \
  "204|5 204|5"
same "a catch-up read at 0 and at 2 (below): 410, Stream-Next-Offset: the retained offset" \
  "$(field GET "$R?offset=$(off 0)" Stream-Next-Offset) $(field GET "$R?offset=$(off 2)" Stream-Next-Offset)" \
  "410|$(off 5) 410|$(off 5)"
same "HEAD at 2: 410 too" "$(field HEAD "$R?offset=$(off 2)" Stream-Next-Offset)" "410|$(off 5)"
same "long-poll and SSE at 2: 410, Stream-Next-Offset" \
  "$(field GET "$R?offset=$(off 2)&live=long-poll" Stream-Next-Offset) $(field GET "$R?offset=$(off 2)&live=sse" Stream-Next-Offset)" \
  "410|$(off 5) 410|$(off 5)"
same "offset=-1 reads from the retained offset: cccc, Stream-Retained-Offset: 5" \
  "$(fields GET "$R?offset=-1" Stream-Next-Offset,Stream-Retained-Offset)|$(cat "$TMP/body")" \
  "200|$(off 9)|5|cccc"
same "no offset: the same" "$(get "$R")" cccc
same "a read at the retained offset: 200 cccc" "$(get "$R?offset=$(off 5)")" cccc
same "HEAD: Stream-Retained-Offset: 5" "$(field HEAD "$R" Stream-Retained-Offset)" "200|5"
same "PUT snapshot at 2, below the retained offset: 400" "$(code PUT "$R/snapshot/2" "${P[@]}")" 400
same "bootstrap after retention: the snapshot, then each append after it" \
  "$(boot "$R/bootstrap")|$(bh Stream-Snapshot-Offset)|$(bh Stream-Retained-Offset)" \
  "[[\"$X\",\"SNAP1\"],[\"application/octet-stream\",\"cccc\"]]|$(pad 5)|5"
same "a fork below the retained offset: 410" \
  "$(code PUT "$U/v1/stream/f1" "${OCT[@]}" -H 'Stream-Forked-From: /demo/ret' -H "Stream-Fork-Offset: $(off 2)")" 410
same "a fork at or above it: 409 (a fork reads its source from 0)" \
  "$(code PUT "$U/v1/stream/f2" "${OCT[@]}" -H 'Stream-Forked-From: /demo/ret' -H "Stream-Fork-Offset: $(off 5)")" 409
# a stream with a fork: retention refused while the fork holds it
code PUT "$U/demo/src" "${OCT[@]}" >/dev/null
for b in aa bbb; do code POST "$U/demo/src" "${OCT[@]}" --data-binary $b >/dev/null; done
same "a fork of /demo/src: 201" \
  "$(code PUT "$U/v1/stream/fk" "${OCT[@]}" -H 'Stream-Forked-From: /demo/src')" 201
same "retention while a fork reads the stream: 409" "$(code PUT "$U/demo/src/retention/2")" 409
code DELETE "$U/v1/stream/fk" >/dev/null
same "... once the fork is gone: 204" "$(code PUT "$U/demo/src/retention/2")" 204

# JSON: each part one append's messages as an array; closed
J=$U/demo/js
code PUT "$J" -H 'Content-Type: application/json' >/dev/null
code POST "$J" -H 'Content-Type: application/json' --data-binary '[1,2]' >/dev/null
code POST "$J" -H 'Content-Type: application/json' --data-binary '{"a":"--x"}' >/dev/null
code POST "$J" -H 'Content-Type: application/json' -H 'Stream-Closed: true' >/dev/null
same "a JSON stream's bootstrap: one array per append; Stream-Closed" \
  "$(boot "$J/bootstrap")|$(bh Stream-Closed)|$(bh Stream-Up-To-Date)" \
  '[["application/octet-stream",""],["application/json","[1,2]"],["application/json","[{\"a\":\"--x\"}]"]]|true|true'
# past --max-catchup-bytes (4096): whole appends, then stop
BIG=$U/demo/big
code PUT "$BIG" "${OCT[@]}" >/dev/null
for i in 1 2 3; do
  head -c 3000 /dev/zero | tr '\0' "$i" >"$TMP/b$i"
  code POST "$BIG" "${OCT[@]}" --data-binary "@$TMP/b$i" >/dev/null
done
got=$(boot "$BIG/bootstrap" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{const j=JSON.parse(s);console.log(j.map(p=>p[1].length).join(","))}catch(e){console.log(s)}})')
same "past --max-catchup-bytes: one whole append, no Up-To-Date, Next-Offset its end" \
  "$got|$(bh Stream-Up-To-Date)|$(bh Stream-Next-Offset)" "0,3000||$(off 3000)"
same "... an ordinary read from there gives the rest" \
  "$(get "$BIG?offset=$(off 3000)" | wc -c | tr -d ' ')" 6000
# a snapshot whose bytes hold the boundary's prefix, and binary bytes
printf 'x\r\n--ursula-bootstrap-\r\n\0\377' >"$TMP/odd"
code PUT "$U/demo/odd" "${OCT[@]}" >/dev/null
code POST "$U/demo/odd" "${OCT[@]}" --data-binary @"$TMP/odd" >/dev/null
same "a snapshot of odd bytes (CRLF, the boundary's prefix, NUL, 0xff): 201" \
  "$(code PUT "$U/demo/odd/snapshot/0" "${OCT[@]}" --data-binary @"$TMP/odd")" 201
same "... its bootstrap parses strictly, the bytes intact" \
  "$(boot "$U/demo/odd/bootstrap" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log(j.map(p=>Buffer.from(p[1],"latin1").toString("hex")).join(","))})')" \
  "$(od -An -tx1 "$TMP/odd" | tr -d ' \n'),$(od -An -tx1 "$TMP/odd" | tr -d ' \n')"
same "... the boundary is ursula-bootstrap- and 16 hex digits" \
  "$(bh Content-Type | sed 's/[0-9a-f]\{16\}$/H/')" "multipart/mixed; boundary=ursula-bootstrap-H"
# affinity paths
A=$U/demo/room/doc
code PUT "$A" "${OCT[@]}" >/dev/null
code POST "$A" "${OCT[@]}" --data-binary abc >/dev/null
same "an affinity stream: PUT .../snapshot/3: 201 with its Location" \
  "$(field PUT "$A/snapshot/3" Location "${P[@]}")" "201|/demo/room/doc/snapshot/$(pad 3)"
same "... GET .../snapshot 307, .../snapshot/3 200, retention 204, bootstrap" \
  "$(code GET "$A/snapshot") $(code GET "$A/snapshot/3") $(code PUT "$A/retention/3") $(boot "$A/bootstrap")" \
  "307 200 204 [[\"$X\",\"SNAP1\"]]"
same "... with Stream-Extensions: path-affinity-v1" \
  "$(field GET "$A/snapshot/3" Stream-Extensions)" "200|path-affinity-v1, group-append-transaction-v1"
same "a stream in no bucket keeps its paths: /v1/stream/x/snapshot/0 is a stream" \
  "$(code PUT "$U/v1/stream/x/snapshot/0" "${OCT[@]}")" 201
lib_kill $PID_mem

# the README's commands, verbatim but for the port, and what it says
# they print (the boundary's random digits aside)
start readme $H2
sed -n '/^```sh snapshots/,/^```/p' README.md | sed '1d;$d' |
  sed "s/127\.0\.0\.1:4437/127.0.0.1:$H2/g" >"$TMP/readme.sh"
awk '/^```sh snapshots/{f=1} f&&/^prints/{g=1;next} g&&/^```$/{if(h)exit;h=1;next} g&&h' README.md >"$TMP/readme.want"
if [ -s "$TMP/readme.sh" ] && [ -s "$TMP/readme.want" ]; then
  timeout 20 bash "$TMP/readme.sh" 2>&1 | tr -d '\r' |
    sed 's/ursula-bootstrap-[0-9a-f]\{16\}/ursula-bootstrap-H/' >"$TMP/readme.got"
  sed -i 's/ursula-bootstrap-[0-9a-f]\{16\}/ursula-bootstrap-H/' "$TMP/readme.want"
  if cmp -s "$TMP/readme.got" "$TMP/readme.want"; then ok "the README's snapshot commands print what it says"
  else not_ok "the README's snapshot commands print what it says" "$(diff "$TMP/readme.want" "$TMP/readme.got" | tr '\n' '|')"; fi
else
  not_ok "the README has its snapshot commands and their output"
fi
lib_kill $PID_readme

# ------------------------------------------------------------ --wal-dir
echo "# snapshots.sh: --wal-dir, kill -9, a state-machine snapshot"
W=$TMP/wal
start wal $H1 --wal-dir "$W"
fill
code PUT "$S/snapshot/5" "${P[@]}" >/dev/null
code PUT "$S/retention/5" >/dev/null
lib_kill $PID_wal
start wal $H1 --wal-dir "$W"
same "after kill -9: the snapshot (read back from the log) and its headers" \
  "$(fields GET "$S/snapshot/5" Content-Type,Stream-Snapshot-Digest)|$(cat "$TMP/body")" "200|$X|$D1|SNAP1"
same "after kill -9: the retention: 410 below, -1 from 5" \
  "$(code GET "$S?offset=$(off 2)") $(get "$S?offset=-1")" "410 cccc"
same "after kill -9: an identical retry 200, other bytes 409" \
  "$(code PUT "$S/snapshot/5" "${P[@]}") $(code PUT "$S/snapshot/5" -H "Content-Type: $X" --data-binary SNAP9)" "200 409"
lib_kill $PID_wal

# a snapshot larger than the memory a group keeps: evicted at once, read
# back from the log (and its digest from the state)
start hot $H1 --wal-dir "$TMP/wal3" --hot-max-bytes 65536
code PUT "$U/demo" >/dev/null
code PUT "$S" "${OCT[@]}" >/dev/null
code POST "$S" "${OCT[@]}" --data-binary aa >/dev/null
head -c 300000 /dev/urandom >"$TMP/hotsnap"
same "--hot-max-bytes 65536: a 300000-byte snapshot: 201" \
  "$(code PUT "$S/snapshot/2" "${OCT[@]}" --data-binary @"$TMP/hotsnap")" 201
for i in 1 2 3; do code POST "$S" "${OCT[@]}" --data-binary @"$TMP/hotsnap" >/dev/null; done
curl -s -o "$TMP/got" "$S/snapshot/2"
check "... read back whole (from the log)" cmp -s "$TMP/got" "$TMP/hotsnap"
same "... an identical retry: 200" \
  "$(code PUT "$S/snapshot/2" "${OCT[@]}" --data-binary @"$TMP/hotsnap")" 200
lib_kill $PID_hot

W2=$TMP/wal2
start snap $H1 --wal-dir "$W2" --raft-group-count 1 --snapshot-bytes 4096
# first a stream whose snapshot is at its tail and retention there: its
# snapshot's entry is the oldest that anything still reads (no append
# of it is kept), so only the snapshot's own bytes keep it
code PUT "$U/demo" >/dev/null
code PUT "$U/demo/solo" "${OCT[@]}" >/dev/null
code POST "$U/demo/solo" "${OCT[@]}" --data-binary xyz >/dev/null
head -c 2000 /dev/urandom >"$TMP/solosnap"
code PUT "$U/demo/solo/snapshot/3" "${OCT[@]}" --data-binary @"$TMP/solosnap" >/dev/null
code PUT "$U/demo/solo/retention/3" >/dev/null
# past a WAL segment (64 MiB), so that solo's snapshot entry is in a
# segment nothing else keeps: a compaction would drop it, unless the
# snapshot pins it
head -c 1048576 /dev/zero >"$TMP/mib"
code PUT "$U/v1/stream/bulk" "${OCT[@]}" >/dev/null
for i in $(seq 1 70); do code POST "$U/v1/stream/bulk" "${OCT[@]}" --data-binary @"$TMP/mib" >/dev/null; done
code DELETE "$U/v1/stream/bulk" >/dev/null
fill
head -c 3000 /dev/urandom >"$TMP/bigsnap"
code PUT "$S/snapshot/5" "${OCT[@]}" --data-binary @"$TMP/bigsnap" >/dev/null
code PUT "$S/retention/5" >/dev/null
for i in $(seq 1 60); do # churn: the log passes --snapshot-bytes many times
  code PUT "$U/v1/stream/churn$i" "${OCT[@]}" --data-binary "$(head -c 300 /dev/zero | tr '\0' y)" >/dev/null
  code DELETE "$U/v1/stream/churn$i" >/dev/null
done
check "a state-machine snapshot was written" [ -f "$W2/g00000/snapshot" ]
lib_kill $PID_snap
start snap $H1 --wal-dir "$W2" --raft-group-count 1 --snapshot-bytes 4096
curl -s -o "$TMP/got" "$S/snapshot/5"
check "after a state-machine snapshot and kill -9: the snapshot's bytes" cmp -s "$TMP/got" "$TMP/bigsnap"
same "... its digest and the retention (410 below, -1 from 5)" \
  "$(field GET "$S/snapshot" Location) $(code GET "$S?offset=$(off 0)") $(get "$S?offset=-1")" \
  "307|/demo/doc/snapshot/$(pad 5) 410 cccc"
same "... and the bootstrap" \
  "$(boot "$S/bootstrap" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log(j.map(p=>p[1].length+":"+p[0]).join(","))})')" \
  "3000:application/octet-stream,4:application/octet-stream"
curl -s -o "$TMP/got" "$U/demo/solo/snapshot/3"
check "... the snapshot whose entry only it kept: its bytes" cmp -s "$TMP/got" "$TMP/solosnap"
same "... and its bootstrap: the snapshot part alone, up to date" \
  "$(boot "$U/demo/solo/bootstrap" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{const j=JSON.parse(s);console.log(j.map(p=>p[1].length).join(","))}catch(e){console.log(s)}})')|$(bh Stream-Up-To-Date)" \
  "2000|true"
lib_kill $PID_snap

# ------------------------------------------------------------ auth
echo "# snapshots.sh: --auth-file"
TOKR=r-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
TOKW=w-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
hash() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
printf 'ro read /demo/doc %s\nrw read,write /demo %s\n' "$(hash "$TOKR")" "$(hash "$TOKW")" >"$TMP/auth"
"$BIN" --listen 127.0.0.1:$H1 --admin-listen off --core-count 2 --auth-file "$TMP/auth" \
  >"$TMP/auth.log" 2>&1 &
PID_auth=$!
lib_track $PID_auth
for i in $(seq 1 100); do [ "$(code GET "$U/x")" != 000 ] && break; sleep 0.05; done
BW=(-H "Authorization: Bearer $TOKW")
BR=(-H "Authorization: Bearer $TOKR")
code PUT "$S" "${BW[@]}" "${OCT[@]}" >/dev/null
code POST "$S" "${BW[@]}" "${OCT[@]}" --data-binary aa >/dev/null
same "a read token: PUT snapshot, PUT retention 403; a write token: 201" \
  "$(code PUT "$S/snapshot/2" "${BR[@]}" "${P[@]}") $(code PUT "$S/retention/2" "${BR[@]}") $(code PUT "$S/snapshot/2" "${BW[@]}" "${P[@]}")" \
  "403 403 201"
same "a read token: GET snapshot/2, bootstrap 200; no token 401" \
  "$(code GET "$S/snapshot/2" "${BR[@]}") $(code GET "$S/bootstrap" "${BR[@]}") $(code GET "$S/bootstrap")" \
  "200 200 401"
lib_kill $PID_auth

# ------------------------------------------------------------ a 3-node cluster
echo "# snapshots.sh: a 3-node cluster, peers $P1 $P2 $P3"
printf 'the secret of the snapshots test cluster\n' >"$TMP/secret"
chmod 600 "$TMP/secret"
PEERS=(--peer 1=127.0.0.1:$P1 --peer 2=127.0.0.1:$P2 --peer 3=127.0.0.1:$P3
  --cluster-secret-file "$TMP/secret")
start n1 $H1 --wal-dir "$TMP/c1" --node-id 1 "${PEERS[@]}"
start n2 $H2 --wal-dir "$TMP/c2" --node-id 2 "${PEERS[@]}"
start n3 $H3 --wal-dir "$TMP/c3" --node-id 3 "${PEERS[@]}"
same "cluster: PUT /demo, /demo/doc through node 1" \
  "$(req 1 PUT /demo) $(req 1 PUT /demo/doc)" "201 201"
req 1 POST /demo/doc aa 0 >/dev/null
req 1 POST /demo/doc bbb 1 >/dev/null
# publish through node 1, retried while groups elect (an identical retry
# is 200: the rule makes the retry safe)
end=$((SECONDS + 15))
while [ $SECONDS -lt $end ]; do
  c=$(code PUT "$(url 1 /demo/doc/snapshot/5)" "${P[@]}")
  case $c in 503|000) sleep 0.1 ;; *) break ;; esac
done
case $c in 201|200) ok "cluster: PUT snapshot through node 1: $c" ;;
  *) not_ok "cluster: PUT snapshot through node 1" "$c" ;; esac
for n in 1 2 3; do
  got=""
  for i in $(seq 1 100); do
    got=$(fields GET "$(url $n /demo/doc/snapshot/5)" Stream-Snapshot-Digest)"|$(cat "$TMP/body")"
    [ "$got" = "200|$D1|SNAP1" ] && break
    sleep 0.1
  done
  same "cluster: node $n reads the snapshot: bytes and digest" "$got" "200|$D1|SNAP1"
done
same "cluster: retention through node 2" "$(req 2 PUT /demo/doc/retention/5)" 204
same "cluster: node 3 answers 410 below it, and its bootstrap" \
  "$(code GET "$(url 3 "/demo/doc?offset=$(off 2)")") $(boot "$(url 3 /demo/doc/bootstrap)")" \
  "410 [[\"$X\",\"SNAP1\"]]"
for n in 1 2 3; do lib_kill "$(eval echo \$PID_n$n)"; done

# ------------------------------------------------------------ retention
# during a catch-up in parts (api.c, CATCH-UP IN PARTS: "the bytes below
# T never change; if a later part cannot be read ... the connection is
# ended at once: the client sees the body cut short, never wrong bytes").
# A 16 MiB stream read from 0 in parts of 4 KiB; once 64 KiB are in, the
# retained offset moves to 12 MiB.  The parts still below it are gone
# (410): the body must stop short, and what came must be the stream's
# own prefix.  (A later part once took the retained offset as its start,
# and sent bytes from 12 MiB at the reader's place.)
echo "# snapshots.sh: retention during a catch-up in parts"
start parts $H2 --max-read-bytes 4096
V=http://127.0.0.1:$H2/demo/big
code PUT "http://127.0.0.1:$H2/demo" >/dev/null
code PUT "$V" "${OCT[@]}" >/dev/null
for i in $(seq 1 16); do
  python3 -c 'import sys; sys.stdout.write(("%s-%02d;" % ("r" * 1000, int(sys.argv[1]))) * 1044)' "$i" >"$TMP/part-$i"
  code POST "$V" "${OCT[@]}" --data-binary "@$TMP/part-$i" >/dev/null
done
cat "$TMP"/part-{1..16} >"$TMP/parts-want"
R=$(( $(wc -c <"$TMP/part-1") * 12 ))
got=$(python3 - "$H2" /demo/big "$TMP/parts-want" "$R" <<'PY'
import http.client, socket, sys, time
sys.path.insert(0, "test")
from rawget import get_head
port, path, want, r = int(sys.argv[1]), sys.argv[2], open(sys.argv[3], "rb").read(), sys.argv[4]
s, status, clen, body = get_head(port, path, 65536, 5)
try:
    while len(body) < 65536:
        d = s.recv(65536)
        if not d: break
        body += d
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("PUT", path + "/retention/" + r)
    st = c.getresponse().status
    time.sleep(0.2)
    while len(body) < clen:
        d = s.recv(1 << 20)
        if not d: break
        body += d
except (socket.timeout, OSError):
    st = "error"
print(st, clen, len(body), "prefix" if body == want[:len(body)] else "wrong")
PY
)
read -r st cl n pre <<<"${got:-none -1 0 wrong}"
if [ "$st" = 204 ] && [ "$cl" = "$(wc -c <"$TMP/parts-want")" ] && [ "$n" -lt "$cl" ] && [ "$pre" = prefix ]; then
  ok "retention to 12 MiB during a 16 MiB catch-up in parts: the body stops at $n of $cl bytes, the stream's own prefix"
else
  not_ok "retention during a catch-up in parts: the body stops short, the stream's own prefix" "retention $st; Content-Length $cl, got $n bytes, $pre"
fi
lib_kill $PID_parts

# ------------------------------------------------------------ Loro
if [ -z "${NO_LORO:-}" ]; then
  echo "# snapshots.sh: a Loro session (test/loro.mjs)"
  start loro $H1
  if node test/loro.mjs "$U" >"$TMP/loro.out" 2>&1; then
    ok "loro.mjs: $(tail -1 "$TMP/loro.out")"
  else
    not_ok "loro.mjs" "$(tail -5 "$TMP/loro.out" | tr '\n' '|')"
  fi
  lib_kill $PID_loro
fi

echo "1..$LIB_N"
[ "$FAILS" -eq 0 ] && echo "# snapshots.sh: all passed" || echo "# snapshots.sh: $FAILS failed"
[ "$FAILS" -eq 0 ]
