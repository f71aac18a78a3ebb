#!/usr/bin/env bash
# records.sh -- JSON record coordinates (issue 16, item 7;
# json-record-coordinates-v1) against the real binary: the record headers
# on create, append, HEAD, reads and long-poll; record, tail_records,
# max_records and record_view=envelope, and every rule that refuses them;
# Stream-Record-Match (412, the stream unchanged; a producer's duplicate
# first; concurrent appends with one match: exactly one applies);
# Stream-Next-Offset of a record read continued with offset=; SSE
# envelope events and control fields, parsed strictly; a fork's records
# continuing its source's -- in memory, with --wal-dir across kill -9
# after a state-machine snapshot (small --snapshot-bytes) and with a
# small memory budget (reads from the log), with a cold tier, and on a
# 3-node cluster (appends through one node, records read from each).
#
#   bash test/records.sh             # uses ./ursula (built by make)
#   URSULA_BIN=path bash test/records.sh
#
# Expected values come from the rules (README, "JSON record
# coordinates"; api.c, RECORDS) and the protocol's JSON mode (an array
# appends its elements), never from a run.  Every wait is bounded;
# nothing leaves 127.0.0.1; every process is killed on exit and the
# temporary directory removed.
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${1:-${URSULA_BIN:-./ursula}}
TMP=$(mktemp -d)
. test/lib.sh
read -r H1 H2 H3 P1 P2 P3 <<<"$(free_ports 6)"
JS=(-H 'Content-Type: application/json')

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
# hd METHOD URL [CURL ARGS...]: the response's head into $TMP/head, its
# body into $TMP/body
hd() {
  local m=$1 u=$2; shift 2
  if [ "$m" = HEAD ]; then set -- -I "$@"; else set -- -X "$m" "$@"; fi
  curl -s -D "$TMP/head" -o "$TMP/body" --max-time 5 "$@" "$u" >/dev/null
  tr -d '\r' <"$TMP/head" >"$TMP/head.lf"
}
# h NAME: field NAME of the last hd ("" if absent); st: its status
h() { sed -n "s/^$1: //Ip" "$TMP/head.lf" | head -1; }
st() { sed -n '1s/^HTTP\/1.1 \([0-9]*\).*/\1/p' "$TMP/head.lf"; }
# rec: "STATUS first start next" of the last hd
rec() { echo "$(st) $(h Stream-Record-First) $(h Stream-Record-Start) $(h Stream-Record-Next)"; }
body() { cat "$TMP/body"; }
# js EXPR: EXPR evaluated with j = the JSON read from stdin ("BAD" if it
# does not parse)
js() {
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let j;try{j=JSON.parse(s)}catch(e){console.log("BAD");return}console.log(eval(process.argv[1]))})' "$1"
}
# wait_up PORT: until the listener answers (at most 10 s)
wait_up() {
  local i
  for i in $(seq 1 200); do
    [ "$(code GET "http://127.0.0.1:$1/v1/stream/none")" != 000 ] && return 0
    sleep 0.05
  done
  return 1
}
# start NAME PORT ARGS...: a server in the background, its log $TMP/NAME.log
start() {
  local name=$1 port=$2; shift 2
  "$BIN" --listen 127.0.0.1:$port --core-count 2 "$@" >"$TMP/$name.log" 2>&1 &
  eval "PID_$name=$!"
  lib_track $!
  wait_up "$port" || not_ok "$name answers" "$(tail -3 "$TMP/$name.log" | tr '\n' '|')"
}
# envelope: the envelope lines on stdin checked strictly, each
# {"record":N,"value":V} with N one more each time; prints "N0..Nk|V0 V1..."
# (values as JSON), or BAD
envelope() {
  node -e '
let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{
  if (s.length && !s.endsWith("\n")) { console.log("BAD: no final newline"); return; }
  const lines = s.split("\n").slice(0, -1); let ns = [], vs = [];
  for (const l of lines) {
    let o; try { o = JSON.parse(l) } catch (e) { console.log("BAD: " + l); return; }
    const k = Object.keys(o).join(",");
    if (k !== "record,value" || !Number.isInteger(o.record)) { console.log("BAD: " + l); return; }
    if (ns.length && o.record !== ns[ns.length - 1] + 1) { console.log("BAD: gap"); return; }
    ns.push(o.record); vs.push(JSON.stringify(o.value));
  }
  console.log((ns.length ? ns[0] + ".." + ns[ns.length - 1] : "-") + "|" + vs.join(" "));
})'
}

