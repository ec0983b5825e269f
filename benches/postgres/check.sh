#!/usr/bin/env bash
# Correctness check of the PostgreSQL peer on small inputs: every golden scenario in
# datasets/scenarios (compared with its expected outputs) and the fixtures next to this
# file (compared with markledger run on them). Usage: benches/postgres/check.sh [WORK_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=${1:-$(mktemp -d)}
mkdir -p "$work"
failed=0
for scenario in "$repo"/datasets/scenarios/*/; do
  name=$(basename "$scenario")
  ML_SKIP_MARKLEDGER=1 "$repo/benches/postgres.sh" "$scenario/input" "$work/$name" >"$work/$name.log" 2>&1
  if python3 "$here/compare.py" "$scenario/expected" "$work/$name/pg_out" >"$work/$name.compare" 2>&1; then
    echo "scenario $name: MATCH"
  else
    echo "scenario $name: MISMATCH (see $work/$name.compare)"
    failed=1
  fi
done
for fixture in "$here"/fixtures/*/; do
  name=$(basename "$fixture")
  if "$repo/benches/postgres.sh" "$fixture" "$work/fixture-$name" >"$work/fixture-$name.log" 2>&1; then
    echo "fixture $name: MATCH"
  else
    echo "fixture $name: MISMATCH (see $work/fixture-$name.log)"
    failed=1
  fi
done
exit $failed
