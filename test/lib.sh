# lib.sh -- what the shell tests share (sourced, never run): TAP lines,
# free loopback ports, and the clean-up of what a test started.
#
#   . test/lib.sh       then: ok, not_ok, check, free_ports, lib_track PID,
#                       lib_untrack PID, lib_kill PID, url, req
#
# A test sets TMP (its temporary directory) before it sources this file;
# on exit every tracked process is killed (kill -9) and waited for, and
# TMP is removed unless KEEP_TMP is set.  STOP_ON_FAIL=1 makes the first
# failure end the test (the plants targets use it).

LIB_N=0
FAILS=0
LIB_PIDS=""

ok() { LIB_N=$((LIB_N + 1)); echo "ok $LIB_N - $1"; }

# not_ok DESCRIPTION [DETAIL]
not_ok() {
  LIB_N=$((LIB_N + 1)); FAILS=$((FAILS + 1)); echo "not ok $LIB_N - $1"
  [ $# -gt 1 ] && printf '#   %s\n' "$2"
  if [ -n "${STOP_ON_FAIL:-}" ]; then exit 1; fi
  return 0
}

# check DESCRIPTION COMMAND...: ok if the command succeeds
check() {
  local d=$1; shift
  if "$@"; then ok "$d"; else not_ok "$d"; fi
}

# free_ports N: N distinct free loopback ports, below the ephemeral range
# so that no dialed connection takes one before the test binds it
# (test/ports.mjs says why)
LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
free_ports() { node "$LIB_DIR/ports.mjs" "$1"; }

# lib_track PID: kill -9 it when the test exits
lib_track() { LIB_PIDS="$LIB_PIDS $1"; }

# lib_untrack PID: no longer (the test has waited for it: its number may
# go to another process)
lib_untrack() {
  local p keep=""
  for p in $LIB_PIDS; do [ "$p" = "$1" ] || keep="$keep $p"; done
  LIB_PIDS=$keep
}

# lib_kill PID: kill -9 it now, wait for it, and untrack it
lib_kill() {
  { kill -9 "$1" && wait "$1"; } 2>/dev/null
  lib_untrack "$1"
}

# url NODE PATH: node NODE's URL for PATH (a cluster test keeps node N's
# HTTP port in H<N>)
url() { echo "http://127.0.0.1:$(eval echo \$H$1)$2"; }

# req NODE METHOD PATH [DATA [SEQ]]: the status code of the request to
# node NODE, retried on 503 and on no answer (no leader yet, or one just
# changed) for at most about 15 s.  With SEQ the request carries producer
# headers (Producer-Id: p and the path, Producer-Epoch 0, Producer-Seq
# SEQ: 0 for a stream's first append, then one more each), so a retry of
# an append whose outcome was unknown applies it once: the protocol's
# idempotent producer answers a seq it has accepted with 204 and appends
# nothing (protocol 5.2.1).
req() {
  local code end=$((SECONDS + 15)) prod=()
  [ -n "${5:-}" ] && prod=(-H "Producer-Id: p$3" -H "Producer-Epoch: 0" -H "Producer-Seq: $5")
  while [ $SECONDS -lt $end ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 -X "$2" \
      -H 'Content-Type: application/octet-stream' "${prod[@]}" \
      ${4:+--data-binary "$4"} "$(url "$1" "$3")")
    case $code in 503|000) sleep 0.1 ;; *) echo "$code"; return ;; esac
  done
  echo "$code"
}

lib_cleanup() {
  local p
  for p in $LIB_PIDS; do
    { kill -9 "$p" && wait "$p"; } 2>/dev/null
  done
  if [ -n "${KEEP_TMP:-}" ]; then echo "# logs kept in $TMP"; else rm -rf "$TMP"; fi
}
trap lib_cleanup EXIT
trap 'exit 130' INT TERM
