"""Helpers shared by the benchmarks: the machine line printed above every table, spreads.

Imports the standard library only (torch lazily), so ``--help`` stays fast.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NO_GPU = "no GPU in this run"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> str:
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "n/a"


def machine_line(threads: int | None = None) -> str:
    """One comment line: date, host CPU, nproc, load average, torch/python versions, GPU."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else NO_GPU
    th = torch.get_num_threads() if threads is None else threads
    return (
        f"# {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}; {cpu_model()}, nproc {os.cpu_count()}, "
        f"torch threads {th}; load average {loadavg()}; torch {torch.__version__}, "
        f"python {platform.python_version()}; GPU: {gpu}"
    )


def command_line() -> str:
    return "# command: python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def spread(xs: Sequence[float], fmt: str = "{:.3f}") -> str:
    """``median [min–max]`` of a sample."""
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return fmt.format(xs[0])
    return f"{fmt.format(med(xs))} [{fmt.format(min(xs))}–{fmt.format(max(xs))}]"


def rotate(items: Sequence, k: int) -> list:
    """``items`` rotated by ``k``: interleave variants A B C, B C A, ... round by round."""
    k %= max(len(items), 1)
    return list(items[k:]) + list(items[:k])


def random_model(conf: Path, work: Path, vocab: int = 300) -> tuple[Path, Path, str]:
    """The architecture of ``conf`` with random weights, saved as ESPnet saves a run."""
    import torch
    import yaml

    from espnet2.tasks.asr_transducer import ASRTransducerTask

    parser = ASRTransducerTask.get_parser()
    args = parser.parse_args(["--config", str(conf), "--token_list", "x", "--output_dir", str(work)])
    args.token_list = ["<blank>", "<unk>"] + [f"t{i}" for i in range(vocab - 3)] + ["<sos/eos>"]
    args.token_type = "char"
    torch.manual_seed(0)
    model = ASRTransducerTask.build_model(args)
    cfg, mdl = work / "config.yaml", work / "model.pth"
    with cfg.open("w", encoding="utf-8") as f:
        yaml.safe_dump(vars(args), f)
    torch.save(model.state_dict(), mdl)
    return cfg, mdl, f"{conf.relative_to(ROOT)} architecture, random weights"


def espnet_as_the_plugin_runs_it() -> None:
    """Before importing ESPnet: the warp-transducer stand-in and no typeguard instrumentation, as the
    plugin's entry points run it (``espnet_pathways.bin``; bench/startup.py measures the start-up)."""
    from espnet_pathways.espnet_compat import install_transducer_loss, skip_typeguard

    skip_typeguard()
    install_transducer_loss()

