# Plugin stages 14-21 of run.sh (sourced at its end; uses its options and helpers).
#
# Every system of training seed k (--seeds) lives in $plugin_dir/seed<k>/<system>/
# ($plugin_dir defaults to $expdir/pathways):
#   train.yaml | train_<l>.yaml   generated config = the dense train config + pathways: section
#   train/ | train_<l>/           pathways_train output dir (multilingual | one per language)
#   system.json                   what the report needs to describe the row
#   export_<l>/                   stock ESPnet model dir of language l's pathway (stage 20)
#   decode_<mode>/<l>_test/       ESPnet inference output (stage 20; stock, or batched with --decoder batched)
#   RESULTS.md, results.json      local/score.py (stage 20)
#   failed/<step>                 one file per failed step, holding its log path
# A finished step is skipped on a re-run, even if options changed (remove the system's
# dir to redo it); a failed one is retried. A failed system does
# not stop the others; run.sh exits non-zero at the end if any step failed.
#
# shellcheck shell=bash disable=SC2154

pw_root=${plugin_dir:-$expdir/pathways}
pw_dir=$pw_root/seed${seeds%% *}   # set per seed below
pseed=${seeds%% *}
[ -n "$plugin_langs" ] || plugin_langs=$langs
dense_model=$asr_exp/$inference_model
pw_failed=0
pct() { awk -v x="$1" 'BEGIN { printf "%d", x * 100 + 0.5 }'; }
target_pct=$(pct "$target_sparsity")

want() {  # want SYSTEM: is SYSTEM selected by --systems?
    [ "$systems" = all ] || [[ " $systems " == *" $1 "* ]]
}
mark_failed() {  # mark_failed SYSTEM STEP LOG
    mkdir -p "$pw_dir/$1/failed"
    echo "$3" > "$pw_dir/$1/failed/$2"
    echo "  $1: $2 FAILED, see $3" >&2
    pw_failed=1
}
clear_failed() { rm -f "$pw_dir/$1/failed/$2"; rmdir "$pw_dir/$1/failed" 2>/dev/null || true; }

system_json() {  # system_json SYSTEM STAGE KEY=VALUE...: describe the system for the report (STAGE -: refresh)
    # A per-language system's languages are every language it has a run of: the ones of this call,
    # of an earlier call (e.g. one --plugin_langs each, side by side) and of its train_<l>/ dirs,
    # in --langs order. mono_runs and dense_runs refresh it after training (STAGE -), so that runs
    # started together cannot leave only the last writer's language.
    local sys=$1 st=$2; shift 2
    mkdir -p "$pw_dir/$sys"
    $python - "$pw_dir/$sys/system.json" "$sys" "$st" "$langs" "$@" <<'EOF'
import json, os, sys, yaml
out, name, stage, order, *items = sys.argv[1:]
old = json.load(open(out)) if os.path.isfile(out) else {}
d = dict(old) if stage == "-" else {"name": name, "stage": stage}
for it in items:
    k, _, v = it.partition("=")
    d[k] = yaml.safe_load(v)
if d.get("per_language"):
    here = os.path.dirname(out)
    have = set(d.get("languages") or []) | set(old.get("languages") or [])
    have |= {e[len("train_"):] for e in os.listdir(here) if e.startswith("train_") and os.path.isdir(os.path.join(here, e))}
    order = order.split()
    d["languages"] = sorted(have, key=lambda lang: (order.index(lang) if lang in order else len(order), lang))
tmp = out + ".tmp"
open(tmp, "w").write(json.dumps(d, indent=1) + "\n")
os.replace(tmp, out)
EOF
}

