"""Shared fixtures."""
import subprocess
import sys
from pathlib import Path

import pytest
from espnet_pathways.espnet_compat import install_transducer_loss

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
