"""Plugin stages 14-21: the report on hand-made fixtures (fast), and a tiny end-to-end run (slow).

The fixtures are what the stages leave behind: ``<pw_dir>/seed<k>/<system>/system.json``,
``results.json`` (local/score.py's format, with per-utterance error counts), ``failed/<step>``
(a log path) and masks (``train/masks.pt`` or ``train_<lang>/masks.pt``), plus the dense
experiment's ``results.json`` and ``valid.loss.ave.pth``.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import copy_exp
from espnet_pathways.masks import MaskSet, PathwayMasks

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"encoder.a.weight": (8, 6), "encoder.b.weight": (6, 6), "decoder.c.weight": (5, 4)}


def results(path: Path, wers: dict[str, float], utts: int = 20) -> None:
    """results.json with WER w and CER w / 2 per language, spread evenly over ``utts`` utterances
    (each 10 words, 50 characters: errors w / 10 words and w / 4 characters per utterance)."""
    path.mkdir(parents=True, exist_ok=True)
    sets = {}
    for lang, w in wers.items():
        per = {f"{lang}_{i:04d}": [w / 10, 10, w / 4, 50] for i in range(utts)}
        sets[f"{lang}_test"] = {"wer": {"err": w, "snt": utts, "wrd": 10 * utts},
                                "cer": {"err": w / 2, "snt": utts, "wrd": 50 * utts}, "missing": 0, "utts": per}
    (path / "results.json").write_text(json.dumps({"sets": sets, "average": {}}))


def masks(seed: int, sparsity: float = 0.7) -> MaskSet:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in SHAPES.items():
        scores = torch.rand(shape, generator=g).flatten()
        keep = round((1 - sparsity) * scores.numel())
        m = torch.zeros_like(scores, dtype=torch.bool)
        m[scores.argsort(descending=True)[:keep]] = True
        out[name] = m.view(shape)
    return MaskSet(out)


def report(pw_dir: Path, dense: Path, *langs: str, extra=()) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "local" / "report.py"), "--pw_dir", str(pw_dir),
                           "--dense", str(dense), "--langs", *langs, *extra],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def fixture_runs(tmp_path):
    """dense + lth (monolingual masks) + pathways_lth + dyn_lth_s50 ok, lap failed, the rest missing."""
    root, dense = tmp_path / "pathways", tmp_path / "asr_dense"
    pw = root / "seed0"
    results(dense, {"en": 40.0, "fr": 50.0})
    sd = {name: torch.randn(shape) for name, shape in SHAPES.items()}
    sd["joint_network.lin_out.bias"] = torch.zeros(10)  # an unpruned parameter
    dense.mkdir(parents=True, exist_ok=True)
    torch.save(sd, dense / "valid.loss.ave.pth")
    for lang, seed in (("en", 1), ("fr", 2)):
        (pw / "lth" / f"train_{lang}").mkdir(parents=True)
        PathwayMasks({lang: masks(seed)}).save(pw / "lth" / f"train_{lang}" / "masks.pt")
    results(pw / "lth", {"en": 44.0, "fr": 52.0})
    for name, wers in (("pathways_lth", {"en": 42.0, "fr": 51.0}), ("dyn_lth_s50", {"en": 41.0, "fr": 49.0})):
        (pw / name / "train").mkdir(parents=True)
        PathwayMasks({"en": masks(1), "fr": masks(3)}).save(pw / name / "train" / "masks.pt")
        results(pw / name, wers)
    (pw / "lap" / "failed").mkdir(parents=True)
    (pw / "lap" / "failed" / "train").write_text(str(pw / "lap" / "train" / "train.log") + "\n")
    (pw / "lap" / "system.json").write_text("{}")
    return root, dense


def test_report_tables_missing_failed_claims_figures(fixture_runs):
    root, dense = fixture_runs
    out = report(root, dense, "en", "fr", extra=["--init_sparsities", "50", "70"])
    assert out.returncode == 0, out.stderr
    text = (root / "RESULTS.md").read_text()
    # Table 1 (CER first, then WER): rows shaped like the poster's (stage, model, mask change, sparsity, ...).
    t1 = text.split("## Table 1 (CER)")[1].split("\n## ")[0]
    rows = [r for r in t1.splitlines() if r.startswith("| ") and "---" not in r]
    assert rows[0].startswith("| Stage | Model | System | Mask can change? | Sparsity | Mono/multilingual training | "
                              "Initialisation | EN | FR | Avg. | Rel. vs dense (avg) |")
    assert len(rows) == 1 + 13  # dense, small dense, 2 Ref., 2 LAP, IMP, LTH, 3 ASR Pathways, 2 adaptive
    assert all(len(r.split("|")) == len(rows[0].split("|")) for r in rows)
    lth = next(r for r in rows if "`lth`" in r)
    assert "22.00 (+10.0%)" in lth and "24.00" in lth and "+6.7%" in lth  # avg CER 24 vs dense 22.5
    wer_lth = next(r for r in text.split("## Table 1 (WER)")[1].splitlines() if "`lth`" in r)
    assert "44.00 (+10.0%)" in wer_lth and "48.00" in wer_lth
    assert "missing (stage 14)" in next(r for r in rows if "`imp`" in r)
    assert "missing (stage 14)" in next(r for r in rows if "`ref`" in r) and "| Ref. | Dense |" in t1
    assert "missing (stage 16)" in next(r for r in rows if "`pathways_random`" in r)
    assert "missing (stage 17)" in next(r for r in rows if "`adaptive_lth`" in r)
    lap = next(r for r in rows if "`lap`" in r)
    assert "failed" in lap and "train.log" in lap
    assert "`lap` (seed 0): FAILED at train" in text and "`dyn_lap_s70`: missing, made by stage 19" in text
    # No fr+nl and only two languages: no Table 2/3, the Dynamic Pathways table instead.
    assert "## Table 2" not in text and "## Table 3" not in text
    assert "Dynamic ASR Pathways, every initialisation" in text and "`dyn_lth_s50`" in text
    # Mask IoU for every system with masks; parameters, storage.
    iou = text.split("## Mask overlap")[1].split("\n## ")[0]
    assert "`lth` | 1 |" in iou and "`pathways_lth` | 1 |" in iou and "en-fr" in iou
    assert "Dense model: 114 parameters." in text
    assert "union of 2" in text and "Shared model + bit masks" in text
    # Claims: DESIGN.md's five + the training-budget, small dense and random-mask controls; one seed never gives a firm verdict.
    claims = text.split("## Claims")[1]
    assert claims.count("**verdict:") == 8
    assert "**verdict: supported**" not in claims and "**verdict: refuted**" not in claims
    assert "`dyn_lth_s50` − `pathways_lth`, average CER over en, fr: -0.75 [-0.75, -0.75]" in claims
    assert "1 seed(s), the rule needs 3" in claims
    rep = json.loads((root / "report.json").read_text())
    assert len(rep["claims"]) == 8 and rep["systems"]["lap"]["status"] == "failed"
    assert rep["mask_iou"]["lth"]["seeds"] == 1
    # Figures exist, are PNG, and are linked.
    for f in ("iou_pathways_lth.png", "iou_lth.png", "sparsity_per_layer.png", "error_vs_sparsity.png"):
        p = root / "figures" / f
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(figures/{f})" in text


def test_report_shows_how_far_adaptive_masks_moved(fixture_runs):
    """dyn_lth_s50 starts from 50% masks: en's final mask is its initial one thinned by magnitude (nothing
    gained, though re-ranks swapped weights in during the run), fr's final mask is another draw (weights
    gained); fixed pathways are not listed."""
    root, dense = fixture_runs
    pw = root / "seed0"
    PathwayMasks({"en": masks(1, 0.5), "fr": masks(1, 0.5)}).save(pw / "dyn_lth_s50" / "init_masks.pt")
    # the run's re-ranks swapped 3 + 2 weights into en's mask (6 and 4 elements changed), later pruned again
    final = PathwayMasks({"en": masks(1), "fr": masks(3)}, history=[
        dict(step=2, event="rerank", language="en", changed=6), dict(step=2, event="rerank", language="fr", changed=0),
        dict(step=4, event="prune", language="en", changed=None), dict(step=6, event="rerank", language="en", changed=4)])
    final.save(pw / "dyn_lth_s50" / "train" / "masks.pt")
    PathwayMasks({"en": masks(1), "fr": masks(1)}).save(pw / "pathways_lth" / "init_masks.pt")
    (pw / "dyn_lth_s50" / "system.json").write_text(json.dumps({"free_pool": "keep"}))
    out = report(root, dense, "en", "fr", extra=["--init_sparsities", "50", "70"])
    assert out.returncode == 0, out.stderr
    moved = (root / "RESULTS.md").read_text().split("## How far the adaptive masks moved")[1].split("\n## ")[0]
    # 31 of masks(1, 0.7)'s weights, all inside masks(1, 0.5)'s 52: 21 dropped, none gained.
    assert "| `dyn_lth_s50` | keep | en | 1 | 50.0% | 70.2% | 5 | 0.00% | 40.38% |" in moved
    assert "pathways_lth" not in moved
    fr = json.loads((root / "report.json").read_text())["mask_moves"]["dyn_lth_s50"]["fr"]
    gained = (masks(3) - masks(1, 0.5)).kept() / masks(3).kept()
    assert fr["gained"] == pytest.approx(gained) and gained > 0.2


def test_report_four_languages_has_tables_2_and_3(tmp_path):
    root, dense = tmp_path / "pathways", tmp_path / "dense"
    pw = root / "seed0"
    langs = ("en", "fr", "it", "nl")
    results(dense, dict(zip(langs, (10.0, 20.0, 30.0, 40.0))))
    results(pw / "pathways_lth", dict(zip(langs, (11.0, 19.0, 28.0, 35.0))))
    results(pw / "lap", dict(zip(langs, (12.0, 24.0, 33.0, 45.0))))
    out = report(root, dense, *langs)
    assert out.returncode == 0, out.stderr
    text = (root / "RESULTS.md").read_text()
    t2 = text.split("## Table 2 (CER)")[1].split("\n## ")[0]
    assert "| FR | NL | Avg. |" in t2 and "`dyn_lth_s20`" in t2 and "`dyn_lap_s50`" in t2
    assert "| `dense` | / | 0% | multilingual | random | 10.00 | 20.00 | 15.00 | baseline | ok |" in t2  # the baseline row (CER)
    t3 = text.split("## Table 3 (CER)")[1].split("\n## ")[0]
    assert "| EN | FR | IT | NL | Avg. |" in t3 and "`dyn_lth_s50`" in t3
    claims = text.split("## Claims")[1]
    assert "largest degradation: nl (+2.50)" in claims
    assert "Pathways help the low-resource languages (it, nl)" in claims


def seeded_results(root: Path, name: str, per_seed: dict[int, dict[str, float]]) -> None:
    for k, wers in per_seed.items():
        results(root / f"seed{k}" / name, wers)
        (root / f"seed{k}" / name / "system.json").write_text(json.dumps({"languages": ["en", "fr"], "sparsity": 0.7}))


def test_report_over_seeds_mean_sd_missing_seed_and_verdicts(tmp_path):
    root, dense = tmp_path / "pathways", tmp_path / "dense"
    results(dense, {"en": 40.0, "fr": 50.0})
    # pathways_imp beats lap on every seed and utterance -> supported; pathways_lth loses on every seed -> refuted
    # (the claim "language-specific masks beat LAP" is then inconclusive as a whole); adaptive_imp vs imp has
    # mixed signs -> inconclusive.  adaptive_lth misses seed 2.
    seeded_results(root, "lap", {k: {"en": 44.0 + k, "fr": 54.0} for k in range(3)})
    seeded_results(root, "pathways_imp", {k: {"en": 42.0 + k, "fr": 52.0} for k in range(3)})
    seeded_results(root, "pathways_lth", {k: {"en": 46.0 + k, "fr": 56.0} for k in range(3)})
    seeded_results(root, "imp", {k: {"en": 44.0, "fr": 54.0} for k in range(3)})
    seeded_results(root, "adaptive_imp", {0: {"en": 43.0, "fr": 54.0}, 1: {"en": 45.0, "fr": 54.0},
                                          2: {"en": 43.0, "fr": 54.0}})
    seeded_results(root, "adaptive_lth", {0: {"en": 43.0, "fr": 54.0}, 1: {"en": 45.0, "fr": 55.0}})
    out = report(root, dense, "en", "fr", extra=["--seeds", "0", "1", "2", "--metric", "wer"])
    assert out.returncode == 0, out.stderr
    text = (root / "RESULTS.md").read_text()
    t1 = text.split("## Table 1 (WER)")[1].split("\n## ")[0]
    lap = next(r for r in t1.splitlines() if "`lap`" in r)
    assert "45.00 ± 1.00" in lap and "54.00 ± 0.00" in lap
    alth = next(r for r in t1.splitlines() if "`adaptive_lth`" in r)
    assert "(2/3 seeds)" in alth and "seed 2: missing" in alth
    rep = json.loads((root / "report.json").read_text())
    comps = {(c["a"], c["b"]): c for cl in rep["claims"] for c in cl["comparisons"]}
    assert comps[("pathways_imp", "lap")]["verdict"] == "supported"
    assert comps[("pathways_imp", "lap")]["per_seed"] == [-2.0, -2.0, -2.0]
    assert comps[("pathways_lth", "lap")]["verdict"] == "refuted"
    assert comps[("adaptive_imp", "imp")]["verdict"] == "inconclusive"
    assert comps[("adaptive_lth", "lth")]["verdict"] == "not tested"
    by_claim = {c["claim"]: c["verdict"] for c in rep["claims"]}
    assert by_claim["Language-specific masks (ASR Pathways) beat LAP"] == "inconclusive"
    assert by_claim["LAP hurts some languages (more than others)"] == "supported"
    assert rep["systems"]["adaptive_lth"]["avg_wer"]["n"] == 2


def test_report_storage_takes_each_systems_masks_from_a_seed_that_has_them(tmp_path):
    """A seed restored from a results set has scores but no masks: the storage table must still list
    every system whose masks some seed has, and say which seed each came from."""
    root, dense = tmp_path / "pathways", tmp_path / "dense"
    results(dense, {"en": 40.0, "fr": 50.0})
    torch.save({name: torch.randn(shape) for name, shape in SHAPES.items()}, dense / "valid.loss.ave.pth")
    seeded_results(root, "lth", {0: {"en": 44.0, "fr": 54.0}, 1: {"en": 45.0, "fr": 55.0}})
    seeded_results(root, "pathways_lth", {0: {"en": 42.0, "fr": 52.0}, 1: {"en": 43.0, "fr": 53.0}})
    for lang, g in (("en", 1), ("fr", 2)):  # lth's masks only in seed 0
        (root / "seed0" / "lth" / f"train_{lang}").mkdir(parents=True)
        PathwayMasks({lang: masks(g)}).save(root / "seed0" / "lth" / f"train_{lang}" / "masks.pt")
    (root / "seed1" / "pathways_lth" / "train").mkdir(parents=True)  # pathways_lth's only in seed 1
    PathwayMasks({"en": masks(1), "fr": masks(3)}).save(root / "seed1" / "pathways_lth" / "train" / "masks.pt")
    out = report(root, dense, "en", "fr", extra=["--seeds", "0", "1"])
    assert out.returncode == 0, out.stderr
    text = (root / "RESULTS.md").read_text()
    section = text.split("## Parameters and storage")[1].split("\n## ")[0]
    assert section.splitlines()[0] == " (masks of `lth` seed 0, `pathways_lth` seed 1)"
    assert "| `lth` | en |" in section and "| `pathways_lth` | union of 2 |" in section


@pytest.mark.parametrize("extra, message", [
    (["--seeds", "0", "x"], "report.py: error: argument --seeds: --seeds: 'x' is not an integer"),
    (["--seeds", "1", "1"], "--seeds: a seed is given twice"),
    (["--langs", "en", "de"], "was trained on languages en fr, the report's --langs are en de"),
    (["--target_sparsity", "0.5"], "has sparsity 0.7, the report's --target_sparsity is 0.5"),
])
def test_report_bad_input_one_line(tmp_path, extra, message):
    root, dense = tmp_path / "pathways", tmp_path / "dense"
    results(dense, {"en": 40.0, "fr": 50.0})
    seeded_results(root, "lap", {0: {"en": 44.0, "fr": 54.0}, 1: {"en": 44.0, "fr": 54.0}})
    args = ["--langs", "en", "fr", *extra] if "--langs" not in extra else extra
    out = subprocess.run([sys.executable, str(ROOT / "local" / "report.py"), "--pw_dir", str(root),
                          "--dense", str(dense), *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (root / "RESULTS.md").exists()


def test_report_before_any_system_lists_what_is_missing(tmp_path):
    out = report(tmp_path / "pathways", tmp_path / "dense", "en", "fr")
    assert out.returncode == 1
    assert "no system has results yet" in out.stderr
    for line in ("dense: stage 11-13", "imp: stage 14", "lap: stage 15", "pathways_lth: stage 16",
                 "adaptive_imp: stage 17", "dyn_lth_s50: stage 18, 19", "dyn_lap_s70: stage 19"):
        assert line in out.stderr
    assert not (tmp_path / "pathways" / "RESULTS.md").exists()


def test_pathways_config_is_the_dense_config_plus_a_section(tmp_path):
    import yaml

    out = tmp_path / "imp_fr.yaml"
    args = [sys.executable, str(ROOT / "local" / "pathways_config.py"), "--base", str(ROOT / "conf" / "train_tiny.yaml"),
            "--out", str(out), "mode=imp", "languages=[fr]", "final_sparsity=0.7", "prune_interval=2"]
    subprocess.run(args, check=True, timeout=60)
    cfg, base = yaml.safe_load(out.read_text()), yaml.safe_load((ROOT / "conf" / "train_tiny.yaml").read_text())
    assert cfg.pop("pathways") == {"mode": "imp", "languages": ["fr"], "final_sparsity": 0.7, "prune_interval": 2}
    assert cfg == base
    mtime = out.stat().st_mtime_ns
    subprocess.run(args, check=True, timeout=60)
    assert out.stat().st_mtime_ns == mtime  # unchanged content: not rewritten


def test_help_lists_plugin_stages_and_options():
    out = subprocess.run(["bash", str(ROOT / "run.sh"), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for s in ("14  monolingual dense (Ref.: ref from the dense model, ref_scratch from scratch), IMP and LTH", "15  language-agnostic", "16  ASR Pathways", "17  adaptive",
              "19  Dynamic ASR Pathways", "20  export", "21  report"):
        assert s in out.stdout
    for o in ("--target_sparsity (0.7)", "--plugin_langs", "--plugin_epochs", "--prune_interval", "--rerank_interval",
              "--init_sparsities", "--systems (all)", "--seeds (0)", "--scratch_epochs", "--small_config", "--plugin_dir"):
        assert o in out.stdout


@pytest.mark.parametrize("args, message", [
    (["--systems", "imp foo"], "--systems: unknown system 'foo'"),
    (["--target_sparsity", "70"], "--target_sparsity must be a fraction"),
    (["--init_sparsities", "0.5"], "--init_sparsities takes percentages"),
    (["--prune_interval", "x"], "--prune_interval must be a non-negative integer"),
    (["--decoder", "fast"], "--decoder must be espnet or batched"),
    (["--seeds", "0 x"], "--seeds takes non-negative integers, got 'x'"),
    (["--seeds", "1 0 1"], "--seeds: a seed is given twice"),
    (["--seeds", " "], "--seeds needs at least one integer seed"),
    (["--scratch_epochs", "two"], "--scratch_epochs must be a non-negative integer"),
    (["--mono_epochs", "2.5"], "--mono_epochs must be a non-negative integer"),
    (["--mono_epochs", "0"], "--mono_epochs must be at least 1"),
    (["--plugin_epochs", "0"], "--plugin_epochs must be at least 1"),
    (["--small_config", "nope.yaml"], "--small_config nope.yaml: no such file"),
])
def test_bad_plugin_options_fail_before_any_stage(args, message):
    out = subprocess.run(["bash", str(ROOT / "run.sh"), *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 2 and message in out.stderr and "Stage" not in out.stdout


def test_plugin_stage_without_dense_model_says_which_stage(tmp_path):
    out = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "14", "--stop_stage", "14", "--expdir",
                          str(tmp_path / "exp"), "--train_config", "conf/train_tiny.yaml"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 1
    assert "run stages 10-11 first" in out.stderr


@pytest.mark.slow
def test_tiny_plugin_stages_end_to_end(tiny_recipe, tmp_path):
    """From the tiny recipe's stages 1-13 (conftest.tiny_recipe): LTH for en+fr with --mono_epochs 2, ASR Pathways,
    one Dynamic Pathways, decode, report; then a re-run, the batched decoder, a second seed and dual-mode.
    (The SSL stages: test_ssl_stages.test_tiny_ssl_stages_end_to_end, independent of these.)"""
    common = [*tiny_recipe.common, "--expdir", str(copy_exp(tiny_recipe, tmp_path / "exp"))]
    plugin = ["--systems", "ref dense_small lth lap lap_long pathways_lth pathways_random dyn_lth_s70",
              "--init_sparsities", "70", "--plugin_epochs", "1", "--mono_epochs", "2", "--prune_interval", "2",
              "--prune_rounds", "1", "--rerank_interval", "1", "--scratch_epochs", "1",
              "--small_config", "conf/train_tiny.yaml"]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    start = time.time()
    out = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "14", "--stop_stage", "21", *common, *plugin],
                         capture_output=True, text=True, timeout=1200, cwd=ROOT, env=env)  # ~200-330 s idle
    took = time.time() - start
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-3000:]
    root = tmp_path / "exp" / "pathways"
    pw = root / "seed0"
    text = (root / "RESULTS.md").read_text()
    rep = json.loads((root / "report.json").read_text())
    for name in ("dense", "ref", "dense_small", "lth", "pathways_lth", "pathways_random", "dyn_lth_s70"):
        assert set(rep["systems"][name]["wer"]) == {"en", "fr"}, name
        assert rep["systems"][name]["status"] == "ok", name
        assert f"`{name}`" in text
    # Random masks: the target sparsity per language, different languages.
    rnd = PathwayMasks.load(pw / "pathways_random" / "init_masks.pt")
    assert all(abs(v - 0.7) < 0.01 for v in rnd.sparsity().values()) and rnd["en"] != rnd["fr"]
    assert "average CER over en, fr" in text  # bootstrap intervals from per-utterance scores
    assert (pw / "pathways_lth" / "export_fr" / "model.pth").is_file()
    assert "stock ESPnet" in (pw / "pathways_lth" / "RESULTS.md").read_text()
    assert (root / "figures" / "iou_pathways_lth.png").is_file()
    assert "missing (stage 14)" in text  # imp was not selected
    stages = [line.split("\t")[0] for line in (tmp_path / "exp" / "stage_times.tsv").read_text().splitlines()]
    assert stages[-8:] == [str(s) for s in range(14, 22)]
    # --mono_epochs 2: the monolingual runs (ref, lth) train 2 epochs, their T is scaled by 2 x the language's
    # share; the multilingual runs keep --plugin_epochs 1
    assert json.loads((pw / "lth" / "system.json").read_text())["epochs"] == 2
    shapes = [line.split() for line in next((tmp_path / "exp").glob("asr_stats_*/train/speech_shape")).read_text().splitlines()]
    frames = {lang: sum(int(n) for u, n in shapes if u.startswith(f"{lang}_")) for lang in ("en", "fr")}
    for lang in ("en", "fr"):
        share = frames[lang] / sum(int(n) for _, n in shapes)
        cfg = yaml.safe_load((pw / "lth" / f"train_{lang}.yaml").read_text())["pathways"]
        assert cfg["prune_interval"] == max(2, int(2 * share * 2 + 0.5)), (lang, share, cfg)
        for run in (pw / "lth" / f"train_{lang}", pw / "ref" / f"train_{lang}"):
            assert (run / "train.log").read_text().count("epoch results") == 2, run
    assert (pw / "lap" / "train" / "train.log").read_text().count("epoch results") == 1
    # lap_long: --mono_epochs + --plugin_epochs epochs, T scaled by --mono_epochs / --plugin_epochs
    assert (pw / "lap_long" / "train" / "train.log").read_text().count("epoch results") == 3
    assert yaml.safe_load((pw / "lap_long" / "train.yaml").read_text())["pathways"]["prune_interval"] == 4
    assert rep["systems"]["lap_long"]["status"] == "ok"
    # Dynamic Pathways: the free-pool rule reaches the run's config and the system's description
    assert yaml.safe_load((pw / "dyn_lth_s70" / "train.yaml").read_text())["pathways"]["dynamic_pathways"] == {"free_pool": "zero"}
    assert json.loads((pw / "dyn_lth_s70" / "system.json").read_text())["free_pool"] == "zero"
    print(f"tiny stages 14-21: {took:.0f}s (stages 1-13: {tiny_recipe.took:.0f}s)")
    # Idempotent: a re-run of the training stages skips every finished run.
    again = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "14", "--stop_stage", "19", *common, *plugin],
                           capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("trained already (skipped)") == 10
    # Stage 20 with the batched decoder (two of the systems): its own decode dirs, the same hypotheses as stock ESPnet's.
    batched = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "20", "--stop_stage", "20", *common, *plugin,
                              "--systems", "ref pathways_lth", "--decoder", "batched", "--decode_batch_size", "4"],
                             capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert batched.returncode == 0, batched.stdout[-3000:] + batched.stderr[-2000:]
    for name in ("ref", "pathways_lth"):
        for lang in ("en", "fr"):
            stock = pw / name / "decode_streaming_decode_fast" / f"{lang}_test" / "1best_recog" / "token_int"
            ours = pw / name / "decode_streaming_decode_fast_batched" / f"{lang}_test" / "1best_recog" / "token_int"
            assert sorted(ours.read_text().splitlines()) == sorted(stock.read_text().splitlines()), (name, lang)
    assert "batch_inference" in (pw / "pathways_lth" / "RESULTS.md").read_text()
    # A second seed: its own directory, seed 0's runs untouched, the report aggregates both. (Seed 1 also
    # takes --plugin_lr / --plugin_warmup, which reach ESPnet's config of the run.)
    two = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "14", "--stop_stage", "21", *common, *plugin,
                          "--systems", "pathways_random", "--seeds", "0 1", "--plugin_lr", "4e-4", "--plugin_warmup", "3"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-2000:]
    assert (root / "seed1" / "pathways_random" / "train" / "masks.pt").is_file()
    espnet_cfg = yaml.safe_load((root / "seed1" / "pathways_random" / "train" / "config.yaml").read_text())
    assert espnet_cfg["optim_conf"]["lr"] == 4e-4 and espnet_cfg["scheduler_conf"]["warmup_steps"] == 3
    assert not (root / "seed1" / "lth").exists()
    rnd1 = PathwayMasks.load(root / "seed1" / "pathways_random" / "init_masks.pt")
    assert rnd1["en"] != rnd["en"]  # the random masks follow the seed
    rep = json.loads((root / "report.json").read_text())
    assert rep["seeds"] == [0, 1]
    assert rep["systems"]["pathways_random"]["avg_wer"]["n"] == 2
    assert rep["systems"]["lth"]["avg_wer"]["n"] == 1  # seed 1 not run: shown as missing, not averaged
    assert "(1/2 seeds)" in (root / "RESULTS.md").read_text()
    # Dual-mode stages 22-24: supernet + full-context-only baseline, both models exported, every cell decoded.
    dual = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "22", *common, *plugin, "--dual_calib_batches", "2"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert dual.returncode == 0, dual.stdout[-3000:] + dual.stderr[-2000:]
    droot = tmp_path / "exp" / "dual"
    sup = droot / "seed0" / "supernet"
    assert (sup / "export" / "sparse_streaming" / "model.pth").is_file() and (sup / "export" / "dense_full" / "model.pth").is_file()
    drep = json.loads((droot / "report.json").read_text())
    for row in ("supernet: sparse streaming", "supernet: dense full context", "supernet: sparse, full context",
                "supernet: dense, streaming", "full_only", "LAP (separately pruned)", "dense streaming-only (stage 11)"):
        assert set(drep["rows"][row]["cer"]) == {"en", "fr"} and None not in drep["rows"][row]["cer"].values(), row
    info = yaml.safe_load((sup / "export" / "sparse_streaming" / "pathway.yaml").read_text())
    pruned = info["masked_elements"] - info["kept"]  # the sparse model has exactly the pruned weights fewer
    assert abs(info["sparsity"] - 0.7) < 0.01 and pruned > 0
    rows = drep["rows"]
    assert rows["supernet: dense full context"]["nonzero"] - rows["supernet: sparse streaming"]["nonzero"] == pruned
    assert {c["verdict"] for c in drep["claims"]} == {"inconclusive"}  # one seed
    assert "decode_streaming: true" in (sup / "export" / "sparse_streaming" / "pathway.yaml").read_text()


@pytest.mark.slow
def test_mixed_batch_lap_on_a_subset_of_the_languages(tiny_recipe, tmp_path):
    """LAP trains on ESPnet's own (mixed-language) batches: on --plugin_langs fr of an en+fr corpus
    (the bilingual Table 2 on 4-language data) its batches must hold fr utterances only."""
    common = [*tiny_recipe.common, "--expdir", str(copy_exp(tiny_recipe, tmp_path / "exp"))]
    out = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "15", "--stop_stage", "15", *common,
                          "--systems", "lap", "--plugin_langs", "fr", "--plugin_epochs", "2", "--prune_interval", "6",
                          "--rerank_interval", "5", "--prune_rounds", "1"], capture_output=True, text=True, timeout=600, cwd=ROOT,
                         env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    run = tmp_path / "exp" / "pathways" / "seed0" / "lap" / "train"
    assert (run / "masks.pt").is_file()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    for f in cfg["train_shape_file"] + cfg["valid_shape_file"]:
        ids = [line.split()[0] for line in Path(f).read_text().splitlines()]
        assert ids and all(u.startswith("fr_") for u in ids), f
    assert json.loads((run.parent / "system.json").read_text())["languages"] == ["fr"]
    # An epoch of fr alone has fr's share of the steps: T scaled by it, as for the monolingual runs.
    shapes = [line.split() for line in next((tmp_path / "exp").glob("asr_stats_*/train/speech_shape")).read_text().splitlines()]
    share = sum(int(n) for u, n in shapes if u.startswith("fr_")) / sum(int(n) for _, n in shapes)
    assert 0.2 < share < 0.8
    assert yaml.safe_load((run.parent / "train.yaml").read_text())["pathways"]["prune_interval"] == max(2, int(6 * share + 0.5))


def test_mask_iou_sweep_table_figure_and_report(tmp_path, fixture_runs):
    root, dense = fixture_runs
    dirs = []
    for budget, (seed_a, seed_b) in ((1, (5, 5)), (2, (5, 6))):  # budget 1: identical masks; 2: different ones
        d = tmp_path / f"sweep_e{budget}"
        for lang, seed in (("fr", seed_a), ("nl", seed_b)):
            run = d / "seed0" / "imp" / f"train_{lang}"
            run.mkdir(parents=True)
            PathwayMasks({lang: masks(seed)}).save(run / "masks.pt")
            (run / "train.log").write_text(
                f"[x] 1epoch results: [train] iter_time=0.1, total_count={50 * budget}, loss=1 [valid] loss=2\n")
        if budget == 2:  # decoded (stage 20): each language's test CER goes into the table and figure
            sets = {f"{lang}_test": {"cer": {"err": cer}} for lang, cer in (("fr", 31.5), ("nl", 22.25))}
            (d / "seed0" / "imp" / "results.json").write_text(json.dumps({"sets": sets}))
        dirs.append(d)
    out = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, str(ROOT / "local" / "mask_iou_sweep.py"), *map(str, dirs), "--out", str(out),
                           "--langs", "fr", "nl"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [r.split("\t") for r in (out / "iou_vs_steps.tsv").read_text().splitlines()[1:]]
    assert [(r[3], r[6]) for r in rows] == [("50", "1.0000"), ("100", f"{masks(5).iou(masks(6)):.4f}")]
    assert [(r[8], r[9]) for r in rows] == [("", ""), ("31.5", "22.25")]  # CER only where decoded
    assert (out / "iou_vs_steps.png").read_bytes()[:4] == b"\x89PNG"
    rep = report(root, dense, "en", "fr", extra=["--init_sparsities", "50", "70", "--iou_sweep", str(out)])
    assert rep.returncode == 0, rep.stderr
    assert "## Mask IoU against monolingual training steps" in (root / "RESULTS.md").read_text()
    assert (root / "figures" / "iou_vs_steps.png").is_file()
    bad = subprocess.run([sys.executable, str(ROOT / "local" / "mask_iou_sweep.py"), str(dirs[0]), "--out",
                          str(tmp_path / "x"), "--langs", "fr", "it"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "train_it/masks.pt: no such file" in bad.stderr
    assert not (tmp_path / "x").exists()


def test_save_results_dense_and_pathways(tmp_path, fixture_runs):
    exp = tmp_path / "asr"
    exp.mkdir()
    (exp / "config.yaml").write_text("max_epoch: 2\n")
    (exp / "train.log").write_text(
        "[x] noise\n"
        "[x] 1epoch results: [train] iter_time=0.1, loss=90.5, loss_transducer=60.1, train_time=1.2, time=10 minutes and 0.0 seconds "
        "[valid] loss=80.0, loss_transducer=50.0\n"
        "[x] 2epoch results: [train] iter_time=0.1, loss=70.5, loss_transducer=40.1, train_time=1.1, time=590 seconds "
        "[valid] loss=60.0, loss_transducer=30.0\n")
    results(exp, {"en": 40.0})
    torch.save({"w": torch.randn(3, 3), "n": torch.tensor(3)}, exp / "valid.loss.ave.pth")
    out = tmp_path / "res"
    cmd = [sys.executable, str(ROOT / "local" / "save_results.py")]
    proc = subprocess.run(cmd + ["dense", "--exp", str(exp), "--out", str(out), "--model"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = (out / "training_curve.tsv").read_text().splitlines()
    assert rows[1].split("\t") == ["1", "90.5", "60.1", "80.0", "50.0", "600.0", ""] and len(rows) == 3
    sd = torch.load(out / "model_bf16.pth", weights_only=True)
    assert sd["w"].dtype == torch.bfloat16 and sd["n"].dtype == torch.int64
    assert (out / "results.json").is_file() and (out / "config.yaml").is_file()
    back = subprocess.run(cmd + ["restore", "--src", str(out), "--exp", str(tmp_path / "restored")],
                          capture_output=True, text=True, timeout=120)
    assert back.returncode == 0, back.stderr
    sd2 = torch.load(tmp_path / "restored" / "valid.loss.ave.pth", weights_only=True)
    assert sd2["w"].dtype == torch.float32 and torch.equal(sd2["w"], sd["w"].float())
    again = subprocess.run(cmd + ["restore", "--src", str(out), "--exp", str(tmp_path / "restored")],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "exists already" in again.stderr
    root, dense = fixture_runs
    assert report(root, dense, "en", "fr").returncode == 0
    results(root / "seed7" / "lth", {"en": 1.0})  # a seed started after the report: not saved with it
    proc = subprocess.run(cmd + ["pathways", "--pw_dir", str(root), "--out", str(tmp_path / "pw")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "pw" / "seed7").exists()
    assert (tmp_path / "pw" / "RESULTS.md").is_file() and (tmp_path / "pw" / "figures" / "iou_lth.png").is_file()
    assert json.loads((tmp_path / "pw" / "seed0" / "lth" / "results.json").read_text())["sets"]["en_test"]["utts"]
    # ... and back into a plugin dir whose exp/ is gone: stage 21 reports the saved seeds as before (no masks: no IoU)
    fresh = tmp_path / "fresh"
    back = subprocess.run(cmd + ["restore_pathways", "--src", str(tmp_path / "pw"), "--pw_dir", str(fresh)],
                          capture_output=True, text=True, timeout=120)
    assert back.returncode == 0, back.stderr
    assert sorted(p.relative_to(fresh).as_posix() for p in fresh.glob("seed*/*/")) == sorted(
        p.relative_to(tmp_path / "pw").as_posix() for p in (tmp_path / "pw").glob("seed*/*/"))
    assert report(fresh, dense, "en", "fr").returncode == 0
    before, after = (json.loads((d / "report.json").read_text()) for d in (root, fresh))
    assert after["claims"] == before["claims"]
    for n, sy in before["systems"].items():  # the same rates and statuses; only each run's dir differs
        assert {m: sy[m] for m in ("wer", "cer", "avg_wer", "avg_cer")} == {m: after["systems"][n][m] for m in ("wer", "cer", "avg_wer", "avg_cer")}
        assert [r["status"] for r in sy["seeds"].values()] == [r["status"] for r in after["systems"][n]["seeds"].values()]
    again = subprocess.run(cmd + ["restore_pathways", "--src", str(tmp_path / "pw"), "--pw_dir", str(fresh), "--seeds", "0"],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "exists, left as it is" in again.stdout and "restored 0 system(s)" in again.stdout
    bad = subprocess.run(cmd + ["restore_pathways", "--src", str(exp), "--pw_dir", str(tmp_path / "f2")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "not a saved pathways results set" in bad.stderr and not (tmp_path / "f2").exists()
    bad = subprocess.run(cmd + ["dense", "--exp", str(tmp_path / "nope"), "--out", str(tmp_path / "o2")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "no config.yaml" in bad.stderr and not (tmp_path / "o2").exists()


def test_compare_two_systems_from_different_dirs(tmp_path):
    """local/compare.py: A better on every utterance -> interval below 0; the verdict needs --min_seeds seeds;
    a path without {k} is the same run for every seed; bad input is one line, exit 2."""
    cmd = [sys.executable, str(ROOT / "local" / "compare.py")]
    for k in (0, 1, 2):
        results(tmp_path / "lr" / f"seed{k}" / "pathways_imp", {"en": 20 + k, "fr": 30})
        results(tmp_path / "pw" / f"seed{k}" / "lap_long", {"en": 26, "fr": 34 + k})
    results(tmp_path / "dense", {"en": 24, "fr": 32})
    a, b = str(tmp_path / "lr" / "seed{k}" / "pathways_imp"), str(tmp_path / "pw" / "seed{k}" / "lap_long")
    one = subprocess.run(cmd + [a, b, "--langs", "en", "fr", "--names", "low lr", "lap_long",
                                "--json", str(tmp_path / "c.json")], capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["seeds"] == [0] and c["per_seed"] == [pytest.approx(-2.5)]  # CER = WER / 2: ((20-26) + (30-34)) / 2 / 2
    assert c["interval"]["high"] < 0 and c["verdict"] == "inconclusive"  # one seed < --min_seeds 3
    assert "`low lr` − `lap_long`" in one.stdout and "inconclusive" in one.stdout
    three = subprocess.run(cmd + [a, b, "--langs", "en", "fr", "--seeds", "0", "1", "2", "--json", str(tmp_path / "c.json")],
                           capture_output=True, text=True, timeout=120)
    assert three.returncode == 0, three.stderr
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["verdict"] == "supported" and len(c["per_seed"]) == 3 and c["per_language"]["fr"]["verdict"] == "supported"
    worse = subprocess.run(cmd + [str(tmp_path / "dense"), a, "--langs", "en", "fr", "--seeds", "0", "1", "2",
                                  "--json", str(tmp_path / "d.json")], capture_output=True, text=True, timeout=120)
    assert worse.returncode == 0, worse.stderr
    assert json.loads((tmp_path / "d.json").read_text())["per_language"]["fr"]["verdict"] == "refuted"  # 32 vs 30
    for extra, msg in (([a, str(tmp_path / "nope"), "--langs", "en"], "nope/results.json: no such file"),
                       ([a, b, "--langs", "en", "it"], "no results for it"),
                       ([a, b, "--langs", "en", "--seeds", "0", "0"], "--seeds: a seed is given twice"),
                       ([a, b, "--langs", "en", "--seeds", "x"], "--seeds")):
        bad = subprocess.run(cmd + extra + ["--json", str(tmp_path / "bad.json")], capture_output=True, text=True,
                             timeout=120)
        assert bad.returncode == 2 and msg in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert not (tmp_path / "bad.json").exists()


def test_system_json_of_a_per_language_system_keeps_every_language(tmp_path):
    """IMP run with one --plugin_langs per process, side by side: system.json names every language
    that has a run (this call's, an earlier call's, the train_<l>/ dirs), in --langs order; STAGE -
    refreshes it after training; a multilingual system's languages are as given."""
    def system_json(*args):
        script = ('eval "$(sed -n "/^system_json() {/,/^}/p" local/plugin_stages.sh)"; system_json "$@"')
        r = subprocess.run(["bash", "-c", script, "x", *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, python=sys.executable, pw_dir=str(tmp_path), langs="en fr it nl"))
        assert r.returncode == 0, r.stderr
        return json.loads((tmp_path / args[0] / "system.json").read_text())

    d = system_json("imp", "2", "model=IMP", "languages=[nl]", "per_language=true")
    assert d["languages"] == ["nl"] and d["stage"] == "2"
    assert system_json("imp", "2", "model=IMP", "languages=[fr]", "per_language=true")["languages"] == ["fr", "nl"]
    (tmp_path / "imp" / "train_en").mkdir()
    d = system_json("imp", "-")
    assert d["languages"] == ["en", "fr", "nl"] and d["model"] == "IMP" and d["stage"] == "2"
    (tmp_path / "lap" / "train").mkdir(parents=True)
    assert system_json("lap", "2", "languages=[fr, nl]", "per_language=false")["languages"] == ["fr", "nl"]
    assert system_json("lap", "2", "languages=[it]", "per_language=false")["languages"] == ["it"]


