#!/usr/bin/env bash
# admin.sh -- the admin listener (issue 17, items 1-3): GET /metrics in
# the Prometheus text format, /healthz, /readyz, and its paths kept off
# the public listener, against the real binary.
#
#   bash test/admin.sh               # uses ./ursula (built by make)
#   URSULA_BIN=path bash test/admin.sh
#
# Every scrape is parsed by the official Prometheus Python client's text
# parser (Debian: python3-prometheus-client; .ci/run installs it), and
# the counters are checked against what the requests must have done by
# the protocol: a PUT that creates answers 201, a POST that appends 204
# (protocol 5.1, 5.2), so after 1 PUT and K POSTs of B bytes each the
# scrape shows exactly those responses, K appends and K*B body bytes.
# A long-poll that waits shows as a live connection; what it is sent
# shows in the live bytes.  /readyz is checked through a 3-node cluster
# losing its majority (503, saying so) and getting it back (200).
# Every wait is bounded; nothing leaves 127.0.0.1.
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${1:-${URSULA_BIN:-./ursula}}
TMP=$(mktemp -d)
. test/lib.sh
PY=/usr/bin/python3
read -r H A P1 P2 P3 A1 A2 A3 AB AM <<<"$(free_ports 10)"

if ! "$PY" -c 'import prometheus_client' 2>/dev/null; then
  not_ok "the Prometheus client's parser is installed" \
    "apt-get install python3-prometheus-client (.ci/run does)"
  echo "1..$LIB_N"; exit 1
fi

# scrape PORT NAME: the scrape of the admin listener on PORT, parsed by
# the Prometheus parser, saved as $TMP/NAME.json ({"sample{labels}":
# value}); fails (with the parser's error) if it does not parse
scrape() {
  curl -s --max-time 5 "http://127.0.0.1:$1/metrics" >"$TMP/$2.txt" || return 1
  "$PY" - "$TMP/$2.txt" >"$TMP/$2.json" <<'EOF'
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
text = open(sys.argv[1]).read()
for fam in text_string_to_metric_families(text):
    for s in fam.samples:
        labels = ",".join('%s="%s"' % kv for kv in sorted(s.labels.items()))
        out[s.name + "{" + labels + "}"] = s.value
json.dump(out, sys.stdout)
EOF
}
# val NAME KEY: the value of sample KEY (name{labels}, labels sorted) in
# scrape NAME, or 0 if absent (a counter never incremented is not written)
val() {
  "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); v=d.get(sys.argv[2],0); print(int(v) if float(v).is_integer() else v)' \
    "$TMP/$1.json" "$2"
}
# delta KEY: its value in scrape "after" less in "before"
delta() { echo $(( $(val after "$1") - $(val before "$1") )); }
# same DESCRIPTION GOT WANT
same() {
  if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "got $2, want $3"; fi
}
# code METHOD URL [ARGS...]: the status of one request
code() {
  local m=$1 u=$2; shift 2
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X "$m" "$@" "$u"
}

# --- one node in memory, admin on its own port --------------------------------
"$BIN" --listen 127.0.0.1:$H --admin-listen 127.0.0.1:$A --core-count 2 \
  >"$TMP/one.log" 2>&1 &
