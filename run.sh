#!/usr/bin/env bash
# The main job end to end on the built-in synthetic world: ./run.sh [--workdir DIR]
source "$(dirname "$0")/scripts/venv.sh"
cd "$ROOT"
exec ranker run "$@"
