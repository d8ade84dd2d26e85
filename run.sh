#!/usr/bin/env bash
# espnet-pathways recipe: Multilingual LibriSpeech (real or synthetic mini-MLS) ->
# dense multilingual streaming transducer trained by ESPnet -> per-language WER.
#
#   ./run.sh                                   # everything, on the demo mini-MLS (CPU)
#   ./run.sh --mls_root /data/mls              # a real MLS copy
#   ./run.sh --stage 12 --stop_stage 13        # decode and score again
#   ./run.sh --help                            # stages and options
#
# Stage numbers keep ESPnet's asr.sh meaning; plugin stages come after 13.
set -euo pipefail

# ---------------------------------------------------------------- options
stage=0                 # first stage to run
stop_stage=             # last stage to run (default: 13, the dense recipe; 21 when --stage > 13; 24 when > 21; 31 when > 24)
langs="en fr it nl"     # MLS language codes (en de nl fr es it pt pl)
mls_root=               # a real MLS copy (holding mls_<language>[_opus]/); empty: mini-MLS
skip_missing_audio=false  # stage 1: true drops transcript lines whose audio file is missing (a partial copy), counted and listed in data/<set>/missing_audio; false: an error
train_subset=           # per-language low-resource subsets, e.g. "it=10h,nl=1h" (full|10h|1h)
corpus_size=full        # mini-MLS size when no --mls_root: tiny | demo | full (full: 10.7 h of training audio, 200 test utterances per language)
corpus_dir=             # where mini-MLS goes (default: corpus/<corpus_size>)
seed=0                  # mini-MLS and training seed
nj=2                    # parallel jobs for data synthesis, formatting, statistics
min_sec=0.5             # stage 4: drop utterances shorter than this
max_sec=20              # stage 4: drop utterances longer than this
token_type=char         # char | bpe (one sentencepiece model; the GPU run used --nbpe 300) | bpe_lang (one per language, merged: the ASR Pathways paper's)
nbpe=300                # sentencepiece vocabulary size (bpe; bpe_lang: per language)
bpemode=unigram         # sentencepiece model type
train_config=conf/train_demo.yaml      # stage 11 ESPnet training config
train_args=             # extra ESPnet training options, e.g. "--max_epoch 20"
decode_config=conf/decode.yaml         # stage 12 ESPnet inference config
decode_mode=streaming   # streaming | full (full-context decoding)
decode_nj=2             # decoding processes run side by side
decode_cmd=local/run_jobs.sh  # job runner of every decoding array (Kaldi/ESPnet cmd convention: CMD [opts] JOB=1:N LOG COMMAND...): local/run_jobs.sh (here), "local/run_jobs.sh --slurm --sbatch_opt --partition=gpu" (sbatch --wait), or an ESPnet checkout's "utils/slurm.pl --config conf/slurm.conf"
decode_split=1          # parts each test set is cut into (more parts: more parallelism)
decoder=espnet          # stages 12, 20: espnet (stock asr_transducer_inference, one utterance at a time) | batched (espnet_pathways.bin.batch_inference: the same search, utterances batched)
decode_batch_size=32    # --decoder batched: utterances decoded together
inference_model=valid.loss.ave.pth     # checkpoint decoded in stage 12
ngpu=0                  # GPUs for training/decoding (N > 1: ESPnet's DDP on this node, one process per GPU; several nodes: README, "Many GPUs")
data=data               # Kaldi data dirs
dump=dump               # formatted data
expdir=exp              # experiments, logs, results
tag=                    # experiment tag (default: train config name)
systems=all             # stages 14-21: systems to run, e.g. "imp pathways_imp dyn_lth_s50" (names: --help)
plugin_langs=           # stages 14-21: languages of the pruning systems (default: --langs)
target_sparsity=0.7     # stages 14-19: final sparsity of every pruned system
init_sparsities="20 50 70"  # stages 18-19: initial mask sparsities (%) of Dynamic ASR Pathways
plugin_epochs=1         # stages 14-19: epochs of each plugin training run (from the dense model)
mono_epochs=            # stages 14, 17, 18: epochs of each monolingual run (ref, imp, lth, adaptive_*, lth_sN; default: --plugin_epochs); their T and n grow with it, so that the N prunes spread over the longer run
prune_interval=100      # stages 14-19: T, optimizer steps between prunes of a multilingual run (N*T must fit in it; monolingual runs scale T by their language's share of the data)
prune_rounds=4          # stages 14-19: N, prune events (cubic schedule to --target_sparsity)
rerank_interval=20      # stages 17,19: n < T, steps between adaptive re-rankings (scaled like T)
dyn_free_pool=zero      # stage 19: weights no language holds: zero (after every re-rank/prune, as the poster) | keep (their values carry over until the masks are fixed; ours: more regrowth, measured worse, results/table2_cpu_v1/keep)
plugin_train_args=      # stages 14-19: extra training options of every plugin run
plugin_lr=              # stages 14-19, 22: peak learning rate of every plugin run (default: --train_config's optim_conf.lr)
plugin_warmup=          # the same runs: warm-up steps of their scheduler (scheduler_conf.warmup_steps; default: --train_config's)
plugin_schedule=config  # the same runs: config (--train_config's scheduler, restarted per run) | tristage (ESPnet's tristagelr over each run's own steps: warm-up 10%, hold 40%, decay 50% to 1% of the peak)
scratch_epochs=         # stages 14-15: epochs of the from-scratch systems ref_scratch, dense_small (default: the dense model's + --plugin_epochs); a dense model continued from another run (init_param) is flagged: set the total
small_config=conf/train_demo_small.yaml  # stage 15: config of dense_small, a dense model with as many parameters as one pathway
iou_sweep=              # stage 21: output dir of local/mask_iou_sweep.py (mask IoU and CER against monolingual budget) to add to the report
plugin_dir=             # stages 14-21: where the systems go (default: <expdir>/pathways); another dir keeps another configuration's runs apart
dual_systems="supernet full_only"  # stages 22-24: dual-mode systems: supernet (from the dense model), supernet_scratch, full_only, stream_only
dual_epochs=            # stage 22: epochs of supernet, full_only, stream_only (default: --plugin_epochs); supernet_scratch: --scratch_epochs
dual_policy=both        # stage 22: passes per batch of the supernet: both | alternate | sample
dual_distill=0          # stage 22: in-place distillation weight, full-context -> sparse streaming pass (policy both)
dual_calib_batches=20   # stage 23: batches of 8 training utterances that re-estimate each exported model's BatchNorm statistics
dual_dir=               # stages 22-24: where the dual-mode systems go (default: <expdir>/dual)
ssl_dir=                # stages 25-28: where the sparse-sharing SSL runs go (default: <expdir>/ssl)
ssl_k=100               # stage 25: k-means clusters of the SSL frame targets
ssl_epochs=4            # stage 26: epochs of dense multilingual SSL pre-training (from scratch)
ssl_second_iter_layer=0 # stage 26: 0 = one iteration on the MFCC targets; k > 0 = HuBERT's second iteration: k-means on encoder block k of the first model, then pre-training again from scratch on those targets
ssl_sparsity=0.5        # stage 27: sparsity of each language's SSL sub-network: one fraction for all, or per language, e.g. "en=0.5,fr=0.5,it=0.3,nl=0.3"
ssl_mask_mode=imp       # stage 27: how the per-language masks are found on the SSL loss: imp (prune and keep training) | lth (prune, rewind to the dense SSL weights)
ssl_share_epochs=1      # stage 28: epochs of sparse-sharing pre-training (from the dense SSL model)
ssl_ft_subset=10h       # stage 29: labelled fine-tuning subset per language: 10h | 1h | full, or e.g. "en=10h,it=1h,nl=1h" (MLS limited-supervision handles; scaled in mini-MLS)
ssl_ft_systems="no_pretrain dense_ssl shared_ssl shared_ssl_pathways lang_embedding adapters"  # stages 29-31: fine-tuned systems (see --help)
ssl_ft_epochs=8         # stage 29: epochs of each fine-tuning run on the labelled subset
ssl_adapter_dim=32      # stage 29: bottleneck units of the per-language adapters (system adapters)
seeds=0                 # stages 14-24, 29-31: training seeds of the plugin systems, e.g. "0 1 2"; each seed's runs in <expdir>/pathways/seed<k>/, the report aggregates them

