#!/usr/bin/env python3
"""Stage 31: the sparse-sharing SSL report -- fine-tuned systems per language, with their costs.

    local/ssl_report.py --ssl_dir exp/ssl --langs en fr it nl [--seeds 0 1 2] \\
        [--systems no_pretrain dense_ssl shared_ssl shared_ssl_pathways lang_embedding adapters] \\
        [--shape_file exp/asr_stats_char/train/speech_shape] [--low_ratio 0.5]

Reads ``<ssl_dir>/seed<k>/<system>/eval_<dense|pathway>_streaming/results.json`` (stage 30:
local/score.py), the fine-tuned checkpoints (``train/valid.loss.ave.pth``, ``train/masks.pt``)
and ``<ssl_dir>/ft_data/summary.json`` (the labelled subset).  Writes ``<ssl_dir>/RESULTS.md``
and ``<ssl_dir>/report.json``:

* one table per metric (CER, WER): rows = systems; columns = per language (marked H / L:
  high / low resource, from the pre-training audio: L when a language has less than
  ``--low_ratio`` times the largest language's) and the average (mean ± sd over seeds,
  "k/N seeds" when some are missing), parameters added to the stock transducer (the
  per-language embeddings / adapters) and storage added for deployment (their fp32 values;
  for pathway fine-tuning one bit per encoder element and language for the masks);
* the claims, each with per-seed differences, the pooled paired bootstrap interval and the
  verdict rule of ``espnet_pathways.stats.verdict`` (local/report.py's ``compare``), on the
  high- and the low-resource languages separately;
* the pre-training runs' last validation epoch (``ssl_dense/``, ``ssl_dense_it1/``,
  ``ssl_imp|ssl_lth/train_<l>/``, ``ssl_shared/train/``: ``train.log`` or a results set's
  ``train_log_epochs.txt``) and the per-language masks (``ssl_shared/init_masks.pt`` or
  ``models/init_masks.pt``): sparsity, IoU between languages, share of elements held by
  every language / by one / by none.

Errors: one line, exit 2.  Exit 1 when no system has results.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from report import METRICS, ReportError, Stats, System, check_langs_seeds, claims_section, run_state, seed_list
from save_results import SSL_DENSE, SSL_MASKS, ssl_model_file

from espnet_pathways.stats import DEFAULT_MIN_SEEDS, DEFAULT_RESAMPLES

SYSTEMS = {  # name: (label, what)
    "no_pretrain": ("no pre-training", "the streaming transducer trained from scratch on the labelled subset"),
    "dense_ssl": ("standard SSL (dense)", "encoder from dense multilingual SSL pre-training (stage 26), fine-tuned"),
    "shared_ssl": ("sparse sharing", "encoder from sparse-sharing pre-training (stage 28), fine-tuned dense"),
    "shared_ssl_pathways": ("sparse sharing + pathway FT", "encoder from sparse-sharing pre-training, fine-tuned with "
                            "the same per-language masks on the encoder (each language's model: θ ⊙ m_l)"),
    "lang_embedding": ("language embedding", "encoder from stage 26 + a learned vector per language added after subsampling"),
    "adapters": ("language adapters", "encoder from stage 26 + a bottleneck adapter per language after each encoder block"),
}


def eval_dir(ssl_dir: Path, k: int, name: str) -> Path:
    d = ssl_dir / f"seed{k}" / name
    return d / ("eval_pathway_streaming" if (d / "train" / "masks.pt").is_file() else "eval_dense_streaming")


def added_cost(ssl_dir: Path, k: int, name: str) -> tuple[int, int] | None:
    """(parameters added to the stock transducer, bytes of storage they and any masks add)."""
    import torch

    train = ssl_dir / f"seed{k}" / name / "train"
    model = train / "valid.loss.ave.pth"
    if not model.is_file():
        return None
    sd = torch.load(model, map_location="cpu", weights_only=True)
    added = sum(v.numel() for key, v in sd.items() if key.startswith("lang_adapt."))
    bits = 0
    if (train / "masks.pt").is_file():
        from espnet_pathways.masks import PathwayMasks

        masks = PathwayMasks.load(train / "masks.pt")
        per_lang = sum(_numel(s) for s in masks.shapes.values())
        bits = per_lang * len(masks.languages)
    return added, 4 * added + (bits + 7) // 8


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def resource_levels(shape_file: Path | None, langs, low_ratio: float) -> dict[str, str]:
    """lang -> "H" / "L" from each language's pre-training audio (stage 10's speech_shape)."""
    if shape_file is None:
        return {}
    if not shape_file.is_file():
        raise ReportError(f"--shape_file {shape_file}: no such file")
    frames = dict.fromkeys(langs, 0)
    for line in shape_file.read_text(encoding="utf-8").splitlines():
        if line.strip():
            utt, shape = line.split(maxsplit=1)
            lang = utt.split("_", 1)[0]
            if lang in frames:
                frames[lang] += int(shape.split(",")[0])
    top = max(frames.values()) or 1
    return {lang: ("L" if n < low_ratio * top else "H") for lang, n in frames.items()}


def pretraining_section(ssl_dir: Path, langs) -> tuple[list[str], list[dict]]:
    """The pre-training runs' last validation epoch: SSL loss and masked-frame accuracy (per language if logged)."""
    from espnet_pathways.train_log import epoch_results

    runs = [("dense SSL (stage 26)", ssl_dir / "ssl_dense"), ("dense SSL, iteration 1", ssl_dir / "ssl_dense_it1")]
    for mode in ("imp", "lth"):
        runs += [(f"{lang} sub-network, {mode.upper()} (stage 27)", ssl_dir / f"ssl_{mode}" / f"train_{lang}")
                 for lang in langs]
    runs.append(("sparse sharing (stage 28)", ssl_dir / "ssl_shared" / "train"))
    rows, out = [], []
    for label, d in runs:
        # an experiment dir has train.log; a saved results set (local/save_results.py) its epoch lines
        log = d / "train.log" if (d / "train.log").is_file() else d / "train_log_epochs.txt"
        res = epoch_results(log)
        if not res:
            continue
        last, f = res[-1], res[-1].field
        per_lang = {x: float(v) for x in langs if (v := f(last.valid, f"loss_{x}"))}
        entry = dict(run=label, epochs=last.epoch, valid_loss=float(f(last.valid, "loss") or "nan"),
                     masked_accuracy=float(f(last.valid, "acc_m") or "nan"), valid_loss_per_language=per_lang)
        out.append(entry)
        rows.append(f"| {label} | {last.epoch} | {entry['valid_loss']:.3f} | {entry['masked_accuracy']:.3f} | "
                    + (", ".join(f"{x} {v:.3f}" for x, v in per_lang.items()) or "–") + " |")
    if not rows:
        return [], []
    return ["## Pre-training", "", "Last epoch of each run on the dev set of all languages (a monolingual run: its "
            "language's dev utterances): the masked-prediction loss and the accuracy on masked frames "
            "(chance: 1/k).", "", "| Run | Epochs | Valid loss | Masked accuracy | Valid loss per language |",
            "|---|---|---|---|---|", *rows, ""], out


