#!/usr/bin/env bash
# Checkpoint benchmark (issue 7, BENCHMARKS.md "Checkpoints"): a generated dataset in a
# local tansu broker, `markledger stream --state` over it until it has caught up (the
# time a restart takes when it must re-read everything), then a restart from the
# checkpoint (the time a restart takes with durable state), and what the checkpoint holds.
# Usage: benches/checkpoint.sh [CODES] [DIR]     (PORT=19392 by default)
set -euo pipefail
codes=${1:-1000000}
dir=${2:-/tmp/markledger-checkpoint-bench}
port=${PORT:-19392}
cd "$(dirname "$0")/.."
scripts/kafka/install-tansu.sh >/dev/null
cargo build --release --quiet -p markledger --bin markledger
cargo build --release --quiet -p markledger-benches --bin checkpoint-stats
bin=target/release/markledger
now() { date +%s.%N; }
mkdir -p "$dir"
if [ ! -f "$dir/data/manifest.json" ]; then
  "$bin" generate --out "$dir/data" --codes "$codes" --bad-rate 0.05 --quiet
fi
rm -rf "$dir/state" "$dir/broker.db"*
PORT=$port scripts/kafka/start-broker.sh --sqlite "$dir/broker.db" >"$dir/broker.log" 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null || true' EXIT
sleep 2
"$bin" produce --brokers "127.0.0.1:$port" --input "$dir/data" --topic-prefix bench. | tail -1
# The last instant the data decides (its largest ts), in ms.
end=$(python3 -c "import json,datetime;print(int(datetime.datetime.fromisoformat(json.load(open('$dir/data/manifest.json'))['last_ts']).timestamp()*1000))")
flags=(--brokers "127.0.0.1:$port" --topic-prefix bench. --idle-timeout 2s --checkpoint-interval 5s --quiet)

caught_up() {  # the newest checkpoint covers the whole input
  local newest
  newest=$(ls "$dir/state" 2>/dev/null | grep -E '^checkpoint-[0-9]+\.mlck$' | sort | tail -1 || true)
  [ -n "$newest" ] && [ "$((10#$(echo "$newest" | tr -dc 0-9)))" -gt "$end" ]
}

start=$(now)
"$bin" stream "${flags[@]}" --group full --state "$dir/state" >"$dir/full.out" 2>"$dir/full.err" &
pid=$!
until caught_up; do sleep 0.1; done
full=$(python3 -c "print(f'{$(now) - $start:.2f}')")
kill -TERM $pid; wait $pid || true
echo "from the earliest offsets to caught up (a restart without state re-reads this): $full s"
grep -E "checkpoints" "$dir/full.out" || true
newest=$(ls "$dir"/state/checkpoint-*.mlck | sort | tail -1)
target/release/checkpoint-stats "$newest"

start=$(now)
"$bin" stream "${flags[@]}" --group full --state "$dir/state" >"$dir/restore.out" 2>"$dir/restore.err" &
pid=$!
until grep -q "restored the checkpoint" "$dir/restore.err"; do sleep 0.02; done
restored=$(python3 -c "print(f'{$(now) - $start:.2f}')")
kill -TERM $pid; wait $pid || true
echo "restart with --state, from process start to state restored and reading on: $restored s"
