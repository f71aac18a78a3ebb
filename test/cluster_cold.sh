#!/usr/bin/env bash
# cluster_cold.sh -- the cold tier in a 3-node cluster (issue 14, "The
# cold tier in a cluster"; the rules are tier.c's WHO ACTS).
#
#   bash test/cluster_cold.sh BIN     # BIN built with -DWAL_SEGMENT_BYTES=65536
#                                     # (make test-cluster-cold builds one)
#
# Three nodes on 127.0.0.1 (free ports), 4 groups, one shared --cold-dir,
# --hot-max-bytes 65536 (16 KiB chunks) and --cold-flush-age-ms 500.
# Expected, from the rules:
#   1. appends on all three nodes move to chunk objects, and every object's
#      name carries the Raft term of the leader that uploaded it
#      (cold.c OBJECT NAMES);
#   2. every stream reads back byte-exact on every node, the moved bytes
#      included (every node reads chunks from the one store);
#   3. with node 3 killed, more data moves; node 3 restarts on its stale
#      log, catches up, and reads everything back from the store, its
#      cache empty;
#   4. all three nodes are killed and node 3 starts alone on its log,
#      then the others: no object goes that a stream names (a node that is
#      not the leader of its term sweeps nothing), and everything reads
#      back on every node;
#   5. a deleted stream's objects go (once, by the leader of the delete's
#      term), the other streams' stay.
# Also: the folder carries the cluster's marker, and a single node started
# on it refuses it (cold.c, THE STORE'S MARKER).
# Every wait is bounded.
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${1:-build/ursula-smallseg}
TMP=$(mktemp -d)
. test/lib.sh
read -r P1 P2 P3 H1 H2 H3 <<<"$(free_ports 6)"
PEERS="--peer 1=127.0.0.1:$P1 --peer 2=127.0.0.1:$P2 --peer 3=127.0.0.1:$P3"
COLD=$TMP/cold

