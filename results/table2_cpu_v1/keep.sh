#!/usr/bin/env bash
# Dynamic Pathways from LTH-50 with the free pool kept (--dyn_free_pool keep) against the same run
# with the poster's rule (zero), from the same LTH-50 masks, at Table 2's settings (4e-4, warm-up
# 50, n = 9, T = 47): bash results/table2_cpu_v1/keep.sh SEED... (after stages 0-10 and the
# restored dense model, as in README.md). Per seed: the LTH-50 runs for fr and nl side by side
# (into exp/table2_v1, where lanes.sh puts them: a seed of lanes.sh already there is reused),
# then both Dynamic runs side by side, then decoding. Resumable: a re-run skips trained runs.
# Step times: exp/table2_keep/times.
set -u
cd "$(dirname "$0")/../.."
C=(--tag cpu_exp16 --decoder batched --mono_epochs 4 --plugin_langs "fr nl" --init_sparsities "20 50 70")
LR=(--plugin_lr 4e-4 --plugin_warmup 50)
mkdir -p exp/table2_keep; T=exp/table2_keep/times
step() { local name=$1; shift; echo "$(date -u +%FT%T) start $name" >> $T; "$@" > "exp/table2_keep/$name.log" 2>&1; echo "$(date -u +%FT%T) end $name rc=$?" >> $T; }
for k in "$@"; do
  S=(--seeds "$k")
  step "s${k}_lth_s50_fr" ./run.sh "${C[@]}" "${S[@]}" --plugin_dir exp/table2_v1 --stage 18 --stop_stage 18 --systems lth_s50 --plugin_langs fr &
  step "s${k}_lth_s50_nl" ./run.sh "${C[@]}" "${S[@]}" --plugin_dir exp/table2_v1 --stage 18 --stop_stage 18 --systems lth_s50 --plugin_langs nl
  wait
  mkdir -p "exp/table2_keep/seed$k" && ln -sfn "../../table2_v1/seed$k/lth_s50" "exp/table2_keep/seed$k/lth_s50"
  step "s${k}_dyn_zero" ./run.sh "${C[@]}" "${S[@]}" "${LR[@]}" --plugin_dir exp/table2_v1 --stage 19 --stop_stage 19 --systems dyn_lth_s50 &
  step "s${k}_dyn_keep" ./run.sh "${C[@]}" "${S[@]}" "${LR[@]}" --plugin_dir exp/table2_keep --stage 19 --stop_stage 19 --systems dyn_lth_s50 --dyn_free_pool keep
  wait
  step "s${k}_dec_zero" ./run.sh "${C[@]}" "${S[@]}" "${LR[@]}" --plugin_dir exp/table2_v1 --stage 20 --stop_stage 20 --systems dyn_lth_s50
  step "s${k}_dec_keep" ./run.sh "${C[@]}" "${S[@]}" "${LR[@]}" --plugin_dir exp/table2_keep --stage 20 --stop_stage 20 --systems dyn_lth_s50 --dyn_free_pool keep
  echo "$(date -u +%FT%T) seed $k done" >> $T
done
