#!/usr/bin/env bash
# Runs markledger's fuzz targets (fuzz/: the JSON line decoder, the binary reader, the TOML
# stream config) with libFuzzer on stable Rust, each for SECONDS (default 60), one after
# the other. Exits non-zero when a target finds a crash; the input that crashed is saved
# in fuzz/artifacts/<target>/ and printed with the command that replays it.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]        # CI: scripts/fuzz.sh 60
#   scripts/fuzz.sh 1800 binary_reader           # a longer run of one target
#
# The corpus grows in fuzz/corpus/<target>/ (not committed; it starts from the committed
# seeds in fuzz/seeds/<target>/), so repeated runs go deeper. docs/ARCHITECTURE.md,
# "Fuzzing", says what each target checks.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(json_line binary_reader stream_config)
fi

# libFuzzer's coverage instrumentation with stable rustc's own flags (what cargo-fuzz
# passes, without a sanitizer, which needs nightly). An explicit --target keeps the flags
# off build scripts and proc macros, which run on the host uninstrumented.
host=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
cargo build --release --locked --target "$host" --bins
bin="target/$host/release"

status=0
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  cp -n "seeds/$target"/* "corpus/$target/" 2>/dev/null || true
  log="artifacts/$target/last-run.log"
  echo "==> fuzz $target for ${seconds}s"
  set +e
  "$bin/$target" "corpus/$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="artifacts/$target/" >"$log" 2>&1
  code=$?
  set -e
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
  if [ $code -ne 0 ]; then
    status=1
    echo "!! $target failed (exit $code); the last lines of $log:"
    tail -n 40 "$log"
    for crash in "artifacts/$target"/crash-* "artifacts/$target"/timeout-* "artifacts/$target"/oom-*; do
      [ -e "$crash" ] && echo "   replay: fuzz/$bin/$target fuzz/$crash"
    done
  fi
done
exit $status