def subnetworks_section(ssl_dir: Path) -> tuple[list[str], dict | None]:
    """The per-language masks sparse sharing trained with: sparsity, overlap, how widely each weight is shared."""
    import torch

    from espnet_pathways.masks import PathwayMasks

    path = ssl_model_file(ssl_dir, SSL_MASKS)  # the run's, or a saved results set's
    if path is None:
        return [], None
    masks = PathwayMasks.load(path)
    langs = list(masks.languages)
    held = torch.zeros(len(langs) + 1, dtype=torch.long)
    for c in masks.holders().counts.values():
        held += torch.bincount(c.flatten().long(), minlength=len(langs) + 1)
    total = int(held.sum())
    share = [int(n) / total for n in held]
    iou = masks.overlap()
    sparsity = masks.sparsity()
    oneshot = magnitude_iou(ssl_dir, masks)
    md = ["## The per-language sub-networks", "",
          f"The masks of sparse-sharing pre-training (and of pathway fine-tuning): {total:,} prunable encoder elements. "
          f"Held by every language: {100 * share[-1]:.1f}%; by exactly one: {100 * share[1]:.1f}%; by none: "
          f"{100 * share[0]:.1f}%." + (" Last column: IoU with one-shot magnitude pruning of the dense SSL model at "
                                       "the language's sparsity (no language data at all)." if oneshot else ""), "",
          "| Language | Sparsity | " + " | ".join(f"IoU with {x}" for x in langs)
          + (" | IoU with one-shot magnitude |" if oneshot else " |"), "|" + "---|" * (len(langs) + 2 + bool(oneshot))]
    md += [f"| {a} | {sparsity[a]:.3f} | " + " | ".join(f"{iou[a][b]:.3f}" for b in langs)
           + (f" | {oneshot[a]:.3f} |" if oneshot else " |") for a in langs]
    return md + [""], dict(elements=total, held_by=dict(enumerate(share)), sparsity=sparsity, iou=iou,
                           iou_with_oneshot_magnitude=oneshot)


