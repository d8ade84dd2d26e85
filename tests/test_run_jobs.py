"""local/run_jobs.sh: the job runner of run.sh's --decode_cmd (local, and Slurm through a stand-in sbatch)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_JOBS = str(ROOT / "local" / "run_jobs.sh")

# Runs an array's tasks one after another as sbatch --wait would (task id in SLURM_ARRAY_TASK_ID,
# output to --output with %a replaced); records its arguments; non-zero if a task failed.
FAKE_SBATCH = r"""#!/usr/bin/env bash
printf '%s\n' "$@" > "$FAKE_SBATCH_ARGS"
array= out= wrap=
while [ $# -gt 0 ]; do
    case $1 in
        --array) array=$2; shift 2 ;; --output) out=$2; shift 2 ;; --wrap) wrap=$2; shift 2 ;;
        --wait|--parsable|--*=*) shift ;; *) shift 2 || exit 9 ;;
    esac
done
range=${array%%\%*}; rc=0
for ((i = ${range%-*}; i <= ${range#*-}; i++)); do
    SLURM_ARRAY_TASK_ID=$i bash -c "$wrap" > "${out//%a/$i}" 2>&1 || rc=1
done
echo 4242
exit $rc
"""


def run(args, cwd, env=None):
    return subprocess.run(["bash", RUN_JOBS, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_local_array_substitutes_job_and_logs_each_task(tmp_path):
    r = run(["JOB=1:3", "logs/t.JOB.log", "bash", "-c", 'echo "task JOB of a b"; echo err JOB >&2'], tmp_path)
    assert r.returncode == 0, r.stderr
    for n in (1, 2, 3):
        lines = (tmp_path / f"logs/t.{n}.log").read_text().splitlines()
        assert lines[0].startswith("# bash -c echo")
        assert f"task {n} of a b" in lines and f"err {n}" in lines
        assert lines[-1].startswith("# Ended (code 0)")


def test_local_failure_is_one_line_naming_a_log_and_every_task_still_runs(tmp_path):
    r = run(["--max_jobs_run", "1", "JOB=1:3", "l/JOB.log", "bash", "-c", "echo ran JOB; [ JOB != 2 ]"], tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip() == "run_jobs.sh: 1 of 3 jobs failed, e.g. l/2.log"
    assert all(f"ran {n}" in (tmp_path / f"l/{n}.log").read_text() for n in (1, 2, 3))
    assert (tmp_path / "l/2.log").read_text().splitlines()[-1].startswith("# Ended (code 1)")


def test_max_jobs_run_bounds_the_tasks_running_at_once(tmp_path):
    # each task records how many tasks are running when it starts (marker files), then sleeps
    script = 'touch run.JOB; ls run.* | wc -l > seen.JOB; sleep 0.3; rm run.JOB'
    r = run(["--max_jobs_run", "2", "JOB=1:5", "l/JOB.log", "bash", "-c", script], tmp_path)
    assert r.returncode == 0, r.stderr
    seen = [int((tmp_path / f"seen.{n}").read_text()) for n in range(1, 6)]
    assert max(seen) <= 2 and max(seen) == 2


def test_single_job_without_a_range(tmp_path):
    r = run(["one.log", "echo", "JOB stays"], tmp_path)
    assert r.returncode == 0 and "JOB stays" in (tmp_path / "one.log").read_text()


@pytest.mark.parametrize("args,message", [
    (["--foo", "1", "l", "true"], "unknown option --foo"),
    (["JOB=3:1", "l.JOB", "true"], "JOB=3:1: an empty range"),
    (["JOB=a:b", "l.JOB", "true"], "JOB=a:b: expected JOB=A:B with integers A <= B"),
    (["l.JOB", "true"], "l.JOB: the log names JOB but no JOB=A:B range was given"),
    (["--max_jobs_run", "two", "JOB=1:2", "l.JOB", "true"], "--max_jobs_run: expected a non-negative integer, got 'two'"),
    (["--gpu"], "--gpu needs a value"),
    (["l"], "usage: run_jobs.sh"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    r = run(args, tmp_path)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def _fake_sbatch(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sbatch").write_text(FAKE_SBATCH)
    (bindir / "sbatch").chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_SBATCH_ARGS": str(tmp_path / "sbatch.args")}


def test_slurm_submits_one_array_with_the_resources_asked(tmp_path):
    env = _fake_sbatch(tmp_path)
    r = run(["--slurm", "--gpu", "1", "--mem", "8G", "--max_jobs_run", "2", "--sbatch_opt", "--partition=gpu",
             "JOB=1:3", "s/t.JOB.log", "bash", "-c", 'echo "task JOB $SLURM_ARRAY_TASK_ID" "a b"'], tmp_path, env)
    assert r.returncode == 0, r.stderr
    args = (tmp_path / "sbatch.args").read_text().splitlines()
    assert args[args.index("--array") + 1] == "1-3%2"
    assert args[args.index("--output") + 1] == "s/t.%a.log"
    assert args[args.index("--gres") + 1] == "gpu:1" and args[args.index("--mem") + 1] == "8G"
    assert "--wait" in args and "--partition=gpu" in args
    for n in (1, 2, 3):
        text = (tmp_path / f"s/t.{n}.log").read_text()
        assert f"task {n} {n} a b" in text and "# Ended (code 0)" in text


def test_slurm_failure_names_the_failed_task_log(tmp_path):
    env = _fake_sbatch(tmp_path)
    r = run(["--slurm", "JOB=1:2", "s/JOB.log", "bash", "-c", "[ JOB = 1 ]"], tmp_path, env)
    assert r.returncode == 1
    assert r.stderr.strip() == "run_jobs.sh: 1 of 2 Slurm tasks failed, e.g. s/2.log"


def test_slurm_without_sbatch_is_one_line(tmp_path):
    r = run(["--slurm", "JOB=1:2", "s/JOB.log", "true"], tmp_path, {"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and r.stderr.strip() == "run_jobs.sh: --slurm: sbatch is not on PATH"
