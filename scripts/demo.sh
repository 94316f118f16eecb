#!/usr/bin/env bash
# Install (first run only) and run `trackline demo` on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/trackline demo "$@"
