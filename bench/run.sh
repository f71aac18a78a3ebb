#!/bin/sh
# run.sh -- the benchmarks behind the README's performance section.
#
#   sh bench/run.sh            (make bench; a few minutes)
#
# On one machine, one after another, each server on a fresh loopback port:
#   1. appends/s and latency at 500 streams, 64 connections, 256-byte
#      appends with idempotent-producer headers (bench/load): ursula in memory, ursula with --wal-dir, and
#      the reference server (@durable-streams/server) in memory and
#      file-backed, when its Node packages are installed (test/conformance;
#      `make test` installs them);
#   2. SSE fan-out: 1000 subscribers tailing one stream, one writer at 50
#      appends/s; latency from before each POST to each subscriber: ursula
#      and the reference server, in memory;
#   3. recovery: ursula with --wal-dir is filled with about BENCH_WAL_MB
#      (default 1024) MiB of appends, killed with kill -9, and restarted;
#      the time from start to the "listening" line is the recovery time.
# The load generator shares the machine with the server (say so when
# quoting).  Results go to stdout and to bench/results.txt.
#
# Environment: BENCH_SECONDS (10), BENCH_STREAMS (500), BENCH_CONNS (64),
# BENCH_WAL_MB (1024), BENCH_RECOVERY_ONLY=1 (only step 3: make
# bench-recovery, which fills 2 GiB over the 64 groups).
set -u
cd "$(dirname "$0")/.." || exit 1
SECONDS_=${BENCH_SECONDS:-10}
STREAMS=${BENCH_STREAMS:-500}
CONNS=${BENCH_CONNS:-64}
WAL_MB=${BENCH_WAL_MB:-1024}
OUT=bench/results.txt
TMP=$(mktemp -d)
SPID=""

cleanup() {
  [ -n "$SPID" ] && kill -9 "$SPID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "bench: $*" >&2; }
result() { echo "$*"; echo "$*" >>"$OUT"; }

make -s ursula || exit 1
cc -std=c99 -O2 bench/load.c -o bench/load || exit 1

free_port() { node test/ports.mjs 1; } # below the ephemeral range

# wait_port PORT: until something answers there (at most 20 s)
wait_port() {
  i=0
  while [ "$i" -lt 200 ]; do
    curl -s -o /dev/null -m 1 "http://127.0.0.1:$1/" && return 0
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}

stop() {
  kill "$SPID" 2>/dev/null
  wait "$SPID" 2>/dev/null
  SPID=""
}

# run NAME COMMAND...: start a server (its port is $PORT), load it, stop it
# (LOAD_ARGS: the load generator's scenario)
run() {
  name=$1
  shift
  say "starting $name"
  "$@" >"$TMP/server.log" 2>&1 &
  SPID=$!
  if ! wait_port "$PORT"; then
    say "$name did not start"; tail -5 "$TMP/server.log" >&2; stop; return
  fi
  say "loading $name for $SECONDS_ s"
  # shellcheck disable=SC2086 # LOAD_ARGS is split on purpose
  line=$(bench/load --port "$PORT" --seconds "$SECONDS_" $LOAD_ARGS)
  result "server=$name $line"
  stop
}

{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) ursula $(git rev-parse --short HEAD 2>/dev/null)"
  echo "# $(uname -srm), $(nproc) CPUs, $(cc --version | head -1)"
  echo "# load generator and server share the machine"
} >>"$OUT"

if [ -z "${BENCH_RECOVERY_ONLY:-}" ]; then
LOAD_ARGS="--streams $STREAMS --conns $CONNS --size 256 --producer 1"
PORT=$(free_port)
run ursula-memory ./ursula --listen "127.0.0.1:$PORT" --log-level 1
PORT=$(free_port)
run ursula-wal ./ursula --listen "127.0.0.1:$PORT" --log-level 1 \
  --wal-dir "$TMP/wal1"
if [ -d test/conformance/node_modules/@durable-streams/server ]; then
  PORT=$(free_port)
  run reference-memory node test/conformance/start-reference.mjs \
    --port "$PORT" --no-compression
  PORT=$(free_port)
  run reference-file node test/conformance/start-reference.mjs \
    --port "$PORT" --no-compression --data-dir "$TMP/ref"
else
  say "reference server not installed (run make test first): skipped"
fi

LOAD_ARGS="--sse 1000 --rate 50"
PORT=$(free_port)
run ursula-memory ./ursula --listen "127.0.0.1:$PORT" --log-level 1
if [ -d test/conformance/node_modules/@durable-streams/server ]; then
  PORT=$(free_port)
  run reference-memory node test/conformance/start-reference.mjs \
    --port "$PORT" --no-compression
fi

fi # BENCH_RECOVERY_ONLY

# --- recovery of about WAL_MB MiB of WAL ----------------------------------------
PORT=$(free_port)
say "filling a WAL with about $WAL_MB MiB"
./ursula --listen "127.0.0.1:$PORT" --log-level 1 --wal-dir "$TMP/wal2" \
  >"$TMP/server.log" 2>&1 &
SPID=$!
wait_port "$PORT" || { say "ursula did not start"; exit 1; }
n=$((WAL_MB * 1024 / 16)) # 16 KiB appends
secs=1
while :; do # run the load in slices until the WAL is big enough
  bench/load --port "$PORT" --streams "$STREAMS" --conns "$CONNS" \
    --seconds 1 --size 16384 >/dev/null || break
  size=$(du -sm "$TMP/wal2" | cut -f1)
  say "WAL: $size MiB"
  [ "$size" -ge "$WAL_MB" ] && break
  secs=$((secs + 1))
  [ "$secs" -gt 200 ] && break
done
kill -9 "$SPID"
wait "$SPID" 2>/dev/null
size=$(du -sm "$TMP/wal2" | cut -f1)
PORT=$(free_port)
say "restarting on $size MiB of WAL"
t0=$(date +%s%N)
./ursula --listen "127.0.0.1:$PORT" --wal-dir "$TMP/wal2" \
  >"$TMP/server.log" 2>&1 &
SPID=$!
i=0
while ! grep -q "listening on" "$TMP/server.log" && [ "$i" -lt 6000 ]; do
  sleep 0.01
  i=$((i + 1))
done
t1=$(date +%s%N)
rss=$(ps -o rss= -p "$SPID" | tr -d ' ')
result "recovery wal_mib=$size seconds=$(echo "$t0 $t1" | awk '{printf "%.2f", ($2 - $1) / 1e9}') rss_mib=$((rss / 1024)) $(grep 'recovered .* groups' "$TMP/server.log" | sed 's/.*ursula\[I\] //')"
stop
echo >>"$OUT"
