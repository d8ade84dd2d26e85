#!/usr/bin/env python3
"""Stage 21: the pruning systems' report, shaped like the Dynamic ASR Pathways poster, over seeds.

    local/report.py --pw_dir exp/pathways --dense exp/asr_train_demo --langs en fr it nl \\
        [--seeds 0 1 2] [--metric cer] [--init_sparsities 20 50 70] [--target_sparsity 0.7] [--low_resource it nl]

Reads, per seed k and system, ``<pw_dir>/seed<k>/<system>/``: ``system.json`` (written by the
stage that made it), ``results.json`` (local/score.py, stage 20: error rates and per-utterance
error counts), ``failed/*`` (a failed step: its log path), masks (``train/masks.pt`` or
``train_<lang>/masks.pt``); the dense multilingual baseline's ``<dense>/results.json``
(stage 13; the same model for every seed) and model (``valid.loss.ave.pth``).  Writes
``<pw_dir>/RESULTS.md``, ``<pw_dir>/report.json`` and PNG figures in ``<pw_dir>/figures/``:

* Tables 1-3 (rows = systems; per-language WER and CER, mean ± standard deviation over the
  seeds that finished, with the count when a seed is missing; relative change of the mean
  against the dense multilingual model), mask IoU between languages for every system,
  how far each adaptive system's masks moved from its ``init_masks.pt`` (weights gained and
  dropped per language), parameter counts and storage, figures;
* the claims of DESIGN.md section 7 (and the random-mask control), each comparison with the
  per-seed differences, an utterance-level paired bootstrap interval (Bisani & Ney 2004;
  ``espnet_pathways.stats``, languages resampled separately, systems pooled over seeds) and a
  verdict by the written rule of ``espnet_pathways.stats.verdict``.

A missing or failed seed is shown as missing (cells carry "n/N seeds"), never folded into a
smaller average silently.  Errors (one line, exit 2): a seed that is not an integer, a
system whose ``system.json`` names other languages or another sparsity than the options.
Exit status 0 if at least one system (the dense baseline included) has results, else 1 with
the list of what is missing.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from espnet_pathways.stats import (  # noqa: E402
    DEFAULT_MIN_SEEDS, DEFAULT_RESAMPLES, UttErrors, mean_sd, paired_bootstrap, pool, verdict,
)
from espnet_pathways.train_log import epoch_results, parse_epoch_line  # noqa: E402

DECODERS = {
    "espnet": "**stock ESPnet** (`espnet2.bin.asr_transducer_inference`)",
    "batched": "`espnet_pathways.bin.batch_inference` (ESPnet's default beam search with utterances batched; "
               "its hypotheses equal stock ESPnet's in tests/test_decode.py)",
}
MISSING_HINT = "./run.sh --stage {stage} --stop_stage {stage}"
METRICS = {"wer": (0, 1), "cer": (2, 3)}  # columns of results.json's per-utterance [we, words, ce, chars]


class ReportError(Exception):
    """A bad option or an inconsistent run: one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage block
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def seed_list(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds: {text!r} is not an integer") from None


def catalogue(langs, init_sparsities, target_pct):
    """Every system the plugin stages can make: name -> description."""
    t = f"{target_pct}%"
    c = {
        "dense": dict(stage="11-13", row="(1)", model="Dense", changes="/", sparsity=0, training="multilingual", init="random"),
        "dense_small": dict(stage="15", row="(1)", model="Dense, pathway-sized (from scratch)", changes="/",
                            sparsity=0, training="multilingual", init="random"),
        "ref": dict(stage="14", row="Ref.", model="Dense", changes="/", sparsity=0, training="monolingual",
                    init="dense"),
        "ref_scratch": dict(stage="14", row="Ref.", model="Dense (from scratch)", changes="/", sparsity=0,
                            training="monolingual", init="random"),
        "lap": dict(stage="15", row="(2)", model="LAP", changes="No", sparsity=target_pct, training="multilingual", init="dense"),
        "lap_long": dict(stage="15", row="(2)", model="LAP (as much training)", changes="No", sparsity=target_pct,
                         training="multilingual", init="dense"),
        "imp": dict(stage="14", row="(2)", model="IMP", changes="No", sparsity=target_pct, training="monolingual", init="dense"),
        "lth": dict(stage="14", row="(2)", model="LTH", changes="No", sparsity=target_pct, training="monolingual", init="dense"),
        "pathways_imp": dict(stage="16", row="(3)", model=f"ASR Pathways (IMP-{t})", changes="No", sparsity=target_pct,
                             training="multilingual", init=f"IMP-{t}"),
        "pathways_lth": dict(stage="16", row="(3)", model=f"ASR Pathways (LTH-{t})", changes="No", sparsity=target_pct,
                             training="multilingual", init=f"LTH-{t}"),
        "pathways_random": dict(stage="16", row="(3)", model=f"ASR Pathways (random-{t})", changes="No",
                                sparsity=target_pct, training="multilingual", init=f"random-{t}"),
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


def run_state(sdir: Path, langs, is_dense: bool = False):
    """One system, one seed: {'status', 'wer', 'cer', 'utts', 'failed'}."""
    res = load_json(sdir / "results.json")
    rates = {"wer": {}, "cer": {}}
    utts = {}
    if res:
        for s, r in res.get("sets", {}).items():
            lang = s.split("_", 1)[0]
            if lang in langs:
                for m in rates:
                    if m in r:
                        rates[m][lang] = float(r[m]["err"])
                if r.get("utts"):
                    utts[lang] = r["utts"]
    failed = []
    fdir = sdir / "failed"
    if fdir.is_dir():
        for f in sorted(fdir.iterdir()):
            failed.append((f.name, f.read_text(encoding="utf-8").strip()))
    wer = rates["wer"]
    if failed and not wer:
        status = "failed"
    elif wer and len(wer) == len(langs) and not failed:
        status = "ok"
    elif wer:
        status = "partial"
    elif not is_dense and ((sdir / "system.json").is_file() or sdir.is_dir()):
        status = "not decoded"
    else:
        status = "missing"
    return dict(status=status, wer=wer, cer=rates["cer"], utts=utts, failed=failed, dir=str(sdir))


def check_system_json(sdir: Path, langs, name: str, cat_entry, target_sparsity: float):
    """A system made with other languages or another sparsity cannot be reported with these options."""
    info = load_json(sdir / "system.json")
    if not isinstance(info, dict):
        return
    got = info.get("languages")
    if isinstance(got, list) and got and sorted(map(str, got)) != sorted(langs):
        raise ReportError(f"{sdir / 'system.json'}: {name} was trained on languages {' '.join(map(str, got))}, "
                          f"the report's --langs are {' '.join(langs)}")
    sp = info.get("sparsity")
    if cat_entry["sparsity"] and isinstance(sp, (int, float)) and abs(float(sp) - target_sparsity) > 1e-6:
        raise ReportError(f"{sdir / 'system.json'}: {name} has sparsity {sp}, the report's --target_sparsity is "
                          f"{target_sparsity}")


class System:
    """A system over seeds: per-seed run states, aggregates, pooled per-utterance errors."""

    def __init__(self, name, runs: dict[int, dict], seeds, langs):
        self.name, self.runs, self.seeds, self.langs = name, runs, list(seeds), langs

    def done(self, langs=None) -> list[int]:
        """Seeds with results for every language of ``langs``."""
        langs = langs or self.langs
        return [k for k in self.seeds if all(lang in self.runs[k]["wer"] for lang in langs)]

    def has_any(self) -> bool:
        return any(self.runs[k]["wer"] for k in self.seeds)

    def values(self, metric, lang) -> list[float]:
        return [self.runs[k][metric][lang] for k in self.seeds if lang in self.runs[k][metric]]

    def avg_per_seed(self, metric, langs=None) -> dict[int, float]:
        langs = langs or self.langs
        return {k: sum(self.runs[k][metric][lang] for lang in langs) / len(langs) for k in self.done(langs)}

    def _summary(self, values: list[float]) -> tuple[float | None, str]:
        """Mean and its table text: "m ± sd", with "(k/N seeds)" when seeds are missing."""
        if not values:
            return None, "–"
        m, sd = mean_sd(values)
        text = f"{m:.2f}" if len(self.seeds) == 1 or self.name == "dense" else f"{m:.2f} ± {sd:.2f}"
        if self.name != "dense" and len(values) < len(self.seeds):
            text += f" ({len(values)}/{len(self.seeds)} seeds)"
        return m, text

    def cell(self, metric, lang) -> tuple[float | None, str]:
        return self._summary(self.values(metric, lang))

    def avg_cell(self, metric, langs=None) -> tuple[float | None, str]:
        return self._summary(list(self.avg_per_seed(metric, langs).values()))

    def status(self) -> str:
        st = {k: self.runs[k]["status"] for k in self.seeds}
        if all(v == "ok" for v in st.values()):
            return "ok"
        if all(v == "missing" for v in st.values()):
            return "missing"
        if len(set(st.values())) == 1:
            return next(iter(st.values()))
        return "partial"

    def utt_errors(self, metric, lang, seeds) -> UttErrors | None:
        e, n = METRICS[metric]
        runs = []
        for k in seeds:
            per = self.runs[k]["utts"].get(lang)
            if not per:
                return None
            runs.append(UttErrors.from_mapping({u: (v[e], v[n]) for u, v in per.items()}))
        return pool(runs) if runs else None


def fmt(x, nd=2):
    return "–" if x is None else f"{x:.{nd}f}"


def rel(x, base):
    if x is None or base is None or base == 0:
        return "–"
    return f"{100.0 * (x - base) / base:+.1f}%"


def table(names, cat, systems, langs, metric, with_stage=True):
    dense = systems["dense"]
    dense_avg = dense.avg_cell(metric, langs)[0]
    head = (["Stage"] if with_stage else []) + ["Model", "System", "Mask can change?", "Sparsity",
                                                 "Mono/multilingual training", "Initialisation"]
    head += [lang.upper() for lang in langs] + ["Avg.", "Rel. vs dense (avg)", "Status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in names:
        d, sy = cat[n], systems[n]
        cells = ([d["row"]] if with_stage else []) + [d["model"], f"`{n}`", d["changes"], f"{d['sparsity']}%",
                                                      d["training"], d["init"]]
        for lang in langs:
            m, text = sy.cell(metric, lang)
            base = dense.cell(metric, lang)[0]
            cells.append(text if m is None or n == "dense" else f"{text} ({rel(m, base)})")
        a, atext = sy.avg_cell(metric, langs)
        cells += [atext, "baseline" if n == "dense" else rel(a, dense_avg), status_cell(d, sy)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def status_cell(d, sy: System):
    st = sy.status()
    if st == "ok":
        return "ok"
    if st == "missing":
        return f"missing (stage {d['stage']})"
    if st == "not decoded":
        return "trained, not decoded (stage 20)"
    bits = []
    for k in sy.seeds:
        r = sy.runs[k]
        if r["status"] == "ok":
            continue
        tag = f"seed {k}: " if len(sy.seeds) > 1 else ""
        if r["failed"]:
            bits += [f"{tag}{step} failed, see `{log}`" for step, log in r["failed"]]
        elif r["status"] == "partial":
            bits.append(f"{tag}some languages missing")
        else:
            bits.append(f"{tag}{r['status']}")
    return ("failed: " if st == "failed" else "partial; ") + "; ".join(bits)


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


def iou_summary(masks_by_seed: dict[int, dict[str, dict]], langs):
    """Per system: mean, min and max of the mask IoU over language pairs, averaged over seeds."""
    import itertools

    out = {}
    for seed, by_system in masks_by_seed.items():
        for name, masks in by_system.items():
            ls = [lang for lang in langs if lang in masks]
            pairs = list(itertools.combinations(ls, 2))
            if not pairs:
                continue
            vals = [masks[a].iou(masks[b]) for a, b in pairs]
            out.setdefault(name, []).append((sum(vals) / len(vals), min(vals), max(vals),
                                             {f"{a}-{b}": v for (a, b), v in zip(pairs, vals)}))
    lines = ["| System | Seeds | Mean IoU over language pairs | Min | Max | Per pair (mean over seeds) |",
             "|---|---|---|---|---|---|"]
    info = {}
    for name, rows in out.items():
        k = len(rows)
        mean = sum(r[0] for r in rows) / k
        lo = sum(r[1] for r in rows) / k
        hi = sum(r[2] for r in rows) / k
        per = {p: sum(r[3][p] for r in rows) / k for p in rows[0][3]}
        lines.append(f"| `{name}` | {k} | {mean:.3f} | {lo:.3f} | {hi:.3f} | "
                     + ", ".join(f"{p} {v:.3f}" for p, v in per.items()) + " |")
        info[name] = dict(seeds=k, mean=mean, min=lo, max=hi, pairs=per)
    return "\n".join(lines), info


def free_pool(system_dir: Path) -> str:
    """A Dynamic Pathways run's free-pool rule (``system.json``; runs from before the option: ``zero``), else ``-``."""
    info = system_dir / "system.json"
    d = json.loads(info.read_text(encoding="utf-8")) if info.is_file() else {}
    return str(d.get("free_pool") or ("zero" if system_dir.name.startswith("dyn_") else "-"))


def mask_moves(seed_dirs: dict[int, Path], names, langs):
    """How far the masks of systems that start from ``init_masks.pt`` moved during training.

    Per system and language, averaged over the seeds that have both masks: the initial and the
    final sparsity, the weights re-ranking swapped into the mask over the run (half the mask
    elements its re-rank events changed, from the ``masks.pt`` history; a later prune may drop
    them again), the share of the final mask's weights that the initial mask did not hold
    ("gained": 0 when training only pruned, or when every swapped-in weight was pruned again) and
    the share of the initial mask's weights the final one dropped."""
    from espnet_pathways.masks import PathwayMasks

    rows = {}
    for k, sdir in seed_dirs.items():
        for name in names:
            init, final = sdir / name / "init_masks.pt", sdir / name / "train" / "masks.pt"
            if not (init.is_file() and final.is_file()):
                continue
            a, b = PathwayMasks.load(init), PathwayMasks.load(final)
            pool = free_pool(sdir / name)
            for lang in langs:
                if lang in a and lang in b:
                    m0, m1 = a[lang], b[lang]
                    swaps = sum(e.get("changed") or 0 for e in b.history
                                if e.get("event") == "rerank" and e.get("language") == lang) / 2
                    rows.setdefault((name, pool, lang), []).append(
                        (m0.sparsity(), m1.sparsity(), (m1 - m0).kept() / max(m1.kept(), 1),
                         (m0 - m1).kept() / max(m0.kept(), 1), swaps))
    lines = ["| System | Free pool | Language | Seeds | Initial sparsity | Final sparsity | Swaps at re-ranks (weights, per run) | "
             "Gained (share of the final mask not in the initial one) | Dropped (share of the initial mask not in the "
             "final one) |", "|---|---|---|---|---|---|---|---|---|"]
    info = {}
    for (name, pool, lang), vals in rows.items():
        n = len(vals)
        s0, s1, gained, dropped, swaps = (sum(v[i] for v in vals) / n for i in range(5))
        lines.append(f"| `{name}` | {pool} | {lang} | {n} | {100 * s0:.1f}% | {100 * s1:.1f}% | {swaps:,.0f} | "
                     f"{100 * gained:.2f}% | {100 * dropped:.2f}% |")
        info.setdefault(name, {})[lang] = dict(seeds=n, free_pool=pool, init_sparsity=s0, final_sparsity=s1, rerank_swaps=swaps,
                                               gained=gained, dropped=dropped)
    return "\n".join(lines), info


# ---------------------------------------------------------------- figures
def short(name: str) -> str:
    return name.replace("encoder.encoders.blocks.", "enc.").replace(".weight", "")


def figures(out_dir: Path, run_dir: Path, masks_by_system, systems, cat, langs, metric):
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
        curves = training_curves(run_dir / name, langs)
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
    # Error rate against sparsity (average over languages; mean and sd over seeds).
    pts = []
    for n, sy in systems.items():
        per = list(sy.avg_per_seed(metric).values())
        if per:
            m, sd = mean_sd(per)
            pts.append((cat[n]["sparsity"], m, sd, n, len(per)))
    if pts:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for s, w, sd, n, k in pts:
            ax.errorbar(s, w, yerr=sd if k > 1 else None, fmt="o", capsize=3)
            ax.annotate(n, (s, w), fontsize=7, xytext=(3, 3), textcoords="offset points")
        nseeds = max(k for *_, k in pts)
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel(f"average {metric.upper()} (%)")
        ax.set_title(f"{metric.upper()} against sparsity (mean ± sd over up to {nseeds} seed(s))")
        p = out_dir / "error_vs_sparsity.png"
        fig.savefig(p, dpi=90, bbox_inches="tight")
        plt.close(fig)
        made.append((f"{metric.upper()} against sparsity", p))
    return made


def training_curves(sdir: Path, langs):
    """{(lang, train|valid): [(epoch, loss_<lang>)]} from the system's train.log files.

    train: ESPnet's per-interval lines (``<e>epoch:train:<a>-<b>batch: ... loss_<l>=...``),
    placed at epoch e - 1 + b / (batches in epoch e); valid: the epoch results, at epoch e.
    """
    import re

    out = {}
    for d in [sdir / "train"] + [sdir / f"train_{lang}" for lang in langs]:
        # a run restored from a results set (local/save_results.py restore_pathways) has only its epoch lines
        log = d / "train.log" if (d / "train.log").is_file() else d / "train_log_epochs.txt"
        if not log.is_file():
            continue
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        per_epoch, prev = {}, 0
        for r in epoch_results(log):
            if r.steps is not None:
                per_epoch[r.epoch] = r.steps - prev
                prev = r.steps
        for line in lines:
            m = re.search(r"(\d+)epoch:train:\d+-(\d+)batch: (.*)", line)
            if m and int(m.group(1)) in per_epoch:
                e, end = int(m.group(1)), int(m.group(2))
                for lang, v in re.findall(r"loss_([a-z]{2,3})=([-0-9.e+]+)", m.group(3)):
                    if lang in langs:
                        out.setdefault((lang, "train"), []).append((e - 1 + end / max(per_epoch[e], 1), float(v)))
            r = parse_epoch_line(line)
            if r is not None:
                for lang, v in re.findall(r"loss_([a-z]{2,3})=([-0-9.e+]+)", r.valid):
                    if lang in langs:
                        out.setdefault((lang, "valid"), []).append((r.epoch, float(v)))
    return out


# ---------------------------------------------------------------- claims
class Stats:
    """Options of the comparisons: metric, resamples, minimum seeds."""

    def __init__(self, metric: str, resamples: int, min_seeds: int):
        self.metric, self.resamples, self.min_seeds = metric, resamples, min_seeds


def compare(systems, a: str, b: str, langs, st: Stats) -> dict:
    """Claim "a has a lower error rate than b" on ``langs`` (their unweighted mean)."""
    sa, sb = systems.get(a), systems.get(b)
    out = dict(a=a, b=b, langs=list(langs), seeds=[], per_seed=[], interval=None, per_language={})
    if sa is None or sb is None:
        out["verdict"] = verdict([], None, min_seeds=st.min_seeds)
        return out
    seeds = [k for k in sa.done(langs) if k in sb.done(langs)]
    pa, pb = sa.avg_per_seed(st.metric, langs), sb.avg_per_seed(st.metric, langs)
    out["seeds"] = seeds
    out["per_seed"] = [pa[k] - pb[k] for k in seeds]
    ua = {lang: sa.utt_errors(st.metric, lang, seeds) for lang in langs} if seeds else {}
    ub = {lang: sb.utt_errors(st.metric, lang, seeds) for lang in langs} if seeds else {}
    if seeds and all(v is not None for v in (*ua.values(), *ub.values())):
        out["interval"] = paired_bootstrap(ua, ub, resamples=st.resamples, seed=0)
        for lang in langs:
            per_seed_l = [sa.runs[k][st.metric][lang] - sb.runs[k][st.metric][lang] for k in seeds]
            iv = paired_bootstrap(ua[lang], ub[lang], resamples=st.resamples, seed=0)
            out["per_language"][lang] = dict(per_seed=per_seed_l, interval=iv,
                                             verdict=verdict(per_seed_l, iv, min_seeds=st.min_seeds))
        out["verdict"] = verdict(out["per_seed"], out["interval"], min_seeds=st.min_seeds)
    else:
        v = verdict([], None, min_seeds=st.min_seeds)
        if seeds:
            v.why = "no per-utterance scores in results.json (score again: stages 13 and 20)"
        out["verdict"] = v
    return out


def combine(comparisons) -> tuple[str, str]:
    """A claim tested by several comparisons: supported / refuted only when all agree."""
    tested = [c for c in comparisons if c["verdict"].verdict != "not tested"]
    if not tested:
        return "not tested (systems missing)", "–"
    counts = {v: sum(c["verdict"].verdict == v for c in tested) for v in ("supported", "refuted", "inconclusive")}
    summary = (f"{counts['supported']} supported, {counts['refuted']} refuted, {counts['inconclusive']} inconclusive "
               f"of {len(tested)} comparisons tested ({len(comparisons) - len(tested)} not tested)")
    if counts["supported"] == len(tested):
        return "supported", summary
    if counts["refuted"] == len(tested):
        return "refuted", summary
    return "inconclusive", summary


def comparison_lines(c, metric) -> list[str]:
    a, b = c["a"], c["b"]
    v = c["verdict"]
    if c["interval"] is None:
        return [f"`{a}` − `{b}`: {v.verdict} ({v.why})"]
    seeds = ", ".join(f"{d:+.2f}" for d in c["per_seed"])
    head = (f"`{a}` − `{b}`, average {metric.upper()} over {', '.join(c['langs'])}: {c['interval']} "
            f"(95% paired bootstrap, {c['interval'].resamples} resamples, {len(c['seeds'])} seed(s) pooled); "
            f"per seed {seeds} → **{v.verdict}** ({v.why})")
    per = [f"  - {lang}: {d['interval']}; per seed " + ", ".join(f"{x:+.2f}" for x in d["per_seed"])
           + f" → {d['verdict'].verdict}" for lang, d in c["per_language"].items()]
    return [head] + per if len(c["langs"]) > 1 else [head]


def check_langs_seeds(langs, seeds) -> None:
    """--langs and --seeds without repeats (ReportError otherwise)."""
    if len(set(langs)) != len(langs):
        raise ReportError(f"--langs: a language is given twice: {' '.join(langs)}")
    if len(set(seeds)) != len(seeds):
        raise ReportError(f"--seeds: a seed is given twice: {' '.join(map(str, seeds))}")


def claims_section(systems, claims, st: Stats) -> tuple[list[str], list[dict]]:
    """Markdown lines and report.json entries of ``claims``: (title, a, b, langs) = "a beats b on langs"."""
    md = [f"## Claims (on {st.metric.upper()})", "",
          "Rule: supported when the difference has the claimed sign on every seed, there are at least "
          f"{st.min_seeds} seeds, and the 95% paired bootstrap interval of the average difference lies below 0; "
          "refuted in the mirror case; else inconclusive.", ""]
    out = []
    for title, a, b, langs in claims:
        if a not in systems or b not in systems or not systems[a].has_any() or not systems[b].has_any():
            md += [f"- **{title}**: not tested (`{a}` or `{b}` has no results)", ""]
            out.append(dict(claim=title, a=a, b=b, langs=list(langs), verdict="not tested"))
            continue
        c = compare(systems, a, b, langs, st)
        lines = comparison_lines(c, st.metric)  # the head line, then "  - <lang>: ..." lines
        md += [f"- **{title}**: **{c['verdict'].verdict}**", f"  - {lines[0]}"] + [f"  {x}" for x in lines[1:]] + [""]
        out.append(dict(claim=title, a=a, b=b, langs=list(langs), verdict=c["verdict"].verdict, why=c["verdict"].why,
                        per_seed=c["per_seed"], interval=str(c["interval"]) if c["interval"] else None))
    return md, out


def claims(systems, langs, low, init_sparsities, target_pct, st: Stats):
    out = []

    def claim(title, pairs, langs_=None):
        comps = [compare(systems, a, b, langs_ or langs, st) for a, b in pairs]
        v, summary = combine(comps)
        rows = [line for c in comps for line in comparison_lines(c, st.metric)]
        out.append(dict(claim=title, comparisons=comps, rows=rows, verdict=v, summary=summary))

    # 1. LAP hurts some languages: per language, "dense better than LAP"; supported if it holds
    #    for at least one language, refuted if LAP is better on every language.
    comps = [compare(systems, "dense", "lap", [lang], st) for lang in langs]
    tested = [c for c in comps if c["verdict"].verdict != "not tested"]
    rows = [line for c in comps for line in comparison_lines(c, st.metric)]
    if tested:
        deltas = {c["langs"][0]: -c["interval"].delta for c in tested if c["interval"] is not None}
        if deltas:
            worst = max(deltas, key=deltas.get)
            rows.append(f"LAP − dense per language: " + ", ".join(f"{k} {v:+.2f}" for k, v in deltas.items())
                        + f"; largest degradation: {worst} ({deltas[worst]:+.2f})")
        sup = [c["langs"][0] for c in tested if c["verdict"].verdict == "supported"]
        ref = [c for c in tested if c["verdict"].verdict == "refuted"]
        v = "supported" if sup else "refuted" if len(ref) == len(langs) else "inconclusive"
        summary = (f"LAP significantly worse than dense on {len(sup)}/{len(langs)} languages"
                   + (f" ({', '.join(sup)})" if sup else "") + f"; better on {len(ref)}")
    else:
        v, summary = "not tested (systems missing)", "–"
    out.append(dict(claim="LAP hurts some languages (more than others)", comparisons=comps, rows=rows, verdict=v,
                    summary=summary))
    claim("Language-specific masks (ASR Pathways) beat LAP", [("pathways_imp", "lap"), ("pathways_lth", "lap")])
    claim("... and beat LAP with as much training (lap_long: --mono_epochs + --plugin_epochs multilingual epochs)",
          [("pathways_imp", "lap_long"), ("pathways_lth", "lap_long")])
    claim("Adaptive masks beat fixed ones at equal sparsity",
          [("adaptive_imp", "imp"), ("adaptive_lth", "lth"), (f"dyn_lth_s{target_pct}", "pathways_lth"),
           (f"dyn_lap_s{target_pct}", "lap")])
    mids = [s for s in init_sparsities if s < target_pct] or [50]
    mid = 50 if 50 in mids else mids[-1]
    claim(f"Starting from {mid}% and adapting beats fixed {target_pct}% masks",
          [(f"dyn_lth_s{mid}", "pathways_lth"), (f"dyn_lap_s{mid}", "lap")])
    low = [lang for lang in low if lang in langs]
    if low:
        claim(f"Pathways help the low-resource languages ({', '.join(low)})",
              [("pathways_lth", "lap"), ("pathways_imp", "lap"), ("pathways_lth", "lth"), ("pathways_imp", "imp")],
              low)
    else:
        out.append(dict(claim="Pathways help the low-resource languages", comparisons=[],
                        rows=[f"no low-resource language among {', '.join(langs)}"],
                        verdict="not tested (no low-resource language)", summary="–"))
    claim("Sparse pathways beat a dense model with as many parameters (trained from scratch)",
          [("pathways_imp", "dense_small"), ("pathways_lth", "dense_small")])
    claim("Random-mask control: IMP masks beat random language-specific masks, which beat LAP",
          [("pathways_imp", "pathways_random"), ("pathways_random", "lap")])
    return out


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pw_dir", type=Path, required=True, help="holds seed<k>/<system>/ (run.sh: <expdir>/pathways)")
    p.add_argument("--dense", type=Path, required=True, help="the dense multilingual experiment (stage 11-13)")
    p.add_argument("--langs", nargs="+", required=True)
    p.add_argument("--seeds", nargs="+", type=seed_list, default=[0], help="training seeds to aggregate (default: 0)")
    p.add_argument("--metric", choices=sorted(METRICS), default="cer",
                   help="error rate the claims are tested on (default cer: mini-MLS sentences are random words)")
    p.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples")
    p.add_argument("--min_seeds", type=int, default=DEFAULT_MIN_SEEDS, help="seeds a firm verdict needs")
    p.add_argument("--init_sparsities", nargs="+", type=int, default=[20, 50, 70])
    p.add_argument("--target_sparsity", type=float, default=0.7)
    p.add_argument("--low_resource", nargs="*", default=["it", "nl"], help="languages the low-resource claim is about")
    p.add_argument("--decoder", choices=sorted(DECODERS), default="espnet", help="run.sh --decoder of stage 20")
    p.add_argument("--iou_sweep", type=Path, default=None,
                   help="output dir of local/mask_iou_sweep.py: adds its IoU-against-steps table and figure")
    args = p.parse_args(argv)
    try:
        return report(args)
    except ReportError as e:
        print(f"report.py: error: {e}", file=sys.stderr)
        return 2


def report(args) -> int:
    langs = args.langs
    check_langs_seeds(langs, args.seeds)
    if args.resamples < 100:
        raise ReportError(f"--resamples must be at least 100, got {args.resamples}")
    seeds = args.seeds
    target_pct = int(round(args.target_sparsity * 100))
    cat = catalogue(langs, args.init_sparsities, target_pct)
    seed_dir = {k: args.pw_dir / f"seed{k}" for k in seeds}
    dense_run = run_state(args.dense, langs, is_dense=True)
    systems = {}
    for n in cat:
        if n == "dense":
            runs = {k: dense_run for k in seeds}
        else:
            runs = {}
            for k in seeds:
                check_system_json(seed_dir[k] / n, langs, n, cat[n], args.target_sparsity)
                runs[k] = run_state(seed_dir[k] / n, langs)
        systems[n] = System(n, runs, seeds, langs)
    have = [n for n, s in systems.items() if s.has_any()]
    missing = [(n, cat[n]["stage"]) for n, s in systems.items() if s.status() in ("missing", "not decoded")]
    failed = [(n, k, step, log) for n, s in systems.items() for k in seeds for step, log in s.runs[k]["failed"]]
    if not have:
        print("report.py: no system has results yet. Missing (system: stage that makes it):", file=sys.stderr)
        for n, st in missing:
            print(f"  {n}: stage {st} ({MISSING_HINT.format(stage=st.split(',')[-1].strip().split('-')[-1])})", file=sys.stderr)
        for n, k, step, log in failed:
            print(f"  {n} (seed {k}): FAILED {step}, log: {log}", file=sys.stderr)
        return 1
    stt = Stats(args.metric, args.resamples, args.min_seeds)
    seeds_text = ", ".join(map(str, seeds))
    md = ["# Pruning a dense multilingual transducer: every system, per language",
          "",
          f"Languages: {', '.join(langs)}; target sparsity {target_pct}%; training seeds: {seeds_text} "
          f"(each number: mean ± standard deviation over the seeds that finished; \"k/N seeds\" when some did not). "
          "Error rates (%) on each language's test set, streaming decoding. Every pruned system was decoded by "
          + DECODERS[args.decoder] + " on its exported pathway "
          "(`espnet_pathways.export.export_pathway`: θ ⊙ m_l as a stock model dir); the dense baselines "
          "(multilingual: stage 12, one model for every seed; monolingual Ref.: stage 20) as ESPnet saved them. "
          "In brackets: relative change of the mean against the dense multilingual model (negative = better). "
          "Per-system details: `seed<k>/<system>/RESULTS.md`.", ""]
    t1 = ["dense", "dense_small", "ref", "ref_scratch", "lap", "lap_long", "imp", "lth", "pathways_imp", "pathways_lth", "pathways_random", "adaptive_imp",
          "adaptive_lth"]
    dyn = [f"dyn_{src}_s{s}" for src in ("lth", "lap") for s in sorted(args.init_sparsities, reverse=True)]
    mids = [x for x in args.init_sparsities if x < target_pct]
    mid = 50 if 50 in mids else (mids[-1] if mids else target_pct)
    for metric in (args.metric, *[m for m in METRICS if m != args.metric]):
        M = metric.upper()
        md += [f"## Table 1 ({M}): pruning the dense multilingual model, monolingual training scenario", "",
               "Ref. (`ref`): one dense model per language, trained by stock ESPnet from the dense multilingual "
               "model on that language's data for as many epochs as the pruned systems; Ref. from scratch "
               "(`ref_scratch`, the poster's definition): the same from random weights, for as many epochs as the "
               "dense model and a pruned system together. `dense_small`: a dense multilingual model with about as "
               "many parameters as one pathway, from scratch (the ASR Pathways paper's small dense control).", "",
               table(t1, cat, systems, langs, metric), ""]
        if "fr" in langs and "nl" in langs:
            bl = ["fr", "nl"]
            note = ("" if set(langs) == {"fr", "nl"} else
                    f" Systems here were trained on all of {', '.join(langs)}; the columns are their fr and nl "
                    "results (the poster trains on fr+nl only: run with `--plugin_langs \"fr nl\"` for that scenario).")
            md += [f"## Table 2 ({M}): bilingual scenario (fr, nl)", "",
                   "ASR Pathways (LAP-70%) is the `lap` system." + note, "",
                   table(["dense", "pathways_lth", "lap"] + dyn, cat, systems, bl, metric, with_stage=False), ""]
        if len(langs) >= 4:
            md += [f"## Table 3 ({M}): {len(langs)} languages", "",
                   table(["pathways_lth", f"dyn_lth_s{mid}"], cat, systems, langs, metric, with_stage=False), ""]
        if not ("fr" in langs and "nl" in langs):
            md += [f"## Dynamic ASR Pathways, every initialisation ({M})", "",
                   table(["pathways_lth", "lap"] + dyn, cat, systems, langs, metric, with_stage=False), ""]

    if missing or failed:
        md += ["## Missing and failed systems", ""]
        md += [f"- `{n}`: trained, not decoded yet (stage 20)" if systems[n].status() == "not decoded"
               else f"- `{n}`: missing, made by stage {st}" for n, st in missing]
        md += [f"- `{n}` (seed {k}): FAILED at {step}, log: `{log}`" for n, k, step, log in failed]
        md.append("")

    masks_by_seed: dict[int, dict] = {}
    try:
        for k in seeds:
            for n in cat:
                if n != "dense" and (seed_dir[k] / n).is_dir():
                    m = system_masks(seed_dir[k], n, langs)
                    if m:
                        masks_by_seed.setdefault(k, {})[n] = m
    except Exception as e:  # noqa: BLE001 - a broken mask file must not stop the report
        md += [f"(masks could not be read: {e})", ""]
    iou_text, iou_info = iou_summary(masks_by_seed, langs)
    if iou_info:
        md += ["## Mask overlap between languages (IoU = |m_a ∧ m_b| / |m_a ∨ m_b| over all prunable weights)", "",
               iou_text, ""]
    moves_text, moves_info = mask_moves(seed_dir, [n for n in cat if cat[n]["changes"] == "Yes"], langs)
    if moves_info:
        md += ["## How far the adaptive masks moved (initial mask -> final mask, per language)", "",
               "Systems that start from given masks (`init_masks.pt`) and may change them. \"Swaps\": weights "
               "re-ranking brought into a language's mask during the run (mean over seeds); \"gained\": the share "
               "of the final mask its initial mask did not hold. Pruning alone only drops weights, so a final mask "
               "that gained nothing is the initial mask thinned by magnitude (unchanged when it started at the "
               "target), whatever re-ranking did in between. \"Free pool\": what Dynamic Pathways did with weights "
               "no language held (`zero`: zeroed after every re-rank and prune, as the poster; `keep`: their values "
               "carried over until the masks were fixed; `--dyn_free_pool`).",
               "", moves_text, ""]
    if args.iou_sweep is not None:
        tsv, png = args.iou_sweep / "iou_vs_steps.tsv", args.iou_sweep / "iou_vs_steps.png"
        if not tsv.is_file():
            raise ReportError(f"--iou_sweep {args.iou_sweep}: no iou_vs_steps.tsv (run local/mask_iou_sweep.py)")
        rows = [line.split("\t") for line in tsv.read_text(encoding="utf-8").splitlines()]
        md += ["## Mask IoU against monolingual training steps (budget sweep)", "",
               f"From `{tsv}` (`local/mask_iou_sweep.py`): final masks of monolingual runs with different budgets.", "",
               "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        md += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        md.append("")
        if png.is_file():
            import shutil

            (args.pw_dir / "figures").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, args.pw_dir / "figures" / "iou_vs_steps.png")
            md += ["![Mask IoU against training steps](figures/iou_vs_steps.png)", ""]
    first = next((k for k in seeds if k in masks_by_seed), None)
    # Each system's masks from the first seed that has them (a seed restored from a results
    # set has tables but no masks, and must not hide the systems of the other seeds).
    masks_by_system, mask_seed = {}, {}
    for k in seeds:
        for n, m in masks_by_seed.get(k, {}).items():
            if n not in masks_by_system:
                masks_by_system[n], mask_seed[n] = m, k
    total = dense_param_count(args.dense)
    ptext, pinfo = param_section(masks_by_system, total)
    used = sorted(set(mask_seed.values()))
    where = ("" if len(seeds) < 2 or not used else f" (masks of seed {used[0]})" if len(used) == 1 else
             " (masks of " + ", ".join(f"`{n}` seed {k}" for n, k in mask_seed.items()) + ")")
    md += ["## Parameters and storage" + where, "", ptext, ""]

    figs = figures(args.pw_dir / "figures", seed_dir.get(first, seed_dir[seeds[0]]), masks_by_system,
                   {n: s for n, s in systems.items() if s.has_any()}, cat, langs, args.metric)
    if figs:
        md += ["## Figures", ""]
        for title, path in figs:
            md += [f"### {title}", "", f"![{title}]({path.relative_to(args.pw_dir).as_posix()})", ""]

    cl = claims(systems, langs, args.low_resource, args.init_sparsities, target_pct, stt)
    md += ["## Claims (DESIGN.md section 7, and the random-mask control)", "",
           f"Tested on {args.metric.upper()}. Each comparison \"A beats B\": A − B of the unweighted mean error rate "
           "over the languages, per seed, and a 95% utterance-level paired bootstrap interval "
           f"({args.resamples} resamples; each language's test set resampled on its own; each system's "
           "per-utterance errors averaged over the seeds both systems finished). Verdict rule "
           "(`espnet_pathways.stats.verdict`): **supported** when A − B < 0 on every seed, with at least "
           f"{args.min_seeds} seeds, and the interval lies below 0; **refuted** when A − B > 0 on every seed and the "
           "interval lies above 0; otherwise **inconclusive**. A claim made of several comparisons is supported "
           "(refuted) only when every comparison tested is.", ""]
    for c in cl:
        md += [f"### {c['claim']}", ""] + [f"- {r}" if not r.startswith("  ") else r for r in c["rows"]]
        md += [f"- tally: {c['summary']}", f"- **verdict: {c['verdict']}**", ""]

    args.pw_dir.mkdir(parents=True, exist_ok=True)
    (args.pw_dir / "RESULTS.md").write_text("\n".join(md), encoding="utf-8")

    def sys_json(n, sy: System):
        out = dict(cat[n], status=sy.status(), seeds={})
        for k in seeds:
            r = sy.runs[k]
            out["seeds"][str(k)] = dict(status=r["status"], wer=r["wer"], cer=r["cer"], failed=r["failed"], dir=r["dir"])
        for metric in METRICS:
            out[metric] = {lang: dict(zip(("mean", "sd"), mean_sd(sy.values(metric, lang))), n=len(sy.values(metric, lang)))
                           for lang in langs if sy.values(metric, lang)}
            per = list(sy.avg_per_seed(metric).values())
            out[f"avg_{metric}"] = dict(zip(("mean", "sd"), mean_sd(per)), n=len(per)) if per else None
        return out

    def comp_json(c):
        iv = c["interval"]
        return dict(a=c["a"], b=c["b"], langs=c["langs"], seeds=c["seeds"], per_seed=c["per_seed"],
                    interval=None if iv is None else dict(delta=iv.delta, low=iv.low, high=iv.high,
                                                          resamples=iv.resamples, p_a_better=iv.p_a_better),
                    verdict=c["verdict"].verdict, why=c["verdict"].why,
                    per_language={lang: dict(per_seed=d["per_seed"], delta=d["interval"].delta, low=d["interval"].low,
                                             high=d["interval"].high, verdict=d["verdict"].verdict)
                                  for lang, d in c["per_language"].items()})

    rep = dict(langs=langs, target_sparsity=args.target_sparsity, seeds=seeds, metric=args.metric,
               resamples=args.resamples, min_seeds=args.min_seeds,
               systems={n: sys_json(n, sy) for n, sy in systems.items()},
               mask_iou=iou_info, mask_moves=moves_info, parameters=dict(dense=total, systems=pinfo),
               claims=[dict(claim=c["claim"], verdict=c["verdict"], summary=c["summary"],
                            comparisons=[comp_json(x) for x in c["comparisons"]]) for c in cl],
               figures=[str(p) for _, p in figs])
    (args.pw_dir / "report.json").write_text(json.dumps(rep, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"report: {len(have)} systems with results over seeds {seeds_text}, {len(missing)} missing, "
          f"{len(failed)} failed steps -> {args.pw_dir / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
