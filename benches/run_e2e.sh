#!/usr/bin/env bash
# End-to-end file-run benchmark: generates (or reuses) a dataset and runs the dataflow on
# 1 and 2 workers (JSON and binary input) and the reference engine, 3 runs each; prints
# every run's summary speed line and peak RSS. Usage: benches/run_e2e.sh [CODES] [DIR]
set -euo pipefail
codes=${1:-10000000}
dir=${2:-/tmp/markledger-bench}
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/markledger
mkdir -p "$dir"
for format in json bin; do
  if [ ! -f "$dir/$format/manifest.json" ]; then
    "$bin" generate --out "$dir/$format" --codes "$codes" --bad-rate 0.05 --format "$format" --quiet
  fi
done
run() {
  local label=$1; shift
  for i in 1 2 3; do
    rm -rf "$dir/out"
    /usr/bin/time -f "%e s wall, %M KiB peak RSS" "$bin" run "$@" --out "$dir/out" --quiet 2>"$dir/time.txt" \
      | grep -E "speed" | sed "s/^/$label run $i: /"
    sed "s/^/$label run $i: /" "$dir/time.txt"
  done
}
run "dataflow 2 workers, JSON  " --workers 2 --input "$dir/json"
run "dataflow 2 workers, binary" --workers 2 --input "$dir/bin"
run "dataflow 1 worker,  JSON  " --workers 1 --input "$dir/json"
run "reference,          JSON  " --engine reference --input "$dir/json"
