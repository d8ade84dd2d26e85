#!/usr/bin/env python3
"""Stage 24: the dual-mode report -- a supernet's two models against the models trained apart.

    local/dual_report.py --dual_dir exp/dual --pw_dir exp/pathways --dense exp/asr_train_demo \\
        --langs en fr it nl [--seeds 0 1 2] [--systems supernet full_only] [--data_dir dump/raw]

Reads ``<dual_dir>/seed<k>/<system>/eval_<model>_<mode>/results.json`` (stage 23: local/score.py),
``<dual_dir>/dense/eval_dense_{streaming,full}/`` (the stage-11 dense model decoded both ways),
the separately pruned streaming baseline ``<pw_dir>/seed<k>/lap/`` (plugin stages 15 and 20),
decoding times (``decode/<l>_test/timing.json``) and models.  Writes ``<dual_dir>/RESULTS.md``
and ``<dual_dir>/report.json``:

* one table per metric (CER, WER): rows = dense streaming-only (stage 11), dense full context
  (stage 11 decoded without streaming), full-context-only (``full_only``), streaming-only
  continued (``stream_only``), LAP at the target sparsity, and each supernet's four cells
  (sparse/dense model × streaming/full-context decoding); columns = per language and average
  (mean ± sd over seeds, "k/N seeds" when some are missing), non-zero parameters, storage
  (fp32 non-zero values + one bit per element of the pruned tensors), real-time factor of
  decoding (decoding wall time, model loading included / test audio duration);
* the claims, each with per-seed differences, the pooled paired bootstrap interval and the
  verdict rule of ``espnet_pathways.stats.verdict`` (local/report.py's ``compare``).

Errors: one line, exit 2 (a bad seed, a language twice).  Exit 1 when nothing has results.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from report import DECODERS, METRICS, ReportError, Stats, System, check_langs_seeds, claims_section, run_state, seed_list

from espnet_pathways.stats import DEFAULT_MIN_SEEDS, DEFAULT_RESAMPLES

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
FS = 16000

# row: (label, system, model, mode, what)
ROWS = [
    ("dense streaming-only (stage 11)", "dense", "dense", "streaming",
     "the stage-11 multilingual streaming transducer, streaming decoding"),
    ("dense, full context (stage 11)", "dense", "dense", "full",
     "the same model decoded with full context (trained for streaming)"),
    ("stream_only", "stream_only", "dense", "streaming",
     "the stage-11 model trained on in streaming mode as long as the supernet"),
    ("full_only", "full_only", "dense", "full",
     "the stage-11 model trained on with full context only (dynamic chunk training off), as long as the supernet"),
    ("LAP (separately pruned)", "lap", "sparse", "streaming",
     "language-agnostic pruning of the stage-11 model to the target (plugin stage 15), streaming"),
]
for _sys in ("supernet", "supernet_scratch"):
    ROWS += [
        (f"{_sys}: sparse streaming", _sys, "sparse", "streaming", "the supernet's θ ⊙ m, streaming decoding"),
        (f"{_sys}: dense full context", _sys, "dense", "full", "the supernet's θ, full-context decoding"),
        (f"{_sys}: sparse, full context", _sys, "sparse", "full", "cross cell"),
        (f"{_sys}: dense, streaming", _sys, "dense", "streaming", "cross cell"),
    ]


def cell_dir(args, k: int, sys_: str, model: str, mode: str) -> Path:
    if sys_ == "dense":
        return args.dual_dir / "dense" / f"eval_dense_{mode}"
    if sys_ == "lap":
        return args.pw_dir / f"seed{k}" / "lap"
    return args.dual_dir / f"seed{k}" / sys_ / f"eval_{model}_{mode}"


def model_file(args, k: int, sys_: str, model: str, lang: str) -> tuple[Path | None, Path | None]:
    """(model state dict, masks file or None) a row's numbers come from."""
    if sys_ == "dense":
        return args.dense / "valid.loss.ave.pth", None
    if sys_ == "lap":
        d = args.pw_dir / f"seed{k}" / "lap"
        return d / f"export_{lang}" / "model.pth", d / "train" / "masks.pt"
    d = args.dual_dir / f"seed{k}" / sys_
    if sys_.startswith("supernet"):
        name = "sparse_streaming" if model == "sparse" else "dense_full"
        return d / "export" / name / "model.pth", (d / "train" / "masks.pt" if model == "sparse" else None)
    return d / "train" / "valid.loss.ave.pth", None


