#!/usr/bin/env bash
# backup.sh -- `ursula backup` and `ursula restore` (issue 17, item 7;
# README, Backup and restore), against real servers on 127.0.0.1.
#
#   bash test/backup.sh [BIN]        (make test-backup; BIN: ./ursula)
#
# A single node with --wal-dir, --cold-dir and small tiering thresholds
# (as test/cold.sh): byte streams with many appends of varied sizes (one
# of 3 MiB), a JSON stream, a stream with an idempotent producer, a fork,
# a closed stream, a stream with a TTL, and enough bytes that some are in
# cold chunks (checked before the backup).  Then:
#   1. the backup: exit 0, one MANIFEST line per group whose SHA-256 is
#      sha256sum's of the file and whose size is the file's, the cold
#      objects the state names listed; the admin paths' answers (405 with
#      Allow, 404, 400 without a Range, 206 and 416 with Content-Range,
#      DELETE); a node without --wal-dir (409, exit 1); a node nothing was
#      written to (groups without an image) backed up, restored, started;
#   2. the server stopped, its --wal-dir wiped, the backup restored, the
#      server started on it: every stream reads back byte-exact from -1
#      and from offsets in the middle (against what the test wrote), HEAD
#      says the same (Stream-Next-Offset, Content-Type, Stream-Closed,
#      Stream-TTL), the producer's retried append is a duplicate (204 and
#      the same Producer-Seq: protocol, idempotent producer), new appends
#      work;
#   3. a backup of the restored node (its bytes are now in the snapshot's
#      pieces, below its log's first entry) restored again reads the same;
#   4. damage: a flipped byte in an image, a MANIFEST whose SHA-256 of a
#      group is wrong, no MANIFEST, a cold object deleted (and then
#      --no-verify-cold), a non-empty --wal-dir or --out: each refused,
#      naming what failed;
#   5. a 3-node cluster: streams written through every node, the backup
#      taken from node 2 as soon as it answers after a restart (it was
#      killed while the others took appends: a lagging follower, so the
#      image must wait for the read barrier), all three killed and wiped,
#      each restored from the one backup: every stream reads back
#      byte-exact from every node, appends work, and a backup of the
#      restored cluster restores again.
# Every wait is bounded; temporary files are removed on exit.
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${1:-${URSULA_BIN:-./ursula}}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
TMP=$(mktemp -d)
. test/lib.sh
read -r HP AP P1 P2 P3 H1 H2 H3 A1 A2 A3 MP MA <<<"$(free_ports 13)"
GROUPS_N=4
WAL=$TMP/wal
COLD=$TMP/cold
BK=$TMP/bk
off() { printf '0000000000000000_%016d' "$1"; } # the protocol's offset form

# ---------------------------------------------------------------- a node
SPID=""
start() { # start WALDIR: the single node, until it listens (10 s)
  local i
  "$BIN" --listen "127.0.0.1:$HP" --admin-listen "127.0.0.1:$AP" \
    --core-count 2 --raft-group-count $GROUPS_N --wal-dir "$1" \
    --hot-max-bytes 65536 --snapshot-bytes 65536 --cold-flush-age-ms 1000 \
    --cold-dir "$COLD" >>"$TMP/server.log" 2>&1 &
  SPID=$!
  lib_track $SPID
  for i in $(seq 1 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$AP/healthz")" = 200 ] && return 0
    kill -0 $SPID 2>/dev/null || break
    sleep 0.05
  done
  return 1
}
stop() { # stop: SIGTERM, wait (at most 20 s, then kill -9)
  local i
  [ -n "$SPID" ] || return 0
  kill -TERM $SPID 2>/dev/null
  for i in $(seq 1 200); do
    kill -0 $SPID 2>/dev/null || break
    sleep 0.1
  done
  lib_kill $SPID
  SPID=""
}
U=http://127.0.0.1:$HP/v1/stream