lib_track $!
for i in $(seq 1 100); do
  [ "$(code GET "http://127.0.0.1:$A/healthz")" = 200 ] && break
  sleep 0.05
done
U=http://127.0.0.1:$H
AU=http://127.0.0.1:$A

same "healthz: 200 ok" "$(curl -s "$AU/healthz") $(code GET "$AU/healthz")" "ok 200"
same "readyz: 200 ready (a single node)" \
  "$(curl -s "$AU/readyz") $(code GET "$AU/readyz")" "ready 200"
if grep -qF "admin on http://127.0.0.1:$A" "$TMP/one.log"; then
  ok "the log says where the admin listener is"
else
  not_ok "the log says where the admin listener is" "$(tr '\n' '|' <"$TMP/one.log")"
fi

check "a scrape parses (Prometheus text format)" scrape "$A" before
ct=$(curl -s -o /dev/null -w '%{content_type}' "$AU/metrics")
same "its Content-Type is the text format 0.0.4" "$ct" \
  "text/plain; version=0.0.4; charset=utf-8"

K=7
BODY=0123456789abcdef # 16 bytes
code PUT "$U/v1/stream/a" -H 'Content-Type: text/plain' >/dev/null
for i in $(seq 1 $K); do
  code POST "$U/v1/stream/a" -H 'Content-Type: text/plain' --data-binary "$BODY" >/dev/null
done
code GET "$U/v1/stream/missing" >/dev/null
check "a second scrape parses" scrape "$A" after
same "PUT 201 counted once" \
  "$(delta 'ursula_http_requests_total{code="201",method="PUT",route="stream"}')" 1
same "POST 204 counted $K times" \
  "$(delta 'ursula_http_requests_total{code="204",method="POST",route="stream"}')" $K
same "GET 404 counted once" \
  "$(delta 'ursula_http_requests_total{code="404",method="GET",route="stream"}')" 1
same "appends: $K" "$(delta 'ursula_appends_total{}')" $K
same "append bytes: $K x 16" "$(delta 'ursula_append_bytes_total{}')" $((K * 16))
same "append latency histogram: $K more observations" \
  "$(delta 'ursula_append_latency_seconds_count{}')" $K
same "its +Inf bucket equals its count" \
  "$(val after 'ursula_append_latency_seconds_bucket{le="+Inf"}')" \
  "$(val after 'ursula_append_latency_seconds_count{}')"
# le values in the canonical form (OpenMetrics: the shortest decimal, at
# least one digit after the point), the form Prometheus stores them in
same "le labels canonical: the latency bounds, then the batch bounds" \
  "$(sed -n 's/^ursula_append_latency_seconds_bucket{le="\([^"]*\)"}.*/\1/p' "$TMP/after.txt" | tr '\n' ' ')| $(sed -n 's/^ursula_wal_sync_batch_groups_bucket{le="\([^"]*\)"}.*/\1/p' "$TMP/after.txt" | head -3 | tr '\n' ' ')" \
  "0.00025 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 1.0 5.0 +Inf | 1.0 2.0 3.0 "
# a scrape reads the counts before its own response is counted: between
# the two, the first scrape's response and the Content-Type check's
same "admin GET 200s between the scrapes: 2" \
  "$(delta 'ursula_http_requests_total{code="200",method="GET",route="admin"}')" 2
same "streams: 1" "$(val after 'ursula_streams{}')" 1
same "groups: 64, all led by the single node" \
  "$(val after 'ursula_raft_groups{}') $(val after 'ursula_raft_groups_led{}')" "64 64"

# a long-poll at the tail waits: a live connection, then 16 bytes sent
curl -s -o "$TMP/poll.out" --max-time 20 \
  "$U/v1/stream/a?offset=$(curl -s -D - -o /dev/null "$U/v1/stream/a" | tr -d '\r' | sed -n 's/^Stream-Next-Offset: //Ip')&live=long-poll" &
POLL=$!
live=0
for i in $(seq 1 100); do
  scrape "$A" poll && live=$(val poll 'ursula_live_connections{}')
  [ "$live" -ge 1 ] 2>/dev/null && break
  sleep 0.05
done
same "a waiting long-poll is a live connection" "$live" 1
code POST "$U/v1/stream/a" -H 'Content-Type: text/plain' --data-binary "$BODY" >/dev/null
wait "$POLL"
scrape "$A" after2
same "the long-poll got the append" "$(cat "$TMP/poll.out")" "$BODY"
same "live bytes sent: 16 more" \
  "$(( $(val after2 'ursula_live_sent_bytes_total{}') - $(val after 'ursula_live_sent_bytes_total{}') ))" 16
same "long-polls started: 1 more" \
  "$(( $(val after2 'ursula_live_readers_started_total{kind="long_poll"}') - $(val after 'ursula_live_readers_started_total{kind="long_poll"}') ))" 1
same "no live connection once it is answered" "$(val after2 'ursula_live_connections{}')" 0

# --- the paths of each listener ------------------------------------------------
same "the public listener does not serve /metrics (no such stream)" \
  "$(code GET "$U/metrics")" 404
same "the admin listener serves no stream" "$(code GET "$AU/v1/stream/a")" 404
same "the admin listener: POST /metrics is 405" "$(code POST "$AU/metrics")" 405
allow=$(curl -s -D - -o /dev/null -X DELETE "$AU/readyz" | tr -d '\r' | sed -n 's/^Allow: //Ip')
same "... with Allow: GET, HEAD (RFC 9110 15.5.6)" "$allow" "GET, HEAD"
same "HEAD /metrics: 200 and no body" \
  "$(curl -s -I -o "$TMP/head.out" -w '%{http_code}' "$AU/metrics")|$(curl -s -I "$AU/metrics" | tr -d '\r' | sed '1,/^$/d' | wc -c)" "200|0"
same "a GET with a body on the admin listener: 413 at its head (no body budget taken)" \
  "$(code GET "$AU/healthz" -H 'Content-Type: text/plain' --data-binary x -X GET)" 413
same "no CORS headers on the admin listener (no web page reads it)" \
  "$(curl -s -D - -o /dev/null "$AU/healthz" | tr -d '\r' | grep -ci '^Access-Control-')" 0
same "the admin listener serves the cluster status" \
  "$(code GET "$AU/__ursula/cluster")" 200
same "... and the public one does not, unless --public-status 1" \
  "$(code GET "$U/__ursula/cluster")" 404

# --- 70 clients that connect and send nothing (or idle after a request)
# hold every admin slot (conn.c: at most 64); a probe still gets its
# answer, taking the place of the one waiting longest for a request.
python3 - "$A" "$TMP/idle.up" <<'PY' &
import socket, sys, time
held = []
for i in range(70):
    try:
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 2)
        if i % 2:  # every other one: a whole request, then idle
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        held.append(s)
    except OSError:
        pass
