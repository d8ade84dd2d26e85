#!/usr/bin/env bash
# The GPU rows of bench/RESULTS.md in one prepared call on the offline GPU machine (issue 13, item 5):
#
#   bash bench/gpu_rows.sh OUT_DIR [BUDGET_SECONDS]      # e.g. run(command="bash bench/gpu_rows.sh $OUT 540")
#
# 1. bench/masked_step.py --size 70m --device cuda: the pathway-safe step (swap + region step,
#    gradient in place or as a copy, the guard) against dense, step time and peak CUDA memory;
# 2. bench/mask_events.py --sizes 70M 190M --device cuda: one Dynamic Pathways event;
# 3. bench/decoding.py --device cuda: the batched decoder against ESPnet's one-at-a-time decoder
#    (needs espeak-ng from .debs/ to synthesise its test set; skipped with a line otherwise).
# Each part writes OUT_DIR/<part>.md (its table) and OUT_DIR/<part>.log; a part that does not
# fit in what is left of BUDGET_SECONDS (default 540) is skipped with a line in OUT_DIR/summary.txt.
# ESPnet and the packages the machine lacks come from .whl/ (local/gpu_env.sh, as for
# local/offline_gpu_run.sh); on a machine that has them, nothing is installed.
set -uo pipefail
out=${1:?usage: bench/gpu_rows.sh OUT_DIR [BUDGET_SECONDS]}; budget=${2:-540}
root=$(cd "$(dirname "$0")/.." && pwd); cd "$root" || exit 1
mkdir -p "$out"
t0=$SECONDS
summary=$out/summary.txt; : > "$summary"
note() { echo "[$((SECONDS - t0))s] $*" | tee -a "$summary"; }

python3 -c "import espnet" 2>/dev/null || . local/gpu_env.sh
if ! python3 -c "import torch" 2>/dev/null; then note "python3 has no torch: nothing to measure"; exit 1; fi
if ! python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    note "no CUDA device: nothing to measure"; exit 1
fi
note "$(python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))')"

part() {  # part NAME SECONDS_NEEDED COMMAND...: run one benchmark if it fits in the budget
    local name=$1 need=$2; shift 2
    local left=$((budget - (SECONDS - t0)))
    if [ "$left" -lt "$need" ]; then note "$name: skipped ($left s left, needs ~$need s)"; return; fi
    note "$name: $*"
    if timeout "$left" "$@" > "$out/$name.md" 2> "$out/$name.log"; then note "$name: done"
    else note "$name: FAILED (exit $?), see $name.log"; fi
}

part masked_step_70m 150 python3 bench/masked_step.py --size 70m --device cuda --batch 16 --seconds 8 --rounds 5 \
    --variants swap swap+region swap+copy swap+guard
part mask_events 180 python3 bench/mask_events.py --sizes 70M 190M --scopes tensor global --repeats 2 --device cuda
if command -v espeak-ng > /dev/null; then
    part decoding 150 python3 bench/decoding.py --device cuda --utts 10 --batch_utts 25 --batch_sizes 8 32
else
    note "decoding: skipped (no espeak-ng to synthesise the test set: put its .debs in .debs/)"
fi
note "total $((SECONDS - t0)) s"
