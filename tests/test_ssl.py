"""Encoder SSL (HuBERT-style) on the transducer's own encoder: loss, targets, init_param, pathways."""

from __future__ import annotations

import pytest
import torch
from espnet_pathways.espnet_compat import install_transducer_loss

install_transducer_loss()

from espnet2.torch_utils.load_pretrained_model import load_pretrained_model  # noqa: E402

from espnet_pathways.controller import PathwaysConfig, PathwaysController, PathwaysError  # noqa: E402
from espnet_pathways.masks import prunable_names  # noqa: E402
from espnet_pathways.ssl import EncoderSSLModel, TargetLengthError  # noqa: E402
from espnet_pathways.ssl_task import EncoderSSLTask  # noqa: E402
from test_model import _args, batch, build  # noqa: E402

K = 12


def ssl_model(seed=0, **conf):
    args = _args()
    args.token_list = [str(i) for i in range(K)]
    args.ssl_conf = {"final_dim": 16, "masking_conf": {"mask_prob": 0.5, "mask_length": 2}, **conf}
    torch.manual_seed(seed)
    return EncoderSSLTask.build_model(args)


def ssl_batch(model, lang="fr", seed=0, b=3, shift=0):
    x = batch(lang, seed=seed, b=b)
    with torch.no_grad():
        model.eval()
        _, lengths, _ = model.encode(x["speech"], x["speech_lengths"], mask=False)
    g = torch.Generator().manual_seed(seed)
    n = lengths + shift
    x["text"] = torch.randint(0, K, (b, int(n.max())), generator=g)
    x["text_lengths"] = n
    return x


@pytest.mark.parametrize("chunk", [None, 4])
def test_forward_backward_finite_full_context_and_chunked(chunk):
    model = ssl_model(chunk_size=chunk)
    b = ssl_batch(model)
    model.train()
    loss, stats, _ = model(**b)
    assert torch.isfinite(loss) and loss > 0 and 0 <= float(stats["acc_m"]) <= 1
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["masking.mask_embedding"] is not None and grads["masking.mask_embedding"].abs().sum() > 0
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), [n for n, g in grads.items() if g is None]


def test_chunked_attention_does_not_see_the_future():
    model = ssl_model(chunk_size=2)
    model.normalize = None  # utterance-level normalisation would carry the future into every frame
    model.eval()
    x = batch("fr", b=1)
    y = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in x.items()}
    y["speech"][:, 6000:] += 0.5
    with torch.no_grad():
        a, _, _ = model.encode(x["speech"], x["speech_lengths"], mask=False)
        c, _, _ = model.encode(y["speech"], y["speech_lengths"], mask=False)
    first = (6000 // 160 // 4 - 2) // 2 * 2  # encoder frames whose chunks end before the change
    assert first >= 2 and torch.equal(a[:, :first], c[:, :first]) and not torch.equal(a, c)


def test_targets_within_one_frame_are_aligned_else_one_line_error():
    model = ssl_model()
    for shift in (-1, 1):
        b = ssl_batch(model, shift=shift)
        model.train()
        assert torch.isfinite(model(**b)[0])
    b = ssl_batch(model, shift=3)
    with pytest.raises(TargetLengthError, match=r"fr_000100_7_0000: \d+ targets for \d+ encoder frames \(tolerance 1\)"):
        model(**b)
    lengths = torch.tensor([5, 4])
    out = model.align_targets(torch.tensor([[1, 2, 3, 4, 5, 6], [7, 8, 9, -1, -1, -1]]), torch.tensor([6, 3]), lengths, 5)
    assert out.tolist() == [[1, 2, 3, 4, 5], [7, 8, 9, 9, -1]]


def test_bad_ssl_conf():
    with pytest.raises(PathwaysError, match=r"ssl_conf\.mask_prob: unknown option"):
        ssl_model(mask_prob=0.3)
    with pytest.raises(PathwaysError, match=r"ssl_conf\.chunk_size: must be null"):
        ssl_model(chunk_size=0)


def test_init_param_loads_the_encoder_into_the_transducer_name_for_name(tmp_path):
    ssl = ssl_model(seed=3)
    path = tmp_path / "ssl.pth"
    torch.save(ssl.state_dict(), path)
    asr = build(seed=0)
    load_pretrained_model(f"{path}:encoder:encoder", asr, "cpu")
    ours = {n: p for n, p in asr.named_parameters() if n.startswith("encoder.")}
    theirs = {n: p for n, p in ssl.named_parameters() if n.startswith("encoder.")}
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[n], theirs[n]) for n in ours)
    # every mask name found on the SSL model is a tensor of the transducer, never the head or mask embedding
    names = prunable_names(ssl)
    assert names and all(n.startswith("encoder.") for n in names) and set(names) <= set(dict(asr.named_parameters()))


def test_pathways_on_the_ssl_model_keep_the_invariants():
    from test_model import random_masks

    model = ssl_model()
    masks = random_masks(model, keep=0.5)
    cfg = PathwaysConfig.from_dict({"mode": "pathways", "init_masks": "(test)"})
    ctl = PathwaysController(model, cfg, languages=["en", "fr"], init_masks=masks)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    ctl.install(opt)
    model.train()
    b = ssl_batch(model, "fr")
    model.train()
    ctl.start()
    model.release()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.manual_seed(1)
    loss, stats, _ = model(**b)
    assert "loss_fr" in stats
    params = dict(model.named_parameters())
    for n in masks.names:  # the batch computes with θ ⊙ m_fr
        assert not params[n].detach()[~masks["fr"][n]].any(), n
    loss.backward()
    opt.step()
    model.release()
    for n in masks.names:  # everything outside m_fr bit-identical after an AdamW step with weight decay
        out = ~masks["fr"][n]
        assert torch.equal(params[n].detach()[out], before[n][out]), n
        assert not torch.equal(params[n].detach()[masks["fr"][n]], before[n][masks["fr"][n]]), n


@pytest.mark.parametrize("config", ["train_tiny.yaml", "train_demo.yaml"])  # subsampling x4 and x6
def test_frame_counts_are_each_utterances_own_encoder_length(config):
    from tiny_asr import ROOT

    parser = EncoderSSLTask.get_parser()
    args = parser.parse_args(["--config", str(ROOT / "conf" / config), "--token_list", "x", "--output_dir", "/tmp/x"])
    args.token_list = [str(i) for i in range(K)]
    args.normalize = None
    model = EncoderSSLTask.build_model(args)
    model.eval()
    lengths = torch.tensor([6400, 7000, 7777, 9000, 12345])
    counts = model.frame_counts(lengths)
    for n, c in zip(lengths.tolist(), counts.tolist()):
        speech = torch.randn(1, n)
        with torch.no_grad():
            out, got, _ = model.encode(speech, torch.tensor([n]), mask=False)
        assert out.size(1) == c == int(got[0]), n
    # in a padded batch each utterance keeps its own length (ESPnet's embed mask would report the longest)
    with torch.no_grad():
        _, got, _ = model.encode(torch.randn(5, 12345), lengths, mask=False)
    assert got.tolist() == counts.tolist()
