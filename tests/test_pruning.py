"""Rules, schedules, LTH rewinding, adaptive re-ranking (invariants 4-7)."""

import copy
import math

import pytest
import torch
from torch import nn

from espnet_pathways.masks import MaskSet, PathwayMasks, prunable_names
from espnet_pathways.optim import PathwayGuard, mask_grads_
from espnet_pathways.pruning import (
    GLOBAL,
    _radix_keys,
    _top_k,
    _top_k_keys,
    AdaptiveSchedule,
    CubicSchedule,
    FixedFractionSchedule,
    adaptive_update_,
    check_sparsity,
    keep_count,
    magnitude_prune,
    rerank,
    rewind_,
)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 7), nn.Tanh(), nn.Linear(7, 5))
        self.decoder = nn.LSTM(5, 3)
        self.joint_network = nn.Linear(3, 4)


NAMES_KW = dict(kinds=("linear", "rnn"))


def _model(seed=0):
    torch.manual_seed(seed)
    return Tiny()


def _perturb_(model, seed, scale=0.1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


# -- rule ---------------------------------------------------------------------------------
@pytest.mark.parametrize("s", [0.0, 0.1, 0.25, 0.5, 0.7, 0.9, 0.99])
def test_per_tensor_exact_keep_count(s):
    model = _model()
    names = prunable_names(model, **NAMES_KW)
    r = magnitude_prune(model, s, names=names)
    params = dict(model.named_parameters())
    for n in names:
        numel = params[n].numel()
        kept = int(r.masks[n].sum())
        assert kept == round((1 - s) * numel) == keep_count(numel, s)
        assert abs(kept - (1 - s) * numel) <= 1
        # the kept ones are the largest
        w = params[n].detach().abs()
        if 0 < kept < numel:
            assert w[r.masks[n]].min() >= w[~r.masks[n]].max()
    assert r.shortfall == {}


def test_ties_are_broken_by_position_and_s0_keeps_all():
    w = {"a": torch.ones(2, 5), "b": torch.zeros(3)}
    r = magnitude_prune(w, 0.7)
    assert r.masks["a"].reshape(-1).tolist() == [True] * 3 + [False] * 7
    assert r.masks["b"].tolist() == [True, False, False]  # round(0.9) = 1
    r0 = magnitude_prune(w, 0.0)
    assert all(bool(m.all()) for _, m in r0.masks.items())
    w2 = {"a": torch.tensor([0.5, 0.2, 0.5, 0.5, 0.1])}
    assert magnitude_prune(w2, 0.6).masks["a"].tolist() == [True, False, True, False, False]


def test_global_exact_total_and_ties_across_tensors():
    model = _model()
    names = prunable_names(model, **NAMES_KW)
    total = sum(p.numel() for n, p in model.named_parameters() if n in names)
    for s in (0.0, 0.3, 0.77):
        r = magnitude_prune(model, s, names=names, scope="global")
        assert r.masks.kept() == round((1 - s) * total)
    tie = magnitude_prune({"a": torch.ones(4), "b": torch.ones(4)}, 0.5, scope="global").masks
    assert tie["a"].all() and not tie["b"].any()


def test_candidates_rank_inside_region_and_report_shortfall():
    w = {"a": torch.arange(10.0)}
    region = MaskSet({"a": torch.tensor([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], dtype=torch.bool)})
    r = magnitude_prune(w, 0.7, candidates=region)
    assert r.masks["a"].tolist() == [False] * 3 + [True] * 3 + [False] * 4
    assert r.shortfall == {}
    small = MaskSet({"a": torch.tensor([0, 1, 0, 0, 0, 0, 0, 0, 0, 1], dtype=torch.bool)})
    r = magnitude_prune(w, 0.5, candidates=small)
    assert r.masks == small and r.shortfall == {"a": (2, 5)}
    rg = magnitude_prune(w, 0.5, candidates=small, scope="global")
    assert rg.masks == small and rg.shortfall == {GLOBAL: (2, 5)}


def test_non_finite_weights_are_refused():
    with pytest.raises(ValueError, match="'a'"):
        magnitude_prune({"a": torch.tensor([1.0, float("nan")])}, 0.5)


def test_sparsity_validation_messages():
    for bad in (1.0, -0.1, float("nan"), 1.5, "x"):
        with pytest.raises(ValueError, match=r"^sparsity must be") as e:
            magnitude_prune({"a": torch.ones(3)}, bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="^final_sparsity must be in"):
        CubicSchedule(1.0, interval=10, num_rounds=3)
    with pytest.raises(ValueError, match="^initial_sparsity"):
        FixedFractionSchedule(0.5, fraction=0.2, interval=10, initial_sparsity=-0.2)
    with pytest.raises(ValueError, match=r"initial_sparsity \(0\.6\) must not exceed final_sparsity \(0\.5\)"):
        CubicSchedule(0.5, interval=10, num_rounds=3, initial_sparsity=0.6)
    with pytest.raises(ValueError, match="^fraction"):
        FixedFractionSchedule(0.5, fraction=1.0, interval=10)
    with pytest.raises(ValueError, match="^interval"):
        CubicSchedule(0.5, interval=0, num_rounds=3)
    with pytest.raises(ValueError, match="^scope"):
        magnitude_prune({"a": torch.ones(3)}, 0.5, scope="layer")
    assert check_sparsity(0.5, "x") == 0.5


def test_adaptive_requires_n_smaller_than_T():
    sched = CubicSchedule(0.7, interval=10, num_rounds=3)
    for n in (10, 12):
        with pytest.raises(ValueError) as e:
            AdaptiveSchedule(sched, rerank_interval=n)
        msg = str(e.value)
        assert f"rerank_interval (n={n})" in msg and "(T=10)" in msg and "\n" not in msg
    a = AdaptiveSchedule(sched, rerank_interval=3)
    assert [t for t in range(1, 41) if a.is_rerank_step(t)] == [3, 6, 9, 12, 15, 18, 21, 24, 27, 33, 36, 39]
    assert [t for t in range(0, 41) if a.is_prune_step(t)] == [10, 20, 30]
    assert a.sparsity_at(25) == sched.sparsity_at(25)


# -- schedules ----------------------------------------------------------------------------
def test_cubic_schedule_values_and_prune_steps():
    s = CubicSchedule(0.7, interval=10, num_rounds=4)
    assert s.sparsity_at(0) == 0.0 and s.sparsity_at(9) == 0.0
    assert s.sparsity_at(10) == pytest.approx(0.7 - 0.7 * (3 / 4) ** 3)
    assert s.sparsity_at(25) == s.sparsity_at_round(2) == pytest.approx(0.7 - 0.7 * (1 / 2) ** 3)
    assert s.sparsity_at(40) == s.sparsity_at(10**6) == 0.7
    assert [t for t in range(0, 60) if s.is_prune_step(t)] == [10, 20, 30, 40]
    assert s.last_prune_step == 40
    values = [s.sparsity_at(t) for t in range(0, 50)]
    assert values == sorted(values)
    s2 = CubicSchedule(0.7, interval=5, num_rounds=2, initial_sparsity=0.5)
    assert s2.sparsity_at(0) == 0.5 and s2.sparsity_at(10) == 0.7


def test_fixed_fraction_schedule_rounds_and_clipping():
    s = FixedFractionSchedule(0.7, fraction=0.2, interval=100)
    expected = [0.0, 0.2, 0.36, 0.488, 0.5904, 0.67232, 0.7]
    assert s.num_rounds == 6
    assert [s.sparsity_at_round(k) for k in range(8)] == pytest.approx(expected + [0.7])
    assert s.sparsity_at_round(6) == 0.7  # clipped exactly
    for k in range(1, 6):  # each round prunes 20% of the remaining weights
        assert 1 - s.sparsity_at_round(k) == pytest.approx(0.8 * (1 - s.sparsity_at_round(k - 1)))
    assert [t for t in range(0, 1000, 50) if s.is_prune_step(t)] == [100, 200, 300, 400, 500, 600]
    s2 = FixedFractionSchedule(0.7, fraction=0.2, interval=1, initial_sparsity=0.5)
    assert s2.num_rounds == 3 and s2.sparsity_at(3) == 0.7
    exact = FixedFractionSchedule(0.36, fraction=0.2, interval=1)
    assert exact.num_rounds == 2 and exact.sparsity_at(2) == 0.36


@pytest.mark.parametrize("scope", ["tensor", "global"])
@pytest.mark.parametrize(
    "schedule",
    [CubicSchedule(0.8, interval=3, num_rounds=5), FixedFractionSchedule(0.8, fraction=0.3, interval=3)],
)
def test_invariant4_sparsity_after_every_prune(schedule, scope):
    """IMP along a schedule: after every prune the count is exact (±1 element per tensor)."""
    model = _model(1)
    with torch.no_grad():  # quantised weights: plenty of ties
        for p in model.parameters():
            p.copy_(torch.round(p * 4) / 4)
    names = prunable_names(model, **NAMES_KW)
    masks = MaskSet.full(model, names)
    params = dict(model.named_parameters())
    total = masks.numel()
    prunes = 0
    for step in range(1, schedule.last_prune_step + 1):
        _perturb_(model, step, scale=0.05)  # "training"
        masks.apply_(model)
        if not schedule.is_prune_step(step):
            continue
        s = schedule.sparsity_at(step)
        new = magnitude_prune(model, s, names=names, scope=scope, candidates=masks)
        assert new.shortfall == {}
        assert (new.masks - masks).kept() == 0  # nested: pruned weights never return in IMP
        if scope == "tensor":
            for n in names:
                kept = int(new.masks[n].sum())
                assert kept == round((1 - s) * params[n].numel())
                assert abs(kept - (1 - s) * params[n].numel()) <= 1
        else:
            assert new.masks.kept() == round((1 - s) * total)
        masks = new.masks
        prunes += 1
    assert prunes == schedule.num_rounds
    assert masks.sparsity() == pytest.approx(0.8, abs=1 / min(p.numel() for p in params.values()))


# -- LTH rewinding ------------------------------------------------------------------------
@pytest.mark.parametrize("rewind_unmasked", [True, False])
def test_invariant5_lth_rewind_restores_theta0_exactly(rewind_unmasked):
    model = _model(2)
    theta0 = copy.deepcopy(model.state_dict())
    names = prunable_names(model, **NAMES_KW)
    _perturb_(model, 3)
    trained = {n: p.detach().clone() for n, p in model.named_parameters()}
    masks = magnitude_prune(model, 0.6, names=names).masks
    rewind_(model, theta0, masks, rewind_unmasked=rewind_unmasked)
    for n, p in model.named_parameters():
        if n in masks:
            m = masks[n]
            assert torch.equal(p[m], theta0[n][m])
            assert bool((p[~m] == 0).all())
        elif rewind_unmasked:
            assert torch.equal(p, theta0[n])
        else:
            assert torch.equal(p, trained[n])
    theta0.pop("joint_network.weight")
    with pytest.raises(ValueError, match=r"'joint_network\.weight'"):
        rewind_(model, theta0, masks)


# -- adaptive re-ranking ------------------------------------------------------------------
def _revival_setup():
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.9, 0.1, 0.05]]))
    masks = magnitude_prune(model, 0.5, names=["weight"]).masks
    assert masks["weight"].tolist() == [[True, True, False, False]]
    masks.apply_(model)  # prune softly
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = 3.0 * x[:, 2:3]  # the pruned weight 2 is the one that matters
    return model, masks, x, y