# The records a stream gets below (an array appends its elements, one
# level: [4,5] inside an array is one record):
#   create [0,1]          records 0 1
#   {"v":2}               record  2
#   [3,[4,5],"6"]         records 3 4 5
#   "7"                   record  6
ALL='[0,1,{"v":2},3,[4,5],"6","7"]'

# basics URL: the rules of the extension on one JSON stream at URL (a
# fresh path) and a text stream at URL-t; the same expectations wherever
# it runs (memory, a cluster's node)
basics() {
  local u=$1 x
  hd PUT "$u" "${JS[@]}" -d '[0,1]'
  same "create [0,1]: 201, first 0, start 0, next 2" "$(rec)" "201 0 0 2"
  same "create: Stream-Extensions: json-record-coordinates-v1" "$(h Stream-Extensions)" json-record-coordinates-v1
  hd POST "$u" "${JS[@]}" -d '{"v":2}'
  same "append one value: 204, start 2, next 3" "$(rec)" "204 0 2 3"
  O3=$(h Stream-Next-Offset)
  hd POST "$u" "${JS[@]}" -d '[3,[4,5],"6"]'
  same "append an array of 3: start 3, next 6" "$(rec)" "204 0 3 6"
  hd POST "$u" "${JS[@]}" -d '"7"'
  same "append a string: start 6, next 7" "$(rec)" "204 0 6 7"
  TAIL=$(h Stream-Next-Offset)
  hd HEAD "$u"
  same "HEAD: first 0, start 0 (where a GET starts), next 7" "$(rec)" "200 0 0 7"
  same "HEAD: Stream-Extensions" "$(h Stream-Extensions)" json-record-coordinates-v1
  hd GET "$u"
  same "GET (offset): every record, start 0, next 7" "$(rec) $(body)" "200 0 0 7 $ALL"
  hd GET "$u?record=0"
  same "record=0: every record" "$(rec) $(body)" "200 0 0 7 $ALL"
  hd GET "$u?record=4"
  same "record=4: from inside an append" "$(rec) $(body)" '200 0 4 7 [[4,5],"6","7"]'
  hd GET "$u?record=2"
  same "record=2: an append's start" "$(rec) $(body) $(h Stream-Up-To-Date)" '200 0 2 7 [{"v":2},3,[4,5],"6","7"] true'
  hd GET "$u?record=3&max_records=2"
  same "record=3&max_records=2: 3 and 4, cut inside an append" "$(rec) $(body) $(h Stream-Up-To-Date)" '200 0 3 5 [3,[4,5]] '
  x=$(h Stream-Next-Offset)
  hd GET "$u?offset=$x"
  same "... its Stream-Next-Offset continued with offset=: exactly records 5 and 6" "$(rec) $(body)" '200 0 5 7 ["6","7"]'
  hd GET "$u?record=0&max_records=1"
  x=$(h Stream-Next-Offset)
  hd GET "$u?offset=$x"
  same "record=0&max_records=1, continued by offset: records 1 to 6" "$(rec) $(body)" '200 0 1 7 [1,{"v":2},3,[4,5],"6","7"]'
  hd GET "$u?offset=$O3"
  same "an offset on an append boundary: that append on" "$(rec) $(body)" '200 0 3 7 [3,[4,5],"6","7"]'
  hd GET "$u?tail_records=2"
  same "tail_records=2: records 5 and 6" "$(rec) $(body)" '200 0 5 7 ["6","7"]'
  hd GET "$u?tail_records=100"
  same "tail_records=100: clamped to the first" "$(rec) $(body)" "200 0 0 7 $ALL"
  hd GET "$u?tail_records=3&max_records=1"
  same "tail_records=3&max_records=1: record 4" "$(rec) $(body)" '200 0 4 5 [[4,5]]'
  hd GET "$u?tail_records=0"
  same "tail_records=0: nothing, at next" "$(rec) $(body)" '200 0 7 7 []'
  hd GET "$u?record=now"
  same "record=now: nothing, at next" "$(rec) $(body) $(h Stream-Next-Offset)" "200 0 7 7 [] $TAIL"
  hd GET "$u?record=7"
  same "record=7 (= next): 200, nothing" "$(rec) $(body)" '200 0 7 7 []'
  hd GET "$u?record=8"
  same "record=8 (past next): 400 with first and next" "$(st) $(h Stream-Record-First) $(h Stream-Record-Next)" "400 0 7"
  same "bad record parameters: 400 each" "$(code GET "$u?max_records=2") $(code GET "$u?record=1&max_records=0") $(code GET "$u?record=1&offset=-1") $(code GET "$u?tail_records=1&offset=-1") $(code GET "$u?max_records=1&offset=-1") $(code GET "$u?record=1&tail_records=1") $(code GET "$u?record_view=full") $(code GET "$u?record=abc") $(code GET "$u?record=-1") $(code GET "$u?record=1&record=2") $(code GET "$u?record=9007199254740992") $(code GET "$u?tail_records=9007199254740992") $(code GET "$u?record=1&max_records=9007199254740992")" \
    "400 400 400 400 400 400 400 400 400 400 400 400 400"
  same "record=2^53-1 parses, and is past next: 400" "$(code GET "$u?record=9007199254740991")" 400
  same "record_view=envelope with offset: 200" "$(code GET "$u?offset=-1&record_view=envelope")" 200
  # envelope
  hd GET "$u?record=2&max_records=3&record_view=envelope"
  same "envelope: its content type, start 2, next 5" "$(rec) $(h Content-Type)" "200 0 2 5 application/vnd.durable-stream-records+ndjson"
  same "envelope: records 2..4, one JSON line each" "$(body | envelope)" '2..4|{"v":2} 3 [4,5]'
  hd GET "$u?offset=-1&record_view=envelope"
  same "envelope from offset -1: records 0..6" "$(body | envelope)" '0..6|0 1 {"v":2} 3 [4,5] "6" "7"'
  hd GET "$u?record=now&record_view=envelope"
  same "envelope at next: an empty body" "$(rec) $(wc -c <"$TMP/body")" "200 0 7 7 0"
  # Stream-Record-Match
  hd POST "$u" "${JS[@]}" -H 'Stream-Record-Match: 6' -d '[8]'
  same "Stream-Record-Match stale (6, next 7): 412 with Stream-Record-Next 7" "$(st) $(h Stream-Record-Next)" "412 7"
  hd HEAD "$u"
  same "... nothing appended: next 7, the same tail" "$(rec) $(h Stream-Next-Offset)" "200 0 0 7 $TAIL"
  hd POST "$u" "${JS[@]}" -H 'Stream-Record-Match: 7' -d '[8,9]'
  same "Stream-Record-Match 7: 204, start 7, next 9" "$(rec)" "204 0 7 9"
  same "Stream-Record-Match bad numbers: 400 each" \
    "$(code POST "$u" "${JS[@]}" -H 'Stream-Record-Match: x' -d 1) $(code POST "$u" "${JS[@]}" -H 'Stream-Record-Match: -1' -d 1) $(code POST "$u" "${JS[@]}" -H 'Stream-Record-Match: 9007199254740992' -d 1)" \
    "400 400 400"
  hd POST "$u" "${JS[@]}" -H 'Stream-Record-Match: 9' -H 'Producer-Id: p' -H 'Producer-Epoch: 0' -H 'Producer-Seq: 0' -d '10'
  same "producer + match 9: 200, next 10" "$(rec)" "200 0 9 10"
  hd POST "$u" "${JS[@]}" -H 'Stream-Record-Match: 9' -H 'Producer-Id: p' -H 'Producer-Epoch: 0' -H 'Producer-Seq: 0' -d '10'
  same "... its retry: a duplicate (204), not a 412, nothing appended" "$(st) $(h Producer-Seq) $(h Stream-Record-Next)" "204 0 10"
  hd POST "$u" "${JS[@]}" -H 'Stream-Record-Match: 9' -H 'Producer-Id: p' -H 'Producer-Epoch: 0' -H 'Producer-Seq: 1' -d '11'
  same "... its next seq with the stale match: 412" "$(st) $(h Stream-Record-Next)" "412 10"
  hd GET "$u?record=7"
  same "records 7..9 as appended" "$(rec) $(body)" '200 0 7 10 [8,9,10]'
  # a text stream
  hd PUT "$u-t" -H 'Content-Type: text/plain' -d 'abc'
  same "a text stream: no record headers, no extension" "$(st)|$(h Stream-Record-Next)|$(h Stream-Extensions)" "201||"
  same "a text stream: record=0 400, Stream-Record-Match 400" \
    "$(code GET "$u-t?record=0") $(code POST "$u-t" -H 'Content-Type: text/plain' -H 'Stream-Record-Match: 0' -d x)" "400 400"
  same "a text stream: nothing appended by the refused match" "$(get "$u-t")" abc
}