lang_args() {  # lang_args DIR LANGS: train_common_args with the shape files cut to LANGS' utterances
    # (copies in DIR/shapes) -> lang_train_args.  ESPnet batches the utterances its shape files list:
    # without this, a multilingual run of mixed batches (lap) on --plugin_langs "fr nl" would get
    # batches of every language in the data.
    local a=("${train_common_args[@]}") i f
    mkdir -p "$1/shapes"; lang_train_args=()
    for ((i = 0; i < ${#a[@]}; i++)); do
        case ${a[i]} in
            --train_shape_file|--valid_shape_file)
                f=$1/shapes/${a[i]#--}.$(basename "${a[i + 1]}")
                grep -E "^(${2// /|})_" "${a[i + 1]}" > "$f" || true
                lang_train_args+=("${a[i]}" "$f"); i=$((i + 1)) ;;
            *) lang_train_args+=("${a[i]}") ;;
        esac
    done
}

pathways_train() {  # pathways_train SYSTEM RUN CONFIG [EPOCHS]: one plugin training run from the dense model
    local sys=$1 run=$2 cfg=$3 epochs=${4:-$plugin_epochs}
    local dir=$pw_dir/$sys/$run log=$pw_dir/$sys/$run/train.log  # appended to: a resumed run keeps the earlier epochs' lines
    if [ -f "$dir/$inference_model" ] && [ -f "$dir/masks.pt" ]; then
        echo "  $sys/$run: trained already (skipped)"; clear_failed "$sys" "$run"; return 0
    fi
    mkdir -p "$dir"
    echo "  $sys/$run: training, log: $log"
    lang_args "$dir" "$plugin_langs"
    if $python -m espnet_pathways.bin.pathways_train "${lang_train_args[@]}" --seed "$pseed" --config "$cfg" \
        --init_param "$dense_model" --max_epoch "$epochs" \
        --output_dir "$dir" $plugin_train_args >> "$log" 2>&1 \
        && [ -f "$dir/$inference_model" ] && [ -f "$dir/masks.pt" ]; then
        clear_failed "$sys" "$run"
        echo "  $sys/$run: done ($(grep -c 'epoch results' "$log" || true) epochs)"
    else
        mark_failed "$sys" "$run" "$log"; return 1
    fi
}

schedule_keys() {  # schedule_keys FINAL [T]: the pruning schedule shared by every scheduled system
    echo "schedule=cubic final_sparsity=$1 prune_interval=${2:-$prune_interval} num_rounds=$prune_rounds"
}

[ -n "$mono_epochs" ] || mono_epochs=$plugin_epochs  # monolingual runs (ref, imp, lth, adaptive_*, lth_sN)

# A monolingual run sees only its language's share of the training audio, so it has that
# share of a multilingual run's optimizer steps per epoch: its T (and n) are scaled by the
# share, so that every run prunes at the same points of its epochs and reaches the target.
# With --mono_epochs E, T and n are also scaled by E / --plugin_epochs: the N prunes spread
# over the longer run (local/mask_iou_sweep.py measures what the longer budget does to the masks).
lang_share() {  # lang_share "LANG...": those languages' fraction of the training frames (stage 10 shapes)
    awk -v langs="$1" 'BEGIN { k = split(langs, l, " ") }
        { n += $2; for (i = 1; i <= k; i++) if (index($1, l[i] "_") == 1) m += $2 }
        END { printf "%.6f", (n ? m / n : 1) }' "$stats_dir/train/speech_shape"
}
scaled() {  # scaled VALUE SHARE [MIN]: round(VALUE * SHARE), at least MIN (default 1)
    awk -v v="$1" -v s="$2" -v m="${3:-1}" 'BEGIN { x = int(v * s + 0.5); print (x < m ? m : x) }'
}
scaled_keys() {  # scaled_keys SHARE KEY=VALUE...: the keys with prune_interval (T, at least 2) and
    # rerank_interval (n, below T) scaled by SHARE -> keys
    local share=$1 kv t= n=; shift; keys=()
    for kv in "$@"; do
        case $kv in
            prune_interval=*) t=$(scaled "${kv#*=}" "$share" 2); keys+=("prune_interval=$t") ;;
            rerank_interval=*) n=$(scaled "${kv#*=}" "$share") ;;
            *) keys+=("$kv") ;;
        esac
    done
    if [ -n "$n" ]; then [ -z "$t" ] || [ "$n" -lt "$t" ] || n=$((t - 1)); keys+=("rerank_interval=$n"); fi
}

