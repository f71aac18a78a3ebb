#!/usr/bin/env bash
# cluster.sh -- durable appends on a 3-node cluster against one node with
# --wal-dir, in one run on this machine.
#
#   bash bench/cluster.sh       (make bench-cluster; about 2 minutes)
#
# Servers, one after another, each fresh on loopback ports:
#   single      ./ursula --wal-dir (one node: an append is acknowledged once
#               its record is synced)
#   cluster-1   three nodes with --wal-dir, every group on all three (an
#               append is acknowledged once a majority holds it synced and
#               the leader applied it); the load goes to node 1 only, so
#               about 2/3 of the appends are forwarded to the leaders of
#               their groups on the other nodes
#   cluster-3   the same cluster, the load spread: one load generator per
#               node, each on its own streams and a third of the
#               connections; the figures are summed (appends/s) or the
#               worst of the three (percentiles)
#   sse         after each: bench/load's sse scenario, 1000 subscribers
#               tailing one stream, 50 appends a second to it on node 1;
#               on the cluster the subscribers are spread over the three
#               nodes (subscriber i on node i mod 3 + 1), so two thirds of
#               them are served by a follower from its own applied state
# Scenario: bench/load's append-N with N = 500 streams, 64 connections,
# 256-byte bodies with producer headers, BENCH_SECONDS (10) s after one
# second of warm-up.  Everything -- three servers, their syncs and the
# load generator -- shares this machine's CPUs and disk, so the cluster
# does three times the work of the single node on the same hardware: the
# figures show what replication costs here, not what three machines do.
# Output: one raw line per run (also appended to bench/results.txt), then
# a table.
set -u
cd "$(dirname "$0")/.." || exit 1
SECS=${BENCH_SECONDS:-10}
OUT=bench/results.txt
TMP=$(mktemp -d)
. test/lib.sh # free_ports; every server is killed (lib_track) and TMP removed on exit
PIDS=""
say() { echo "bench-cluster: $*" >&2; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
make -s ursula || exit 1
cc -std=c99 -O2 -Wall bench/load.c -o bench/load || exit 1

# wait_ready PORT: until a PUT succeeds there (a cluster: a leader is known)
wait_ready() {
  local i
  for i in $(seq 1 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -m 2 -X PUT \
      "http://127.0.0.1:$1/v1/stream/bench-ready-$1")" = 201 ] && return 0
    sleep 0.1
  done
  return 1
}
stop_all() {
  local p
  for p in $PIDS; do kill "$p" 2>/dev/null; done
  for p in $PIDS; do wait "$p" 2>/dev/null; done
  PIDS=""
}
# run NAME PORT [LOAD ARGS...]: one load generator, its line to $TMP/NAME
run() {
  local name=$1 port=$2; shift 2
  timeout 300 bench/load --port "$port" --prefix "$name" --streams 500 \
    --size 256 --producer 1 --seconds "$SECS" "$@" >"$TMP/$name" 2>"$TMP/$name.err"
}
# sse NAME PORT [SUBSCRIBER PORTS]: the fan-out scenario, its line to $TMP/NAME
sse() {
  local name=$1 port=$2; shift 2
  timeout 300 bench/load --port "$port" --prefix "$name" --sse 1000 --rate 50 \
    --seconds "$SECS" "$@" >"$TMP/$name" 2>"$TMP/$name.err"
}
# kv FILE KEY: the value of KEY in the load line in FILE
kv() { tr ' ' '\n' <"$1" | sed -n "s/^$2=//p"; }

{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) ursula $(git rev-parse --short HEAD 2>/dev/null) bench/cluster.sh"
  echo "# $(uname -srm), $(nproc) CPUs, $(cc --version | head -1)"
  echo "# three nodes, their syncs and the load generator share the machine"
} >>"$OUT"
declare -A A P50 P99 ERR

say "single node, --wal-dir"
read -r H <<<"$(free_ports 1)"
./ursula --listen "127.0.0.1:$H" --log-level 1 --max-connections 30000 \
  --wal-dir "$TMP/wal-single" >"$TMP/single.log" 2>&1 &