def _train(model, x, y, steps, guard=None, region=None):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    if guard:
        guard = PathwayGuard(opt, model)
        guard.region = region
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        if region is not None:
            mask_grads_(model, region)
        opt.step()


def test_invariant6_adaptive_rerank_revives_grown_weight():
    model, masks, x, y = _revival_setup()
    _train(model, x, y, steps=20)  # soft pruning: pruned weights stay trainable
    assert abs(float(model.weight.detach()[0, 2])) > 1.0
    r = adaptive_update_(model, masks)
    assert bool(r.masks["weight"][0, 2]) and not bool(masks["weight"][0, 2])
    assert r.masks.kept() == masks.kept()
    assert float(model.weight.detach()[0, 2]) != 0.0  # came back with its trained value
    assert torch.equal(model.weight[~r.masks["weight"]], torch.zeros(2))


def test_invariant6_fixed_mask_never_revives():
    model, masks, x, y = _revival_setup()
    _train(model, x, y, steps=20, guard=True, region=masks)
    assert torch.equal(model.weight[0, 2:], torch.zeros(2))
    assert rerank(model, masks).masks == masks


def _three_languages():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    names = ["0.weight", "1.weight"]
    g = torch.Generator().manual_seed(6)
    pw = PathwayMasks(
        {lang: MaskSet({n: torch.rand(8, 8, generator=g) < 0.4 for n in names}) for lang in ("en", "fr", "nl")}
    )
    return model, names, pw


