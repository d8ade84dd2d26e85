#!/usr/bin/env python3
"""Mask IoU between languages against monolingual training steps (the budget sweep of issue 10).

    local/mask_iou_sweep.py --out exp/iou_sweep --langs fr nl --system imp \\
        exp/iou_sweep/e1 exp/iou_sweep/e2 exp/iou_sweep/e4

Each positional DIR is a ``run.sh --plugin_dir`` of one monolingual budget (for example
``--plugin_epochs E --prune_interval T``): it holds ``seed<k>/<system>/train_<lang>/`` with
``masks.pt`` and ``train.log``.  For every DIR and seed: the optimizer steps each language's
run took (ESPnet's ``total_count`` of its last epoch), the pruning schedule (from its
``train_<lang>.yaml``) and the IoU of each pair of languages' final masks.  Writes
``<out>/iou_vs_steps.tsv`` and ``<out>/iou_vs_steps.png`` (IoU against the mean steps per
language); ``local/report.py --iou_sweep <out>`` puts both into the report.  Errors (a DIR
without the system's masks for a language): one line, exit status 1, nothing written.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from espnet_pathways.train_log import epoch_results  # noqa: E402


def total_steps(log: Path) -> int | None:
    results = epoch_results(log)
    return results[-1].steps if results else None


def schedule(cfg: Path) -> str:
    import yaml

    try:
        p = (yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}).get("pathways") or {}
    except OSError:
        return "?"
    return f"T={p.get('prune_interval')}, N={p.get('num_rounds')}, final {p.get('final_sparsity')}"


def decoded_cers(results: Path, langs) -> dict:
    """Each language's test CER (%) from a stage-20 ``results.json``; empty when not decoded."""
    import json

    if not results.is_file():
        return {}
    sets = json.loads(results.read_text(encoding="utf-8")).get("sets", {})
    return {lang: sets[f"{lang}_test"]["cer"]["err"] for lang in langs if f"{lang}_test" in sets}


def collect(dirs, langs, system):
    from espnet_pathways.masks import PathwayMasks

    rows = []
    for d in dirs:
        seeds = sorted(d.glob("seed*"))
        if not seeds:
            raise ValueError(f"{d}: no seed<k>/ directories (a run.sh --plugin_dir)")
        for sd in seeds:
            masks, steps = {}, {}
            for lang in langs:
                run = sd / system / f"train_{lang}"
                if not (run / "masks.pt").is_file():
                    raise ValueError(f"{run / 'masks.pt'}: no such file (run stage 14 with --plugin_dir {d})")
                masks[lang] = PathwayMasks.load(run / "masks.pt")[lang]
                steps[lang] = total_steps(run / "train.log")
            cers = decoded_cers(sd / system / "results.json", langs)
            for a, b in itertools.combinations(langs, 2):
                rows.append(dict(dir=str(d), seed=sd.name, pair=f"{a}-{b}", steps_a=steps[a], steps_b=steps[b],
                                 schedule=schedule(sd / system / f"train_{a}.yaml"), iou=masks[a].iou(masks[b]),
                                 sparsity=masks[a].sparsity(), cer_a=cers.get(a), cer_b=cers.get(b)))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--langs", nargs="+", required=True)
    p.add_argument("--system", default="imp", help="monolingual system whose masks are compared (imp, lth)")
    args = p.parse_args(argv)
    if len(args.langs) < 2:
        print("mask_iou_sweep.py: error: --langs needs at least two languages", file=sys.stderr)
        return 1
    try:
        rows = collect(args.dirs, args.langs, args.system)
    except ValueError as e:
        print(f"mask_iou_sweep.py: error: {e}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    head = ["dir", "seed", "pair", "steps_a", "steps_b", "schedule", "iou", "sparsity", "cer_a", "cer_b"]

    def cell(r, k):
        if k in ("iou", "sparsity"):
            return f"{r[k]:.4f}"
        return "" if r[k] is None else str(r[k])

    lines = ["\t".join(head)] + ["\t".join(cell(r, k) for k in head) for r in rows]
    (args.out / "iou_vs_steps.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def steps(r):
        return ((r["steps_a"] or 0) + (r["steps_b"] or 0)) / 2

    decoded = [r for r in rows if r["cer_a"] is not None and r["cer_b"] is not None]
    fig, axes = plt.subplots(1, 2 if decoded else 1, figsize=(11 if decoded else 6.5, 4), squeeze=False)
    ax = axes[0][0]
    for pair in sorted({r["pair"] for r in rows}):
        pr = sorted((r for r in rows if r["pair"] == pair), key=steps)
        ax.plot([steps(r) for r in pr], [r["iou"] for r in pr], marker="o", label=pair)
    ax.set_xlabel("optimizer steps per language (monolingual run)")
    ax.set_ylabel("mask IoU between languages")
    ax.set_title(f"{args.system}: masks separate with training")
    ax.legend()
    if decoded:  # each language's test CER against its own steps
        ax = axes[0][1]
        points = {}
        for r in decoded:
            a, b = r["pair"].split("-")
            points.setdefault(a, set()).add((r["steps_a"], r["cer_a"]))
            points.setdefault(b, set()).add((r["steps_b"], r["cer_b"]))
        for lang, pts in sorted(points.items()):
            pts = sorted(pts)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=lang)
        ax.set_xlabel("optimizer steps (monolingual run)")
        ax.set_ylabel("test CER (%), streaming")
        ax.set_title(f"{args.system}: CER of the same runs")
        ax.legend()
    fig.savefig(args.out / "iou_vs_steps.png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    for r in rows:
        cer = f", CER {r['cer_a']}/{r['cer_b']}" if r["cer_a"] is not None else ""
        print(f"  {r['dir']} {r['seed']} {r['pair']}: steps {r['steps_a']}/{r['steps_b']}, IoU {r['iou']:.4f}{cer}")
    print(f"wrote {args.out / 'iou_vs_steps.tsv'} and {args.out / 'iou_vs_steps.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
