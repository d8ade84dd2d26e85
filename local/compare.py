#!/usr/bin/env python3
"""Compare two decoded systems wherever they were run: the claim "A has a lower error rate than B".

    python local/compare.py exp/pathways_lr/seed{k}/pathways_imp exp/pathways/seed{k}/lap_long \\
        --langs en fr it nl --seeds 0 1 2 [--metric cer] [--names "low lr" lap_long] [--json out.json]

Stage 21's report compares the systems of one plugin dir; an ablation (another learning rate,
another ``--plugin_dir``, a dense experiment) lives elsewhere. Each of A and B is a directory
holding ``results.json`` (local/score.py: stage 20 for a plugin system, stage 13 for a dense
experiment); ``{k}`` in a path stands for the seed, a path without it is the same run for every
seed (a dense model). Prints the comparison as stage 21 does (``local/report.py``): the
per-seed differences of the average over ``--langs``, the pooled utterance-level paired
bootstrap interval (``espnet_pathways.stats``), the verdict by the written rule, and the same
per language.

Errors (one line, exit 2): a seed's directory without ``results.json``, a language missing
from it, results without per-utterance scores, a seed or language given twice.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local"))

from report import (  # noqa: E402
    DEFAULT_MIN_SEEDS, DEFAULT_RESAMPLES, METRICS, Parser, ReportError, Stats, System, check_langs_seeds,
    compare, comparison_lines, run_state, seed_list,
)


def system(name: str, pattern: str, langs, seeds) -> System:
    runs = {}
    for k in seeds:
        sdir = Path(pattern.replace("{k}", str(k)))
        res = sdir / "results.json"
        if not res.is_file():
            raise ReportError(f"{res}: no such file (decode the system first: stage 20, or 13 for a dense model)")
        run = run_state(sdir, langs, is_dense=True)
        lost = [lang for lang in langs if lang not in run["wer"]]
        if lost:
            raise ReportError(f"{res}: no results for {' '.join(lost)}")
        no_utts = [lang for lang in langs if lang not in run["utts"]]
        if no_utts:
            raise ReportError(f"{res}: no per-utterance scores for {' '.join(no_utts)} (score again: local/score.py)")
        runs[k] = run
    return System(name, runs, seeds, langs)


def main(argv=None) -> int:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="system A's directory ({k}: the seed)")
    p.add_argument("b", help="system B's directory ({k}: the seed)")
    p.add_argument("--langs", nargs="+", required=True)
    p.add_argument("--seeds", nargs="+", type=seed_list, default=[0], help="training seeds (default: 0)")
    p.add_argument("--names", nargs=2, metavar=("A", "B"), default=None,
                   help="labels in the output (default: the two paths)")
    p.add_argument("--metric", choices=sorted(METRICS), default="cer", help="error rate compared (default cer)")
    p.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples")
    p.add_argument("--min_seeds", type=int, default=DEFAULT_MIN_SEEDS, help="seeds a firm verdict needs")
    p.add_argument("--json", type=Path, default=None, help="also write the comparison here")
    args = p.parse_args(argv)
    try:
        check_langs_seeds(args.langs, args.seeds)
        if args.resamples < 100:
            raise ReportError(f"--resamples must be at least 100, got {args.resamples}")
        na, nb = args.names or (args.a, args.b)
        if na == nb:
            raise ReportError(f"--names: A and B are both {na!r}")
        systems = {na: system(na, args.a, args.langs, args.seeds), nb: system(nb, args.b, args.langs, args.seeds)}
    except ReportError as e:
        print(f"compare.py: error: {e}", file=sys.stderr)
        return 2
    st = Stats(args.metric, args.resamples, args.min_seeds)
    c = compare(systems, na, nb, args.langs, st)
    m = args.metric.upper()
    for name in (na, nb):
        sy = systems[name]
        cells = ", ".join(f"{lang} {sy.cell(args.metric, lang)[1]}" for lang in args.langs)
        print(f"- `{name}` {m}: {cells}; average {sy.avg_cell(args.metric)[1]}")
    for line in comparison_lines(c, args.metric):
        print(line if line.startswith("  ") else f"- {line}")
    if args.json:
        out = dict(a=na, b=nb, a_dir=args.a, b_dir=args.b, metric=args.metric, seeds=c["seeds"], langs=args.langs,
                   per_seed=c["per_seed"], verdict=c["verdict"].verdict, why=c["verdict"].why,
                   interval=_iv(c["interval"]),
                   per_language={lang: dict(per_seed=d["per_seed"], interval=_iv(d["interval"]),
                                            verdict=d["verdict"].verdict) for lang, d in c["per_language"].items()})
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(out, indent=1) + "\n")
        tmp.replace(args.json)
    return 0


def _iv(iv):
    return None if iv is None else dict(delta=iv.delta, low=iv.low, high=iv.high, resamples=iv.resamples,
                                      p_a_better=iv.p_a_better)


if __name__ == "__main__":
    sys.exit(main())
