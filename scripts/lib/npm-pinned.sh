# Sourced by the scripts that install a package from the npm registry (the Kinesis emulator,
# playwright-core): `npm_pinned DIR NAME VERSION SHA256` unpacks NAME@VERSION into DIR/package
# unless that exact tarball is already there, and refuses a tarball whose sha256 differs.

npm_pinned() {
  local dir=$1 name=$2 version=$3 sha256=$4
  if [ -d "$dir/package" ] && [ "$(cat "$dir/installed" 2>/dev/null)" = "$sha256" ]; then
    return 0
  fi
  command -v npm >/dev/null 2>&1 || {
    echo "$name: Node.js and npm are needed (Debian: apt-get install nodejs npm)" >&2; return 1
  }
  mkdir -p "$dir"
  rm -rf "$dir/package" "$dir"/*.tgz
  (cd "$dir" && npm pack --silent "$name@$version" >/dev/null)
  local tgz="$dir/$name-$version.tgz"
  if [ "$(sha256sum "$tgz" | cut -d' ' -f1)" != "$sha256" ]; then
    echo "$name: checksum mismatch for $tgz (expected $sha256)" >&2; return 1
  fi
  tar xzf "$tgz" -C "$dir"
  echo "$sha256" >"$dir/installed"
  echo "installed $name $version" >&2
}
