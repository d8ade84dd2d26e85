#!/usr/bin/env python3
"""Benchmark a masked training step against the dense step, side by side in one process.

    python bench/masked_step.py                   # CPU, demo-sized model (conf/train_demo.yaml), ~2 min
    python bench/masked_step.py --size 70m --device cuda --batch 16 --seconds 8   # on a GPU (~70M model)
    python bench/masked_step.py --tiny            # smoke run: tiny model, no memory profile (~20 s)

Same ESPnet streaming transducer, same batch, Adam, gradient clipping; two languages with
random 70 % masks over the prunable tensors (linear weights of encoder, predictor and
joiner), the language alternating at every step (the worst case for a swap: round-robin
batches).  Variants:

* ``dense``: the stock model.
* ``swap``: the plugin's in-place swap alone (:class:`~espnet_pathways.swap.InPlaceMasker`:
  stash + zero the other languages' weights, gradient hooks), plain Adam step.
* ``swap+region``: what training runs: :class:`PathwayTransducerModel` with a
  :class:`PathwaysController` (swap, gradient hooks, and Adam's own step writing weights and
  moments only inside the region: :class:`~espnet_pathways.optim.RegionStep`).
* ``swap+copy``: ``swap+region`` with ``grad_mask: copy`` (each micro-batch's gradient masked as
  a copy before accumulation instead of ``.grad`` in place after it).
* ``swap+find``: ``swap+region`` with ``swap_positions: find`` (the positions the swap zeroes
  found again at every switch instead of cached per mask).
* ``swap+guard``: ``swap+region`` with ``region_step: guard``, the fallback for optimizers the
  region-aware step does not cover (:class:`PathwayGuard`: snapshot before the step, restore
  outside the region after it).
* ``prune``: ``torch.nn.utils.prune.custom_from_mask`` (``weight_orig`` + ``weight_mask``,
  weight recomputed by a forward pre-hook), the mask buffer overwritten per language.
* ``parametrize``: ``torch.ao.pruning``'s ``FakeSparsity`` parametrization
  (``torch.nn.utils.parametrize``), the mask buffer overwritten per language.

``prune`` and ``parametrize`` mask the forward and the gradients but do not keep Adam
from moving the weights outside the mask: compare them with ``swap``; ``swap+region`` and
``swap+guard`` are the pathway-safe steps.  Step time: forward + backward + clipping + optimizer step (+ mask
switch), median over ``--rounds`` × ``--steps`` steps, the variants interleaved round by
round (the machine may be shared).  Peak memory of a step (two steps, so one language
switch): CUDA ``max_memory_allocated``; CPU the peak of the PyTorch profiler's memory
timeline (every tensor the step allocates or touches: parameters, optimizer state,
gradients, activations, temporaries), measured in a separate, untimed pass (one
measurement: the allocation sequence of a step is deterministic, so it has no spread;
``--memory none`` skips it, the analysis takes ~10 s per variant).  Prints a Markdown
table with ratios to ``dense`` and the load average before and after.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchutil import command_line, espnet_as_the_plugin_runs_it, loadavg, machine_line, rotate, spread  # noqa: E402

import torch  # noqa: E402

espnet_as_the_plugin_runs_it()

CONFIGS = {"demo": ROOT / "conf" / "train_demo.yaml", "tiny": ROOT / "conf" / "train_tiny.yaml",
           "70m": ROOT / "bench" / "conf" / "train_70m.yaml"}  # 70m: for a GPU (issue 6)
VARIANTS = ("dense", "swap", "swap+region", "swap+copy", "swap+find", "swap+guard", "prune", "parametrize")
LANGS = ("en", "fr")


def build(size: str, vocab: int, device: str, seed: int = 0):
    from espnet2.tasks.asr_transducer import ASRTransducerTask

    parser = ASRTransducerTask.get_parser()
    args = parser.parse_args(["--config", str(CONFIGS[size]), "--token_list", "x", "--output_dir", "/tmp/x"])
    args.token_list = ["<blank>", "<unk>"] + [f"t{i}" for i in range(vocab - 3)] + ["<sos/eos>"]
    torch.manual_seed(seed)
    return ASRTransducerTask.build_model(args).to(device)


def batch(b: int, seconds: float, tokens: int, vocab: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * 16000)
    speech = 0.1 * torch.randn(b, n, generator=g)
    lengths = torch.linspace(n, int(0.7 * n), b).long()
    text = torch.randint(2, vocab - 1, (b, tokens), generator=g)
    tlen = torch.linspace(tokens, int(0.7 * tokens), b).long()
    return {k: v.to(device) for k, v in dict(speech=speech, speech_lengths=lengths, text=text, text_lengths=tlen).items()}


def random_masks(model, names, seed=1):
    from espnet_pathways.masks import MaskSet, PathwayMasks

    params = dict(model.named_parameters())
    g = torch.Generator().manual_seed(seed)
    return PathwayMasks({
        lang: MaskSet({n: (torch.rand(params[n].shape, generator=g) >= 0.7).to(params[n].device) for n in names})
        for lang in LANGS
    })


class Variant:
    """A model + optimizer + per-step 'switch to language' action."""

    def __init__(self, name, base, masks, names, batch_):
        from torch.nn.utils import parametrize, prune

        self.name = name
        self.model = copy.deepcopy(base)
        self.batch = batch_
        self.masks = masks
        self.masker = self.ctl = None
        modules = dict(self.model.named_modules())
        self.mods = {n: modules[n.rsplit(".", 1)[0]] for n in names}
        if name == "swap":
            from espnet_pathways.swap import InPlaceMasker

            self.masker = InPlaceMasker(self.model, names)
            self.masker.set_support(masks.union())
            self.masker.install_grad_hooks()
        elif name in ("swap+region", "swap+copy", "swap+find", "swap+guard"):
            from espnet_pathways.controller import PathwaysConfig, PathwaysController
            from espnet_pathways.model import PathwayTransducerModel

            PathwayTransducerModel.from_stock(self.model)
            cfg = PathwaysConfig.from_dict({"mode": "pathways", "init_masks": "(random)",
                                            "region_step": "guard" if name == "swap+guard" else "region",
                                            "swap_positions": "find" if name == "swap+find" else "cache",
                                            "grad_mask": "copy" if name == "swap+copy" else "in_place"})
            self.ctl = PathwaysController(self.model, cfg, languages=list(LANGS), init_masks=masks)
        elif name == "prune":
            for n, mod in self.mods.items():
                prune.custom_from_mask(mod, "weight", masks[LANGS[0]][n])
        elif name == "parametrize":
            from torch.ao.pruning.sparsifier.utils import FakeSparsity

            for n, mod in self.mods.items():
                parametrize.register_parametrization(mod, "weight", FakeSparsity(masks[LANGS[0]][n].clone()))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        if self.ctl is not None:
            self.ctl.install(self.opt)
        self.model.train()
        self.i = 0

    @torch.no_grad()
    def _switch(self, lang):
        if self.name == "swap":
            self.masker.activate(lang, self.masks[lang])
        elif self.name == "prune":
            for n, mod in self.mods.items():
                mod.weight_mask.copy_(self.masks[lang][n])
        elif self.name == "parametrize":
            for n, mod in self.mods.items():
                mod.parametrizations.weight[0].mask.copy_(self.masks[lang][n])

    def step(self):
        lang = LANGS[self.i % len(LANGS)]
        self.i += 1
        torch.manual_seed(self.i)
        self._switch(lang)
        kw = dict(self.batch)
        if self.ctl is not None:
            kw["utt_id"] = [f"{lang}_{j}" for j in range(kw["speech"].shape[0])]
        loss, _, _ = self.model(**kw)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.opt.step()
        self.opt.zero_grad()


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory(v: Variant, device: str) -> int:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        v.step()
        v.step()
        sync(device)
        return torch.cuda.max_memory_allocated()
    from torch.profiler import ProfilerActivity, profile

    try:  # a private API of the profiler: report n/a if a torch release changes it
        from torch.profiler._memory_profiler import MemoryProfileTimeline

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
            v.step()
            v.step()
        _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(torch.device("cpu"))
        return max(sum(s) for s in sizes)
    except Exception as e:  # noqa: BLE001
        print(f"# CPU peak memory unavailable ({type(e).__name__}: {e})", file=sys.stderr)
        return float("nan")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(CONFIGS), default="demo")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=4, help="utterances per batch")
    p.add_argument("--seconds", type=float, default=4.0, help="audio per utterance")
    p.add_argument("--tokens", type=int, default=40, help="tokens per utterance")
    p.add_argument("--vocab", type=int, default=300)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--steps", type=int, default=2, help="timed steps per variant per round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--memory", choices=["timeline", "none"], default="timeline",
                   help="peak memory: the profiler's memory timeline (CPU) / max_memory_allocated (CUDA), or skip")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                   help="variants to time (dense is always included: the ratios are to it)")
    p.add_argument("--tiny", action="store_true",
                   help="smoke run: tiny model, 2 rounds x 1 step, 1 warm-up, no memory profile")
    args = p.parse_args(argv)
    if args.tiny:
        args.size, args.rounds, args.steps, args.warmup, args.memory = "tiny", 2, 1, 1, "none"
    if args.threads:
        torch.set_num_threads(args.threads)

    from espnet_pathways.masks import prunable_names

    base = build(args.size, args.vocab, args.device)
    names = prunable_names(base)
    masks = random_masks(base, names)
    b = batch(args.batch, args.seconds, args.tokens, args.vocab, args.device)
    variants = [Variant(v, base, masks, names, b) for v in VARIANTS if v == "dense" or v in args.variants]
    n_params = sum(p.numel() for p in base.parameters())
    n_masked = sum(dict(base.named_parameters())[n].numel() for n in names)

    load_before = loadavg()
    for v in variants:  # warm-up (and the Adam state is created)
        for _ in range(args.warmup):
            v.step()
    sync(args.device)
    times = {v.name: [[] for _ in range(args.rounds)] for v in variants}
    k = 0
    for r in range(args.rounds):
        for _ in range(args.steps):
            for v in rotate(variants, k):  # interleaved: A B C D E, B C D E A, ...
                sync(args.device)
                t = time.perf_counter()
                v.step()
                sync(args.device)
                times[v.name][r].append(time.perf_counter() - t)
            k += 1
    load_after = loadavg()
    if args.memory == "timeline":
        peaks = {v.name: peak_memory(v, args.device) for v in variants}
    else:
        peaks = {v.name: float("nan") for v in variants}

    dense_m = peaks["dense"]
    dense_rounds = [statistics.median(x) for x in times["dense"]]
    print(f"# Masked training step vs dense ({args.size} model, {n_params / 1e6:.2f}M parameters, "
          f"{n_masked / 1e6:.2f}M masked; device {args.device}"
          f"{'' if args.device == 'cpu' else ' ' + torch.cuda.get_device_name()})")
    print(machine_line())
    print(command_line())
    print(f"# batch: {args.batch} x {args.seconds:g} s audio, {args.tokens} tokens, vocab {args.vocab}; "
          f"2 languages, 70% random masks, language switching every step; "
          f"{args.rounds} rounds x {args.steps} steps per variant, interleaved; "
          f"load average {load_before} before, {load_after} after timing\n")
    print("| variant | step time s, median [min–max] | time / dense, median [min–max] over rounds | "
          "peak memory MiB | memory / dense |")
    print("|---|---|---|---|---|")
    for v in variants:
        allt = [t for x in times[v.name] for t in x]
        ratios = [statistics.median(x) / d for x, d in zip(times[v.name], dense_rounds)]
        mem = "–" if peaks[v.name] != peaks[v.name] else f"{peaks[v.name] / 2**20:.1f}"
        mr = "–" if peaks[v.name] != peaks[v.name] else f"{peaks[v.name] / dense_m:.3f}"
        print(f"| {v.name} | {spread(allt)} | {spread(ratios)} | {mem} | {mr} |")


if __name__ == "__main__":
    main()
