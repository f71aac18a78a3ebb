#!/bin/sh
# amalgamate.sh -- concatenate src/ into the single-file ursula.c, on stdout.
#
#   sh src/amalgamate.sh > ursula.c      (what `make amalgamate` does)
#
# The output is deterministic (no dates, no commit ids), so freshness is a
# byte compare (`make check-amalgamation`).  Order of the output:
#   license, banner, URSULA_AMALGAMATION, URSULA_PRIVATE, prefix.h (the
#   feature-test macros must precede every system header, ursula.h's too),
#   #include "ursula.h", the other headers in HEADERS, then the parts in
#   MANIFEST (= reading order).
# Every quoted #include line of a header or part is blanked (so #line stays
# exact); system includes <...> stay.  The script fails if a src/*.c file is
# not in MANIFEST, if an entry of MANIFEST has no file, or if an entry is
# listed twice.

# The parts, in reading order.  Add every new src/*.c here.
MANIFEST='
util.c
os.c
log.c
loop.c
metrics.c
net.c
http.c
json.c
attrs.c
conf.c
crypto.c
auth.c
sigv4.c
tls.c
tlsserve.c
s3.c
journal.c
wal.c
cmd.c
raft.c
peer.c
stream.c
cold.c
tier.c
group.c
fork.c
conn.c
sse.c
live.c
batch.c
api.c
server.c
backup.c
main.c
'

# The headers, in include order; they precede the parts.
HEADERS='
prefix.h
config.h
internal.h
'

LC_ALL=C
export LC_ALL

die() {
  echo "amalgamate.sh: $*" >&2
  exit 1
}

cd "$(dirname "$0")" || die "cannot cd to the src directory"

# --- check the manifest against the directory --------------------------------
bad=0
seen=' '
for f in $MANIFEST; do
  case "$seen" in
  *" $f "*)
    echo "amalgamate.sh: src/$f is listed twice in the manifest" >&2
    bad=1
    ;;
  esac
  seen="$seen$f "
  if [ ! -f "$f" ]; then
    echo "amalgamate.sh: src/$f is in the manifest but does not exist" >&2
    bad=1
  fi
done
for f in *.c; do
  [ -f "$f" ] || continue # no .c file at all: the glob stays literal
  case "$seen" in
  *" $f "*) ;;
  *)
    echo "amalgamate.sh: src/$f is not in the manifest (edit MANIFEST in src/amalgamate.sh)" >&2
    bad=1
    ;;
  esac
done
for f in $HEADERS; do
  [ -f "$f" ] || {
    echo "amalgamate.sh: header src/$f does not exist" >&2
    bad=1
  }
done
[ "$bad" -eq 0 ] || exit 1

# --- emit --------------------------------------------------------------------
# emit FILE: one wrapped section.  awk also supplies a final newline when the
# file lacks one, so the End marker always starts its own line.
emit() {
  printf '/**** Begin src/%s ****/\n' "$1"
  printf '#ifdef URSULA_ENABLE_LINES\n#line 1 "src/%s"\n#endif\n' "$1"
  awk '/^#include "/ { print ""; next } { print }' "$1" ||
    die "cannot read src/$1"
  printf '/**** End src/%s ****/\n' "$1"
}

cat <<'EOF'
/*
** Copyright 2026 the ursula authors
**
** Licensed under the Apache License, Version 2.0 (the "License");
** you may not use this file except in compliance with the License.
** You may obtain a copy of the License at
**
**     http://www.apache.org/licenses/LICENSE-2.0
**
** Unless required by applicable law or agreed to in writing, software
** distributed under the License is distributed on an "AS IS" BASIS,
** WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
** See the License for the specific language governing permissions and
** limitations under the License.
**
** SPDX-License-Identifier: Apache-2.0
*/
/*
** GENERATED FILE -- do not edit. Edit src/ and run `make amalgamate`.
**
** ursula.c is the amalgamation of the parts in src/ (headers first, then
** the parts in reading order).  Define URSULA_ENABLE_LINES to make
** debuggers and compiler messages point at the files in src/.
*/
#define URSULA_AMALGAMATION 1
#ifndef URSULA_PRIVATE
#define URSULA_PRIVATE static
#endif
EOF
emit prefix.h || exit 1
echo '#include "ursula.h"'

for f in $HEADERS $MANIFEST; do
  [ "$f" = prefix.h ] && continue
  emit "$f" || exit 1
done
