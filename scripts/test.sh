#!/usr/bin/env bash
# Runs every test of the workspace. The Kafka tests start their own tansu broker on
# loopback (tests/src/broker.rs); this installs tansu first when the machine lacks it
# (once per machine: ~20 min on 2 cores; later runs reuse it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/kafka/install-tansu.sh
cargo test --workspace --locked "$@"
