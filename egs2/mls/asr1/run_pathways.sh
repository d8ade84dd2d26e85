#!/usr/bin/env bash
# espnet-pathways as a drop-in for an existing ESPnet checkout.
#
# Copy or symlink this file into <espnet>/egs2/mls/asr1/ and run it there:
#
#   ESPNET_PATHWAYS=/path/to/espnet-pathways ./run_pathways.sh [run.sh options]
#
# It reuses the checkout's MLS download (the MLS path in db.sh, which ESPnet's own
# `local/data.sh` stage 0 fills) and writes everything it makes under ./pathways/, so
# ESPnet's own data/, dump/ and exp/ are left untouched. The Python environment is the
# one active in the shell (the checkout's, with ESPnet installed) unless
# ESPNET_PATHWAYS_VENV names another; stage 0 (which would make a venv) is skipped.
set -euo pipefail

if [ -z "${ESPNET_PATHWAYS:-}" ] || [ ! -x "${ESPNET_PATHWAYS}/run.sh" ]; then
    echo "run_pathways.sh: set ESPNET_PATHWAYS to an espnet-pathways checkout (holding run.sh)" >&2
    exit 1
fi
if [ ! -f db.sh ]; then
    echo "run_pathways.sh: no db.sh here; run me from <espnet>/egs2/mls/asr1" >&2
    exit 1
fi
# shellcheck disable=SC1091
. ./db.sh
if [ -z "${MLS:-}" ] || [ ! -d "${MLS}" ]; then
    echo "run_pathways.sh: MLS in db.sh is empty or not a folder ('${MLS:-}'); download MLS with ESPnet's local/data.sh stage 0 first" >&2
    exit 1
fi
export ESPNET_PATHWAYS_VENV=${ESPNET_PATHWAYS_VENV:-${VIRTUAL_ENV:-/nonexistent}}
work=$(pwd)/pathways
exec "${ESPNET_PATHWAYS}/run.sh" --stage 1 --mls_root "${MLS}" \
    --data "${work}/data" --dump "${work}/dump" --expdir "${work}/exp" "$@"
