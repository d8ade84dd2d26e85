"""Dual-mode self-pruning: the two passes, their gradients, the self-pruned mask, bad input."""

from __future__ import annotations

import pytest
import torch
from espnet_pathways.espnet_compat import install_transducer_loss

install_transducer_loss()

from espnet_pathways.controller import PathwaysConfig, PathwaysError  # noqa: E402
from espnet_pathways.model import encoder_forward, lattice_kl  # noqa: E402
from espnet_pathways.modes import Pass  # noqa: E402
from test_model import _args, batch, build, controller  # noqa: E402

SCHED = dict(final_sparsity=0.6, prune_interval=2, num_rounds=2, rerank_interval=1)


def dual(model, languages=("en", "fr"), options=None, **conf):
    return controller(model, "dual_mode", languages=languages, **{**SCHED, **conf}, dual_mode=options or {})


def feats(model, b):
    model.eval()
    with torch.no_grad():
        return model.features(b["speech"], b["speech_lengths"])


# ---------------------------------------------------------------- the encoder's two modes
def test_full_context_pass_equals_stock_encoder_without_dynamic_chunks():
    model = build()
    x, n = feats(model, batch("fr"))
    enc = model.encoder
    with torch.no_grad():
        ours = encoder_forward(enc, x, n, None)
        enc.dynamic_chunk_training = False
        stock = enc(x, n)
    assert torch.equal(ours[0], stock[0]) and torch.equal(ours[1], stock[1])