# ------------------------------------------------------------ in memory
echo "# records.sh: in memory"
start mem $H1
U=http://127.0.0.1:$H1/v1/stream
basics "$U/r"

# the README's record commands, verbatim but for the port, and what it
# says they print
start readme $H2
sed -n '/^```sh records/,/^```/p' README.md | sed '1d;$d' |
  sed "s/127\.0\.0\.1:4437/127.0.0.1:$H2/g" >"$TMP/readme.sh"
awk '/^```sh records/{f=1} f&&/^prints/{g=1;next} g&&/^```$/{if(h)exit;h=1;next} g&&h' README.md >"$TMP/readme.want"
if [ -s "$TMP/readme.sh" ] && [ -s "$TMP/readme.want" ]; then
  timeout 20 bash "$TMP/readme.sh" 2>&1 | tr -d '\r' >"$TMP/readme.got"
  if cmp -s "$TMP/readme.got" "$TMP/readme.want"; then ok "the README's record commands print what it says"
  else not_ok "the README's record commands print what it says" "$(diff "$TMP/readme.want" "$TMP/readme.got" | tr '\n' '|')"; fi
else
  not_ok "the README has its record commands and their output"
fi
lib_kill $PID_readme

# long-poll from a record
curl -s -D "$TMP/lp.head" -o "$TMP/lp.body" --max-time 8 "$U/r?record=now&live=long-poll" &
LP=$!
sleep 0.5
hd POST "$U/r" "${JS[@]}" -d '[11,12]'
same "an append while a long-poll waits: start 10, next 12" "$(rec)" "204 0 10 12"
wait $LP
tr -d '\r' <"$TMP/lp.head" >"$TMP/head.lf"
cp "$TMP/lp.body" "$TMP/body"
same "long-poll from record=now: the append, start 10, next 12" "$(rec) $(body)" '200 0 10 12 [11,12]'
hd GET "$U/r?record=11&live=long-poll"
same "long-poll from record=11: at once, record 11" "$(rec) $(body)" '200 0 11 12 [12]'
hd GET "$U/r?record=1&max_records=2&live=long-poll&record_view=envelope"
same "long-poll, envelope, max_records=2: records 1 and 2" "$(rec) $(body | envelope)" '200 0 1 3 1..2|1 {"v":2}'

