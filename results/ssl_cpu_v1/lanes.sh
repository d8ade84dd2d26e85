#!/usr/bin/env bash
# Sparse-sharing SSL stages 25-31 on full mini-MLS on the 2-core CPU machine, in two lanes where
# runs do not depend on each other: bash results/ssl_cpu_v1/lanes.sh "SEEDS" (default "0").
# Needs stages 0-10 (./run.sh --stage 0 --stop_stage 10 --tag cpu_exp16), and, to skip pre-training,
# local/save_results.py restore_ssl --src results/ssl_cpu_v1 --ssl_dir exp/ssl_v1. Every step is resumable:
# a re-run skips finished runs and ESPnet --resume continues a run from its last epoch checkpoint,
# so the script can be started again after a session ends. Pre-training (stages 25-28) runs once;
# fine-tuning (stage 29) once per seed. Step times: exp/ssl_v1/lanes/times.
# Expected on an idle 2-core machine (measured 2026-12-03 beside other runs, so an upper bound):
# stage 26 ~50 min, 27 ~20 min, 28 ~30 min, stage 29 ~1 h 45 min per seed (6 systems x 8 epochs
# on the 10h subset), 30 ~10 min per seed.
set -u
seeds=${1:-0}
cd "$(dirname "$0")/../.."
C=(--tag cpu_exp16 --decoder batched --ssl_dir exp/ssl_v1)
L=exp/ssl_v1/lanes
mkdir -p $L
T=$L/times
step() {  # step NAME CMD...: one logged step; its exit status in the times file
    local name=$1 rc; shift
    echo "$(date -u +%FT%T) start $name" >> $T
    "$@" > "$L/$name.log" 2>&1; rc=$?
    echo "$(date -u +%FT%T) end $name rc=$rc" >> $T
    return $rc
}
rs() { ./run.sh "${C[@]}" "$@"; }

step targets rs --stage 25 --stop_stage 25 || exit 1
step ssl_dense rs --stage 26 --stop_stage 26 || exit 1
# per-language masks, two languages per lane (T is scaled by each language's share of the frames)
( step imp_en rs --stage 27 --stop_stage 27 --plugin_langs en; step imp_it rs --stage 27 --stop_stage 27 --plugin_langs it ) &
a=$!
( step imp_fr rs --stage 27 --stop_stage 27 --plugin_langs fr; step imp_nl rs --stage 27 --stop_stage 27 --plugin_langs nl ) &
b=$!
wait $a $b
step ssl_shared rs --stage 28 --stop_stage 28 || exit 1
# what fine-tuning starts from, for git (bf16 models + masks): a later session restores it with
# local/save_results.py restore_ssl --src results/ssl_cpu_v1 --ssl_dir exp/ssl_v1 and skips stages 26-28
step save_models .venv/bin/python local/save_results.py ssl --ssl_dir exp/ssl_v1 --out results/ssl_cpu_v1 --models
done_seeds=
for seed in $seeds; do
    step "ft_s${seed}_a" rs --stage 29 --stop_stage 29 --seeds "$seed" --ssl_ft_systems "no_pretrain dense_ssl shared_ssl" &
    a=$!
    sleep 60  # the first lane writes the labelled subset; the second finds it in place
    step "ft_s${seed}_b" rs --stage 29 --stop_stage 29 --seeds "$seed" --ssl_ft_systems "shared_ssl_pathways lang_embedding adapters"
    wait $a
    step "dec_s${seed}" rs --stage 30 --stop_stage 30 --seeds "$seed"
    done_seeds="${done_seeds:+$done_seeds }$seed"
    # the report over the seeds finished so far, and what git keeps of it (commit it as each seed ends)
    step "report_s${seed}" rs --stage 31 --stop_stage 31 --seeds "$done_seeds" &&
        step "save_s${seed}" .venv/bin/python local/save_results.py ssl --ssl_dir exp/ssl_v1 --out results/ssl_cpu_v1
done
echo "$(date -u +%FT%T) all done (seeds $seeds)" >> $T