mono_runs() {  # mono_runs SYSTEM STAGE MODE FINAL [KEY=VALUE...]: one run per language
    local sys=$1 st=$2 mode=$3 final=$4; shift 4
    local l ok=0 share keys
    for l in $plugin_langs; do
        share=$(awk -v s="$(lang_share "$l")" -v e="$mono_epochs" -v p="$plugin_epochs" 'BEGIN { printf "%.6f", s * e / p }')
        # shellcheck disable=SC2046
        scaled_keys "$share" $(schedule_keys "$final") "$@"
        $python local/pathways_config.py --base "$train_config" --out "$pw_dir/$sys/train_$l.yaml" \
            mode="$mode" "languages=[$l]" "${keys[@]}"
        pathways_train "$sys" "train_$l" "$pw_dir/$sys/train_$l.yaml" "$mono_epochs" || ok=1
    done
    system_json "$sys" -
    return $ok
}

merged_masks() {  # merged_masks SYSTEM SRC: merge SRC's per-language masks into SYSTEM/init_masks.pt
    local sys=$1 src=$2 l pairs=()
    for l in $plugin_langs; do
        if [ ! -f "$pw_dir/$src/train_$l/masks.pt" ]; then
            mark_failed "$sys" init_masks "$pw_dir/$src/train_$l/train.log (no masks.pt: run $src first)"; return 1
        fi
        pairs+=("$l=$pw_dir/$src/train_$l")
    done
    mkdir -p "$pw_dir/$sys"
    $python -m espnet_pathways.bin.merge_masks --out "$pw_dir/$sys/init_masks.pt" "${pairs[@]}" \
        > "$pw_dir/$sys/merge_masks.log" 2>&1 || { mark_failed "$sys" init_masks "$pw_dir/$sys/merge_masks.log"; return 1; }
    clear_failed "$sys" init_masks
}

lap_masks() {  # lap_masks SYSTEM SRC: SRC's shared LAP mask as every language's mask
    local sys=$1 src=$2 l pairs=()
    if [ ! -f "$pw_dir/$src/train/masks.pt" ]; then
        mark_failed "$sys" init_masks "$pw_dir/$src/train/train.log (no masks.pt: run $src first)"; return 1
    fi
    mkdir -p "$pw_dir/$sys"
    for l in $plugin_langs; do pairs+=("$l=$pw_dir/$src/train"); done
    $python -m espnet_pathways.bin.merge_masks --out "$pw_dir/$sys/init_masks.pt" "${pairs[@]}" \
        > "$pw_dir/$sys/merge_masks.log" 2>&1 || { mark_failed "$sys" init_masks "$pw_dir/$sys/merge_masks.log"; return 1; }
    clear_failed "$sys" init_masks
}

random_masks() {  # random_masks SYSTEM: random per-language masks at the target sparsity, seeded by the run's seed
    local sys=$1
    [ -f "$pw_dir/$sys/init_masks.pt" ] && { clear_failed "$sys" init_masks; return 0; }
    mkdir -p "$pw_dir/$sys"
    # shellcheck disable=SC2086
    $python -m espnet_pathways.bin.random_masks --asr_config "$asr_exp/config.yaml" --langs $plugin_langs \
        --sparsity "$target_sparsity" --seed "$pseed" --out "$pw_dir/$sys/init_masks.pt" \
        > "$pw_dir/$sys/random_masks.log" 2>&1 || { mark_failed "$sys" init_masks "$pw_dir/$sys/random_masks.log"; return 1; }
    clear_failed "$sys" init_masks
}

