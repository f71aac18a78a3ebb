#!/bin/sh
# check_layers.sh -- the parts of src/ call only parts listed above them.
#
#   sh test/check_layers.sh          (what `make check-layers` does)
#
# The MANIFEST of src/amalgamate.sh is the reading order, and it is meant
# to be the layering too: a part may call the functions of the parts
# listed above it, never those of a part listed after it.  A part reaches
# up only through a function pointer (a message's on_msg, a table of
# hooks), which is stored, not called, and so is not seen here.
#
# How: comments, string and character literals are blanked; a function
# belongs to the part that defines it (its name followed by '(' on a line
# that starts in column 0: definitions and prototypes); every other
# `name(` in a part, with name of the form prefix_rest, is a call.  A call
# of a function that belongs to a later part fails the check, unless the
# pair is in ALLOW below (an entry of ALLOW that is not needed fails too,
# so the list stays exact).  Exits 1 and names each offending call.

# Calls that go up on purpose, as "caller.c:function", each with why.
ALLOW='
group.c:server_group_of
group.c:server_group
group.c:server_owner_of
group.c:server_send
live.c:server_group_of
live.c:server_owner_of
live.c:server_send
'
# Why: server.c is the top (it creates the cores and starts everything),
# but it also holds the four routing helpers every core uses to find the
# group of a path, the core that owns a group, and to send a message to a
# core: server_group_of, server_group, server_owner_of, server_send.  They
# read struct ursula_server, which server.c owns; moving them down would
# move the server object with them.

LC_ALL=C
export LC_ALL

cd "$(dirname "$0")/../src" || exit 1

manifest=$(sed -n "/^MANIFEST='/,/^'/p" amalgamate.sh | sed '1d;$d')
[ -n "$manifest" ] || {
  echo "check-layers: no MANIFEST in src/amalgamate.sh" >&2
  exit 1
}

# strip FILE: the file with comments and literals blanked (lines kept).
strip() {
  awk '
    BEGIN { incomment = 0 }
    {
      line = $0; out = ""; i = 1; n = length(line)
      while (i <= n) {
        c = substr(line, i, 1); d = substr(line, i, 2)
        if (incomment) {
          if (d == "*/") { incomment = 0; i += 2; out = out "  " } else { out = out " "; i++ }
        } else if (d == "/*") { incomment = 1; i += 2; out = out "  "
        } else if (d == "//") { break
        } else if (c == "\"" || c == "'"'"'") {
          q = c; out = out " "; i++
          while (i <= n && substr(line, i, 1) != q) {
            if (substr(line, i, 1) == "\\") { i++; out = out " " }
            i++; out = out " "
          }
          i++; out = out " "
        } else { out = out c; i++ }
      }
      print out
    }' "$1"
}

tmp=${TMPDIR:-/tmp}/check_layers.$$
trap 'rm -f "$tmp".*' EXIT INT TERM
: >"$tmp.defs"
: >"$tmp.calls"
pos=0
for f in $manifest; do
  pos=$((pos + 1))
  strip "$f" >"$tmp.src" || exit 1
  # definitions: the first name( of a line that starts in column 0
  awk -v part="$f" -v pos="$pos" '
    /^[A-Za-z_]/ && !/^#/ {
      if (match($0, /[A-Za-z_][A-Za-z0-9_]*\(/))
        print substr($0, RSTART, RLENGTH - 1), part, pos
    }' "$tmp.src" >>"$tmp.defs"
  # calls: every prefix_name( that is not such a definition
  awk -v part="$f" -v pos="$pos" '
    {
      line = $0; first = (line ~ /^[A-Za-z_]/)
      while (match(line, /[a-z][a-z0-9]*_[A-Za-z0-9_]*[ \t]*\(/)) {
        name = substr(line, RSTART, RLENGTH); sub(/[ \t]*\($/, "", name)
        before = substr(line, RSTART - 1, 1)
        # not a member (p->on_x( is a pointer call), not the definition
        if ((RSTART == 1 || before !~ /[A-Za-z0-9_.>]/) && !(first && !seen))
          print name, part, pos
        seen = 1
        line = substr(line, RSTART + RLENGTH)
      }
      seen = 0
    }' "$tmp.src" >>"$tmp.calls"
done

echo "$ALLOW" | awk 'NF' >"$tmp.allow"
awk '
  FILENAME == ARGV[1] { allow[$1] = 1; next }
  FILENAME == ARGV[2] { if (!($1 in defpart)) { defpart[$1] = $2; defpos[$1] = $3 }; next }
  ($1 in defpart) && defpos[$1] > $3 {
    key = $2 ":" $1
    if (key in allow) { used[key] = 1; next }
    if (!(key in told)) {
      printf "check-layers: src/%s calls %s() of src/%s, a later part\n", $2, $1, defpart[$1]
      told[key] = 1; bad = 1
    }
  }
  END {
    for (key in allow)
      if (!(key in used)) {
        printf "check-layers: ALLOW lists %s, which is not needed: drop it\n", key
        bad = 1
      }
    exit bad
  }
' "$tmp.allow" "$tmp.defs" "$tmp.calls" || exit 1
echo "check-layers: every part calls only parts above it in MANIFEST"