def magnitude_iou(ssl_dir: Path, masks) -> dict[str, float] | None:
    """Per language: IoU of its mask with one-shot magnitude pruning of the dense SSL model (stage 26) at the
    same sparsity and scope (stage 27's ``pathways.scope``, default per tensor): how much of the mask the
    language's own pruning run decided.  None without the dense model."""
    import torch
    import yaml

    from espnet_pathways.pruning import magnitude_prune

    model = ssl_model_file(ssl_dir, SSL_DENSE)
    if model is None:
        return None
    sd = torch.load(model, map_location="cpu", weights_only=True)
    missing = [n for n in masks.names if n not in sd]
    if missing:
        raise ReportError(f"{model}: no tensor {missing[0]!r} of the masks (not the model they were found on)")
    weights = {n: sd[n].float() for n in masks.names}
    out = {}
    for lang in masks.languages:
        cfg = next((p for p in (ssl_dir / f"ssl_{m}" / f"train_{lang}.yaml" for m in ("imp", "lth")) if p.is_file()),
                   None)
        scope = (yaml.safe_load(cfg.read_text()).get("pathways") or {}).get("scope", "tensor") if cfg else "tensor"
        ref = magnitude_prune(weights, masks[lang].sparsity(), names=masks.names, scope=scope).masks
        out[lang] = masks[lang].iou(ref)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ssl_dir", type=Path, required=True)
    p.add_argument("--langs", nargs="+", required=True)
    p.add_argument("--seeds", nargs="+", type=seed_list, default=[0])
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS))
    p.add_argument("--shape_file", type=Path, help="stage 10's train speech_shape (the high/low resource marks)")
    p.add_argument("--low_ratio", type=float, default=0.5)
    p.add_argument("--metric", choices=sorted(METRICS), default="cer")
    p.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES)
    p.add_argument("--min_seeds", type=int, default=DEFAULT_MIN_SEEDS)
    args = p.parse_args(argv)
    try:
        return report(args)
    except ReportError as e:
        print(f"ssl_report.py: error: {e}", file=sys.stderr)
        return 2