def test_invariant7_rerank_stays_in_candidates():
    model, names, pw = _three_languages()
    others_only = pw.union(["fr", "nl"]) - pw["en"]
    free = pw.free_zone("en")
    assert others_only.kept() > 0 and free.kept() > 0
    with torch.no_grad():  # make other languages' weights (and one free weight) the largest
        for n, p in model.named_parameters():
            if n in others_only:
                p[others_only[n]] = 100.0
        first_free = free["0.weight"].reshape(-1).nonzero()[0, 0]
        model[0].weight.view(-1)[first_free] = 50.0
    cand = pw.candidates("en")
    r = rerank(model, pw["en"], candidates=cand)
    assert (r.masks & others_only).kept() == 0
    assert r.masks.kept_per_tensor() == pw["en"].kept_per_tensor()
    assert bool(r.masks["0.weight"].reshape(-1)[first_free])  # the free zone is open to en
    # pruning one step further keeps to the region too
    r2 = adaptive_update_(model, pw["en"], sparsity=0.8, candidates=cand)
    assert (r2.masks & others_only).kept() == 0
    # control: without the candidate region, en takes the other languages' weights
    assert (rerank(model, pw["en"]).masks & others_only).kept() > 0


def test_rerank_global_keeps_total():
    model, names, pw = _three_languages()
    _perturb_(model, 9, scale=1.0)
    r = rerank(model, pw["fr"], scope="global")
    assert r.masks.kept() == pw["fr"].kept()


