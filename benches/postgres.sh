#!/usr/bin/env bash
# The PostgreSQL peer of the end-to-end benchmark (issue 6): the same code lifecycle and
# FIFO settlement as markledger, in SQL and PL/pgSQL, on the same dataset, checked against
# markledger's own outputs. See benches/postgres/README.md.
#
# Usage: benches/postgres.sh DATASET_DIR WORK_DIR
#   DATASET_DIR  a JSON-lines dataset from `markledger generate --format json`
#   WORK_DIR     scratch space: the private cluster, both engines' outputs (emptied first)
# Environment:
#   ML_CALENDAR  working-day calendar (default datasets/calendars/kazakhstan.cal)
#   ML_SKIP_MARKLEDGER=1  do not run markledger (no ratio, no match check)
#   ML_WORKERS   markledger's --workers (default: markledger's own default, 2)
#   ML_PG_TRACE=1  print each prepare statement's time and the settle functions' times
#
# Prints the phase timings (load = COPY of the input lines and their decoding, one session
# per partition; prepare = refused lines, effective times, account order, calendar;
# settle = the PL/pgSQL run; export = writing the four outputs), code events per second, markledger's time on the same data in the same run and
# the ratio, and MATCH or a diff summary. Exits non-zero on a mismatch.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 DATASET_DIR WORK_DIR" >&2
  exit 2
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
here="$repo/benches/postgres"
dataset=$(cd "$1" && pwd)
mkdir -p "$2"
work=$(cd "$2" && pwd)
calendar=${ML_CALENDAR:-$repo/datasets/calendars/kazakhstan.cal}