options() {  # the option lines above, as "name=default  # help"
    sed -n '/^# -* options/,/^options()/p' "$0" | grep -E "^[a-z_]+="
}
help_message=$(cat <<EOF
Usage: $0 [--option value] ...

Stages:
  0   set-up: project venv with pinned packages, espeak-ng/sox (local/setup.sh)
  1   data: mini-MLS synthesis (no --mls_root) and MLS -> Kaldi dirs (local/data_prep.py)
  3   format: read every audio file, count and skip unreadable ones (local/format_data.py)
  4   filter: drop too short / too long utterances (local/format_data.py)
  5   tokens: one sentencepiece model over all languages, or one per language merged (--token_type bpe_lang) (local/make_tokens.py)
  10  statistics for global mean/variance normalisation (ESPnet collect_stats)
  11  train the dense multilingual streaming transducer (ESPnet asr_transducer_train)
  12  decode every language's test set (ESPnet asr_transducer_inference)
  13  score: WER/CER per language -> <exp>/RESULTS.md (local/score.py)
  Plugin stages (local/plugin_stages.sh; every system from the stage-11 model, in <expdir>/pathways/<system>/):
  14  monolingual dense (Ref.: ref from the dense model, ref_scratch from scratch), IMP and LTH per language (ref, ref_scratch, imp, lth)
  15  language-agnostic pruning on all languages (lap; lap_long: as many steps as --mono_epochs + --plugin_epochs); a dense model with as many parameters as a pathway, from scratch (dense_small)
  16  ASR Pathways from the merged IMP / LTH masks, and from random masks (pathways_imp, pathways_lth, pathways_random)
  17  adaptive masking, monolingual: adaptive IMP / LTH (adaptive_imp, adaptive_lth)
  18  LTH / LAP masks at each lower --init_sparsities value N (lth_sN, lap_sN)
  19  Dynamic ASR Pathways from LTH / LAP masks at N% (dyn_lth_sN, dyn_lap_sN)
  20  export each language's pathway, decode with stock ESPnet inference, score
  21  report: <expdir>/pathways/RESULTS.md, figures, claims (local/report.py)
  Dual-mode stages (local/dual_stages.sh; a sparse streaming model inside a dense full-context one, in <expdir>/dual/seed<k>/<system>/):
  22  train --dual_systems: supernet (dual_mode from the dense model), supernet_scratch, full_only (full context only), stream_only
  23  export each supernet's sparse streaming and dense full-context models (own BatchNorm statistics), decode every cell, score
  24  report: <expdir>/dual/RESULTS.md against the dense, full-context-only and LAP baselines (local/dual_report.py)
  Sparse-sharing SSL stages (local/ssl_stages.sh, in <expdir>/ssl/):
  25  SSL frame targets: MFCC k-means over all languages (local/ssl_targets.py)
  26  dense multilingual SSL pre-training of the transducer's encoder (espnet_pathways.bin.ssl_train); with
      --ssl_second_iter_layer k, a second iteration on k-means targets of the first model's encoder block k
  27  per-language masks: monolingual IMP (or LTH, --ssl_mask_mode) on the SSL loss (--ssl_sparsity, per language or one for all)
  28  sparse-sharing SSL pre-training: the per-language masks as pathways of one encoder
  29  fine-tune into the streaming transducer on the labelled subset (--ssl_ft_subset), per seed: no_pretrain
      (from scratch), dense_ssl (encoder from stage 26), shared_ssl (from stage 28, dense fine-tuning),
      shared_ssl_pathways (from stage 28, pathways fine-tuning with the same masks on the encoder),
      lang_embedding / adapters (from stage 26 + a learned embedding / bottleneck adapters per language)
  30  decode (streaming; always the batched decoder: the embedding and adapter modules are not stock ESPnet) and score
  31  report: <expdir>/ssl/RESULTS.md, per language (high/low resource), added parameters, claims (local/ssl_report.py)

Options (default):
$(options | sed -E 's/^([a-z_]+)=([^#]*)#? ?(.*)$/  --\1 (\2) \3/; s/ +\)/)/')
EOF
)

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) echo "$help_message"; exit 0 ;;
        --*=*) opt=${1%%=*}; val=${1#*=}; shift; set -- "$opt" "$val" "$@"; continue ;;
        --*)
            name=${1#--}; name=${name//-/_}
            if ! options | grep -E "^${name}=" > /dev/null; then  # not -q: an early exit would SIGPIPE sed (pipefail)
                echo "$0: unknown option --${1#--} (see --help)" >&2; exit 2
            fi
            [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 2; }
            printf -v "$name" '%s' "$2"; shift 2 ;;
        *) echo "$0: unexpected argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

