#!/usr/bin/env python3
"""Benchmark mask updates: computing / re-ranking all languages' masks, and exact top-k selection.

    python bench/mask_updates.py                      # 10M and 70M prunable weights (~4 min on 2 idle cores)
    python bench/mask_updates.py --sizes 190M            # one size at a time (~7 GiB RAM peak, ~10 min)
    python bench/mask_updates.py --tiny               # seconds-long smoke run

A synthetic conformer-transducer-shaped weight set (per block: two macaron FFNs d↔4d,
q/k/v/out/pos projections d×d, convolution pointwise 2d×d and d×d; a joiner with a
1024-token output), float32 ~N(0, 0.02²), at 10M, 70M and 190M prunable parameters
(``--sizes``; one size is built, measured and freed before the next).  Four languages,
each holding a random 70 % sparse mask (m_l, drawn independently).

Table 1 -- the plugin (``espnet_pathways.pruning``), four languages, per tensor and global:

* ``magnitude_prune`` at 70 % (what an IMP/LTH/LAP prune event computes per language);
* the Dynamic ASR Pathways event: for each language c_z = m_z ∪ ¬∪_{l≠z} m_l
  (``PathwayMasks.candidates``) and ``rerank(weights, m_z, candidates=c_z)``, as
  ``PathwaysController._adaptive_event`` runs them (without the final in-place θ ⊙ ∪ m).

and their share of training time: an IMP-style prune every T steps costs
t_prune / (T · t_step); Dynamic Pathways runs an event every n steps (re-rank, or prune
every T) and costs ≈ t_event / (n · t_step).  T and n: ``conf/pathways/dynamic_pathways.yaml``
(``--T``/``--n`` override); t_step: ``--step-time`` (default 2.0 s, DESIGN.md §8's CPU
time per batch of the demo model -- pass the ``dense`` row of ``bench/masked_step.py``
for a measured one).  The last column is the n at which the event costs 1 % of training.

Table 2 -- exact selection kernels on the same scores (|θ|, −1 outside c_z), four
languages, time and ratio to the plugin's ``_top_k`` (``kthvalue`` + ties by ``cumsum``),
each asserted to keep exactly k elements (per tensor, or in total for global scope) and
compared bit for bit with the plugin's mask (the plugin's rule: ties to the lower index):

* ``kthvalue`` -- the k-th largest by ``torch.kthvalue``, ties resolved by ``nonzero``
  (the plugin's threshold, cheaper tie handling);
* ``topk`` -- ``torch.topk`` of the smaller side (k or n−k+1, unsorted), its extreme value
  as the threshold;
* ``sort`` -- ``torch.sort`` (skipped above ``--sort-max`` elements per size: ~20 s per
  70M-element sort on this machine);
* ``radix`` -- exact radix select on the float bits: a 2^15-bin ``bincount`` of the high
  16 bits, then a 2^16-bin one of the low 16 bits inside the boundary bin;
* ``histogram`` -- ``torch.histc`` (4096 bins) to bracket the threshold, an exact count
  check (widening the bracket if float binning misplaced it), ``kthvalue`` inside it;
* ``sample`` -- a 64k-element random sample brackets the quantile (±4σ), the same exact
  check/widening, ``kthvalue`` inside the bracket.

Timings: table 1, median [min–max] over ``--repeats`` repeats of the 4-language total
(each language timed on its own, results checked untimed), the two operations
alternating; table 2, each kernel timed language by language (scores computed untimed,
one language at a time), the kernels rotated for every (repeat, language); the 4-language
time is the sum of the per-language medians, the ratio is per (repeat, language) sample.
The machine may be shared: the load average is printed.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchutil import ROOT, command_line, loadavg, machine_line, med, rotate, spread  # noqa: E402

LANGS = ("en", "fr", "it", "nl")
SPARSITY = 0.7
SIZES = {  # name -> (d, blocks); prunable parameters ≈ blocks · 24 d² + joiner
    "tiny": (64, 2),
    "10M": (256, 6),
    "70M": (512, 11),
    "190M": (768, 13),
}
VOCAB = 1024


# -- the weights --------------------------------------------------------------------------
def shapes(d: int, blocks: int) -> dict[str, tuple[int, int]]:
    out = {}
    for b in range(blocks):
        p = f"encoder.encoders.{b}."
        for ff in ("feed_forward", "feed_forward_macaron"):
            out[p + ff + ".w_1.weight"] = (4 * d, d)
            out[p + ff + ".w_2.weight"] = (d, 4 * d)
        for lin in ("linear_q", "linear_k", "linear_v", "linear_out", "linear_pos"):
            out[p + "self_attn." + lin + ".weight"] = (d, d)
        out[p + "conv_module.pointwise_conv1.weight"] = (2 * d, d)
        out[p + "conv_module.pointwise_conv2.weight"] = (d, d)
    out["joint_network.lin_enc.weight"] = (d, d)
    out["joint_network.lin_dec.weight"] = (d, d)
    out["joint_network.lin_out.weight"] = (VOCAB, d)
    return out


def make_weights(size: str, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(s, generator=g).mul_(0.02) for n, s in shapes(*SIZES[size]).items()}


def make_masks(weights, seed: int = 1):
    import torch

    from espnet_pathways.masks import MaskSet, PathwayMasks

    g = torch.Generator().manual_seed(seed)
    return PathwayMasks({
        lang: MaskSet({n: torch.rand(w.shape, generator=g) >= SPARSITY for n, w in weights.items()}) for lang in LANGS
    })


# -- exact selection kernels: bool mask of the k largest scores, ties to the lower index ----
def _finish(keep, tie, k: int):
    """``keep`` (strictly above the threshold) plus the first ties up to k in total."""
    r = k - int(keep.sum())
    if r > 0:
        idx = tie.nonzero().squeeze(1)[:r]
        keep[idx] = True
    return keep


def _edge(s, k: int):
    import torch

    n = s.numel()
    if k >= n:
        return torch.ones_like(s, dtype=torch.bool)
    if k <= 0:
        return torch.zeros_like(s, dtype=torch.bool)
    return None


def sel_plugin(s, k):
    from espnet_pathways.pruning import _top_k

    return _top_k(s, k)


def sel_kthvalue(s, k):
    e = _edge(s, k)
    if e is not None:
        return e
    thr = s.kthvalue(s.numel() - k + 1).values
    return _finish(s > thr, s == thr, k)


def sel_topk(s, k):
    import torch

    e = _edge(s, k)
    if e is not None:
        return e
    n = s.numel()
    if k <= n - k + 1:
        thr = torch.topk(s, k, largest=True, sorted=False).values.min()
    else:
        thr = torch.topk(s, n - k + 1, largest=False, sorted=False).values.max()
    return _finish(s > thr, s == thr, k)


def sel_sort(s, k):
    import torch

    e = _edge(s, k)
    if e is not None:
        return e
    thr = torch.sort(s).values[s.numel() - k]
    return _finish(s > thr, s == thr, k)


def _last_at_least(counts_ge, k: int) -> int:
    """Largest bin b with counts_ge[b] >= k (counts_ge non-increasing)."""
    return int((counts_ge >= k).sum()) - 1


def sel_radix(s, k):
    """Radix select (espnet_pathways.pruning's, which _top_k uses off the CPU from RADIX_MIN_NUMEL scores on)."""
    from espnet_pathways.pruning import _radix_keys, _radix_kth_largest

    e = _edge(s, k)
    if e is not None:
        return e
    key = _radix_keys(s)
    tkey = _radix_kth_largest(key, k)[0]
    return _finish(key > tkey, key == tkey, k)


def _bracketed(s, k: int, lo: float, hi: float, step: float):
    """Exact k-th largest, given a guess [lo, hi] for it: count, widen until it holds, kthvalue inside."""
    while True:
        above = int((s > hi).sum())
        if above >= k:  # the threshold is above the bracket
            lo, hi, step = hi, hi + step, step * 2
            continue
        band = (s >= lo) & (s <= hi)
        nb = int(band.sum())
        if above + nb < k:  # below the bracket
            lo, step = lo - step, step * 2
            continue
        sub = s[band]
        thr = sub.kthvalue(nb - (k - above) + 1).values
        return _finish(s > thr, s == thr, k)


def sel_histogram(s, k, bins: int = 4096):
    import torch

    e = _edge(s, k)
    if e is not None:
        return e
    mn, mx = (float(v) for v in torch.aminmax(s))
    if mx == mn:
        return _finish(s > mx, s == mx, k)
    h = torch.histc(s, bins, min=mn, max=mx)
    ge = h.flip(0).cumsum(0).flip(0)
    b = max(_last_at_least(ge, k), 0)
    w = (mx - mn) / bins
    return _bracketed(s, k, mn + b * w, mn + (b + 1) * w, w)


def sel_sample(s, k, m: int = 65536, seed: int = 0):
    import torch

    e = _edge(s, k)
    if e is not None:
        return e
    n = s.numel()
    if n <= 4 * m:  # too small for sampling to pay: plain kthvalue
        return sel_kthvalue(s, k)
    g = torch.Generator().manual_seed(seed)
    smp = s[torch.randint(n, (m,), generator=g)].sort().values
    q = (n - k) / n  # share below the threshold
    z = 4 * math.sqrt(q * (1 - q) / m) + 2 / m
    ilo, ihi = math.floor((q - z) * m), math.ceil((q + z) * m)
    lo = float(smp[ilo]) if ilo >= 0 else float(smp[0]) - 1
    hi = float(smp[ihi]) if ihi < m else float(smp[-1]) + 1
    return _bracketed(s, k, lo, hi, max(hi - lo, 1e-12))


PLUGIN_KERNEL = "plugin _top_k (np.partition on the CPU; radix select or kthvalue elsewhere)"
KERNELS = {
    PLUGIN_KERNEL: sel_plugin,
    "kthvalue": sel_kthvalue,
    "topk": sel_topk,
    "sort": sel_sort,
    "radix": sel_radix,
    "histogram": sel_histogram,
    "sample": sel_sample,
}


def self_check() -> None:
    """Every kernel on tie-heavy inputs with −1 fillers and edge k: same mask as the plugin."""
    import torch

    g = torch.Generator().manual_seed(0)
    for n in (1, 7, 1000, 300_000):
        s = torch.randint(0, 5, (n,), generator=g).float() / 4  # many ties
        s[torch.rand(n, generator=g) < 0.4] = -1.0
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            ref = sel_plugin(s.clone(), k)
            for name, fn in KERNELS.items():
                m = fn(s.clone(), k)
                assert int(m.sum()) == k and torch.equal(m, ref), f"self-check: {name} n={n} k={k}"


# -- measurements -------------------------------------------------------------------------
def plugin_ops(weights, masks, scope: str):
    """name -> callable(lang) running the plugin operation for one language."""
    from espnet_pathways.pruning import magnitude_prune, rerank

    names = list(weights)

    def prune(lang):
        return magnitude_prune(weights, SPARSITY, names=names, scope=scope).masks

    def event(lang):
        cand = masks.candidates(lang)
        return rerank(weights, masks[lang], candidates=cand, scope=scope).masks

    return {"magnitude_prune ×4 (IMP/LTH/LAP prune)": prune, "dynamic event ×4 (candidates + rerank)": event}


def check_plugin_counts(ms, weights, masks, op: str, scope: str, lang: str) -> None:
    """Exact sparsity of the plugin's output (correctness, asserted)."""
    from espnet_pathways.pruning import keep_count

    if op.startswith("magnitude"):
        want = ({n: keep_count(w.numel(), SPARSITY) for n, w in weights.items()} if scope == "tensor"
                else keep_count(sum(w.numel() for w in weights.values()), SPARSITY))
    else:
        want = masks[lang].kept_per_tensor() if scope == "tensor" else masks[lang].kept()
    got = ms.kept_per_tensor() if scope == "tensor" else ms.kept()
    assert got == want, f"{op} {scope} {lang}: kept counts differ from the target"


def _packed(flat_bool):
    from espnet_pathways.masks import pack_bits

    return pack_bits(flat_bool)


def run_plugin(weights, masks, scope: str, repeats: int):
    """Time the plugin's operations, language by language (4-language total per repeat; the
    operations alternate); assert exact counts; return the times and the dynamic event's
    masks, bit-packed (= the plugin's ``_top_k`` on the kernels' scores)."""
    import torch

    ops = plugin_ops(weights, masks, scope)
    times = {k: [] for k in ops}
    ref = {}
    for rep in range(repeats):
        for k in rotate(list(ops), rep):
            total = 0.0
            for lang in LANGS:
                t = time.perf_counter()
                out = ops[k](lang)
                total += time.perf_counter() - t
                if rep == 0:  # untimed
                    check_plugin_counts(out, weights, masks, k, scope, lang)
                    if k.startswith("dynamic"):
                        ref[lang] = _packed(torch.cat([m.reshape(-1) for m in out._m.values()]))
                del out
            times[k].append(total)
    return times, ref


def lang_scores(weights, masks, lang):
    """Flat float scores (|θ| inside c_z, −1 outside), as the plugin ranks them."""
    import torch

    from espnet_pathways.pruning import _scores

    cand = masks.candidates(lang)
    return torch.cat([_scores(n, w, cand[n]) for n, w in weights.items()])


def run_kernels(weights, masks, ref, scope: str, kernels: dict, repeats: int):
    """Time each kernel language by language (scores computed untimed, one language at a
    time to bound memory; kernels interleaved); assert exact counts; compare with ``ref``.

    Returns per kernel the list of per-(repeat, language) times, and whether every mask
    equalled the plugin's.
    """
    import torch

    sizes = [w.numel() for w in weights.values()]
    times = {k: [] for k in kernels}
    same = {k: True for k in kernels}
    i = 0
    for rep in range(repeats):
        for lang in LANGS:
            s = lang_scores(weights, masks, lang)
            want = masks[lang].kept() if scope == "global" else list(masks[lang].kept_per_tensor().values())
            for name in rotate(list(kernels), i):
                fn = kernels[name]
                t = time.perf_counter()
                if scope == "global":
                    m = fn(s, want)
                else:
                    m = torch.cat([fn(part, k) for part, k in zip(torch.split(s, sizes), want)])
                times[name].append(time.perf_counter() - t)
                # correctness, untimed: exact kept counts, per tensor or in total
                if scope == "global":
                    assert int(m.sum()) == want, f"{name}: kept {int(m.sum())} != {want}"
                else:
                    got = [int(p.sum()) for p in torch.split(m, sizes)]
                    assert got == want, f"{name}: per-tensor kept counts differ from the target"
                same[name] &= bool(torch.equal(_packed(m), ref[lang]))
                del m
            i += 1
            del s
    return times, same


def read_T_n(path: Path) -> tuple[int, int]:
    import yaml

    cfg = yaml.safe_load(path.read_text())["pathways"]
    return int(cfg["prune_interval"]), int(cfg["rerank_interval"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["10M", "70M"], choices=list(SIZES))
    p.add_argument("--scopes", nargs="+", default=["tensor", "global"], choices=["tensor", "global"])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--kernels", nargs="+", default=None, help="subset of the selection kernels (default: all)")
    p.add_argument("--sort-max", type=float, default=20e6, help="skip sort above this many prunable elements")
    p.add_argument("--config", type=Path, default=ROOT / "conf" / "pathways" / "dynamic_pathways.yaml")
    p.add_argument("--T", type=int, default=None, help="prune interval T (default: from --config)")
    p.add_argument("--n", type=int, default=None, help="re-rank interval n (default: from --config)")
    p.add_argument("--step-time", type=float, default=None,
                   help="seconds per training step (default 2.0: DESIGN.md §8, demo model on this CPU)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--tiny", action="store_true", help="smoke run: tiny size, 1 repeat")
    a = p.parse_args(argv)
    if a.tiny:
        a.sizes, a.repeats = ["tiny"], 1

    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    T_cfg, n_cfg = read_T_n(a.config)
    T = a.T or T_cfg
    n = a.n or n_cfg
    kernels = {k: v for k, v in KERNELS.items() if a.kernels is None or k in a.kernels or k.split()[0] in a.kernels}

    print("# Mask updates: 4 languages, 70% sparsity, espnet_pathways.pruning vs exact selection kernels")
    print(machine_line())
    print(command_line())
    src = "--step-time"
    if a.step_time is None:
        a.step_time, src = 2.0, "DESIGN.md §8: demo model, 2-core CPU"
    self_check()
    print(f"# share of training: T = {T}, n = {n} ({a.config.relative_to(ROOT) if a.config.is_relative_to(ROOT) else a.config}"
          f"{', overridden' if (a.T or a.n) else ''}), step time {a.step_time:g} s ({src}); "
          f"median [min–max] of {a.repeats} interleaved repeats\n")

    for size in a.sizes:
        weights = make_weights(size)
        masks = make_masks(weights)
        total = sum(w.numel() for w in weights.values())
        print(f"## {size}: {total / 1e6:.1f}M prunable parameters in {len(weights)} tensors "
              f"(load average {loadavg()})\n", flush=True)
        t1, t2 = [], []
        for scope in a.scopes:
            times, ref = run_plugin(weights, masks, scope, a.repeats)
            for k, ts in times.items():
                t = med(ts)
                if k.startswith("magnitude"):
                    share, per = t / (T * a.step_time), f"T = {T}"
                else:
                    share, per = t / (n * a.step_time), f"n = {n}"
                t1.append(f"| {k} | {scope} | {spread(ts, '{:.3f}')} | {100 * share:.1f} % (every {per}) | "
                          f"{math.ceil(t / (0.01 * a.step_time))} |")
            ks = dict(kernels)
            skipped = [k for k in ks if k == "sort" and total > a.sort_max]
            for k in skipped:
                del ks[k]
            ktimes, same = run_kernels(weights, masks, ref, scope, ks, a.repeats)
            del ref
            base = ktimes.get(PLUGIN_KERNEL)
            nl = len(LANGS)
            for k, ts in ktimes.items():
                # 4-language time: sum over languages of each language's median over repeats
                four = sum(med(ts[j::nl]) for j in range(nl))
                ratio = spread([t / b for t, b in zip(ts, base)], "{:.2f}") if base else "n/a"
                t2.append(f"| {k} | {scope} | {four:.3f} | {ratio} | yes (asserted) | {'yes' if same[k] else 'no'} |")
            for k in skipped:
                t2.append(f"| {k} | {scope} | skipped (> --sort-max {a.sort_max:.0e} elements) | | | |")
            gc.collect()
        print("| operation (4 languages) | scope | time s, median [min–max] | share of training | n for 1 % |")
        print("|---|---|---|---|---|")
        print("\n".join(t1))
        print(f"\n| selection kernel (scores given) | scope | time s, 4 languages | ratio to plugin _top_k, "
              f"per language, median [min–max] | exact kept counts | same mask as plugin |")
        print("|---|---|---|---|---|---|")
        print("\n".join(t2))
        print(f"\n# load average after {size}: {loadavg()}\n", flush=True)
        del weights, masks
        gc.collect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
