#!/usr/bin/env bash
# Runs every test of the workspace. The Kafka tests start their own tansu broker on
# loopback (tests/src/broker.rs); this installs tansu first when the machine lacks it
# (once per machine: ~20 min on 2 cores; later runs reuse it), and poppler-utils, whose
# pdftotext the billing-documents tests read PDFs with.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v pdftotext >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends poppler-utils
fi
scripts/kafka/install-tansu.sh
cargo test --workspace --locked "$@"
