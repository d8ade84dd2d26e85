"""Shared fixtures."""
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from espnet_pathways.espnet_compat import install_transducer_loss, skip_typeguard

skip_typeguard()  # as the plugin's entry points run ESPnet (~13 s less to import it once per session)

ROOT = Path(__file__).resolve().parents[1]
# How `tiny_mls` is made (a re-run with the same arguments is a no-op).
TINY_MLS_ARGS = ("--size", "tiny", "--seed", "0", "--jobs", "2")
TINY_MLS_LANGS = ("en", "fr")


@pytest.fixture(scope="session")
def tiny_mls(tmp_path_factory) -> Path:
    """A tiny synthetic mini-MLS of English and French (MLS layout; ~3 s to make).

    Returns the root holding mls_english/ and mls_french/ (3 train speakers with 10
    utterances, 1 dev and 1 test speaker with 4 each, per language). Treat it as read-only.
    """
    root = tmp_path_factory.mktemp("tiny_mls")
    out = subprocess.run([sys.executable, str(ROOT / "local" / "make_mini_mls.py"), "--out", str(root),
                          *TINY_MLS_ARGS, "--langs", *TINY_MLS_LANGS],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return root


@pytest.fixture(autouse=True)
def _rnnt_loss():
    """ESPnet imports ``warprnnt_pytorch`` lazily, per model: every test starts with the shim in place."""
    install_transducer_loss()


@dataclass(frozen=True)
class TinyRecipe:
    """A finished ``run.sh`` stages 1-13 on the tiny mini-MLS; ``common`` are the run.sh options it used."""

    work: Path
    common: tuple
    took: float

    @property
    def exp(self) -> Path:
        return self.work / "exp"


@pytest.fixture(scope="session")
def tiny_recipe(tmp_path_factory) -> TinyRecipe:
    """``./run.sh --stage 1 --stop_stage 13`` once per test run (slow tests share it, ~1-3 min).

    Tiny mini-MLS of en and fr, ``conf/train_tiny.yaml`` (1 epoch), decoding with beam 1 (0.4 s
    instead of 12 s per set of an untrained tiny model). Its corpus, data and dump dirs are
    read-only for the tests; a test that runs later stages copies ``exp/`` (``copy_exp``) and
    points ``--expdir`` at the copy. Under pytest-xdist the workers share one build: the first
    to ask makes it under a file lock in the run's common temporary folder, the others wait and
    reuse it.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return _build_tiny_recipe(tmp_path_factory.mktemp("tiny_recipe"))
    from filelock import FileLock

    work = tmp_path_factory.getbasetemp().parent / "tiny_recipe"
    done = work / "built.json"
    with FileLock(str(work) + ".lock"):
        if done.is_file():
            info = json.loads(done.read_text())
            return TinyRecipe(work, tuple(info["common"]), info["took"])
        if work.exists():  # a worker's failed build
            shutil.rmtree(work)
        work.mkdir()
        recipe = _build_tiny_recipe(work)
        done.write_text(json.dumps({"common": list(recipe.common), "took": recipe.took}))
        return recipe


def _build_tiny_recipe(work: Path) -> TinyRecipe:
    decode = work / "decode_fast.yaml"
    decode.write_text((ROOT / "conf" / "decode.yaml").read_text().replace("beam_size: 4", "beam_size: 1"))
    common = ("--langs", "en fr", "--corpus_size", "tiny", "--corpus_dir", str(work / "corpus"),
              "--data", str(work / "data"), "--dump", str(work / "dump"),
              "--train_config", "conf/train_tiny.yaml", "--decode_config", str(decode), "--decode_nj", "2")
    start = time.time()
    out = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "1", "--stop_stage", "13", *common,
                          "--expdir", str(work / "exp")], capture_output=True, text=True, timeout=900, cwd=ROOT,
                         env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return TinyRecipe(work, common, time.time() - start)


def pytest_collection_modifyitems(items):
    """The longest tests first (those on the tiny recipe, then the other slow ones), so that with
    ``-n 2 --dist worksteal`` (local/run_tests.sh) the rest of the suite runs beside them."""
    def rank(item) -> int:
        if "tiny_recipe" in getattr(item, "fixturenames", ()):
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)


def copy_exp(recipe: TinyRecipe, dest: Path) -> Path:
    """A private copy of the tiny recipe's ``exp/`` (the dense model, stats, stage times) at ``dest``."""
    shutil.copytree(recipe.exp, dest, symlinks=True)
    return dest
