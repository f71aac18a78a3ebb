#!/usr/bin/env bash
# compare.sh -- every benchmark scenario against ursula and the reference
# server, in one run on this machine, side by side with the ratios.
#
#   bash bench/compare.sh        (make bench; about 10 minutes)
#   BENCH_NO_REF=1 bash bench/compare.sh      ursula and the floors only
#   BENCH_FLOOR_ONLY=1 bash bench/compare.sh  (make bench-floor) only the
#                                scenarios that have a floor, and its table
#
# Servers, one after another, each fresh on a loopback port:
#   ursula-mem   ./ursula (in memory)
#   ursula-wal   ./ursula --wal-dir (every append synced before its answer)
#   ref-mem      @durable-streams/server 0.3.7, in memory
#   ref-file     the same, file-backed (--data-dir)
# The reference is installed from npm into test/conformance/ when missing
# and started by test/conformance/start-reference.mjs.
#
# Floors (bench/floor.c; Linux), in the same run, each fresh on a port:
#   floor-mem    null HTTP server, in memory: the floor of ursula-mem
#   floor-core   the same, durable: one file per core, one fdatasync per
#                epoll turn (group commit): the floor of ursula-wal
#   floor-files  the same, durable in ursula's layout: 64 files, synced
#                by 16 threads (ursula's defaults: 64 groups, 16 syncers)
#   floor-fanout one SSE frame written to every subscriber
#   floor sync   raw disk probes (appends/s of four sync layouts)
#
# Scenarios (bench/load; its header says how each is measured):
#   memory       RSS growth per idle stream (10 000 streams of 64 bytes) and
#                per idle SSE connection (10 000 readers of one stream)
#   append-N     N streams (100, 500, 2000), 64 connections, one append in
#                flight per stream, 256-byte bodies with producer headers,
#                BENCH_SECONDS (10) s: appends/s and latency percentiles
#   sse          1000 subscribers of one stream, one writer at 50 events/s
#   catchup      1000 readers of one 1 MiB stream from the start, at once
#   longpoll     append-to-long-poll wake round trip, 500 rounds
# The load generator shares the machine (and its CPUs) with the server.
# Output: one raw line per scenario (also appended to bench/results.txt),
# then a table with the ratios ursula/reference, then a table of each
# ursula figure beside its floor, the ratio and issue 15's target.
set -u
cd "$(dirname "$0")/.." || exit 1
SECS=${BENCH_SECONDS:-10}
NO_REF=${BENCH_NO_REF:-0}
FLOOR_ONLY=${BENCH_FLOOR_ONLY:-0}
[ "$FLOOR_ONLY" = 1 ] && NO_REF=1
OUT=bench/results.txt
TMP=$(mktemp -d)
SPID=""
declare -A R # R[scenario.metric.server] = value

cleanup() {
  [ -n "$SPID" ] && kill -9 "$SPID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { echo "compare: $*" >&2; }

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
make -s ursula || exit 1
cc -std=c99 -O2 -Wall bench/load.c -o bench/load || exit 1
FLOORS=1
cc -std=c99 -O2 -Wall bench/floor.c -o bench/floor -pthread ||
  { say "bench/floor did not build (it needs Linux): no floors"; FLOORS=0; }
if [ "$NO_REF" != 1 ] && [ ! -d test/conformance/node_modules/@durable-streams/server ]; then
  say "installing the reference server (npm ci in test/conformance)"
  (cd test/conformance && npm ci --no-audit --no-fund >&2) ||
    { say "npm ci failed"; exit 1; }
fi

free_port() { node test/ports.mjs 1; } # below the ephemeral range
wait_port() {
  local i
  for i in $(seq 1 200); do
    curl -s -o /dev/null -m 1 "http://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  return 1
}

start() { # start NAME: the server NAME on a fresh port -> PORT, SPID
  PORT=$(free_port)
  case $1 in
  ursula-mem) ./ursula --listen "127.0.0.1:$PORT" --log-level 1 \
    --max-connections 30000 >"$TMP/server.log" 2>&1 & ;;
  ursula-wal) rm -rf "$TMP/wal"; ./ursula --listen "127.0.0.1:$PORT" \
    --log-level 1 --max-connections 30000 --wal-dir "$TMP/wal" \
    >"$TMP/server.log" 2>&1 & ;;
  ref-mem) node test/conformance/start-reference.mjs --port "$PORT" \
    --no-compression >"$TMP/server.log" 2>&1 & ;;
  ref-file) rm -rf "$TMP/ref"; node test/conformance/start-reference.mjs \
    --port "$PORT" --no-compression --data-dir "$TMP/ref" \
    >"$TMP/server.log" 2>&1 & ;;
  floor-mem) bench/floor http --port "$PORT" >"$TMP/server.log" 2>&1 & ;;
  floor-core) rm -rf "$TMP/floor"; bench/floor http --port "$PORT" \
    --durable "$TMP/floor" >"$TMP/server.log" 2>&1 & ;;
  floor-files) rm -rf "$TMP/floor"; bench/floor http --port "$PORT" \
    --durable "$TMP/floor" --files 64 --sync-threads 16 \
    >"$TMP/server.log" 2>&1 & ;;
  floor-fanout) bench/floor fanout --port "$PORT" >"$TMP/server.log" 2>&1 & ;;
  esac
  SPID=$!
  wait_port "$PORT" || { say "$1 did not start"; tail -5 "$TMP/server.log" >&2; return 1; }
}
stop() { kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; SPID=""; }

