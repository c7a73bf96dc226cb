#!/usr/bin/env bash
# Control-plane benchmark (issue "Scale-out"): builds release binaries, starts a throwaway
# PostgreSQL, runs tests/sdk/src/bin/bench-control-plane.rs and prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-test-env.sh >/dev/null
work=$(mktemp -d /tmp/lightbox-bench.XXXXXX); chmod 755 "$work"
trap 'scripts/pg-test-cluster.sh stop "$work/pg"; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
eval "$(scripts/pg-test-cluster.sh start "$work/pg" "$port")"
export LIGHTBOX_TEST_POSTGRES_URL
cargo build --release --locked -p lightbox -p lightbox-sdk-tests --bin lightbox --bin bench-control-plane
target="${CARGO_TARGET_DIR:-target}"
export LIGHTBOX_BIN="$PWD/$target/release/lightbox"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%d)"
"$target/release/bench-control-plane"
