#!/usr/bin/env bash
# cluster.sh -- the published conformance suite against EACH node of a
# 3-node cluster (issue 14): `make test-conformance-cluster` calls this.
#
#   bash test/conformance/cluster.sh [SERVER-ARGS...]
#
# Three ursula processes on 127.0.0.1 (free ports; --wal-dir each, --core-count
# 2, --raft-group-count 8, as run.sh's single node) form one cluster; once
# every node answers and every group has a leader (a PUT through each node
# succeeds), vitest runs the suite against node 1, then node 2, then node 3,
# while the other two serve as peers.  Each node leads some groups and
# follows the others, so every run covers both: writes forwarded to a
# leader, reads behind a barrier, forks whose source and fork live in
# groups led by different nodes.  The three logs are shown when a run
# fails.  Every wait is bounded; every process is killed on exit.
#
# Environment: URSULA_BIN (default ./ursula), VITEST_ARGS (as run.sh).
set -u
cd "$(dirname "$0")" || exit 1
BIN=${URSULA_BIN:-../../ursula}
case $BIN in /*) ;; *) [ -x "$BIN" ] || BIN=../../$BIN ;; esac
[ -x "$BIN" ] || { echo "conformance-cluster: no executable at $BIN" >&2; exit 1; }
[ -d node_modules/@durable-streams/server-conformance-tests ] ||
  npm ci --no-audit --no-fund || exit 1
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ursula-conf-cluster.XXXXXX") || exit 1
PIDS=""
cleanup() {
  for p in $PIDS; do { kill -9 "$p" && wait "$p"; } 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { echo "conformance-cluster: $*"; }
show_logs() {
  for i in 1 2 3; do
    echo "--- last 30 lines of node $i's log ---"
    tail -n 30 "$TMP/n$i.log"
  done
}

# six distinct free ports, below the ephemeral range (test/ports.mjs)
read -r H1 H2 H3 P1 P2 P3 <<<"$(node ../ports.mjs 6)"
PEERS="--peer 1=127.0.0.1:$P1 --peer 2=127.0.0.1:$P2 --peer 3=127.0.0.1:$P3"
for i in 1 2 3; do
  eval "h=\$H$i"
  "$BIN" --listen "127.0.0.1:$h" --core-count 2 --raft-group-count 8 \
    --long-poll-timeout-ms 1000 --wal-dir "$TMP/wal$i" --node-id "$i" $PEERS \
    "$@" >"$TMP/n$i.log" 2>&1 &
  PIDS="$PIDS $!"
done

# ready: a PUT through each node (its group led somewhere, the write
# forwarded there when needed) answers 201; at most about 20 s
ready=0
for t in $(seq 1 100); do
  ready=1
  for i in 1 2 3; do
    eval "h=\$H$i"
    code=$(curl -s -o /dev/null -w '%{http_code}' -m 2 -X PUT \
      "http://127.0.0.1:$h/__conformance_cluster_ready/$i/$t")
    [ "$code" = 201 ] || { ready=0; break; }
  done
  [ $ready = 1 ] && break
  sleep 0.2
done
if [ $ready != 1 ]; then
  show_logs
  say "the cluster did not come up within 20 s"
  exit 1
fi
say "3 nodes up (HTTP ports $H1 $H2 $H3)"

status=0
for i in 1 2 3; do
  eval "h=\$H$i"
  say "the suite against node $i (127.0.0.1:$h)"
  # shellcheck disable=SC2086 # VITEST_ARGS is split on purpose
  CONFORMANCE_TEST_URL=http://127.0.0.1:$h node_modules/.bin/vitest run \
    conformance.test.mjs ${VITEST_ARGS:-} || { status=1; say "node $i: FAILED"; }
done
for p in $PIDS; do
  kill -0 "$p" 2>/dev/null || { status=1; say "a node is no longer running"; }
done
[ $status = 0 ] || show_logs
[ $status = 0 ] && say "passed on each of the 3 nodes"
exit $status
