#!/usr/bin/env bash
# DICOMweb benchmark against Orthanc (docs/performance.md, "DICOMweb (vs Orthanc)", issue #8):
# installs Debian's `orthanc` and `orthanc-dicomweb` if missing (apt-get, needs root), builds the
# release `lightbox`, generates a CT series with scripts/dicom-generate.py (512x512 16-bit,
# explicit VR LE, 500 instances by default), then scripts/bench-dicomweb.py starts both servers
# on temporary directories and free ports, stores the same data into both through STOW-RS (the
# series, and up to BENCH_STUDIES one-instance 8x8 studies within BENCH_LOAD_SECONDS of loading),
# measures QIDO-RS, series metadata and WADO-RS frames with the same client code, stops both and
# prints a Markdown table.
#
# Usage: scripts/bench-dicomweb.sh   (env: BENCH_STUDIES=100000, BENCH_LOAD_SECONDS=1800 (both
# servers together), BENCH_SERIES_INSTANCES=500, BENCH_RUNS=50, BENCH_MAX_SECONDS=60 (cap of one
# QIDO measurement), BENCH_FRAME_PASSES=3, BENCH_ORTHANC_BREAKDOWN=50 (instances of the Orthanc
# per-frame diagnostic printed before the table, 0 skips it), BENCH_RESULTS (where results.json
# is copied; default /tmp/bench-dicomweb-results.json); honours
# CARGO_TARGET_DIR). Needs ~1.5 GB in /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v Orthanc >/dev/null || [ ! -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null
fi
bash scripts/setup-test-env.sh >/dev/null
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -q -p lightbox --bin lightbox
work=$(mktemp -d /tmp/lightbox-bench-dicomweb.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(free -g | awk '/^Mem:/ {print $2}') GB RAM"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "lightbox: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' + uncommitted changes in crates/') release; $(Orthanc --version | head -1), DICOMweb plugin $(dpkg-query -W -f='${Version}' orthanc-dicomweb)"
t0=$(date +%s)
.venv/bin/python scripts/dicom-generate.py "$work/series" --rows 512 --cols 512 --bits 16 \
  --instances-per-series "${BENCH_SERIES_INSTANCES:-500}" --patient-id BENCH-CT --seed 21 --jobs 2 >/dev/null
echo "inputs made in $(( $(date +%s) - t0 )) s"
.venv/bin/python scripts/bench-dicomweb.py --lightbox "$CARGO_TARGET_DIR/release/lightbox" --work "$work" \
  --series-dir "$work/series" --studies "${BENCH_STUDIES:-100000}" --load-seconds "${BENCH_LOAD_SECONDS:-1800}" \
  --runs "${BENCH_RUNS:-50}" --max-seconds "${BENCH_MAX_SECONDS:-60}" --frame-passes "${BENCH_FRAME_PASSES:-3}" \
  --orthanc-breakdown "${BENCH_ORTHANC_BREAKDOWN:-50}"
cp "$work/results.json" "${BENCH_RESULTS:-/tmp/bench-dicomweb-results.json}"
echo
echo "results: ${BENCH_RESULTS:-/tmp/bench-dicomweb-results.json}"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "total: $(( $(date +%s) - t0 )) s"
