#!/usr/bin/env python3
"""Random language-specific masks at a sparsity: the init_masks of random-mask pathways.

    python -m espnet_pathways.bin.random_masks --asr_config exp/asr_train_demo/config.yaml \\
        --langs en fr it nl --sparsity 0.7 --seed 0 --out exp/pathways/pathways_random/init_masks.pt

The ASR Pathways paper's control: each language gets its own uniformly random mask (per
tensor by default, ``--scope global`` over all prunable tensors) with exactly the keep
count magnitude pruning would keep, over the tensors ``pathways.prunable`` of
``--pathways_config`` selects (default: linear weights of encoder, predictor and joiner).
The masks depend only on ``--seed``, the language code and the tensor shapes, so a
language's mask does not change when another language is added.  Errors: one
``random_masks: error: ...`` line, exit status 1; nothing is written.
"""

from __future__ import annotations

import argparse
import os
import sys
import zlib
from pathlib import Path


def language_generator(seed: int, lang: str):
    import torch

    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(lang.encode())) % (2**63))


def make(model, langs, sparsity: float, seed: int, prunable=None, scope: str = "tensor"):
    """PathwayMasks {lang: random MaskSet} over ``model``'s prunable tensors."""
    from espnet_pathways.masks import PathwayMasks, prunable_names
    from espnet_pathways.pruning import random_prune

    names = prunable_names(model, **(prunable or {}))
    if not names:
        raise ValueError("pathways.prunable selects no parameter of the model")
    return PathwayMasks({
        lang: random_prune(model, sparsity, generator=language_generator(seed, lang), names=names, scope=scope).masks
        for lang in langs
    })


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--asr_config", type=Path, required=True, help="the dense run's config.yaml (builds the model)")
    p.add_argument("--pathways_config", type=Path, default=None,
                   help="a training config whose pathways.prunable selects the tensors (default: linear weights)")
    p.add_argument("--langs", nargs="+", required=True)
    p.add_argument("--sparsity", type=float, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scope", choices=("tensor", "global"), default="tensor")
    p.add_argument("--out", type=Path, required=True, help="masks file to write")
    args = p.parse_args(argv)

    def fail(msg: str) -> None:
        print(f"random_masks: error: {msg}", file=sys.stderr)
        sys.exit(1)

    from espnet_pathways.controller import PathwaysConfig, PathwaysError, check_language_code
    from espnet_pathways.export import read_config
    from espnet_pathways.pruning import check_sparsity

    try:
        check_sparsity(args.sparsity, "--sparsity")
        if len(set(args.langs)) != len(args.langs):
            raise ValueError(f"--langs: a language is given twice: {' '.join(args.langs)}")
        for lang in args.langs:
            check_language_code(lang, "--langs")
        for opt in ("asr_config", "pathways_config"):
            path = getattr(args, opt)
            if path is not None and not path.is_file():
                raise ValueError(f"--{opt} {path}: no such file")
        prunable = {}
        if args.pathways_config is not None:
            cfg = read_config(args.pathways_config)
            section = dict(cfg.get("pathways") or {})
            section.setdefault("mode", "pathways")
            section.setdefault("init_masks", "unused")
            prunable = PathwaysConfig(**section).prunable_kwargs()
        config = read_config(args.asr_config)
    except (ValueError, PathwaysError, TypeError) as e:
        fail(str(e))
    from espnet_pathways.espnet_compat import install_transducer_loss
    from espnet2.tasks.asr_transducer import ASRTransducerTask

    install_transducer_loss()
    try:
        model = ASRTransducerTask.build_model(argparse.Namespace(**config))
    except Exception as e:  # noqa: BLE001 - any failure to build is the config's
        fail(f"--asr_config {args.asr_config}: cannot build the model: {e}")
    try:
        masks = make(model, args.langs, args.sparsity, args.seed, prunable, args.scope)
    except ValueError as e:
        fail(str(e))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    masks.save(tmp)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: " + ", ".join(f"{k} sparsity {v:.4f}" for k, v in masks.sparsity().items()))


if __name__ == "__main__":
    main()
