#!/usr/bin/env bash
# Installs and runs the Kinesis emulator the tests and the Kinesis demo use: kinesis-local
# (kinesis-mock, https://github.com/etspaceman/kinesis-mock) from the npm registry, on the
# machine's Node.js. Plain HTTP on 127.0.0.1:4568 (PROCON_KINESIS_PORT), data in memory.
# The package is pinned by version and sha256.
#
# usage: scripts/kinesis.sh install|start|stop|status
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR="$ROOT/.procon/kinesis"
VERSION=0.6.2
TGZ_SHA256=7f450e244b3c609b640b22ab005c9fdeaeb6e49d72403a3b6ebd9c3270b32cb5
PORT=${PROCON_KINESIS_PORT:-4568}
PIDFILE="$DIR/kinesis.pid"
LOG="$DIR/kinesis.log"

# shellcheck source=lib/npm-pinned.sh
. "$ROOT/scripts/lib/npm-pinned.sh"

install() {
  npm_pinned "$DIR" kinesis-local "$VERSION" "$TGZ_SHA256"
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

start() {
  install
  if listening; then
    echo "kinesis.sh: something already listens on 127.0.0.1:$PORT"; return 0
  fi
  # It reads server.json (its TLS certificate) from the working directory. Streams are made
  # at once (the default 500 ms delays slow every test) and held in memory only; the shard
  # limit (50 by default, an account's quota on AWS) is raised: every test makes streams of
  # its own and the emulator outlives test runs.
  (cd "$DIR/package" && exec env KINESIS_MOCK_PLAIN_PORT="$PORT" \
    KINESIS_MOCK_TLS_PORT=$((PORT - 1)) CREATE_STREAM_DURATION=0ms DELETE_STREAM_DURATION=0ms \
    SPLIT_SHARD_DURATION=0ms MERGE_SHARDS_DURATION=0ms UPDATE_SHARD_COUNT_DURATION=0ms \
    SHARD_LIMIT=100000 LOG_LEVEL=WARN nohup node main.js >"$LOG" 2>&1) &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 300); do
    if listening; then echo "kinesis.sh: kinesis-local listening on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"; return 0; fi
    sleep 0.1
  done
  echo "kinesis.sh: kinesis-local did not start; its log:" >&2; cat "$LOG" >&2; exit 1
}

# Stops the emulator this checkout started (one started elsewhere is left alone).
stop() {
  [ -f "$PIDFILE" ] || return 0
  kill "$(cat "$PIDFILE")" 2>/dev/null || true
  rm -f "$PIDFILE"
  for _ in $(seq 1 50); do listening || return 0; sleep 0.1; done
  echo "kinesis.sh: something still listens on 127.0.0.1:$PORT" >&2; exit 1
}

case "${1:-start}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) if listening; then echo "listening on 127.0.0.1:$PORT"; else echo "not running"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