def size_of(path: Path | None, masks: Path | None) -> tuple[int, int] | None:
    """(non-zero parameters, storage bytes) of a state dict."""
    import torch

    if path is None or not path.is_file():
        return None
    sd = torch.load(path, map_location="cpu", weights_only=True)
    params = {k: v for k, v in sd.items() if v.is_floating_point() and not k.endswith(BUFFERS)}
    nnz = sum(int(v.ne(0).sum()) for v in params.values())
    bits = 0
    if masks is not None and masks.is_file():
        from espnet_pathways.masks import PathwayMasks

        bits = sum(_numel(shape) for shape in PathwayMasks.load(masks).shapes.values())
    return nnz, 4 * nnz + (bits + 7) // 8


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def decode_dir(ev: Path, decoder: str) -> Path:
    """A cell's decode dir: ``decode/`` (stage 23), else the plugin stages' streaming one (stage 20)."""
    if (ev / "decode").is_dir():
        return ev / "decode"
    found = sorted(d for d in ev.glob("decode_streaming_*") if d.name.endswith("_batched") == (decoder == "batched"))
    return found[0] if found else ev / "decode"


def rtf(ev: Path, langs, data_dir: Path | None, decoder: str = "espnet") -> float | None:
    if data_dir is None:
        return None
    secs = audio = 0.0
    d = decode_dir(ev, decoder)
    for lang in langs:
        t = d / f"{lang}_test" / "timing.json"
        n = data_dir / f"{lang}_test" / "utt2num_samples"
        if not t.is_file() or not n.is_file():
            return None
        secs += json.loads(t.read_text())["decode_seconds"]
        audio += sum(int(line.split()[1]) for line in n.read_text().splitlines() if line.strip()) / FS
    return secs / audio if audio else None


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dual_dir", type=Path, required=True)
    p.add_argument("--pw_dir", type=Path, required=True, help="the plugin stages' dir (its seed<k>/lap is the LAP baseline)")
    p.add_argument("--dense", type=Path, required=True, help="the stage-11 experiment dir")
    p.add_argument("--langs", nargs="+", required=True)
    p.add_argument("--seeds", nargs="+", type=seed_list, default=[0])
    p.add_argument("--systems", nargs="+", default=["supernet", "full_only"])
    p.add_argument("--data_dir", type=Path, help="dump/raw (utt2num_samples of the test sets, for the real-time factor)")
    p.add_argument("--target_sparsity", type=float, default=0.7)
    p.add_argument("--metric", choices=sorted(METRICS), default="cer")
    p.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES)
    p.add_argument("--min_seeds", type=int, default=DEFAULT_MIN_SEEDS)
    p.add_argument("--decoder", choices=sorted(DECODERS), default="espnet")
    args = p.parse_args(argv)
    try:
        return report(args)
    except ReportError as e:
        print(f"dual_report.py: error: {e}", file=sys.stderr)
        return 2