open(sys.argv[2], "w").write(str(len(held)))
time.sleep(20)
PY
IDLE=$!
for i in $(seq 1 50); do [ -s "$TMP/idle.up" ] && break; sleep 0.1; done
sleep 0.3
same "70 idle admin connections: /healthz and /readyz still answer 200" \
  "$(code GET "$AU/healthz") $(code GET "$AU/readyz")" "200 200"
kill $IDLE 2>/dev/null; wait $IDLE 2>/dev/null

# --- --admin-listen off, a busy address -----------------------------------------
"$BIN" --listen 127.0.0.1:0 --admin-listen off --core-count 1 >"$TMP/off.log" 2>&1 &
OFF=$!
lib_track $OFF
for i in $(seq 1 100); do grep -q listening "$TMP/off.log" && break; sleep 0.05; done
if grep -q "admin on" "$TMP/off.log"; then
  not_ok "--admin-listen off: no admin listener" "$(tr '\n' '|' <"$TMP/off.log")"
else
  ok "--admin-listen off: no admin listener"
fi
lib_kill $OFF
"$BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:$A --core-count 1 >"$TMP/busy.log" 2>&1
rc=$?
same "an explicit admin address that is taken: exit 1" "$rc" 1
if grep -q "admin-listen: " "$TMP/busy.log"; then ok "... saying admin-listen"
else not_ok "... saying admin-listen" "$(tr '\n' '|' <"$TMP/busy.log")"; fi

# --- clients refused at accept: --max-connections 2 held by two idle
# clients, three more each get 503 (conn.c) and are counted
"$BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:$AM --core-count 1 \
  --max-connections 2 >"$TMP/max.log" 2>&1 &
lib_track $!
for i in $(seq 1 100); do grep -q listening "$TMP/max.log" && break; sleep 0.05; done
MU=http://127.0.0.1:$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$TMP/max.log" | head -1)
python3 - "${MU##*:}" "$TMP/max.up" <<'PY' &
import socket, sys, time
held = [socket.create_connection(("127.0.0.1", int(sys.argv[1])), 2) for _ in range(2)]
open(sys.argv[2], "w").write("2")
time.sleep(20)
PY
HOLD=$!
for i in $(seq 1 50); do [ -s "$TMP/max.up" ] && break; sleep 0.1; done
sleep 0.2
same "--max-connections 2 held: three more clients get 503" \
  "$(code GET "$MU/x") $(code GET "$MU/x") $(code GET "$MU/x")" "503 503 503"
