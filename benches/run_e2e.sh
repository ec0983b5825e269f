#!/usr/bin/env bash
# The end-to-end benchmark (issue 6, BENCHMARKS.md "End to end"): on one generated dataset
# (JSON lines and the same events in binary), RUNS runs each of
#   - the dataflow (`markledger run`) on 2 and 1 workers, from binary and from JSON;
#   - the reference engine (`--engine reference`, one thread, from JSON);
#   - the bare loop (`bare-loop`: one thread, decode + per-code hash-map transitions only);
#   - the PostgreSQL peer (benches/postgres.sh: COPY, settlement in PL/pgSQL; its first run
#     also checks its outputs against markledger's and stops the benchmark on a mismatch);
# then prints one table of medians: seconds, code events/s, the ratio to the dataflow on 2
# workers from binary, and peak resident memory.
#
# Usage: benches/run_e2e.sh [CODES] [DIR] [RUNS]     (10000000 /tmp/markledger-bench 3)
# Environment: E2E_SKIP_PG=1 leaves PostgreSQL out.
set -euo pipefail
codes=${1:-10000000}
dir=${2:-/tmp/markledger-bench}
runs=${3:-3}
cd "$(dirname "$0")/.."
repo=$(pwd)
cargo build --release --quiet -p markledger --bin markledger -p markledger-benches --bin bare-loop
bin=$repo/target/release/markledger
mkdir -p "$dir"
for format in json bin; do
  if [ -f "$dir/$format/manifest.json" ] && ! grep -q "\"codes\": $codes," "$dir/$format/manifest.json"; then
    echo "run_e2e.sh: $dir/$format holds a dataset of another size; remove it or pick another DIR" >&2
    exit 1
  fi
  if [ ! -f "$dir/$format/manifest.json" ]; then
    echo "generating $codes code events ($format) in $dir/$format" >&2
    "$bin" generate --out "$dir/$format" --codes "$codes" --bad-rate 0.05 --format "$format" --quiet
  fi
done
code_events=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["code_events"])' "$dir/json/manifest.json")
results=$dir/results.tsv
: >"$results"
load() { cut -d' ' -f1 /proc/loadavg; }

# One timed run of a command: wall seconds and peak RSS (KiB) into the results.
timed() {
  local label=$1 i=$2; shift 2
  local before
  before=$(load)
  /usr/bin/time -f "%e %M" -o "$dir/time.txt" "$@" >"$dir/run.txt" 2>"$dir/run.err" || {
    echo "$label run $i failed:" >&2
    cat "$dir/run.err" >&2
    exit 1
  }
  read -r seconds rss <"$dir/time.txt"
  printf '%s\t%s\t%s\t%s\n' "$label" "$seconds" "$rss" "$before" >>"$results"
  echo "$label run $i: $seconds s, peak RSS $((rss / 1024)) MiB (load average $before before)" >&2
}

for i in $(seq "$runs"); do
  for w in 2 1; do
    for format in bin json; do
      rm -rf "$dir/out"
      timed "dataflow, $w worker(s), $format" "$i" "$bin" run --input "$dir/$format" --out "$dir/out" --workers "$w" --quiet
    done
  done
  rm -rf "$dir/out"
  timed "reference, json" "$i" "$bin" run --engine reference --input "$dir/json" --out "$dir/out" --quiet
  # The bare loop's own figure is its decode+loop time (reading the files is outside it).
  before=$(load)
  "$repo/target/release/bare-loop" "$dir/bin" --no-predecoded >"$dir/run.txt"
  seconds=$(sed -nE 's/.*decode\+loop +[0-9]+ code events in ([0-9.]+) s.*/\1/p' "$dir/run.txt")
  printf '%s\t%s\t%s\t%s\n' "bare loop, bin" "$seconds" "" "$before" >>"$results"
  echo "bare loop run $i: $seconds s (load average $before before)" >&2
  if [ "${E2E_SKIP_PG:-0}" != 1 ]; then
    before=$(load)
    if [ "$i" = 1 ]; then
      # The first run checks PostgreSQL's outputs against markledger's (exits on a mismatch).
      if ! benches/postgres.sh "$dir/json" "$dir/pg" >"$dir/pg.txt" || ! grep -q '^MATCH' "$dir/pg.txt"; then
        cat "$dir/pg.txt" >&2
        echo "PostgreSQL's outputs differ from markledger's: the comparison is void" >&2
        exit 1
      fi
      cp "$dir/pg.txt" "$dir/pg-match.txt"
      echo "PostgreSQL's outputs MATCH markledger's on this dataset ($dir/pg-match.txt)" >&2
    else
      ML_SKIP_MARKLEDGER=1 benches/postgres.sh "$dir/json" "$dir/pg" >"$dir/pg.txt"
    fi
    seconds=$(sed -nE 's/^postgres: total ([0-9.]+) s.*/\1/p' "$dir/pg.txt")
    printf '%s\t%s\t%s\t%s\n' "PostgreSQL, json" "$seconds" "" "$before" >>"$results"
    echo "PostgreSQL run $i: $seconds s (load average $before before)" >&2
  fi
done

python3 - "$results" "$code_events" "$runs" <<'EOF'
import statistics, sys
results, code_events, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = {}
for line in open(results):
    label, seconds, rss, load = line.rstrip("\n").split("\t")
    rows.setdefault(label, []).append((float(seconds), int(rss) if rss else None, load))
base = statistics.median(s for s, _, _ in rows["dataflow, 2 worker(s), bin"])
print(f"{code_events:,} code events; medians of {runs} runs; ratio = code events/s ÷ the dataflow's on 2 workers from binary")
print("| engine, input | runs (s) | median (s) | code events/s | ratio | peak RSS (median) | load average before each run |")
print("|---|---|---|---|---|---|---|")
for label, samples in rows.items():
    seconds = [s for s, _, _ in samples]
    median = statistics.median(seconds)
    rss = [r for _, r, _ in samples if r is not None]
    rss = f"{statistics.median(rss) / 1024 / 1024:.2f} GiB" if rss else "—"
    loads = ", ".join(l for _, _, l in samples)
    print(f"| {label} | {', '.join(f'{s:.2f}' for s in seconds)} | {median:.2f} | {code_events / median:,.0f} | {base / median:.3f} | {rss} | {loads} |")
if "bare loop, bin" in rows:
    bare = statistics.median(s for s, _, _ in rows["bare loop, bin"])
    print(f"dataflow on 2 workers from binary, per core: {code_events / base / 2:,.0f} code events/s = "
          f"{100 * bare / base / 2:.1f} % of the bare loop's {code_events / bare:,.0f}")
EOF
