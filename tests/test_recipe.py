"""The recipe as a user runs it: ./run.sh options, bad input, and a tiny end-to-end run."""
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import copy_exp

ROOT = Path(__file__).resolve().parents[1]


def run_sh(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "run.sh"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_help_lists_stages_and_options():
    out = run_sh("--help")
    assert out.returncode == 0
    for needle in ("Stage", "11  train", "--mls_root", "--stop_stage", "--langs"):
        assert needle in out.stdout


@pytest.mark.parametrize("args, message", [
    (["--stage", "5", "--stop_stage", "3"], "--stage 5 is greater than --stop_stage 3"),
    (["--no_such_option", "1"], "unknown option --no_such_option"),
    (["--stage", "x"], "--stage must be a non-negative integer"),
    (["--decode_mode", "fast"], "--decode_mode must be streaming or full"),
    (["--train_config", "conf/missing.yaml"], "--train_config conf/missing.yaml: no such file"),
    (["--stage"], "option --stage needs a value"),
    (["--langs", ""], "--langs needs at least one language code"),
    (["--langs", "fr nl fr"], "--langs: 'fr' is given twice in 'fr nl fr'"),
    (["--plugin_langs", "nl nl"], "--plugin_langs: 'nl' is given twice"),
    (["--ssl_ft_systems", "xlsr"], "--ssl_ft_systems: unknown system 'xlsr'"),
    (["--skip_missing_audio", "yes"], "--skip_missing_audio must be true or false"),
    (["--dyn_free_pool", "grow"], "--dyn_free_pool must be zero or keep, got 'grow'"),
    (["--plugin_lr", "1e-3x"], "--plugin_lr must be a positive number, got '1e-3x'"),
    (["--plugin_lr", "0.0"], "--plugin_lr must be a positive number"),
    (["--plugin_warmup", "0"], "--plugin_warmup must be a positive integer (optimizer steps), got '0'"),
    (["--plugin_schedule", "cosine"], "--plugin_schedule must be config or tristage, got 'cosine'"),
    (["--plugin_schedule", "tristage", "--plugin_warmup", "5"], "--plugin_warmup: not with --plugin_schedule tristage"),
    (["--decode_cmd", "utils/nope.pl --config conf/slurm.conf"], "--decode_cmd: 'utils/nope.pl' is not a command"),
])
def test_bad_options_fail_with_one_line(args, message):
    out = run_sh(*args)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]  # one line
    assert message in out.stderr


def test_plugin_warmup_needs_a_scheduler_with_warmup_steps(tmp_path):
    cfg = tmp_path / "tri.yaml"
    cfg.write_text((ROOT / "conf" / "train_tiny.yaml").read_text().replace("scheduler: warmuplr", "scheduler: tristagelr"))
    out = run_sh("--train_config", str(cfg), "--plugin_warmup", "10", "--stage", "21")
    assert out.returncode == 2, out.stderr
    assert f"--plugin_warmup: {cfg}'s scheduler 'tristagelr' has no warmup_steps" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_missing_mls_root_is_reported(tmp_path):
    out = run_sh("--stage", "1", "--stop_stage", "1", "--mls_root", str(tmp_path / "nowhere"),
                 "--data", str(tmp_path / "data"), "--expdir", str(tmp_path / "exp"))
    assert out.returncode != 0
    assert "--mls_root" in out.stderr and "nowhere" in out.stderr
    assert not (tmp_path / "data").exists()
    assert not (tmp_path / "exp").exists()  # nothing half-made: no empty experiment or logs dir


@pytest.mark.slow
def test_tiny_end_to_end_stages_1_to_13(tiny_recipe, tmp_path):
    """Stages 1-13 on a tiny mini-MLS (2 languages) with a tiny model and one epoch (conftest.tiny_recipe)."""
    exp = tiny_recipe.exp / "asr_train_tiny"
    results = json.loads((exp / "results.json").read_text())
    assert set(results["sets"]) == {"en_test", "fr_test"}
    for s in results["sets"].values():
        assert s["wer"]["snt"] > 0 and s["wer"]["wrd"] > 0
        assert 0 <= s["cer"]["err"]
    text = (exp / "RESULTS.md").read_text()
    assert "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|" in text
    assert "| en |" in text and "| fr |" in text
    # Every stage recorded its wall time.
    stages = [line.split("\t")[0] for line in (tiny_recipe.exp / "stage_times.tsv").read_text().splitlines()]
    assert stages == ["1", "3", "4", "5", "10", "11", "12", "13"]
    print(f"tiny stages 1-13: {tiny_recipe.took:.0f}s")
    # Re-running is cheap: finished stages are skipped (on a copy of exp/: the fixture stays as it was).
    again = run_sh("--stage", "5", "--stop_stage", "11", *tiny_recipe.common,
                   "--expdir", str(copy_exp(tiny_recipe, tmp_path / "exp")), timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "exists: skipped" in again.stdout


def test_espnet_checkout_drop_in(tmp_path, tiny_mls):
    """egs2/mls/asr1/run_pathways.sh inside an ESPnet-like recipe dir reads db.sh's MLS."""
    recipe = tmp_path / "espnet" / "egs2" / "mls" / "asr1"
    recipe.mkdir(parents=True)
    (recipe / "db.sh").write_text(f"MLS={tiny_mls}\n")
    (recipe / "run_pathways.sh").symlink_to(ROOT / "egs2" / "mls" / "asr1" / "run_pathways.sh")
    env = {**os.environ, "ESPNET_PATHWAYS": str(ROOT)}
    out = subprocess.run(["./run_pathways.sh", "--langs", "en fr", "--stop_stage", "4"], cwd=recipe,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for d in ("en_test", "fr_dev", "train"):
        assert (recipe / "pathways" / "dump" / "raw" / d / "wav.scp").is_file()
    assert not (recipe / "data").exists()  # ESPnet's own dirs stay untouched

    (recipe / "db.sh").write_text("MLS=\n")
    bad = subprocess.run(["./run_pathways.sh"], cwd=recipe, env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "MLS in db.sh is empty" in bad.stderr
