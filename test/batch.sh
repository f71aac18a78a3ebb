#!/usr/bin/env bash
# batch.sh -- append-batch, $transaction and stream attributes (issue 16,
# items 3 to 5) against the real binary: the frames and their per-frame
# results, Prefer: return=minimal, producers across frames, every
# refusal; a transaction's all-or-nothing (a failing operation leaves
# every stream as it was), its refusals and a producer's retry; the
# attributes' rules (title, metadata, dropped members, {} clears,
# Stream-Attrs on create and its 409); all of it in memory, with
# --wal-dir across kill -9 (and after a state-machine snapshot), and on
# a 3-node cluster (written through followers, read from every node).
#
#   bash test/batch.sh             # uses ./ursula (built by make)
#   URSULA_BIN=path bash test/batch.sh
#
# Expected values come from the rules written at the top of src/batch.c
# and src/attrs.c, never from a run.  Every wait is bounded; nothing
# leaves 127.0.0.1; every process is killed on exit and the temporary
# directory removed.
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${1:-${URSULA_BIN:-./ursula}}
TMP=$(mktemp -d)
. test/lib.sh
read -r H1 H2 H3 P1 P2 P3 <<<"$(free_ports 6)"
TP=(-H 'Content-Type: text/plain')
JS=(-H 'Content-Type: application/json')

same() {
  if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "got $2, want $3"; fi
}
code() {
  local m=$1 u=$2; shift 2
  curl -s -o /dev/null -w '%{http_code}\n' --max-time 5 -X "$m" "$@" "$u"
}
get() { local u=$1; shift; curl -s --max-time 5 "$@" "$u"; }
# post URL BODYFILE [CURL ARGS...]: "STATUS BODY" of a POST
post() {
  local u=$1 f=$2 c; shift 2
  c=$(curl -s -o "$TMP/body" -w '%{http_code}' --max-time 10 -X POST --data-binary "@$f" "$@" "$u")
  printf '%s %s' "$c" "$(cat "$TMP/body")"
}
js() {
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let j;try{j=JSON.parse(s)}catch(e){console.log("BAD");return}console.log(eval(process.argv[1]))})' "$1"
}
# frames FILE PAYLOAD...: an append-batch body, each payload one frame
# ([u32 big-endian length][payload])
frames() {
  local f=$1; shift
  node -e 'const fs=require("fs");const parts=process.argv.slice(2).map(p=>{const b=Buffer.from(p);const h=Buffer.alloc(4);h.writeUInt32BE(b.length);return Buffer.concat([h,b])});fs.writeFileSync(process.argv[1],Buffer.concat(parts))' "$f" "$@"
}
# txn FILE OP...: a $transaction body; each OP is "stream|type|payload|extra"
# (extra: more JSON members, e.g. "close_after":true)
txn() {
  local f=$1; shift
  node -e 'const fs=require("fs");const ops=process.argv.slice(2).map(o=>{const [s,t,p,x]=o.split("|");return JSON.parse("{"+[`"stream":${JSON.stringify(s)}`,`"content_type":${JSON.stringify(t)}`,`"payload_base64":${JSON.stringify(Buffer.from(p).toString("base64"))}`].concat(x?[x]:[]).join(",")+"}")});fs.writeFileSync(process.argv[1],JSON.stringify({operations:ops}))' "$f" "$@"
}
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
  "$BIN" --listen 127.0.0.1:$port --core-count 2 --public-status 1 "$@" \
    >"$TMP/$name.log" 2>&1 &
  eval "PID_$name=$!"
  lib_track $!
  wait_up "$port" || not_ok "$name answers" "$(tail -3 "$TMP/$name.log" | tr '\n' '|')"
}

