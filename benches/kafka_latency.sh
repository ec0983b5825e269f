#!/usr/bin/env bash
# Streaming latency through Kafka (issue 6, BENCHMARKS.md "Streaming latency"): a local
# tansu broker on loopback, a generated JSON dataset, and `markledger stream --workers 2
# --lateness 0s` on fresh topics for every run, driven by `kafka-latency`
# (benches/src/bin/kafka_latency.rs), which produces the events in `ts` order at a paced
# rate and times each event from its send to its first status, ledger or rejection output.
#   1. peak: RUNS runs producing as fast as possible; the peak is the median of the rates
#      the pipeline sustained;
#   2. RUNS runs each at 25 %, 50 % and 90 % of that peak: latency p50, p99, p99.9, max.
#   3. RUNS runs at 50 % through the broker alone (no pipeline: the driver consumes its own
#      input topic), the latency floor the broker and clients set.
# Prints one table of medians.
# Usage: benches/kafka_latency.sh [CODES] [DIR] [RUNS]   (1000000 /tmp/markledger-latency 3)
# Environment: PORT (default 19393), IDLE_TIMEOUT (the stream's --idle-timeout, 200ms).
set -euo pipefail
codes=${1:-1000000}
dir=${2:-/tmp/markledger-latency}
runs=${3:-3}
port=${PORT:-19393}
idle=${IDLE_TIMEOUT:-200ms}
cd "$(dirname "$0")/.."
scripts/kafka/install-tansu.sh >/dev/null
cargo build --release --quiet -p markledger --bin markledger -p markledger-benches --bin kafka-latency
bin=target/release/markledger
driver=target/release/kafka-latency
mkdir -p "$dir"
if [ ! -f "$dir/data/manifest.json" ]; then
  "$bin" generate --out "$dir/data" --codes "$codes" --bad-rate 0.05 --format json --quiet
fi
PORT=$port scripts/kafka/start-broker.sh >"$dir/broker.log" 2>&1 &
broker=$!
pipeline=""
cleanup() {
  if [ -n "$pipeline" ]; then kill "$pipeline" 2>/dev/null || true; fi
  kill "$broker" 2>/dev/null || true
  pkill -P "$broker" 2>/dev/null || true
}
trap cleanup EXIT
brokers=127.0.0.1:$port
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
results=$dir/results.tsv
: >"$results"
n=0

# once LABEL RATE [--loopback]: one run on fresh topics; appends its figures to the
# results. With --loopback no pipeline runs: the driver times the broker hop alone.
once() {
  local label=$1 rate=$2 loopback=${3:-}
  n=$((n + 1))
  local prefix="lat$n-$$."
  "$driver" --brokers "$brokers" --topic-prefix "$prefix" --input "$dir/data" --rate "$rate" --quiet-after 5 \
    $loopback >"$dir/driver.out" 2>"$dir/driver.err" &
  local driver_pid=$!
  until grep -q "ready" "$dir/driver.err" 2>/dev/null; do
    kill -0 "$driver_pid" 2>/dev/null || { cat "$dir/driver.err" >&2; exit 1; }
    sleep 0.05
  done
  if [ -z "$loopback" ]; then
    "$bin" stream --brokers "$brokers" --topic-prefix "$prefix" --group "$prefix" --workers 2 --lateness 0s \
      --idle-timeout "$idle" --quiet >"$dir/stream.out" 2>"$dir/stream.err" &
    pipeline=$!
  fi
  if ! wait "$driver_pid"; then
    cat "$dir/driver.err" "$dir/stream.err" >&2
    exit 1
  fi
  if [ -n "$pipeline" ]; then
    kill -TERM "$pipeline"
    wait "$pipeline" || true
    pipeline=""
  fi
  local line
  line=$(grep machine "$dir/driver.out")
  printf '%s\t%s\t%s\n' "$label" "$(cut -d' ' -f1 /proc/loadavg)" "$line" >>"$results"
  echo "$label run: $(grep -E 'produced|latency|sustained' "$dir/driver.out" | tr -s ' ' | tr '\n' ';')" >&2
}

field() { sed -E "s/.* $1=([0-9.]+).*/\1/"; }
for i in $(seq "$runs"); do once "peak" 0; done
peak=$(grep '^peak' "$results" | field sustained_rate | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "measured peak (median sustained): $peak code events/s" >&2
for percent in 25 50 90; do
  rate=$(python3 -c "print(round($peak * $percent / 100))")
  for i in $(seq "$runs"); do once "$percent % of peak ($rate/s)" "$rate"; done
done
# The floor: the same events at half the peak through the broker alone (one hop; a
# pipeline adds a second, its output).
rate=$(python3 -c "print(round($peak / 2))")
for i in $(seq "$runs"); do once "broker alone, one hop ($rate/s)" "$rate" --loopback; done

python3 - "$results" "$runs" "$peak" <<'PY'
import re, statistics, sys
results, runs, peak = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rows = {}
for line in open(results):
    label, load, machine = line.rstrip("\n").split("\t")
    fields = dict(re.findall(r"(\w+)=([0-9.]+)", machine))
    rows.setdefault(label, []).append((load, {k: float(v) for k, v in fields.items()}))
print(f"markledger stream --workers 2 --lateness 0s; medians of {runs} runs; measured peak {peak:,.0f} code events/s")
print("| rate | produced (code events/s) | sustained (code events/s) | events timed | p50 (ms) | p99 (ms) | p99.9 (ms) | max (ms) | load average after each run |")
print("|---|---|---|---|---|---|---|---|---|")
for label, samples in rows.items():
    med = lambda key: statistics.median(f[key] for _, f in samples)
    loads = ", ".join(load for load, _ in samples)
    print(f"| {label} | {med('produced_rate'):,.0f} | {med('sustained_rate'):,.0f} | {med('answered'):.0f} | {med('p50_ms'):.1f} | {med('p99_ms'):.1f} | {med('p999_ms'):.1f} | {med('max_ms'):.1f} | {loads} |")
PY