# SSE: a closed stream ends the response, so it is read whole
# sse_check: the event stream on stdin parsed strictly (every field line
# "event: T" or "data:...", events ended by an empty line, types data and
# control only); prints the data payloads joined by " " then "|" and each
# control's record fields as first:next
sse_check() {
  node -e '
let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{
  if (!s.endsWith("\n\n")) { console.log("BAD: unterminated"); return; }
  const evs = s.slice(0, -2).split("\n\n"); let data = [], ctl = [];
  for (const e of evs) {
    const ls = e.split("\n");
    if (ls[0].startsWith(":")) { continue; }
    const m = /^event: (data|control)$/.exec(ls[0]);
    if (!m) { console.log("BAD: " + ls[0]); return; }
    let d = [];
    for (const l of ls.slice(1)) { if (!l.startsWith("data:")) { console.log("BAD line " + l); return; } d.push(l.slice(5)); }
    const p = d.join("\n");
    if (m[1] === "data") data.push(p);
    else { let o; try { o = JSON.parse(p) } catch (e) { console.log("BAD control " + p); return; }
           if (!Number.isInteger(o.streamFirstRecord) || !Number.isInteger(o.streamNextRecord)) { console.log("BAD fields " + p); return; }
           ctl.push(o.streamFirstRecord + ":" + o.streamNextRecord + (o.streamClosed ? ":closed" : "")); }
  }
  console.log(data.join(" ") + "|" + ctl.join(" "));
})'
}
hd PUT "$U/s" "${JS[@]}" -d '[0,1,2]'
hd POST "$U/s" "${JS[@]}" -d '[3,{"x":[4]}]'
hd POST "$U/s" "${JS[@]}" -H 'Stream-Closed: true' -d '5'
curl -s -N -D "$TMP/sse.head" --max-time 5 "$U/s?record=1&live=sse&record_view=envelope" >"$TMP/sse.body"
same "SSE envelope: Stream-Data-Content-Type" \
  "$(tr -d '\r' <"$TMP/sse.head" | sed -n 's/^Stream-Data-Content-Type: //Ip')" application/vnd.durable-stream-record+json