def report(args) -> int:
    langs, seeds = args.langs, args.seeds
    check_langs_seeds(langs, seeds)
    unknown = [s for s in args.systems if s not in SYSTEMS]
    if unknown:
        raise ReportError(f"--systems: unknown system {unknown[0]!r} (known: {', '.join(SYSTEMS)})")
    if not 0 < args.low_ratio <= 1:
        raise ReportError(f"--low_ratio: a fraction in (0, 1], got {args.low_ratio}")
    levels = resource_levels(args.shape_file, langs, args.low_ratio)
    subset = {}
    summary = args.ssl_dir / "ft_data" / "summary.json"
    if summary.is_file():
        subset = json.loads(summary.read_text(encoding="utf-8"))
    systems: dict[str, System] = {}
    cost: dict[str, tuple[int, int] | None] = {}
    for name in args.systems:
        label = SYSTEMS[name][0]
        runs = {k: run_state(eval_dir(args.ssl_dir, k, name), langs, is_dense=True) for k in seeds}
        systems[label] = System(label, runs, seeds, langs)
        cost[label] = next((c for k in seeds if (c := added_cost(args.ssl_dir, k, name)) is not None), None)
    if not any(s.has_any() for s in systems.values()):
        print("ssl_report.py: no results yet (stages 29-30)", file=sys.stderr)
        return 1
    st = Stats(args.metric, args.resamples, args.min_seeds)
    col = {lang: f"{lang.upper()} ({levels[lang]})" if lang in levels else lang.upper() for lang in langs}
    data = "; ".join(f"{lang}: {v['subset']}, {v['utterances']} utterances, {v['hours']:.2f} h"
                     for lang, v in subset.items()) or "see ft_data/summary.json"
    md = ["# Sparse-sharing SSL pre-training, fine-tuned into the streaming transducer", "",
          f"Languages: {', '.join(langs)} (H / L: high / low resource by pre-training audio, L below "
          f"{args.low_ratio:g}× the largest language's); labelled fine-tuning data: {data}. Pre-training: every "
          "training utterance's audio, no transcripts. Training seeds of the fine-tuning runs: "
          f"{', '.join(map(str, seeds))} (mean ± standard deviation over the seeds that finished; pre-training ran once). "
          "Error rates (%) of streaming decoding on each language's test set by `espnet_pathways.bin.batch_inference` "
          "(ESPnet's beam search with utterances batched; `--language` for the embedding and adapter systems). Added parameters and storage: "
          "beyond the stock transducer (per-language embeddings or adapters in fp32; pathway fine-tuning stores "
          "one bit per encoder element and language for its masks).", ""]
    for metric in (args.metric, *[m for m in METRICS if m != args.metric]):
        head = ["System"] + [col[x] for x in langs] + ["Avg.", "Added params", "Added storage (kB)"]
        md += [f"## {metric.upper()}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for label, sy in systems.items():
            c = cost[label]
            cells = [label] + [sy.cell(metric, x)[1] for x in langs] + [sy.avg_cell(metric)[1]]
            cells += [f"{c[0]:,}" if c else "–", f"{c[1] / 1e3:.1f}" if c else "–"]
            md.append("| " + " | ".join(cells) + " |")
        md.append("")
    md += ["Rows: " + "; ".join(f"**{SYSTEMS[n][0]}**: {SYSTEMS[n][1]}" for n in args.systems) + ".", ""]

    groups = [(g, [x for x in langs if levels.get(x) == g]) for g in ("H", "L")] if levels else [("all", langs)]
    groups = [(g, ls) for g, ls in groups if ls]
    gname = {"H": "high-resource", "L": "low-resource", "all": "all"}
    claims = []
    for a in ("sparse sharing", "sparse sharing + pathway FT"):
        for g, ls in groups:
            claims.append((f"{a} beats standard SSL on the {gname[g]} languages ({', '.join(ls)})", a,
                           "standard SSL (dense)", ls))
        for b in ("language adapters", "language embedding"):
            claims.append((f"{a} beats {b} (all languages)", a, b, langs))
    claims.append(("standard SSL beats no pre-training (all languages)", "standard SSL (dense)", "no pre-training", langs))
    section, out_claims = claims_section(systems, claims, st)
    md += section
    pre_md, pretraining = pretraining_section(args.ssl_dir, langs)
    sub_md, subnetworks = subnetworks_section(args.ssl_dir)
    md += [""] + pre_md + sub_md
    (args.ssl_dir / "RESULTS.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    table = {label: dict(added_params=cost[label][0] if cost[label] else None,
                         added_bytes=cost[label][1] if cost[label] else None,
                         **{m: {x: systems[label].cell(m, x)[0] for x in langs} for m in METRICS})
             for label in systems}
    (args.ssl_dir / "report.json").write_text(
        json.dumps(dict(langs=langs, seeds=seeds, levels=levels, subset=subset, rows=table, claims=out_claims,
                        pretraining=pretraining, subnetworks=subnetworks), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.ssl_dir / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
