#!/usr/bin/env bash
# Installs the tansu Kafka broker (0.6.0, with memory and SQLite storage) that the Kafka
# tests (tests/tests/kafka_connectors.rs) and scripts/kafka/start-broker.sh run.
#
# Idempotent: does nothing when $HOME/.local/markledger-tools/bin/tansu already reports
# version 0.6.0. Otherwise builds it from crates.io with cargo (~20 min on 2 cores), in a
# build directory under /tmp so the project's own target directory is not touched.
#
# Features (TOOLCHAIN.md): the default build has no storage engine at all
# (`FeatureNotEnabled{dynostore}`); `dynostore` gives memory:// storage, `libsql` sqlite://.
set -euo pipefail

version="0.6.0"
root="${HOME}/.local/markledger-tools"
binary="${root}/bin/tansu"

if [[ -x "${binary}" ]] && "${binary}" --version 2>/dev/null | grep -q "${version}"; then
    echo "tansu ${version} is already installed: ${binary}"
    exit 0
fi

build_dir="${TANSU_BUILD_DIR:-/tmp/markledger-tansu-build}"
echo "building tansu ${version} into ${root} (build directory ${build_dir}); this takes a while"
CARGO_TARGET_DIR="${build_dir}" cargo install tansu \
    --version "${version}" \
    --locked \
    --features dynostore,libsql \
    --root "${root}"

"${binary}" --version
echo "installed ${binary}; the tests find it there (or set MARKLEDGER_TANSU=/path/to/tansu)"
