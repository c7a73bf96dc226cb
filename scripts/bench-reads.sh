#!/usr/bin/env bash
# Image set reads benchmark (docs/performance.md, "Image set reads"): builds the release
# `lightbox` and `bench-reads` (tests/sdk/src/bin/bench-reads.rs), generates a 512x512 16-bit
# CT series and a 3000x2500 16-bit radiograph series (scripts/dicom-generate.py, explicit VR LE),
# then bench-reads starts `lightbox serve` on a temporary data dir, imports both with
# `lightbox import`, measures GetImageFrame at 1/16/64 clients beside reading the same stored
# frame files from disk, stops the server, runs `lightbox generate-image-sets` (100,000 image
# sets by default), restarts it and measures SearchImageSets and GetImageSetMetadata.
#
# Usage: scripts/bench-reads.sh   (env: BENCH_SECONDS=3 per measurement, BENCH_IMAGE_SETS=100000,
# BENCH_CT_INSTANCES=64, BENCH_RG_INSTANCES=4; honours CARGO_TARGET_DIR)
# Takes about 5-8 minutes on 2 cores (release build not included); needs ~1 GB in /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-test-env.sh >/dev/null
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -q -p lightbox --bin lightbox
cargo build --release -q -p lightbox-sdk-tests --bin bench-reads
work=$(mktemp -d /tmp/lightbox-bench-reads.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(free -g | awk '/^Mem:/ {print $2}') GB RAM"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "rustc: $(rustc --version)"
t0=$(date +%s)
.venv/bin/python scripts/dicom-generate.py "$work/ct" --rows 512 --cols 512 --bits 16 \
  --instances-per-series "${BENCH_CT_INSTANCES:-64}" --patient-id BENCH-CT --seed 11 --jobs 2 >/dev/null
.venv/bin/python scripts/dicom-generate.py "$work/rg" --rows 3000 --cols 2500 --bits 16 \
  --instances-per-series "${BENCH_RG_INSTANCES:-4}" --patient-id BENCH-RG --seed 12 >/dev/null
echo "inputs: $(du -sh "$work/ct" | cut -f1) CT, $(du -sh "$work/rg" | cut -f1) radiograph, made in $(( $(date +%s) - t0 )) s"
echo
LIGHTBOX_BIN="$CARGO_TARGET_DIR/release/lightbox" BENCH_WORK="$work" \
  BENCH_CT_DIR="$work/ct" BENCH_RG_DIR="$work/rg" "$CARGO_TARGET_DIR/release/bench-reads"
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "total: $(( $(date +%s) - t0 )) s"
