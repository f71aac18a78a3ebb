#!/bin/sh
# run.sh -- run the published Durable Streams conformance suite against the
# real ursula binary on loopback.  `make test-conformance` calls this.
#
#   sh test/conformance/run.sh [SERVER-ARGS...]    e.g. --wal-dir /tmp/w
#
# Steps: install the Node packages when needed (npm ci), build ../../ursula
# when it is missing, start it on a free 127.0.0.1 port with --core-count 2,
# wait until it answers, run vitest on conformance.test.mjs, stop the server
# (also on any exit), and exit with vitest's status.  The server log is
# shown when the run fails.
#
# Environment:
#   URSULA_BIN    binary to test (default: ../../ursula, built if missing)
#   VITEST_ARGS   extra vitest arguments, e.g. --reporter=verbose
#   CONFORMANCE_SUBSCRIPTIONS=1, CONFORMANCE_LONG_POLL_TIMEOUT_MS: see
#                 conformance.test.mjs
# Arguments are passed to the server after the defaults, so they win.

here=$(dirname "$0")
ports_mjs=$(cd "$here/.." && pwd)/ports.mjs
orig=$(pwd)
cd "$here" || exit 1

log() { echo "conformance: $*"; }
die() {
  echo "conformance: $*" >&2
  exit 1
}

# --- (a) Node packages -------------------------------------------------------
command -v node >/dev/null 2>&1 || die "node is not installed (Node >= 18 needed)"
command -v npm >/dev/null 2>&1 || die "npm is not installed"
need_ci=0
if [ ! -d node_modules/@durable-streams/server-conformance-tests ] ||
  [ ! -f node_modules/.package-lock.json ]; then
  need_ci=1
elif [ -n "$(find package-lock.json -newer node_modules/.package-lock.json)" ]; then
  need_ci=1
fi
if [ "$need_ci" -eq 1 ]; then
  log "installing Node packages (npm ci) in test/conformance ..."
  npm ci --no-audit --no-fund || die "npm ci failed"
  log "Node packages installed"
fi

# --- (b) the binary ------------------------------------------------------------
if [ -n "${URSULA_BIN:-}" ]; then
  case "$URSULA_BIN" in
  /*) bin=$URSULA_BIN ;;
  *) bin=$orig/$URSULA_BIN ;;
  esac
else
  bin=../../ursula
  if [ ! -x "$bin" ]; then
    log "building ursula"
    make -C ../.. ursula || die "build failed"
  fi
fi
[ -x "$bin" ] || die "no executable at $bin"

# --- (c) start the server ----------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ursula-conformance.XXXXXX") ||
  die "mktemp failed"
srvlog=$tmp/server.log
spid=""
vpid=""
cleanup() {
  if [ -n "$vpid" ]; then
    kill "$vpid" 2>/dev/null
    wait "$vpid" 2>/dev/null
    vpid=""
  fi
  if [ -n "$spid" ]; then
    kill "$spid" 2>/dev/null
    # give it up to 2 s to exit cleanly, then force it
    i=0
    while [ "$i" -lt 20 ] && kill -0 "$spid" 2>/dev/null; do
      sleep 0.1
      i=$((i + 1))
    done
    kill -9 "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    spid=""
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { node "$ports_mjs" 1; }

show_log() {
  echo "--- last 60 lines of the server log ($srvlog) ---"
  tail -n 60 "$srvlog"
  echo "--- end of server log ---"
}

# A port found free can be taken before the server binds it, so a start
# that dies early is retried a few times with a new port.
port=""
attempt=0
while [ "$attempt" -lt 3 ]; do
  attempt=$((attempt + 1))
  port=$(free_port) || die "could not find a free port"
  log "starting $bin on 127.0.0.1:$port"
  "$bin" --listen "127.0.0.1:$port" --core-count 2 --raft-group-count 8 \
    --long-poll-timeout-ms 1000 "$@" >"$srvlog" 2>&1 &
  spid=$!
  up=0
  i=0
  while [ "$i" -lt 50 ]; do # 50 x 0.2 s = at most about 10 s
    if ! kill -0 "$spid" 2>/dev/null; then
      break
    fi
    if curl -s -o /dev/null -m 1 "http://127.0.0.1:$port/"; then
      up=1
      break
    fi
    sleep 0.2
    i=$((i + 1))
  done
  [ "$up" -eq 1 ] && break
  if kill -0 "$spid" 2>/dev/null; then
    show_log
    die "server did not answer on 127.0.0.1:$port within 10 s"
  fi
  wait "$spid" 2>/dev/null
  rc=$?
  spid=""
  log "server exited early (status $rc)"
  show_log
  [ "$attempt" -lt 3 ] && log "retrying with another port"
done
[ "$up" -eq 1 ] || die "server did not start"
log "server is up (pid $spid)"

# --- (d) the suite -----------------------------------------------------------
# vitest is run from node_modules/.bin (what `npx vitest` resolves to, minus
# the npm wrapper, so a signal reaches it and nothing is ever downloaded).
# It runs in the background so that a signal to this script interrupts the
# wait, and the traps stop vitest and the server at once.
vitest=node_modules/.bin/vitest
[ -x "$vitest" ] || die "$vitest is missing; delete node_modules and rerun"
# shellcheck disable=SC2086 # VITEST_ARGS is split on purpose
CONFORMANCE_TEST_URL=http://127.0.0.1:$port "$vitest" run \
  conformance.test.mjs ${VITEST_ARGS:-} &
vpid=$!
wait "$vpid"
status=$?
vpid=""

# --- (e) stop, report ---------------------------------------------------------
if [ "$status" -ne 0 ]; then
  if ! kill -0 "$spid" 2>/dev/null; then
    log "the server is no longer running"
  fi
  show_log
  log "FAILED (vitest status $status)"
else
  log "passed"
fi
cleanup
exit "$status"
