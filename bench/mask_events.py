#!/usr/bin/env python3
"""Benchmark one Dynamic ASR Pathways event: the counted implementation against the union-based one.

    python bench/mask_events.py                         # 70M prunable weights, per tensor and global
    python bench/mask_events.py --sizes 70M 190M        # + 190M (about 3 GiB of weights and masks)
    python bench/mask_events.py --tiny                  # seconds-long smoke run
    python bench/mask_events.py --sizes 190M --device cuda   # on a GPU (peak memory: CUDA allocator)

The event (espnet_pathways/modes/dynamic.py, a re-rank at the current kept counts): for each
of four languages z in turn, c_z = m_z ∪ ¬∪_{l≠z} m_l, then m_z ← top-|θ| inside c_z, the
next language seeing the updated masks; at the end the union of all masks.  Two
implementations, side by side in one run, each in a fresh process (so that its peak memory
is its own):

* ``unions`` -- the earlier code: c_z from three unions of the other languages' masks, the
  union at the end from four more; global scope ranks ``torch.cat`` of every tensor's scores;
* ``counts`` -- the plugin now: one count per weight of the languages holding it
  (``PathwayMasks.holders``), kept current as each mask changes, c_z = m_z ∪ (count = 0);
  |θ| and its radix keys made once per event (``pruning.Magnitudes``), each language's
  scores one masking pass; global scope selects tensor by tensor
  (``pruning._select_global_by_parts``).

Columns: the event's wall time (median [min–max] over ``--repeats`` runs, each on the same
weights and starting masks) and the extra peak resident memory of the process during the
event (``ru_maxrss`` after − before, the weights and starting masks already allocated; on CUDA
``max_memory_allocated`` during the event − allocated before it).  The
two implementations' masks are compared bit for bit (asserted).  Synthetic weights as in
bench/mask_updates.py (conformer-transducer shapes, float32 ~N(0, 0.02²)), each language a
random 70 % sparse mask.  The machine may be shared: the load average is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchutil import command_line, machine_line, spread  # noqa: E402
from mask_updates import LANGS, SIZES, make_masks, make_weights  # noqa: E402


def event_unions(weights, masks, scope: str):
    """The union-based event (the code before holder counts), global scope through torch.cat."""
    import torch

    from espnet_pathways.masks import MaskSet
    from espnet_pathways.pruning import _scores, _top_k

    for z in LANGS:
        cand = ~masks.union([x for x in LANGS if x != z]) | masks[z]
        if scope == "tensor":
            new = {n: _top_k(_scores(n, w, cand[n]), int(masks[z][n].sum())).view(w.shape) for n, w in weights.items()}
        else:
            flat = _top_k(torch.cat([_scores(n, w, cand[n]) for n, w in weights.items()]), masks[z].kept())
            new = dict(zip(weights, (p.view(w.shape) for p, w in zip(torch.split(flat, [w.numel() for w in weights.values()]),
                                                                        weights.values()))))
        masks[z] = MaskSet(new)
    return masks.union()


def event_counts(weights, masks, scope: str):
    """The plugin's event (espnet_pathways.modes.dynamic.DynamicPathways.run_event, re-rank)."""
    from espnet_pathways.pruning import Magnitudes, rerank

    holders = masks.holders()
    mags = Magnitudes(weights, list(weights))
    for z in LANGS:
        old = masks[z]
        new = rerank(weights, old, candidates=masks.candidates(z, holders), scope=scope, magnitudes=mags).masks
        masks[z] = new
        holders.replace(old, new)
    return holders.union()


def digest(masks, union) -> str:
    import torch

    h = hashlib.sha256()
    for z in LANGS:
        for m in masks[z]._m.values():
            h.update(m.cpu().numpy().tobytes())
    h.update(torch.cat([m.reshape(-1) for m in union._m.values()]).cpu().numpy().tobytes())
    return h.hexdigest()


def child(size: str, scope: str, impl: str, repeats: int, threads: int, device: str, out) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)
    cuda = device.startswith("cuda")
    weights = make_weights(size)
    start = make_masks(weights).to(device)
    weights = {n: w.to(device) for n, w in weights.items()}
    fn = event_counts if impl == "counts" else event_unions
    times, dig = [], None
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(repeats):
        masks = type(start)({z: start[z] for z in LANGS})
        t = time.perf_counter()
        union = fn(weights, masks, scope)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        dig = digest(masks, union)
        del masks, union
    if cuda:
        extra = (torch.cuda.max_memory_allocated() - base) / 2**30
    else:
        extra = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 2**20  # KiB -> GiB
    out.send((times, extra, dig, sum(w.numel() for w in weights.values())))


def run(size: str, scope: str, impl: str, repeats: int, threads: int, device: str = "cpu"):
    ctx = mp.get_context("spawn")
    a, b = ctx.Pipe(duplex=False)
    p = ctx.Process(target=child, args=(size, scope, impl, repeats, threads, device, b))
    p.start()
    res = a.recv()
    p.join()
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["70M"], choices=list(SIZES))
    p.add_argument("--scopes", nargs="+", default=["tensor", "global"], choices=["tensor", "global"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (weights, masks and the event on it)")
    p.add_argument("--tiny", action="store_true", help="smoke run: tiny size, 1 repeat")
    a = p.parse_args(argv)
    if a.tiny:
        a.sizes, a.repeats = ["tiny"], 1
    print("# Dynamic ASR Pathways event, 4 languages: holder counts (the plugin) vs unions (before)")
    print(machine_line(a.threads or None))
    print(command_line())
    mem = "extra peak CUDA memory" if a.device.startswith("cuda") else "extra peak RSS"
    print(f"| size | scope | prunable | event, unions (s) | event, counts (s) | ratio | {mem}, unions (GiB) "
          f"| {mem}, counts (GiB) | same masks |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in a.sizes:
        for scope in a.scopes:
            old = run(size, scope, "unions", a.repeats, a.threads, a.device)
            new = run(size, scope, "counts", a.repeats, a.threads, a.device)
            same = old[2] == new[2]
            assert same, f"{size} {scope}: the counted event's masks differ from the union-based event's"
            ratio = sorted(new[0])[len(new[0]) // 2] / max(sorted(old[0])[len(old[0]) // 2], 1e-12)
            print(f"| {size} | {scope} | {new[3] / 1e6:.1f} M | {spread(old[0])} | {spread(new[0])} | {ratio:.2f}× "
                  f"| {old[1]:.2f} | {new[1]:.2f} | {'yes' if same else 'NO'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
