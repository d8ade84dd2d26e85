"""SSL stages: the labelled subset (local/ft_subset.py), the report (local/ssl_report.py), and stages 25-31 end to
end on the tiny recipe (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import copy_exp
from espnet_pathways.masks import MaskSet, PathwayMasks
from test_plugin_stages import results
from tiny_asr import ROOT

FT = [sys.executable, str(ROOT / "local" / "ft_subset.py")]
REPORT = [sys.executable, str(ROOT / "local" / "ssl_report.py")]


def fake_mls(root: Path, lang_dir: str, n: int, ten: int, one: int, spk0: int) -> list[str]:
    """An MLS language folder's handle files: ``ten`` handles in 9hr + 1hr, ``one`` of them in 1hr."""
    handles = [f"{spk0 + i}_7_{i:06d}" for i in range(n)]
    ls = root / lang_dir / "train" / "limited_supervision"
    (ls / "9hr").mkdir(parents=True)
    (ls / "9hr" / "handles.txt").write_text("\n".join(handles[one:ten]) + "\n")
    for k in range(6):
        (ls / "1hr" / str(k)).mkdir(parents=True)
        (ls / "1hr" / str(k) / "handles.txt").write_text("\n".join(handles[k:one:6]) + "\n")
    return handles


def test_ft_subset_keeps_the_handles_utterances_and_counts_stage4_drops(tmp_path):
    mls = tmp_path / "mls"
    en = fake_mls(mls, "mls_english", 40, 20, 12, 100)
    fr = fake_mls(mls, "mls_french", 30, 10, 6, 500)
    shapes = tmp_path / "shapes"
    shapes.mkdir()
    uid = {h: f"{lang}_{h.split('_')[0].zfill(6)}_{h.split('_', 1)[1]}" for lang, hs in (("en", en), ("fr", fr)) for h in hs}
    kept = [u for h, u in uid.items() if h != en[3]]  # en[3] (a 1hr handle) was dropped by stage 4
    (shapes / "speech_shape").write_text("".join(f"{u} 16000\n" for u in kept))
    (shapes / "text_shape.char").write_text("".join(f"{u} 12,30\n" for u in kept))
    out = tmp_path / "ft"
    proc = subprocess.run(FT + ["--mls_root", str(mls), "--langs", "en", "fr", "--subset", "en=1h,fr=10h",
                                "--shape_dir", str(shapes), "--token_tag", "char", "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["en"] == dict(subset="1h", utterances=11, hours=round(11 / 3600, 3), dropped_by_stage4=1)
    assert s["fr"]["utterances"] == 10 and s["fr"]["dropped_by_stage4"] == 0
    listed = (out / "utt_list").read_text().split()
    assert set(listed) == {uid[h] for h in en[:12] if h != en[3]} | {uid[h] for h in fr[:10]}
    assert [x.split()[0] for x in (out / "text_shape.char").read_text().splitlines()] == listed
    # The same subset again (a second stage-29 run side by side): the folder is left in place, untouched;
    # another subset replaces it
    inode = (out / "speech_shape").stat().st_ino
    again = subprocess.run(proc.args, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stdout.strip().endswith("(unchanged)"), again.stdout + again.stderr
    assert (out / "speech_shape").stat().st_ino == inode
    other = subprocess.run([("en=10h,fr=10h" if a == "en=1h,fr=10h" else a) for a in proc.args],
                           capture_output=True, text=True, timeout=60)
    assert other.returncode == 0 and "(unchanged)" not in other.stdout, other.stderr
    assert json.loads((out / "summary.json").read_text())["en"]["subset"] == "10h"
    assert not list(tmp_path.glob("ft.tmp*"))
    bad = subprocess.run(FT + ["--mls_root", str(mls), "--langs", "en", "--subset", "5h", "--shape_dir", str(shapes),
                               "--token_tag", "char", "--out", str(tmp_path / "bad")], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 1 and "--ssl_ft_subset: '5h'" in bad.stderr and not (tmp_path / "bad").exists()


def _ft_run(ssl: Path, k: int, name: str, wers: dict, model: dict | None = None, pathway=False):
    d = ssl / f"seed{k}" / name
    results(d / ("eval_pathway_streaming" if pathway else "eval_dense_streaming"), wers)
    (d / "train").mkdir(parents=True, exist_ok=True)
    torch.save(model or {"encoder.w": torch.zeros(4, 4)}, d / "train" / "valid.loss.ave.pth")
    if pathway:
        m = {"encoder.w": torch.rand(4, 4) < 0.5}
        PathwayMasks({"en": MaskSet(m), "fr": MaskSet({"encoder.w": ~m["encoder.w"]})}).save(d / "train" / "masks.pt")


def test_ssl_report_marks_resource_levels_counts_added_parameters_and_gives_verdicts(tmp_path):
    ssl = tmp_path / "ssl"
    for k in (0, 1, 2):
        _ft_run(ssl, k, "dense_ssl", {"en": 50.0, "fr": 60.0})
        _ft_run(ssl, k, "shared_ssl", {"en": 40.0, "fr": 50.0})  # every utterance better than dense_ssl
        _ft_run(ssl, k, "shared_ssl_pathways", {"en": 50.0, "fr": 60.0}, pathway=True)  # equal
        _ft_run(ssl, k, "adapters", {"en": 45.0, "fr": 55.0},
                model={"encoder.w": torch.zeros(4, 4), "lang_adapt.adapters.0.0.down.weight": torch.zeros(2, 4)})
    shape = tmp_path / "speech_shape"
    shape.write_text("en_1_1_1 300000,80\nen_1_1_2 300000,80\nfr_2_1_1 200000,80\n")
    proc = subprocess.run(REPORT + ["--ssl_dir", str(ssl), "--langs", "en", "fr", "--seeds", "0", "1", "2",
                                    "--systems", "no_pretrain", "dense_ssl", "shared_ssl", "shared_ssl_pathways",
                                    "adapters", "--shape_file", str(shape), "--resamples", "200"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((ssl / "report.json").read_text())
    assert rep["levels"] == {"en": "H", "fr": "L"}
    rows = rep["rows"]
    assert rows["language adapters"]["added_params"] == 8 and rows["language adapters"]["added_bytes"] == 32
    assert rows["sparse sharing + pathway FT"]["added_params"] == 0
    assert rows["sparse sharing + pathway FT"]["added_bytes"] == 4  # 16 elements x 2 languages, 1 bit each
    assert rows["sparse sharing"]["cer"] == {"en": 20.0, "fr": 25.0}
    verdicts = {c["claim"]: c["verdict"] for c in rep["claims"]}
    assert verdicts["sparse sharing beats standard SSL on the high-resource languages (en)"] == "supported"
    assert verdicts["sparse sharing beats standard SSL on the low-resource languages (fr)"] == "supported"
    assert verdicts["sparse sharing beats language adapters (all languages)"] == "supported"
    assert verdicts["sparse sharing + pathway FT beats language adapters (all languages)"] == "refuted"
    assert verdicts["sparse sharing + pathway FT beats standard SSL on the low-resource languages (fr)"] == "inconclusive"
    assert verdicts["standard SSL beats no pre-training (all languages)"] == "not tested"
    md = (ssl / "RESULTS.md").read_text()
    assert "| EN (H) | FR (L) |" in md and "| no pre-training | – | – | – | – | – |" in md


def test_ssl_report_bad_options_are_one_line_errors(tmp_path):
    for extra, msg in ((["--systems", "xlsr"], "--systems: unknown system 'xlsr'"),
                       (["--seeds", "0", "0"], "--seeds: a seed is given twice"),
                       (["--shape_file", str(tmp_path / "nope")], "nope: no such file")):
        proc = subprocess.run(REPORT + ["--ssl_dir", str(tmp_path), "--langs", "en", *extra],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and msg in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    empty = subprocess.run(REPORT + ["--ssl_dir", str(tmp_path), "--langs", "en"], capture_output=True, text=True,
                           timeout=60)
    assert empty.returncode == 1 and "no results yet" in empty.stderr


@pytest.mark.slow
def test_tiny_ssl_stages_end_to_end(tiny_recipe, tmp_path):
    """Stages 25-31 from the tiny recipe's stages 1-13 (conftest.tiny_recipe): targets, dense SSL, per-language IMP
    on the SSL loss, sparse sharing, fine-tuning on the labelled subset (two of the systems), decoding, report."""
    common = [*tiny_recipe.common, "--expdir", str(copy_exp(tiny_recipe, tmp_path / "exp")),
              "--plugin_epochs", "1", "--prune_interval", "2", "--prune_rounds", "1"]  # as the plugin stages' test
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    ssl = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "25", *common, "--ssl_k", "4", "--ssl_epochs", "1",
                          "--ssl_ft_epochs", "1", "--ssl_ft_systems", "shared_ssl_pathways adapters",
                          "--ssl_adapter_dim", "4"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert ssl.returncode == 0, ssl.stdout[-3000:] + ssl.stderr[-2000:]
    sroot = tmp_path / "exp" / "ssl"
    assert (sroot / "targets" / "tokens.txt").read_text().split() == ["0", "1", "2", "3"]
    assert (sroot / "ssl_dense" / "valid.loss.ave.pth").is_file()
    shared = PathwayMasks.load(sroot / "ssl_shared" / "train" / "masks.pt")
    assert shared.languages == ["en", "fr"] and all(n.startswith("encoder.") for n in shared.names)
    assert all(abs(v - 0.5) < 0.01 for v in shared.sparsity().values()) and shared["en"] != shared["fr"]
    ft = json.loads((sroot / "ft_data" / "summary.json").read_text())
    assert {v["subset"] for v in ft.values()} == {"10h"} and all(v["utterances"] > 0 for v in ft.values())
    assert (sroot / "seed0" / "shared_ssl_pathways" / "export_fr" / "model.pth").is_file()
    srep = json.loads((sroot / "report.json").read_text())
    for row in ("sparse sharing + pathway FT", "language adapters"):
        assert set(srep["rows"][row]["cer"]) == {"en", "fr"} and None not in srep["rows"][row]["cer"].values(), row
    assert srep["rows"]["language adapters"]["added_params"] > 0 == srep["rows"]["sparse sharing + pathway FT"]["added_params"]
    assert "--language" in (sroot / "seed0" / "adapters" / "eval_dense_streaming" / "decode" / "en_test.log").read_text()
    verdicts = {c["claim"]: c["verdict"] for c in srep["claims"]}
    assert verdicts["sparse sharing beats language adapters (all languages)"] == "not tested"  # shared_ssl not run
    sub = srep["subnetworks"]  # the masks sparse sharing trained with, as the report describes them
    assert sub["elements"] == shared["en"].numel()
    assert abs(sum(sub["held_by"].values()) - 1) < 1e-9 and sub["sparsity"].keys() == {"en", "fr"}
    assert sub["iou"]["en"]["en"] == 1.0 and 0 < sub["iou"]["en"]["fr"] < 1
    assert sub["iou_with_oneshot_magnitude"].keys() == {"en", "fr"}
    assert all(0 < v <= 1 for v in sub["iou_with_oneshot_magnitude"].values())
    runs = {r["run"]: r for r in srep["pretraining"]}
    assert set(runs) == {"dense SSL (stage 26)", "en sub-network, IMP (stage 27)", "fr sub-network, IMP (stage 27)",
                         "sparse sharing (stage 28)"}
    assert runs["sparse sharing (stage 28)"]["valid_loss_per_language"].keys() == {"en", "fr"}
    assert "## The per-language sub-networks" in (sroot / "RESULTS.md").read_text()
    assert verdicts["sparse sharing + pathway FT beats language adapters (all languages)"] == "inconclusive"
    saved = tmp_path / "saved"
    keep = subprocess.run([sys.executable, str(ROOT / "local" / "save_results.py"), "ssl", "--ssl_dir", str(sroot),
                           "--out", str(saved)], capture_output=True, text=True, timeout=120)
    assert keep.returncode == 0, keep.stderr
    for f in ("RESULTS.md", "report.json", "ssl.yaml", "targets/kmeans.json", "ft_data/summary.json",
              "ssl_dense/train_log_epochs.txt", "ssl_imp/train_fr/train_log_epochs.txt", "ssl_shared/train.yaml",
              "ssl_shared/train/train_log_epochs.txt", "seed0/adapters/eval_dense_streaming/results.json",
              "seed0/shared_ssl_pathways/train/train_log_epochs.txt"):
        assert (saved / f).is_file(), f
    assert not list(saved.rglob("*.pth")) and not list(saved.rglob("*.pkl")) and not list(saved.rglob("masks.pt"))

    # --models keeps what fine-tuning starts from; restore_ssl puts it back and stages 26-28 then skip
    sr = [sys.executable, str(ROOT / "local" / "save_results.py")]
    keep = subprocess.run(sr + ["ssl", "--ssl_dir", str(sroot), "--out", str(saved), "--models"],
                          capture_output=True, text=True, timeout=120)
    assert keep.returncode == 0, keep.stderr
    dense = torch.load(sroot / "ssl_dense" / "valid.loss.ave.pth", weights_only=True)
    kept = torch.load(saved / "models" / "ssl_dense_bf16.pth", weights_only=True)
    assert kept.keys() == dense.keys() and all(v.dtype == torch.bfloat16 for v in kept.values() if v.is_floating_point())
    fresh = tmp_path / "restored_ssl"
    back = subprocess.run(sr + ["restore_ssl", "--src", str(saved), "--ssl_dir", str(fresh)],
                          capture_output=True, text=True, timeout=120)
    assert back.returncode == 0, back.stderr
    got = torch.load(fresh / "ssl_dense" / "valid.loss.ave.pth", weights_only=True)
    assert all(torch.equal(got[k], dense[k].to(torch.bfloat16).float()) for k in dense if dense[k].is_floating_point())
    masks = (sroot / "ssl_shared" / "init_masks.pt").read_bytes()
    assert (fresh / "ssl_shared" / "init_masks.pt").read_bytes() == masks
    assert (fresh / "seed0" / "adapters" / "eval_dense_streaming" / "results.json").is_file()
    skip = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "26", "--stop_stage", "28", *common,
                           "--ssl_dir", str(fresh)], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert skip.returncode == 0, skip.stdout[-3000:] + skip.stderr[-2000:]
    assert "per-language pruning skipped" in skip.stdout and "trained already (skipped, masks kept)" in skip.stdout
    assert not (fresh / "ssl_imp").exists() and (fresh / "ssl_shared" / "init_masks.pt").read_bytes() == masks
    again = subprocess.run(sr + ["restore_ssl", "--src", str(saved), "--ssl_dir", str(fresh)],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "exists already" in again.stderr and len(again.stderr.splitlines()) == 1
    none = subprocess.run(sr + ["restore_ssl", "--src", str(sroot), "--ssl_dir", str(tmp_path / "r2")],
                          capture_output=True, text=True, timeout=120)
    assert none.returncode == 1 and "no models/ssl_dense_bf16.pth" in none.stderr and not (tmp_path / "r2").exists()



@pytest.mark.slow
def test_tiny_ssl_second_iteration_lth_masks_and_per_language_sparsity(tiny_recipe, tmp_path):
    """--ssl_second_iter_layer k: stage 26 pre-trains on the MFCC targets, clusters block k of that model and pre-trains
    again from scratch on those targets; --ssl_mask_mode lth with per-language --ssl_sparsity in stages 27-28; later
    runs with other settings do not reuse those models or masks."""
    common = [*tiny_recipe.common, "--expdir", str(copy_exp(tiny_recipe, tmp_path / "exp")), "--ssl_k", "4",
              "--ssl_epochs", "1", "--ssl_share_epochs", "1", "--plugin_epochs", "1", "--prune_interval", "2",
              "--prune_rounds", "1"]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    run = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "25", "--stop_stage", "28", *common,
                          "--ssl_second_iter_layer", "1", "--ssl_mask_mode", "lth", "--ssl_sparsity", "en=0.5,fr=0.3"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    sroot = tmp_path / "exp" / "ssl"
    assert json.loads((sroot / "targets_layer1" / "kmeans.json").read_text())["feature"] == "layer1"
    assert json.loads((sroot / "targets" / "kmeans.json").read_text())["feature"] == "mfcc"
    assert (sroot / "ssl_dense_it1" / "targets").read_text().strip() == "targets"
    assert (sroot / "ssl_dense" / "targets").read_text().strip() == "targets_layer1"
    one, two = (torch.load(sroot / d / "valid.loss.ave.pth", weights_only=True) for d in ("ssl_dense_it1", "ssl_dense"))
    enc = next(k for k in one if k.startswith("encoder."))
    assert one.keys() == two.keys() and not torch.equal(one[enc], two[enc])  # iteration 2 starts from scratch
    log = (sroot / "ssl_dense" / "train.log").read_text()
    assert "targets_layer1/train/text" in log and "ssl_dense_it1" not in log
    assert (sroot / "ssl_lth" / "train_fr" / "targets").read_text().strip() == "targets_layer1"
    assert "mode: lth" in (sroot / "ssl_lth" / "train_en.yaml").read_text() and not (sroot / "ssl_imp").exists()
    shared = PathwayMasks.load(sroot / "ssl_shared" / "init_masks.pt")
    sp = {lang: shared[lang].sparsity() for lang in shared.languages}
    assert abs(sp["en"] - 0.5) < 0.01 and abs(sp["fr"] - 0.3) < 0.01, sp
    assert (sroot / "ssl_shared" / "masks_from").read_text().strip() == "mode=lth sparsity=en=0.5,fr=0.3 targets=targets_layer1"
    imp = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "27", "--stop_stage", "28", *common,
                          "--ssl_second_iter_layer", "1"], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert imp.returncode == 1 and not (sroot / "ssl_imp").exists()
    assert ("its masks are from 'mode=lth sparsity=en=0.5,fr=0.3 targets=targets_layer1', "
            "not 'mode=imp sparsity=0.5 targets=targets_layer1'") in imp.stderr
    other = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "26", "--stop_stage", "26", *common],
                           capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert other.returncode == 1
    assert "ssl_dense: trained on targets_layer1, not targets" in other.stderr
    bad = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "26", *common, "--ssl_second_iter_layer", "x"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert bad.returncode == 2 and "--ssl_second_iter_layer must be a non-negative integer" in bad.stderr
