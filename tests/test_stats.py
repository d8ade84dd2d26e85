"""Paired bootstrap and the verdict rule (espnet_pathways.stats), random-mask pruning."""
import numpy as np
import pytest
import torch

from espnet_pathways.pruning import random_prune
from espnet_pathways.stats import Interval, UttErrors, paired_bootstrap, pool, verdict


def utts(errors, lengths=None, prefix="u"):
    errors = np.asarray(errors, dtype=float)
    lengths = np.full(len(errors), 10.0) if lengths is None else np.asarray(lengths, dtype=float)
    return UttErrors(tuple(f"{prefix}{i:04d}" for i in range(len(errors))), errors, lengths)


def test_identical_systems_interval_contains_zero():
    rng = np.random.default_rng(1)
    a = utts(rng.integers(0, 10, 200))
    iv = paired_bootstrap(a, a, resamples=1000, seed=3)
    assert iv.delta == 0 and iv.low == 0 and iv.high == 0 and iv.excludes_zero() == 0


def test_noisy_equal_systems_interval_contains_zero():
    # A and B differ on every utterance, by +1 on half and -1 on the other half: no difference overall.
    rng = np.random.default_rng(2)
    base = rng.integers(2, 10, 300).astype(float)
    d = np.where(np.arange(300) % 2 == 0, 1.0, -1.0)
    a, b = utts(base + d), utts(base - d)
    iv = paired_bootstrap(a, b, resamples=2000, seed=0)
    assert iv.delta == 0 and iv.low < -1 and iv.high > 1


def test_every_utterance_better_excludes_zero_below():
    rng = np.random.default_rng(3)
    b = utts(rng.integers(2, 10, 100))
    a = utts(b.errors - 1)  # one error fewer on every utterance
    iv = paired_bootstrap(a, b, resamples=1000, seed=0)
    assert iv.excludes_zero() == -1 and iv.high < 0 and iv.p_a_better == 1.0
    assert iv.delta == pytest.approx(-100 * 100 / b.lengths.sum())
    assert paired_bootstrap(b, a, resamples=1000, seed=0).excludes_zero() == 1


def test_seeded_and_reproducible():
    rng = np.random.default_rng(4)
    a, b = utts(rng.integers(0, 9, 150)), utts(rng.integers(0, 9, 150))
    one = paired_bootstrap(a, b, resamples=500, seed=7)
    assert one == paired_bootstrap(a, b, resamples=500, seed=7)
    assert one != paired_bootstrap(a, b, resamples=500, seed=8)


def test_languages_resampled_separately_and_averaged():
    rng = np.random.default_rng(5)
    en_b, fr_b = utts(rng.integers(3, 9, 80), prefix="en"), utts(rng.integers(3, 9, 120), prefix="fr")
    en_a, fr_a = utts(en_b.errors - 2, prefix="en"), utts(fr_b.errors, prefix="fr")
    iv = paired_bootstrap({"en": en_a, "fr": fr_a}, {"en": en_b, "fr": fr_b}, resamples=500)
    # Unweighted mean over languages: en improves by 20 points, fr by 0.
    assert iv.delta == pytest.approx(((en_a.rate - en_b.rate) + 0.0) / 2)
    assert iv.high < 0
    with pytest.raises(ValueError, match="different test sets"):
        paired_bootstrap({"en": en_a}, {"fr": fr_b})
    with pytest.raises(ValueError, match="different utterances"):
        paired_bootstrap(en_a, fr_a)


def test_pool_averages_seeds():
    a0, a1 = utts([1, 3, 5]), utts([3, 3, 1])
    p = pool([a0, a1])
    assert list(p.errors) == [2, 3, 3] and p.rate == pytest.approx(100 * 8 / 30)
    with pytest.raises(ValueError):
        pool([a0, utts([1, 2], prefix="x")])


def iv(low, high):
    return Interval((low + high) / 2, low, high, 1000, 0.5)


@pytest.mark.parametrize("per_seed, interval, want", [
    ([-1.0, -0.5, -0.2], iv(-1.2, -0.1), "supported"),
    ([1.0, 0.5, 0.2], iv(0.1, 1.2), "refuted"),
    ([-1.0, 0.5, -0.2], iv(-1.2, -0.1), "inconclusive"),  # one seed the other way
    ([-1.0, -0.5, -0.2], iv(-1.2, 0.3), "inconclusive"),  # interval contains 0
    ([-1.0, -0.5], iv(-1.2, -0.1), "inconclusive"),  # too few seeds
    ([], None, "not tested"),
])
def test_verdict_rule(per_seed, interval, want):
    v = verdict(per_seed, interval, min_seeds=3)
    assert v.verdict == want
    assert want in str(v)


def test_random_prune_exact_sparsity_differs_per_generator():
    w = {"a.weight": torch.randn(40, 30), "b.weight": torch.randn(17, 5)}
    m1 = random_prune(w, 0.7, generator=torch.Generator().manual_seed(1)).masks
    m2 = random_prune(w, 0.7, generator=torch.Generator().manual_seed(2)).masks
    again = random_prune(w, 0.7, generator=torch.Generator().manual_seed(1)).masks
    for n, t in w.items():
        assert int(m1[n].sum()) == round(0.3 * t.numel()) == int(m2[n].sum())
    assert m1 == again and m1 != m2
    assert m1.iou(m2) < 0.5  # random 30% masks overlap at about 0.3 / (1.7) ~ 0.18
    g = random_prune(w, 0.7, generator=torch.Generator().manual_seed(1), scope="global").masks
    assert g.kept() == round(0.3 * sum(t.numel() for t in w.values()))