if [ -z "$stop_stage" ]; then
    stop_stage=13
    if [[ $stage =~ ^[0-9]+$ ]] && [ "$stage" -gt 24 ]; then stop_stage=31
    elif [[ $stage =~ ^[0-9]+$ ]] && [ "$stage" -gt 21 ]; then stop_stage=24; elif [[ $stage =~ ^[0-9]+$ ]] && [ "$stage" -gt 13 ]; then stop_stage=21; fi
fi
for v in stage stop_stage nj decode_nj decode_split decode_batch_size ngpu nbpe plugin_epochs prune_interval prune_rounds rerank_interval ${scratch_epochs:+scratch_epochs} ${mono_epochs:+mono_epochs} ${dual_epochs:+dual_epochs} dual_calib_batches ssl_k ssl_epochs ssl_second_iter_layer ssl_share_epochs ssl_ft_epochs ssl_adapter_dim; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "$0: --$v must be a non-negative integer, got '${!v}'" >&2; exit 2; }
done
if [ "$stage" -gt "$stop_stage" ]; then
    echo "$0: --stage $stage is greater than --stop_stage $stop_stage" >&2; exit 2
fi
case $decode_mode in streaming|full) ;; *) echo "$0: --decode_mode must be streaming or full, got '$decode_mode'" >&2; exit 2 ;; esac
case $decoder in espnet|batched) ;; *) echo "$0: --decoder must be espnet or batched, got '$decoder'" >&2; exit 2 ;; esac
[ "$decode_batch_size" -ge 1 ] || { echo "$0: --decode_batch_size must be at least 1" >&2; exit 2; }
for v in plugin_epochs ${mono_epochs:+mono_epochs} ${dual_epochs:+dual_epochs}; do
    [ "${!v}" -ge 1 ] || { echo "$0: --$v must be at least 1 (epochs of a training run)" >&2; exit 2; }