# start I: node I in the background (its log appended to $TMP/nI.log)
start() {
  local i=$1
  "$BIN" --listen "127.0.0.1:$(eval echo \$H$i)" --core-count 2 \
    --raft-group-count 4 --wal-dir "$TMP/wal-n$i" --cold-dir "$COLD" \
    --hot-max-bytes 65536 --cold-flush-age-ms 500 \
    --node-id "$i" $PEERS >>"$TMP/n$i.log" 2>&1 &
  eval "PID_n$i=$!"
  lib_track $!
}
stop() { local p; p=$(eval echo \$PID_n$1); kill -9 "$p"; wait "$p" 2>/dev/null; }
# the objects (a folder store's uploads in flight, *.tmp, are not yet)
objects() { find "$COLD" -type f ! -name '*.tmp' ! -path "$COLD/ursula-store" 2>/dev/null | wc -l; }
names() { (cd "$COLD" 2>/dev/null && find . -type f ! -name '*.tmp' ! -path ./ursula-store | sed 's|^\./||' | sort); }
STREAMS="s1 s2 s3 s4"
# 4 KiB payloads, each naming its stream and number
payload() { printf '%s-%05d:%04080d;' "$1" "$2" 0; }
append_range() { # append_range FROM TO NODES...: count of failures
  local from=$1 to=$2 i s n code; shift 2
  local nodes=("$@") k=0 bad=0
  for i in $(seq "$from" "$to"); do
    for s in $STREAMS; do
      n=${nodes[$((k % ${#nodes[@]}))]}; k=$((k + 1))
      code=$(req "$n" POST "/v1/stream/$s" "$(payload "$s" "$i")" "$((i - 1))")
      if [ "$code" = 204 ] || [ "$code" = 200 ]; then payload "$s" "$i" >>"$TMP/want-$s"; else bad=$((bad + 1)); fi
    done
  done
  echo $bad
}
# same_everywhere NODES...: every stream reads back on every node as
# acknowledged (a read's status must be 200 and its bytes the file's)
same_everywhere() {
  local n s code
  for n in "$@"; do
    for s in $STREAMS; do
      code=$(curl -s -o "$TMP/got" -w '%{http_code}' --max-time 10 "$(url "$n" "/v1/stream/$s")")
      if [ "$code" != 200 ] || ! cmp -s "$TMP/got" "$TMP/want-$s"; then
        echo "# node $n, $s: $code, $(wc -c <"$TMP/got") bytes, want $(wc -c <"$TMP/want-$s")"
        return 1
      fi
    done
  done
}
# wait_objects N: until at least N objects exist (at most 20 s)
wait_objects() {
  local i
  for i in $(seq 1 200); do [ "$(objects)" -ge "$1" ] && return 0; sleep 0.1; done
  return 1
}

echo "# cluster_cold.sh: three nodes, peer ports $P1 $P2 $P3, cold folder $COLD"
start 1; start 2; start 3
bad=0
for s in $STREAMS; do
  : >"$TMP/want-$s"
  [ "$(req $(( (RANDOM % 3) + 1 )) PUT "/v1/stream/$s")" = 201 ] || bad=$((bad + 1))
done
bad=$((bad + $(append_range 1 24 1 2 3)))
check "4 streams, 96 appends of 4 KiB on all three nodes ($bad failed)" [ "$bad" -eq 0 ]

# 1. data moves; names carry terms
check "the appends move to chunk objects in the shared folder ($(wait_objects 8; objects) objects)" wait_objects 8
untermed=$(names | grep -cvE -- '-t[0-9a-f]{16}$')
check "every object's name carries its uploader's term ($untermed without)" [ "$untermed" -eq 0 ]
sleep 1 # (the COLD commands of the last uploads commit)
# the store's marker (cold.c): a cluster's names no node, so that its
# nodes write the same bytes; a single node on the same folder refuses it
printf 'ursula-store 1\ncluster-id ursula\ngroups 4\n' >"$TMP/marker.want"
check "the shared folder is marked as the cluster's (cluster-id, groups)" \
  cmp -s "$TMP/marker.want" "$COLD/ursula-store"
"$BIN" --listen 127.0.0.1:0 --raft-group-count 4 --wal-dir "$TMP/wal-single" \
  --cold-dir "$COLD" >"$TMP/single.log" 2>&1 &
spid=$!
for i in $(seq 1 200); do kill -0 "$spid" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$spid" 2>/dev/null; then
  kill -9 "$spid"; wait "$spid" 2>/dev/null
  not_ok "a single node refuses the cluster's store" "it started"
elif grep -q "holds the objects of cluster-id ursula, 4 groups" "$TMP/single.log"; then
  ok "a single node refuses the cluster's store: $(grep -o 'holds the objects of cluster-id ursula, 4 groups' "$TMP/single.log")"
else
  not_ok "a single node refuses the cluster's store" "$(cat "$TMP/single.log")"
fi

# 2. reads on every node
check "every stream reads back byte-exact on nodes 1, 2 and 3" same_everywhere 1 2 3

# 3. a stale node catches up and reads from the store
stop 3
before=$(objects)
bad=$(append_range 25 48 1 2)
check "with node 3 down, 96 more appends on nodes 1 and 2 ($bad failed)" [ "$bad" -eq 0 ]
check "more data moves with node 3 down ($before objects before, $(wait_objects $((before + 4)); objects) now)" \
  wait_objects $((before + 4))
sleep 1
start 3
ok_read=0
for i in $(seq 1 100); do # until node 3 has caught up (at most 20 s)
  same_everywhere 3 >/dev/null && { ok_read=1; break; }
  sleep 0.2
done
check "node 3, restarted on its stale log, catches up and reads everything back" [ "$ok_read" -eq 1 ]

# 4. a full stop; node 3 first, alone on its log (stale: kill it before
# the last appends), then the others
stop 3
bad=$(append_range 49 56 1 2)
check "32 more appends with node 3 down ($bad failed)" [ "$bad" -eq 0 ]
wait_objects $((before + 6)) >/dev/null
sleep 1.5 # (moves under way end, their COLD commands commit)
names >"$TMP/names-before"
stop 1; stop 2
start 3
sleep 4 # four tier ticks on node 3 alone
names >"$TMP/names-alone"
gone=$(comm -23 "$TMP/names-before" "$TMP/names-alone" | wc -l)
check "node 3 alone on a stale log deletes no object ($gone gone of $(wc -l <"$TMP/names-before"))" [ "$gone" -eq 0 ]
start 1; start 2
ok_read=0
for i in $(seq 1 100); do
  same_everywhere 1 2 3 >/dev/null && { ok_read=1; break; }
  sleep 0.2
done
check "after the full restart, every stream reads back on every node" [ "$ok_read" -eq 1 ]
same_everywhere 1 2 3

# 5. a deleted stream's objects go, the others stay: s1's objects are
# those whose bytes hold its payloads
names >"$TMP/all-before"
(cd "$COLD" && grep -rl -- "s1-00001:" . | sed 's|^\./||' | cut -d/ -f1,2 | sort -u) >"$TMP/s1-dirs"
grep -F -f "$TMP/s1-dirs" "$TMP/all-before" >"$TMP/s1-names"
grep -v -F -f "$TMP/s1-dirs" "$TMP/all-before" >"$TMP/others"
[ -s "$TMP/s1-names" ] && [ -s "$TMP/others" ] || not_ok "s1 and the other streams have objects"
code=$(req 2 DELETE /v1/stream/s1) # (404: a retry after an unknown outcome)
[ "$code" = 204 ] || [ "$code" = 404 ] || not_ok "DELETE s1 on node 2" "$code"
STREAMS="s2 s3 s4"
gone_ok=0
for i in $(seq 1 100); do
  names >"$TMP/all-after"
  [ "$(comm -12 "$TMP/s1-names" "$TMP/all-after" | wc -l)" -eq 0 ] && { gone_ok=1; break; }
  sleep 0.2
done
check "deleting s1 deletes its $(wc -l <"$TMP/s1-names") objects" [ "$gone_ok" -eq 1 ]
check "... and none of the other streams' $(wc -l <"$TMP/others") objects" \
  [ "$(comm -23 "$TMP/others" "$TMP/all-after" | wc -l)" -eq 0 ]
check "... which read back on every node" same_everywhere 1 2 3
deletes_ok=1
for n in 1 2 3; do grep -q "failed\|damaged\|missing" "$TMP/n$n.log" && { deletes_ok=0; grep -h "failed\|damaged\|missing" "$TMP/n$n.log" | head -3; }; done
check "no node logged a missing or damaged chunk or a failure" [ "$deletes_ok" -eq 1 ]

echo "1..$LIB_N"
[ "$FAILS" -eq 0 ] || { echo "# cluster_cold.sh: $FAILS failed"; exit 1; }
echo "# cluster_cold.sh: all $LIB_N passed"
