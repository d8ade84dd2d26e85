#!/usr/bin/env python3
"""Stage 21: the pruning systems' report, shaped like the Dynamic ASR Pathways poster.

    local/report.py --pw_dir exp/pathways --dense exp/asr_train_demo --langs en fr it nl \\
        [--init_sparsities 20 50 70] [--target_sparsity 0.7] [--low_resource it nl] [--seeds 1]

Reads, per system ``<pw_dir>/<system>/``: ``system.json`` (written by the stage that made it),
``results.json`` (local/score.py, stage 20), ``failed/*`` (a failed step: its log path),
masks (``train/masks.pt`` or ``train_<lang>/masks.pt``); the dense multilingual baseline's
``<dense>/results.json`` (stage 13) and model (``valid.loss.ave.pth``).  Writes
``<pw_dir>/RESULTS.md``, ``<pw_dir>/report.json`` and PNG figures in ``<pw_dir>/figures/``:
Tables 1-3 (rows = systems; per-language WER and average; relative change against the dense
multilingual model), parameter counts and storage, figures, and the claims of DESIGN.md
section 7 with our numbers and a verdict.  Missing systems are listed with the stage that
makes each; a failed system is marked failed with its log path.  Exit status 0 if at least
one system (the dense baseline included) has results, else 1 with the list of what is missing.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

# name -> (stage that makes it, table-1 stage label, model, mask can change, training, init)
DECODERS = {
    "espnet": "**stock ESPnet** (`espnet2.bin.asr_transducer_inference`)",
    "batched": "`espnet_pathways.bin.batch_inference` (ESPnet's default beam search with utterances batched; "
               "its hypotheses equal stock ESPnet's in tests/test_decode.py)",
}
MISSING_HINT = "./run.sh --stage {stage} --stop_stage {stage}"


def catalogue(langs, init_sparsities, target_pct):
    """Every system the plugin stages can make: name -> description."""
    t = f"{target_pct}%"
    c = {
        "dense": dict(stage="11-13", row="(1)", model="Dense", changes="/", sparsity=0, training="multilingual", init="random"),
        "ref": dict(stage="14", row="Ref.", model="Dense", changes="/", sparsity=0, training="monolingual",
                    init="dense"),
        "lap": dict(stage="15", row="(2)", model="LAP", changes="No", sparsity=target_pct, training="multilingual", init="dense"),
        "imp": dict(stage="14", row="(2)", model="IMP", changes="No", sparsity=target_pct, training="monolingual", init="dense"),
        "lth": dict(stage="14", row="(2)", model="LTH", changes="No", sparsity=target_pct, training="monolingual", init="dense"),
        "pathways_imp": dict(stage="16", row="(3)", model=f"ASR Pathways (IMP-{t})", changes="No", sparsity=target_pct,
                             training="multilingual", init=f"IMP-{t}"),
        "pathways_lth": dict(stage="16", row="(3)", model=f"ASR Pathways (LTH-{t})", changes="No", sparsity=target_pct,
                             training="multilingual", init=f"LTH-{t}"),
        "adaptive_imp": dict(stage="17", row="Proposed", model="IMP (adaptive)", changes="Yes", sparsity=target_pct,
                             training="monolingual", init="dense"),
        "adaptive_lth": dict(stage="17", row="Proposed", model="LTH (adaptive)", changes="Yes", sparsity=target_pct,
                             training="monolingual", init="dense"),
    }
    for src in ("lth", "lap"):
        for s in init_sparsities:
            stage = "19" if s == target_pct else "18, 19"
            c[f"dyn_{src}_s{s}"] = dict(stage=stage, row="Proposed", model="Dynamic ASR Pathways", changes="Yes",
                                        sparsity=target_pct, training="multilingual", init=f"{src.upper()}-{s}%")
    return c


def load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def system_state(pw_dir: Path, dense: Path, name: str, langs):
    """{'status': ok|partial|failed|missing, 'wer': {lang: wer}, 'failed': [(step, log)]}"""
    sdir = dense if name == "dense" else pw_dir / name
    res = load_json(sdir / "results.json")
    wer = {}
    if res:
        for s, r in res.get("sets", {}).items():
            lang = s.split("_", 1)[0]
            if lang in langs:
                wer[lang] = float(r["wer"]["err"])
    failed = []
    fdir = sdir / "failed"
    if fdir.is_dir():
        for f in sorted(fdir.iterdir()):
            failed.append((f.name, f.read_text(encoding="utf-8").strip()))
    if failed and not wer:
        status = "failed"
    elif wer and len(wer) == len(langs) and not failed:
        status = "ok"
    elif wer:
        status = "partial"
    elif (sdir / "system.json").is_file() or sdir.is_dir() and name != "dense":
        status = "not decoded"
    else:
        status = "missing"
    return dict(status=status, wer=wer, failed=failed, dir=str(sdir))


def avg(wer: dict, langs):
    vals = [wer[lang] for lang in langs if lang in wer]
    return sum(vals) / len(vals) if len(vals) == len(langs) and vals else None


def fmt(x, nd=2):
    return "–" if x is None else f"{x:.{nd}f}"


def rel(x, base):
    if x is None or base is None or base == 0:
        return "–"
    return f"{100.0 * (x - base) / base:+.1f}%"


def table(names, cat, states, langs, dense_avg, dense_wer, with_stage=True):
    head = (["Stage"] if with_stage else []) + ["Model", "System", "Mask can change?", "Sparsity",
                                                 "Mono/multilingual training", "Initialisation"]
    head += [lang.upper() for lang in langs] + ["Avg.", "Rel. vs dense (avg)", "Status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in names:
        d, st = cat[n], states[n]
        a = avg(st["wer"], langs)
        cells = ([d["row"]] if with_stage else []) + [d["model"], f"`{n}`", d["changes"], f"{d['sparsity']}%",
                                                      d["training"], d["init"]]
        for lang in langs:
            w = st["wer"].get(lang)
            cells.append(fmt(w) if w is None or n == "dense" else f"{w:.2f} ({rel(w, dense_wer.get(lang))})")
        cells += [fmt(a), "baseline" if n == "dense" else rel(a, dense_avg), status_cell(n, d, st)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def status_cell(name, d, st):
    if st["status"] == "ok":
        return "ok"
    if st["status"] == "missing":
        return f"missing (stage {d['stage']})"
    if st["status"] == "not decoded":
        return "trained, not decoded (stage 20)"
    bits = [f"{step}: see `{log}`" for step, log in st["failed"]]
    return ("failed: " if st["status"] == "failed" else "partial; ") + "; ".join(bits or ["some languages missing"])


# ---------------------------------------------------------------- masks and parameters
def system_masks(pw_dir: Path, name: str, langs):
    """{lang: MaskSet} of a system (multilingual: train/masks.pt; monolingual: train_<l>/masks.pt)."""
    from espnet_pathways.masks import PathwayMasks

    sdir = pw_dir / name
    out = {}
    if (sdir / "train" / "masks.pt").is_file():
        m = PathwayMasks.load(sdir / "train" / "masks.pt")
        out = {lang: m[lang] for lang in langs if lang in m}
    else:
        for lang in langs:
            p = sdir / f"train_{lang}" / "masks.pt"
            if p.is_file():
                m = PathwayMasks.load(p)
                if lang in m:
                    out[lang] = m[lang]
    return out


def dense_param_count(dense: Path):
    import torch

    for f in ("valid.loss.ave.pth", "model.pth"):
        p = dense / f
        if p.is_file():
            sd = torch.load(p, map_location="cpu", weights_only=True)
            return sum(v.numel() for v in sd.values() if hasattr(v, "numel") and v.is_floating_point())
    return None


def param_section(masks_by_system, total):
    lines = ["| System | Pathway | Prunable kept | Parameters (incl. unpruned) | Share of dense |", "|---|---|---|---|---|"]
    storage = ["| System | Languages | Shared model + bit masks (MB) | Separate sparse models (MB) | Ratio |",
               "|---|---|---|---|---|"]
    info = {}
    for name, masks in masks_by_system.items():
        if not masks:
            continue
        any_m = next(iter(masks.values()))
        prunable = any_m.numel()
        other = (total - prunable) if total else 0
        union = None
        for lang, m in masks.items():
            kept = m.kept()
            lines.append(f"| `{name}` | {lang} | {kept:,} / {prunable:,} | {kept + other:,} | "
                         f"{fmt(100.0 * (kept + other) / total, 1) + '%' if total else '–'} |")
            union = m if union is None else union.union(m)
        u = union.kept()
        lines.append(f"| `{name}` | union of {len(masks)} | {u:,} / {prunable:,} | {u + other:,} | "
                     f"{fmt(100.0 * (u + other) / total, 1) + '%' if total else '–'} |")
        # Storage (fp32 values): shared = the union's weights + unpruned ones once, plus one
        # bit per prunable weight per language; separate = per language its kept values +
        # a bitmap of its tensor + its own copy of the unpruned parameters.
        shared = 4 * (u + other) + len(masks) * prunable / 8
        separate = sum(4 * (m.kept() + other) + prunable / 8 for m in masks.values())
        storage.append(f"| `{name}` | {len(masks)} | {shared / 1e6:.3f} | {separate / 1e6:.3f} | {separate / shared:.2f}× |")
        info[name] = dict(prunable=prunable, other=other, union=u, kept={k: v.kept() for k, v in masks.items()},
                          shared_bytes=shared, separate_bytes=separate)
    dense_line = f"Dense model: {total:,} parameters." if total else "Dense model: parameter count unavailable."
    text = (dense_line + "\n\n" + "\n".join(lines) + "\n\nStorage (fp32 values; masks 1 bit per prunable weight; "
            "a separate sparse model stores its kept values, a bitmap and its own unpruned parameters):\n\n"
            + "\n".join(storage))
    return text, info


# ---------------------------------------------------------------- figures
def short(name: str) -> str:
    return name.replace("encoder.encoders.blocks.", "enc.").replace(".weight", "")


def figures(out_dir: Path, masks_by_system, states, cat, langs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for name, masks in masks_by_system.items():
        ls = [lang for lang in langs if lang in masks]
        if len(ls) < 2:
            continue
        overall = np.array([[masks[a].iou(masks[b]) for b in ls] for a in ls])
        tensors = masks[ls[0]].names
        pairs = [(a, b) for i, a in enumerate(ls) for b in ls[i + 1:]]
        per = np.array([[masks[a].iou_per_tensor(masks[b])[t] for (a, b) in pairs] for t in tensors])
        fig, axes = plt.subplots(1, 2, figsize=(13, max(4, 0.22 * len(tensors))), layout="constrained",
                                 gridspec_kw=dict(width_ratios=[1, 1.4]))
        im = axes[0].imshow(overall, vmin=0, vmax=1, cmap="viridis")
        axes[0].set_xticks(range(len(ls)), ls)
        axes[0].set_yticks(range(len(ls)), ls)
        for i in range(len(ls)):
            for j in range(len(ls)):
                axes[0].text(j, i, f"{overall[i, j]:.2f}", ha="center", va="center", fontsize=8,
                             color="k" if overall[i, j] > 0.5 else "w")
        axes[0].set_title(f"{name}: mask IoU, overall")
        axes[1].imshow(per, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        axes[1].set_xticks(range(len(pairs)), [f"{a}-{b}" for a, b in pairs], rotation=45)
        axes[1].set_yticks(range(len(tensors)), [short(t) for t in tensors], fontsize=6)
        axes[1].set_title("per tensor")
        fig.colorbar(im, ax=axes[1], shrink=0.6)
        p = out_dir / f"iou_{name}.png"
        fig.savefig(p, dpi=90, bbox_inches="tight")
        plt.close(fig)
        made.append((f"Mask IoU between languages, `{name}`", p))
    # Achieved sparsity per tensor, every system with masks, one line per (system, language).
    if masks_by_system:
        fig, ax = plt.subplots(figsize=(10, 4))
        names = None
        for name, masks in masks_by_system.items():
            for lang, m in masks.items():
                sp = m.sparsity_per_tensor()
                names = names or list(sp)
                ax.plot(range(len(names)), [100 * sp[t] for t in names], marker=".", lw=0.8, label=f"{name}/{lang}")
        ax.set_xticks(range(len(names)), [short(t) for t in names], rotation=90, fontsize=6)
        ax.set_ylabel("sparsity (%)")
        ax.set_title("Achieved sparsity per prunable tensor")
        ax.legend(fontsize=6, ncol=3)
        p = out_dir / "sparsity_per_layer.png"
        fig.savefig(p, dpi=90, bbox_inches="tight")
        plt.close(fig)
        made.append(("Achieved sparsity per layer", p))
    # Training curves per language (loss_<lang> of ESPnet's epoch results), one figure per system.
    for name in masks_by_system:
        curves = training_curves(out_dir.parent / name, langs)
        if not curves:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        for (lang, split), pts in sorted(curves.items()):
            ax.plot([e for e, _ in pts], [v for _, v in pts], marker="o" if split == "valid" else ".",
                    ls="-" if split == "valid" else ":", label=f"{lang} {split}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_title(f"{name}: training curves per language")
        ax.legend(fontsize=7)
        p = out_dir / f"curves_{name}.png"
        fig.savefig(p, dpi=90, bbox_inches="tight")
        plt.close(fig)
        made.append((f"Training curves per language, `{name}`", p))
    # WER against sparsity (average over languages).
    pts = [(cat[n]["sparsity"], avg(st["wer"], langs), n) for n, st in states.items() if avg(st["wer"], langs) is not None]
    if pts:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for s, w, n in pts:
            ax.scatter(s, w)
            ax.annotate(n, (s, w), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel("average WER (%)")
        ax.set_title("WER against sparsity (one seed)")
        p = out_dir / "wer_vs_sparsity.png"
        fig.savefig(p, dpi=90, bbox_inches="tight")
        plt.close(fig)
        made.append(("WER against sparsity", p))
    return made


def training_curves(sdir: Path, langs):
    """{(lang, train|valid): [(epoch, loss_<lang>)]} from the system's train.log files.

    train: ESPnet's per-interval lines (``<e>epoch:train:<a>-<b>batch: ... loss_<l>=...``),
    placed at epoch e - 1 + b / (batches in epoch e); valid: the epoch results, at epoch e.
    """
    import re

    out = {}
    logs = [sdir / "train" / "train.log"] + [sdir / f"train_{lang}" / "train.log" for lang in langs]
    for log in logs:
        if not log.is_file():
            continue
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        per_epoch, prev = {}, 0
        for line in lines:
            m = re.search(r"(\d+)epoch results: \[train\] .*?total_count=(\d+)", line)
            if m:
                per_epoch[int(m.group(1))] = int(m.group(2)) - prev
                prev = int(m.group(2))
        for line in lines:
            m = re.search(r"(\d+)epoch:train:\d+-(\d+)batch: (.*)", line)
            if m and int(m.group(1)) in per_epoch:
                e, end = int(m.group(1)), int(m.group(2))
                for lang, v in re.findall(r"loss_([a-z]{2,3})=([-0-9.e+]+)", m.group(3)):
                    if lang in langs:
                        out.setdefault((lang, "train"), []).append((e - 1 + end / max(per_epoch[e], 1), float(v)))
            m = re.search(r"(\d+)epoch results: \[train\] (.*)\[valid\] (.*)", line)
            if m:
                for lang, v in re.findall(r"loss_([a-z]{2,3})=([-0-9.e+]+)", m.group(3)):
                    if lang in langs:
                        out.setdefault((lang, "valid"), []).append((int(m.group(1)), float(v)))
    return out


# ---------------------------------------------------------------- claims
def compare(states, a, b, langs):
    """Per-language WER differences a - b (negative: a better) where both exist."""
    wa, wb = states.get(a, {}).get("wer", {}), states.get(b, {}).get("wer", {})
    return {lang: wa[lang] - wb[lang] for lang in langs if lang in wa and lang in wb}


def verdict(diffs_list, seeds, want_negative=True):
    """Across comparisons (each {lang: a - b}, a = the claimed-better system)."""
    vals = [d for diffs in diffs_list for d in diffs.values()]
    if not vals:
        return "not tested (systems missing)", "–"
    better = sum(1 for v in vals if (v < 0) == want_negative and v != 0)
    ties = sum(1 for v in vals if v == 0)
    direction = (f"{better}/{len(vals)} comparisons in the claimed direction, {ties} ties, "
                 f"{len(vals) - better - ties} against")
    if seeds < 2:
        return "inconclusive (one seed: no run-to-run spread to compare with)", direction
    # Several seeds (numbers averaged elsewhere): a sign test over the comparisons only; the
    # seed spread itself is not read by this script.
    v = "supported" if better == len(vals) else "not supported" if better == 0 else "inconclusive"
    return f"{v} (sign of {len(vals)} comparisons over {seeds} seeds; spread not measured here)", direction


def claims(states, langs, low, init_sparsities, target_pct, seeds):
    out = []

    def lines_for(pairs):
        rows, diffs = [], []
        for a, b in pairs:
            d = compare(states, a, b, langs)
            diffs.append(d)
            if d:
                rows.append(f"`{a}` − `{b}`: " + ", ".join(f"{k} {v:+.2f}" for k, v in d.items()))
            else:
                rows.append(f"`{a}` vs `{b}`: not available")
        return rows, diffs

    # 1. LAP hurts some languages most.
    d = compare(states, "lap", "dense", langs)
    if d:
        worst = max(d, key=d.get)
        rows = ["LAP − dense per language: " + ", ".join(f"{k} {v:+.2f}" for k, v in d.items()),
                f"largest degradation: {worst} ({d[worst]:+.2f}); spread across languages "
                f"{max(d.values()) - min(d.values()):.2f} points"]
        hurt = [k for k, v in d.items() if v > 0]
        v = ("inconclusive (one seed)" if seeds < 2 else
             "supported" if hurt and max(d.values()) - min(d.values()) > 0 else "not supported")
        out.append(("LAP hurts some languages most", rows, v, f"{len(hurt)}/{len(d)} languages worse than dense"))
    else:
        out.append(("LAP hurts some languages most", ["needs `lap` and `dense`"], "not tested (systems missing)", "–"))
    # 2. Language-specific masks beat LAP.
    rows, diffs = lines_for([("pathways_imp", "lap"), ("pathways_lth", "lap")])
    out.append(("Language-specific masks (ASR Pathways) beat LAP", rows, *verdict(diffs, seeds)))
    # 3. Adaptive masks beat fixed ones at equal sparsity.
    pairs = [("adaptive_imp", "imp"), ("adaptive_lth", "lth"), (f"dyn_lth_s{target_pct}", "pathways_lth"),
             (f"dyn_lap_s{target_pct}", "lap")]
    rows, diffs = lines_for(pairs)
    out.append(("Adaptive masks beat fixed ones at equal sparsity", rows, *verdict(diffs, seeds)))
    # 4. Starting at 50% and adapting beats fixing 70% masks.
    mids = [s for s in init_sparsities if s < target_pct] or [50]
    mid = 50 if 50 in mids else mids[-1]
    rows, diffs = lines_for([(f"dyn_lth_s{mid}", "pathways_lth"), (f"dyn_lap_s{mid}", "lap")])
    out.append((f"Starting from {mid}% and adapting beats fixed {target_pct}% masks", rows, *verdict(diffs, seeds)))
    # 5. Pathways help the low-resource languages.
    low = [lang for lang in low if lang in langs]
    if low:
        rows, diffs = [], []
        for a, b in [("pathways_lth", "lap"), ("pathways_imp", "lap"), ("pathways_lth", "lth"), ("pathways_imp", "imp")]:
            d = {k: v for k, v in compare(states, a, b, langs).items() if k in low}
            diffs.append(d)
            rows.append(f"`{a}` − `{b}` on {', '.join(low)}: " + (", ".join(f"{k} {v:+.2f}" for k, v in d.items()) or "not available"))
        out.append((f"Pathways help the low-resource languages ({', '.join(low)})", rows, *verdict(diffs, seeds)))
    else:
        out.append(("Pathways help the low-resource languages", [f"no low-resource language among {', '.join(langs)}"],
                    "not tested (no low-resource language)", "–"))
    return out


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pw_dir", type=Path, required=True)
    p.add_argument("--dense", type=Path, required=True, help="the dense multilingual experiment (stage 11-13)")
    p.add_argument("--langs", nargs="+", required=True)
    p.add_argument("--init_sparsities", nargs="+", type=int, default=[20, 50, 70])
    p.add_argument("--target_sparsity", type=float, default=0.7)
    p.add_argument("--low_resource", nargs="*", default=["it", "nl"], help="languages the last claim is about")
    p.add_argument("--decoder", choices=sorted(DECODERS), default="espnet", help="run.sh --decoder of stage 20")
    p.add_argument("--seeds", type=int, default=1, help="seeds behind each number (verdicts need >= 2)")
    args = p.parse_args(argv)
    langs = args.langs
    target_pct = int(round(args.target_sparsity * 100))
    cat = catalogue(langs, args.init_sparsities, target_pct)
    states = {n: system_state(args.pw_dir, args.dense, n, langs) for n in cat}
    have = [n for n, s in states.items() if s["wer"]]
    missing = [(n, cat[n]["stage"]) for n, s in states.items() if s["status"] in ("missing", "not decoded")]
    failed = [(n, s["failed"]) for n, s in states.items() if s["failed"]]
    if not have:
        print("report.py: no system has results yet. Missing (system: stage that makes it):", file=sys.stderr)
        for n, st in missing:
            print(f"  {n}: stage {st} ({MISSING_HINT.format(stage=st.split(',')[-1].strip().split('-')[-1])})", file=sys.stderr)
        for n, fl in failed:
            for step, log in fl:
                print(f"  {n}: FAILED {step}, log: {log}", file=sys.stderr)
        return 1

    dense_wer = states["dense"]["wer"]
    dense_avg = avg(dense_wer, langs)
    md = ["# Pruning a dense multilingual transducer: every system, per language",
          "",
          f"Languages: {', '.join(langs)}; target sparsity {target_pct}%; seeds per number: {args.seeds}. "
          "WER (%) on each language's test set, streaming decoding. Every pruned system was decoded by "
          + DECODERS[args.decoder] + " on its exported pathway "
          "(`espnet_pathways.export.export_pathway`: θ ⊙ m_l as a stock model dir); the dense baselines "
          "(multilingual: stage 12; monolingual Ref.: stage 20) as ESPnet saved them. "
          "In brackets: relative WER change against the dense multilingual model (negative = better). "
          "Per-system details: `<system>/RESULTS.md`.", ""]
    t1 = ["dense", "ref", "lap", "imp", "lth", "pathways_imp", "pathways_lth", "adaptive_imp", "adaptive_lth"]
    md += ["## Table 1: pruning the dense multilingual model, monolingual training scenario", "",
           "Ref.: one dense model per language, trained by stock ESPnet from the dense multilingual model on "
           "that language's data for as many epochs as the pruned systems (the poster's Ref. row trains "
           "monolingual models from scratch; on the demo budget that would not train).", "",
           table(t1, cat, states, langs, dense_avg, dense_wer), ""]
    dyn = [f"dyn_{src}_s{s}" for src in ("lth", "lap") for s in sorted(args.init_sparsities, reverse=True)]
    if "fr" in langs and "nl" in langs:
        bl = ["fr", "nl"]
        note = ("" if set(langs) == {"fr", "nl"} else
                f" Systems here were trained on all of {', '.join(langs)}; the columns are their fr and nl WERs "
                "(the poster trains on fr+nl only: run with `--plugin_langs \"fr nl\"` for that scenario).")
        md += ["## Table 2: bilingual scenario (fr, nl)", "", "ASR Pathways (LAP-70%) is the `lap` system." + note, "",
               table(["pathways_lth", "lap"] + dyn, cat, states, bl, avg(dense_wer, bl), dense_wer, with_stage=False), ""]
    mids = [x for x in args.init_sparsities if x < target_pct]
    mid = 50 if 50 in mids else (mids[-1] if mids else target_pct)
    if len(langs) >= 4:
        md += [f"## Table 3: {len(langs)} languages", "",
               table(["pathways_lth", f"dyn_lth_s{mid}"], cat, states, langs, dense_avg, dense_wer, with_stage=False), ""]
    if not ("fr" in langs and "nl" in langs):
        md += ["## Dynamic ASR Pathways, every initialisation", "",
               table(["pathways_lth", "lap"] + dyn, cat, states, langs, dense_avg, dense_wer, with_stage=False), ""]

    if missing or failed:
        md += ["## Missing and failed systems", ""]
        md += [f"- `{n}`: trained, not decoded yet (stage 20)" if states[n]["status"] == "not decoded"
               else f"- `{n}`: missing, made by stage {st}" for n, st in missing]
        md += [f"- `{n}`: FAILED at {step}, log: `{log}`" for n, fl in failed for step, log in fl]
        md.append("")

    masks_by_system = {}
    try:
        for n in cat:
            if n != "dense" and (args.pw_dir / n).is_dir():
                m = system_masks(args.pw_dir, n, langs)
                if m:
                    masks_by_system[n] = m
    except Exception as e:  # noqa: BLE001 - a broken mask file must not stop the report
        md += [f"(masks could not be read: {e})", ""]
    total = dense_param_count(args.dense)
    ptext, pinfo = param_section(masks_by_system, total)
    md += ["## Parameters and storage", "", ptext, ""]

    figs = figures(args.pw_dir / "figures", masks_by_system, {n: s for n, s in states.items() if s["wer"]}, cat, langs)
    if figs:
        md += ["## Figures", ""]
        for title, path in figs:
            md += [f"### {title}", "", f"![{title}]({path.relative_to(args.pw_dir).as_posix()})", ""]

    cl = claims(states, langs, args.low_resource, args.init_sparsities, target_pct, args.seeds)
    md += ["## Claims (DESIGN.md section 7)", "",
           f"Seeds per number: {args.seeds}. A verdict needs the difference to exceed the run-to-run spread, "
           "so with one seed every verdict is at most \"inconclusive\"; the direction is reported.", ""]
    for title, rows, v, direction in cl:
        md += [f"### {title}", ""] + [f"- {r}" for r in rows] + [f"- direction: {direction}", f"- **verdict: {v}**", ""]

    args.pw_dir.mkdir(parents=True, exist_ok=True)
    (args.pw_dir / "RESULTS.md").write_text("\n".join(md), encoding="utf-8")
    report = dict(langs=langs, target_sparsity=args.target_sparsity, seeds=args.seeds,
                  systems={n: dict(cat[n], **states[n], avg=avg(states[n]["wer"], langs)) for n in cat},
                  parameters=dict(dense=total, systems=pinfo),
                  claims=[dict(claim=t, evidence=r, verdict=v, direction=d) for t, r, v, d in cl],
                  figures=[str(p) for _, p in figs])
    (args.pw_dir / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"report: {len(have)} systems with results, {len(missing)} missing, {len(failed)} failed -> {args.pw_dir / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
