"""Plugin stages 14-21: the report on hand-made fixtures (fast), and a tiny end-to-end run (slow).

The fixtures are what the stages leave behind: ``<pw_dir>/<system>/system.json``,
``results.json`` (local/score.py's format), ``failed/<step>`` (a log path) and masks
(``train/masks.pt`` or ``train_<lang>/masks.pt``), plus the dense experiment's
``results.json`` and ``valid.loss.ave.pth``.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from espnet_pathways.masks import MaskSet, PathwayMasks

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"encoder.a.weight": (8, 6), "encoder.b.weight": (6, 6), "decoder.c.weight": (5, 4)}


def results(path: Path, wers: dict[str, float]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    sets = {f"{lang}_test": {"wer": {"err": w, "snt": 4, "wrd": 20}, "cer": {"err": w / 2, "snt": 4, "wrd": 80},
                             "missing": 0} for lang, w in wers.items()}
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
    pw, dense = tmp_path / "pathways", tmp_path / "asr_dense"
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
    return pw, dense


def test_report_tables_missing_failed_claims_figures(fixture_runs):
    pw, dense = fixture_runs
    out = report(pw, dense, "en", "fr", extra=["--init_sparsities", "50", "70"])
    assert out.returncode == 0, out.stderr
    text = (pw / "RESULTS.md").read_text()
    # Table 1: eight rows shaped like the poster's (stage, model, mask change, sparsity, training, init).
    t1 = text.split("## Table 1")[1].split("\n## ")[0]
    rows = [r for r in t1.splitlines() if r.startswith("| ") and "---" not in r]
    assert rows[0].startswith("| Stage | Model | System | Mask can change? | Sparsity | Mono/multilingual training | "
                              "Initialisation | EN | FR | Avg. | Rel. vs dense (avg) |")
    assert len(rows) == 1 + 9  # dense, Ref., LAP, IMP, LTH, 2 ASR Pathways, 2 adaptive
    assert all(len(r.split("|")) == len(rows[0].split("|")) for r in rows)
    lth = next(r for r in rows if "`lth`" in r)
    assert "44.00 (+10.0%)" in lth and "48.00" in lth and "+6.7%" in lth  # avg 48 vs dense 45
    assert "missing (stage 14)" in next(r for r in rows if "`imp`" in r)
    assert "missing (stage 14)" in next(r for r in rows if "`ref`" in r) and "| Ref. | Dense |" in t1
    assert "missing (stage 17)" in next(r for r in rows if "`adaptive_lth`" in r)
    lap = next(r for r in rows if "`lap`" in r)
    assert "failed" in lap and "train.log" in lap
    assert "FAILED at train" in text and "`dyn_lap_s70`: missing, made by stage 19" in text
    # No fr+nl and only two languages: no Table 2/3, the Dynamic Pathways table instead.
    assert "## Table 2" not in text and "## Table 3" not in text
    assert "Dynamic ASR Pathways, every initialisation" in text and "`dyn_lth_s50`" in text
    # Parameters: dense count, each pathway, the union, storage.
    assert "Dense model: 114 parameters." in text
    assert "union of 2" in text and "Shared model + bit masks" in text
    # Claims: the five of DESIGN.md section 7, each with a verdict; one seed never gives a firm one.
    claims = text.split("## Claims")[1]
    assert claims.count("**verdict:") == 5
    assert "supported**" not in claims.replace("not supported", "")
    assert "`dyn_lth_s50` − `pathways_lth`: en -1.00, fr -2.00" in claims
    rep = json.loads((pw / "report.json").read_text())
    assert len(rep["claims"]) == 5 and rep["systems"]["lap"]["status"] == "failed"
    # Figures exist, are PNG, and are linked.
    for f in ("iou_pathways_lth.png", "iou_lth.png", "sparsity_per_layer.png", "wer_vs_sparsity.png"):
        p = pw / "figures" / f
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(figures/{f})" in text


def test_report_four_languages_has_tables_2_and_3(tmp_path):
    pw, dense = tmp_path / "pathways", tmp_path / "dense"
    langs = ("en", "fr", "it", "nl")
    results(dense, dict(zip(langs, (10.0, 20.0, 30.0, 40.0))))
    results(pw / "pathways_lth", dict(zip(langs, (11.0, 19.0, 28.0, 35.0))))
    results(pw / "lap", dict(zip(langs, (12.0, 24.0, 33.0, 45.0))))
    out = report(pw, dense, *langs)
    assert out.returncode == 0, out.stderr
    text = (pw / "RESULTS.md").read_text()
    t2 = text.split("## Table 2")[1].split("\n## ")[0]
    assert "| FR | NL | Avg. |" in t2 and "`dyn_lth_s20`" in t2 and "`dyn_lap_s50`" in t2
    t3 = text.split("## Table 3")[1].split("\n## ")[0]
    assert "| EN | FR | IT | NL | Avg. |" in t3 and "`dyn_lth_s50`" in t3
    claims = text.split("## Claims")[1]
    assert "largest degradation: nl (+5.00)" in claims
    assert "Pathways help the low-resource languages (it, nl)" in claims


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
    for s in ("14  monolingual dense (Ref.), IMP and LTH", "15  language-agnostic", "16  ASR Pathways", "17  adaptive",
              "19  Dynamic ASR Pathways", "20  export", "21  report"):
        assert s in out.stdout
    for o in ("--target_sparsity (0.7)", "--plugin_langs", "--plugin_epochs", "--prune_interval", "--rerank_interval",
              "--init_sparsities", "--systems (all)"):
        assert o in out.stdout


@pytest.mark.parametrize("args, message", [
    (["--systems", "imp foo"], "--systems: unknown system 'foo'"),
    (["--target_sparsity", "70"], "--target_sparsity must be a fraction"),
    (["--init_sparsities", "0.5"], "--init_sparsities takes percentages"),
    (["--prune_interval", "x"], "--prune_interval must be a non-negative integer"),
    (["--decoder", "fast"], "--decoder must be espnet or batched"),
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
def test_tiny_plugin_stages_end_to_end(tmp_path):
    """Stages 1-13 (tiny model, 1 epoch), then LTH for en+fr, ASR Pathways, one Dynamic Pathways, decode, report."""
    decode = tmp_path / "decode_fast.yaml"  # beam 1: 0.4 s instead of 12 s per set of an untrained tiny model
    decode.write_text((ROOT / "conf" / "decode.yaml").read_text().replace("beam_size: 4", "beam_size: 1"))
    common = ["--langs", "en fr", "--corpus_size", "tiny", "--corpus_dir", str(tmp_path / "corpus"),
              "--data", str(tmp_path / "data"), "--dump", str(tmp_path / "dump"), "--expdir", str(tmp_path / "exp"),
              "--train_config", "conf/train_tiny.yaml", "--decode_config", str(decode), "--decode_nj", "2"]
    plugin = ["--systems", "ref lth pathways_lth dyn_lth_s70", "--init_sparsities", "70", "--plugin_epochs", "1",
              "--prune_interval", "2", "--prune_rounds", "1", "--rerank_interval", "1"]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    start = time.time()
    out = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "1", "--stop_stage", "21", *common, *plugin],
                         capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    took = time.time() - start
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-3000:]
    pw = tmp_path / "exp" / "pathways"
    text = (pw / "RESULTS.md").read_text()
    rep = json.loads((pw / "report.json").read_text())
    for name in ("dense", "ref", "lth", "pathways_lth", "dyn_lth_s70"):
        assert set(rep["systems"][name]["wer"]) == {"en", "fr"}, name
        assert rep["systems"][name]["status"] == "ok", name
        assert f"`{name}`" in text
    assert (pw / "pathways_lth" / "export_fr" / "model.pth").is_file()
    assert "stock ESPnet" in (pw / "pathways_lth" / "RESULTS.md").read_text()
    assert (pw / "figures" / "iou_pathways_lth.png").is_file()
    assert "missing (stage 14)" in text  # imp was not selected
    stages = [line.split("\t")[0] for line in (tmp_path / "exp" / "stage_times.tsv").read_text().splitlines()]
    assert stages[-9:] == [str(s) for s in range(13, 22)]
    print(f"tiny stages 1-21: {took:.0f}s")
    # Idempotent: a re-run of the training stages skips every finished run.
    again = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "14", "--stop_stage", "19", *common, *plugin],
                           capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("trained already (skipped)") == 6
    # Stage 20 with the batched decoder: its own decode dirs, the same hypotheses as stock ESPnet's.
    batched = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "20", "--stop_stage", "20", *common, *plugin,
                              "--decoder", "batched", "--decode_batch_size", "4"],
                             capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert batched.returncode == 0, batched.stdout[-3000:] + batched.stderr[-2000:]
    for name in ("ref", "pathways_lth"):
        for lang in ("en", "fr"):
            stock = pw / name / "decode_streaming_decode_fast" / f"{lang}_test" / "1best_recog" / "token_int"
            ours = pw / name / "decode_streaming_decode_fast_batched" / f"{lang}_test" / "1best_recog" / "token_int"
            assert sorted(ours.read_text().splitlines()) == sorted(stock.read_text().splitlines()), (name, lang)
    assert "batch_inference" in (pw / "pathways_lth" / "RESULTS.md").read_text()
