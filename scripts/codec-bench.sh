#!/usr/bin/env bash
# Benchmark of crates/lightbox-codec against OpenJPH (ojph_compress / ojph_expand).
#
# Usage: scripts/codec-bench.sh [--reps N] [--threads T]
#
# Extracts real DICOM frames into target-codec/corpus (needs .venv from
# scripts/setup-test-env.sh; synthetic images are used otherwise), builds the release
# `bench` example and prints a Markdown table plus the machine description, ready to paste
# into docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-codec}"
if [ -x .venv/bin/python ] && [ ! -f "$CARGO_TARGET_DIR/corpus/manifest.json" ]; then
  .venv/bin/python scripts/codec-corpus.py extract "$CARGO_TARGET_DIR/corpus" >/dev/null
fi
cargo build --release -q -p lightbox-codec --example bench
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "rustc: $(rustc --version)"
echo "openjph: $(dpkg-query -W -f='${Version}' openjph-tools 2>/dev/null || echo unknown)"
echo
"$CARGO_TARGET_DIR/release/examples/bench" "$@"
