# Sparse-sharing SSL stages 25-28 of run.sh (sourced at its end, after local/dual_stages.sh):
# self-supervised pre-training of the transducer's own encoder (espnet_pathways.ssl), then
# per-language sub-networks of it, then pre-training that shares them.
#   $ssl_dir/targets/          k-means frame targets (local/ssl_targets.py), stage 25
#   $ssl_dir/ssl_dense/        dense multilingual SSL pre-training (the "standard XLSR" baseline), stage 26
#   $ssl_dir/ssl_dense_it1/, targets_layer<k>/  with --ssl_second_iter_layer k: the first iteration and the
#                              second iteration's targets (ssl_dense/ is then the second iteration), stage 26
#   $ssl_dir/ssl_imp/train_<l>/  per-language masks: monolingual IMP on the SSL loss, stage 27 (ssl_lth/: --ssl_mask_mode lth)
#   $ssl_dir/ssl_shared/       sparse-sharing pre-training (mode pathways with those masks), stage 28
#   $ssl_dir/ft_data/          the labelled fine-tuning subset (--ssl_ft_subset), stage 29
#   $ssl_dir/seed<k>/<system>/ fine-tuning into the streaming transducer, one dir per --ssl_ft_systems
#                              entry and training seed: train.yaml, train/, eval_<model>_streaming/, stages 29-30
#   $ssl_dir/RESULTS.md        the report, stage 31
# ($ssl_dir defaults to $expdir/ssl.) Pre-training runs once (--seed); fine-tuning once per --seeds.
# A finished step is skipped on a re-run; a failed one is marked in <dir>/failed/ and retried.
#
# shellcheck shell=bash disable=SC2154

ssl_root=${ssl_dir:-$expdir/ssl}
ssl_mfcc_targets=$ssl_root/targets
ssl_targets=$ssl_mfcc_targets  # the targets the dense SSL model (and stages 27-28) train on
[ "$ssl_second_iter_layer" -gt 0 ] && ssl_targets=$ssl_root/targets_layer$ssl_second_iter_layer
ssl_failed=0

ssl_config_file() {  # the SSL config: --train_config's frontend and encoder + ssl_conf, no SpecAugment
    $python local/pathways_config.py --base "$train_config" --out "$ssl_root/ssl.yaml" --set specaug=null \
        --set ssl_conf.final_dim=256 --set ssl_conf.chunk_size=null --set ssl_conf.masking_conf.mask_prob=0.65 \
        --set ssl_conf.masking_conf.mask_length=5
}

ssl_use_targets() {  # ssl_use_targets DIR: ESPnet arguments of the SSL runs that follow: audio + DIR's frame
    # targets (text_int), the cluster ids as tokens
    local t=$1
    ssl_cur_targets=$t
    ssl_common_args=(--use_preprocessor false --token_list "$t/tokens.txt" --ngpu "$ngpu"
        --normalize global_mvn --normalize_conf "stats_file=$stats_dir/train/feats_stats.npz"
        --train_data_path_and_name_and_type "$dump/raw/train/wav.scp,speech,sound"
        --train_data_path_and_name_and_type "$t/train/text,text,text_int"
        --valid_data_path_and_name_and_type "$dump/raw/dev/wav.scp,speech,sound"
        --valid_data_path_and_name_and_type "$t/dev/text,text,text_int"
        --train_shape_file "$stats_dir/train/speech_shape" --train_shape_file "$t/train/text_shape"
        --valid_shape_file "$stats_dir/valid/speech_shape" --valid_shape_file "$t/dev/text_shape"
        --fold_length 80000 --fold_length 400 --resume true --seed "$seed" "${ddp_args[@]}")
}
ssl_use_targets "$ssl_targets"