scrape "$AM" max
same "... ursula_connections_refused_total counts them, ursula_connections the two held" \
  "$(val max 'ursula_connections_refused_total{}') $(val max 'ursula_connections{}')" "3 2"
kill $HOLD 2>/dev/null; wait $HOLD 2>/dev/null
if grep -q '^ursula_core_mailbox_depth{core="0"} [0-9]' "$TMP/max.txt"; then
  ok "ursula_core_mailbox_depth: one gauge per core"
else not_ok "ursula_core_mailbox_depth: one gauge per core" "$(grep mailbox "$TMP/max.txt")"; fi

# --- the admin listener past the open-file limit (EMFILE): accept() fails
# and leaves the client queued, the listener readable; core 0 stops
# watching it for a while (conn.c, THE ADMIN LISTENER) rather than spin.
# Under `ulimit -n 64` with 80 clients held on the public port, 2 s of
# probes knocking on the admin port cost under 0.5 s of CPU; once the
# clients go, a probe is answered.
read -r AF <<<"$(free_ports 1)"
(ulimit -n 64 && exec "$BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:$AF \
  --core-count 2 --max-connections 1000) >"$TMP/fd.log" 2>&1 &
FPID=$!
lib_track $FPID
for i in $(seq 1 100); do grep -q listening "$TMP/fd.log" && break; sleep 0.05; done
FP=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$TMP/fd.log" | head -1)
python3 - "$FP" "$TMP/fd.up" <<'PY' &
import socket, sys, time
held = []
for _ in range(80):
    try: held.append(socket.create_connection(("127.0.0.1", int(sys.argv[1])), 2))
    except OSError: pass
open(sys.argv[2], "w").write(str(len(held)))
time.sleep(30)
PY
HOLD=$!
for i in $(seq 1 50); do [ -s "$TMP/fd.up" ] && break; sleep 0.1; done
sleep 0.5
cpu() { awk '{ print $14 + $15 }' "/proc/$FPID/stat"; }
c0=$(cpu); knocks=0; answered=0
end=$(( $(date +%s%N) / 1000000 + 2000 ))
while [ $(( $(date +%s%N) / 1000000 )) -lt "$end" ]; do
  [ "$(code GET "http://127.0.0.1:$AF/healthz" --max-time 0.3)" = 200 ] && answered=$((answered + 1))
  knocks=$((knocks + 1))
done
c1=$(cpu)
cpu_ms=$(( (c1 - c0) * 1000 / $(getconf CLK_TCK) ))
if [ "$knocks" -gt 2 ] && [ "$cpu_ms" -lt 500 ]; then
  ok "admin port at the open-file limit: $knocks probes in 2 s ($answered answered), $cpu_ms ms of CPU (< 500)"
else not_ok "admin port at the open-file limit: under 0.5 s of CPU in 2 s" "$knocks probes, $cpu_ms ms"; fi
kill $HOLD 2>/dev/null; wait $HOLD 2>/dev/null
ans=""
for i in $(seq 1 40); do ans=$(code GET "http://127.0.0.1:$AF/healthz" --max-time 1); [ "$ans" = 200 ] && break; sleep 0.1; done
same "... the clients gone, the admin port answers again" "$ans" 200
lib_kill $FPID

# --- the cold tier's counters against the objects in --cold-dir ---------------
# Each upload writes one chunk object under g<group>/ (cold.c, OBJECT
# NAMES; beside them only the store's marker, "ursula-store"; nothing is
# deleted here), so once the tier is quiet the uploads counted equal the
# objects in the folder and the bytes counted their sizes; a read of the
# stream's start fetches chunks back (a fetch each, or a cache hit).
"$BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:$AB --core-count 1 \
  --wal-dir "$TMP/cwal" --cold-dir "$TMP/cold" --hot-max-bytes 65536 \
  --snapshot-bytes 65536 >"$TMP/cold.log" 2>&1 &
CPID=$!
lib_track $CPID
for i in $(seq 1 100); do grep -q listening "$TMP/cold.log" && break; sleep 0.05; done
CU=http://127.0.0.1:$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$TMP/cold.log" | head -1)
head -c 16384 /dev/urandom >"$TMP/16k"
code PUT "$CU/c" -H 'Content-Type: application/octet-stream' >/dev/null
for i in $(seq 1 64); do
  code POST "$CU/c" -H 'Content-Type: application/octet-stream' --data-binary @"$TMP/16k" >/dev/null
done
objects() { find "$TMP/cold" -path "$TMP/cold/g*" -type f ! -name '*.tmp' 2>/dev/null | wc -l; }
objbytes() { find "$TMP/cold" -path "$TMP/cold/g*" -type f ! -name '*.tmp' -printf '%s\n' 2>/dev/null | awk '{s+=$1} END {print s+0}'; }
prev=""
for i in $(seq 1 100); do
  scrape "$AB" cold1
  now="$(val cold1 'ursula_cold_uploads_total{}') $(val cold1 'ursula_cold_upload_bytes_total{}') $(objects) $(objbytes)"
  [ "$now" = "$prev" ] && [ "${now%% *}" -gt 0 ] && break
  prev=$now
  sleep 0.2
done
read -r up upb nobj nbytes <<<"$now"
if [ "$up" -gt 0 ]; then ok "cold: chunks uploaded ($up)"; else not_ok "cold: chunks uploaded" "$now"; fi
same "cold: uploads counted = objects in --cold-dir" "$up" "$nobj"
same "cold: upload bytes counted = their sizes" "$upb" "$nbytes"
curl -s -o /dev/null "$CU/c?offset=-1"
curl -s -o /dev/null "$CU/c?offset=-1"
scrape "$AB" cold2
f=$(val cold2 'ursula_cold_fetches_total{}')
h=$(val cold2 'ursula_cold_cache_hits_total{}')
if [ "$f" -ge 1 ] && [ "$h" -ge 1 ]; then ok "cold: reads from the start fetched chunks ($f) and hit the cache ($h)"
else not_ok "cold: reads from the start fetched chunks and hit the cache" "fetches $f hits $h"; fi

# --- POST /__ursula/raft/G/snapshot: each group snapshots now, as of its
# last applied entry (api.c, the snapshot path; group.c, SNAPSHOT NOW).
# The tier is quiet (above): each answer's index is the group's applied
# index as the scrape just before says; the stream's group has state.
# Three small appends first, below --snapshot-bytes: the log has entries
# past the last snapshot its growth brought.
for i in 1 2 3; do
  code POST "$CU/c" -H 'Content-Type: application/octet-stream' --data-binary "small-$i" >/dev/null
done
sleep 0.3
scrape "$AB" snap0
bad=""; withstate=0
for g in $(seq 0 63); do
  r=$(curl -s --max-time 10 -X POST -w ' %{http_code}' "http://127.0.0.1:$AB/__ursula/raft/$g/snapshot")
  idx=$(printf '%s' "$r" | sed -n 's/.*"index":\([0-9]*\).*/\1/p')
  by=$(printf '%s' "$r" | sed -n 's/.*"bytes":\([0-9]*\).*/\1/p')
  want=$(val snap0 "ursula_raft_applied_index{group=\"$g\"}")
  case "$r" in *' 200') ;; *) bad="$bad g$g:$r" ;; esac
  [ "$idx" = "$want" ] || bad="$bad g$g:index=$idx,applied=$want"
  if [ "${by:-0}" -gt 0 ]; then withstate=$((withstate + 1)); sg=$g; sidx=$idx; fi
