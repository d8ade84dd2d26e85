#!/usr/bin/env python3
"""Benchmark the RNN-T loss: torchaudio's kernel vs the pure-PyTorch loss, side by side.

    python bench/rnnt_loss.py                 # CPU (and CUDA if present), demo + paper sizes
    python bench/rnnt_loss.py --sizes demo --devices cpu
    python bench/rnnt_loss.py --tiny          # seconds-long smoke run

Times forward + backward (``reduction="mean"``, as ESPnet calls it) on random logits with
variable lengths (the maxima present, as torchaudio requires), after warm-up, as the median of
the repeats.  Every (device, size, implementation) runs in its own subprocess so that
neither the allocator state nor the peak memory of one variant leaks into another; the
variants are alternated over ``--rounds`` rounds and the best median is kept (the machine
may be shared).  Peak memory: CUDA ``torch.cuda.max_memory_allocated`` minus the inputs;
CPU: the rise of ``ru_maxrss`` (peak resident set) during the timed loss calls, above what
the process held with its inputs allocated (an upper-bound style estimate, not exact
allocator accounting).  A separate subprocess compares values (per sequence) and gradients.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {
    "demo": (8, 100, 30, 256),
    "paper": (16, 200, 60, 1024),
    "tiny": (2, 10, 5, 16),
}
IMPLS = ("torchaudio", "pytorch")


def _make_inputs(B, T, U, V, device, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, U + 1, V, generator=g)
    tl = torch.randint(max(1, int(0.6 * T)), T + 1, (B,), generator=g)
    ul = torch.randint(max(0, int(0.6 * U)), U + 1, (B,), generator=g)
    tl[0], ul[0] = T, U
    tgt = torch.randint(1, V, (B, U), generator=g)
    return (
        logits.to(device),
        tgt.to(device=device, dtype=torch.int32),
        tl.to(device=device, dtype=torch.int32),
        ul.to(device=device, dtype=torch.int32),
    )


def _fn(impl):
    from espnet_pathways.loss import rnnt_loss_pytorch, rnnt_loss_torchaudio

    return rnnt_loss_torchaudio if impl == "torchaudio" else rnnt_loss_pytorch


def worker_time(impl, size, device, warmup, repeats):
    import torch

    B, T, U, V = size
    cuda = device.startswith("cuda")
    fn = _fn(impl)
    if impl == "torchaudio":  # load libtorchaudio before measuring memory
        from espnet_pathways.loss import _get_torchaudio_rnnt

        _get_torchaudio_rnnt()
    logits, tgt, tl, ul = _make_inputs(B, T, U, V, device)
    logits.requires_grad_(True)

    def step():
        logits.grad = None
        loss = fn(logits, tgt, tl, ul, reduction="mean")
        loss.backward()
        if cuda:
            torch.cuda.synchronize()
        return loss

    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    for _ in range(warmup):
        step()
    times, cpu_times = [], []
    for _ in range(repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    if cuda:
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "cpu_s": statistics.median(cpu_times),
        "peak_mib": peak,
    }


def worker_check(size, device):
    """Values (per sequence) and gradients of both implementations on float32 logits, and
    their distance to a float64 reference (the pure-PyTorch loss on float64 logits, one
    sequence at a time to bound memory)."""
    import torch

    B, T, U, V = size
    logits, tgt, tl, ul = _make_inputs(B, T, U, V, device, seed=1)
    out = {}
    for impl in IMPLS:
        x = logits.clone().requires_grad_(True)
        loss = _fn(impl)(x, tgt, tl, ul, reduction="none")
        loss.sum().backward()
        out[impl] = (loss.detach(), x.grad)
        del x
    (va, ga), (vp, gp) = out["torchaudio"], out["pytorch"]
    res = {
        "dloss": float((va - vp).abs().max()),
        "rel_dloss": float(((va - vp).abs() / va.abs().clamp_min(1e-6)).max()),
        "dgrad": float((ga - gp).abs().max()),
        "loss_mean": float(va.mean()),
        "err64": {impl: [0.0, 0.0] for impl in IMPLS},
    }
    fn64 = _fn("pytorch")
    for b in range(B):
        t, u = int(tl[b]), int(ul[b])
        x = logits[b : b + 1, :t, : u + 1].double().requires_grad_(True)
        v64 = fn64(x, tgt[b : b + 1, :u], tl[b : b + 1], ul[b : b + 1], reduction="sum")
        v64.backward()
        for impl, (v, g) in out.items():
            e = res["err64"][impl]
            e[0] = max(e[0], abs(float(v[b]) - float(v64)))
            e[1] = max(e[1], float((g[b : b + 1, :t, : u + 1].double() - x.grad).abs().max()))
    return res


def _run_worker(args_list, timeout):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, __file__, "--_worker", json.dumps(args_list)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt_ms(r, device):
    if r is None or "error" in r:
        return "err"
    if device.startswith("cuda"):
        return f"{r['median_s'] * 1e3:.1f}"
    # process CPU time (all threads) next to wall time: robust on a shared machine
    return f"{r['median_s'] * 1e3:.1f} (cpu {r['cpu_s'] * 1e3:.0f})"


def _fmt_mem(r, device):
    if r is None or "error" in r:
        return "err"
    return f"{r['peak_mib']:.0f}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["demo", "paper"], help=f"names in {list(SIZES)} or B,T,U,V")
    p.add_argument("--devices", nargs="+", default=None, help="cpu, cuda (default: cpu + cuda if available)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2, help="alternate the variants this many times")
    p.add_argument("--no-check", action="store_true", help="skip the value/gradient comparison")
    p.add_argument("--tiny", action="store_true", help="smoke run: tiny size, 1 warm-up, 2 repeats, 1 round")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per subprocess")
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a._worker:
        spec = json.loads(a._worker)
        if spec[0] == "time":
            res = worker_time(spec[1], tuple(spec[2]), spec[3], spec[4], spec[5])
        else:
            res = worker_check(tuple(spec[1]), spec[2])
        print(json.dumps(res))
        return 0

    import torch

    if a.tiny:
        a.sizes, a.warmup, a.repeats, a.rounds = ["tiny"], 1, 2, 1
    devices = a.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    sizes = []
    for s in a.sizes:
        sizes.append((s, SIZES[s]) if s in SIZES else (s, tuple(int(v) for v in s.split(","))))

    print(
        f"# RNN-T loss, forward+backward, reduction=mean; torch {torch.__version__}, "
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, torch threads "
        f"{torch.get_num_threads()}, load avg {os.getloadavg()[0]:.2f}"
        + (f", {torch.cuda.get_device_name(0)}" if "cuda" in devices else "")
    )
    sys.path.insert(0, str(ROOT / "bench"))
    from benchutil import command_line, machine_line

    print(machine_line())
    print(command_line())
    print(f"# warm-up {a.warmup}, median of {a.repeats} repeats, best of {a.rounds} rounds\n")
    header = (
        "| device | B, T, U, V | torchaudio ms | pytorch ms | speed-up (wall, cpu) | "
        "peak MiB torchaudio | peak MiB pytorch | max abs Δloss ta–pt (rel) | max abs Δgrad ta–pt | "
        "grad err vs fp64 ta / pt |"
    )
    print(header)
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for dev in devices:
        for name, size in sizes:
            best = {}
            for _ in range(a.rounds):
                for impl in IMPLS:
                    r = _run_worker(["time", impl, list(size), dev, a.warmup, a.repeats], a.timeout)
                    if "error" in r:
                        best[impl] = r
                        continue
                    prev = best.get(impl)
                    if prev is None or "error" in prev or r["median_s"] < prev["median_s"]:
                        best[impl] = r
            ta, pt = best.get("torchaudio"), best.get("pytorch")
            if ta and pt and "error" not in ta and "error" not in pt:
                ratio = f"{ta['median_s'] / pt['median_s']:.1f}×"
                if not dev.startswith("cuda"):
                    ratio += f" (cpu {ta['cpu_s'] / pt['cpu_s']:.1f}×)"
            else:
                ratio = "n/a"
            if not a.no_check:
                c = _run_worker(["check", list(size), dev], a.timeout)
                chk = (
                    f"{c['dloss']:.1e} ({c['rel_dloss']:.0e}) | {c['dgrad']:.1e} | "
                    f"{c['err64']['torchaudio'][1]:.1e} / {c['err64']['pytorch'][1]:.1e}"
                    if "error" not in c
                    else f"err: {c['error']} | err | err"
                )
            else:
                chk = "– | – | –"
            mem_note = "" if dev.startswith("cuda") else "Δ maxrss "
            print(
                f"| {dev} | {', '.join(map(str, size))} ({name}) | {_fmt_ms(ta, dev)} | {_fmt_ms(pt, dev)} | {ratio} | "
                f"{mem_note}{_fmt_mem(ta, dev)} | {mem_note}{_fmt_mem(pt, dev)} | {chk} |",
                flush=True,
            )
            for impl in IMPLS:
                if best.get(impl) and "error" in best[impl]:
                    print(f"<!-- {dev} {name} {impl}: {best[impl]['error']} -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
