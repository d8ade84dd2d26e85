#!/usr/bin/env bash
# The test command: sets up the environment if needed (stage 0), then runs pytest.
# Extra arguments go to pytest, e.g. `bash local/run_tests.sh -m "not slow" -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
local/setup.sh
. ./path.sh
exec python -m pytest -ra "$@"