# Partitions as markledger lists them: regular, non-hidden files sorted by name, without
# manifest.json (connectors/src/file/source.rs).
mapfile -t partitions < <(find "$dataset" -maxdepth 1 -type f ! -name '.*' ! -name manifest.json -printf '%f\n' | LC_ALL=C sort)
if [ ${#partitions[@]} -eq 0 ]; then
  echo "no partitions in $dataset" >&2
  exit 2
fi
for name in "${partitions[@]}"; do
  if [ "$(head -c 1 "$dataset/$name")" != "{" ] && [ -s "$dataset/$name" ]; then
    echo "$name is not JSON lines: the PostgreSQL peer reads only --format json datasets" >&2
    exit 2
  fi
done

# ------------------------------------------------------------------ PostgreSQL from Debian
find_bindir() {
  if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
    return
  fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}
bindir=$(find_bindir || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "installing PostgreSQL from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
  bindir=$(find_bindir)
fi
psql_bin="$bindir/psql"
[ -x "$psql_bin" ] || psql_bin=$(command -v psql)

# PostgreSQL refuses to run as root: the server runs as the `postgres` user the Debian
# package creates, the client (psql, which reads the dataset and writes the outputs) as us.
as_server() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

rm -rf "$work/pgdata" "$work/pg_out" "$work/ml_out" "$work/sock"
mkdir -p "$work/pgdata" "$work/pg_out" "$work/sock"
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$work/pgdata" "$work/sock"
fi

as_server "$bindir/initdb" -D "$work/pgdata" -U markledger --auth=trust --locale=C \
  --encoding=UTF8 --no-sync >"$work/initdb.log"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# Settings for this machine (2 cores, 24 GiB), one batch job and nothing else:
# - fsync, synchronous_commit and full_page_writes off, every table UNLOGGED: the same
#   durability class as markledger's file run, which never fsyncs either; a crash
#   recomputes the run from its input in both. (With WAL and fsync on, PostgreSQL would
#   pay for a durability markledger's file run does not offer.)
# - shared_buffers 6 GB holds the whole working set of a 10^7-code-event run (markledger
#   peaks at 2–3.5 GB there); work_mem and maintenance_work_mem large for the sorts and
#   index builds of one session.
# - autovacuum off (the run ANALYZEs when it has loaded), jit off (thousands of small
#   statements, each too short to repay compiling), dynamic shared memory in files.
cat >>"$work/pgdata/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$work/sock'
shared_buffers = 6GB
work_mem = 256MB
maintenance_work_mem = 2GB
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
max_wal_size = 16GB
checkpoint_timeout = 1h
autovacuum = off
jit = off
dynamic_shared_memory_type = mmap
timezone = 'Asia/Almaty'
log_min_messages = warning
EOF
trace=${ML_PG_TRACE:-0}
if [ "$trace" = 1 ]; then
  echo "track_functions = 'all'" >>"$work/pgdata/postgresql.conf"
fi

stop_server() {
  as_server "$bindir/pg_ctl" -D "$work/pgdata" -m fast stop >/dev/null 2>&1 || true
}
trap stop_server EXIT
as_server "$bindir/pg_ctl" -D "$work/pgdata" -l "$work/pgdata/server.log" -w start >/dev/null

psql=("$psql_bin" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U markledger -d postgres)
copy_options="WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"

now() { date +%s.%N; }
seconds() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }

"${psql[@]}" -f "$here/schema.sql"
"${psql[@]}" -c "COPY calendar_lines (body) FROM STDIN $copy_options" <"$calendar"

# Other work on the machine changes both engines' times, and markledger's two worker
# threads far more than PostgreSQL's one backend: the 1-minute load average is printed
# before and after each engine's run so a figure carries the state it was taken in.
load_before_pg=$(cut -d' ' -f1 /proc/loadavg)
# ------------------------------------------------------------------ load: COPY and decode, partitions in parallel
trace_options=()
if [ "$trace" = 1 ]; then
  trace_options=(-e -c '\timing on')
fi
t0=$(now)
pids=()
index=0
for name in "${partitions[@]}"; do
  "${psql[@]}" "${trace_options[@]}" -c "SET ml.part = '$index'" -c "COPY raw_lines (body) FROM STDIN $copy_options" \
    -v part="$index" -f "$here/decode.sql" <"$dataset/$name" &
  pids+=($!)
  index=$((index + 1))
done
for pid in "${pids[@]}"; do
  wait "$pid"
done
t1=$(now)

# ------------------------------------------------------------------ prepare, settle, export
"${psql[@]}" -v lateness_ms=5000 -v hold_ms=60000 -v expiry_working_days=30 -v defect_working_days=10 \
  "${trace_options[@]}" -f "$here/prepare.sql"
t2=$(now)
"${psql[@]}" -f "$here/functions.sql" -c "SELECT ml_run()" >/dev/null
t3=$(now)
"${psql[@]}" -v out_dir="$work/pg_out" -f "$here/export.sql"
t4=$(now)

if [ "$trace" = 1 ]; then
  "${psql[@]}" -c "SELECT funcname, calls, round(total_time) AS total_ms, round(self_time) AS self_ms
                   FROM pg_stat_user_functions ORDER BY total_time DESC LIMIT 15"
fi
load_after_pg=$(cut -d' ' -f1 /proc/loadavg)
read -r pg_events pg_code_events pg_late < <("${psql[@]}" -A -t -F ' ' \
  -c "SELECT events, code_events, late_events FROM run_info")
stop_server
trap - EXIT

code_events=$pg_code_events
if [ -f "$dataset/manifest.json" ]; then
  manifest_code_events=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["code_events"])' "$dataset/manifest.json")
  if [ "$manifest_code_events" != "$pg_code_events" ]; then
    echo "note: manifest.json says $manifest_code_events code events, PostgreSQL read $pg_code_events" >&2
  fi
fi

load=$(seconds "$t0" "$t1")
prepare=$(seconds "$t1" "$t2")
settle=$(seconds "$t2" "$t3")
export_s=$(seconds "$t3" "$t4")
total=$(seconds "$t0" "$t4")
rate() { python3 -c "import sys; print(round(int(sys.argv[1]) / max(float(sys.argv[2]), 1e-9)))" "$1" "$2"; }

echo "postgres: dataset $dataset: $pg_events events naming $code_events codes ($pg_late late)"
echo "postgres: load (COPY + decode) $load s, prepare $prepare s, settle (PL/pgSQL) $settle s, export $export_s s"
echo "postgres: load average $load_before_pg before, $load_after_pg after (2 cores)"
echo "postgres: total $total s, $(rate "$code_events" "$total") code events/s (settle alone: $(rate "$code_events" "$settle") code events/s)"

if [ "${ML_SKIP_MARKLEDGER:-0}" = 1 ]; then
  exit 0
fi

# ------------------------------------------------------------------ markledger on the same data
bin="$repo/target/release/markledger"
if [ ! -x "$bin" ]; then
  (cd "$repo" && cargo build --release --quiet -p markledger)
fi
load_before_ml=$(cut -d' ' -f1 /proc/loadavg)
m0=$(now)
workers=()
if [ -n "${ML_WORKERS:-}" ]; then
  workers=(--workers "$ML_WORKERS")
fi
"$bin" run --input "$dataset" --out "$work/ml_out" --quiet "${workers[@]}" >"$work/markledger.txt"
m1=$(now)
ml_total=$(seconds "$m0" "$m1")
grep -E "^\s+speed" "$work/markledger.txt" | sed 's/^ */markledger: /'
echo "markledger: load average $load_before_ml before, $(cut -d' ' -f1 /proc/loadavg) after (2 cores)"
echo "markledger: total $ml_total s (wall, this run), $(rate "$code_events" "$ml_total") code events/s"
python3 -c "import sys; print(f'ratio: PostgreSQL / dataflow = {float(sys.argv[1]) / float(sys.argv[2]):.2f} (code events/s of PostgreSQL are {float(sys.argv[2]) / float(sys.argv[1]):.2f} x the dataflow\'s)')" "$total" "$ml_total"

python3 "$here/compare.py" "$work/ml_out" "$work/pg_out"
