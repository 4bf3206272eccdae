#!/usr/bin/env bash
# Installs what the browser tests drive: Debian's Chromium (apt, when missing) and
# playwright-core from the npm registry (pinned by version and sha256; it downloads no browser
# of its own: the tests launch /usr/bin/chromium). Prints the package folder.
#
# usage: scripts/browser.sh install
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR="$ROOT/.procon/playwright"
VERSION=1.65.1
TGZ_SHA256=6f5a60be62a4fddfbe7d10c448d8fbd54547da3358f2f8a04211440471ee863e

install() {
  if ! command -v chromium >/dev/null 2>&1; then
    echo "browser.sh: installing Debian's chromium" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  if [ -f "$DIR/package/index.js" ] && [ "$(cat "$DIR/installed" 2>/dev/null)" = "$TGZ_SHA256" ]; then
    echo "$DIR/package"
    return 0
  fi
  command -v npm >/dev/null 2>&1 || {
    echo "browser.sh: npm is needed (Debian: apt-get install nodejs npm)" >&2; exit 1
  }
  mkdir -p "$DIR"
  rm -rf "$DIR/package" "$DIR"/*.tgz
  (cd "$DIR" && npm pack --silent "playwright-core@$VERSION" >/dev/null)
  local tgz="$DIR/playwright-core-$VERSION.tgz"
  if [ "$(sha256sum "$tgz" | cut -d' ' -f1)" != "$TGZ_SHA256" ]; then
    echo "browser.sh: checksum mismatch for $tgz (expected $TGZ_SHA256)" >&2; exit 1
  fi
  tar xzf "$tgz" -C "$DIR"
  echo "$TGZ_SHA256" >"$DIR/installed"
  echo "$DIR/package"
}

case "${1:-}" in
  install) install ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
