#!/usr/bin/env bash
# crash.sh -- kill -9 the server under load and check what it acknowledged.
#
#   bash test/crash.sh [BIN] [ROUNDS]      (make test-crash; default 4 rounds)
#
# Each round starts ./ursula with --wal-dir on the same directory (small
# --hot-max-bytes and --snapshot-bytes, so that reads come from the WAL
# and restarts from snapshots), runs
# concurrent appends over many streams (some with idempotent-producer
# headers), kills the server with SIGKILL at a random moment, restarts it
# and checks every stream against what was acknowledged:
#
#   - every acknowledged append is there, byte-exact and in order, at the
#     offset its acknowledgement gave (Stream-Next-Offset);
#   - nothing is half there: the content is exactly a prefix of the
#     appends that were sent -- all acknowledged ones, plus at most the
#     one per stream that was in flight at the kill, and then whole;
#   - a producer's retry of its in-flight append after the restart is not
#     applied twice; appends go on at the offset where the stream ended.
#
# The appenders are separate curl processes, one per stream, each sending
# its appends one after another, so every stream's order is defined.
# Everything runs on 127.0.0.1 with bounded loops and timeouts.
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${1:-./ursula}
ROUNDS=${2:-4}
STREAMS=24     # streams 0..7 use producer headers
PER_ROUND=400  # appends each stream attempts per round (the kill stops it)
TMP=$(mktemp -d)
WAL=$TMP/wal
SPID=""
N=0
FAILS=0
RETRIES=0 # producer retries of appends that landed before the kill