# put NAME [HEADERS...] -> the status
put() {
  local n=$1; shift
  curl -s -o /dev/null -w '%{http_code}' -X PUT "$@" "$U/$n"
}
# post NAME FILE CT [HEADERS...] -> the status; the file's bytes appended
post() {
  local n=$1 f=$2 ct=$3; shift 3
  curl -s -o /dev/null -w '%{http_code}' -X POST -H "Content-Type: $ct" "$@" \
    --data-binary "@$f" "$U/$n"
}
# append NAME FILE [CT]: a byte append, also kept in $TMP/want-NAME
append() {
  local code
  code=$(post "$1" "$2" "${3:-application/octet-stream}")
  case $code in 200|204) cat "$2" >>"$TMP/want-$1" ;; *) echo "# append $1: $code"; return 1 ;; esac
}
# read_all BASEURL NAME OFFSET OUT: follow Stream-Next-Offset from OFFSET
# until Stream-Up-To-Date; the bodies to OUT; 1 on any non-200 (a 503, no
# leader confirmed the read yet, is asked again for at most 15 s)
read_all() {
  local o=$3 i code h end=$((SECONDS + 15))
  : >"$4"
  for i in $(seq 1 4000); do
    code=$(curl -s -D "$TMP/h" -o "$TMP/part" -w '%{http_code}' --max-time 10 "$1/$2?offset=$o")
    if [ "$code" = 503 ] && [ $SECONDS -lt $end ]; then sleep 0.1; continue; fi
    [ "$code" = 200 ] || { echo "# read $2 at $o: $code $(head -c 200 "$TMP/part")"; return 1; }
    cat "$TMP/part" >>"$4"
    h=$(tr -d '\r' <"$TMP/h")
    o=$(echo "$h" | awk -F': ' 'tolower($1)=="stream-next-offset"{print $2}')
    echo "$h" | grep -qi '^stream-up-to-date: true' && return 0
  done
  return 1
}
# meta BASEURL NAME: the HEAD fields a restore keeps, one line each
meta() {
  curl -s -I --max-time 10 "$1/$2" | tr -d '\r' |
    grep -iE '^(HTTP/|stream-next-offset|content-type|stream-closed|stream-ttl|stream-expires-at)' |
    tr 'A-Z' 'a-z' | sort
}
objects() { find "$COLD" -type f ! -name ursula-store ! -name '*.tmp' 2>/dev/null | wc -l; }

echo "# backup.sh: $BIN, ports $HP $AP"
mkdir -p "$TMP/data"
start "$WAL" || { echo "Bail out! the server did not start"; tail -5 "$TMP/server.log"; exit 1; }

# ---------------------------------------------------------------- writes
BYTES="b1 b2 big closed ttl prod"
for s in $BYTES; do : >"$TMP/want-$s"; done
codes="$(put b1 -H 'Content-Type: application/octet-stream')"
codes="$codes $(put b2 -H 'Content-Type: text/plain')"
codes="$codes $(put big -H 'Content-Type: application/octet-stream')"
codes="$codes $(put closed -H 'Content-Type: application/octet-stream')"
codes="$codes $(put ttl -H 'Content-Type: application/octet-stream' -H 'Stream-TTL: 86400')"
codes="$codes $(put prod -H 'Content-Type: application/octet-stream')"
codes="$codes $(put js -H 'Content-Type: application/json')"
[ "$codes" = "201 201 201 201 201 201 201" ] && ok "created 7 streams" || not_ok "created 7 streams" "$codes"

fail=0
for i in $(seq 1 60); do # many appends, 1 byte to ~40 KiB
  n=$(( (i * 7919) % 40000 + 1 ))
  head -c $n /dev/urandom >"$TMP/data/a$i"
  append b1 "$TMP/data/a$i" || fail=1
  [ $((i % 3)) = 0 ] && { append b2 "$TMP/data/a$i" text/plain || fail=1; }