same "SSE envelope from record=1: one data event per record, control fields" \
  "$(sse_check <"$TMP/sse.body")" \
  '{"record":1,"value":1} {"record":2,"value":2} {"record":3,"value":3} {"record":4,"value":{"x":[4]}} {"record":5,"value":5}|0:6:closed'
curl -s -N --max-time 5 "$U/s?offset=-1&live=sse" >"$TMP/sse.body"
same "SSE (arrays) from offset -1: control events carry the records" \
  "$(sse_check <"$TMP/sse.body")" '[0,1,2,3,{"x":[4]},5]|0:6:closed'
curl -s -N --max-time 5 "$U/s?tail_records=2&live=sse" >"$TMP/sse.body"
same "SSE from tail_records=2" "$(sse_check <"$TMP/sse.body")" '[{"x":[4]},5]|0:6:closed'

# concurrent appends with one Stream-Record-Match: exactly one applies
# (decided in log order by the apply; a check before the log would let
# every one of them through)
race() {
  local u=$1 n=$2 i
  for i in $(seq 1 20); do
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 5 -X POST "${JS[@]}" \
      -H "Stream-Record-Match: $n" -d "[\"r$i\"]" "$u" >"$TMP/race.$i" &
  done
  wait
  echo "$(cat "$TMP"/race.* | grep -c '^204$') $(cat "$TMP"/race.* | grep -c '^412$')"
  rm -f "$TMP"/race.*
}
same "20 concurrent appends with Stream-Record-Match 12: one 204, 19 412" "$(race "$U/r" 12)" "1 19"
hd HEAD "$U/r"
same "... next 13" "$(h Stream-Record-Next)" 13

# forks: records continue the source's
hd PUT "$U/f" "${JS[@]}" -H 'Stream-Forked-From: /v1/stream/r' -d '["f"]'
same "a fork of the whole source: its first record is the source's next" "$(rec)" "201 0 13 14"
hd GET "$U/f?record=12"
same "fork: record=12 (its source's last)" "$(st) $(h Stream-Record-Start) $(body | js 'j.length')" "200 12 2"
hd GET "$U/f?record=2&max_records=2"
same "fork: record=2 (inherited, from inside nothing of its own)" "$(rec) $(body)" '200 0 2 4 [{"v":2},3]'
hd GET "$U/f?record=13"
same "fork: record=13, its own" "$(rec) $(body)" '200 0 13 14 ["f"]'
hd GET "$U/f"
same "fork: a GET from offset 0 starts at record 0" "$(h Stream-Record-Start) $(h Stream-Record-Next)" "0 14"
hd PUT "$U/f3" "${JS[@]}" -H 'Stream-Forked-From: /v1/stream/r' -H "Stream-Fork-Offset: $O3"
same "a fork at an append boundary (after record 2): next 3" "$(rec)" "201 0 3 3"
hd POST "$U/f3" "${JS[@]}" -d '["a","b"]'
same "... its appends: 3 and 4" "$(rec)" "204 0 3 5"
hd GET "$U/f3?record=1"
same "... record=1: the source's 1 and 2, then its own" "$(rec) $(body)" '200 0 1 5 [1,{"v":2},"a","b"]'
hd PUT "$U/ff" "${JS[@]}" -H 'Stream-Forked-From: /v1/stream/f3'
same "a fork of a fork: next 5" "$(rec)" "201 0 5 5"
hd PUT "$U/ff2" "${JS[@]}" -H 'Stream-Forked-From: /v1/stream/f3' -H 'Stream-Fork-Offset: 0000000000000000_0000000000000004'
same "a fork of a fork at an offset the middle one inherited (after records 0, 1): next 2" "$(rec)" "201 0 2 2"
hd PUT "$U/fsub" "${JS[@]}" -H 'Stream-Forked-From: /v1/stream/r' -H "Stream-Fork-Offset: $O3" -H 'Stream-Fork-Sub-Offset: 2'
same "a fork with a sub-offset of 2 messages into the append at record 3: next 5" "$(rec)" "201 0 5 5"
lib_kill $PID_mem