done
if [ -n "$plugin_lr" ]; then
    [[ $plugin_lr =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$ ]] && awk -v x="$plugin_lr" 'BEGIN { exit !(x > 0) }' \
        || { echo "$0: --plugin_lr must be a positive number, got '$plugin_lr'" >&2; exit 2; }
    # written with a decimal point: ESPnet reads the value as YAML, where 4e-4 is a string
    plugin_lr=$(awk -v x="$plugin_lr" 'BEGIN { s = sprintf("%.12g", x); if (s !~ /\./) { if (s ~ /e/) sub(/e/, ".0e", s); else s = s ".0" } print s }')
fi
if [ -n "$plugin_warmup" ]; then
    [[ $plugin_warmup =~ ^[0-9]+$ ]] && [ "$plugin_warmup" -ge 1 ] \
        || { echo "$0: --plugin_warmup must be a positive integer (optimizer steps), got '$plugin_warmup'" >&2; exit 2; }
fi
case $plugin_schedule in
    config) sched_args= ;;
    tristage)  # max_steps=auto: the run's own optimizer steps, counted by the plugin (espnet_pathways.task)
        [ -z "$plugin_warmup" ] || { echo "$0: --plugin_warmup: not with --plugin_schedule tristage (its warm-up is 10% of each run)" >&2; exit 2; }
        sched_args="--scheduler tristagelr --scheduler_conf max_steps=auto " ;;
    *) echo "$0: --plugin_schedule must be config or tristage, got '$plugin_schedule'" >&2; exit 2 ;;
esac
# ESPnet merges --optim_conf / --scheduler_conf given on the command line into the config's
# (espnet2.utils.nested_dict_action); what --plugin_train_args says comes last and wins.
plugin_train_args="$sched_args${plugin_lr:+--optim_conf lr=$plugin_lr }${plugin_warmup:+--scheduler_conf warmup_steps=$plugin_warmup }$plugin_train_args"
case $skip_missing_audio in true|false) ;; *) echo "$0: --skip_missing_audio must be true or false, got '$skip_missing_audio'" >&2; exit 2 ;; esac
case $token_type in bpe|char|bpe_lang) ;; *) echo "$0: --token_type must be bpe, char or bpe_lang, got '$token_type'" >&2; exit 2 ;; esac
# Plugin stages (14-21): checked here, before any stage runs.
for s in $systems; do
    case $s in
        all|ref|ref_scratch|dense_small|imp|lth|lap|lap_long|pathways_imp|pathways_lth|pathways_random|adaptive_imp|adaptive_lth) ;;
        lth_s[0-9]*|lap_s[0-9]*|dyn_lth_s[0-9]*|dyn_lap_s[0-9]*) ;;
        *) echo "$0: --systems: unknown system '$s' (names: run.sh --help, stages 14-19)" >&2; exit 2 ;;
    esac
done
for s in $dual_systems; do
    case $s in
        supernet|supernet_scratch|full_only|stream_only) ;;
        *) echo "$0: --dual_systems: unknown system '$s' (supernet, supernet_scratch, full_only, stream_only)" >&2; exit 2 ;;
    esac