done
same "snapshot now: 64 groups answer 200 at their applied index" "${bad:-none}" none
if [ "$withstate" -ge 1 ]; then ok "... $withstate with state (the stream's group among them)"
else not_ok "... the stream's group has state" "$withstate"; fi
# the group's log now starts with that snapshot: wal.c's snapshot file,
# bytes 8..15 its entry (little-endian)
f=$(printf '%s/cwal/g%05d/snapshot' "$TMP" "${sg:-0}")
fidx=$("$PY" -c 'import struct,sys; print(struct.unpack_from("<Q", open(sys.argv[1],"rb").read(16), 8)[0])' "$f" 2>/dev/null)
same "... and its snapshot file is as of that entry" "${fidx:-none}" "${sidx:-x}"
same "snapshot path: GET 405 (Allow: POST), group 64 404, a body 413" \
  "$(curl -s -o /dev/null -D - "http://127.0.0.1:$AB/__ursula/raft/0/snapshot" | tr -d '\r' | sed -n 's/^Allow: //p') $(code GET "http://127.0.0.1:$AB/__ursula/raft/0/snapshot") $(code POST "http://127.0.0.1:$AB/__ursula/raft/64/snapshot") $(code POST "http://127.0.0.1:$AB/__ursula/raft/0/snapshot" --data-binary x)" \
  "POST 405 404 413"
