#!/usr/bin/env bash
# cold.sh -- the cold tier end to end, against the real binary.
#
#   bash test/cold.sh dir          (make test-cold: a local --cold-dir)
#   bash test/cold.sh s3           (make test-cold-s3: a local S3 server)
#
# The server is built here with 64 KiB WAL segments (the default is 64
# MiB), so that released segments show on this scale, and a 256 KiB
# journal bound (the default is 64 MiB), so that its checkpoints run while
# data moves: the groups' logs then shrink as data moves, and the journals
# stay within their bound (one or two generations per core, each at most
# the bound plus one turn's writes).  With --hot-max-bytes
# 65536 (16 KiB chunks) and --cold-flush-age-ms 1000, the test
#
#   1. writes a binary stream of 4 MiB (64 times --hot-max-bytes) in 16 KiB
#      appends, a JSON stream of 3000 messages and a one-append stream;
#   2. waits (bounded) until the data has moved: cold objects exist, the
#      groups' logs are below 1 MiB, and the journals below 2 cores x 2
#      generations x (256 + 64) KiB;
#   3. reads every stream back byte-exact, kills the server with kill -9,
#      restarts it, and reads everything back again from cold storage; a
#      fork made at 2 MiB of the moved stream reads back its first 2 MiB
#      (from the source's chunks: a fork refers to what it inherits), and
#      its own appends move to objects of its own, from 2 MiB on;
#   4. deletes a stream and sees its objects go; leaves an object no
#      stream names and sees the start-up sweep delete it, and one whose
#      name carries a later Raft term (a newer leader's upload) and sees
#      the sweep keep it (make test-cold-plants: a sweep that ignores the
#      term fails here);
#   5. restarted without the cold tier, the server refuses to start; the
#      store carries this node's marker, another single node refuses it,
#      and so does this one once the marker is gone (make
#      test-cold-plants: a build that never checks the marker fails here);
#
# With s3, the store is @20minutes/s3rver (test/s3/start.sh), which checks
# SigV4 signatures; the test also shows that
#   6. a server with a wrong secret moves nothing (403 SignatureDoesNotMatch
#      in its log) while appends keep working;
#   7. with the store stopped mid-run, appends still succeed and reads of
#      moved data answer 503 with a reason; restarted while the store is
#      down, the server starts (its marker unchecked); once the store is
#      back, the moves catch up and every byte reads back, also after a
#      restart.
#
# Everything runs on 127.0.0.1; every wait is bounded; whatever the test
# started is killed on exit.
set -u
cd "$(dirname "$0")/.." || exit 1
MODE=${1:-dir}
TMP=$(mktemp -d)
. test/lib.sh
BIN=${COLD_BIN:-build/ursula-cold}
SPID="" # the server that runs, if any (tracked by lib.sh)
S3PID=""

mkdir -p build
[ -n "${COLD_BIN:-}" ] ||
  cc -std=c99 -O2 -g -DWAL_SEGMENT_BYTES=65536 -DJOURNAL_BYTES=262144 \
    ursula.c -o "$BIN" -pthread ||
  { echo "Bail out! cannot build $BIN"; exit 1; }

