# Dual-mode stages 22-24 of run.sh (sourced at its end, after local/plugin_stages.sh).
#
# One supernet holds a sparse streaming model (θ ⊙ m) and a dense full-context model (θ)
# (pathways mode dual_mode, espnet_pathways/modes/dual.py). Every system of training seed k
# lives in $dual_dir/seed<k>/<system>/ ($dual_dir defaults to $expdir/dual):
#   train.yaml, train/            generated config and training run
#   system.json                   what the report needs to describe the row
#   export/{sparse_streaming,dense_full}/   stock ESPnet model dirs (supernets, stage 23)
#   eval_<model>_<mode>/          decode/<l>_test/ (+ timing.json), RESULTS.md, results.json
#   failed/<step>                 one file per failed step, holding its log path
# The stage-11 dense model is decoded both ways once, in $dual_dir/dense/. The separately
# pruned sparse streaming baseline is the plugin stages' LAP (<plugin_dir>/seed<k>/lap).
# A finished step is skipped on a re-run; a failed one is retried.
#
# shellcheck shell=bash disable=SC2154

dual_root=${dual_dir:-$expdir/dual}
[ -n "$dual_epochs" ] || dual_epochs=$plugin_epochs

dual_train() {  # dual_train SYSTEM: one training run of a dual-mode system (see --help)
    local sys=$1 dir=$dual_root/seed$pseed/$1 entry cfg epochs init=() t n
    case $sys in
        supernet|supernet_scratch|full_only|stream_only) ;;
        *) echo "$0: unknown dual system $sys" >&2; return 1 ;;
    esac
    epochs=$dual_epochs; [ "$sys" = supernet_scratch ] && epochs=$scratch_epochs
    [ "$sys" = supernet_scratch ] || init=(--init_param "$dense_model")
    mkdir -p "$dir"
    if [ -f "$dir/train/$inference_model" ]; then echo "  $sys: trained already (skipped)"; step_clear "$dir" train; return 0; fi
    case $sys in
        supernet|supernet_scratch)
            # the pruning schedule spreads over the run as the plugin stages' over one epoch
            t=$((prune_interval * epochs)); n=$((rerank_interval * epochs))
            $python local/pathways_config.py --base "$train_config" --out "$dir/train.yaml" mode=dual_mode \
                "languages=[${plugin_langs// /, }]" schedule=cubic final_sparsity="$target_sparsity" \
                prune_interval=$t num_rounds="$prune_rounds" rerank_interval=$n \
                dual_mode.policy="$dual_policy" dual_mode.distill_weight="$dual_distill"
            entry=espnet_pathways.bin.pathways_train ;;
        full_only)  # the same model with full context only: dynamic chunk training off (non-causal convolutions)
            $python local/pathways_config.py --base "$train_config" --out "$dir/train.yaml" \
                --set encoder_conf.main_conf.dynamic_chunk_training=false
            entry=espnet_pathways.bin.asr_transducer_train ;;
        stream_only)  # the stage-11 streaming training, continued as long as the supernet
            $python local/pathways_config.py --base "$train_config" --out "$dir/train.yaml"
            entry=espnet_pathways.bin.asr_transducer_train ;;
    esac
    echo "  $sys: training ($epochs epochs), log: $dir/train/train.log"
    mkdir -p "$dir/train"
    # shellcheck disable=SC2086
    if $python -m $entry "${train_common_args[@]}" --seed "$pseed" --config "$dir/train.yaml" "${init[@]}" \
        --max_epoch "$epochs" --output_dir "$dir/train" $plugin_train_args >> "$dir/train/train.log" 2>&1 \
        && [ -f "$dir/train/$inference_model" ]; then
        step_clear "$dir" train; echo "  $sys: done"
    else
        step_failed "$dir" train "$dir/train/train.log"; return 1
    fi
}

dual_cells() {  # dual_cells SYSTEM: "model mode run_dir model_file" lines of the cells to decode
    local sys=$1 dir=$dual_root/seed$pseed/$1
    case $sys in
        supernet|supernet_scratch)
            for m in sparse dense; do
                x=$dir/export/sparse_streaming; [ $m = dense ] && x=$dir/export/dense_full
                for mode in streaming full; do echo "$m $mode $x $x/model.pth"; done
            done ;;
        full_only) echo "dense full $dir/train $dir/train/$inference_model" ;;
        stream_only) echo "dense streaming $dir/train $dir/train/$inference_model" ;;
    esac
}

if [ "$stop_stage" -ge 22 ] && [ "$stage" -le 23 ] && [ ! -f "$dense_model" ]; then
    echo "$0: dual-mode stages 22-23 start from the dense model $dense_model: run stages 10-11 first" >&2; exit 1
fi

for pseed in $seeds; do
    if run_stage 22 "seed $pseed: dual-mode training ($dual_systems) -> $dual_root/seed$pseed/"; then
        for sys in $dual_systems; do dual_train "$sys" || true; done
        end_stage 22
    fi
    if run_stage 23 "seed $pseed: export the supernets' two models, decode every cell (stock ESPnet inference), score"; then
        cells=()
        for sys in $dual_systems; do
            dir=$dual_root/seed$pseed/$sys
            [ -f "$dir/train/$inference_model" ] || { step_failed "$dir" decode "$dir/train/train.log (not trained)"; continue; }
            if [[ $sys == supernet* ]] && [ ! -f "$dir/export/dense_full/model.pth" ]; then
                $python -m espnet_pathways.bin.export_dual --exp "$dir/train" --out "$dir/export" \
                    --calib_data "$dump/raw/train/wav.scp" --calib_batches "$dual_calib_batches" --seed "$pseed" \
                    > "$dir/export.log" 2>&1 && step_clear "$dir" export || { step_failed "$dir" export "$dir/export.log"; continue; }
            fi
            while read -r c; do cells+=("$dir $c"); done < <(dual_cells "$sys")
        done
        dense_dir=$dual_root/dense  # the stage-11 model, decoded both ways once for every seed
        mkdir -p "$dense_dir"
        cells+=("$dense_dir dense streaming $asr_exp $dense_model" "$dense_dir dense full $asr_exp $dense_model")
        decode_cells "$dual_root/seed$pseed/decode_jobs" "${cells[@]}"
        end_stage 23
    fi
done

if run_stage 24 "dual-mode report -> $dual_root/RESULTS.md"; then
    # shellcheck disable=SC2086
    $python local/dual_report.py --dual_dir "$dual_root" --pw_dir "$pw_root" --dense "$asr_exp" --langs $plugin_langs \
        --seeds $seeds --systems $dual_systems --data_dir "$dump/raw" --target_sparsity "$target_sparsity" \
        --decoder "$decoder" || pw_failed=1
    end_stage 24
fi