# ------------------------------------------------------------ --wal-dir
echo "# records.sh: --wal-dir, one group, small snapshots and memory"
W=$TMP/wal
WAL=(--wal-dir "$W" --raft-group-count 1 --snapshot-bytes 4096 --hot-max-bytes 65536)
start wal $H1 "${WAL[@]}"
basics "$U/w"
# many appends: snapshots are written, and most units leave memory
PAD=$(head -c 300 /dev/zero | tr '\0' p)
code PUT "$U/big" "${JS[@]}" >/dev/null
for i in $(seq 1 120); do
  code POST "$U/big" "${JS[@]}" -d "[\"$PAD\",$i,{\"i\":$i}]" >/dev/null
done
hd HEAD "$U/big"
same "360 records in 120 appends of 3" "$(h Stream-Record-Next)" 360
hd PUT "$U/wf" "${JS[@]}" -H 'Stream-Forked-From: /v1/stream/big' -d '"own"'
same "a fork of it: 360, next 361" "$(rec)" "201 0 360 361"
check "a snapshot was written" [ -f "$W/g00000/snapshot" ]
wal_checks() {
  hd HEAD "$U/big"
  same "$1: next 360" "$(h Stream-Record-Next)" 360
  hd GET "$U/big?record=301&max_records=2"
  same "$1: record=301&max_records=2 -> 101, {\"i\":101}" "$(rec) $(body | js 'JSON.stringify(j)')" '200 0 301 303 [101,{"i":101}]'
  hd GET "$U/big?tail_records=1"
  same "$1: tail_records=1" "$(rec) $(body)" '200 0 359 360 [{"i":120}]'
  hd GET "$U/big?record=4&max_records=1&record_view=envelope"
  same "$1: envelope of record 4 (from the log)" "$(body | envelope)" '4..4|2'
  hd GET "$U/w?record=3&max_records=2"
  same "$1: the small stream's records 3, 4" "$(rec) $(body)" '200 0 3 5 [3,[4,5]]'
  hd HEAD "$U/w"
  same "$1: the small stream's next" "$(h Stream-Record-Next)" "$2"
  hd GET "$U/wf?record=359"
  same "$1: the fork's record 359 (inherited) and 360 (its own)" "$(rec) $(body)" '200 0 359 361 [{"i":120},"own"]'
  hd POST "$U/big" "${JS[@]}" -H 'Stream-Record-Match: 359' -d 1
  same "$1: a stale Stream-Record-Match: 412 next 360" "$(st) $(h Stream-Record-Next)" "412 360"
}
wal_checks "before a restart" 10
# with a WAL an append is applied only after its entry is written: many
# are in flight at once, so a check made before the log would pass them
hd HEAD "$U/w"
same "--wal-dir: 20 concurrent appends with Stream-Record-Match 10: one 204, 19 412" \
  "$(race "$U/w" 10)" "1 19"
hd HEAD "$U/w"
same "... next 11" "$(h Stream-Record-Next)" 11
lib_kill $PID_wal
start wal $H1 "${WAL[@]}"
wal_checks "after kill -9 (snapshot + log)" 11
hd POST "$U/big" "${JS[@]}" -H 'Stream-Record-Match: 360' -d '[1,2]'
same "after kill -9: an append at 360" "$(rec)" "204 0 360 362"
lib_kill $PID_wal
start wal $H1 "${WAL[@]}"
hd HEAD "$U/big"
same "after a second kill -9: next 362" "$(h Stream-Record-Next)" 362
lib_kill $PID_wal

# ------------------------------------------------------------ cold tier
echo "# records.sh: a cold tier (--cold-dir)"
C=$TMP/cold
COLD=(--wal-dir "$TMP/cw" --raft-group-count 1 --hot-max-bytes 65536 --snapshot-bytes 65536
  --cold-flush-age-ms 200 --cold-cache-bytes 131072 --cold-dir "$C")
start cold $H1 "${COLD[@]}"
code PUT "$U/c" "${JS[@]}" >/dev/null
PAD=$(head -c 2000 /dev/zero | tr '\0' c)
for i in $(seq 0 299); do
  code POST "$U/c" "${JS[@]}" -d "[\"$PAD\",$i]" >/dev/null
