#!/usr/bin/env bash
# Runs the benchmark binary in release mode against the local PostgreSQL and the test broker.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/postgres.sh
scripts/broker.sh start
# The memory scenario runs the relay as its own process.
cargo build --release --bin procon
cargo run --release --bin procon-bench
