#!/usr/bin/env bash
# The bilingual Table 2 (fr + nl) of this results set, one seed in three lanes side by side on a
# 2-core machine: bash results/table2_cpu_v1/lanes.sh SEED (stages 0-10 and the restored dense
# model first, as in README.md). Every step is resumable: a re-run skips trained runs and resumes
# a run from its last epoch checkpoint. Step times: exp/table2_v1/lanes/times.
set -u
seed=${1:?seed}
cd "$(dirname "$0")/../.."
C=(--tag cpu_exp16 --decoder batched --mono_epochs 4 --seeds "$seed" --plugin_dir exp/table2_v1 --plugin_langs "fr nl" --init_sparsities "20 50 70")
LR="--plugin_lr 4e-4 --plugin_warmup 50"
mkdir -p exp/table2_v1/lanes; T=exp/table2_v1/lanes/times
L=exp/table2_v1/lanes
step() { local name=$1; shift; echo "$(date -u +%FT%T) start s$seed $name" >> $T; "$@" > $L/t2_s${seed}_$name.log 2>&1; echo "$(date -u +%FT%T) end s$seed $name rc=$?" >> $T; }
rs() { ./run.sh "${C[@]}" "$@"; }
# monolingual LTH at 70 / 50 / 20 per language, config rate (as the IMP runs of pathways_cpu_v4)
( step lth_fr rs --stage 14 --stop_stage 14 --systems lth --plugin_langs fr
  step lth_s50_fr rs --stage 18 --stop_stage 18 --systems lth_s50 --plugin_langs fr
  step lth_s20_fr rs --stage 18 --stop_stage 18 --systems lth_s20 --plugin_langs fr ) &
a=$!
( step lth_nl rs --stage 14 --stop_stage 14 --systems lth --plugin_langs nl
  step lth_s50_nl rs --stage 18 --stop_stage 18 --systems lth_s50 --plugin_langs nl
  step lth_s20_nl rs --stage 18 --stop_stage 18 --systems lth_s20 --plugin_langs nl ) &
b=$!
# multilingual (fr + nl) one-epoch systems at 4e-4 (the better rate for one epoch, pathways_cpu_v4)
( step lap rs --stage 15 --stop_stage 15 --systems lap $LR
  step lap_sN rs --stage 18 --stop_stage 18 --systems "lap_s50 lap_s20" $LR
  step dyn_lap rs --stage 19 --stop_stage 19 --systems "dyn_lap_s70 dyn_lap_s50 dyn_lap_s20" $LR ) &
wait $a $b
step pw_lth rs --stage 16 --stop_stage 16 --systems pathways_lth $LR
step dyn_lth rs --stage 19 --stop_stage 19 --systems "dyn_lth_s70 dyn_lth_s50 dyn_lth_s20" $LR
wait
step dec rs --stage 20 --stop_stage 20 --systems "lth lap pathways_lth dyn_lth_s70 dyn_lth_s50 dyn_lth_s20 dyn_lap_s70 dyn_lap_s50 dyn_lap_s20" $LR
echo "$(date -u +%FT%T) s$seed all done" >> $T
