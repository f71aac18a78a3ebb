#!/usr/bin/env bash
# start.sh -- start a local S3 server that checks SigV4 signatures, for the
# tests: @20minutes/s3rver (pinned in package.json; installed here with npm
# ci when missing), on 127.0.0.1.
#
#   bash test/s3/start.sh DATA_DIR PORT [KEY.pem CERT.pem]   -> prints its pid
#
# Bucket "testbucket" exists; credentials S3RVER / S3RVER.  With a key and
# certificate it serves https.  Node needs --openssl-legacy-provider: the
# server encrypts ListObjectsV2 continuation tokens with DES.  The script
# returns once the server answers (at most 20 s), or fails with its log.
set -u
here=$(cd "$(dirname "$0")" && pwd)
data=$1
port=$2
key=${3:-}
cert=${4:-}
if [ ! -d "$here/node_modules/@20minutes/s3rver" ]; then
  (cd "$here" && npm ci --no-audit --no-fund >&2) || {
    echo "start.sh: npm ci failed in $here" >&2; exit 1; }
fi
mkdir -p "$data"
tls=()
scheme=http
if [ -n "$key" ]; then
  tls=(--key "$key" --cert "$cert")
  scheme=https
fi
node --openssl-legacy-provider -e \
  "require('$here/node_modules/@20minutes/s3rver/lib/cli').parseAsync(process.argv.slice(1),{from:'user'})" \
  -- -d "$data" -a 127.0.0.1 -p "$port" --silent --configure-bucket testbucket \
  "${tls[@]}" >"$data.log" 2>&1 &
pid=$!
for i in $(seq 1 200); do
  if curl -s -k -o /dev/null "$scheme://127.0.0.1:$port/"; then
    echo "$pid"
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
echo "start.sh: the S3 server did not answer on port $port:" >&2
cat "$data.log" >&2
kill "$pid" 2>/dev/null
exit 1
