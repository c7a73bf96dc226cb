#!/usr/bin/env bash
# DICOM import benchmark (docs/performance.md, "DICOM import"): builds the release `lightbox`
# and the `import-profile` example, starts lightbox on a temporary data dir (embedded backend,
# built-in S3), generates (a) a 500-instance 512x512 16-bit CT series and (b) one 200-frame
# 512x512 16-bit instance (explicit VR LE, scripts/dicom-generate.py), uploads each with
# `aws s3 cp --recursive`, times StartDICOMImportJob -> COMPLETED (50 ms polling), and puts
# beside it, on the same files: the single-thread cost of parsing / HTJ2K encoding / verifying
# (import-profile), OpenJPH's `ojph_compress` on the same frames, and `cp -r` of the input.
#
# Usage: scripts/bench-import.sh [--instances N] [--frames F] [--reps R] [--ojph-every K]
# Takes about 2-4 minutes on 2 cores; needs ~1.5 GB in /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-test-env.sh >/dev/null
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -q -p lightbox --bin lightbox
cargo build --release -q -p lightbox-frames --example import-profile
work=$(mktemp -d /tmp/lightbox-bench-import.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(free -g | awk '/^Mem:/ {print $2}') GB RAM"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "rustc: $(rustc --version); openjph: $(dpkg-query -W -f='${Version}' openjph-tools 2>/dev/null || echo unknown)"
echo
.venv/bin/python scripts/bench-import.py --bin "$CARGO_TARGET_DIR/release/lightbox" \
  --profile "$CARGO_TARGET_DIR/release/examples/import-profile" --work "$work" "$@"
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