done
case $dyn_free_pool in zero|keep) ;; *) echo "$0: --dyn_free_pool must be zero or keep, got '$dyn_free_pool'" >&2; exit 2 ;; esac
case $dual_policy in both|alternate|sample) ;; *) echo "$0: --dual_policy must be both, alternate or sample, got '$dual_policy'" >&2; exit 2 ;; esac
[[ $dual_distill =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "$0: --dual_distill must be a number >= 0, got '$dual_distill'" >&2; exit 2; }
if [ "$dual_distill" != 0 ] && [ "$dual_policy" != both ] && awk -v x="$dual_distill" 'BEGIN { exit !(x > 0) }'; then
    echo "$0: --dual_distill needs --dual_policy both (both passes on every batch)" >&2; exit 2
fi
ssl_sparsity_of() {  # ssl_sparsity_of LANG: that language's --ssl_sparsity (status 1: none given)
    local kv
    case $ssl_sparsity in
        *=*) for kv in ${ssl_sparsity//,/ }; do [ "${kv%%=*}" = "$1" ] && { echo "${kv#*=}"; return 0; }; done; return 1 ;;
        *) echo "$ssl_sparsity" ;;
    esac
}
for l in ${plugin_langs:-$langs}; do
    v=$(ssl_sparsity_of "$l") || { echo "$0: --ssl_sparsity '$ssl_sparsity' gives no value for language '$l'" >&2; exit 2; }
    [[ $v =~ ^0?\.[0-9]+$ ]] || { echo "$0: --ssl_sparsity must be a fraction in (0, 1), got '$v' for '$l'" >&2; exit 2; }
done
if [[ $ssl_sparsity == *=* ]]; then
    for kv in ${ssl_sparsity//,/ }; do
        [[ " ${plugin_langs:-$langs} " == *" ${kv%%=*} "* ]] || { echo "$0: --ssl_sparsity: '${kv%%=*}' is not one of the languages (${plugin_langs:-$langs})" >&2; exit 2; }
    done
fi
case $ssl_mask_mode in imp|lth) ;; *) echo "$0: --ssl_mask_mode must be imp or lth, got '$ssl_mask_mode'" >&2; exit 2 ;; esac
[ "$ssl_k" -ge 2 ] || { echo "$0: --ssl_k must be at least 2, got '$ssl_k'" >&2; exit 2; }
for s in $ssl_ft_systems; do
    case $s in
        no_pretrain|dense_ssl|shared_ssl|shared_ssl_pathways|lang_embedding|adapters) ;;
        *) echo "$0: --ssl_ft_systems: unknown system '$s' (no_pretrain dense_ssl shared_ssl shared_ssl_pathways lang_embedding adapters)" >&2; exit 2 ;;
    esac
done
[ "$ssl_adapter_dim" -ge 1 ] || { echo "$0: --ssl_adapter_dim must be at least 1" >&2; exit 2; }
for v in langs plugin_langs; do
    [ "$v" = plugin_langs ] && [ -z "$plugin_langs" ] && continue
    [ -n "${!v// /}" ] || { echo "$0: --$v needs at least one language code" >&2; exit 2; }
    # shellcheck disable=SC2086
    dup=$(printf '%s\n' ${!v} | sort | uniq -d | head -1)
    [ -z "$dup" ] || { echo "$0: --$v: '$dup' is given twice in '${!v}'" >&2; exit 2; }
done
[ -n "${seeds// /}" ] || { echo "$0: --seeds needs at least one integer seed" >&2; exit 2; }
for s in $seeds; do
    [[ $s =~ ^[0-9]+$ ]] || { echo "$0: --seeds takes non-negative integers, got '$s'" >&2; exit 2; }
done
[ "$(printf '%s\n' $seeds | sort | uniq -d)" = "" ] || { echo "$0: --seeds: a seed is given twice in '$seeds'" >&2; exit 2; }
[[ $target_sparsity =~ ^0?\.[0-9]+$ ]] || { echo "$0: --target_sparsity must be a fraction in (0, 1), got '$target_sparsity'" >&2; exit 2; }
for s in $init_sparsities; do
    [[ $s =~ ^[0-9]{1,2}$ ]] || { echo "$0: --init_sparsities takes percentages (0-99), got '$s'" >&2; exit 2; }