@pytest.mark.parametrize("k", [1, 700, 29_999, 30_000, 45_000, 99_999])
def test_selection_methods_give_the_same_mask(k):
    """np.partition (the CPU default), radix select and kthvalue: the same mask, ties and filler included,
    on float scores and on radix keys."""
    g = torch.Generator().manual_seed(k)
    s = torch.randint(0, 2000, (100_000,), generator=g).float() / 7.0  # many ties
    s[torch.rand(100_000, generator=g) < 0.3] = -1.0  # outside the candidates
    s[:50] = 0.0
    plain = _top_k(s.clone(), k, "kthvalue")
    assert int(plain.sum()) == k
    for method in ("partition", "radix", None):
        assert torch.equal(_top_k(s.clone(), k, method), plain), method
        assert torch.equal(_top_k_keys(_radix_keys(s), k, method), plain), method
    with pytest.raises(ValueError, match="selection method must be one of partition, radix, kthvalue"):
        _top_k(s, k, "sort")


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("method", ["partition", "radix", "kthvalue"])
def test_top_k_equals_a_stable_sort(ties, method):
    """Every selection method, with and without ties at the threshold (the tie-free path is one
    comparison): the k largest, equal scores taken from the lower index first."""
    g = torch.Generator().manual_seed(7)
    n = 50_000
    s = torch.randint(0, 300, (n,), generator=g).float() / 3.0 if ties else torch.rand(n, generator=g)
    s[torch.rand(n, generator=g) < 0.3] = -1.0
    order = torch.sort(-s, stable=True).indices  # descending, lower index first among equals
    for k in (1, 17, 20_000, 34_999, n - 1):
        ref = torch.zeros(n, dtype=torch.bool)
        ref[order[:k]] = True
        assert torch.equal(_top_k(s.clone(), k, method), ref), k