ssl_train_run() {  # ssl_train_run DIR CONFIG EPOCHS [ARGS...]: one SSL training run into DIR
    local dir=$1 cfg=$2 epochs=$3 was; shift 3
    # which targets a run trained on ($dir/targets): a run of the other iteration's is not reused
    was=$(cat "$dir/targets" 2>/dev/null) || was=
    if [ -n "$was" ] && [ "$was" != "${ssl_cur_targets##*/}" ]; then
        echo "  $dir: trained on $was, not ${ssl_cur_targets##*/} (--ssl_second_iter_layer changed? remove it or use another --ssl_dir)" >&2
        ssl_failed=1; return 1
    fi
    if [ -f "$dir/$inference_model" ]; then echo "  $dir: trained already (skipped)"; return 0; fi
    mkdir -p "$dir"
    echo "${ssl_cur_targets##*/}" > "$dir/targets"
    echo "  $dir: training ($epochs epochs), log: $dir/train.log"
    if $python -m espnet_pathways.bin.ssl_train "${ssl_common_args[@]}" --config "$cfg" --max_epoch "$epochs" \
        --output_dir "$dir" "$@" >> "$dir/train.log" 2>&1 && [ -f "$dir/$inference_model" ]; then
        echo "  $dir: done"
    else
        echo "  $dir: FAILED, see $dir/train.log" >&2; ssl_failed=1; return 1
    fi
}

if run_stage 25 "SSL targets: MFCC k-means (k=$ssl_k) over all languages -> $ssl_mfcc_targets"; then
    mkdir -p "$ssl_root"; ssl_config_file
    if [ -f "$ssl_mfcc_targets/dev/text" ]; then echo "  $ssl_mfcc_targets exists: skipped"
    else
        $python local/ssl_targets.py --config "$ssl_root/ssl.yaml" --sets "$dump/raw/train" "$dump/raw/dev" \
            --out "$ssl_mfcc_targets" --k "$ssl_k" --seed "$seed" || exit 1
    fi
    end_stage 25
fi

ssl_iter2_targets() {  # HuBERT's second iteration: k-means on encoder block k of the first iteration's model
    local it1=$ssl_root/ssl_dense_it1/$inference_model
    if [ -f "$ssl_targets/dev/text" ]; then echo "  $ssl_targets exists: skipped"; return 0; fi
    [ -f "$it1" ] || return 1
    echo "  targets of iteration 2: k-means (k=$ssl_k) on block $ssl_second_iter_layer of $it1 -> $ssl_targets"
    $python local/ssl_targets.py --config "$ssl_root/ssl.yaml" --sets "$dump/raw/train" "$dump/raw/dev" \
        --out "$ssl_targets" --k "$ssl_k" --seed "$seed" --feature "layer$ssl_second_iter_layer" --ssl_model "$it1"
}

if run_stage 26 "dense multilingual SSL pre-training ($ssl_epochs epochs$([ "$ssl_second_iter_layer" -gt 0 ] && echo \
        ", 2 iterations: MFCC targets, then block $ssl_second_iter_layer's")) -> $ssl_root/ssl_dense"; then
    ssl_config_file
    if [ "$ssl_second_iter_layer" -gt 0 ]; then
        # iteration 1 on the MFCC targets; iteration 2 from scratch on its block's k-means targets
        ssl_use_targets "$ssl_mfcc_targets"
        ssl_train_run "$ssl_root/ssl_dense_it1" "$ssl_root/ssl.yaml" "$ssl_epochs" || true
        ssl_use_targets "$ssl_targets"
        if ssl_iter2_targets; then
            ssl_train_run "$ssl_root/ssl_dense" "$ssl_root/ssl.yaml" "$ssl_epochs" || true
        else
            echo "  $ssl_targets: FAILED (iteration 1 missing or k-means failed)" >&2; ssl_failed=1
        fi
    else
        ssl_train_run "$ssl_root/ssl_dense" "$ssl_root/ssl.yaml" "$ssl_epochs" || true
    fi
    end_stage 26
fi

# Once stage 28 has trained through merged masks, those masks are its record: stages 27-28 leave
# them alone (re-pruning or re-merging would pair the model with masks it was not trained with).
# This is also what lets a later session start from pre-trained models restored from a results
# set (local/save_results.py restore_ssl) without the per-language IMP runs.
ssl_shared_done() { [ -f "$ssl_root/ssl_shared/train/$inference_model" ] && [ -f "$ssl_root/ssl_shared/init_masks.pt" ]; }
# what stage 28 records in ssl_shared/masks_from: the stage-27 options and the targets of the dense SSL model
ssl_masks_id="mode=$ssl_mask_mode sparsity=$ssl_sparsity targets=${ssl_targets##*/}"
ssl_shared_other() {  # status 0 (and a one-line error) when ssl_shared/ holds masks of other options
    local was
    was=$(cat "$ssl_root/ssl_shared/masks_from" 2>/dev/null) || return 1
    [ "$was" != "$ssl_masks_id" ] || return 1
    echo "  $ssl_root/ssl_shared: its masks are from '$was', not '$ssl_masks_id' (remove it or use another --ssl_dir)" >&2
    ssl_failed=1
}