done
head -c $((3 * 1024 * 1024)) /dev/urandom >"$TMP/data/three"
append big "$TMP/data/three" || fail=1 # one append of 3 MiB
head -c 200000 /dev/urandom >"$TMP/data/two"
append big "$TMP/data/two" || fail=1
for i in 1 2 3; do append closed "$TMP/data/a$i" || fail=1; done
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Stream-Closed: true' "$U/closed")
[ "$code" = 204 ] || { fail=1; echo "# close: $code"; }
for i in 4 5; do append ttl "$TMP/data/a$i" || fail=1; done
for q in 0 1 2 3 4; do # the producer's appends: 200 each (protocol)
  head -c $((q * 1000 + 10)) /dev/urandom >"$TMP/data/p$q"
  code=$(post prod "$TMP/data/p$q" application/octet-stream -H 'Producer-Id: w1' \
    -H 'Producer-Epoch: 3' -H "Producer-Seq: $q")
  [ "$code" = 200 ] && cat "$TMP/data/p$q" >>"$TMP/want-prod" || { fail=1; echo "# producer seq $q: $code"; }
done
JS='[{"n":1},{"n":2,"s":"two"}]'
JS2='[{"n":3},[4,5],"six"]'
printf '%s' "$JS" >"$TMP/data/js1"
printf '%s' "$JS2" >"$TMP/data/js2"
code1=$(post js "$TMP/data/js1" application/json)
JS_MID=$(curl -s -I "$U/js" | tr -d '\r' | awk -F': ' 'tolower($1)=="stream-next-offset"{print $2}')
code2=$(post js "$TMP/data/js2" application/json)
[ "$code1 $code2" = "204 204" ] || { fail=1; echo "# json: $code1 $code2"; }
# the fork: b1 up to byte 100000, then its own bytes
code=$(put fk -H 'Content-Type: application/octet-stream' -H 'Stream-Forked-From: /v1/stream/b1' \
  -H "Stream-Fork-Offset: $(off 100000)")
head -c 100000 "$TMP/want-b1" >"$TMP/want-fk"
[ "$code" = 201 ] || { fail=1; echo "# fork: $code"; }
append fk "$TMP/data/a7" || fail=1
BYTES="$BYTES fk"
[ $fail = 0 ] && ok "appends of varied sizes (one of 3 MiB), a closed stream, a TTL, a producer, JSON, a fork" ||
  not_ok "appends of varied sizes (one of 3 MiB), a closed stream, a TTL, a producer, JSON, a fork"

# the expectations checked on the source first (what the protocol says
# the test should read: the bytes written; JSON: the messages, in an array)
JS_ALL='[{"n":1},{"n":2,"s":"two"},{"n":3},[4,5],"six"]'
JS_TAIL='[{"n":3},[4,5],"six"]'
check_all() { # check_all BASEURL LABEL: every stream against its want
  local base=$1 s bad="" mid
  for s in $BYTES; do
    read_all "$base" $s -1 "$TMP/got" && cmp -s "$TMP/got" "$TMP/want-$s" || bad="$bad $s@-1"
    mid=$(( $(stat -c %s "$TMP/want-$s") / 2 + 1 ))
    read_all "$base" $s "$(off $mid)" "$TMP/got" &&
      tail -c +$((mid + 1)) "$TMP/want-$s" | cmp -s - "$TMP/got" || bad="$bad $s@$mid"
  done
  [ "$(curl -s --max-time 10 "$base/js?offset=-1")" = "$JS_ALL" ] || bad="$bad js@-1"
  [ "$(curl -s --max-time 10 "$base/js?offset=$JS_MID")" = "$JS_TAIL" ] || bad="$bad js@mid"
  if [ -z "$bad" ]; then ok "$2: every stream reads back byte-exact, from -1 and from the middle"
  else not_ok "$2: every stream reads back byte-exact, from -1 and from the middle" "differs:$bad"; fi
}
check_all "$U" "the source"

for i in $(seq 1 200); do [ "$(objects)" -gt 0 ] && break; sleep 0.1; done
n=$(objects)
[ "$n" -gt 0 ] && ok "the cold dir holds $n chunk objects before the backup" ||
  not_ok "the cold dir holds chunk objects before the backup"
for s in $BYTES js; do meta "$U" $s >"$TMP/meta-$s"; done
grep -q '^stream-ttl: 86400' "$TMP/meta-ttl" && grep -q '^stream-closed: true' "$TMP/meta-closed" &&
  ok "HEAD of the source: TTL and closed as written" || not_ok "HEAD of the source: TTL and closed as written"

