#!/usr/bin/env python3
"""Merge per-language masks into one masks file (e.g. the init_masks of ASR Pathways).

    python -m espnet_pathways.bin.merge_masks --out exp/pathways_masks/masks.pt \\
        en=exp/imp_en fr=exp/imp_fr/masks.pt

Each ``LANG=SOURCE`` takes language LANG's mask from SOURCE: a masks file, a run's
output dir (its masks.pt) or a pathways ``checkpoint.pth``.  Errors: one
``merge_masks: error: ...`` line, exit status 1.
"""

import argparse
import sys

from espnet_pathways.controller import PathwaysError


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="masks file to write")
    p.add_argument("sources", nargs="+", metavar="LANG=SOURCE")
    args = p.parse_args(argv)
    try:
        pairs = []
        for s in args.sources:
            lang, sep, src = s.partition("=")
            if not sep or not lang or not src:
                raise PathwaysError(f"{s!r}: expected LANG=SOURCE")
            pairs.append((lang, src))
        from espnet_pathways.export import merge_masks

        masks = merge_masks(pairs, args.out)
    except PathwaysError as e:
        print(f"merge_masks: error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"wrote {args.out}: " + ", ".join(f"{k} sparsity {v:.4f}" for k, v in masks.sparsity().items()))


if __name__ == "__main__":
    main()
