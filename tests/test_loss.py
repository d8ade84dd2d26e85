"""RNN-T loss: pure PyTorch vs torchaudio vs brute force, and ESPnet's transducer model with it."""

import argparse
import itertools
import math
import os
import subprocess
import sys

import pytest
import torch

from espnet_pathways import espnet_compat
from espnet_pathways.loss import (
    RNNTLoss,
    resolve_impl,
    rnnt_loss,
    rnnt_loss_pytorch,
    rnnt_loss_torchaudio,
)


def _random_batch(B, T, U, V, seed, dtype=torch.float32, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, U + 1, V, generator=g, dtype=dtype) * scale
    logit_lengths = torch.randint(1, T + 1, (B,), generator=g)
    target_lengths = torch.randint(0, U + 1, (B,), generator=g)
    logit_lengths[0] = T  # torchaudio wants the padded sizes to be the maxima
    target_lengths[-1] = U
    targets = torch.randint(1, V, (B, U), generator=g, dtype=torch.int32)
    return logits, targets, logit_lengths.int(), target_lengths.int()


def _loss_and_grad(fn, logits, *args, weights=None, **kw):
    x = logits.clone().requires_grad_(True)
    loss = fn(x, *args, **kw)
    w = torch.ones_like(loss) if weights is None else weights
    (loss * w).sum().backward()
    return loss.detach(), x.grad