# scenario NAME SERVER ARGS...: run bench/load, keep its key=value pairs
scenario() {
  local name=$1 server=$2 line kv
  shift 2
  say "$server: $name"
  line=$(timeout 300 bench/load --port "$PORT" --prefix "$name" "$@" 2>"$TMP/load.err")
  if [ -z "$line" ]; then
    line="failed: $(head -c 200 "$TMP/load.err" | tr '\n' ' ')"
  fi
  echo "server=$server scenario=$name $line" | tee -a "$OUT"
  for kv in $line; do
    case $kv in *=*) R[$name.${kv%%=*}.$server]=${kv#*=} ;; esac
  done
}

{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) ursula $(git rev-parse --short HEAD 2>/dev/null) compare.sh"
  echo "# $(uname -srm), $(nproc) CPUs, $(cc --version | head -1), node $(node --version)"
  echo "# load generator and server share the machine"
} >>"$OUT"

SERVERS="ursula-mem ursula-wal ref-mem ref-file"
[ "$NO_REF" = 1 ] && SERVERS="ursula-mem ursula-wal"
for s in $SERVERS; do
  if [ "$FLOOR_ONLY" = 1 ]; then # only what has a floor
    start "$s" || continue
    scenario append-500 "$s" --streams 500 --conns 64 --size 256 \
      --producer 1 --seconds "$SECS"
    scenario sse "$s" --sse 1000 --rate 50 --seconds "$SECS"
    stop
    continue
  fi
  start "$s" || continue
  scenario memory-streams "$s" --idle-streams 10000 --pid "$SPID"
  scenario memory-sse "$s" --idle-sse 10000 --pid "$SPID"
  stop
  start "$s" || continue
  for n in 100 500 2000; do
    scenario "append-$n" "$s" --streams "$n" --conns 64 --size 256 \
      --producer 1 --seconds "$SECS"
  done
  scenario sse "$s" --sse 1000 --rate 50 --seconds "$SECS"
  scenario catchup "$s" --catchup 1000 --bytes 1048576
  scenario longpoll "$s" --longpoll 500
  stop
done