ssl_masks_dir=$ssl_root/ssl_$ssl_mask_mode  # stage 27's runs: ssl_imp/ or ssl_lth/
if run_stage 27 "per-language masks: monolingual ${ssl_mask_mode^^} on the SSL loss to $ssl_sparsity -> $ssl_masks_dir/train_<l>"; then
    if ssl_shared_other; then :
    elif ssl_shared_done; then echo "  $ssl_root/ssl_shared is trained already with merged masks: per-language pruning skipped"
    else
        for l in $plugin_langs; do
            share=$(lang_share "$l"); t=$(scaled "$prune_interval" "$share" 2)
            cfg=$ssl_masks_dir/train_$l.yaml
            # shellcheck disable=SC2046
            $python local/pathways_config.py --base "$ssl_root/ssl.yaml" --out "$cfg" "mode=$ssl_mask_mode" \
                "languages=[$l]" $(schedule_keys "$(ssl_sparsity_of "$l")" "$t")
            ssl_train_run "$ssl_masks_dir/train_$l" "$cfg" "$plugin_epochs" \
                --init_param "$ssl_root/ssl_dense/$inference_model" || true
        done
    fi
    end_stage 27
fi

if run_stage 28 "sparse-sharing SSL pre-training ($ssl_share_epochs epochs, the per-language masks) -> $ssl_root/ssl_shared"; then
    pairs=()
    for l in $plugin_langs; do pairs+=("$l=$ssl_masks_dir/train_$l"); done
    mkdir -p "$ssl_root/ssl_shared"
    if ssl_shared_other; then :
    elif ssl_shared_done; then echo "  $ssl_root/ssl_shared/train: trained already (skipped, masks kept)"
    elif $python -m espnet_pathways.bin.merge_masks --out "$ssl_root/ssl_shared/init_masks.pt" "${pairs[@]}" \
        > "$ssl_root/ssl_shared/merge_masks.log" 2>&1; then
        echo "$ssl_masks_id" > "$ssl_root/ssl_shared/masks_from"
        $python local/pathways_config.py --base "$ssl_root/ssl.yaml" --out "$ssl_root/ssl_shared/train.yaml" \
            mode=pathways "languages=[${plugin_langs// /, }]" "init_masks=$ssl_root/ssl_shared/init_masks.pt"
        ssl_train_run "$ssl_root/ssl_shared/train" "$ssl_root/ssl_shared/train.yaml" "$ssl_share_epochs" \
            --init_param "$ssl_root/ssl_dense/$inference_model" || true
    else
        echo "  ssl_shared: merging the masks FAILED (run stage 27 first), see $ssl_root/ssl_shared/merge_masks.log" >&2
        ssl_failed=1
    fi
    end_stage 28
fi

