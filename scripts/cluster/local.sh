#!/usr/bin/env bash
# Runs markledger on a cluster of N processes × W workers on this machine (loopback), to
# try timely's cluster mode without more machines (README.md "Cluster mode").
#
#   scripts/cluster/local.sh N W -- run --input DATASET --out OUT [other run flags]
#
# Writes a hostfile of N free loopback ports, starts process 0..N-1 with the same flags plus
# --workers W --processes N --process I --hostfile FILE, waits for all of them, forwards
# Ctrl-C (SIGINT/SIGTERM, as SIGTERM) to them, and exits non-zero if any process failed (a process
# that fails makes the others stop by themselves; any still running 30 s later is killed).
# Process 0 writes the outputs and prints the summary; each other process's stdout and
# stderr go to stderr, prefixed with its number.
#
# The binary: $MARKLEDGER_BIN, else target/release/markledger, else target/debug/markledger.
set -euo pipefail

usage() { echo "usage: $0 N W -- run --input DATASET --out OUT [flags]" >&2; exit 2; }
[ $# -ge 3 ] || usage
N=$1; W=$2; shift 2
[ "$1" = "--" ] && shift
[[ "$N" =~ ^[1-9][0-9]*$ && "$W" =~ ^[1-9][0-9]*$ ]] || usage

root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${MARKLEDGER_BIN:-}
if [ -z "$bin" ]; then
    if [ -x "$root/target/release/markledger" ]; then bin=$root/target/release/markledger
    elif [ -x "$root/target/debug/markledger" ]; then bin=$root/target/debug/markledger
    else echo "$0: no markledger binary: cargo build --release, or set MARKLEDGER_BIN" >&2; exit 2
    fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/markledger-cluster.XXXXXX")
trap 'rm -rf "$work"' EXIT
hostfile=$work/hostfile
# N free ports: bound all at once (so they differ), then released for the processes.
python3 - "$N" > "$hostfile" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(f"127.0.0.1:{s.getsockname()[1]}")
PY

pids=()
for ((i = 0; i < N; i++)); do
    if [ "$i" -eq 0 ]; then
        "$bin" "$@" --workers "$W" --processes "$N" --process 0 --hostfile "$hostfile" &
    else
        ("$bin" "$@" --workers "$W" --processes "$N" --process "$i" --hostfile "$hostfile" 2>&1 \
            | sed -u "s/^/[process $i] /" >&2; exit "${PIPESTATUS[0]}") &
    fi
    pids+=($!)
done

# Background jobs of a script ignore SIGINT, so Ctrl-C is forwarded as SIGTERM.
# Process 0 is the job itself; each other is the child of a subshell that prefixes its lines,
# which must live on to pass on its last lines and its status (a stream's summary after
# SIGTERM, its orderly stop: exit 0).
forward() {
    echo "$0: stopping the $N processes" >&2
    kill -TERM "${pids[0]}" 2>/dev/null || true
    for pid in "${pids[@]:1}"; do pkill -TERM -P "$pid" -x markledger 2>/dev/null || pkill -TERM -P "$pid" 2>/dev/null || true; done
}
trap 'forward' INT TERM

failed=0
declare -A done_at=()
remaining=$N
while [ "$remaining" -gt 0 ]; do
    for ((i = 0; i < N; i++)); do
        pid=${pids[$i]}
        [ -n "${done_at[$i]:-}" ] && continue
        if ! kill -0 "$pid" 2>/dev/null; then
            status=0
            wait "$pid" || status=$?
            done_at[$i]=$SECONDS
            remaining=$((remaining - 1))
            if [ "$status" -ne 0 ]; then
                echo "$0: process $i exited with status $status" >&2
                failed=1
                first_failure=${first_failure:-$SECONDS}
            fi
        fi
    done
    if [ "$failed" -eq 1 ] && [ $((SECONDS - first_failure)) -gt 30 ]; then
        echo "$0: a process failed 30 s ago; killing the ones still running" >&2
        for ((i = 0; i < N; i++)); do
            [ -n "${done_at[$i]:-}" ] || { pkill -KILL -P "${pids[$i]}" 2>/dev/null || true; kill -KILL "${pids[$i]}" 2>/dev/null || true; }
        done
        break
    fi
    sleep 0.2
done
exit "$failed"
