#!/usr/bin/env bash
# Dynamic Pathways from LTH-50 and fixed LTH-70 pathways at a learning rate and re-rank interval where
# a zeroed weight can regrow: peak lr 2e-3 (warm-up 50), n = 42 (--rerank_interval 90 scaled by fr+nl's
# share of the frames), T = 47; the LTH masks of exp/table2_v1 (seeds 0-2, lanes.sh) linked in.
# bash results/table2_cpu_v1/regrow.sh; then report and save as in README.md ("Regrowth check").
set -u
cd "$(dirname "$0")/../.."
for k in 0 1 2; do
  mkdir -p exp/table2_regrow/seed$k
  for s in lth lth_s50; do ln -sfn ../../table2_v1/seed$k/$s exp/table2_regrow/seed$k/$s; done
done
C=(--tag cpu_exp16 --decoder batched --mono_epochs 4 --plugin_dir exp/table2_regrow --plugin_langs "fr nl"
   --init_sparsities "20 50 70" --plugin_lr 2e-3 --plugin_warmup 50 --rerank_interval 90)
T=exp/table2_regrow/times
for k in 0 1 2; do
  echo "$(date -u +%FT%T) start s$k" >> $T
  ./run.sh "${C[@]}" --seeds $k --stage 19 --stop_stage 19 --systems dyn_lth_s50 > exp/table2_regrow/s${k}_dyn.log 2>&1 &
  ./run.sh "${C[@]}" --seeds $k --stage 16 --stop_stage 16 --systems pathways_lth > exp/table2_regrow/s${k}_pw.log 2>&1
  wait
  ./run.sh "${C[@]}" --seeds $k --stage 20 --stop_stage 20 --systems "pathways_lth dyn_lth_s50" > exp/table2_regrow/s${k}_dec.log 2>&1
  echo "$(date -u +%FT%T) end s$k" >> $T
done
