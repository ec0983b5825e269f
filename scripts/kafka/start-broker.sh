#!/usr/bin/env bash
# Runs a tansu Kafka broker in the foreground on 127.0.0.1:9092 for trying the stream mode
# by hand. Memory storage by default (everything is gone when it stops);
# `--sqlite FILE` keeps topics, records and committed offsets in FILE across restarts.
# Stop it with Ctrl-C. tansu never creates topics on its own: `markledger stream` and
# produce_dataset create the ones they need.
#
# Use --sqlite to try stopping and resuming a consumer: tansu 0.6.0's memory storage
# fetches only from batch boundaries, so a consumer resuming at a committed offset inside
# a produced batch misses the rest of that batch; SQLite storage resumes at any offset.
#
#   scripts/kafka/start-broker.sh                      # memory storage
#   scripts/kafka/start-broker.sh --sqlite tansu.db    # SQLite file, relative to the cwd
#   PORT=19092 scripts/kafka/start-broker.sh           # another port
set -euo pipefail

port="${PORT:-9092}"
storage="memory://tansu/"
workdir="$(pwd)"

usage() {
    echo "usage: $0 [--sqlite FILE]" >&2
    exit 2
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --sqlite)
            [[ $# -ge 2 ]] || usage
            file="$2"
            shift 2
            # tansu resolves sqlite://NAME against its working directory: run it in the
            # file's directory.
            mkdir -p "$(dirname "${file}")"
            workdir="$(cd "$(dirname "${file}")" && pwd)"
            storage="sqlite://$(basename "${file}")"
            ;;
        -h | --help) usage ;;
        *) usage ;;
    esac
done

tansu="${MARKLEDGER_TANSU:-}"
if [[ -z "${tansu}" ]]; then
    if [[ -x "${HOME}/.local/markledger-tools/bin/tansu" ]]; then
        tansu="${HOME}/.local/markledger-tools/bin/tansu"
    elif command -v tansu >/dev/null 2>&1; then
        tansu="$(command -v tansu)"
    else
        echo "tansu is not installed: run scripts/kafka/install-tansu.sh" >&2
        exit 1
    fi
fi

url="tcp://127.0.0.1:${port}"
echo "tansu on 127.0.0.1:${port}, storage ${storage} (in ${workdir}); Ctrl-C stops it" >&2
cd "${workdir}"
exec "${tansu}" broker \
    --listener-url "${url}" \
    --advertised-listener-url "${url}" \
    --storage-engine "${storage}"
