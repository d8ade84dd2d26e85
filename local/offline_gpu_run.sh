#!/usr/bin/env bash
# Run the recipe on an offline GPU machine in time-boxed chunks (each call a fresh machine).
#
#   local/offline_gpu_run.sh OUT_DIR BUDGET_SECONDS [run.sh options...]
#
# The machine has Python with torch/torchaudio but no ESPnet, no espeak-ng/sox and no
# network. It needs, in the working tree: .whl/ (ESPnet and the packages the machine
# lacks, as wheels for its Python) and .debs/ (espeak-ng, sox and their libraries).
# Each call synthesises the corpus again (same seed: the same audio), restores what an
# earlier call left in .gpu/carry/ (statistics, tokens, a bfloat16 training checkpoint),
# trains until BUDGET_SECONDS minus RESERVE (default 45 s) have passed since the start,
# decodes if training finished, and writes to OUT_DIR what the next call needs.
set -euo pipefail
out=$1; budget=$2; shift 2
reserve=${RESERVE:-45}
root=$(cd "$(dirname "$0")/.." && pwd); cd "$root"
mkdir -p "$out"
t0=$SECONDS
log() { echo "[$((SECONDS - t0))s] $*"; }

. local/gpu_env.sh
log "environment ready: $(python3 -c 'import torch, espnet; print("torch", torch.__version__, "espnet", espnet.__version__, "cuda", torch.cuda.is_available())')"

# run.sh options we need to know here
expdir=exp; tag=
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in --expdir) expdir=${args[i+1]} ;; --tag) tag=${args[i+1]} ;; --train_config) cfg=${args[i+1]} ;; esac
done
[ -n "$tag" ] || tag=$(basename "${cfg%.*}")
asr_exp=$expdir/asr_$tag

if [ -d .gpu/carry ]; then
    tar -xzf .gpu/carry/state.tgz
    python3 local/checkpoint_transfer.py unpack .gpu/carry "$asr_exp"
    log "restored state of an earlier call"
fi

./run.sh --stage 1 --stop_stage 10 "$@" 2>&1 | tee "$out/prep.log"
log "data, tokens and statistics ready"
train_seconds=$((budget - (SECONDS - t0) - reserve))
log "training for at most ${train_seconds}s"
timeout --signal=TERM "$train_seconds" ./run.sh --stage 11 --stop_stage 11 "$@" 2>&1 | tee "$out/train_progress.log" || true
log "training stopped"
cp "$asr_exp/train.log" "$out/train.log" 2>/dev/null || true

if [ -f "$asr_exp/valid.loss.ave.pth" ]; then
    ./run.sh --stage 12 --stop_stage 13 "$@" 2>&1 | tee "$out/decode.log"
    cp "$asr_exp/RESULTS.md" "$asr_exp/results.json" "$out/"
    python3 - "$asr_exp" "$out" <<'PY'
import sys, torch
exp, out = sys.argv[1:]
state = torch.load(f"{exp}/valid.loss.ave.pth", map_location="cpu")
torch.save({k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state.items()},
           f"{out}/model_bf16.pth")
PY
    log "decoded and scored"
fi
if [ -f "$asr_exp/checkpoint.pth" ]; then
    python3 local/checkpoint_transfer.py pack "$asr_exp" "$out"
fi
stats=$(ls -d "$expdir"/asr_stats_* | head -1)
tar -czf "$out/state.tgz" "$stats" data/token_list "$asr_exp/config.yaml" "$asr_exp/train.log" 2>/dev/null || true
log "packed $(du -sh "$out" | cut -f1) into $out"
