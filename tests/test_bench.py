"""Each benchmark in bench/ runs once in its --tiny size and prints its table header.

Benchmarks are not tests: nothing here asserts a speed or a ratio, only that each script
still runs (exit code 0) and prints the header of its table.  The scripts that import
ESPnet's transducer stack (15-27 s on 2 cores, DESIGN.md §5) are marked slow; CI still
runs them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_tiny(script: str, header: str, timeout: int = 300) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--tiny"], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)
    assert proc.returncode == 0, f"{script} --tiny exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    assert header in proc.stdout, f"{script} --tiny did not print {header!r}:\n{proc.stdout[-3000:]}"
    return proc.stdout


def test_mask_updates_tiny():
    run_tiny("mask_updates.py", "| selection kernel (scores given) | scope |")


def test_storage_tiny():
    run_tiny("storage.py", "| format | bytes per language |")


def test_rnnt_loss_tiny():
    run_tiny("rnnt_loss.py", "| device | B, T, U, V | torchaudio ms |")


@pytest.mark.slow
def test_masked_step_tiny():
    run_tiny("masked_step.py", "| variant | step time s")


@pytest.mark.slow
def test_data_tiny():
    run_tiny("data.py", "| num_workers | utterances/s |")


@pytest.mark.slow
def test_decoding_tiny():
    run_tiny("decoding.py", "| language | utts | audio s | dense RTF |")


@pytest.mark.slow
def test_training_tiny():
    run_tiny("training.py", "| config | parameters | steps | epochs | audio s / wall s |")


def test_mask_events_tiny():
    run_tiny("mask_events.py", "| size | scope | prunable | event, unions (s) | event, counts (s) |")


def test_startup_tiny():
    run_tiny("startup.py", "| variant | `import inflect` (s) | ratio |")