same "... and 409 on a node without --wal-dir" "$(code POST "$AU/__ursula/raft/0/snapshot")" 409
sha_before=$(curl -s "$CU/c?offset=-1" | sha256sum)
kill -9 "$CPID"; wait "$CPID" 2>/dev/null
"$BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:$AB --core-count 1 \
  --wal-dir "$TMP/cwal" --cold-dir "$TMP/cold" --hot-max-bytes 65536 \
  --snapshot-bytes 65536 >"$TMP/cold2.log" 2>&1 &
lib_track $!
for i in $(seq 1 100); do grep -q listening "$TMP/cold2.log" && break; sleep 0.05; done
CU=http://127.0.0.1:$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$TMP/cold2.log" | head -1)
same "... after kill -9, the node starts from its snapshots and reads the stream back whole" \
  "$(curl -s "$CU/c?offset=-1" | sha256sum)" "$sha_before"

# --- --log-format json: every line one JSON object (RFC 8259) ----------------------
"$BIN" --listen 127.0.0.1:0 --admin-listen off --core-count 1 --log-format json \
  --wal-dir "$TMP/jwal" >"$TMP/json.log" 2>&1 &
JP=$!
lib_track $JP
for i in $(seq 1 100); do grep -q listening "$TMP/json.log" && break; sleep 0.05; done
kill -TERM $JP; wait $JP 2>/dev/null; lib_untrack $JP
jl=$("$PY" - "$TMP/json.log" <<'EOF2'
import json, sys
n = 0
for line in open(sys.argv[1], encoding="utf-8"):
    o = json.loads(line)
    assert list(o) == ["ts", "level", "msg"], o
    assert o["level"] in ("error", "warn", "info", "debug"), o
    assert o["ts"].endswith("Z") and len(o["ts"]) == 24, o
    n += 1
print(n)
EOF2
)
if [ "${jl:-0}" -ge 3 ] && grep -q '"msg":"listening on http://127.0.0.1:' "$TMP/json.log"; then
  ok "--log-format json: $jl lines, each a JSON object {ts, level, msg}"
else not_ok "--log-format json: each line a JSON object {ts, level, msg}" "$(head -3 "$TMP/json.log" | tr '\n' '|')"; fi

# --- /readyz in a cluster: a lost majority ----------------------------------------
PEERS="--peer 1=127.0.0.1:$P1 --peer 2=127.0.0.1:$P2 --peer 3=127.0.0.1:$P3"
startn() { # N: node N, admin on port A<N>
  local a; a=$(eval echo \$A$1)
  "$BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:$a --core-count 2 \
    --wal-dir "$TMP/wal$1" --node-id "$1" $PEERS >>"$TMP/n$1.log" 2>&1 &
  eval "PID$1=$!"
  lib_track $!
}
# ready_is N CODE: wait (at most 20 s) until node N's /readyz answers CODE
ready_is() {
  local a i c; a=$(eval echo \$A$1)
  for i in $(seq 1 400); do
    c=$(code GET "http://127.0.0.1:$a/readyz")
    [ "$c" = "$2" ] && return 0
    sleep 0.05
  done
  return 1
}
startn 1; startn 2; startn 3
check "cluster: node 1 becomes ready" ready_is 1 200
check "cluster: node 3 becomes ready" ready_is 3 200
scrape "$A1" c1
same "cluster: node 1 knows a leader for every group" \
  "$(val c1 'ursula_raft_groups_leaderless{}')" 0
same "cluster: both peers up" \
  "$(val c1 'ursula_peer_up{peer="2"}') $(val c1 'ursula_peer_up{peer="3"}')" "1 1"
if [ "$(val c1 'ursula_peer_sent_bytes_total{peer="2"}')" -gt 0 ] &&
   [ "$(val c1 'ursula_peer_received_bytes_total{peer="3"}')" -gt 0 ]; then
  ok "cluster: bytes sent to and received from the peers"