# ---------------------------------------------------------------- backup
"$BIN" backup --admin "127.0.0.1:$AP" --out "$BK" 2>"$TMP/backup.err"
rc=$?
[ $rc = 0 ] && ok "ursula backup exits 0" || not_ok "ursula backup exits 0" "exit $rc: $(tail -3 "$TMP/backup.err")"
[ "$(grep -c '^group [0-9]*: [0-9]* bytes' "$TMP/backup.err")" = $GROUPS_N ] &&
  ok "it prints one progress line per group" || not_ok "it prints one progress line per group" "$(head -3 "$TMP/backup.err")"
manifest_ok() { # manifest_ok DIR: one line per group, sizes and sha256sum agree
  local d=$1 g=0 line f idx term bytes sha
  [ "$(head -1 "$d/MANIFEST")" = "ursula-backup 1" ] || return 1
  [ "$(grep -c '^group ' "$d/MANIFEST")" = $GROUPS_N ] || return 1
  while read -r _ gg f idx term bytes sha; do
    [ "$gg" = $g ] && [ "$f" = "$(printf 'group-%05d.img' $g)" ] || return 1
    [ "$(stat -c %s "$d/$f")" = "$bytes" ] || return 1
    [ "$(sha256sum "$d/$f" | cut -d' ' -f1)" = "$sha" ] || return 1
    g=$((g + 1))
  done < <(grep '^group ' "$d/MANIFEST")
  [ $g = $GROUPS_N ] && [ "$(tail -1 "$d/MANIFEST" | cut -d' ' -f1)" = end ]
}
check "MANIFEST: one line per group, each file's size and SHA-256 (sha256sum) as listed" manifest_ok "$BK"
nobj=$(grep -c '^object ' "$BK/MANIFEST")
[ "$nobj" -gt 0 ] && [ "$nobj" -le "$(objects)" ] && ok "MANIFEST lists the $nobj cold objects the state names" ||
  not_ok "MANIFEST lists the cold objects the state names" "$nobj listed, $(objects) in the store"
