# Source me: activates the project environment made by stage 0 (local/setup.sh).
ESPNET_PATHWAYS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export ESPNET_PATHWAYS_ROOT
ESPNET_PATHWAYS_VENV=${ESPNET_PATHWAYS_VENV:-$ESPNET_PATHWAYS_ROOT/.venv}
if [ -f "$ESPNET_PATHWAYS_VENV/bin/activate" ]; then
    # shellcheck disable=SC1091
    . "$ESPNET_PATHWAYS_VENV/bin/activate"
fi
export PYTHONPATH="$ESPNET_PATHWAYS_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTHONIOENCODING=UTF-8 LC_ALL=C.UTF-8
# CPU speed (measured, DESIGN.md section 8): OpenMP threads must not spin while the
# other core is busy, and glibc must not return freed memory on every step.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
export MALLOC_MMAP_MAX_=${MALLOC_MMAP_MAX_:-0}
export MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-68719476736}
