#!/usr/bin/env bash
# Memory per live code. Generates (or reuses) a binary dataset of CODES code events in DIR
# and a tenth of it in DIR-tenth (same flags otherwise), then for each:
#   1. `markledger run --workers W` under /usr/bin/time: peak RSS of the real command, which
#      keeps every output in memory until the end to write the files in canonical order;
#   2. `state-memory` (benches/src/bin/state_memory.rs): the same dataflow with outputs
#      dropped, so the peak is the engine's state and buffers in flight; it counts the codes
#      the engine holds at the end (the index keeps every emitted code for the 5-year
#      retention; the live ones, not final, are also held by their accounts).
# Prints peak RSS, bytes per code held and per live code, and the marginal bytes per code
# held between the tenth and the full dataset (fixed costs and buffers cancel out).
# Usage: benches/memory.sh [CODES] [DIR] [WORKERS]     (default 10000000 /tmp/bench-bin 2)
set -euo pipefail
codes=${1:-10000000}
dir=${2:-/tmp/bench-bin}
workers=${3:-2}
cd "$(dirname "$0")/.."
cargo build --release --quiet -p markledger -p markledger-benches
bin=target/release/markledger
probe=target/release/state-memory

dataset() {
  local n=$1 d=$2
  if [ -f "$d/manifest.json" ]; then
    if ! grep -q "\"codes\": $n," "$d/manifest.json"; then
      echo "memory.sh: $d holds a dataset of another size; remove it or pick another DIR" >&2
      exit 1
    fi
  else
    "$bin" generate --out "$d" --codes "$n" --bad-rate 0.05 --format bin --quiet >/dev/null
  fi
}

# measure N DIR: prints "peak_run peak_state codes_held live_codes code_events" (bytes, counts).
measure() {
  local n=$1 d=$2 out
  out=$(mktemp -d)
  dataset "$n" "$d"
  /usr/bin/time -f "%M" -o "$out/time" "$bin" run --input "$d" --out "$out/outputs" --workers "$workers" --quiet \
    >"$out/summary"
  local run_kib
  run_kib=$(tail -n 1 "$out/time")
  "$probe" "$d" --workers "$workers" >"$out/state"
  sed "s/^/    /" "$out/summary" >&2
  sed "s/^/    /" "$out/state" >&2
  local line
  line=$(grep "machine" "$out/state")
  local peak held live events
  peak=$(sed -E 's/.*peak_bytes=([0-9]+).*/\1/' <<<"$line")
  held=$(sed -E 's/.*codes_held=([0-9]+).*/\1/' <<<"$line")
  live=$(sed -E 's/.*live_codes=([0-9]+).*/\1/' <<<"$line")
  events=$(sed -E 's/.*code_events=([0-9]+).*/\1/' <<<"$line")
  rm -rf "$out"
  echo "$((run_kib * 1024)) $peak $held $live $events"
}

echo "memory.sh: $codes code events in $dir, a tenth in $dir-tenth, $workers workers ($(date -u +%FT%TZ), $(nproc) cores)"
echo "  tenth:" >&2
small=$(measure $((codes / 10)) "$dir-tenth")
echo "  full:" >&2
full=$(measure "$codes" "$dir")
read -r run_small state_small held_small live_small events_small <<<"$small"
read -r run_full state_full held_full live_full events_full <<<"$full"
awk -v rs="$run_small" -v ss="$state_small" -v hs="$held_small" -v ls="$live_small" -v es="$events_small" \
    -v rf="$run_full" -v sf="$state_full" -v hf="$held_full" -v lf="$live_full" -v ef="$events_full" 'BEGIN {
  mib = 1024 * 1024
  printf "  %-6s %12s %20s %22s %12s %12s %16s %16s\n", "data", "code events", "peak RSS, run (MiB)", "peak RSS, state (MiB)", "codes held", "live codes", "B/code held", "B/live code"
  printf "  %-6s %12d %20.1f %22.1f %12d %12d %16.0f %16.0f\n", "tenth", es, rs / mib, ss / mib, hs, ls, ss / hs, ss / ls
  printf "  %-6s %12d %20.1f %22.1f %12d %12d %16.0f %16.0f\n", "full", ef, rf / mib, sf / mib, hf, lf, sf / hf, sf / lf
  printf "  marginal bytes per code held (state peak, full - tenth): %.0f\n", (sf - ss) / (hf - hs)
  printf "  (B/code held and B/live code: the state run'\''s peak divided by the count; the run'\''s peak also holds every output)\n"
}'
