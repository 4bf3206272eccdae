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
export PROCON_TEST_DATABASE_URL=${PROCON_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
export PROCON_TEST_BROKERS=${PROCON_TEST_BROKERS:-127.0.0.1:9092}
export PROCON_TEST_KINESIS_ENDPOINT=${PROCON_TEST_KINESIS_ENDPOINT:-http://127.0.0.1:4568}
cargo test --workspace "$@"