@pytest.mark.parametrize("with_candidates", [False, True])
def test_global_selection_by_parts_equals_the_concatenated_top_k(with_candidates):
    """Above RADIX_MIN_NUMEL the global scope selects tensor by tensor: the same mask as _top_k on the cat."""
    from espnet_pathways.pruning import RADIX_MIN_NUMEL, _scores, _select, _top_k

    g = torch.Generator().manual_seed(3)
    shapes = {"a": (700, 800), "b": (600, 900), "c": (5000,), "d": (64, 64)}
    assert sum(math.prod(s) for s in shapes.values()) >= RADIX_MIN_NUMEL
    # few distinct values: many ties at the threshold, spread over several tensors
    w = {n: (torch.randint(-40, 41, s, generator=g).float() / 8) for n, s in shapes.items()}
    cand = MaskSet({n: torch.rand(s, generator=g) < 0.6 for n, s in shapes.items()}) if with_candidates else None
    regions = {n: (cand[n] if cand is not None else None) for n in w}
    for k in (1, 12345, 400_000, 700_000, 10_000_000):
        ours = _select(w, k, cand)
        flat_scores = torch.cat([_scores(n, t, regions[n]) for n, t in w.items()])
        size = int((flat_scores >= 0).sum()) if cand is not None else flat_scores.numel()
        flat = _top_k(flat_scores, min(k, size))
        ref = dict(zip(w, torch.split(flat, [t.numel() for t in w.values()])))
        assert all(torch.equal(ours.masks[n].reshape(-1), ref[n]) for n in w), k
        assert ours.masks.kept() == min(k, size)
        assert bool(ours.shortfall) == (cand is not None and k > size)


@pytest.mark.parametrize("scope", ["tensor", "global"])
@pytest.mark.parametrize("big", [False, True])
def test_magnitudes_made_once_give_the_same_masks(scope, big):
    """Magnitudes (|θ| keyed once per event) select exactly what the per-call scores select, ties included."""
    from espnet_pathways.pruning import Magnitudes

    g = torch.Generator().manual_seed(5)
    shapes = {"a": (1100, 1000), "b": (300, 7)} if big else {"a": (30, 20), "b": (17,), "c": (4, 4, 3)}
    w = {n: torch.randint(-30, 31, s, generator=g).float() / 16 for n, s in shapes.items()}  # many ties
    mags = Magnitudes(w, list(w))
    cand = MaskSet({n: torch.rand(s, generator=g) < 0.5 for n, s in shapes.items()})
    for sparsity in (0.3, 0.7, 0.95):
        for c in (None, cand):
            ref = magnitude_prune(w, sparsity, scope=scope, candidates=c)
            ours = magnitude_prune(w, sparsity, scope=scope, candidates=c, magnitudes=mags)
            assert ours.masks == ref.masks and ours.shortfall == ref.shortfall, (sparsity, c is None)
            again = rerank(w, ref.masks, candidates=c, scope=scope, magnitudes=mags)
            assert again.masks == rerank(w, ref.masks, candidates=c, scope=scope).masks
    w["a"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="'a' has non-finite values"):
        Magnitudes(w, ["a"])
