#!/usr/bin/env bash
# Run a job array locally or on Slurm, with the calling convention of Kaldi/ESPnet's cmd scripts
# (run.pl, slurm.pl), so that either kind can be given to run.sh's --decode_cmd:
#
#   local/run_jobs.sh [options] [JOB=A:B] LOG COMMAND [ARG...]
#
# With a range, every "JOB" in LOG and in each ARG becomes the task number A..B. Each task's output goes to
# its LOG, between a header (the command, the start time) and a footer ("# Ended (code N) at
# ..."). The exit status is 0 when every task succeeded; otherwise one line names how many
# failed and the first failed task's log.
#
# Options:
#   --max_jobs_run N   at most N tasks at a time (local: default all; Slurm: the array's %N)
#   --slurm            submit the array with `sbatch --wait` instead of running it here
#   --sbatch_opt OPT   one more sbatch option (repeatable, e.g. --sbatch_opt --partition=gpu)
#   --gpu N            Slurm: --gres=gpu:N (local: ignored; accepted as ESPnet's launcher passes it)
#   --num_threads N    Slurm: --cpus-per-task=N (local: ignored)
#   --mem SIZE         Slurm: --mem=SIZE (local: ignored)
#   --time LIMIT       Slurm: --time=LIMIT (local: ignored)
set -uo pipefail

me=${0##*/}
die() { echo "$me: $*" >&2; exit 2; }

max_jobs=0 slurm=false gpu=0 threads= mem= time_limit=
sbatch_opts=()
while [ $# -gt 0 ]; do
    case $1 in
        --max_jobs_run|--max-jobs-run) [ $# -ge 2 ] || die "$1 needs a value"; max_jobs=$2; shift 2 ;;
        --slurm) slurm=true; shift ;;
        --sbatch_opt) [ $# -ge 2 ] || die "$1 needs a value"; sbatch_opts+=("$2"); shift 2 ;;
        --gpu) [ $# -ge 2 ] || die "$1 needs a value"; gpu=$2; shift 2 ;;
        --num_threads) [ $# -ge 2 ] || die "$1 needs a value"; threads=$2; shift 2 ;;
        --mem) [ $# -ge 2 ] || die "$1 needs a value"; mem=$2; shift 2 ;;
        --time) [ $# -ge 2 ] || die "$1 needs a value"; time_limit=$2; shift 2 ;;
        --*) die "unknown option $1 (see the header of $0)" ;;
        *) break ;;
    esac
done
[[ $max_jobs =~ ^[0-9]+$ ]] || die "--max_jobs_run: expected a non-negative integer, got '$max_jobs'"
[[ $gpu =~ ^[0-9]+$ ]] || die "--gpu: expected a non-negative integer, got '$gpu'"
[[ -z $threads || $threads =~ ^[0-9]+$ ]] || die "--num_threads: expected a non-negative integer, got '$threads'"

first=1 last=1 array=false
if [[ ${1:-} =~ ^JOB=([0-9]+):([0-9]+)$ ]]; then
    first=${BASH_REMATCH[1]} last=${BASH_REMATCH[2]} array=true; shift
    [ "$first" -le "$last" ] || die "JOB=$first:$last: an empty range"
elif [[ ${1:-} == JOB=* ]]; then
    die "$1: expected JOB=A:B with integers A <= B"
fi
[ $# -ge 2 ] || die "usage: $me [options] [JOB=A:B] LOG COMMAND [ARG...]"
log=$1; shift
$array || [[ $log != *JOB* ]] || die "$log: the log names JOB but no JOB=A:B range was given"

subst() {  # subst N ARG...: every JOB in every ARG replaced by N (NUL-separated; none without a range)
    local n=$1 a; shift
    $array || n=JOB
    for a in "$@"; do printf '%s\0' "${a//JOB/$n}"; done
}

if $slurm; then
    command -v sbatch > /dev/null || die "--slurm: sbatch is not on PATH"
    # the task's command line, quoted for the shell sbatch runs, each JOB becoming the task id
    line=
    for a in "$@"; do
        q=$(printf '%q' "$a"); line+="${q//JOB/\$\{SLURM_ARRAY_TASK_ID\}} "
    done
    range="$first-$last"; [ "$max_jobs" -gt 0 ] && range+="%$max_jobs"
    opts=(--wait --parsable --job-name "${log##*/}" --array "$range" --output "${log//JOB/%a}")
    [ "$gpu" -gt 0 ] && opts+=(--gres "gpu:$gpu")
    [ -n "$threads" ] && opts+=(--cpus-per-task "$threads")
    [ -n "$mem" ] && opts+=(--mem "$mem")
    [ -n "$time_limit" ] && opts+=(--time "$time_limit")
    mkdir -p "$(dirname "$log")"
    wrap="echo \"# $line\"; echo \"# Started at \$(date)\"; $line; rc=\$?; echo \"# Ended (code \$rc) at \$(date)\"; exit \$rc"
    if sbatch "${opts[@]}" "${sbatch_opts[@]}" --wrap "$wrap" > /dev/null; then exit 0; fi
    failed=()
    for ((n = first; n <= last; n++)); do
        f=${log//JOB/$n}
        grep -q '^# Ended (code 0)' "$f" 2>/dev/null || failed+=("$f")
    done
    echo "$me: ${#failed[@]} of $((last - first + 1)) Slurm tasks failed, e.g. ${failed[0]:-$log}" >&2
    exit 1
fi

run_one() {  # run_one N: task N, its output to its log
    local n=$1 f cmd start rc
    shift
    f=${log//JOB/$n}
    mapfile -d '' -t cmd < <(subst "$n" "$@")
    mkdir -p "$(dirname "$f")"
    start=$(date +%s)
    { echo "# ${cmd[*]}"; echo "# Started at $(date)"; } > "$f"
    "${cmd[@]}" >> "$f" 2>&1
    rc=$?
    { echo "# Accounting: time=$(($(date +%s) - start)) threads=1"; echo "# Ended (code $rc) at $(date)"; } >> "$f"
    return $rc
}

pids=() tasks=()
failed=()
reap() {  # wait for the oldest running task
    local i=0
    if ! wait "${pids[i]}"; then failed+=("${log//JOB/${tasks[i]}}"); fi
    pids=("${pids[@]:1}"); tasks=("${tasks[@]:1}")
}
for ((n = first; n <= last; n++)); do
    [ "$max_jobs" -gt 0 ] && [ ${#pids[@]} -ge "$max_jobs" ] && reap
    run_one "$n" "$@" &
    pids+=($!); tasks+=("$n")
done
while [ ${#pids[@]} -gt 0 ]; do reap; done
if [ ${#failed[@]} -gt 0 ]; then
    if $array; then
        echo "$me: ${#failed[@]} of $((last - first + 1)) jobs failed, e.g. ${failed[0]}" >&2
    else
        echo "$me: the job failed, see ${failed[0]}" >&2
    fi
    exit 1
fi
exit 0
