# Helpers shared by the stage files of run.sh after stage 13 (sourced before local/plugin_stages.sh).
#
#   step_failed DIR STEP LOG   mark STEP of the system in DIR failed (DIR/failed/STEP holds the log path)
#   step_clear DIR STEP        remove that mark (the step succeeded or was found done)
#   decode_cells JOBS_DIR CELL...
#       decode and score cells, every (cell, language) job spread over --decode_nj processes of
#       local/decode_pathways.py. A CELL is "SDIR MODEL MODE RUN_DIR MODEL_FILE": results go to
#       SDIR/eval_MODEL_MODE/{decode/<l>_test/,RESULTS.md,results.json}; MODE streaming | full;
#       a RUN_DIR holding masks.pt is a pathways run whose language l is exported to SDIR/export_<l>
#       first. Finished (cell, language) jobs are skipped.
#   decode_job_lists JOBS_DIR [ARG...]
#       run local/decode_pathways.py once per job list JOBS_DIR/jobs.<n> (n = 1..), as one
#       --decode_cmd array with at most --decode_nj tasks at a time; ARGs go to every task.
#
# shellcheck shell=bash disable=SC2154

step_failed() {  # step_failed DIR STEP LOG
    mkdir -p "$1/failed"; echo "$3" > "$1/failed/$2"; echo "  $(basename "$1"): $2 FAILED, see $3" >&2; pw_failed=1
}
step_clear() { rm -f "$1/failed/$2"; rmdir "$1/failed" 2>/dev/null || true; }

decode_job_lists() {  # decode_job_lists JOBS_DIR [ARG...] (see above)
    local jobs_dir=$1 k; shift
    k=$(find "$jobs_dir" -maxdepth 1 -name 'jobs.*' ! -name '*.log' | wc -l)
    [ "$k" -gt 0 ] || return 0
    # a failed task is reported by the result checks of the caller (its log: <set>.log beside the output)
    $decode_cmd --max_jobs_run "$decode_nj" --gpu "$ngpu" JOB=1:"$k" "$jobs_dir/jobs.JOB.log" \
        $python local/decode_pathways.py --jobs "$jobs_dir/jobs.JOB" --decode_config "$decode_config" --ngpu "$ngpu" \
        --decoder "$decoder" --batch_size "$decode_batch_size" "$@" || true
    cat "$jobs_dir"/jobs.*.log 2>/dev/null | grep -E '^  ' || true
}

decode_cells() {  # decode_cells JOBS_DIR CELL... (see above)
    local jobs_dir=$1 cell sdir m mode rd mf l ev n=0 sets; shift
    rm -rf "$jobs_dir"; mkdir -p "$jobs_dir"
    for cell in "$@"; do
        read -r sdir m mode rd mf <<< "$cell"
        ev=$sdir/eval_${m}_$mode
        for l in $plugin_langs; do
            [ -f "$ev/decode/${l}_test/1best_recog/text" ] && continue
            mkdir -p "$ev/decode"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rd" "$l" "$mf" "$sdir/export_$l" "$dump/raw/${l}_test/wav.scp" \
                "$ev/decode/${l}_test" "$ev/decode/${l}_test.log" "$([ "$mode" = streaming ] && echo true || echo false)" \
                >> "$jobs_dir/jobs.$((n % decode_nj + 1))"
            n=$((n + 1))
        done
    done
    echo "  $n decoding jobs in $decode_nj processes"
    decode_job_lists "$jobs_dir"
    for cell in "$@"; do
        read -r sdir m mode rd mf <<< "$cell"
        ev=$sdir/eval_${m}_$mode; sets=()
        for l in $plugin_langs; do
            if [ -f "$ev/decode/${l}_test/1best_recog/text" ]; then step_clear "$sdir" "decode_${m}_${mode}_$l"; sets+=("${l}_test")
            else step_failed "$sdir" "decode_${m}_${mode}_$l" "$ev/decode/${l}_test.log"; fi
        done
        [ ${#sets[@]} -gt 0 ] || continue
        $python local/score.py --decode_dir "$ev/decode" --ref_dir "$dump/raw" --sets "${sets[@]}" --out "$ev/RESULTS.md" \
            --title "$(basename "$sdir"), $m model, $mode decoding by $decoder_desc" > "$ev/score.log" 2>&1 \
            && step_clear "$sdir" "score_${m}_$mode" || step_failed "$sdir" "score_${m}_$mode" "$ev/score.log"
    done
}
