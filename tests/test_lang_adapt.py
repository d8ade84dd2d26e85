"""Per-language encoder modules (the embedding and adapter baselines of sparse sharing)."""

from __future__ import annotations

import pytest
import torch
from espnet_pathways.espnet_compat import install_transducer_loss

install_transducer_loss()

from espnet_pathways.controller import PathwaysError  # noqa: E402
from espnet_pathways.lang_adapt import LangAdaptError, LanguageConditioning  # noqa: E402
from espnet_pathways.task import ASRPathwaysTask  # noqa: E402
from test_model import _args, batch, build  # noqa: E402

LANGS = ["en", "fr"]


def adapted(kind, seed=0, perturb=True, **conf):
    args = _args()
    args.lang_adapt_conf = {"type": kind, "languages": LANGS, **conf}
    torch.manual_seed(seed)
    model = ASRPathwaysTask.build_model(args)
    if perturb:  # trained-looking parameters (they start at the identity)
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in model.lang_adapt.parameters():
                p.add_(0.5 * torch.randn(p.shape, generator=g))
    return model.eval()


def encode(model, b):
    torch.manual_seed(3)  # the encoder draws chunk sizes even in eval
    with torch.no_grad():
        return model.encode(b["speech"], b["speech_lengths"])[0]


def stream(model, b, lang):
    """ESPnet's streaming path: encoder.chunk_forward on one utterance, in two chunks."""
    enc = model.encoder
    model.lang_adapt.fixed(lang)
    feats, lens = model._extract_feats(b["speech"][:1], b["speech_lengths"][:1])
    feats, lens = model.normalize(feats, lens) if model.normalize is not None else (feats, lens)
    enc.reset_cache(8, feats.device)
    with torch.no_grad():
        return enc.chunk_forward(feats[:, :40], torch.tensor([40]), processed_frames=torch.tensor(0), left_context=8)


@pytest.mark.parametrize("kind", ["embedding", "adapter"])
def test_starts_as_the_model_it_was_built_from_and_keeps_its_keys(kind):
    stock = build(seed=0).eval()
    model = adapted(kind, seed=0, perturb=False)
    b = batch("en")
    with model.lang_adapt.rows(["fr"] * 3):
        assert torch.equal(encode(stock, b), encode(model, b))
    extra = set(model.state_dict()) - set(stock.state_dict())
    assert extra and all(k.startswith("lang_adapt.") for k in extra)
    assert set(stock.state_dict()) <= set(model.state_dict())


@pytest.mark.parametrize("kind", ["embedding", "adapter"])
def test_output_changes_with_the_language_and_vanishes_when_disabled(kind):
    model = adapted(kind)
    stock = build(seed=0).eval()
    b = batch("en")
    cond = model.lang_adapt
    with cond.rows(["en"] * 3):
        en = encode(model, b)
    with cond.rows(["fr"] * 3):
        fr = encode(model, b)
    assert not torch.allclose(en, fr)
    cond.enabled = False
    with cond.rows(["fr"] * 3):
        off = encode(model, b)
    assert torch.equal(off, encode(stock, b))  # disabled: exactly the stock model


@pytest.mark.parametrize("kind", ["embedding", "adapter"])
def test_each_row_of_a_mixed_batch_uses_its_own_language(kind):
    model = adapted(kind)
    b = batch("en", b=2)
    b["speech_lengths"] = torch.tensor([9000, 9000])
    with model.lang_adapt.rows(["en", "fr"]):
        mixed = encode(model, b)
    for i, lang in enumerate(["en", "fr"]):
        with model.lang_adapt.rows([lang, lang]):
            assert torch.allclose(mixed[i], encode(model, b)[i], atol=1e-6)