PIDS=$!
lib_track $!
wait_ready "$H" || { say "the single node did not start"; exit 1; }
run single "$H" --conns 64
sse sse-single "$H"
stop_all

say "three nodes, --wal-dir each"
read -r P1 P2 P3 H1 H2 H3 <<<"$(free_ports 6)"
PEERS="--peer 1=127.0.0.1:$P1 --peer 2=127.0.0.1:$P2 --peer 3=127.0.0.1:$P3"
for i in 1 2 3; do
  ./ursula --listen "127.0.0.1:$(eval echo \$H$i)" --log-level 1 \
    --max-connections 30000 --wal-dir "$TMP/n$i" --node-id "$i" $PEERS \
    >"$TMP/n$i.log" 2>&1 &
  PIDS="$PIDS $!"
  lib_track $!
done
for i in 1 2 3; do
  wait_ready "$(eval echo \$H$i)" || { say "node $i did not start"; tail -3 "$TMP/n$i.log" >&2; exit 1; }
done
sleep 2 # (leadership spread: each node leads about a third of the groups)
run cluster-1 "$H1" --conns 64
run c3a "$H1" --conns 22 & r1=$!
run c3b "$H2" --conns 21 & r2=$!
run c3c "$H3" --conns 21 & r3=$!
wait $r1 $r2 $r3
sse sse-cluster "$H1" --sse-ports "$H1,$H2,$H3"
stop_all

for f in single cluster-1 c3a c3b c3c sse-single sse-cluster; do
  [ -s "$TMP/$f" ] || { say "$f: no result: $(head -c 300 "$TMP/$f.err")"; exit 1; }
  case $f in
  sse-*) echo "server=${f#sse-} scenario=sse $(cat "$TMP/$f")" ;;
  *) echo "server=$f scenario=append-500 $(cat "$TMP/$f")" ;;
  esac | tee -a "$OUT"
done
sum() { awk '{ s += $1 } END { printf "%.0f", s }'; }
max() { awk 'NR == 1 || $1 > m { m = $1 } END { print m }'; }
for f in single cluster-1; do
  A[$f]=$(kv "$TMP/$f" appends_per_s); P50[$f]=$(kv "$TMP/$f" p50_ms)
  P99[$f]=$(kv "$TMP/$f" p99_ms); ERR[$f]=$(kv "$TMP/$f" errors)
done
A[cluster-3]=$(for f in c3a c3b c3c; do kv "$TMP/$f" appends_per_s; done | sum)
P50[cluster-3]=$(for f in c3a c3b c3c; do kv "$TMP/$f" p50_ms; done | max)
P99[cluster-3]=$(for f in c3a c3b c3c; do kv "$TMP/$f" p99_ms; done | max)
ERR[cluster-3]=$(for f in c3a c3b c3c; do kv "$TMP/$f" errors; done | sum)
echo
echo "| append-500, 256 B, producer headers | appends/s | p50 ms | p99 ms | errors | appends/s vs single |"
echo "|---|---|---|---|---|---|"
for f in single cluster-1 cluster-3; do
  echo "| $f | ${A[$f]} | ${P50[$f]} | ${P99[$f]} | ${ERR[$f]} | $(awk -v a="${A[$f]}" -v b="${A[single]}" 'BEGIN { printf "%.2f", a / b }') |"
done
echo
echo "| sse, 1000 subscribers, 50 events/s | events | missing | p50 ms | p99 ms | p99 vs single |"
echo "|---|---|---|---|---|---|"
for f in sse-single sse-cluster; do
  echo "| ${f#sse-} | $(kv "$TMP/$f" events) | $(kv "$TMP/$f" missing) | $(kv "$TMP/$f" p50_ms) | $(kv "$TMP/$f" p99_ms) | $(awk -v a="$(kv "$TMP/$f" p99_ms)" -v b="$(kv "$TMP/sse-single" p99_ms)" 'BEGIN { printf "%.2f", a / b }') |"
done