def test_streaming_pass_does_not_look_past_its_chunk():
    model = build()
    x, n = feats(model, batch("fr", b=1))
    chunk, sub = 3, model.encoder.embed.subsampling_factor
    y = x.clone()
    cut = 40  # input frames; changed from here on
    y[:, cut:] += 1.0
    with torch.no_grad():
        a, _ = encoder_forward(model.encoder, x, n, chunk)
        b, _ = encoder_forward(model.encoder, y, n, chunk)
        fa, _ = encoder_forward(model.encoder, x, n, None)
        fb, _ = encoder_forward(model.encoder, y, n, None)
    # encoder frames whose chunk ends before any input frame >= cut reaches the subsampling
    safe = ((cut // sub - 2) // chunk) * chunk
    assert safe >= chunk
    assert torch.equal(a[:, :safe], b[:, :safe])
    assert not torch.equal(a[:, safe + chunk:], b[:, safe + chunk:])
    assert not torch.allclose(fa[:, :safe], fb[:, :safe])  # full context sees the future


# ---------------------------------------------------------------- the passes in the model
def _loss(model, passes, b, lang="fr"):
    model.zero_grad(set_to_none=True)
    loss, stats, _ = model._multi_pass(passes, lang, b["speech"], b["speech_lengths"], b["text"], b["text_lengths"],
                                       utt_id=b["utt_id"])
    loss.backward()
    return loss, stats, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_one_backward_gives_masked_stream_gradient_plus_dense_gradient():
    model = build()
    ctl = dual(model, initial_sparsity=0.5)
    ctl.start()
    model.eval()  # deterministic (dropout, SpecAugment off); gradients still flow
    b = batch("fr")
    stream, full = Pass("stream_sparse", 1.0, True, 4), Pass("full_dense", 1.0, False, None)
    _, stats, g_both = _loss(model, [full, stream], b)
    _, _, g_stream = _loss(model, [stream], b)
    _, _, g_full = _loss(model, [full], b)
    m = ctl.masks["fr"]
    assert 0.45 < m.sparsity() < 0.55
    for n, g in g_both.items():
        expect = g_full[n] + g_stream.get(n, torch.zeros_like(g))
        assert torch.allclose(g, expect, rtol=1e-5, atol=1e-7), n
        if n in m:  # outside m the streaming pass contributes nothing
            assert not g_stream[n][~m[n]].any(), n
            assert g_full[n][~m[n]].any(), n
    assert set(stats) >= {"loss", "loss_stream_sparse", "loss_full_dense", "loss_transducer_full_dense"}
    assert torch.allclose(stats["loss"], stats["loss_stream_sparse"] + stats["loss_full_dense"])


def test_sparse_pass_equals_a_stock_model_with_masked_weights(monkeypatch):
    model = build()
    ctl = dual(model, initial_sparsity=0.5)
    ctl.start()
    model.eval()
    b = batch("en")
    loss, _, _ = _loss(model, [Pass("s", 1.0, True, 5)], b, lang="en")
    stock = build(stock=True)
    stock.load_state_dict(model.state_dict())
    with torch.no_grad():
        ctl.masks["en"].apply_(stock)
    stock.eval()
    # stock Encoder.forward's own draw, made to pick chunk 5: randint -> 4, 4 % 25 + 1 = 5
    monkeypatch.setattr(torch, "randint", lambda *a, **k: torch.tensor([4]))
    with torch.no_grad():
        stock_loss = stock(**b)[0]
    assert torch.allclose(loss.detach(), stock_loss, rtol=1e-6, atol=0), (loss, stock_loss)
    params = dict(model.named_parameters())
    m = ctl.masks["en"]
    assert all(params[n][~m[n]].any() for n in m.names)  # θ itself is never masked


# ---------------------------------------------------------------- training: policies, self-pruning
def _train(model, ctl, steps, lang_of=lambda i: ("en", "fr")[i % 2]):
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    ctl.install(opt)
    model.train()
    seen, sparsity = [], []
    for i in range(steps):
        opt.zero_grad()
        loss, stats, _ = model(**batch(lang_of(i), seed=i))
        loss.backward()
        opt.step()
        seen.append(sorted(k[5:] for k in stats if k in ("loss_stream_sparse", "loss_full_dense")))
        sparsity.append(ctl.masks["en"].sparsity())
    return seen, sparsity


def test_self_pruning_follows_the_schedule_and_never_zeroes_theta():
    model = build()
    ctl = dual(model)  # s_0 = 0 -> 0.6 at steps 2 and 4, re-ranks at odd steps before 4, frozen after
    seen, sparsity = _train(model, ctl, 6)
    assert seen == [["full_dense", "stream_sparse"]] * 6  # policy both
    target = [ctl.sparsity_at("en", t) for t in range(1, 7)]
    total = ctl.masks["en"].numel()
    assert all(abs(s - x) <= len(ctl.names) / total for s, x in zip(sparsity, target)), (sparsity, target)
    assert sparsity[-1] == pytest.approx(0.6, abs=len(ctl.names) / total) and target[0] < 0.6
    events = [(e["step"], e["event"]) for e in ctl.masks.history if e["event"] != "start"]
    assert events == [(1, "rerank"), (2, "prune"), (3, "rerank"), (4, "prune")]
    assert ctl.masks["en"] is ctl.masks["fr"]  # one mask for every language
    params = dict(model.named_parameters())
    m = ctl.masks["en"]
    outside = sum(int(params[n][~m[n]].ne(0).sum()) for n in m.names)
    assert outside > 0.9 * (m.numel() - m.kept())  # pruned weights keep their (trained) values
    model = build()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ctl = dual(model, initial_sparsity=0.5)
    ctl.start()  # a start mask at s_0 > 0 does not zero θ either
    assert ctl.masks["en"].sparsity() == pytest.approx(0.5, abs=0.01)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_alternate_and_sample_choose_one_pass_per_step_the_same_on_every_rank():
    model = build()
    seen, _ = _train(model, dual(model, options={"policy": "alternate"}), 4)
    assert seen == [["stream_sparse"], ["full_dense"], ["stream_sparse"], ["full_dense"]]

    def draws(seed, p=0.5, n=40):
        ctl = dual(build(), options={"policy": "sample", "stream_prob": p})
        ctl.seed = seed
        out = []
        for t in range(n):
            ctl.step = t
            out.append(ctl.rule.passes(training=True)[0].name)
        return out

    rank0, rank1 = draws(3), draws(3)  # two ranks: same seed, same steps, own processes' RNG states
    torch.manual_seed(123)
    assert rank0 == rank1 == draws(3)
    assert rank0 != draws(4)
    assert 10 < rank0.count("stream_sparse") < 30
    assert set(draws(3, p=1.0, n=10)) == {"stream_sparse"} and set(draws(3, p=0.0, n=10)) == {"full_dense"}


def test_training_chunks_are_drawn_up_to_max_chunk_and_never_full_context():
    ctl = dual(build(), options={"max_chunk": 3, "valid_chunk": 2})
    torch.manual_seed(0)
    chunks = {ctl.rule.passes(training=True)[1].chunk for _ in range(200)}
    assert chunks == {1, 2, 3}
    valid = ctl.rule.passes(training=False)
    assert [(p.name, p.chunk, p.sparse) for p in valid] == [("full_dense", None, False), ("stream_sparse", 2, True)]


def test_validation_reports_both_modes():
    model = build()
    ctl = dual(model, initial_sparsity=0.3)
    model.eval()
    with torch.no_grad():
        loss, stats, _ = model(**batch("fr"))
    assert ctl.started
    assert {"loss_stream_sparse", "loss_full_dense", "loss_fr"} <= set(stats)
    assert torch.allclose(loss, stats["loss_stream_sparse"] + stats["loss_full_dense"])


def test_in_place_distillation():
    t = torch.randn(2, 5, 4, 7)
    tl, ul = torch.tensor([5, 3]), torch.tensor([3, 1])
    assert lattice_kl(t, t, tl, ul).abs() < 1e-6
    s = t.clone()
    s[1, 3:] = 100.0  # outside sample 1's lattice (t >= 3): ignored
    assert lattice_kl(t, s, tl, ul).abs() < 1e-6
    assert lattice_kl(t, torch.randn_like(t), tl, ul) > 0
    model = build()
    dual(model, options={"distill_weight": 0.5}, initial_sparsity=0.5)
    model.eval()
    b = batch("fr")
    passes = [Pass("full_dense", 1.0, False, None), Pass("stream_sparse", 1.0, True, 4, "full_dense", 0.5)]
    model.pathways.start()
    loss, stats, _ = _loss(model, passes, b)
    assert stats["loss_distill_stream_sparse"] > 0
    assert torch.allclose(loss, stats["loss_full_dense"] + stats["loss_stream_sparse"] + 0.5 * stats["loss_distill_stream_sparse"])


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("conf, message", [
    ({"dual_mode": {"policy": "random"}}, r"pathways\.dual_mode\.policy: 'random' is not one of both, alternate, sample"),
    ({"dual_mode": {"stream_weight": 0, "full_weight": 0.0}}, r"both are zero"),
    ({"dual_mode": {"stream_weight": -1}}, r"stream_weight: must be a number >= 0"),
    ({"dual_mode": {"max_chunk": 0}}, r"max_chunk: must be a positive integer"),
    ({"dual_mode": {"chunk": 4}}, r"pathways\.dual_mode\.chunk: unknown option"),
    ({"dual_mode": {"policy": "alternate", "distill_weight": 1.0}}, r"distill_weight: distillation needs both passes"),
    ({"dual_mode": "both"}, r"pathways\.dual_mode: expected a mapping"),
    ({"final_sparsity": 1.0}, r"final_sparsity must be in \[0, 1\)"),
    ({"rewind": True}, r"pathways\.rewind: not used by mode dual_mode"),
])
def test_bad_options_are_one_line_errors(conf, message):
    d = {"mode": "dual_mode", **SCHED, **conf}
    with pytest.raises(PathwaysError, match=message):
        PathwaysConfig.from_dict(d)


def test_a_chunk_above_the_encoder_maximum_or_no_dynamic_chunk_training_is_refused():
    with pytest.raises(PathwaysError, match=r"max_chunk: 26 is larger than the encoder's short_chunk_size 25"):
        dual(build(), options={"max_chunk": 26})
    args = _args()
    args.encoder_conf["main_conf"]["dynamic_chunk_training"] = False
    from espnet_pathways.task import ASRPathwaysTask

    torch.manual_seed(0)
    model = ASRPathwaysTask.build_model(args)
    with pytest.raises(PathwaysError, match=r"dual_mode needs encoder_conf\.main_conf\.dynamic_chunk_training: true"):
        dual(model)


# ---------------------------------------------------------------- BatchNorm recalibration
def test_batchnorm_recalibration_gives_the_statistics_of_its_calibration_batches():
    from espnet_pathways.recalibrate import batchnorm_layers, recalibrate_batchnorm

    model = build()
    bns = batchnorm_layers(model)
    assert bns  # the conformer convolution module's BatchNorm
    batches = [(batch("fr", seed=i)["speech"], batch("fr", seed=i)["speech_lengths"]) for i in range(3)]
    seen = []
    hook = bns[0].register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert recalibrate_batchnorm(model, batches, 4) == 3
    hook.remove()
    x = torch.stack([s.transpose(0, 1).reshape(s.size(1), -1).mean(1) for s in seen])  # per-batch channel means
    v = torch.stack([s.transpose(0, 1).reshape(s.size(1), -1).var(1, unbiased=True) for s in seen])
    assert torch.allclose(bns[0].running_mean, x.mean(0), atol=1e-6)
    assert torch.allclose(bns[0].running_var, v.mean(0), rtol=1e-5, atol=1e-6)
    assert int(bns[0].num_batches_tracked) == 3 and bns[0].momentum == 0.1 and not model.training
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    # another mode, other statistics
    recalibrate_batchnorm(model, batches, None)
    assert not torch.allclose(bns[0].running_mean, x.mean(0), atol=1e-6)


# ---------------------------------------------------------------- per-language pathways under one dense model
def test_dual_pathways_stream_each_language_through_its_own_fixed_mask():
    from test_model import random_masks

    model = build()
    masks = random_masks(model, keep=0.4)
    ctl = controller(model, "dual_pathways", masks=masks, languages=("en", "fr"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    seen, _ = _train(model, ctl, 4)
    assert seen == [["full_dense", "stream_sparse"]] * 4
    assert ctl.masks["en"] == masks["en"] and ctl.masks["fr"] == masks["fr"]  # fixed: no events
    assert ctl.events == 0
    params = dict(model.named_parameters())
    assert all(params[n][~masks.union()[n]].ne(0).any() for n in masks.names)  # θ is never zeroed
    assert any(not torch.equal(params[n], before[n]) for n in masks.names)
    # the streaming pass of a French batch computes with θ ⊙ m_fr: no streaming gradient outside m_fr
    model.eval()
    _, _, g = _loss(model, [Pass("stream_sparse", 1.0, True, 4)], batch("fr"), lang="fr")
    assert all(not g[n][~masks["fr"][n]].any() and g[n][masks["fr"][n]].any() for n in masks.names)
    with pytest.raises(PathwaysError, match=r"pathways\.init_masks: mode dual_pathways needs a masks file"):
        PathwaysConfig.from_dict({"mode": "dual_pathways"})
    with pytest.raises(PathwaysError, match=r"pathways\.final_sparsity: not used by mode dual_pathways"):
        PathwaysConfig.from_dict({"mode": "dual_pathways", "init_masks": "x", "final_sparsity": 0.5})
    with pytest.raises(PathwaysError, match=r"pathways\.dual_pathways\.policy: 'x' is not one of"):
        PathwaysConfig.from_dict({"mode": "dual_pathways", "init_masks": "x", "dual_pathways": {"policy": "x"}})
