"""Invariant 3: monolingual batches, each utterance once per epoch, policy order, DDP agreement."""

import collections
import random

import pytest

from espnet_pathways.sampler import LanguageBatchSampler, read_lengths, read_utt2lang

SIZES = {"en": 48, "fr": 24, "nl": 12}


@pytest.fixture
def corpus(tmp_path):
    """utt2lang + speech_shape files (some lines with a feature dim, as ESPnet writes them)."""
    rng = random.Random(0)
    u2l, shape = [], []
    for lang, n in SIZES.items():
        for i in range(n):
            utt = f"{lang}_{i:03d}"
            u2l.append(f"{utt} {lang}")
            length = rng.randint(100, 1000)
            shape.append(f"{utt} {length},80" if i % 2 else f"{utt} {length}")
    rng.shuffle(shape)
    (tmp_path / "utt2lang").write_text("\n".join(u2l) + "\n")
    (tmp_path / "speech_shape").write_text("\n".join(shape) + "\n")
    return tmp_path / "utt2lang", tmp_path / "speech_shape"


def _sampler(corpus, **kw):
    kw.setdefault("batch_bins", 2000)
    return LanguageBatchSampler(*corpus, **kw)


def _check_epoch(s, epoch):
    u2l = s.utt2lang
    batches = s.batches_for_epoch(epoch)
    langs = s.languages_for_epoch(epoch)
    assert len(batches) == len(langs) == len(s)
    for b, lang in zip(batches, langs):
        assert b and {u2l[u] for u in b} == {lang}  # monolingual
    utts = [u for b in batches for u in b]
    assert sorted(utts) == sorted(u2l)  # each utterance exactly once
    return batches, langs


def test_readers(corpus):
    assert read_utt2lang(corpus[0])["fr_003"] == "fr"
    lengths = read_lengths(corpus[1])
    assert len(lengths) == sum(SIZES.values()) and all(isinstance(v, int) for v in lengths.values())


@pytest.mark.parametrize("policy", ["round_robin", "proportional", "temperature"])
@pytest.mark.parametrize("accum_grad", [1, 3])
def test_monolingual_and_exactly_once(corpus, policy, accum_grad):
    s = _sampler(corpus, policy=policy, beta=0.5, accum_grad=accum_grad)
    for epoch in (1, 2, 7):
        _check_epoch(s, epoch)


