#!/usr/bin/env bash
# Stage 0: make the project-local environment and check the system tools.
#
# Installs the pinned Python packages (requirements.txt) into .venv (or
# $ESPNET_PATHWAYS_VENV) and this package in editable mode; installs espeak-ng, sox
# and flac through apt-get when running as root (they are needed only to synthesise
# mini-MLS). On a ready machine it returns in about a second: a stamp records the hash
# of the requirements it installed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv=${ESPNET_PATHWAYS_VENV:-$root/.venv}
python=${PYTHON:-python3}
need_tools=${NEED_TOOLS:-true}   # false: do not require espeak-ng/sox (real MLS given)

want=$(cat "$root/requirements.txt" "$root/pyproject.toml" | sha256sum | cut -c1-16)
stamp=$venv/.espnet_pathways_stamp
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "setup: environment $venv is ready"
else
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        echo "setup: $python is missing or older than Python 3.10; set PYTHON=/path/to/python3.10+" >&2
        exit 1
    fi
    echo "setup: installing pinned packages into $venv (first time: ~6 min, ~7.5 GB)"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    # pip 25+ refuses ESPnet's dependency ci_sdr (a direct-URL extra); 23.2.1 is measured to work.
    "$venv/bin/python" -m pip install -q 'pip==23.2.1'
    "$venv/bin/python" -m pip install -q -r "$root/requirements.txt"
    "$venv/bin/python" -m pip install -q --no-deps -e "$root"
    echo "$want" > "$stamp"
    echo "setup: environment ready"
fi

missing=""
for tool in espeak-ng sox flac; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ] && [ "$need_tools" = true ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing$missing with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox libsox-fmt-all flac >/dev/null
    else
        echo "setup: missing$missing (needed to synthesise mini-MLS); install with: sudo apt-get install espeak-ng sox libsox-fmt-all flac" >&2
        exit 1
    fi
fi
echo "setup: system tools ok"
