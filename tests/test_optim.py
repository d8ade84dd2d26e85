"""Invariant 2: a step leaves everything outside its trainable region bit-identical."""

import pytest
import torch
from torch import nn

from espnet_pathways.masks import MaskSet
from espnet_pathways.optim import PathwayGuard, RegionStep, mask_grads_, region_step_unsupported, step_guard

NAMES = ("0.weight", "2.weight")
OPTIMIZERS = {
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-2),
    "adam_l2_amsgrad": lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-2, amsgrad=True),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-3),
}
# more of what ESPnet's optim_conf can ask for, for the region-aware step against the guard
MORE_OPTIMIZERS = {
    "adam_maximize_foreach": lambda ps: torch.optim.Adam(ps, lr=1e-2, maximize=True, foreach=True),
    "adamw_amsgrad": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, amsgrad=True),
    "sgd_nesterov": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "sgd_dampening": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.5, dampening=0.3),
    "sgd_plain": lambda ps: torch.optim.SGD(ps, lr=0.1),
}
OPTIMIZERS.update(MORE_OPTIMIZERS)
KINDS = {True: PathwayGuard, "guard": PathwayGuard, "region": RegionStep}
SCHEDULE = ["en", "fr", "en", "en", "fr", "fr"]


def _setup(opt_name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    params = dict(model.named_parameters())
    g = torch.Generator().manual_seed(1)
    regions = {lang: MaskSet({n: torch.rand(params[n].shape, generator=g) < 0.5 for n in NAMES}) for lang in ("en", "fr")}
    return model, regions, OPTIMIZERS[opt_name](model.parameters())


def _accumulate(model, seed, micro_batches=2):
    """Plain dense forward, so every gradient is non-zero: the worst case for the guard."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(micro_batches):
        x, y = torch.randn(5, 6, generator=g), torch.randn(5, 3, generator=g)
        (nn.functional.mse_loss(model(x), y) / micro_batches).backward()


def _state_of(opt, p):
    return {k: v.clone() for k, v in opt.state.get(p, {}).items() if torch.is_tensor(v) and v.shape == p.shape}


def _run(opt_name, *, guard: bool, mask: bool, scaler=None):
    """Alternate languages; yield (lang, region, before, after) per step."""
    model, regions, opt = _setup(opt_name)
    if guard:
        guard = KINDS[guard](opt, model)
    params = dict(model.named_parameters())
    for i, lang in enumerate(SCHEDULE):
        region = regions[lang]
        opt.zero_grad()
        if scaler is None:
            _accumulate(model, seed=i)
        else:
            g = torch.Generator().manual_seed(i)
            for _ in range(2):
                x, y = torch.randn(5, 6, generator=g), torch.randn(5, 3, generator=g)
                scaler.scale(nn.functional.mse_loss(model(x), y) / 2).backward()
            scaler.unscale_(opt)
        if mask:
            mask_grads_(model, region)
            expected = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params.values()]))
            norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.05)
            assert torch.allclose(norm, expected)  # clipping sees only what the step uses
        else:
            nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.05)
        before = {n: (p.detach().clone(), _state_of(opt, p)) for n, p in params.items()}
        if guard:
            guard.region = region
        if scaler is None:
            opt.step()
        else:
            scaler.step(opt)
            scaler.update()
        after = {n: (p.detach().clone(), _state_of(opt, p)) for n, p in params.items()}
        yield lang, region, before, after


@pytest.mark.parametrize("kind", ["guard", "region"])
@pytest.mark.parametrize("opt_name", [n for n in OPTIMIZERS if n not in MORE_OPTIMIZERS])
def test_guarded_step_leaves_outside_bit_identical(opt_name, kind):
    for lang, region, before, after in _run(opt_name, guard=kind, mask=True):
        for n, (p_after, st_after) in after.items():
            p_before, st_before = before[n]
            if n not in region:  # shared parameter (bias): trainable
                assert not torch.equal(p_after, p_before)
                continue
            out, inside = ~region[n], region[n]
            assert torch.equal(p_after[out], p_before[out]), (lang, n)
            assert not torch.equal(p_after[inside], p_before[inside]), (lang, n)
            assert st_after, "optimizer state expected"
            for k, v in st_after.items():
                old = st_before.get(k, torch.zeros_like(v))  # a state born in this step
                assert torch.equal(v[out], old[out]), (lang, n, k)
                assert not torch.equal(v[inside], old[inside]), (lang, n, k)


@pytest.mark.parametrize("kind", ["guard", "region"])
def test_guard_through_grad_scaler(kind):
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    for _, region, before, after in _run("adamw", guard=kind, mask=True, scaler=scaler):
        for n in NAMES:
            out = ~region[n]
            assert torch.equal(after[n][0][out], before[n][0][out])
            for k, v in after[n][1].items():
                assert torch.equal(v[out], before[n][1].get(k, torch.zeros_like(v))[out])


@pytest.mark.parametrize("opt_name", ["adam", "adamw", "sgd_momentum"])
def test_negative_control_zero_grads_are_not_enough(opt_name):
    """Without the guard, masked gradients still let momentum / weight decay move outside weights."""
    moved = False
    for _, region, before, after in _run(opt_name, guard=False, mask=True):
        for n in NAMES:
            out = ~region[n]
            moved |= not torch.equal(after[n][0][out], before[n][0][out])
    assert moved


def test_negative_control_plain_step_moves_outside():
    _, region, before, after = next(_run("adam", guard=False, mask=False))
    assert not torch.equal(after["0.weight"][0][~region["0.weight"]], before["0.weight"][0][~region["0.weight"]])


def test_guard_region_api():
    model, regions, opt = _setup("adam")
    guard = PathwayGuard(opt, model)
    assert guard.region is None
    with guard.trainable(regions["en"]):
        assert guard.region is regions["en"]
        with guard.trainable(None):  # no-op guard
            _accumulate(model, 0)
            w = model[0].weight.detach().clone()
            opt.step()
            assert not torch.equal(model[0].weight[~regions["en"]["0.weight"]], w[~regions["en"]["0.weight"]])
        assert guard.region is regions["en"]
    assert guard.region is None
    with pytest.raises(ValueError, match=r"'9\.weight' is not a parameter"):
        guard.region = MaskSet({"9.weight": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"'0\.weight' has shape"):
        guard.region = MaskSet({"0.weight": torch.ones(2, dtype=torch.bool)})
    guard.region = regions["fr"]
    guard.remove()
    opt.zero_grad()
    _accumulate(model, 1)
    w = model[0].weight.detach().clone()
    opt.step()  # hooks removed: outside moves again
    assert not torch.equal(model[0].weight[~regions["fr"]["0.weight"]], w[~regions["fr"]["0.weight"]])


@pytest.mark.parametrize("mask", [True, False])
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_region_step_equals_the_guard_bit_for_bit(opt_name, mask):
    """The region-aware step gives exactly the guard's numbers, inside the region and out, on every step
    (languages alternating, two accumulated micro-batches, clipping; with and without masked gradients)."""
    steps = 0
    for (_, _, _, ours), (_, _, _, ref) in zip(_run(opt_name, guard="region", mask=mask),
                                               _run(opt_name, guard="guard", mask=mask)):
        for n in ours:
            assert torch.equal(ours[n][0], ref[n][0]), (opt_name, steps, n)
            assert ours[n][1].keys() == ref[n][1].keys()
            for k in ours[n][1]:
                assert torch.equal(ours[n][1][k], ref[n][1][k]), (opt_name, steps, n, k)
        steps += 1
    assert steps == len(SCHEDULE)


def test_region_step_is_the_stock_optimizer_to_everything_else():
    model, regions, opt = _setup("adam")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5)
    calls = []
    opt.register_step_post_hook(lambda *a: calls.append("post"))
    region_step = step_guard(opt, model)
    assert isinstance(region_step, RegionStep) and isinstance(opt, torch.optim.Adam)
    region_step.region = regions["en"]
    _accumulate(model, 0)
    opt.step()
    sched.step()
    assert calls == ["post"]  # the optimizer's hooks still run around the region-aware step
    stock = torch.optim.Adam(nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).parameters(), lr=1e-2)
    for p in stock.param_groups[0]["params"]:
        p.grad = torch.zeros_like(p)
    stock.step()
    sd, ref = opt.state_dict(), stock.state_dict()
    assert {k: sorted(v) for k, v in sd["state"].items()} == {k: sorted(v) for k, v in ref["state"].items()}
    assert set(sd["param_groups"][0]) - {"initial_lr"} == set(ref["param_groups"][0])  # initial_lr: the scheduler's
    restored = torch.optim.Adam(model.parameters(), lr=1e-2)
    restored.load_state_dict(sd)  # a checkpoint of the region-aware step is a stock Adam checkpoint
    with region_step.trainable(regions["fr"]):
        assert region_step.region is regions["fr"]
    assert region_step.region is regions["en"]
    with pytest.raises(ValueError, match=r"'9\.weight' is not a parameter"):
        region_step.region = MaskSet({"9.weight": torch.ones(2, dtype=torch.bool)})
    region_step.remove()
    assert type(opt) is torch.optim.Adam


def test_step_guard_falls_back_to_the_guard_where_the_region_step_does_not_apply():
    model = nn.Linear(3, 2)
    assert isinstance(step_guard(torch.optim.SGD(model.parameters(), lr=0.1), model), RegionStep)
    assert isinstance(step_guard(torch.optim.AdamW(model.parameters()), model, "guard"), PathwayGuard)
    rms = torch.optim.RMSprop(model.parameters())
    assert region_step_unsupported(rms).startswith("RMSprop")
    assert isinstance(step_guard(rms, model), PathwayGuard)
    tensor_lr = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01))
    assert "tensor lr" in region_step_unsupported(tensor_lr)
    assert isinstance(step_guard(tensor_lr, model), PathwayGuard)
    with pytest.raises(ValueError, match="region-aware step: not for RMSprop"):
        step_guard(rms, model, "region")
    with pytest.raises(ValueError, match="expected auto, region or guard"):
        step_guard(rms, model, "fast")


def test_region_positions_are_found_once_per_mask_and_follow_edits():
    import gc

    from espnet_pathways.masks import PositionCache

    index = PositionCache()  # what the region-aware step keeps its positions in
    m = torch.tensor([[True, False], [False, True]])
    first = index(m)
    assert first.dtype == torch.int32 and first.tolist() == [0, 3]
    assert index(m) is first  # cached
    m[0, 1] = True  # edited in place: its version moves, the positions follow
    assert index(m).tolist() == [0, 1, 3]
    other = m.clone()
    assert index(other) is not index(m) and index.numel() == 6
    del other
    gc.collect()
    assert index.numel() == 3  # a mask that is gone takes its positions with it