multi_run() {  # multi_run SYSTEM [--epochs E] KEY=VALUE...: one multilingual run (E: default --plugin_epochs)
    # On a subset of the data's languages (--plugin_langs "fr nl"), an epoch has that subset's share
    # of the steps: T and n are scaled by it, as for the monolingual runs (unchanged on all languages).
    local sys=$1 epochs=$plugin_epochs keys; shift
    if [ "${1:-}" = --epochs ]; then epochs=$2; shift 2; fi
    scaled_keys "$(lang_share "$plugin_langs")" "$@"
    $python local/pathways_config.py --base "$train_config" --out "$pw_dir/$sys/train.yaml" \
        "languages=[${plugin_langs// /, }]" "${keys[@]}"
    pathways_train "$sys" train "$pw_dir/$sys/train.yaml" "$epochs"
}

if [ "$stop_stage" -ge 14 ] && [ "$stage" -le 19 ] && [ ! -f "$dense_model" ]; then
    echo "$0: plugin stages 14-19 start from the dense model $dense_model: run stages 10-11 first" >&2; exit 1
fi
langs_yaml="[${plugin_langs// /, }]"
# From-scratch systems (ref_scratch, dense_small) train as many epochs as a pruned system's
# weights have seen: the dense model's epochs + --plugin_epochs (unless --scratch_epochs).
if [ -z "$scratch_epochs" ]; then
    dense_epochs=$(awk '/^max_epoch:/ { print $2 }' "$asr_exp/config.yaml" 2>/dev/null || true)
    scratch_epochs=$(( ${dense_epochs:-0} + plugin_epochs ))
    # A dense run that continued another (local/continue_config.py: init_param) has seen more
    # epochs than its own max_epoch; only the user knows how many.
    dense_init=$(awk '/^init_param:/ { f = 1; next } f && /^- / { print $2; exit } { f = 0 }' "$asr_exp/config.yaml" 2>/dev/null || true)
    if [ -n "$dense_init" ] && [ "$stage" -le 15 ] && [ "$stop_stage" -ge 14 ] && [[ " $systems " =~ \ (all|ref_scratch|dense_small)\  ]]; then
        echo "$0: note: the dense model continued $dense_init, so the from-scratch systems' default of" \
             "$scratch_epochs epochs (its max_epoch $dense_epochs + --plugin_epochs $plugin_epochs) leaves out the earlier" \
             "run's epochs: set --scratch_epochs to the total" >&2
    fi
fi

dense_runs() {  # dense_runs SYSTEM: stock ESPnet dense runs (no masks), by espnet_pathways.bin.asr_transducer_train
    # (ESPnet's entry point + the loss), on the run's languages only (filtered shape files: ESPnet
    # batches the utterances its shape files list):
    #   ref          one model per language, from the dense multilingual model, --mono_epochs epochs
    #   ref_scratch  one model per language, from scratch, --scratch_epochs epochs
    #   dense_small  one multilingual model with as many parameters as a pathway (--small_config),
    #                from scratch, --scratch_epochs epochs
    local sys=$1 l dir log ok=0 args cfg epochs run_langs init
    for run_langs in $([ "$sys" = dense_small ] && echo all || echo "$plugin_langs"); do
        case $sys in
            ref) cfg=$train_config; epochs=$mono_epochs; init=(--init_param "$dense_model") ;;
            ref_scratch) cfg=$train_config; epochs=$scratch_epochs; init=() ;;
            dense_small) cfg=$small_config; epochs=$scratch_epochs; init=() ;;
        esac
        if [ "$run_langs" = all ]; then l=train; run_langs=$plugin_langs; else l=train_$run_langs; fi
        dir=$pw_dir/$sys/$l; log=$dir/train.log
        if [ -f "$dir/$inference_model" ]; then
            echo "  $sys/$l: trained already (skipped)"; clear_failed "$sys" "$l"; continue
        fi
        lang_args "$dir" "$run_langs"; args=("${lang_train_args[@]}")
        echo "  $sys/$l: training ($epochs epochs), log: $log"
        # shellcheck disable=SC2086
        if $python -m espnet_pathways.bin.asr_transducer_train "${args[@]}" --seed "$pseed" --config "$cfg" \
            "${init[@]}" --max_epoch "$epochs" --output_dir "$dir" $plugin_train_args \
            >> "$log" 2>&1 && [ -f "$dir/$inference_model" ]; then
            clear_failed "$sys" "$l"; echo "  $sys/$l: done ($(grep -c 'epoch results' "$log" || true) epochs)"
        else
            mark_failed "$sys" "$l" "$log"; ok=1
        fi
    done
    system_json "$sys" -
    return $ok
}

