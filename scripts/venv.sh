# Sourced by run.sh and test.sh: creates .venv with the pinned stack once, then activates it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3.11}"
STAMP="$VENV/.installed-$(cat "$ROOT/setup.py" "${BASH_SOURCE[0]}" | cksum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ]; then
  echo "setting up $VENV (first run installs the pinned stack, about 2 minutes)" >&2
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip wheel setuptools
  # aws and dask: the s3:// test and the DaskRunner byte-identity test run in CI
  "$VENV/bin/pip" install --quiet -e "$ROOT[test,aws,dask]"
  rm -f "$VENV"/.installed-*
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