def test_from_scratch_epochs_of_a_continued_dense_model_are_flagged(tmp_path):
    """A dense run that continued another (init_param in its config) has seen more epochs than its own
    max_epoch: the default --scratch_epochs would leave the earlier run out, and the recipe says so."""
    dense = tmp_path / "exp" / "asr_x"
    dense.mkdir(parents=True)
    (dense / "config.yaml").write_text("max_epoch: 8\ninit_param:\n- exp/asr_old/valid.loss.ave.pth\n")
    (dense / "valid.loss.ave.pth").write_bytes(b"")
    cmd = ["bash", str(ROOT / "run.sh"), "--stage", "14", "--stop_stage", "14", "--systems", "ref_scratch",
           "--plugin_langs", "en", "--expdir", str(tmp_path / "exp"), "--tag", "x", "--train_config",
           "conf/train_tiny.yaml", "--data", str(tmp_path / "data"), "--dump", str(tmp_path / "dump")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)  # training fails: no data
    assert "the dense model continued exp/asr_old/valid.loss.ave.pth" in out.stderr
    assert "default of 9 epochs" in out.stderr and "ref_scratch/train_en: training (9 epochs)" in out.stdout
    out = subprocess.run(cmd + ["--scratch_epochs", "17"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert "continued" not in out.stderr and "ref_scratch/train_en: training (17 epochs)" in out.stdout