plugin_seed_stages() {  # stages 14-20 for training seed $pseed into $pw_dir
    mkdir -p "$pw_dir"
    if run_stage 14 "seed $pseed: monolingual dense (Ref.), IMP and LTH per language ($plugin_langs) -> $pw_dir/{ref,imp,lth}"; then
        if want ref; then
            system_json ref Ref. model=Dense mask_changes=/ sparsity=0 training=monolingual init=dense \
                languages="$langs_yaml" per_language=true epochs="$mono_epochs"
            dense_runs ref || true
        fi
        if want ref_scratch; then
            system_json ref_scratch Ref. model=Dense mask_changes=/ sparsity=0 training=monolingual init=random \
                languages="$langs_yaml" per_language=true epochs="$scratch_epochs"
            dense_runs ref_scratch || true
        fi
        for m in imp lth; do
            want $m || continue
            system_json $m 2 model="${m^^}" mask_changes=false sparsity="$target_sparsity" training=monolingual \
                init=dense languages="$langs_yaml" per_language=true epochs="$mono_epochs"
            mono_runs $m 14 $m "$target_sparsity" || true
        done
        end_stage 14
    fi

    if run_stage 15 "seed $pseed: language-agnostic pruning (LAP, and with as much training: lap_long), pathway-sized dense model, on all of $plugin_langs -> $pw_dir/{lap,lap_long,dense_small}"; then
        if want lap; then
            system_json lap 2 model=LAP mask_changes=false sparsity="$target_sparsity" training=multilingual \
                init=dense languages="$langs_yaml" per_language=false
            # shellcheck disable=SC2046
            multi_run lap mode=lap batches=mixed $(schedule_keys "$target_sparsity") || true
        fi
        if want lap_long; then
            # The training-budget control of the pathway systems: LAP with as many optimizer steps
            # as a language's monolingual runs plus its pathway epochs. The N prunes spread over
            # the first --mono_epochs multilingual epochs (T scaled by --mono_epochs / --plugin_epochs,
            # as the monolingual runs' T is), then --plugin_epochs more with the mask fixed.
            long_epochs=$((mono_epochs + plugin_epochs))
            t=$(scaled "$prune_interval" "$(awk -v e="$mono_epochs" -v p="$plugin_epochs" 'BEGIN { print e / p }')")
            system_json lap_long 2 model="LAP (as much training)" mask_changes=false sparsity="$target_sparsity" \
                training=multilingual init=dense languages="$langs_yaml" per_language=false epochs="$long_epochs"
            # shellcheck disable=SC2046
            multi_run lap_long --epochs "$long_epochs" mode=lap batches=mixed $(schedule_keys "$target_sparsity" "$t") || true
        fi
        if want dense_small; then
            system_json dense_small 1 model=Dense mask_changes=/ sparsity=0 training=multilingual init=random \
                languages="$langs_yaml" per_language=false epochs="$scratch_epochs" config="$small_config"
            dense_runs dense_small || true
        fi
        end_stage 15
    fi

    if run_stage 16 "seed $pseed: ASR Pathways from IMP, LTH and random masks -> $pw_dir/pathways_{imp,lth,random}"; then
        for src in imp lth; do
            sys=pathways_$src; want $sys || continue
            system_json $sys 3 model="ASR Pathways" mask_changes=false sparsity="$target_sparsity" \
                training=multilingual init="${src^^}-$target_pct%" languages="$langs_yaml" per_language=false
            merged_masks $sys $src && multi_run $sys mode=pathways "init_masks=$pw_dir/$sys/init_masks.pt" || true
        done
        if want pathways_random; then
            # The ASR Pathways paper's control: random language-specific masks at the target sparsity.
            sys=pathways_random
            system_json $sys 3 model="ASR Pathways" mask_changes=false sparsity="$target_sparsity" \
                training=multilingual init="random-$target_pct%" languages="$langs_yaml" per_language=false
            random_masks $sys && multi_run $sys mode=pathways "init_masks=$pw_dir/$sys/init_masks.pt" || true
        fi
        end_stage 16
    fi

    if run_stage 17 "seed $pseed: adaptive (proposed) IMP and LTH per language -> $pw_dir/adaptive_{imp,lth}"; then
        for src in imp lth; do
            sys=adaptive_$src; want $sys || continue
            rewind=false; [ $src = lth ] && rewind=true
            system_json $sys proposed model="${src^^}" mask_changes=true sparsity="$target_sparsity" \
                training=monolingual init=dense languages="$langs_yaml" per_language=true epochs="$mono_epochs"
            mono_runs $sys 17 adaptive "$target_sparsity" rerank_interval="$rerank_interval" rewind=$rewind || true
        done
        end_stage 17
    fi

    if run_stage 18 "seed $pseed: initial masks at lower sparsity ($init_sparsities%) for Dynamic Pathways -> $pw_dir/{lth,lap}_s<N>"; then
        for s in $init_sparsities; do
            [ "$s" = "$target_pct" ] && continue  # the stage 14/15 masks
            frac=$(awk -v x="$s" 'BEGIN { printf "%g", x / 100 }')
            if want "dyn_lth_s$s" || want "lth_s$s"; then
                system_json "lth_s$s" 2 model=LTH mask_changes=false sparsity="$frac" training=monolingual \
                    init=dense languages="$langs_yaml" per_language=true mask_only=true epochs="$mono_epochs"
                mono_runs "lth_s$s" 18 lth "$frac" || true
            fi
            if want "dyn_lap_s$s" || want "lap_s$s"; then
                system_json "lap_s$s" 2 model=LAP mask_changes=false sparsity="$frac" training=multilingual \
                    init=dense languages="$langs_yaml" per_language=false mask_only=true
                # shellcheck disable=SC2046
                multi_run "lap_s$s" mode=lap batches=mixed $(schedule_keys "$frac") || true
            fi
        done
        end_stage 18
    fi

    if run_stage 19 "seed $pseed: Dynamic ASR Pathways from LTH and LAP masks at $init_sparsities% -> $target_pct% ($pw_dir/dyn_*)"; then
        for s in $init_sparsities; do
            for src in lth lap; do
                sys=dyn_${src}_s$s; want "$sys" || continue
                base=${src}_s$s; [ "$s" = "$target_pct" ] && base=$src
                system_json "$sys" proposed model="Dynamic ASR Pathways" mask_changes=true sparsity="$target_sparsity" \
                    training=multilingual init="${src^^}-$s%" languages="$langs_yaml" per_language=false \
                    free_pool="$dyn_free_pool"
                if [ $src = lth ]; then merged_masks "$sys" "$base" || continue
                else lap_masks "$sys" "$base" || continue; fi
                # shellcheck disable=SC2046
                multi_run "$sys" mode=dynamic_pathways "init_masks=$pw_dir/$sys/init_masks.pt" \
                    $(schedule_keys "$target_sparsity") rerank_interval="$rerank_interval" \
                    dynamic_pathways.free_pool="$dyn_free_pool" || true
            done
        done
        end_stage 19
    fi

    if run_stage 20 "seed $pseed: decode ($decode_mode, $decoder_desc) and score every system on ${plugin_langs// /, } test sets"; then
        # Jobs (system, language) go to decode_nj processes (local/decode_pathways.py): each
        # exports the pathway to a stock ESPnet model dir and runs stock asr_transducer_inference
        # (--decoder batched: espnet_pathways.bin.batch_inference, the same search over batches).
        ddir_name=decode_${decode_mode}_$(basename "${decode_config%.*}")$decode_suffix
        jobs_dir=$pw_dir/decode_jobs; rm -rf "$jobs_dir"; mkdir -p "$jobs_dir"
        dec_systems=(); n=0
        for sdir in "$pw_dir"/*/; do
            sys=$(basename "$sdir"); sdir=${sdir%/}
            [ -f "$sdir/system.json" ] && want "$sys" || continue
            grep -q '"mask_only": true' "$sdir/system.json" && continue
            dec_systems+=("$sys")
            for l in $plugin_langs; do
                out=$sdir/$ddir_name/${l}_test
                [ -f "$out/1best_recog/text" ] && continue
                run=train; { [ -d "$sdir/train_$l" ] || [ ! -d "$sdir/train" ]; } && run=train_$l
                if [ ! -f "$sdir/$run/$inference_model" ]; then
                    mark_failed "$sys" "decode_$l" "$sdir/$run/train.log (not trained)"; continue
                fi
                mkdir -p "$sdir/$ddir_name"
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sdir/$run" "$l" "$sdir/$run/$inference_model" \
                    "$sdir/export_$l" "$dump/raw/${l}_test/wav.scp" "$out" "$out.log" \
                    >> "$jobs_dir/jobs.$((n % decode_nj + 1))"
                n=$((n + 1))
            done
        done
        echo "  $n decoding jobs for ${#dec_systems[@]} systems in $decode_nj processes (logs: <system>/$ddir_name/<set>.log)"
        stream_flag=(); [ "$decode_mode" = streaming ] && stream_flag=(--streaming)
        decode_job_lists "$jobs_dir" "${stream_flag[@]}"
        for sys in "${dec_systems[@]}"; do
            sdir=$pw_dir/$sys; sets=()
            for l in $plugin_langs; do
                if [ -f "$sdir/$ddir_name/${l}_test/1best_recog/text" ]; then
                    clear_failed "$sys" "decode_$l"; sets+=("${l}_test")
                elif [ -f "$sdir/$ddir_name/${l}_test.log" ]; then
                    mark_failed "$sys" "decode_$l" "$sdir/$ddir_name/${l}_test.log"
                fi
            done
            [ ${#sets[@]} -gt 0 ] || continue
            $python local/score.py --decode_dir "$sdir/$ddir_name" --ref_dir "$dump/raw" --sets "${sets[@]}" \
                --out "$sdir/RESULTS.md" \
                --title "$sys, $decode_mode decoding by $decoder_desc on exported pathways" \
                > "$sdir/score.log" 2>&1 && clear_failed "$sys" score || mark_failed "$sys" score "$sdir/score.log"
        done
        end_stage 20
    fi
}

for pseed in $seeds; do
    pw_dir=$pw_root/seed$pseed
    plugin_seed_stages
done
pw_dir=$pw_root

if run_stage 21 "report -> $pw_dir/RESULTS.md"; then
    # shellcheck disable=SC2086
    $python local/report.py --pw_dir "$pw_root" --dense "$asr_exp" --langs $plugin_langs --decoder "$decoder" \
        --seeds $seeds --init_sparsities $init_sparsities --target_sparsity "$target_sparsity" \
        ${iou_sweep:+--iou_sweep "$iou_sweep"} || pw_failed=1
    end_stage 21
fi