# ---------------------------------------------------------------- the store
S3_PORT=""
S3_URL=""
S3_SECRET=S3RVER
if [ "$MODE" = s3 ]; then
  S3_DATA=$TMP/s3data
  s3_start() {
    S3PID=$(bash test/s3/start.sh "$S3_DATA" "$S3_PORT" 2>"$TMP/s3.log") || {
      echo "Bail out! the S3 server did not start:"; cat "$TMP/s3.log"; exit 1; }
    lib_track "$S3PID"
  }
  S3_PORT=$(free_ports 1)
  s3_start
  S3_URL=http://127.0.0.1:$S3_PORT
  cold_flags() {
    echo --s3-endpoint "$S3_URL" --s3-bucket testbucket --s3-prefix "t/" \
      --s3-access-key S3RVER --s3-secret-key "$S3_SECRET"
  }
  objects() { # count of objects under the prefix, listed with curl's signer
    # (curl signs the query as written: the parameters must be sorted)
    curl -s --aws-sigv4 "aws:amz:us-east-1:s3" --user S3RVER:S3RVER \
      -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
      "$S3_URL/testbucket?list-type=2&max-keys=1000&prefix=t%2F" |
      grep -o '<Key>[^<]*</Key>' | grep -vc '^<Key>t/ursula-store</Key>$'
  }
  names() { # the objects' names under the prefix, one a line
    curl -s --aws-sigv4 "aws:amz:us-east-1:s3" --user S3RVER:S3RVER \
      -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
      "$S3_URL/testbucket?list-type=2&max-keys=1000&prefix=t%2F" |
      grep -o '<Key>[^<]*</Key>' | sed 's/<[^>]*>//g; s|^t/||' |
      grep -vx ursula-store
  }
  s3_curl() { # s3_curl URL [CURL ARGS...]: a signed request of the store
    local url=$1; shift
    curl -s --aws-sigv4 "aws:amz:us-east-1:s3" --user S3RVER:S3RVER \
      -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@" "$url"
  }
  MARKER_URL="$S3_URL/testbucket/t/ursula-store"
  marker_get() { s3_curl "$MARKER_URL" -f; }
  marker_remove() { s3_curl "$MARKER_URL" -X DELETE -o /dev/null; }
  marker_put() { s3_curl "$MARKER_URL" -T "$1" -o /dev/null; }
  ORPHAN="$S3_URL/testbucket/t/g00001/00000000000000ff/0000000000000000-0000000000000002"
  FUTURE="$ORPHAN-t00000000000000ff"
  orphan() { # orphan [URL]: put an object no stream names
    echo x | curl -s -o /dev/null --aws-sigv4 "aws:amz:us-east-1:s3" \
      --user S3RVER:S3RVER -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
      -T - "${1:-$ORPHAN}"
  }
  orphan_exists() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" \
      --user S3RVER:S3RVER -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
      "${1:-$ORPHAN}")" = 200 ]
  }
else
  COLD=$TMP/cold
  cold_flags() { echo --cold-dir "$COLD"; }
  objects() { find "$COLD" -type f ! -path "$COLD/ursula-store" 2>/dev/null | wc -l; }
  names() { (cd "$COLD" 2>/dev/null && find . -type f ! -path ./ursula-store | sed 's|^\./||'); }
  marker_get() { cat "$COLD/ursula-store"; }
  marker_remove() { rm -f "$COLD/ursula-store"; }
  marker_put() { cp "$1" "$COLD/ursula-store"; }
  ORPHAN="$COLD/g00001/00000000000000ff/0000000000000000-0000000000000002"
  FUTURE="$ORPHAN-t00000000000000ff"
  orphan() { local o=${1:-$ORPHAN}; mkdir -p "${o%/*}" && echo x >"$o"; }
  orphan_exists() { [ -f "${1:-$ORPHAN}" ]; }
fi

# ---------------------------------------------------------------- the server
WAL=$TMP/wal
start() { # start [EXTRA FLAGS...] -> PORT, SPID, U
  local i
  # shellcheck disable=SC2046
  "$BIN" --listen 127.0.0.1:0 --core-count 2 --raft-group-count 4 \
    --wal-dir "$WAL" --hot-max-bytes 65536 --snapshot-bytes 65536 \
    --cold-flush-age-ms 1000 --cold-cache-bytes 131072 $(cold_flags) "$@" \
    >>"$TMP/server.log" 2>&1 &
  SPID=$!
  lib_track "$SPID"
  PORT=""
  for i in $(seq 1 300); do
    # this start's line: the STARTS-th "listening" line of the log
    PORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/server.log" | sed -n "${STARTS}p")
    [ -n "$PORT" ] && break
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.05
  done
  if [ -z "$PORT" ]; then
    echo "Bail out! the server did not start:"; tail -20 "$TMP/server.log"; exit 1
  fi
  U="http://127.0.0.1:$PORT/v1/stream"
}
STARTS=0
up() { STARTS=$((STARTS + 1)); start "$@"; }
kill9() { [ -n "$SPID" ] && lib_kill "$SPID"; SPID=""; }

