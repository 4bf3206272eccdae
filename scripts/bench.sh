#!/usr/bin/env bash
# Runs the benchmark binary in release mode against the local PostgreSQL, the test broker and
# the Kinesis emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/postgres.sh
# tansu (memory storage) slows down as it holds more: every idempotent produce rewrites a
# metadata object listing every producer it has seen. Start from an empty one, as the emulator.
scripts/broker.sh stop
scripts/broker.sh start
# The Kinesis emulator slows down as it holds more records: start from an empty one.
scripts/kinesis.sh stop
scripts/kinesis.sh start
# The memory scenario runs the relay as its own process.
cargo build --release -p procon-cli --bin procon
cargo run --release --bin procon-bench
