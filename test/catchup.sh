#!/usr/bin/env bash
# catchup.sh -- a node that was down while its group's leaders compacted
# their logs rejoins by snapshot install (issue 14, "Catch-up"; Raft paper
# section 7), then serves the same bytes as the others, takes writes, and
# restarts from the installed snapshot.
#
#   bash test/catchup.sh BIN     # BIN built with -DWAL_SEGMENT_BYTES=65536
#                                # (make test-catchup builds one)
#
# Three nodes on 127.0.0.1 (free ports), 4 groups, --snapshot-bytes 4096
# and 64 KiB segments.  Streams are made and written on all three; node 3
# is killed (kill -9); on nodes 1 and 2 those streams are deleted, 2 MiB
# go to streams that are deleted too, and 8 new streams get 10 appends of
# 16 KiB each: every segment that held the deleted bytes is dropped, and
# with it entries node 3 never got.  Node 3 restarts.  Expected, from the
# rules: its leaders send it snapshot images (the entries it lacks are
# gone, so nothing else can bring it up to date: paper section 7), node 3
# installs them, and every stream then reads the same on the three nodes
# and holds exactly the acknowledged appends (a read on any node reflects
# every acknowledged append: the read barrier); the deleted streams are
# 404 on node 3; it takes writes; after kill -9 and a restart it serves
# the same bytes from what it installed.  Then its disk is wiped and it
# rejoins with --lost-log 1 (below).  Every wait is bounded.
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${1:-${URSULA_BIN:-build/ursula-smallseg}}
TMP=$(mktemp -d)
. test/lib.sh
read -r P1 P2 P3 H1 H2 H3 <<<"$(free_ports 6)"
PEERS="--peer 1=127.0.0.1:$P1 --peer 2=127.0.0.1:$P2 --peer 3=127.0.0.1:$P3"

# start I: node I in the background (its log appended to $TMP/nI.log)
start() {
  local i=$1; shift
  "$BIN" --listen "127.0.0.1:$(eval echo \$H$i)" --core-count 2 \
    --raft-group-count 4 --snapshot-bytes 4096 --wal-dir "$TMP/wal-n$i" \
    --node-id "$i" $PEERS "$@" >>"$TMP/n$i.log" 2>&1 &
  eval "PID_n$i=$!"
  lib_track $!
}
count() { grep -cF -- "$2" "$TMP/$1.log" 2>/dev/null || true; }
# digest NODE PATH: sha256 of the stream's bytes read through NODE
digest() {
  curl -s --max-time 3 "$(url "$1" "$2")" | sha256sum | cut -c1-16
}
STREAMS="y1 y2 y3 y4 y5 y6 y7 y8"

echo "# catchup.sh: three nodes, peer ports $P1 $P2 $P3"
start 1; start 2; start 3
bad=0
for s in $STREAMS; do
  c=$(req $(( ($RANDOM % 3) + 1 )) PUT "/v1/stream/$s")
  [ "$c" = 201 ] || bad=$((bad + 1))
done
[ $bad -eq 0 ] && ok "8 streams created on a 3-node cluster" || not_ok "8 streams created" "$bad failed"