def test_batch_bins_budget_and_sorting(corpus):
    lengths = read_lengths(corpus[1])
    s = _sampler(corpus, batch_bins=1500)
    for b in s.batches_for_epoch(1):
        ls = [lengths[u] for u in b]
        assert ls == sorted(ls, reverse=True)  # longest first
        assert sum(ls) <= 1500 or len(b) == 1
    padded = _sampler(corpus, batch_bins=1500, padding=True)
    for b in padded.batches_for_epoch(1):
        assert len(b) * max(lengths[u] for u in b) <= 1500 or len(b) == 1
    fixed = _sampler(corpus, batch_bins=None, batch_size=5)
    assert all(len(b) <= 5 for b in fixed.batches_for_epoch(1))
    assert len(fixed) == sum((n + 4) // 5 for n in SIZES.values())


def test_round_robin_alternates_exactly(corpus):
    s = _sampler(corpus, batch_size=4, batch_bins=None, languages=["nl", "en", "fr"])
    langs = s.languages_for_epoch(3)
    n_nl = SIZES["nl"] // 4
    assert langs[: 3 * n_nl] == ["nl", "en", "fr"] * n_nl
    assert langs[3 * n_nl :] == ["en", "fr"] * 3 + ["en"] * 6  # nl exhausted, then fr


def test_accum_grad_runs_share_a_language(corpus):
    k = 4
    s = _sampler(corpus, accum_grad=k, policy="proportional")
    assert len(s) % k == 0
    for epoch in (1, 2):
        _, langs = _check_epoch(s, epoch)
        for i in range(0, len(langs), k):
            assert len(set(langs[i : i + k])) == 1


def _first_language_freq(s, epochs):
    counts = collections.Counter(s.languages_for_epoch(e)[0] for e in range(epochs))
    return {lang: counts[lang] / epochs for lang in SIZES}


def test_proportional_and_temperature_frequencies(corpus):
    epochs = 600
    s = _sampler(corpus, batch_size=4, batch_bins=None, policy="proportional")
    n = {lang: SIZES[lang] / 4 for lang in SIZES}
    total = sum(n.values())
    for lang, f in _first_language_freq(s, epochs).items():
        assert f == pytest.approx(n[lang] / total, abs=0.06)
    for beta in (0.0, 0.5, 1.0):
        s = _sampler(corpus, batch_size=4, batch_bins=None, policy="temperature", beta=beta)
        w = {lang: (n[lang] / total) ** beta for lang in n}
        for lang, f in _first_language_freq(s, epochs).items():
            assert f == pytest.approx(w[lang] / sum(w.values()), abs=0.06), (beta, lang)
    # over whole epochs, temperature with beta=0 front-loads the small language
    s0 = _sampler(corpus, batch_size=4, batch_bins=None, policy="temperature", beta=0.0)
    first_third = [lang for e in range(50) for lang in s0.languages_for_epoch(e)[:9]]
    assert first_third.count("nl") / len(first_third) == pytest.approx(1 / 3, abs=0.06)


def test_deterministic_from_seed_and_epoch(corpus):
    a = _sampler(corpus, policy="proportional", seed=3)
    b = _sampler(corpus, policy="proportional", seed=3)
    assert a.batches_for_epoch(5) == b.batches_for_epoch(5)
    assert a.batches_for_epoch(5) != a.batches_for_epoch(6)
    assert a.batches_for_epoch(5) != _sampler(corpus, policy="proportional", seed=4).batches_for_epoch(5)
    a.set_epoch(5)
    assert list(a) == a.batches_for_epoch(5) == a.generate(5)


def test_ddp_ranks_agree_and_small_batches_merge(corpus):
    ranks = [_sampler(corpus, batch_size=1, batch_bins=None, world_size=2, rank=r, accum_grad=2) for r in (0, 1)]
    assert ranks[0].languages_for_epoch(4) == ranks[1].languages_for_epoch(4)
    b0, b1 = ranks[0].batches_for_epoch(4), ranks[1].batches_for_epoch(4)
    assert len(b0) == len(b1)
    u2l = ranks[0].utt2lang
    for x, y in zip(b0, b1):
        assert x and y  # batch_size=1 < world_size: merged to 2 utterances, one per rank
        assert len({u2l[u] for u in x + y}) == 1
    assert sorted(u for b in b0 + b1 for u in b) == sorted(u2l)


def test_bad_input_messages(corpus, tmp_path):
    u2l_path, shape_path = corpus
    text = u2l_path.read_text().replace("fr_005 fr\n", "")
    (tmp_path / "utt2lang_bad").write_text(text)
    with pytest.raises(ValueError, match=r"utt2lang_bad: no language for utterance 'fr_005'"):
        LanguageBatchSampler(tmp_path / "utt2lang_bad", shape_path, batch_bins=2000)
    with pytest.raises(ValueError, match=r"languages: 'de' has no utterances in .*speech_shape"):
        _sampler(corpus, languages=["en", "de"])
    with pytest.raises(ValueError, match=r"^policy must be one of"):
        _sampler(corpus, policy="random")
    with pytest.raises(ValueError, match="exactly one of batch_bins and batch_size"):
        _sampler(corpus, batch_size=4)
    (tmp_path / "shape_bad").write_text("en_000 12x\n")
    with pytest.raises(ValueError, match=r"shape_bad:1: expected"):
        LanguageBatchSampler(u2l_path, tmp_path / "shape_bad", batch_bins=10)
    with pytest.raises(ValueError, match="world_size: language 'nl' has 12 utterances"):
        _sampler(corpus, world_size=13)


def test_subset_of_languages(corpus):
    s = _sampler(corpus, languages=["fr", "nl"])
    assert set(s.utt2lang.values()) == {"fr", "nl"}
    _check_epoch(s, 1)


def test_espnet_iter_factory_uses_epoch_order(corpus):
    """With AbsSampler registered, ESPnet's SequenceIterFactory asks generate(epoch + seed)."""
    pytest.importorskip("espnet2")
    from espnet2.iterators.sequence_iter_factory import SequenceIterFactory
    from espnet2.samplers.abs_sampler import AbsSampler

    AbsSampler.register(LanguageBatchSampler)
    s = _sampler(corpus, policy="proportional")
    factory = SequenceIterFactory(dataset=list(range(10)), batches=s, seed=7, shuffle=False)
    for epoch in (1, 2):
        assert list(factory.build_iter(epoch).batch_sampler) == s.batches_for_epoch(epoch + 7)
