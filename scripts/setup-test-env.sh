#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (idempotent):
# - Debian: HTJ2K / JPEG 2000 reference codecs (OpenJPH, OpenJPEG), PostgreSQL 15 server binaries.
# - Python virtualenv at .venv with boto3, awscli, pydicom (+ test data wheels) and HTJ2K oracles.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ojph_compress >/dev/null 2>&1 || need_apt+=(openjph-tools)
command -v opj_decompress >/dev/null 2>&1 || need_apt+=(libopenjp2-tools)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing Debian packages: ${need_apt[*]} (run as root or install them)" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.lightbox-deps-v3
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check \
    'boto3>=1.40' 'awscli>=1.40' 'pydicom==3.0.2' 'pydicom-data==1.0.0' numpy \
    'imagecodecs' 'pylibjpeg>=2' 'pylibjpeg-openjpeg>=2.4' 'pylibjpeg-libjpeg>=2.3' pillow pytest 'dicomweb-client>=0.59'
  touch "$stamp"
fi
echo "test environment ready: $(.venv/bin/python --version), ojph $(command -v ojph_compress), opj $(command -v opj_decompress)"