def report(args) -> int:
    langs, seeds = args.langs, args.seeds
    check_langs_seeds(langs, seeds)
    wanted = {"dense", "lap", *args.systems}
    rows = [r for r in ROWS if r[1] in wanted]
    systems: dict[str, System] = {}
    info: dict[str, dict] = {}
    for label, sys_, model, mode, what in rows:
        runs = {k: run_state(cell_dir(args, k, sys_, model, mode), langs, is_dense=True) for k in seeds}
        systems[label] = System(label, runs, seeds, langs)
        k0 = seeds[0]
        sizes = size_of(*model_file(args, k0, sys_, model, langs[0]))
        info[label] = dict(system=sys_, model=model, mode=mode, what=what,
                           rtf=mean([rtf(cell_dir(args, k, sys_, model, mode), langs, args.data_dir, args.decoder) for k in seeds]),
                           nonzero=sizes[0] if sizes else None, storage=sizes[1] if sizes else None)
    have = [n for n, s in systems.items() if s.has_any()]
    if not have:
        print("dual_report.py: no results yet (stages 22-23, and 20 for LAP)", file=sys.stderr)
        return 1
    st = Stats(args.metric, args.resamples, args.min_seeds)
    pct = int(round(args.target_sparsity * 100))
    md = ["# Dual-mode self-pruning: one supernet, a sparse streaming and a dense full-context model", "",
          f"Languages: {', '.join(langs)}; target sparsity of the sparse models {pct}%; training seeds: "
          f"{', '.join(map(str, seeds))} (mean ± standard deviation over the seeds that finished). Error rates (%) "
          f"on each language's test set, decoded by {DECODERS[args.decoder]} from stock ESPnet model dirs "
          "(the supernets' two models exported by `espnet_pathways.bin.export_dual`, each with BatchNorm "
          "statistics re-estimated in its own mode). Streaming decoding: ESPnet's chunk-by-chunk inference "
          "(conf/decode.yaml's window); full context: the whole utterance at once. Non-zero parameters and "
          "storage of the decoded model (storage: fp32 non-zero values + 1 bit per element of the pruned "
          "tensors); RTF: decoding wall time (model loading included, decoding processes sharing the machine) "
          "/ test audio duration.", ""]
    for metric in (args.metric, *[m for m in METRICS if m != args.metric]):
        M = metric.upper()
        head = ["Model", "Decoding"] + [x.upper() for x in langs] + ["Avg.", "Non-zero params", "Storage (MB)", "RTF"]
        md += [f"## {M}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for label, *_ in rows:
            sy, d = systems[label], info[label]
            cells = [label, d["mode"]] + [sy.cell(metric, x)[1] for x in langs] + [sy.avg_cell(metric)[1]]
            cells += [f"{d['nonzero'] / 1e6:.3f} M" if d["nonzero"] else "–",
                      f"{d['storage'] / 1e6:.2f}" if d["storage"] else "–",
                      f"{d['rtf']:.3f}" if d["rtf"] is not None else "–"]
            md.append("| " + " | ".join(cells) + " |")
        md.append("")
    md += ["Rows: " + "; ".join(f"**{label}**: {info[label]['what']}" for label, *_ in rows) + ".", ""]
    claims = []
    for sys_ in [s for s in args.systems if s.startswith("supernet")]:
        claims += [
            (f"{sys_}'s sparse streaming model beats the separately pruned one (LAP-{pct})",
             f"{sys_}: sparse streaming", "LAP (separately pruned)"),
            (f"{sys_}'s dense full-context model beats the full-context-only model",
             f"{sys_}: dense full context", "full_only"),
            (f"{sys_}'s sparse streaming model beats the dense streaming-only model (stage 11)",
             f"{sys_}: sparse streaming", "dense streaming-only (stage 11)"),
        ]
    section, out_claims = claims_section(systems, [(t, a, b, langs) for t, a, b in claims], st)
    md += section
    (args.dual_dir / "RESULTS.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    table = {label: dict(info[label], **{m: {x: systems[label].cell(m, x)[0] for x in langs} for m in METRICS})
             for label, *_ in rows}
    (args.dual_dir / "report.json").write_text(json.dumps(dict(langs=langs, seeds=seeds, rows=table, claims=out_claims),
                                                          indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.dual_dir / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
