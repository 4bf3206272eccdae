#!/usr/bin/env bash
# The whole test suite: makes sure PostgreSQL, the broker and the Kinesis emulator are up, then
# runs every test.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test relay`).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/postgres.sh
scripts/broker.sh start
# The emulator keeps everything in memory and slows down as it fills: each run starts it empty.
scripts/kinesis.sh stop
scripts/kinesis.sh start
# The admin page's browser test: Chromium and playwright-core.
scripts/browser.sh install >/dev/null
export PROCON_TEST_DATABASE_URL=${PROCON_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
export PROCON_TEST_BROKERS=${PROCON_TEST_BROKERS:-127.0.0.1:9092}
export PROCON_TEST_KINESIS_ENDPOINT=${PROCON_TEST_KINESIS_ENDPOINT:-http://127.0.0.1:4568}

if [ $# -gt 0 ]; then
  exec cargo test --workspace "$@"
fi

# Everything, once it is built, in two halves at once: the two test binaries that drive
# service processes for a minute or more on one side, the rest on the other. The tests wait on
# PostgreSQL, the broker and the emulator far more than they compute, and every test works in
# its own schema, topics and groups, so the halves do not meet. The chaos test runs alone, last:
# it restarts PostgreSQL.
cargo test --workspace --no-run
slow=(materialize examples)
alone=(chaos)
rest=()
for file in tests/*.rs; do
  name=$(basename "$file" .rs)
  case " ${slow[*]} ${alone[*]} " in
    *" $name "*) ;;
    *) rest+=(--test "$name") ;;
  esac
done
logs=$(mktemp -d)
cargo test $(printf -- '--test %s ' "${slow[@]}") >"$logs/slow.log" 2>&1 &
slow_pid=$!
set +e
cargo test --workspace --lib --bins "${rest[@]}" --test 'ui_pass_*'
rest_status=$?
cargo test --workspace --doc
doc_status=$?
wait "$slow_pid"
slow_status=$?
echo "==== ${slow[*]} (ran beside the rest)"
cat "$logs/slow.log"
rm -rf "$logs"
cargo test $(printf -- '--test %s ' "${alone[@]}")
alone_status=$?
set -e
if [ "$rest_status" -ne 0 ] || [ "$doc_status" -ne 0 ] || [ "$slow_status" -ne 0 ] \
  || [ "$alone_status" -ne 0 ]; then
  echo "test.sh: FAILED (rest: $rest_status, doc tests: $doc_status," \
    "${slow[*]}: $slow_status, ${alone[*]}: $alone_status)" >&2
  exit 1
fi
echo "test.sh: every test passed"
