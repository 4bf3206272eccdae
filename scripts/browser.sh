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

# shellcheck source=lib/npm-pinned.sh
. "$ROOT/scripts/lib/npm-pinned.sh"

install() {
  if ! command -v chromium >/dev/null 2>&1; then
    echo "browser.sh: installing Debian's chromium" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  npm_pinned "$DIR" playwright-core "$VERSION" "$TGZ_SHA256"
  echo "$DIR/package"
}

case "${1:-}" in
  install) install ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