# the admin paths themselves (api.c, THE ADMIN LISTENER'S PATHS; RFC 9110)
AU=http://127.0.0.1:$AP/__ursula/backup
st() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
r1=$(st -X PUT "$AU/0")
allow=$(curl -s -D - -o /dev/null -X PUT "$AU/0" | tr -d '\r' | sed -n 's/^Allow: //Ip')
r2=$(st "$AU/$GROUPS_N")
r3=$(st -H 'Range: bytes=0-9' "$AU/0") # the backup removed its image
r4=$(st -X POST "$AU/0")
r5=$(st "$AU/0")
size=$(curl -s -I "$AU/0" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-length"{print $2}')
r6=$(curl -s -D "$TMP/h" -o /dev/null -w '%{http_code}' -H "Range: bytes=$size-" "$AU/0")
cr=$(tr -d '\r' <"$TMP/h" | awk -F': ' 'tolower($1)=="content-range"{print $2}')
r7=$(curl -s -D "$TMP/h" -o "$TMP/part" -w '%{http_code}' -H 'Range: bytes=10-' "$AU/0")
cr7=$(tr -d '\r' <"$TMP/h" | awk -F': ' 'tolower($1)=="content-range"{print $2}')
r8=$(st -X DELETE "$AU/0")
r9=$(st -X DELETE "$AU/0")
got="$r1 $allow|$r2|$r3|$r4|$r5|$r6 $cr|$r7 $cr7 $(stat -c %s "$TMP/part")|$r8 $r9"
want="405 GET, HEAD, POST, DELETE|404|404|200|400|416 bytes */$size|206 bytes 10-$((size - 1))/$size $((size - 10))|204 404"
[ "$got" = "$want" ] && ok "the backup paths: 405 with Allow, 404, 400 without a Range, 206 and 416 with Content-Range, DELETE 204 then 404" ||
  not_ok "the backup paths answer per RFC 9110" "got $got, want $want"
"$BIN" --listen "127.0.0.1:$MP" --admin-listen "127.0.0.1:$MA" --core-count 1 >"$TMP/mem.log" 2>&1 &
MPID=$!
lib_track $MPID
for i in $(seq 1 100); do [ "$(st "http://127.0.0.1:$MA/healthz")" = 200 ] && break; sleep 0.05; done
r1=$(st "http://127.0.0.1:$MA/__ursula/backup")
out=$("$BIN" backup --admin "127.0.0.1:$MA" --out "$TMP/mem-bk" 2>&1)
rc=$?
lib_kill $MPID
[ "$r1" = 409 ] && [ $rc = 1 ] && echo "$out" | grep -q "no --wal-dir" && [ ! -e "$TMP/mem-bk/MANIFEST" ] &&
  ok "a node without --wal-dir: 409, and ursula backup exits 1 saying why" ||
  not_ok "a node without --wal-dir: 409, and ursula backup exits 1 saying why" "$r1 exit $rc: $out"
# a node nothing was written to: its groups have no image (0 0 0 lines),
# and the restored --wal-dir starts
"$BIN" --listen "127.0.0.1:$MP" --admin-listen "127.0.0.1:$MA" --core-count 1 --raft-group-count 2 \
  --wal-dir "$TMP/empty-wal" >"$TMP/empty.log" 2>&1 &
MPID=$!
lib_track $MPID
for i in $(seq 1 100); do [ "$(st "http://127.0.0.1:$MA/healthz")" = 200 ] && break; sleep 0.05; done
"$BIN" backup --admin "127.0.0.1:$MA" --out "$TMP/empty-bk" 2>"$TMP/empty.err"
rc=$?
lib_kill $MPID
"$BIN" restore --from "$TMP/empty-bk" --wal-dir "$TMP/empty-wal2" >>"$TMP/empty.err" 2>&1 || rc=1
"$BIN" --listen "127.0.0.1:$MP" --admin-listen "127.0.0.1:$MA" --core-count 1 --raft-group-count 2 \
  --wal-dir "$TMP/empty-wal2" >>"$TMP/empty.log" 2>&1 &
MPID=$!
lib_track $MPID
code=000
for i in $(seq 1 100); do code=$(st -X PUT -H 'Content-Type: text/plain' "http://127.0.0.1:$MP/v1/stream/x"); [ "$code" = 000 ] || break; sleep 0.05; done
lib_kill $MPID
[ $rc = 0 ] && [ "$(grep -c '^group [01] group-0000[01].img 0 0 0 ' "$TMP/empty-bk/MANIFEST")" = 2 ] && [ "$code" = 201 ] &&
  ok "a node with nothing written: groups without an image (0 0 0), restored, it starts and takes a stream" ||
  not_ok "a node with nothing written backs up and restores" "exit $rc, PUT $code: $(tail -2 "$TMP/empty.err")"
cp -r "$BK" "$TMP/bk-pristine"
cp -r "$COLD" "$TMP/cold-copy"

# ---------------------------------------------------------------- restore
stop
rm -rf "$WAL"
out=$("$BIN" restore --from "$BK" --wal-dir "$WAL" --cold-dir "$COLD" 2>&1)
rc=$?
[ $rc = 0 ] && ok "ursula restore exits 0: $(echo "$out" | tail -1)" || not_ok "ursula restore exits 0" "exit $rc: $out"
start "$WAL" && ok "the node starts on the restored --wal-dir" ||
  not_ok "the node starts on the restored --wal-dir" "$(tail -3 "$TMP/server.log")"
check_all "$U" "restored"
bad=""
for s in $BYTES js; do meta "$U" $s | cmp -s - "$TMP/meta-$s" || bad="$bad $s"; done
[ -z "$bad" ] && ok "HEAD after the restore: Stream-Next-Offset, Content-Type, Stream-Closed, Stream-TTL as before" ||
  not_ok "HEAD after the restore as before" "differs:$bad"
# the producer retries its last append: a duplicate (204, Producer-Seq 4)
code=$(curl -s -D "$TMP/h" -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/octet-stream' \
  -H 'Producer-Id: w1' -H 'Producer-Epoch: 3' -H 'Producer-Seq: 4' --data-binary "@$TMP/data/p4" "$U/prod")
seq=$(tr -d '\r' <"$TMP/h" | awk -F': ' 'tolower($1)=="producer-seq"{print $2}')
nxt=$(tr -d '\r' <"$TMP/h" | awk -F': ' 'tolower($1)=="stream-next-offset"{print $2}')
[ "$code" = 204 ] && [ "$seq" = 4 ] && [ "$nxt" = "$(off "$(stat -c %s "$TMP/want-prod")")" ] &&
  ok "the producer's retried append after the restore is a duplicate: 204, Producer-Seq 4, the same offset" ||
  not_ok "the producer's retried append after the restore is a duplicate" "$code seq=$seq next=$nxt"
code=$(post prod "$TMP/data/a9" application/octet-stream -H 'Producer-Id: w1' -H 'Producer-Epoch: 3' -H 'Producer-Seq: 5')
[ "$code" = 200 ] && cat "$TMP/data/a9" >>"$TMP/want-prod"
code2=$(post closed "$TMP/data/a9" application/octet-stream)
[ "$code" = 200 ] && [ "$code2" = 409 ] && append b1 "$TMP/data/a10" && append fk "$TMP/data/a11" &&
  ok "new appends work (the producer's next seq 200, b1 and the fork 204; the closed stream stays closed: 409)" ||
  not_ok "new appends work" "producer $code, closed $code2"
check_all "$U" "restored, after new appends"

# ---------------------------------------------------------------- again
rm -rf "$TMP/bk2"
"$BIN" backup --admin "127.0.0.1:$AP" --out "$TMP/bk2" 2>"$TMP/backup2.err" && manifest_ok "$TMP/bk2" &&
  ok "a backup of the restored node" || not_ok "a backup of the restored node" "$(tail -2 "$TMP/backup2.err")"
stop
rm -rf "$WAL"
"$BIN" restore --from "$TMP/bk2" --wal-dir "$WAL" --cold-dir "$COLD" >"$TMP/restore2.out" 2>&1 &&
  start "$WAL" && ok "... restored and started" || not_ok "... restored and started" "$(tail -3 "$TMP/restore2.out" "$TMP/server.log")"
check_all "$U" "restored from the restored node's backup"
stop

# ---------------------------------------------------------------- damage
# refused STATUS PATTERN LABEL CMD...: exit STATUS and PATTERN in stderr
refused() {
  local want=$1 pat=$2 label=$3 out rc; shift 3
  out=$("$@" 2>&1); rc=$?
  if [ $rc = "$want" ] && echo "$out" | grep -qF -- "$pat"; then ok "$label (exit $rc: $pat)"
  else not_ok "$label" "exit $rc: $out"; fi
}
fresh() { rm -rf "$TMP/d" "$TMP/w"; cp -r "$TMP/bk-pristine" "$TMP/d"; }
fresh
# a byte in the middle of group 1's image
sz=$(stat -c %s "$TMP/d/group-00001.img")
printf '\xff' | dd of="$TMP/d/group-00001.img" bs=1 seek=$((sz / 2)) conv=notrunc 2>/dev/null
cmp -s "$TMP/d/group-00001.img" "$TMP/bk-pristine/group-00001.img" && printf '\x00' |
  dd of="$TMP/d/group-00001.img" bs=1 seek=$((sz / 2)) conv=notrunc 2>/dev/null
refused 1 "group 1: $TMP/d/group-00001.img is damaged: its SHA-256 differs" \
  "a flipped byte in an image: refused, naming the group" \
  "$BIN" restore --from "$TMP/d" --wal-dir "$TMP/w" --cold-dir "$COLD"
[ ! -e "$TMP/w" ] && ok "... and nothing written" || not_ok "... and nothing written"
fresh
# the MANIFEST's SHA-256 of group 2 wrong (the file intact)
awk '$1=="group" && $2=="2" { $7 = "0000000000000000000000000000000000000000000000000000000000000000" } { print }' \
  "$TMP/bk-pristine/MANIFEST" >"$TMP/d/MANIFEST"
refused 1 "group 2: $TMP/d/group-00002.img is damaged: its SHA-256 differs" \
  "a MANIFEST whose SHA-256 of a group is not its file's: refused, naming the group" \
  "$BIN" restore --from "$TMP/d" --wal-dir "$TMP/w" --cold-dir "$COLD"
fresh
rm "$TMP/d/MANIFEST"
refused 1 "MANIFEST is missing" "no MANIFEST: refused" \
  "$BIN" restore --from "$TMP/d" --wal-dir "$TMP/w" --cold-dir "$COLD"
fresh
victim=$(grep '^object ' "$TMP/d/MANIFEST" | head -1 | awk '{print $6}')
[ -n "$victim" ] && [ -f "$TMP/cold-copy/$victim" ] || echo "# no object to delete: $victim"
rm -f "$TMP/cold-copy/$victim"
refused 1 "cold-tier object $victim is missing" "a referenced cold object deleted: restore fails naming it" \
  "$BIN" restore --from "$TMP/d" --wal-dir "$TMP/w" --cold-dir "$TMP/cold-copy"
rm -rf "$TMP/w"
out=$("$BIN" restore --from "$TMP/d" --wal-dir "$TMP/w" --cold-dir "$TMP/cold-copy" --no-verify-cold 2>&1)
[ $? = 0 ] && ok "... and succeeds with --no-verify-cold" || not_ok "... and succeeds with --no-verify-cold" "$out"
refused 2 "exists and is not empty" "restore into a non-empty --wal-dir: refused" \
  "$BIN" restore --from "$TMP/d" --wal-dir "$TMP/w" --cold-dir "$COLD"
refused 2 "exists and is not empty" "backup into a non-empty --out: refused" \
  "$BIN" backup --admin "127.0.0.1:$AP" --out "$TMP/d"

# ---------------------------------------------------------------- cluster
printf 'the secret of the backup test cluster\n' >"$TMP/secret"
chmod 600 "$TMP/secret"
PEERS="--peer 1=127.0.0.1:$P1 --peer 2=127.0.0.1:$P2 --peer 3=127.0.0.1:$P3"
cstart() { # cstart N: node N on its ports and $TMP/cw-N
  "$BIN" --listen "127.0.0.1:$(eval echo \$H$1)" --admin-listen "127.0.0.1:$(eval echo \$A$1)" \
    --core-count 2 --raft-group-count $GROUPS_N --wal-dir "$TMP/cw-$1" --node-id "$1" $PEERS \
    --cluster-secret-file "$TMP/secret" >>"$TMP/n$1.log" 2>&1 &
  eval "CP$1=$!"
  lib_track $!
}
ready() { # ready: every node answers /readyz 200 (at most 30 s)
  local i n
  for i in $(seq 1 300); do
    n=0
    for k in 1 2 3; do
      [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$(eval echo \$A$k)/readyz")" = 200 ] && n=$((n + 1))
    done
    [ $n = 3 ] && return 0
    sleep 0.1
  done
  return 1
}
for k in 1 2 3; do cstart $k; done
ready && ok "a 3-node cluster is ready" || not_ok "a 3-node cluster is ready" "$(tail -2 "$TMP/n1.log")"
CS="c1 c2 c3 c4 c5 c6"
# cappend NODE NAME TEXT SEQ: a producer append through NODE (200, or 204
# for a retry the node had applied: protocol, idempotent producer), kept
cappend() {
  case "$(req "$1" POST "/v1/stream/$2" "$3" "$4")" in
    200|204) printf '%s' "$3" >>"$TMP/want-$2" ;;
    *) return 1 ;;
  esac
}
fail=0
for s in $CS; do : >"$TMP/want-$s"; done
i=0
for s in $CS; do # created and written through every node
  i=$((i + 1))
  [ "$(req $(( i % 3 + 1 )) PUT /v1/stream/$s)" = 201 ] || fail=1
  for j in 1 2 3; do
    cappend $(( (i + j) % 3 + 1 )) $s "$s-$j-$(head -c $((j * 5000)) /dev/zero | tr '\0' x)" $((j - 1)) || fail=1
  done
done
[ $fail = 0 ] && ok "6 streams created and written through the three nodes" || not_ok "6 streams written through the three nodes"
# node 2 lags: killed while the others take one more append on each
# stream, then started again and backed up as soon as it answers (a
# cluster's node applies nothing at start until a leader tells it what is
# committed: raft.md; so its state lacks those appends until it has
# caught up, which the backup's read barrier must wait for)
lib_kill $CP2
for s in $CS; do cappend 1 $s "$s-last" 3 || fail=1; done
cstart 2
for i in $(seq 1 200); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$A2/healthz")" = 200 ] && break
  sleep 0.02
done
"$BIN" backup --admin "127.0.0.1:$A2" --out "$TMP/cbk" 2>"$TMP/cbackup.err"
rc=$?
[ $rc = 0 ] && [ $fail = 0 ] && ok "a backup from node 2 as soon as it answers after a restart that left it behind the last appends" ||
  not_ok "a backup from node 2 right after it lagged" "exit $rc fail $fail: $(tail -3 "$TMP/cbackup.err")"
roles=$(curl -s "http://127.0.0.1:$A2/__ursula/cluster" | grep -o '"role":"follower"' | wc -l)
[ "$roles" -ge 1 ] && ok "node 2 follows $roles of the $GROUPS_N groups" || not_ok "node 2 follows some group"
for k in 1 2 3; do lib_kill "$(eval echo \$CP$k)"; rm -rf "$TMP/cw-$k"; done
rc=0
for k in 1 2 3; do "$BIN" restore --from "$TMP/cbk" --wal-dir "$TMP/cw-$k" >>"$TMP/crestore.out" 2>&1 || rc=1; done
[ $rc = 0 ] && ok "each node restored from the one backup" || not_ok "each node restored from the one backup" "$(tail -3 "$TMP/crestore.out")"
for k in 1 2 3; do cstart $k; done
ready && ok "the restored cluster elects leaders and is ready" || not_ok "the restored cluster is ready" "$(tail -3 "$TMP/n1.log")"
bad=""
for k in 1 2 3; do
  for s in $CS; do
    read_all "http://127.0.0.1:$(eval echo \$H$k)/v1/stream" $s -1 "$TMP/got" && cmp -s "$TMP/got" "$TMP/want-$s" || bad="$bad n$k:$s"
  done
done
[ -z "$bad" ] && ok "every stream reads back byte-exact from every node (the lagging node's last appends included)" ||
  not_ok "every stream reads back byte-exact from every node" "differs:$bad"
fail=0
for s in $CS; do cappend 3 $s "more" 4 || fail=1; done
[ $fail = 0 ] && ok "appends still work on the restored cluster" || not_ok "appends still work on the restored cluster"
# again, from node 3 of the restored cluster: its streams' bytes are now
# in its snapshots' pieces, below its logs' first entries
"$BIN" backup --admin "127.0.0.1:$A3" --out "$TMP/cbk2" 2>"$TMP/cbackup2.err" &&
  ok "a backup of the restored cluster (node 3)" || not_ok "a backup of the restored cluster" "$(tail -2 "$TMP/cbackup2.err")"
for k in 1 2 3; do lib_kill "$(eval echo \$CP$k)"; rm -rf "$TMP/cw-$k"; done
rc=0
for k in 1 2 3; do "$BIN" restore --from "$TMP/cbk2" --wal-dir "$TMP/cw-$k" >>"$TMP/crestore.out" 2>&1 || rc=1; done
for k in 1 2 3; do cstart $k; done
[ $rc = 0 ] && ready && ok "... restored into the three nodes, ready" ||
  not_ok "... restored into the three nodes, ready" "$(tail -3 "$TMP/crestore.out" "$TMP/n1.log")"
bad=""
for k in 1 3; do
  for s in $CS; do
    read_all "http://127.0.0.1:$(eval echo \$H$k)/v1/stream" $s -1 "$TMP/got" && cmp -s "$TMP/got" "$TMP/want-$s" || bad="$bad n$k:$s"
  done
done
[ -z "$bad" ] && ok "... every stream reads back byte-exact (nodes 1 and 3)" ||
  not_ok "... every stream reads back byte-exact" "differs:$bad"

echo "1..$LIB_N"
[ $FAILS = 0 ]