# The groups' logs (folders g00000...), and the cores' journals.
wal_bytes() { cat "$WAL"/g*/* 2>/dev/null | wc -c; }
journal_bytes() { cat "$WAL"/journal-* 2>/dev/null | wc -c; }
JOURNAL_MAX=$((2 * 2 * (262144 + 65536)))

# read_all NAME OUT: follow Stream-Next-Offset from the start until
# Stream-Up-To-Date; the bodies go to OUT.  Returns 1 on any non-200.
read_all() {
  local off=-1 i code h
  : >"$2"
  for i in $(seq 1 2000); do
    code=$(curl -s -D "$TMP/h" -o "$TMP/part" -w '%{http_code}' "$U/$1?offset=$off")
    [ "$code" = 200 ] || { echo "# read $1 at $off: $code $(cat "$TMP/part")"; return 1; }
    cat "$TMP/part" >>"$2"
    h=$(tr -d '\r' <"$TMP/h")
    off=$(echo "$h" | awk -F': ' 'tolower($1)=="stream-next-offset"{print $2}')
    echo "$h" | grep -qi '^stream-up-to-date: true' && return 0
  done
  return 1
}

post() { # post NAME CONTENT-TYPE FILE -> the status code
  curl -s -o /dev/null -w '%{http_code}' -X POST -H "Content-Type: $2" \
    --data-binary @"$3" "$U/$1"
}

# ---------------------------------------------------------------- 1. write
up
curl -s -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' "$U/big"
curl -s -o /dev/null -X PUT -H 'Content-Type: application/json' "$U/json"
curl -s -o /dev/null -X PUT -H 'Content-Type: text/plain' "$U/small"
head -c 4194304 /dev/urandom >"$TMP/big"
bad=0
for i in $(seq 0 255); do
  dd if="$TMP/big" of="$TMP/piece" bs=16384 skip="$i" count=1 2>/dev/null
  [ "$(post big application/octet-stream "$TMP/piece")" = 204 ] || bad=$((bad + 1))
done
check "4 MiB appended in 256 appends of 16 KiB" [ "$bad" -eq 0 ]
: >"$TMP/json.want"
bad=0
for b in $(seq 0 29); do # 30 batches of 100 messages
  printf '[' >"$TMP/batch"
  for m in $(seq 0 99); do
    k=$((b * 100 + m))
    [ "$m" -gt 0 ] && printf ',' >>"$TMP/batch"
    printf '{"k":%d,"pad":"%0200d"}' "$k" "$k" >>"$TMP/batch"
    printf '{"k":%d,"pad":"%0200d"},' "$k" "$k" >>"$TMP/json.want"
  done
  printf ']' >>"$TMP/batch"
  [ "$(post json application/json "$TMP/batch")" = 204 ] || bad=$((bad + 1))
done
check "3000 JSON messages appended" [ "$bad" -eq 0 ]
printf 'one small append' >"$TMP/small"
check "a one-append stream" [ "$(post small text/plain "$TMP/small")" = 204 ]

# ---------------------------------------------------------------- 2. moved
moved() {
  local i
  for i in $(seq 1 120); do
    [ "$(objects)" -gt 0 ] && [ "$(wal_bytes)" -lt 1048576 ] &&
      [ "$(journal_bytes)" -le "$JOURNAL_MAX" ] && return 0
    sleep 0.5
  done
  return 1
}
if moved; then
  ok "data moved: $(objects) objects, logs down to $(wal_bytes) bytes, journals $(journal_bytes)"
else
  not_ok "data moved" "objects $(objects), logs $(wal_bytes) bytes, journals $(journal_bytes)"
fi

# ---------------------------------------------------------------- 3. read back
verify_all() { # verify_all LABEL
  if read_all big "$TMP/big.got" && cmp -s "$TMP/big" "$TMP/big.got"; then
    ok "$1: the 4 MiB stream reads back byte-exact"
  else
    not_ok "$1: the 4 MiB stream reads back byte-exact" \
      "got $(wc -c <"$TMP/big.got" 2>/dev/null) bytes"
  fi
  if read_all small "$TMP/small.got" && cmp -s "$TMP/small" "$TMP/small.got"; then
    ok "$1: the small stream reads back"
  else
    not_ok "$1: the small stream reads back"
  fi
  # JSON reads answer arrays; joined they must be every message, in order
  if read_all json "$TMP/json.raw"; then
    local got
    got=$(cat "$TMP/json.raw") # "[v1,v2][v3]": one array per read
    got=${got#[}
    got=${got%]}
    got="${got//][/,},"
    if [ "$got" = "$(cat "$TMP/json.want")" ]; then
      ok "$1: 3000 JSON messages read back in order"
    else
      not_ok "$1: 3000 JSON messages read back in order" \
        "got ${#got} bytes, want $(wc -c <"$TMP/json.want")"
    fi
  else
    not_ok "$1: 3000 JSON messages read back in order"
  fi
}
verify_all "before a restart"
kill9
up
verify_all "after kill -9 and a restart"
# a fork of moved data: what it inherits it reads from the source's
# chunks; its own appends move to objects of its own, which start at its
# fork point (object names: g<group>/<incarnation>/<start>-<end>, hex)
names | sort >"$TMP/names.before"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT \
  -H 'Content-Type: application/octet-stream' \
  -H "Stream-Forked-From: /v1/stream/big" \
  -H "Stream-Fork-Offset: 0000000000000000_0000000002097152" "$U/bigfork")
head -c 2097152 "$TMP/big" >"$TMP/bigfork"
if [ "$code" = 201 ] && read_all bigfork "$TMP/bigfork.got" &&
  cmp -s "$TMP/bigfork" "$TMP/bigfork.got"; then
  ok "a fork at 2 MiB of the moved stream reads back its first 2 MiB"
else
  not_ok "a fork at 2 MiB of the moved stream reads back its first 2 MiB" "PUT $code"
fi
head -c 65536 /dev/urandom >"$TMP/forkown"
post bigfork application/octet-stream "$TMP/forkown" >/dev/null
cat "$TMP/forkown" >>"$TMP/bigfork"
moved=""
: >"$TMP/names.new"
for i in $(seq 1 80); do # its 64 KiB move within a few seconds
  # the streams above may still be moving their last chunks: the fork's
  # objects are those of the group/incarnation of the one that ends where
  # its own append does
  names | sort | comm -13 "$TMP/names.before" - >"$TMP/names.all"
  prefix=$(grep -E -- '-0000000000210000(-t[0-9a-f]{16})?$' "$TMP/names.all" | head -1 | cut -d/ -f1,2)
  if [ -n "$prefix" ]; then
    grep "^$prefix/" "$TMP/names.all" >"$TMP/names.new"
    moved=1
    break
  fi
  sleep 0.25
done
below=$(sed 's|.*/||; s|-.*||' "$TMP/names.new" | awk '($1 "") < "0000000000200000"' | wc -l)
if [ -n "$moved" ] && [ "$below" -eq 0 ]; then
  ok "the fork's own appends move to objects of its own ($(wc -l <"$TMP/names.new")), all from its fork point on"
else
  not_ok "the fork's own appends move to objects of its own, from its fork point on" \
    "moved: ${moved:-no}; names below 2 MiB: $below; new: $(tr '\n' ' ' <"$TMP/names.new")"
fi
if read_all bigfork "$TMP/bigfork.got" && cmp -s "$TMP/bigfork" "$TMP/bigfork.got"; then
  ok "... and it reads back 2 MiB of the source's chunks, then 64 KiB of its own"
else
  not_ok "... and it reads back 2 MiB of the source's chunks, then 64 KiB of its own"
fi
curl -s -o /dev/null -X DELETE "$U/bigfork"
for i in $(seq 1 60); do # deleting the fork deletes its own objects
  [ -z "$(names | sort | comm -12 "$TMP/names.new" -)" ] && break
  sleep 0.25
done
check "deleting the fork deletes its own objects" [ -z "$(names | sort | comm -12 "$TMP/names.new" -)" ]

# ---------------------------------------------------------------- 4. garbage
# big's objects are those of the group and incarnation of the one that ends
# at 4 MiB (counting all objects would race with the other streams' last
# moves: the one-append stream's, by age, comes about 3 s after a restart)
bigp=$(names | grep -E -- '-0000000000400000(-t[0-9a-f]{16})?$' | head -1 | cut -d/ -f1,2)
bigobjs() { names | grep -c "^$bigp/"; }
before=$(bigobjs)
curl -s -o /dev/null -X DELETE "$U/big"
gone=0
for i in $(seq 1 60); do
  [ "$(bigobjs)" -eq 0 ] && { gone=1; break; }
  sleep 0.25
done
[ -n "$bigp" ] && [ "$before" -eq 256 ] || gone=0
check "deleting a stream deletes its 256 objects ($before before, $(bigobjs) after)" [ "$gone" -eq 1 ]
kill9
orphan
orphan "$FUTURE"
orphan_exists && orphan_exists "$FUTURE" ||
  not_ok "the test could not place the orphan objects"
up
swept=0
for i in $(seq 1 60); do
  orphan_exists || { swept=1; break; }
  sleep 0.25
done
check "the start-up sweep deletes an object no stream names" [ "$swept" -eq 1 ]
sleep 1 # (the sweep's deletes run in parallel: give a wrong one time to land)
# An unnamed object whose name carries a term later than this node's
# (tier.c rule 2: a newer leader's upload, about to be named) is kept.
check "the sweep keeps an unnamed object of a later term" orphan_exists "$FUTURE"
verify_small_json() {
  read_all small "$TMP/small.got" && cmp -s "$TMP/small" "$TMP/small.got"
}
check "the other streams still read back after the sweep" verify_small_json

# ---------------------------------------------------------------- 5. refusal
kill9
"$BIN" --listen 127.0.0.1:0 --wal-dir "$WAL" --core-count 2 \
  --raft-group-count 4 >"$TMP/refuse.log" 2>&1 &
RPID=$!
for i in $(seq 1 100); do kill -0 "$RPID" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$RPID" 2>/dev/null; then
  kill -9 "$RPID"; wait "$RPID" 2>/dev/null
  not_ok "without the cold tier the server refuses to start"
else
  wait "$RPID"; rc=$?
  if [ "$rc" -ne 0 ] && grep -q "cold tier" "$TMP/refuse.log"; then
    ok "without the cold tier the server refuses to start: $(grep -o 'names [0-9]* chunks in a cold tier' "$TMP/refuse.log")"
  else
    not_ok "without the cold tier the server refuses to start" "$(cat "$TMP/refuse.log")"
  fi
fi

# ---------------------------------------------------------------- 5b. marker
# The store's marker (cold.c, THE STORE'S MARKER): "ursula-store 1",
# cluster-id, groups, and a single node's id, the one its --wal-dir keeps
# in cold-store ("ursula-cold-store 1\nnode ID\n").
refuses() { # refuses LOG WAL-DIR: a server on WAL-DIR exits at once, not 0
  "$BIN" --listen 127.0.0.1:0 --wal-dir "$2" --core-count 2 \
    --raft-group-count 4 $(cold_flags) >"$1" 2>&1 &
  local pid=$! i
  for i in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; wait "$pid" 2>/dev/null; return 1; fi
  wait "$pid" && return 1
  return 0
}
node_id=$(sed -n 's/^node \([0-9a-f]\{32\}\)$/\1/p' "$WAL/cold-store")
printf 'ursula-store 1\ncluster-id ursula\ngroups 4\nnode %s\n' "$node_id" >"$TMP/marker.want"
marker_get >"$TMP/marker.got" 2>/dev/null
check "the store is marked as this node's (cluster-id, groups, the id in its --wal-dir)" \
  cmp -s "$TMP/marker.want" "$TMP/marker.got"
if refuses "$TMP/other.log" "$TMP/wal-other" &&
  grep -q "holds the objects of the single node $node_id" "$TMP/other.log"; then
  ok "a second single node refuses the store: $(grep -o 'holds the objects of the single node [0-9a-f]*' "$TMP/other.log")"
else
  not_ok "a second single node refuses the store" "$(cat "$TMP/other.log")"
fi
marker_remove
if refuses "$TMP/nomark.log" "$WAL" && grep -q "has no marker" "$TMP/nomark.log"; then
  ok "with its marker gone the node refuses the store its WAL names chunks in"
else
  not_ok "with its marker gone the node refuses the store its WAL names chunks in" \
    "$(cat "$TMP/nomark.log")"
fi
marker_put "$TMP/marker.got"

if [ "$MODE" = s3 ]; then
  # -------------------------------------------------------------- 6. bad key
  S3_SECRET=WRONGSECRET
  up
  curl -s -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' "$U/k"
  head -c 200000 /dev/urandom >"$TMP/k"
  have=$(objects)
  check "with a wrong secret appends still succeed" \
    [ "$(post k application/octet-stream "$TMP/k")" = 204 ]
  sleep 3
  check "with a wrong secret nothing moves" [ "$(objects)" -eq "$have" ]
  check "the server logs the refusal: SignatureDoesNotMatch" \
    grep -q "SignatureDoesNotMatch" "$TMP/server.log"
  kill9
  S3_SECRET=S3RVER

  # -------------------------------------------------------------- 7. outage
  have=$(objects)
  up
  k_moved() { # k's one append of 200000 bytes is one chunk
    local i
    for i in $(seq 1 120); do
      [ "$(objects)" -ge $((have + 1)) ] && return 0
      sleep 0.5
    done
    return 1
  }
  check "with the right secret the stream moves" k_moved
  # read a moved chunk now, so that later the cache holds another one
  head_ok() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$U/small?offset=-1")" = 200 ]; }
  head_ok
  lib_kill "$S3PID"; S3PID=""
  curl -s -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' "$U/during"
  head -c 1048576 /dev/urandom >"$TMP/during"
  bad=0
  for i in $(seq 0 63); do
    dd if="$TMP/during" of="$TMP/piece" bs=16384 skip="$i" count=1 2>/dev/null
    [ "$(post during application/octet-stream "$TMP/piece")" = 204 ] || bad=$((bad + 1))
  done
  check "with the store down, 64 appends still succeed" [ "$bad" -eq 0 ]
  code=$(curl -s -o "$TMP/body" -w '%{http_code}' "$U/k?offset=-1")
  if [ "$code" = 503 ] && grep -qi "cold storage" "$TMP/body"; then
    ok "with the store down, a read of moved data answers 503: $(cat "$TMP/body")"
  else
    not_ok "with the store down, a read of moved data answers 503" "$code $(cat "$TMP/body")"
  fi
  check "the outage is logged" grep -q "cold storage unavailable" "$TMP/server.log"
  kill9
  up # with the store down: the marker is checked once it is back
  check "started with the store down, the server says the marker waits" \
    grep -q "unavailable at start: its marker could not be checked" "$TMP/server.log"
  s3_start
  caught=0
  for i in $(seq 1 240); do # 2 minutes: the back-off reaches 30 s
    [ "$(wal_bytes)" -lt 1048576 ] && read_all during "$TMP/during.got" &&
      cmp -s "$TMP/during" "$TMP/during.got" && { caught=1; break; }
    sleep 0.5
  done
  check "with the store back, the moves catch up and the data reads back" [ "$caught" -eq 1 ]
  check "the recovery is logged" grep -q "cold storage reachable again" "$TMP/server.log"
  kill9
  up
  if read_all during "$TMP/during.got" && cmp -s "$TMP/during" "$TMP/during.got" &&
    read_all k "$TMP/k.got" && cmp -s "$TMP/k" "$TMP/k.got"; then
    ok "after a restart every byte written during the outage reads back"
  else
    not_ok "after a restart every byte written during the outage reads back"
  fi
fi

# ---------------------------------------------------------------- clean stop
# (under ASan this also checks that nothing leaked)
[ -n "$SPID" ] || up
read_all small "$TMP/small.got" >/dev/null
kill -TERM "$SPID"
wait "$SPID"
rc=$?
lib_untrack "$SPID"
SPID=""
if [ "$rc" -eq 0 ] && ! grep -q "Sanitizer" "$TMP/server.log"; then
  ok "SIGTERM stops the server cleanly"
else
  not_ok "SIGTERM stops the server cleanly" "exit $rc; $(grep -m3 Sanitizer "$TMP/server.log")"
fi
echo "1..$LIB_N"
if [ "$FAILS" -gt 0 ]; then
  echo "# $FAILS failed; server log:"; tail -30 "$TMP/server.log" | sed 's/^/#   /'
  exit 1
fi
echo "# cold.sh $MODE: all $LIB_N passed"