# 16 KiB payloads, each naming its stream and number
payload() { printf '%s-%05d:%016370d;' "$1" "$2" 0; }
# append_range FROM TO NODES...: appends FROM..TO to every stream, each
# through the next of NODES in turn, append i with Producer-Seq i - 1
# (200: appended; 204: a retry found it appended); the count of failures.
# Each answer is kept in $TMP/append-codes (their tally ends the test).
append_range() {
  local from=$1 to=$2 i s n code; shift 2
  local nodes=("$@") k=0 bad=0
  for i in $(seq "$from" "$to"); do
    for s in $STREAMS; do
      n=${nodes[$((k % ${#nodes[@]}))]}; k=$((k + 1))
      code=$(req "$n" POST "/v1/stream/$s" "$(payload "$s" "$i")" "$((i - 1))")
      echo "$code" >>"$TMP/append-codes"
      [ "$code" = 204 ] || [ "$code" = 200 ] || bad=$((bad + 1))
    done
  done
  echo $bad
}
bad=$(append_range 1 2 1 2 3)
[ "$bad" -eq 0 ] && ok "16 appends on all three nodes" || not_ok "16 appends" "$bad failed"

# With node 3 down: those streams are deleted, 2 MiB more go to streams
# that are deleted too, and then 8 new streams get 10 appends each.  The
# log keeps every segment that holds bytes a stream still reads; the
# deleted streams' segments go, and with them the entries node 3 lacks.
kill -9 "$PID_n3"; wait "$PID_n3" 2>/dev/null
bad=0
for s in $STREAMS; do [ "$(req 1 DELETE "/v1/stream/$s")" = 204 ] || bad=$((bad + 1)); done
STREAMS="x1 x2 x3 x4 x5 x6 x7 x8"
for s in $STREAMS; do [ "$(req 2 PUT "/v1/stream/$s")" = 201 ] || bad=$((bad + 1)); done
bad=$((bad + $(append_range 1 16 1 2)))
for s in $STREAMS; do [ "$(req 2 DELETE "/v1/stream/$s")" = 204 ] || bad=$((bad + 1)); done
STREAMS="a b c d e f g h"
for s in $STREAMS; do [ "$(req 1 PUT "/v1/stream/$s")" = 201 ] || bad=$((bad + 1)); done
bad=$((bad + $(append_range 1 10 1 2)))
[ "$bad" -eq 0 ] && ok "with node 3 down: deletes, 2 MiB to deleted streams, 80 appends to new ones" \
  || not_ok "the writes with node 3 down" "$bad failed"
sleep 1.5 # the sweep compacts what deletions freed (once a second)

before=$(( $(count n1 "sending it a snapshot image") + $(count n2 "sending it a snapshot image") ))
start 3
installed=0
for i in $(seq 1 300); do # at most 30 s
  installed=$(count n3 "installed a snapshot image from node")
  [ "$installed" -ge 1 ] && break
  sleep 0.1
done
sent=$(( $(count n1 "sending it a snapshot image") + $(count n2 "sending it a snapshot image") - before ))
if [ "$sent" -ge 1 ]; then ok "the leaders send node 3 snapshot images ($sent)"
else not_ok "the leaders send node 3 snapshot images" "$(grep -h "snapshot" "$TMP"/n[12].log | tail -3 | tr '\n' '|')"; fi
if [ "$installed" -ge 1 ]; then ok "node 3 installs them ($installed)"
else not_ok "node 3 installs a snapshot image" "$(tail -5 "$TMP/n3.log" | tr '\n' '|')"; fi

# every stream reads the same on the three nodes, and holds what was
# acknowledged: 36 lines of 4 KiB in order
same_everywhere() {
  local s d1 d2 d3 bad=0
  for s in $STREAMS; do
    d1=$(digest 1 "/v1/stream/$s"); d2=$(digest 2 "/v1/stream/$s"); d3=$(digest 3 "/v1/stream/$s")
    [ "$d1" = "$d2" ] && [ "$d1" = "$d3" ] || bad=$((bad + 1))
  done
  echo $bad
}
want_bytes() { # want_bytes LAST: sha of stream s's lines 1..LAST
  local i; for i in $(seq 1 "$2"); do payload "$1" "$i"; done | sha256sum | cut -c1-16
}
bad=0
end=$((SECONDS + 30)) # the barrier may answer 503 while it catches up
while :; do
  bad=$(same_everywhere); [ "$bad" -eq 0 ] || [ $SECONDS -ge $end ] && break; sleep 0.2
done
installed=$(count n3 "installed a snapshot image from node")
sent=$(( $(count n1 "sending it a snapshot image") + $(count n2 "sending it a snapshot image") - before ))
echo "# images sent to node 3: $sent, installed by it: $installed"
[ "$bad" -eq 0 ] && ok "every stream reads the same on nodes 1, 2 and 3" \
  || not_ok "every stream reads the same on nodes 1, 2 and 3" "$bad differ"
bad=0
for s in $STREAMS; do
  [ "$(digest 3 "/v1/stream/$s")" = "$(want_bytes "$s" 10)" ] || bad=$((bad + 1))
done
[ "$bad" -eq 0 ] && ok "node 3 serves all 10 acknowledged appends of each stream, in order" \
  || not_ok "node 3 serves every acknowledged append" "$bad streams differ"

# node 3 takes writes again, and restarts from what it installed
bad=$(append_range 11 12 3)
for s in y1 y5 x3; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$(url 3 "/v1/stream/$s")")" = 404 ] || bad=$((bad + 1))
done
[ "$bad" -eq 0 ] && ok "16 appends through node 3; the deleted streams are 404 there" || not_ok "appends through node 3, deleted streams 404" "$bad failed"
kill -9 "$PID_n3"; wait "$PID_n3" 2>/dev/null
start 3
bad=0
end=$((SECONDS + 30))
while :; do
  bad=0
  for s in $STREAMS; do
    [ "$(digest 3 "/v1/stream/$s")" = "$(want_bytes "$s" 12)" ] || bad=$((bad + 1))
  done
  [ "$bad" -eq 0 ] || [ $SECONDS -ge $end ] && break; sleep 0.2
done
[ "$bad" -eq 0 ] && ok "after kill -9 and restart, node 3 serves the same 12 appends" \
  || not_ok "node 3 after a restart serves the same bytes" "$bad streams differ"
# node 3's disk is wiped: it comes back on an empty --wal-dir with
# --lost-log 1, abstains in every group until it holds what the others
# committed (Raft LOST LOG, src/raft.c), catches up (by image: the log
# it needs is gone), and then holds everything: with node 1 killed,
# nodes 2 and 3 alone serve every acknowledged append and take writes.
kill -9 "$PID_n3"; wait "$PID_n3" 2>/dev/null
rm -rf "$TMP/wal-n3"
lost0=$(count n3 "this node lost its log (--lost-log 1)")
back0=$(count n3 "caught up after losing its log: it votes again")
start 3 --lost-log 1
end=$((SECONDS + 30))
while [ $(( $(count n3 "caught up after losing its log: it votes again") - back0 )) -lt 4 ] && [ $SECONDS -lt $end ]; do sleep 0.2; done
lost=$(( $(count n3 "this node lost its log (--lost-log 1)") - lost0 ))
back=$(( $(count n3 "caught up after losing its log: it votes again") - back0 ))
[ "$lost" -eq 4 ] && [ "$back" -eq 4 ] && ok "wiped node 3 abstains in its 4 groups, then catches up in all 4" \
  || not_ok "wiped node 3 with --lost-log 1: abstains and catches up in 4 groups" "lost $lost, caught up $back"
kill -9 "$PID_n1"; wait "$PID_n1" 2>/dev/null
bad=0
end=$((SECONDS + 30))
while :; do
  bad=0
  for s in $STREAMS; do
    [ "$(digest 3 "/v1/stream/$s")" = "$(want_bytes "$s" 12)" ] || bad=$((bad + 1))
  done
  [ "$bad" -eq 0 ] || [ $SECONDS -ge $end ] && break; sleep 0.2
done
[ "$bad" -eq 0 ] && ok "with node 1 down, node 3 (wiped, caught up) serves all 12 appends of each stream" \
  || not_ok "with node 1 down, node 3 serves everything acknowledged" "$bad streams differ"
bad=$(append_range 13 13 2 3)
[ "$bad" -eq 0 ] && ok "nodes 2 and 3 take 8 more appends" || not_ok "nodes 2 and 3 take appends" "$bad failed"

if grep -q "ursula\[E\]" "$TMP"/n[123].log; then
  not_ok "no error lines in the logs" "$(grep -h "ursula\[E\]" "$TMP"/n[123].log | head -3 | tr '\n' '|')"
else ok "no error lines in the logs"; fi

echo "# append answers: $(sort "$TMP/append-codes" | uniq -c | awk '{print $1 " x " $2}' | paste -sd, - | sed 's/,/, /g')"
echo "1..$LIB_N"
[ $FAILS -eq 0 ] || { echo "# catchup.sh: $FAILS failed"; exit 1; }
echo "# catchup.sh: all $LIB_N passed"