done
# Paths given relative to the caller's directory stay valid after the cd below; other
# relative paths (outputs, the default configs) are relative to this recipe's directory.
caller_dir=$PWD
recipe_dir=$(cd "$(dirname "$0")" && pwd)
for f in train_config decode_config small_config mls_root; do
    p=${!f}
    if [ -n "$p" ] && [[ $p != /* ]] && [ -e "$caller_dir/$p" ]; then printf -v "$f" '%s' "$caller_dir/$p"; fi
done
for f in train_config decode_config small_config; do
    [ -f "${!f}" ] || [ -f "$recipe_dir/${!f}" ] || { echo "$0: --$f ${!f}: no such file" >&2; exit 2; }
done
if [ -n "$plugin_warmup" ]; then  # the scheduler must take warmup_steps
    cfg_file=$train_config; [ -f "$cfg_file" ] || cfg_file=$recipe_dir/$train_config
    sched=$(awk '/^scheduler:/ { print tolower($2) }' "$cfg_file")
    case $sched in warmuplr|warmupsteplr|warmupreducelronplateau|piecewiselinearwarmuplr|noamlr|exponentialdecaywarmup|cosineannealingwarmuprestarts) ;;
        *) echo "$0: --plugin_warmup: $train_config's scheduler '${sched:-none}' has no warmup_steps" >&2; exit 2 ;;
    esac
fi

read -r decode_cmd_exe decode_cmd_rest <<< "$decode_cmd"
if [ -n "$decode_cmd_exe" ] && [[ $decode_cmd_exe == */* && $decode_cmd_exe != /* ]] && [ -f "$caller_dir/$decode_cmd_exe" ]; then
    decode_cmd_exe=$caller_dir/$decode_cmd_exe; decode_cmd="$decode_cmd_exe${decode_cmd_rest:+ $decode_cmd_rest}"
fi
cd "$recipe_dir"
command -v "${decode_cmd_exe:-}" > /dev/null || { echo "$0: --decode_cmd: '${decode_cmd_exe:-}' is not a command or executable file" >&2; exit 2; }
# shellcheck disable=SC1091
. ./path.sh
python=python3

[ -n "$corpus_dir" ] || corpus_dir=corpus/$corpus_size
[ -n "$tag" ] || tag=$(basename "${train_config%.*}")
test_sets=$(for l in $langs; do printf '%s_test ' "$l"; done)
dev_sets=$(for l in $langs; do printf '%s_dev ' "$l"; done)
case $token_type in bpe) token_tag=bpe${nbpe} ;; bpe_lang) token_tag=bpelang${nbpe} ;; *) token_tag=char ;; esac
token_dir=$data/token_list/$token_tag
bpemodel=$token_dir/bpe.model
token_list=$token_dir/tokens.txt
stats_dir=$expdir/asr_stats_$token_tag
asr_exp=$expdir/asr_${tag}
stage_times=$expdir/stage_times.tsv

run_stage() {  # run_stage N "description": true if stage N is selected, prints a header
    [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] || return 1
    echo "$(date '+%H:%M:%S') Stage $1: $2"
    stage_start=$SECONDS
}
end_stage() {  # end_stage N: records the wall time of stage N
    local took=$((SECONDS - stage_start))
    mkdir -p "$expdir"  # created by the first stage that finishes: a failed stage 1 leaves no empty dirs
    printf '%s\t%s\t%s\n' "$1" "$took" "$(date -u +%FT%TZ)" >> "$stage_times"
    echo "$(date '+%H:%M:%S') Stage $1 done in ${took}s"
}

# ---------------------------------------------------------------- stages
if run_stage 0 "set-up (local/setup.sh)"; then
    need_tools=true; [ -n "$mls_root" ] && need_tools=false
    NEED_TOOLS=$need_tools local/setup.sh
    . ./path.sh
    end_stage 0
fi

if ! python3 -c 'import espnet2' 2>/dev/null; then
    echo "$0: ESPnet is not installed in this environment; run stage 0 first (./run.sh --stage 0 --stop_stage 0)" >&2
    exit 1
fi

if run_stage 1 "data preparation for: $langs"; then
    if [ -z "$mls_root" ]; then
        # No real MLS given: synthesise mini-MLS in MLS's own layout, then read it as MLS.
        $python local/make_mini_mls.py --out "$corpus_dir" --langs $langs \
            --size "$corpus_size" --seed "$seed" --jobs "$nj"
        src=$corpus_dir
    else
        src=$mls_root
    fi
    $python local/data_prep.py --mls_root "$src" --langs $langs --data "$data" --skip_missing_audio "$skip_missing_audio" \
        ${train_subset:+--train_subset "$train_subset"}
    end_stage 1
fi

if run_stage 3 "format: read and check audio of train, dev and test sets"; then
    $python local/format_data.py format --data "$data" --out "$dump/raw/org" --nj "$nj" \
        train dev $dev_sets $test_sets
    end_stage 3
fi

if run_stage 4 "filter: keep utterances of ${min_sec}-${max_sec} s"; then
    $python local/format_data.py filter --src "$dump/raw/org" --out "$dump/raw" \
        --min_sec "$min_sec" --max_sec "$max_sec" train dev
    # Test sets are never filtered: every test utterance is scored.
    $python local/format_data.py filter --src "$dump/raw/org" --out "$dump/raw" \
        --min_sec 0 --max_sec 1e9 $dev_sets $test_sets
    end_stage 4
fi

if run_stage 5 "tokens: $token_tag over the training text of all languages"; then
    apply_args=(); [ "$token_type" = bpe_lang ] && apply_args=(--apply "$dump/raw/train" "$dump/raw/dev")
    $python local/make_tokens.py --text "$dump/raw/train/text" --out "$token_dir" \
        --token_type "$token_type" --nbpe "$nbpe" --bpemode "$bpemode" "${apply_args[@]}"
    end_stage 5
fi

token_args=(--token_type "$token_type" --token_list "$token_list")
[ "$token_type" = bpe ] && token_args+=(--bpemodel "$bpemodel")
# bpe_lang: stage 5 wrote train and dev tokenized by each utterance's language model; ESPnet
# reads those pieces with its word tokenizer (local/make_tokens.py), stage 13 joins them back.
[ "$token_type" = bpe_lang ] && token_args=(--token_type word --token_list "$token_list")
data_args() {  # data_args PREFIX SET: ESPnet's --<prefix>_data_path_and_name_and_type pairs
    local text=$dump/raw/$2/text
    [ "$token_type" = bpe_lang ] && text=$token_dir/$2/text
    echo "--$1_data_path_and_name_and_type $dump/raw/$2/wav.scp,speech,sound"
    echo "--$1_data_path_and_name_and_type $text,text,text"
}
# ESPnet training arguments shared by stage 11 and the plugin stages (local/plugin_stages.sh):
# tokens, global normalisation, data, shape files and resuming.
# shellcheck disable=SC2207
train_common_args=(--use_preprocessor true "${token_args[@]}" --ngpu "$ngpu" --seed "$seed"
    --normalize global_mvn --normalize_conf "stats_file=$stats_dir/train/feats_stats.npz"
    $(data_args train train) $(data_args valid dev)
    --train_shape_file "$stats_dir/train/speech_shape"
    --train_shape_file "$stats_dir/train/text_shape.$token_tag"
    --valid_shape_file "$stats_dir/valid/speech_shape"
    --valid_shape_file "$stats_dir/valid/text_shape.$token_tag"
    --fold_length 80000 --fold_length 150 --resume true)
# --ngpu N > 1: ESPnet's DDP, one process per GPU (its default, DataParallel, cannot run the plugin's in-place swap)
ddp_args=(); [ "$ngpu" -gt 1 ] && ddp_args=(--multiprocessing_distributed true)
train_common_args+=("${ddp_args[@]}")

if run_stage 10 "statistics for global normalisation ($stats_dir)"; then
    if [ -f "$stats_dir/train/feats_stats.npz" ]; then
        echo "  $stats_dir exists: skipped"
    else
        log=$expdir/logs/stage10_stats.log; mkdir -p "$expdir/logs"
        echo "  log: $log"
        rm -rf "$stats_dir.tmp"
        # shellcheck disable=SC2046
        $python -m espnet_pathways.bin.asr_transducer_train --collect_stats true \
            --use_preprocessor true "${token_args[@]}" \
            --config "$train_config" --ngpu 0 --num_workers "$nj" \
            $(data_args train train) $(data_args valid dev) \
            --train_shape_file "$dump/raw/train/wav.scp" \
            --valid_shape_file "$dump/raw/dev/wav.scp" \
            --output_dir "$stats_dir.tmp" > "$log" 2>&1 \
            || { echo "$0: stage 10 failed, see $log" >&2; tail -5 "$log" >&2; exit 1; }
        for split in train valid; do  # text shapes carry the vocabulary size, as asr.sh does
            awk -v N="$(wc -l < "$token_list")" '{ print $0 "," N }' \
                "$stats_dir.tmp/$split/text_shape" > "$stats_dir.tmp/$split/text_shape.$token_tag"
        done
        mv "$stats_dir.tmp" "$stats_dir"
    fi
    end_stage 10
fi

if run_stage 11 "train dense multilingual streaming transducer -> $asr_exp"; then
    if [ -f "$asr_exp/$inference_model" ]; then
        echo "  $asr_exp/$inference_model exists: skipped (remove it to train again)"
    else
        mkdir -p "$asr_exp"
        log=$asr_exp/train.log  # appended to: a resumed run keeps the earlier epochs' lines
        log_start=$(stat -c %s "$log" 2>/dev/null || echo 0)
        echo "  log: $log   (progress: grep 'epoch results' $log)"
        $python -m espnet_pathways.bin.asr_transducer_train "${train_common_args[@]}" \
            --config "$train_config" --output_dir "$asr_exp" $train_args >> "$log" 2>&1 &
        train_pid=$!
        trap 'kill $train_pid 2>/dev/null' EXIT INT TERM
        $python local/watch_training.py "$log" --pid "$train_pid" --offset "$log_start" || true
        wait "$train_pid" || { echo "$0: stage 11 failed, see $log" >&2; tail -5 "$log" >&2; exit 1; }
        trap - EXIT INT TERM
    fi
    end_stage 11
fi

decode_suffix=; decoder_desc="stock ESPnet asr_transducer_inference"
if [ "$decoder" = batched ]; then
    decode_suffix=_batched; decoder_desc="espnet_pathways.bin.batch_inference (ESPnet's search, batched)"
fi
decode_dir=$asr_exp/decode_${decode_mode}_$(basename "${decode_config%.*}")$decode_suffix
if run_stage 12 "decode ($decode_mode) $test_sets-> $decode_dir"; then
    [ -f "$asr_exp/$inference_model" ] || { echo "$0: stage 12 needs $asr_exp/$inference_model: run stage 11 first" >&2; exit 1; }
    decode_module=espnet2.bin.asr_transducer_inference; decode_batch_args=()
    if [ "$decoder" = batched ]; then
        decode_module=espnet_pathways.bin.batch_inference; decode_batch_args=(--batch_size "$decode_batch_size")
    fi
    stream_args=()
    # --streaming takes any non-empty string as true: pass it only when streaming.
    [ "$decode_mode" = streaming ] && stream_args=(--streaming true)
    # ESPnet decodes one utterance at a time: each set is cut into decode_split parts, every
    # (set, part) one task of a --decode_cmd array with at most decode_nj running at a time.
    jobs_dir=$decode_dir/jobs; rm -rf "$jobs_dir"; mkdir -p "$jobs_dir"; k=0
    for set in $test_sets; do
        out=$decode_dir/$set
        if [ -f "$out/1best_recog/text" ]; then echo "  $set: decoded already"; continue; fi
        rm -rf "$out.tmp"; mkdir -p "$out.tmp"
        n=$(wc -l < "$dump/raw/$set/wav.scp")
        split -n "l/$decode_split" -d -a 3 "$dump/raw/$set/wav.scp" "$out.tmp/keys."
        echo "  $set: decoding $n utterances in $(ls "$out.tmp"/keys.* | wc -l) parts"
        for keys in "$out.tmp"/keys.*; do
            [ -s "$keys" ] || continue
            part=${keys##*.}; k=$((k + 1))
            printf '%q ' $python -m "$decode_module" "${decode_batch_args[@]}" --ngpu "$ngpu" \
                --data_path_and_name_and_type "$dump/raw/$set/wav.scp,speech,sound" \
                --key_file "$keys" \
                --asr_train_config "$asr_exp/config.yaml" \
                --asr_model_file "$asr_exp/$inference_model" \
                --config "$decode_config" "${stream_args[@]}" \
                --output_dir "$out.tmp/$part" > "$jobs_dir/$k.sh"
        done
    done
    if [ $k -gt 0 ]; then
        echo "  $k decoding jobs, at most $decode_nj at a time ($decode_cmd), logs: $jobs_dir/<n>.log"
        $decode_cmd --max_jobs_run "$decode_nj" --gpu "$ngpu" JOB=1:$k "$jobs_dir/JOB.log" bash "$jobs_dir/JOB.sh" \
            || { echo "$0: stage 12: decoding failed (see the logs above)" >&2; exit 1; }
    fi
    for set in $test_sets; do  # merge the parts, then move the set into place
        out=$decode_dir/$set
        [ -d "$out.tmp" ] || continue
        mkdir -p "$out.tmp/1best_recog"
        cat "$out.tmp"/[0-9]*/1best_recog/text | LC_ALL=C sort > "$out.tmp/1best_recog/text"
        rm -rf "$out" && mv "$out.tmp" "$out"
        echo "  $set: $(wc -l < "$out/1best_recog/text") hypotheses"
    done
    end_stage 12
fi

if run_stage 13 "score WER/CER per language -> $decode_dir/RESULTS.md"; then
    $python local/score.py --decode_dir "$decode_dir" --ref_dir "$dump/raw" \
        --sets $test_sets --out "$decode_dir/RESULTS.md" \
        --title "$tag, $decode_mode decoding by $decoder_desc, $inference_model"
    # The plugin stages' dense baseline is <exp>/results.json: the streaming scores (the mode
    # the systems are compared in); another mode's scores stay in its decode dir only.
    if [ "$decode_mode" = streaming ]; then
        cp "$decode_dir/RESULTS.md" "$asr_exp/RESULTS.md"; cp "$decode_dir/results.json" "$asr_exp/results.json"
    fi
    end_stage 13
fi

. local/stage_helpers.sh
. local/plugin_stages.sh
. local/dual_stages.sh
. local/ssl_stages.sh

if [ "$pw_failed" != 0 ]; then
    echo "$0: some plugin or dual-mode steps failed (marked in <dir>/seed*/*/failed/, listed in the reports)" >&2
    exit 1
fi

echo "$(date '+%H:%M:%S') run.sh: stages $stage-$stop_stage finished"