cleanup() {
  [ -n "$SPID" ] && { kill -9 "$SPID" && wait "$SPID"; } 2>/dev/null
  for p in $(jobs -p); do { kill -9 "$p" && wait "$p"; } 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() { N=$((N + 1)); echo "ok $N - $1"; }
not_ok() {
  N=$((N + 1)); FAILS=$((FAILS + 1)); echo "not ok $N - $1"
  [ $# -gt 1 ] && printf '#   %s\n' "$2"
}

start() { # -> PORT, SPID; also the recovery time in START_MS
  local t0=$(date +%s%N) i
  # empty the log here, not in the child's redirection: otherwise the loop
  # below can read the previous round's port before the child truncates it
  : >"$TMP/server.log"
  "$BIN" --listen 127.0.0.1:0 --core-count 2 --raft-group-count 4 \
    --wal-dir "$WAL" --hot-max-bytes 65536 --snapshot-bytes 4096 \
    >"$TMP/server.log" 2>&1 &
  SPID=$!
  PORT=""
  for i in $(seq 1 300); do
    PORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/server.log" | head -1)
    [ -n "$PORT" ] && break
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.05
  done
  START_MS=$((($(date +%s%N) - t0) / 1000000))
  if [ -z "$PORT" ]; then
    echo "Bail out! the server did not start:"; tail -20 "$TMP/server.log"; exit 1
  fi
  U="http://127.0.0.1:$PORT/v1/stream"
}

# payload S K: set P to the payload of append K of stream S, 10..400
# self-describing bytes ("s3:k17;" then a filler letter).  Pure bash: the
# checks build thousands of them.
LETTERS=abcdefghijklmnopqrstuvwxyz
payload() {
  local head="s$1:k$2;" n
  n=$(( (($1 * 7919 + $2 * 104729) % 391) + 10 - ${#head} ))
  [ "$n" -lt 0 ] && n=0
  printf -v P '%*s' "$n" ''
  P="$head${P// /${LETTERS:$((($1 + $2) % 26)):1}}"
}

# appender S FROM: append K = FROM, FROM+1, ... to stream S until killed or
# PER_ROUND are done; log "K OFFSET" for each acknowledged one, and the K
# in flight to $TMP/s$S.doubt before each send.
appender() {
  local s=$1 k=$2 end=$(($2 + PER_ROUND)) code hdr prod=()
  while [ "$k" -lt "$end" ]; do
    echo "$k" >"$TMP/s$s.doubt"
    [ "$s" -lt 8 ] && prod=(-H 'Producer-Id: crash' -H 'Producer-Epoch: 0' -H "Producer-Seq: $k")
    payload "$s" "$k"
    printf '%s' "$P" >"$TMP/s$s.body"
    hdr=$(curl -s -m 5 -o /dev/null -D - -X POST -H 'Content-Type: text/plain' \
      "${prod[@]}" --data-binary @"$TMP/s$s.body" "$U/crash-$s" 2>/dev/null) || return 0
    code=$(printf '%s' "$hdr" | head -1 | cut -d' ' -f2)
    case "$code" in
    200 | 204) ;;
    *) echo "bad $k $code" >>"$TMP/s$s.acks"; return 0 ;;
    esac
    echo "$k $(printf '%s' "$hdr" | tr -d '\r' | sed -n 's/^Stream-Next-Offset: [0-9]*_0*\([0-9][0-9]*\)$/\1/Ip')" >>"$TMP/s$s.acks"
    k=$((k + 1))
  done
  rm -f "$TMP/s$s.doubt"
}

# read_stream S OUT: the whole stream, following Stream-Next-Offset.
read_stream() {
  local off=-1 i
  : >"$2"
  for i in $(seq 1 200); do
    curl -s -m 10 -D "$TMP/h" "$U/crash-$1?offset=$off" >>"$2" || return 1
    off=$(tr -d '\r' <"$TMP/h" | sed -n 's/^Stream-Next-Offset: //Ip')
    grep -qi '^Stream-Up-To-Date: true' "$TMP/h" && return 0
  done
  return 1
}

# verify NAME: check every stream against its acknowledgements; set
# NEXT[s] to the number of appends it now holds.
declare -a NEXT
verify() {
  local s bad=0 detail="" last m k len want off
  local -A ack
  for ((s = 0; s < STREAMS; s++)); do
    read_stream "$s" "$TMP/got" || { bad=1; detail="stream $s: read failed"; continue; }
    ack=()
    last=-1
    while read -r k off; do
      [ "$k" = bad ] && continue
      ack[$k]=$off
      [ "$k" -gt "$last" ] && last=$k
    done <"$TMP/s$s.acks"
    # the content must be payloads 0..m-1: m = last+1, or last+2 when the
    # append in flight at the kill landed (then whole)
    len=$(wc -c <"$TMP/got")
    want=""
    off=0
    for ((k = 0; k <= last; k++)); do
      payload "$s" "$k"
      want+=$P
      off=$((off + ${#P}))
      if [ -n "${ack[$k]:-}" ] && [ "${ack[$k]}" != "$off" ]; then
        bad=1; detail="stream $s: append $k was acknowledged at offset ${ack[$k]}, belongs at $off"
      fi
    done
    m=$((last + 1))
    if [ "$len" -gt "$off" ]; then
      payload "$s" "$m"
      want+=$P
      m=$((m + 1))
      echo "$((m - 1)) $((off + ${#P}))" >>"$TMP/s$s.acks" # acknowledged now
    fi
    printf '%s' "$want" >"$TMP/want"
    if ! cmp -s "$TMP/got" "$TMP/want"; then
      bad=1
      detail="stream $s: content is not the acknowledged appends (acknowledged 0..$last, got $len bytes, want ${#want})"
    fi
    NEXT[$s]=$m
  done
  if [ "$bad" -eq 0 ]; then ok "$1"; else not_ok "$1" "$detail"; fi
}

# --- round 0: create the streams ---------------------------------------------
start
for ((s = 0; s < STREAMS; s++)); do
  curl -s -o /dev/null -X PUT -H 'Content-Type: text/plain' "$U/crash-$s"
  : >"$TMP/s$s.acks"
  NEXT[$s]=0
done

for ((r = 1; r <= ROUNDS; r++)); do
  # producers retry the append that was in doubt: it must not land twice
  for ((s = 0; s < 8; s++)); do
    if [ -f "$TMP/s$s.doubt" ]; then
      k=$(cat "$TMP/s$s.doubt")
      if [ "$k" -lt "${NEXT[$s]}" ]; then # it landed: a duplicate now
        payload "$s" "$k"
        printf '%s' "$P" >"$TMP/s$s.body"
        code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: text/plain' \
          -H 'Producer-Id: crash' -H 'Producer-Epoch: 0' -H "Producer-Seq: $k" \
          --data-binary @"$TMP/s$s.body" "$U/crash-$s")
        RETRIES=$((RETRIES + 1))
        [ "$code" = 204 ] || [ "$code" = 200 ] || not_ok "round $r: retry of a landed append is acknowledged" "stream $s: $code"
      fi
      rm -f "$TMP/s$s.doubt"
    fi
  done
  for ((s = 0; s < STREAMS; s++)); do rm -f "$TMP/s$s.doubt"; appender "$s" "${NEXT[$s]}" & done
  sleep "0.$((RANDOM % 9 + 3))" # 0.3 .. 1.1 s of load
  kill -9 "$SPID"; wait "$SPID" 2>/dev/null; SPID=""
  for p in $(jobs -p); do wait "$p" 2>/dev/null; done
  acked=$(cat "$TMP"/s*.acks | grep -vc bad)
  start
  echo "# round $r: $acked acknowledged appends so far; restart took $START_MS ms"
  verify "round $r: after kill -9, every acknowledged append is there, whole and in order"
done
# the retries were re-verified by the next round's read-back (no doubles)
echo "# $RETRIES producer retries of appends that had landed unacknowledged"

# the restarts above began from snapshots (a few KiB of log apart)
n=$(ls "$WAL"/g*/snapshot 2>/dev/null | wc -l)
[ "$n" -gt 0 ] && ok "groups wrote snapshots ($n of 4)" || not_ok "groups wrote snapshots"

# a clean stop keeps everything too, and the offsets go on where they were
kill -TERM "$SPID"; wait "$SPID"; rc=$?; SPID=""
[ "$rc" -eq 0 ] && ok "SIGTERM exits 0" || not_ok "SIGTERM exits 0" "status $rc"
start
verify "after a clean restart, everything is there"
s=$((STREAMS - 1))
payload "$s" "${NEXT[$s]}"
printf '%s' "$P" >"$TMP/last.body"
read_stream "$s" "$TMP/got"
want=$(($(wc -c <"$TMP/got") + $(wc -c <"$TMP/last.body")))
got=$(curl -s -D - -o /dev/null -X POST -H 'Content-Type: text/plain' --data-binary @"$TMP/last.body" "$U/crash-$s" |
  tr -d '\r' | sed -n 's/^Stream-Next-Offset: [0-9]*_0*\([0-9][0-9]*\)$/\1/Ip')
[ "$got" = "$want" ] && ok "a new append continues at the old tail ($got)" || not_ok "a new append continues at the old tail" "got $got want $want"

echo "1..$N"
[ "$FAILS" -eq 0 ] || { echo "# $FAILS failed"; tail -20 "$TMP/server.log"; exit 1; }