def _brute_force_nll(logits, target):
    """-log P(y|x) for one sequence by enumerating every alignment (float64)."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    T, U1, _ = logp.shape
    U = U1 - 1
    total = []
    # an alignment is the sequence of T blanks and U labels whose last symbol is a blank;
    # choose the positions of the U labels among the first T - 1 + U symbols
    n = T - 1 + U
    for label_pos in itertools.combinations(range(n), U):
        t = u = 0
        score = 0.0
        for i in range(n):
            if i in label_pos:
                score += logp[t, u, target[u]].item()
                u += 1
            else:
                score += logp[t, u, 0].item()
                t += 1
        score += logp[t, u, 0].item()  # final blank at (T-1, U)
        assert (t, u) == (T - 1, U)
        total.append(score)
    return -torch.logsumexp(torch.tensor(total, dtype=torch.float64), 0).item()


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("shape", [(3, 7, 4, 6), (3, 5, 9, 5), (3, 1, 3, 4)])
def test_pytorch_matches_torchaudio(shape, reduction):
    B, T, U, V = shape
    logits, targets, tl, ul = _random_batch(B, T, U, V, seed=sum(shape))
    w = torch.randn(B) if reduction == "none" else None  # non-uniform upstream gradient
    v_pt, g_pt = _loss_and_grad(rnnt_loss_pytorch, logits, targets, tl, ul, weights=w, reduction=reduction)
    v_ta, g_ta = _loss_and_grad(rnnt_loss_torchaudio, logits, targets, tl, ul, weights=w, reduction=reduction)
    assert v_pt.shape == v_ta.shape
    assert torch.allclose(v_pt, v_ta, rtol=1e-6, atol=1e-5), (v_pt, v_ta)
    assert torch.allclose(g_pt, g_ta, rtol=0, atol=1e-5), (g_pt - g_ta).abs().max()
    # padded frames / label positions get no gradient
    for b in range(B):
        assert g_pt[b, int(tl[b]) :].abs().sum() == 0
        assert g_pt[b, :, int(ul[b]) + 1 :].abs().sum() == 0


def test_both_match_brute_force():
    g = torch.Generator().manual_seed(0)
    cases = [(1, 0), (1, 2), (2, 1), (3, 2), (4, 3)]  # (T, U)
    V = 5
    for T, U in cases:
        logits = torch.randn(1, T, U + 1, V, generator=g) * 2
        targets = torch.randint(1, V, (1, max(U, 1)), generator=g, dtype=torch.int32)[:, :U]
        tl, ul = torch.tensor([T]), torch.tensor([U])
        ref = _brute_force_nll(logits[0], targets[0].tolist())
        got_pt = rnnt_loss_pytorch(logits, targets, tl, ul, reduction="sum").item()
        got_ta = rnnt_loss_torchaudio(logits, targets, tl, ul, reduction="sum").item()
        assert got_pt == pytest.approx(ref, rel=1e-6, abs=1e-5), (T, U)
        assert got_ta == pytest.approx(ref, rel=1e-6, abs=1e-5), (T, U)


def test_hand_computed_tiny_case():
    # T=2, U=1, uniform logits over V=2: P = 2 alignments * (1/2)^3, loss = -log(2/8) = log 4
    logits = torch.zeros(1, 2, 2, 2)
    targets = torch.tensor([[1]], dtype=torch.int32)
    tl, ul = torch.tensor([2]), torch.tensor([1])
    for fn in (rnnt_loss_pytorch, rnnt_loss_torchaudio):
        assert fn(logits, targets, tl, ul).item() == pytest.approx(math.log(4.0), abs=1e-6)


def test_gradcheck_float64():
    logits, targets, tl, ul = _random_batch(2, 4, 3, 5, seed=3, dtype=torch.float64)
    x = logits.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda z: rnnt_loss_pytorch(z, targets, tl, ul, reduction="none"), (x,)
    )


def test_fastemit_gradient():
    """FastEmit as in warp-transducer: same loss value; the gradient gains
    lambda * d/dz[-sum_{t,u} occ_y(t,u) * log y(t,u)] with the label-transition occupancies
    occ_y held constant.  occ_y comes from an independent loop implementation of alpha/beta."""
    lam = 0.3
    logits, targets, tl, ul = _random_batch(2, 5, 3, 6, seed=11, dtype=torch.float64)
    v0, g0 = _loss_and_grad(rnnt_loss_pytorch, logits, targets, tl, ul, reduction="sum")
    v1, g1 = _loss_and_grad(
        rnnt_loss_pytorch, logits, targets, tl, ul, reduction="sum", fastemit_lambda=lam
    )
    assert torch.allclose(v0, v1)
    ref = torch.zeros_like(logits)
    for b in range(logits.size(0)):
        T, U = int(tl[b]), int(ul[b])
        x = logits[b, :T, : U + 1].clone().requires_grad_(True)
        lp = torch.log_softmax(x, -1)
        tgt = targets[b, :U].long()
        occ = _label_occupancy(lp.detach(), tgt)  # (T, U+1), column U is zero
        lab = torch.cat([tgt, tgt.new_zeros(1)]).view(1, U + 1, 1).expand(T, U + 1, 1)
        lp_y = lp.gather(-1, lab).squeeze(-1)
        (gfe,) = torch.autograd.grad(-(lam * occ * lp_y).sum(), x)
        ref[b, :T, : U + 1] = gfe
    assert (g1 - g0).abs().max() > 1e-3  # FastEmit does change the gradient
    assert torch.allclose(g1 - g0, ref, atol=1e-9), (g1 - g0 - ref).abs().max()


def _label_occupancy(lp, tgt):
    """Posterior occupancy of the label transition out of each (t, u), float64 loops."""
    T, U1, _ = lp.shape
    U = U1 - 1
    ninf = float("-inf")
    a = torch.full((T, U1), ninf, dtype=torch.float64)
    bt = torch.full((T + 1, U1 + 1), ninf, dtype=torch.float64)
    a[0, 0] = 0.0
    for t in range(T):
        for u in range(U1):
            if t == 0 and u == 0:
                continue
            c = []
            if t > 0:
                c.append(a[t - 1, u] + lp[t - 1, u, 0])
            if u > 0:
                c.append(a[t, u - 1] + lp[t, u - 1, tgt[u - 1]])
            a[t, u] = torch.logsumexp(torch.stack(c), 0)
    bt[T - 1, U] = lp[T - 1, U, 0]
    for t in range(T - 1, -1, -1):
        for u in range(U, -1, -1):
            if t == T - 1 and u == U:
                continue
            c = [bt[t + 1, u] + lp[t, u, 0]]
            if u < U:
                c.append(bt[t, u + 1] + lp[t, u, tgt[u]])
            bt[t, u] = torch.logsumexp(torch.stack(c), 0)
    lnp = bt[0, 0]
    occ = torch.zeros(T, U1, dtype=torch.float64)
    for t in range(T):
        for u in range(U):
            occ[t, u] = torch.exp(a[t, u] + lp[t, u, tgt[u]] + bt[t, u + 1] - lnp)
    return occ


def test_selector_and_warp_compatible_object():
    cpu = torch.device("cpu")
    assert resolve_impl("auto", cpu) == "pytorch"
    assert resolve_impl("auto", torch.device("cuda")) in ("torchaudio", "pytorch")
    assert resolve_impl("auto", torch.device("cuda"), fastemit_lambda=0.1) == "pytorch"
    with pytest.raises(ValueError):
        resolve_impl("torchaudio", cpu, fastemit_lambda=0.1)
    with pytest.raises(ValueError):
        resolve_impl("warp-ctc", cpu)
    logits, targets, tl, ul = _random_batch(3, 6, 4, 7, seed=5)
    ref = rnnt_loss_torchaudio(logits, targets, tl, ul)
    for impl in ("auto", "pytorch", "torchaudio"):
        crit = RNNTLoss(reduction="mean", fastemit_lambda=0.0, impl=impl)
        assert crit(logits, targets, tl, ul).item() == pytest.approx(ref.item(), abs=1e-5)
    # mean == sum / batch size (warp-transducer's and torchaudio's "mean")
    s = rnnt_loss(logits, targets, tl, ul, reduction="sum")
    assert rnnt_loss(logits, targets, tl, ul).item() == pytest.approx(s.item() / 3, rel=1e-6)


def test_install_shim_is_idempotent(monkeypatch):
    monkeypatch.delenv(espnet_compat.ENV_VAR, raising=False)
    previous = espnet_compat.installed_impl()
    espnet_compat.uninstall_transducer_loss()
    try:
        assert espnet_compat.install_transducer_loss() == "auto"
        mod = sys.modules["warprnnt_pytorch"]
        assert espnet_compat.install_transducer_loss("pytorch") == "pytorch"
        assert sys.modules["warprnnt_pytorch"] is mod
        from warprnnt_pytorch import RNNTLoss as Shim  # what ESPnet does

        assert Shim is RNNTLoss
        assert espnet_compat.installed_impl() == "pytorch"
        with pytest.raises(ValueError):
            espnet_compat.install_transducer_loss("nope")
        monkeypatch.setenv(espnet_compat.ENV_VAR, "torchaudio")
        espnet_compat.uninstall_transducer_loss()
        assert espnet_compat.install_transducer_loss() == "torchaudio"
        assert espnet_compat.install_transducer_loss("warp") == "warp"
        assert "warprnnt_pytorch" not in sys.modules
    finally:
        # leave the process as it was: later test modules build transducers through the shim
        espnet_compat.uninstall_transducer_loss()
        if previous is not None:
            espnet_compat.install_transducer_loss(previous)


@pytest.mark.parametrize("env, checked", [("0", False), ("1", True)])
def test_skip_typeguard_turns_instrumentation_off_unless_asked(env, checked, tmp_path):
    """In a fresh interpreter (typeguard's decorator is read when a module is imported): after the
    plugin's entry-point package is imported, @typechecked no longer checks, unless
    ESPNET_PATHWAYS_TYPECHECK=1 keeps it."""
    code = (
        "import espnet_pathways.bin\n"
        "from typeguard import typechecked\n"
        "@typechecked\n"
        "def f(x: int) -> int:\n"
        "    return x\n"
        "try:\n"
        "    f('not an int')\n"
        "    print('unchecked')\n"
        "except Exception as e:\n"
        "    print('checked', type(e).__name__)\n"
    )
    (tmp_path / "probe.py").write_text(code)  # typeguard instruments from source: a file, not -c
    out = subprocess.run([sys.executable, str(tmp_path / "probe.py")], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "ESPNET_PATHWAYS_TYPECHECK": env})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == ("checked" if checked else "unchecked"), out.stdout


# ---------------------------------------------------------------------------------------
# ESPnet's transducer model, through its own _calc_transducer_loss
# ---------------------------------------------------------------------------------------
def _tiny_transducer_args(token_list, input_size=20):
    return argparse.Namespace(
        token_list=token_list,
        input_size=input_size,
        frontend=None,
        frontend_conf={},
        specaug=None,
        specaug_conf={},
        normalize=None,
        normalize_conf={},
        encoder_conf={
            "input_conf": {"conv_size": 8, "subsampling_factor": 4, "vgg_like": False, "output_size": 16},
            "body_conf": [
                {
                    "block_type": "conformer",
                    "hidden_size": 16,
                    "linear_size": 32,
                    "heads": 2,
                    "conv_mod_kernel_size": 3,
                    "num_blocks": 1,
                }
            ],
            "main_conf": {"dynamic_chunk_training": True, "short_chunk_size": 4},
        },
        decoder="rnn",
        decoder_conf={"embed_size": 8, "hidden_size": 8},
        joint_network_conf={"joint_space_size": 16},
        model_conf={"auxiliary_ctc_weight": 0.3, "fastemit_lambda": 0.0},
        init=None,
    )


@pytest.mark.slow
def test_espnet_transducer_model_trains_with_installed_loss():
    """Import ESPnet (12-27 s, hence slow), build a tiny
    model with ASRTransducerTask.build_model, run
    forward + backward through ESPnet's own _calc_transducer_loss.  Runs in a fresh
    interpreter so the shim is not already imported and the real install path is tested."""
    code = r"""
import sys, torch
sys.modules.pop("warprnnt_pytorch", None)
from espnet_pathways.espnet_compat import install_transducer_loss, skip_typeguard
skip_typeguard()  # as the plugin's entry points import ESPnet
install_transducer_loss()
from espnet2.tasks.asr_transducer import ASRTransducerTask
sys.path.insert(0, sys.argv[1])
from test_loss import _tiny_transducer_args
from espnet_pathways.loss import RNNTLoss
tokens = ["<blank>", "<unk>", "a", "b", "c", "d", "<sos/eos>"]
torch.manual_seed(0)
model = ASRTransducerTask.build_model(_tiny_transducer_args(tokens))
model.train()
B = 3
speech = torch.randn(B, 64, 20)
speech_lengths = torch.tensor([64, 50, 40])
text = torch.tensor([[2, 3, 4, 5], [3, 3, -1, -1], [5, 2, 4, -1]])
text_lengths = torch.tensor([4, 2, 3])
def run():
    torch.manual_seed(1)  # the encoder draws random chunk sizes (dynamic chunk training)
    return model(speech, speech_lengths, text, text_lengths, utt_id=["a", "b", "c"])
loss, stats, weight = run()
assert isinstance(model.criterion_transducer, RNNTLoss), type(model.criterion_transducer)
assert torch.isfinite(loss).all() and loss.item() > 0, loss
loss.backward()
g = [p.grad for n, p in model.named_parameters() if n.startswith(("joint_network", "decoder", "encoder"))]
assert all(x is not None for x in g)
assert sum(float(x.abs().sum()) for x in g) > 0
assert torch.isfinite(torch.stack([x.abs().sum() for x in g])).all()
assert "criterion_transducer" not in "".join(model.state_dict().keys())
# the same batch through torchaudio's kernel (blank=0) gives the same transducer loss
model.zero_grad()
model.criterion_transducer.impl = "torchaudio"
loss_ta, stats_ta, _ = run()
assert abs(float(stats_ta["loss_transducer"]) - float(stats["loss_transducer"])) < 1e-4
print("OK", float(stats["loss_transducer"]), float(stats_ta["loss_transducer"]), float(loss))
"""
    import os
    from pathlib import Path

    tests_dir = str(Path(__file__).resolve().parent)
    repo = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    env.pop(espnet_compat.ENV_VAR, None)
    proc = subprocess.run(
        [sys.executable, "-c", code, tests_dir],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(proc.stdout.strip().splitlines()[-1])