@pytest.mark.parametrize("kind", ["embedding", "adapter"])
def test_streaming_chunk_forward_uses_the_language_modules(kind):
    model = adapted(kind)
    b = batch("en")
    en, fr = stream(model, b, "en"), stream(model, b, "fr")
    assert not torch.allclose(en, fr)
    model.lang_adapt.enabled = False
    stock = build(seed=0).eval()
    stock.encoder.reset_cache(8, en.device)
    feats, lens = stock._extract_feats(b["speech"][:1], b["speech_lengths"][:1])
    feats, lens = stock.normalize(feats, lens) if stock.normalize is not None else (feats, lens)
    with torch.no_grad():
        ref = stock.encoder.chunk_forward(feats[:, :40], torch.tensor([40]), processed_frames=torch.tensor(0),
                                          left_context=8)
    assert torch.equal(stream(model, b, "fr"), ref)


def test_training_forward_reads_languages_from_utterance_ids_and_trains_only_their_modules():
    model = adapted("adapter", perturb=False).train()
    loss, _, _ = model(**batch("fr"))
    loss.backward()
    grads = {n: p.grad for n, p in model.lang_adapt.named_parameters()}
    # blocks.<i>.<language index>...: French (1) gets gradients, English (0) none
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if ".1." in n)
    assert all(g is None or g.abs().sum() == 0 for n, g in grads.items() if n.split(".")[2] == "0")


def test_added_parameters():
    model = adapted("adapter", perturb=False, bottleneck=8)
    d, blocks = model.encoder.output_size, len(model.encoder.encoders.blocks)
    per = 2 * d + d * 8 + 8 + 8 * d + d  # LayerNorm, down, up
    assert model.lang_adapt.added_parameters() == len(LANGS) * blocks * per
    assert adapted("embedding", perturb=False).lang_adapt.added_parameters() == len(LANGS) * d


@pytest.mark.parametrize(
    "conf, match",
    [
        ({"type": "prefix"}, "lang_adapt_conf.type"),
        ({"type": "adapter", "languages": []}, "lang_adapt_conf.languages"),
        ({"type": "adapter", "languages": ["en", "en"]}, "lang_adapt_conf.languages"),
        ({"type": "adapter", "languages": ["en"], "bottleneck": 0}, "lang_adapt_conf.bottleneck"),
        ({"type": "adapter", "languages": ["en"], "size": 3}, "lang_adapt_conf.size: unknown option"),
    ],
)
def test_bad_configs_are_one_line_errors(conf, match):
    args = _args()
    args.lang_adapt_conf = conf
    with pytest.raises(PathwaysError, match=match):
        ASRPathwaysTask.build_model(args)


def test_a_batch_without_a_known_language_is_an_error():
    model = adapted("embedding")
    with pytest.raises(LangAdaptError, match="'de' has no embedding"):
        model(**batch("de"))
    b = batch("en")
    del b["utt_id"]
    with pytest.raises(LangAdaptError, match="no language for this batch"):
        model(**b)
    assert isinstance(model.lang_adapt, LanguageConditioning)


def test_batch_inference_needs_language_exactly_for_adapted_models(tmp_path):
    from espnet_pathways.bin import batch_inference

    adapted_cfg, plain_cfg = tmp_path / "a.yaml", tmp_path / "p.yaml"
    adapted_cfg.write_text("lang_adapt_conf:\n  type: adapter\n  languages: [en]\n")
    plain_cfg.write_text("encoder_conf: {}\n")
    with pytest.raises(ValueError, match="a.yaml: the model has per-language modules"):
        with batch_inference._model_builder(str(adapted_cfg), None):
            pass
    with pytest.raises(ValueError, match="--language en: the model of .*p.yaml has no per-language modules"):
        with batch_inference._model_builder(str(plain_cfg), "en"):
            pass
    from espnet2.bin import asr_transducer_inference

    stock = asr_transducer_inference.ASRTransducerTask
    with batch_inference._model_builder(str(adapted_cfg), "en"):
        assert asr_transducer_inference.ASRTransducerTask is ASRPathwaysTask
    assert asr_transducer_inference.ASRTransducerTask is stock


def test_the_ssl_model_takes_no_language_modules():
    from espnet_pathways.ssl_task import EncoderSSLTask

    args = _args()
    args.token_list = [str(i) for i in range(8)]
    args.lang_adapt_conf = {"type": "adapter", "languages": ["en"]}
    with pytest.raises(PathwaysError, match="lang_adapt_conf: per-language modules are for the transducer"):
        EncoderSSLTask.build_model(args)