# ---------------------------------------------------------------- fine-tuning (stages 29-31)
ssl_ft_data=$ssl_root/ft_data
ssl_ft_init() {  # ssl_ft_init SYSTEM: the pre-trained model whose encoder SYSTEM starts from ("" = none)
    case $1 in
        no_pretrain) echo "" ;;
        dense_ssl|lang_embedding|adapters) echo "$ssl_root/ssl_dense/$inference_model" ;;
        shared_ssl|shared_ssl_pathways) echo "$ssl_root/ssl_shared/train/$inference_model" ;;
    esac
}
ssl_ft_args() {  # ssl_ft_args: the transducer's ESPnet arguments, trained on the labelled subset only
    local a
    for a in "${train_common_args[@]}"; do
        case $a in
            "$stats_dir/train/speech_shape") echo "$ssl_ft_data/speech_shape" ;;
            "$stats_dir/train/text_shape.$token_tag") echo "$ssl_ft_data/text_shape.$token_tag" ;;
            *) echo "$a" ;;
        esac
    done
}
ssl_ft_train() {  # ssl_ft_train SYSTEM: one fine-tuning run into $ssl_root/seed$pseed/SYSTEM/train
    local sys=$1 dir=$ssl_root/seed$pseed/$1 init cfg items=() sets=() args=()
    init=$(ssl_ft_init "$sys")
    if [ -f "$dir/train/$inference_model" ]; then echo "  $sys: trained already (skipped)"; step_clear "$dir" train; return 0; fi
    if [ -n "$init" ] && [ ! -f "$init" ]; then step_failed "$dir" train "$init (missing: run stages 26-28 first)"; return 1; fi
    case $sys in
        shared_ssl_pathways) items=(mode=pathways "languages=[${plugin_langs// /, }]" "init_masks=$ssl_root/ssl_shared/init_masks.pt"
                                    "prunable={prefixes: [encoder.]}") ;;
        lang_embedding) sets=(--set lang_adapt_conf.type=embedding --set "lang_adapt_conf.languages=[${plugin_langs// /, }]") ;;
        adapters) sets=(--set lang_adapt_conf.type=adapter --set "lang_adapt_conf.languages=[${plugin_langs// /, }]"
                        --set "lang_adapt_conf.bottleneck=$ssl_adapter_dim") ;;
    esac
    mkdir -p "$dir/train"
    cfg=$dir/train.yaml
    $python local/pathways_config.py --base "$train_config" --out "$cfg" "${sets[@]}" "${items[@]}"
    mapfile -t args < <(ssl_ft_args)
    [ -n "$init" ] && args+=(--init_param "$init:encoder:encoder")
    echo "  $sys: fine-tuning ($ssl_ft_epochs epochs${init:+, encoder from $init}), log: $dir/train/train.log"
    if $python -m espnet_pathways.bin.pathways_train "${args[@]}" --seed "$pseed" --config "$cfg" \
        --max_epoch "$ssl_ft_epochs" --output_dir "$dir/train" >> "$dir/train/train.log" 2>&1 \
        && [ -f "$dir/train/$inference_model" ]; then
        step_clear "$dir" train; echo "  $sys: done"
    else
        step_failed "$dir" train "$dir/train/train.log"; return 1
    fi
}

if run_stage 29 "fine-tuning subset ($ssl_ft_subset) and fine-tuning ($ssl_ft_systems) -> $ssl_root/seed<k>/"; then
    if ! $python local/ft_subset.py --mls_root "${mls_root:-$corpus_dir}" --langs $plugin_langs --subset "$ssl_ft_subset" \
        --shape_dir "$stats_dir/train" --token_tag "$token_tag" --out "$ssl_ft_data"; then
        echo "$0: stage 29: no fine-tuning subset" >&2; exit 1
    fi
    for pseed in $seeds; do
        for sys in $ssl_ft_systems; do ssl_ft_train "$sys" || ssl_failed=1; done
    done
    end_stage 29
fi

if run_stage 30 "decode (streaming, batched decoder) and score the fine-tuned systems ($ssl_ft_systems)"; then
    # Every system with the batched decoder (ESPnet's search, the same hypotheses): the embedding
    # and adapter systems' modules are not stock ESPnet, and one decoder keeps the rows comparable.
    stage_decoder=$decoder stage_desc=$decoder_desc
    decoder=batched decoder_desc="espnet_pathways.bin.batch_inference (ESPnet's search, batched)"
    for pseed in $seeds; do
        cells=()
        for sys in $ssl_ft_systems; do
            dir=$ssl_root/seed$pseed/$sys
            [ -f "$dir/train/$inference_model" ] || { step_failed "$dir" decode "$dir/train/train.log (not trained)"; ssl_failed=1; continue; }
            m=dense; [ -f "$dir/train/masks.pt" ] && m=pathway  # pathways: each language's θ ⊙ m_l exported
            cells+=("$dir $m streaming $dir/train $dir/train/$inference_model")
        done
        [ ${#cells[@]} -gt 0 ] && decode_cells "$ssl_root/seed$pseed/decode_jobs" "${cells[@]}"
    done
    decoder=$stage_decoder decoder_desc=$stage_desc
    end_stage 30
fi

if run_stage 31 "sparse-sharing SSL report -> $ssl_root/RESULTS.md"; then
    # shellcheck disable=SC2086
    $python local/ssl_report.py --ssl_dir "$ssl_root" --langs $plugin_langs --seeds $seeds --systems $ssl_ft_systems \
        --shape_file "$stats_dir/train/speech_shape" || ssl_failed=1
    end_stage 31
fi

[ "$ssl_failed" = 0 ] || pw_failed=1