# ------------------------------------------------------------ the checks
# batches URL: append-batch's rules through the server at URL
batches() {
  local U=$1 r
  code PUT "$U/demo" >/dev/null
  code PUT "$U/demo/t" "${TP[@]}" >/dev/null
  frames "$TMP/f3" abc de fghi
  r=$(post "$U/demo/t/append-batch" "$TMP/f3" "${TP[@]}")
  same "append-batch of 3 frames: 200, each 204 with the tail after it" \
    "$(echo "${r#* }" | js 'j.map(x=>x.status+"@"+x.stream_next_offset).join(" ")')|${r%% *}" \
    "204@$(off 3) 204@$(off 5) 204@$(off 9)|200"
  same "... the stream holds the frames in order" "$(get "$U/demo/t?offset=-1")" abcdefghi
  same "Prefer: return=minimal and every frame appended: 204, no body" \
    "$(post "$U/demo/t/append-batch" "$TMP/f3" "${TP[@]}" -H 'Prefer: return=minimal')" "204 "
  same "Prefer: return = \"minimal\" (RFC 7240: BWS, a quoted value) is the same preference" \
    "$(post "$U/demo/t/append-batch" "$TMP/f3" "${TP[@]}" -H 'Prefer: respond-async, return = "minimal"; x=1' | cut -c1-4)" "204 "
  same "... and appended: the tail is 27" \
    "$(curl -s -I --max-time 5 "$U/demo/t" | tr -d '\r' | sed -n 's/^Stream-Next-Offset: //Ip')" "$(off 27)"
  # JSON: each frame one POST body (an array's elements are messages)
  code PUT "$U/demo/j" "${JS[@]}" >/dev/null
  frames "$TMP/fj" '[1,2]' '{"a":3}' ' "x" '
  r=$(post "$U/demo/j/append-batch" "$TMP/fj" "${JS[@]}")
  same "a JSON stream's frames: 200, each 204" \
    "${r%% *}|$(echo "${r#* }" | js 'j.map(x=>x.status).join(" ")')" "200|204 204 204"
  same "... read back as the four messages" "$(get "$U/demo/j?offset=-1")" '[1,2,{"a":3},"x"]'
  frames "$TMP/fbad" '[4]' '{oops' '5'
  same "a frame that is not JSON: 400 naming frame 1" \
    "$(post "$U/demo/j/append-batch" "$TMP/fbad" "${JS[@]}" | cut -c1-20)" "400 frame 1 is not v"
  same "... and nothing of the batch appended" "$(get "$U/demo/j?offset=-1")" '[1,2,{"a":3},"x"]'
  # framing refusals (each 400, nothing appended)
  : >"$TMP/empty"
  printf '\x00\x00\x00\x03ab' >"$TMP/short"
  printf '\x00\x00\x00\x01a\x00\x00\x00\x00' >"$TMP/zero"
  printf '\x00\x00\x00\x01a\x00\x00' >"$TMP/cut"
  node -e 'const fs=require("fs");const one=Buffer.from([0,0,0,1,0x79]);fs.writeFileSync(process.argv[1],Buffer.concat(Array(513).fill(one)));fs.writeFileSync(process.argv[2],Buffer.concat(Array(512).fill(one)))' "$TMP/f513" "$TMP/f512"
  same "refused bodies: empty, a frame past the end, an empty frame, a cut length, 513 frames: 400 each" \
    "$(for f in empty short zero cut f513; do post "$U/demo/t/append-batch" "$TMP/$f" "${TP[@]}" | cut -c1-3; done | tr '\n' ' ')" \
    "400 400 400 400 400 "
  same "... nothing appended by them" "$(get "$U/demo/t?offset=-1" | wc -c | tr -d ' ')" 27
  same "512 frames: 200, 512 results" \
    "$(post "$U/demo/t/append-batch" "$TMP/f512" "${TP[@]}" | cut -d' ' -f2- | js 'j.length')" 512
  same "no Content-Type: 400; Stream-Seq: 400; Stream-Closed: 400" \
    "$(post "$U/demo/t/append-batch" "$TMP/f3" -H 'Content-Type:' | cut -c1-3) $(post "$U/demo/t/append-batch" "$TMP/f3" "${TP[@]}" -H 'Stream-Seq: 1' | cut -c1-3) $(post "$U/demo/t/append-batch" "$TMP/f3" "${TP[@]}" -H 'Stream-Closed: true' | cut -c1-3)" \
    "400 400 400"
  same "GET .../append-batch: 405; a missing stream: 200 with 404 per frame" \
    "$(code GET "$U/demo/t/append-batch") $(post "$U/demo/nope/append-batch" "$TMP/f3" "${TP[@]}" | cut -d' ' -f2- | js 'j.map(x=>x.status+":"+x.error_code).join(",")')" \
    "405 404:StreamNotFound,404:StreamNotFound,404:StreamNotFound"
  frames "$TMP/fn" 1 2 3
  same "another content type: 200, each frame 409 ContentTypeMismatch" \
    "$(post "$U/demo/t/append-batch" "$TMP/fn" "${JS[@]}" | cut -d' ' -f2- | js 'j.map(x=>x.status+":"+x.error_code).join(",")')" \
    "409:ContentTypeMismatch,409:ContentTypeMismatch,409:ContentTypeMismatch"
  # producers: frame i is Seq + i
  code PUT "$U/demo/p" "${TP[@]}" >/dev/null
  local P=(-H 'Producer-Id: w' -H 'Producer-Epoch: 0')
  same "a producer's batch at seq 0: 200, frames 200 with seq 0 1 2" \
    "$(post "$U/demo/p/append-batch" "$TMP/f3" "${TP[@]}" "${P[@]}" -H 'Producer-Seq: 0' | cut -d' ' -f2- | js 'j.map(x=>x.status+":"+x.producer_seq).join(",")')" \
    "200:0,200:1,200:2"
  same "the same batch again: every frame a duplicate (204), nothing appended" \
    "$(post "$U/demo/p/append-batch" "$TMP/f3" "${TP[@]}" "${P[@]}" -H 'Producer-Seq: 0' | cut -d' ' -f2- | js 'j.map(x=>x.status).join(",")')|$(get "$U/demo/p?offset=-1")" \
    "204,204,204|abcdefghi"
  same "a batch at seq 5 (3 expected): each frame 409 ProducerSeqConflict" \
    "$(post "$U/demo/p/append-batch" "$TMP/f3" "${TP[@]}" "${P[@]}" -H 'Producer-Seq: 5' | cut -d' ' -f2- | js 'j.map(x=>x.status+":"+x.error_code).join(",")')" \
    "409:ProducerSeqConflict,409:ProducerSeqConflict,409:ProducerSeqConflict"
  same "a batch at seq 3 goes on" \
    "$(post "$U/demo/p/append-batch" "$TMP/f3" "${TP[@]}" "${P[@]}" -H 'Producer-Seq: 3' | cut -d' ' -f2- | js 'j.map(x=>x.status).join(",")')|$(get "$U/demo/p?offset=-1")" \
    "200,200,200|abcdefghiabcdefghi"
  # a closed stream: per frame 409 StreamClosed
  code PUT "$U/demo/c" "${TP[@]}" -H 'Stream-Closed: true' >/dev/null
  same "a closed stream: 200, each frame 409 StreamClosed" \
    "$(post "$U/demo/c/append-batch" "$TMP/f3" "${TP[@]}" | cut -d' ' -f2- | js 'j.map(x=>x.status+":"+x.error_code).join(",")')" \
    "409:StreamClosed,409:StreamClosed,409:StreamClosed"
}

# transactions URL: $transaction's rules through the server at URL
transactions() {
  local U=$1 r
  code PUT "$U/demo" >/dev/null
  code PUT "$U/demo/k/a" "${TP[@]}" >/dev/null
  code PUT "$U/demo/k/b" "${JS[@]}" >/dev/null
  code PUT "$U/demo/k/c" "${TP[@]}" >/dev/null
  printf '{"operations":[]}' >"$TMP/t7"
  txn "$TMP/t1" 'a|text/plain|hello' 'b|application/json|[1,2]' 'c|text/plain|end|"close_after":true'
  r=$(post "$U/demo/k/\$transaction" "$TMP/t1" "${JS[@]}")
  same "a transaction of 3 operations: 200, each 204 with its stream's tail" \
    "${r%% *}|$(echo "${r#* }" | js 'j.map(x=>x.status+"@"+x.stream_next_offset).join(" ")')" \
    "200|204@$(off 5) 204@$(off 4) 204@$(off 3)"
  same "... every stream has its append; c is closed" \
    "$(get "$U/demo/k/a?offset=-1")|$(get "$U/demo/k/b?offset=-1")|$(curl -s -I --max-time 5 "$U/demo/k/c" | tr -d '\r' | sed -n 's/^Stream-Closed: //Ip')" \
    'hello|[1,2]|true'
  same "its answer, and a non-JSON affinity stream's, says Stream-Extensions: path-affinity-v1, group-append-transaction-v1" \
    "$(curl -s -D - -o /dev/null --max-time 5 -X POST --data-binary "@$TMP/t7" "${JS[@]}" "$U/demo/k/\$transaction" | tr -d '\r' | sed -n 's/^Stream-Extensions: //Ip')|$(curl -s -I --max-time 5 "$U/demo/k/a" | tr -d '\r' | sed -n 's/^Stream-Extensions: //Ip')" \
    "path-affinity-v1, group-append-transaction-v1|path-affinity-v1, group-append-transaction-v1"
  # all or nothing: the last operation fails, the first two stay unapplied
  txn "$TMP/t2" 'a|text/plain|more' 'b|application/json|3' 'c|text/plain|late'
  r=$(post "$U/demo/k/\$transaction" "$TMP/t2" "${JS[@]}")
  same "an operation on a closed stream: the transaction is 409, operation 2, StreamClosed" \
    "${r%% *}|$(echo "${r#* }" | js '[j.operation,j.error_code].join(",")')" "409|2,StreamClosed"
  same "... and no operation applied (a and b unchanged)" \
    "$(get "$U/demo/k/a?offset=-1")|$(get "$U/demo/k/b?offset=-1")" 'hello|[1,2]'
  txn "$TMP/t3" 'a|text/plain|more' 'nope|text/plain|x'
  same "a missing stream: 404 (a transaction creates none), nothing applied" \
    "$(post "$U/demo/k/\$transaction" "$TMP/t3" "${JS[@]}" | cut -c1-3)|$(get "$U/demo/k/a?offset=-1")" '404|hello'
  txn "$TMP/t4" 'a|text/plain|x' 'a|text/plain|y'
  same "a stream named twice: 400, nothing applied" \
    "$(post "$U/demo/k/\$transaction" "$TMP/t4" "${JS[@]}" | cut -c1-3)|$(get "$U/demo/k/a?offset=-1")" '400|hello'
  txn "$TMP/t5" 'a|application/json|"more"'
  same "an operation of another content type: 409 ContentTypeMismatch" \
    "$(post "$U/demo/k/\$transaction" "$TMP/t5" "${JS[@]}" | cut -d' ' -f2- | js 'j.error_code')" ContentTypeMismatch
  printf '{"operations":[{"stream":"a","content_type":"text/plain","payload_base64":"a=b="}]}' >"$TMP/t6"
  printf '{"operations":[{"stream":"a","content_type":"text/plain"}]}' >"$TMP/t8"
  printf '{"operations":' >"$TMP/t9"
  node -e 'require("fs").writeFileSync(process.argv[1],JSON.stringify({operations:Array(65).fill({stream:"a",content_type:"text/plain",payload_base64:"eA=="})}))' "$TMP/t10"
  same "refused bodies: bad base64, no operations, no payload, not JSON, 65 operations: 400 each" \
    "$(for f in t6 t7 t8 t9 t10; do post "$U/demo/k/\$transaction" "$TMP/$f" "${JS[@]}" | cut -c1-3; done | tr '\n' ' ')" \
    "400 400 400 400 400 "
  same "a body not application/json: 415; GET: 405" \
    "$(post "$U/demo/k/\$transaction" "$TMP/t1" "${TP[@]}" | cut -c1-3) $(code GET "$U/demo/k/\$transaction")" "415 405"
  # a producer's transaction, retried: answered as before, applied once
  printf '{"operations":[{"stream":"a","content_type":"text/plain","payload_base64":"IQ==","producer":{"producer_id":"q","producer_epoch":0,"producer_seq":0}}]}' >"$TMP/tp"
  same "a producer's transaction: 200, the op 200 with its seq" \
    "$(post "$U/demo/k/\$transaction" "$TMP/tp" "${JS[@]}" | cut -d' ' -f2- | js 'j.map(x=>x.status+":"+x.producer_seq).join(",")')" "200:0"
  same "... retried: 200, the op a duplicate (204), appended once" \
    "$(post "$U/demo/k/\$transaction" "$TMP/tp" "${JS[@]}" | cut -d' ' -f2- | js 'j.map(x=>x.status).join(",")')|$(get "$U/demo/k/a?offset=-1")" \
    '204|hello!'
}

# attributes URL: the attrs rules through the server at URL
attributes() {
  local U=$1
  code PUT "$U/demo" >/dev/null
  code PUT "$U/demo/t" "${TP[@]}" >/dev/null
  same "GET attrs of a stream without any: 200 {}" "$(get "$U/demo/t/attrs")" '{}'
  same "PUT attrs (an unknown member too): 204" \
    "$(code PUT "$U/demo/t/attrs" --data-binary ' {"x":[1], "metadata" : {"a": [1, 2]}, "title":"T\u00e9"} ')" 204
  same "... GET gives title and metadata only, as sent, title first" \
    "$(get "$U/demo/t/attrs")" '{"title":"T\u00e9","metadata":{"a": [1, 2]}}'
  same "refused: title not a string, metadata not an object, a member twice, not JSON, an array: 400 each" \
    "$(for b in '{"title":1}' '{"metadata":[1]}' '{"title":"a","title":"b"}' '{"title":' '[1]'; do code PUT "$U/demo/t/attrs" --data-binary "$b"; done | tr '\n' ' ')" \
    "400 400 400 400 400 "
  node -e 'process.stdout.write(JSON.stringify({title:"x".repeat(16384)}))' >"$TMP/big"
  same "attributes over 16 KiB: 400; they stay as they were" \
    "$(code PUT "$U/demo/t/attrs" --data-binary "@$TMP/big")|$(get "$U/demo/t/attrs" | js 'j.title')" '400|Té'
  same "PUT {} clears them" "$(code PUT "$U/demo/t/attrs" --data-binary '{}')|$(get "$U/demo/t/attrs")" '204|{}'
  same "a missing stream: 404; POST attrs: 405" \
    "$(code GET "$U/demo/nope/attrs") $(code PUT "$U/demo/nope/attrs" --data-binary '{}') $(code POST "$U/demo/t/attrs" --data-binary '{}')" "404 404 405"
  same "Stream-Attrs on create: 201, stored" \
    "$(code PUT "$U/demo/s" "${TP[@]}" -H 'Stream-Attrs: {"title":"made","z":0}')|$(get "$U/demo/s/attrs")" '201|{"title":"made"}'
  same "create again with the same attributes: 200; others: 409; none: 200" \
    "$(code PUT "$U/demo/s" "${TP[@]}" -H 'Stream-Attrs: {"title":"made"}') $(code PUT "$U/demo/s" "${TP[@]}" -H 'Stream-Attrs: {"title":"other"}') $(code PUT "$U/demo/s" "${TP[@]}")" \
    "200 409 200"
  same "Stream-Attrs that are not an object: 400" \
    "$(code PUT "$U/demo/s2" "${TP[@]}" -H 'Stream-Attrs: nope')" 400
}

# ------------------------------------------------------------ in memory
echo "# batch.sh: in memory"
start mem $H1
batches "http://127.0.0.1:$H1"
transactions "http://127.0.0.1:$H1"
attributes "http://127.0.0.1:$H1"
lib_kill $PID_mem

# ------------------------------------------------------------ --auth-file
echo "# batch.sh: --auth-file"
KEY=key-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
ONE=one-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
ALL=all-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
TXT=txn-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
hash() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
printf 'key read,write /demo/k/ %s\none read,write /demo/k/a %s\nall read,write / %s\ntxn read,write /demo/k/$transaction %s\n' \
  "$(hash "$KEY")" "$(hash "$ONE")" "$(hash "$ALL")" "$(hash "$TXT")" >"$TMP/auth"
start auth $H1 --admin-listen off --auth-file "$TMP/auth"
U=http://127.0.0.1:$H1
K=(-H "Authorization: Bearer $KEY")
O=(-H "Authorization: Bearer $ONE")
A=(-H "Authorization: Bearer $ALL")
T=(-H "Authorization: Bearer $TXT")
code PUT "$U/demo" "${A[@]}" >/dev/null
for s in /demo/k /demo/k/a /demo/k/b; do code PUT "$U$s" "${A[@]}" "${TP[@]}" >/dev/null; done
txn "$TMP/ta" 'a|text/plain|x' 'b|text/plain|y'
same "a /demo/k/ token: a batch and attrs of /demo/k/a 200 204, of /demo/k itself 403 403 (a sub-route is its stream's)" \
  "$(post "$U/demo/k/a/append-batch" "$TMP/f3" "${TP[@]}" "${K[@]}" | cut -c1-3) $(code PUT "$U/demo/k/a/attrs" "${K[@]}" --data-binary '{}') $(post "$U/demo/k/append-batch" "$TMP/f3" "${TP[@]}" "${K[@]}" | cut -c1-3) $(code PUT "$U/demo/k/attrs" "${K[@]}" --data-binary '{}')" \
  "200 204 403 403"
same "a transaction needs a token for all of /demo/k/: the key's 200; a one-stream token's, and one for the path /demo/k/\$transaction only, 403" \
  "$(post "$U/demo/k/\$transaction" "$TMP/ta" "${JS[@]}" "${K[@]}" | cut -c1-3) $(post "$U/demo/k/\$transaction" "$TMP/ta" "${JS[@]}" "${O[@]}" | cut -c1-3) $(post "$U/demo/k/\$transaction" "$TMP/ta" "${JS[@]}" "${T[@]}" | cut -c1-3)" \
  "200 403 403"
lib_kill $PID_auth

# ------------------------------------------------------------ --wal-dir
echo "# batch.sh: --wal-dir across kill -9, and after a snapshot"
start wal $H1 --wal-dir "$TMP/w" --raft-group-count 1 --snapshot-bytes 4096
U=http://127.0.0.1:$H1
code PUT "$U/demo" >/dev/null
code PUT "$U/demo/k/a" "${TP[@]}" >/dev/null
code PUT "$U/demo/k/b" "${TP[@]}" -H 'Stream-Attrs: {"title":"b"}' >/dev/null
frames "$TMP/w3" one two three
post "$U/demo/k/a/append-batch" "$TMP/w3" "${TP[@]}" >/dev/null
txn "$TMP/wt" 'a|text/plain|X' 'b|text/plain|Y'
post "$U/demo/k/\$transaction" "$TMP/wt" "${JS[@]}" >/dev/null
code PUT "$U/demo/k/a/attrs" --data-binary '{"metadata":{"v":1}}' >/dev/null
kill -9 $PID_wal; wait $PID_wal 2>/dev/null; lib_untrack $PID_wal
start wal $H1 --wal-dir "$TMP/w" --raft-group-count 1 --snapshot-bytes 4096
same "after kill -9: the batch's and the transaction's bytes, both streams' attributes" \
  "$(get "$U/demo/k/a?offset=-1")|$(get "$U/demo/k/b?offset=-1")|$(get "$U/demo/k/a/attrs")|$(get "$U/demo/k/b/attrs")" \
  'onetwothreeX|Y|{"metadata":{"v":1}}|{"title":"b"}'
# past --snapshot-bytes: the state machine's snapshot carries the attributes
head -c 3000 /dev/zero | tr '\0' z >"$TMP/z"
for i in 1 2 3; do frames "$TMP/wz" "$(cat "$TMP/z")"; post "$U/demo/k/b/append-batch" "$TMP/wz" "${TP[@]}" >/dev/null; done
for i in $(seq 1 100); do [ -n "$(find "$TMP/w" -name snapshot)" ] && break; sleep 0.1; done
[ -n "$(find "$TMP/w" -name snapshot)" ] && ok "the group wrote a state-machine snapshot" ||
  not_ok "the group wrote a state-machine snapshot" "no file named snapshot under the WAL dir"
kill -9 $PID_wal; wait $PID_wal 2>/dev/null; lib_untrack $PID_wal
start wal $H1 --wal-dir "$TMP/w" --raft-group-count 1 --snapshot-bytes 4096
same "after a snapshot and kill -9: the attributes and the bytes" \
  "$(get "$U/demo/k/a/attrs")|$(get "$U/demo/k/b/attrs")|$(get "$U/demo/k/b?offset=-1" | wc -c | tr -d ' ')" \
  '{"metadata":{"v":1}}|{"title":"b"}|9001'
lib_kill $PID_wal

# ------------------------------------------------------------ a 3-node cluster
echo "# batch.sh: a 3-node cluster, peers $P1 $P2 $P3"
printf 'the secret of the batch test cluster\n' >"$TMP/secret"
chmod 600 "$TMP/secret"
PEERS=(--peer 1=127.0.0.1:$P1 --peer 2=127.0.0.1:$P2 --peer 3=127.0.0.1:$P3
  --cluster-secret-file "$TMP/secret")
start n1 $H1 --wal-dir "$TMP/c1" --node-id 1 "${PEERS[@]}"
start n2 $H2 --wal-dir "$TMP/c2" --node-id 2 "${PEERS[@]}"
start n3 $H3 --wal-dir "$TMP/c3" --node-id 3 "${PEERS[@]}"
same "cluster: PUT /demo/k/a and /demo/k/b through node 1" \
  "$(req 1 PUT /demo/k/a) $(req 1 PUT /demo/k/b)" "201 201"
txn "$TMP/ct" 'a|application/octet-stream|X' 'b|application/octet-stream|Y'
# retried while groups elect (a 503 applied nothing: a transaction is
# one entry; with no producer a 503 "outcome unknown" could have, so the
# check below reads what is there)
r=""
for i in $(seq 1 100); do
  for n in 2 3 1; do
    r=$(post "$(url $n "")/demo/k/\$transaction" "$TMP/ct" "${JS[@]}")
    [ "${r%% *}" = 200 ] && break 2
  done
  sleep 0.1
done
same "cluster: a transaction through a node: 200" "${r%% *}" 200
# (a 503 applied nothing, or its outcome is unknown: read what is there)
frames "$TMP/c2f" p q
r=$(post "$(url 3 "")/demo/k/a/append-batch" "$TMP/c2f" -H 'Content-Type: application/octet-stream')
same "cluster: an append-batch through node 3: 200" "${r%% *}" 200
same "cluster: PUT attrs through node 2: 204" \
  "$(code PUT "$(url 2 "")/demo/k/b/attrs" --data-binary '{"title":"c"}')" 204
for n in 1 2 3; do
  same "cluster: node $n reads both streams and the attributes" \
    "$(get "$(url $n "")/demo/k/a?offset=-1")|$(get "$(url $n "")/demo/k/b?offset=-1")|$(get "$(url $n "")/demo/k/b/attrs")" \
    'Xpq|Y|{"title":"c"}'
done
for n in 1 2 3; do lib_kill "$(eval echo \$PID_n$n)"; done

echo "1..$LIB_N"
[ "$FAILS" -eq 0 ] && echo "# batch.sh: all passed" || echo "# batch.sh: $FAILS failed"
[ "$FAILS" -eq 0 ]
