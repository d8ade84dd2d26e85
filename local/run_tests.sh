#!/usr/bin/env bash
# The test command: sets up the environment if needed (stage 0), then runs pytest.
# Extra arguments go to pytest, e.g. `bash local/run_tests.sh -m "not slow" -x`.
# Two pytest-xdist workers by default (TEST_WORKERS=N to change, 0 for one process): most
# tests keep one core busy at most, and the longest ones (tests/conftest.py runs them first)
# then run beside the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
local/setup.sh
. ./path.sh
workers=${TEST_WORKERS:-2}
if [ "$workers" = 0 ]; then exec python -m pytest -ra "$@"; fi
exec python -m pytest -ra -n "$workers" --dist worksteal "$@"