else not_ok "cluster: bytes sent to and received from the peers"; fi
# at most one leader per group and term (Raft 5.2): once every node knows
# a leader for every group, the groups led add up to 64 over the nodes
sum=0
for i in $(seq 1 100); do
  scrape "$A1" l1; scrape "$A2" l2; scrape "$A3" l3
  sum=$(( $(val l1 'ursula_raft_groups_led{}') + $(val l2 'ursula_raft_groups_led{}') + $(val l3 'ursula_raft_groups_led{}') ))
  nl=$(( $(val l1 'ursula_raft_groups_leaderless{}') + $(val l2 'ursula_raft_groups_leaderless{}') + $(val l3 'ursula_raft_groups_leaderless{}') ))
  [ "$sum" = 64 ] && [ "$nl" = 0 ] && break
  sleep 0.1
done
same "cluster: groups led over the three nodes: 64" "$sum" 64
won=$(( $(val l1 'ursula_raft_leaderships_won_total{}') + $(val l2 'ursula_raft_leaderships_won_total{}') + $(val l3 'ursula_raft_leaderships_won_total{}') ))
if [ "$won" -ge 64 ]; then ok "cluster: leaderships won >= 64 ($won)"
else not_ok "cluster: leaderships won >= 64" "$won"; fi
# --- shedding leadership for maintenance (server.c, SHEDDING): node 1
# hands over every group it leads and takes none; ended, the spread
# (group g prefers member g mod 3) gives its groups back.
led() { scrape "$(eval echo \$A$1)" "led$1"; val "led$1" 'ursula_raft_groups_led{}'; }
# led_is N OP K: wait (at most 15 s) until node N's groups led OP K
led_is() {
  local i v
  for i in $(seq 1 150); do
    v=$(led "$1"); [ "$v" "$2" "$3" ] && return 0
    sleep 0.1
  done
  return 1
}
same "shedding: POST answers the state after" \
  "$(curl -s -X POST "http://127.0.0.1:$A1/__ursula/leadership-shed/maintenance")" '{"shedding":true}'
check "... node 1 leads no group" led_is 1 -eq 0
sum=0
for i in $(seq 1 100); do
  sum=$(( $(led 2) + $(led 3) )); [ "$sum" = 64 ] && break; sleep 0.1
done
same "... nodes 2 and 3 lead all 64" "$sum" 64
sleep 1.5 # the spread runs once a second: it must not hand node 1 a group
same "... and none comes back to it while it sheds" "$(led 1)" 0
same "... GET says so" "$(curl -s "http://127.0.0.1:$A1/__ursula/leadership-shed/maintenance")" '{"shedding":true}'
same "shedding ended: DELETE answers the state after" \
  "$(curl -s -X DELETE "http://127.0.0.1:$A1/__ursula/leadership-shed/maintenance")" '{"shedding":false}'
check "... node 1 leads groups again (the spread gives its own back)" led_is 1 -ge 10
same "... a single node has nobody to shed to: 409" \
  "$(code POST "http://127.0.0.1:$AB/__ursula/leadership-shed/maintenance")" 409

# SIGSTOP: the peers' connections stay open but nothing comes over them
# (peer.c takes a connection silent for 3 s for dead, and /readyz counts
# only members heard from within 3 s: either makes node 1 not ready)
kill -STOP "$PID2" "$PID3"
check "cluster: with 2 of 3 stopped (SIGSTOP), node 1 is not ready" ready_is 1 503
kill -CONT "$PID2" "$PID3"
check "... with both continued (SIGCONT), node 1 is ready again" ready_is 1 200
lib_kill "$PID2"
lib_kill "$PID3"
check "cluster: with 2 of 3 killed, node 1 is not ready" ready_is 1 503
why=$(curl -s "http://127.0.0.1:$A1/readyz")
same "... saying why" "$why" "not ready: reaches 1 of 3 members (a majority is 2)"
same "... and healthz still 200 (alive)" "$(code GET "http://127.0.0.1:$A1/healthz")" 200
startn 2
check "cluster: node 2 back, node 1 ready again" ready_is 1 200

echo "1..$LIB_N"
[ "$FAILS" -eq 0 ]
