#!/usr/bin/env bash
# The test suite (the slow end-to-end tests too unless "-m 'not slow'" is passed): ./test.sh [pytest args]
source "$(dirname "$0")/scripts/venv.sh"
cd "$ROOT"
exec python -m pytest "$@"
