#!/usr/bin/env bash
# Draws bench/results/$1.png with matplotlib from a virtualenv in the per-user cache.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${WHARF_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wharf}
venv="$cache/bench-venv"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import matplotlib" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "matplotlib>=3.8,<4" \
    || { echo "bench: pip install matplotlib failed; the table in bench/results/$1.md is still written" >&2; exit 1; }
fi
"$venv/bin/python" "$root/bench/chart.py" "$1"