done
n=0
for i in $(seq 1 100); do
  n=$(find "$C" -type f 2>/dev/null | wc -l)
  [ "$n" -gt 0 ] && break
  sleep 0.1
done
check "cold objects were written" [ "$n" -gt 0 ]
cold_checks() {
  hd GET "$U/c?record=1&max_records=1"
  same "$1: record 1 (in the cold tier)" "$(rec) $(body)" '200 0 1 2 [0]'
  hd GET "$U/c?record=401&max_records=1"
  same "$1: record 401" "$(rec) $(body)" '200 0 401 402 [200]'
  hd HEAD "$U/c"
  same "$1: next 600" "$(h Stream-Record-Next)" 600
}
cold_checks "cold"
lib_kill $PID_cold
start cold $H1 "${COLD[@]}"
cold_checks "cold, after kill -9"
lib_kill $PID_cold

# ------------------------------------------------------------ a 3-node cluster
echo "# records.sh: a 3-node cluster, peers $P1 $P2 $P3"
printf 'the secret of the records test cluster\n' >"$TMP/secret"
PEERS=(--peer 1=127.0.0.1:$P1 --peer 2=127.0.0.1:$P2 --peer 3=127.0.0.1:$P3
  --cluster-secret-file "$TMP/secret")
start n1 $H1 --wal-dir "$TMP/c1" --node-id 1 "${PEERS[@]}"
start n2 $H2 --wal-dir "$TMP/c2" --node-id 2 "${PEERS[@]}"
start n3 $H3 --wal-dir "$TMP/c3" --node-id 3 "${PEERS[@]}"
same "cluster: create through node 1" "$(req 1 PUT /v1/stream/k)" 201
# appends through node 1 with producer headers (a retry applies once)
jreq() { # jreq NODE PATH DATA SEQ [MATCH]: status, retried on 503 / none
  local c end=$((SECONDS + 15)) m=()
  [ -n "${5:-}" ] && m=(-H "Stream-Record-Match: $5")
  while [ $SECONDS -lt $end ]; do
    c=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 -X POST "${JS[@]}" "${m[@]}" \
      -H 'Producer-Id: pk' -H 'Producer-Epoch: 0' -H "Producer-Seq: $4" -d "$3" "$(url "$1" "$2")")
    case $c in 503|000) sleep 0.1 ;; *) echo "$c"; return ;; esac
  done
  echo "$c"
}
# hdr METHOD URL [CURL ARGS...]: hd, again while the answer is 503 or
# none (no leader yet, or one just changed), for at most about 15 s
hdr() {
  local end=$((SECONDS + 15))
  while :; do
    hd "$@"
    case $(st) in 503|"") [ $SECONDS -lt $end ] || return 0; sleep 0.1 ;; *) return 0 ;; esac
  done
}
hdr PUT "$(url 1 /v1/stream/j)" "${JS[@]}" -d '[0,1]'
same "cluster: a JSON stream through node 1" "$(rec)" "201 0 0 2"
same "cluster: appends through node 1" \
  "$(jreq 1 /v1/stream/j '{"v":2}' 0) $(jreq 1 /v1/stream/j '[3,[4,5],"6"]' 1) $(jreq 1 /v1/stream/j '"7"' 2)" "200 200 200"
for n in 1 2 3; do
  hdr GET "$(url $n "/v1/stream/j?record=3&max_records=2")"
  same "cluster: node $n's record=3&max_records=2" "$(rec) $(body)" '200 0 3 5 [3,[4,5]]'
  hdr HEAD "$(url $n /v1/stream/j)"
  same "cluster: node $n's HEAD: next 7" "$(rec)" "200 0 0 7"
done
same "cluster: a stale Stream-Record-Match through node 2: 412" "$(jreq 2 /v1/stream/j 8 3 6)" 412
same "cluster: the right one through node 3: 200" "$(jreq 3 /v1/stream/j 8 3 7)" 200
for n in 1 2 3; do
  hdr GET "$(url $n "/v1/stream/j?tail_records=2&record_view=envelope")"
  same "cluster: node $n's tail_records=2, envelope" "$(body | envelope)" '6..7|"7" 8'
done
for n in 1 2 3; do lib_kill "$(eval echo \$PID_n$n)"; done

echo "1..$LIB_N"
[ "$FAILS" -eq 0 ] && echo "# records.sh: all passed" || echo "# records.sh: $FAILS failed"
[ "$FAILS" -eq 0 ]
