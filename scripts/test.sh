#!/usr/bin/env bash
# Installs everything and runs the test suite. Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
export TF_CPP_MIN_LOG_LEVEL=2
python3 -m pytest -q "$@"