# ------------------------------------------------------------ the floors
if [ "$FLOORS" = 1 ]; then
  for s in floor-mem floor-core floor-files; do
    start "$s" || continue
    scenario append-500 "$s" --streams 500 --conns 64 --size 256 \
      --producer 1 --seconds "$SECS"
    stop
  done
  if start floor-fanout; then
    scenario sse floor-fanout --sse 1000 --rate 50 --seconds "$SECS"
    stop
  fi
  say "floor sync (raw disk, 2 s a probe)"
  bench/floor sync "$TMP/sync" --seconds 2 2>"$TMP/load.err" |
    while read -r line; do echo "server=floor-sync $line"; done |
    tee -a "$OUT" >"$TMP/sync.txt"
  cat "$TMP/sync.txt"
  while read -r _ _ probe rest; do
    for kv in $rest; do
      case $kv in appends_per_s=*) R[sync.${probe#probe=}]=${kv#*=} ;; esac
    done
  done <"$TMP/sync.txt"
  rm -rf "$TMP/sync" "$TMP/floor"
fi

# ------------------------------------------------------------ the table
v() { echo "${R[$1.$2]:--}"; }
ratio() { # ratio A B [invert]: A/B (or B/A for lower-is-better)
  awk -v a="$1" -v b="$2" -v inv="${3:-0}" 'BEGIN {
    if (a == "-" || b == "-" || a + 0 == 0 || b + 0 == 0) { print "-"; exit }
    printf "%.1fx", inv ? b / a : a / b }'
}
row() { # row LABEL SCENARIO METRIC LOWER_IS_BETTER
  local um uw rm rf
  um=$(v "$2.$3" ursula-mem); uw=$(v "$2.$3" ursula-wal)
  rm=$(v "$2.$3" ref-mem); rf=$(v "$2.$3" ref-file)
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$um" "$uw" "$rm" "$rf" \
    "$(ratio "$um" "$rm" "$4")" "$(ratio "$uw" "$rf" "$4")"
}
[ "$FLOOR_ONLY" = 1 ] || {
  echo
  echo "| scenario | ursula in memory | ursula --wal-dir | reference in memory | reference file-backed | ursula/ref (memory) | ursula/ref (durable) |"
  echo "|---|---|---|---|---|---|---|"
  for n in 100 500 2000; do
    row "appends/s, $n streams" "append-$n" appends_per_s 0
    row "p50 ms, $n streams" "append-$n" p50_ms 1
    row "p99 ms, $n streams" "append-$n" p99_ms 1
    row "p99.9 ms, $n streams" "append-$n" p999_ms 1
    row "errors, $n streams" "append-$n" errors 1
  done
  row "SSE 1000 subs: p50 ms" sse p50_ms 1
  row "SSE 1000 subs: p99 ms" sse p99_ms 1
  row "SSE 1000 subs: max ms" sse max_ms 1
  row "SSE 1000 subs: missing events" sse missing 1
  row "catch-up 1000 x 1 MiB: p50 ms" catchup p50_ms 1
  row "catch-up 1000 x 1 MiB: p99 ms" catchup p99_ms 1
  row "long-poll wake: p50 ms" longpoll p50_ms 1
  row "long-poll wake: p99 ms" longpoll p99_ms 1
  row "bytes per idle stream" memory-streams bytes_per_stream 1
  row "bytes per idle SSE connection" memory-sse bytes_per_conn 1
  echo
  echo "(ratios: how many times better ursula is; for times and bytes, reference / ursula)"
} | tee -a "$OUT"

# ------------------------------------------------------------ the floor table
# frow LABEL SCENARIO METRIC URSULA FLOOR TARGET: ursula's figure beside
# its floor, ursula/floor, and whether issue 15's target holds.  TARGET is
# ">=R" (ratio at least R), "<=R" (ratio at most R) or "+D" (ursula at most
# the floor plus D), or "-" (no target).
frow() {
  local u f
  u=$(v "$2.$3" "$4"); f=$(v "$2.$3" "$5")
  awk -v l="$1" -v u="$u" -v f="$f" -v t="$6" 'BEGIN {
    r = "-"; ok = "-"
    if (u != "-" && f != "-" && f + 0 != 0) r = sprintf("%.3f", u / f)
    if (r != "-" && t ~ /^>=/) ok = (u / f >= substr(t, 3) + 0) ? "yes" : "no"
    if (r != "-" && t ~ /^<=/) ok = (u / f <= substr(t, 3) + 0) ? "yes" : "no"
    if (u != "-" && f != "-" && t ~ /^\+/) ok = (u + 0 <= f + substr(t, 2)) ? "yes" : "no"
    tt = t; sub(/^\+/, "floor + ", tt); if (t ~ /^\+/) tt = tt " ms"
    printf "| %s | %s | %s | %s | %s | %s |\n", l, u, f, r, tt, ok }'
}
if [ "$FLOORS" = 1 ]; then
  {
    echo
    echo "| figure | ursula | floor | ursula/floor | target | holds |"
    echo "|---|---|---|---|---|---|"
    frow "appends/s in memory, 500 streams (floor-mem)" append-500 appends_per_s ursula-mem floor-mem ">=0.90"
    frow "p99 ms in memory, 500 streams (floor-mem)" append-500 p99_ms ursula-mem floor-mem "+2"
    frow "appends/s --wal-dir, 500 streams (floor-core: a file per core)" append-500 appends_per_s ursula-wal floor-core ">=0.80"
    frow "appends/s --wal-dir, 500 streams (floor-files: 64 files, 16 syncers)" append-500 appends_per_s ursula-wal floor-files "-"
    frow "p99 ms --wal-dir, 500 streams (floor-core)" append-500 p99_ms ursula-wal floor-core "-"
    frow "appends/s --wal-dir against ursula in memory" append-500 appends_per_s ursula-wal ursula-mem ">=0.70"
    frow "SSE 1000 subs: p50 ms (floor-fanout)" sse p50_ms ursula-mem floor-fanout "-"
    frow "SSE 1000 subs: p99 ms (floor-fanout)" sse p99_ms ursula-mem floor-fanout "<=1.1"
    frow "SSE 1000 subs: missing events (floor-fanout)" sse missing ursula-mem floor-fanout "-"
    echo
    echo "(ursula/floor: for appends/s the share of the floor reached; for times how many times the floor's)"
    echo
    echo "| raw disk, 256 B appends | appends/s |"
    echo "|---|---|"
    echo "| one fdatasync per append, one file | ${R[sync.one-sync]:--} |"
    echo "| group commit: 256 appends, one write and one fdatasync, one file | ${R[sync.group-one]:--} |"
    echo "| the same 256 spread over 64 files, 64 fdatasyncs on 16 threads | ${R[sync.files-64]:--} |"
    echo "| the same 256 spread over 64 files, one syncfs | ${R[sync.files-syncfs]:--} |"
  } | tee -a "$OUT"
fi
