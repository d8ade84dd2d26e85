"""Dual-mode stages 22-24: the report on hand-made fixtures, options, help (the tiny end-to-end
run of the stages is part of tests/test_plugin_stages.py's slow test)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from espnet_pathways.masks import MaskSet, PathwayMasks
from test_plugin_stages import results

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"encoder.a.weight": (10, 10), "joint_network.b.weight": (10, 10)}


def state(zero_frac: float = 0.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    sd = {n: torch.randn(s, generator=g) + 3.0 for n, s in SHAPES.items()}
    sd["encoder.bn.running_mean"] = torch.zeros(4)  # a buffer: not a parameter
    if zero_frac:
        for n in SHAPES:
            sd[n].view(-1)[: int(zero_frac * sd[n].numel())] = 0
    return sd


def timing(ev: Path, seconds: float, langs=("en", "fr")):
    for lang in langs:
        d = ev / "decode" / f"{lang}_test"
        d.mkdir(parents=True, exist_ok=True)
        (d / "timing.json").write_text(json.dumps({"decode_seconds": seconds}))


@pytest.fixture
def dual_runs(tmp_path):
    dual, pw, dense, data = tmp_path / "dual", tmp_path / "pathways", tmp_path / "asr", tmp_path / "raw"
    for lang in ("en", "fr"):  # 10 s of audio per test set
        (data / f"{lang}_test").mkdir(parents=True)
        (data / f"{lang}_test" / "utt2num_samples").write_text(f"{lang}_1 96000\n{lang}_2 64000\n")
    dense.mkdir()
    torch.save(state(), dense / "valid.loss.ave.pth")
    results(dual / "dense" / "eval_dense_streaming", {"en": 40.0, "fr": 50.0})
    results(dual / "dense" / "eval_dense_full", {"en": 30.0, "fr": 40.0})
    timing(dual / "dense" / "eval_dense_streaming", 5.0)
    s = dual / "seed0" / "supernet"
    results(s / "eval_sparse_streaming", {"en": 36.0, "fr": 46.0})
    results(s / "eval_dense_full", {"en": 28.0, "fr": 37.0})
    results(s / "eval_sparse_full", {"en": 33.0, "fr": 44.0})
    results(s / "eval_dense_streaming", {"en": 38.0, "fr": 47.0})
    timing(s / "eval_sparse_streaming", 4.0)
    (s / "export" / "sparse_streaming").mkdir(parents=True)
    (s / "export" / "dense_full").mkdir(parents=True)
    torch.save(state(0.7), s / "export" / "sparse_streaming" / "model.pth")
    torch.save(state(), s / "export" / "dense_full" / "model.pth")
    (s / "train").mkdir()
    m = MaskSet({n: torch.ones(sh, dtype=torch.bool) for n, sh in SHAPES.items()})
    PathwayMasks({"en": m, "fr": m}).save(s / "train" / "masks.pt")
    results(dual / "seed0" / "full_only" / "eval_dense_full", {"en": 29.0, "fr": 39.0})
    results(pw / "seed0" / "lap", {"en": 44.0, "fr": 52.0})
    return dual, pw, dense, data


def dual_report(dual, pw, dense, *extra):
    return subprocess.run([sys.executable, str(ROOT / "local" / "dual_report.py"), "--dual_dir", str(dual), "--pw_dir",
                           str(pw), "--dense", str(dense), "--langs", "en", "fr", *extra],
                          capture_output=True, text=True, timeout=120)


def test_dual_report_rows_sizes_rtf_and_claims(dual_runs):
    dual, pw, dense, data = dual_runs
    out = dual_report(dual, pw, dense, "--data_dir", str(data), "--resamples", "200")
    assert out.returncode == 0, out.stderr
    text = (dual / "RESULTS.md").read_text()
    rep = json.loads((dual / "report.json").read_text())
    rows = rep["rows"]
    assert rows["supernet: sparse streaming"]["cer"] == {"en": 18.0, "fr": 23.0}  # CER = WER / 2 in the fixture
    assert rows["full_only"]["wer"] == {"en": 29.0, "fr": 39.0}
    assert rows["LAP (separately pruned)"]["wer"]["fr"] == 52.0
    assert rows["stream_only"]["wer"] == {"en": None, "fr": None} if "stream_only" in rows else True
    # sizes: the sparse export has 70 of 100 weights per tensor zeroed; storage adds 1 bit per masked element
    assert rows["supernet: sparse streaming"]["nonzero"] == 60
    assert rows["supernet: sparse streaming"]["storage"] == 4 * 60 + 200 // 8
    assert rows["supernet: dense full context"]["nonzero"] == 200
    assert rows["supernet: sparse streaming"]["rtf"] == pytest.approx(8.0 / 20.0)  # 2 x 4 s / 2 x 10 s
    assert rows["dense streaming-only (stage 11)"]["rtf"] == pytest.approx(0.5)
    assert "| supernet: sparse streaming | streaming | 18.00 | 23.00 | 20.50 | 0.000 M" in text
    claims = {c["claim"]: c for c in rep["claims"]}
    lap = claims["supernet's sparse streaming model beats the separately pruned one (LAP-70)"]
    assert lap["verdict"] == "inconclusive" and "seed" in lap["why"]  # one seed: never firm
    assert lap["per_seed"] == [pytest.approx(20.5 - 24.0)]
    assert claims["supernet's dense full-context model beats the full-context-only model"]["verdict"] == "inconclusive"
    assert "## WER" in text and "## CER" in text and "Rule: supported when" in text


def test_dual_report_without_results_or_with_bad_input(tmp_path, dual_runs):
    dual, pw, dense, _ = dual_runs
    out = dual_report(tmp_path / "none", tmp_path / "none", dense)
    assert out.returncode == 1 and "no results yet" in out.stderr
    out = dual_report(dual, pw, dense, "--seeds", "0", "0")
    assert out.returncode == 2 and out.stderr.strip() == "dual_report.py: error: --seeds: a seed is given twice: 0 0"


def test_help_lists_dual_stages_and_options():
    out = subprocess.run(["bash", str(ROOT / "run.sh"), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for s in ("22  train --dual_systems", "23  export each supernet", "24  report"):
        assert s in out.stdout
    for o in ('--dual_systems ("supernet full_only")', "--dual_epochs", "--dual_policy (both)", "--dual_distill (0)",
              "--dual_calib_batches (20)", "--dual_dir"):
        assert o in out.stdout


@pytest.mark.parametrize("args, message", [
    (["--dual_systems", "supernet foo"], "--dual_systems: unknown system 'foo'"),
    (["--dual_policy", "random"], "--dual_policy must be both, alternate or sample"),
    (["--dual_distill", "x"], "--dual_distill must be a number >= 0"),
    (["--dual_policy", "alternate", "--dual_distill", "0.5"], "--dual_distill needs --dual_policy both"),
    (["--dual_epochs", "two"], "--dual_epochs must be a non-negative integer"),
])
def test_bad_dual_options_fail_before_any_stage(args, message):
    out = subprocess.run(["bash", str(ROOT / "run.sh"), *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 2 and message in out.stderr and "Stage" not in out.stdout


@pytest.mark.parametrize("args, message", [
    (["--ssl_sparsity", "50"], "--ssl_sparsity must be a fraction in (0, 1)"),
    (["--ssl_sparsity", "en=0.5,fr=0.5"], "--ssl_sparsity 'en=0.5,fr=0.5' gives no value for language 'it'"),
    (["--ssl_sparsity", "en=0.5,fr=0.5,it=0.3,nl=0.3,de=0.2"], "--ssl_sparsity: 'de' is not one of the languages"),
    (["--ssl_sparsity", "en=5,fr=0.5,it=0.3,nl=0.3"], "--ssl_sparsity must be a fraction in (0, 1), got '5' for 'en'"),
    (["--ssl_mask_mode", "lap"], "--ssl_mask_mode must be imp or lth"),
    (["--ssl_second_iter_layer", "-1"], "--ssl_second_iter_layer must be a non-negative integer"),
    (["--ssl_k", "1"], "--ssl_k must be at least 2"),
    (["--ssl_epochs", "x"], "--ssl_epochs must be a non-negative integer"),
])
def test_bad_ssl_options_fail_before_any_stage(args, message):
    out = subprocess.run(["bash", str(ROOT / "run.sh"), *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 2 and message in out.stderr and "Stage" not in out.stdout


def test_dual_stage_without_dense_model_says_which_stage(tmp_path):
    out = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "22", "--expdir", str(tmp_path / "exp"),
                          "--train_config", "conf/train_tiny.yaml"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 1 and "dual-mode stages 22-23 start from the dense model" in out.stderr


def test_save_results_dual_keeps_the_cells_and_the_report(dual_runs, tmp_path):
    dual, pw, dense, data = dual_runs
    assert dual_report(dual, pw, dense, "--resamples", "200").returncode == 0
    out = tmp_path / "saved"
    r = subprocess.run([sys.executable, str(ROOT / "local" / "save_results.py"), "dual", "--dual_dir", str(dual),
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for f in ("RESULTS.md", "report.json", "dense/eval_dense_streaming/results.json",
              "seed0/supernet/eval_sparse_streaming/results.json", "seed0/supernet/eval_sparse_streaming/decode/en_test/timing.json",
              "seed0/full_only/eval_dense_full/results.json"):
        assert (out / f).is_file(), f
    assert not list(out.rglob("*.pth"))  # never models
    bad = subprocess.run([sys.executable, str(ROOT / "local" / "save_results.py"), "dual", "--dual_dir", str(tmp_path / "no"),
                          "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "run stage 24 first" in bad.stderr
