"""Pathway-safe optimisation: a step changes the trainable region and nothing else.

A step on a language-l batch must leave every element outside its trainable region (a
:class:`~espnet_pathways.masks.MaskSet`) bit-identical: the weight and its optimizer state.
Zeroing gradients is not enough -- Adam's moments, decoupled weight decay (AdamW), L2
weight decay and SGD momentum all move weights whose gradient is zero, and decay another
language's moment estimates.  Parameters that have no mask in the region (biases, norms,
embeddings) are shared and always trainable.

* :func:`mask_grads_` -- grad ← grad ⊙ region, so that gradient clipping measures the
  gradient the step will really use.  Call it after the last accumulated backward (and
  after ``GradScaler.unscale_``), before clipping.
* :class:`RegionStep` -- for ``torch.optim.Adam``, ``AdamW`` and ``SGD`` (what ESPnet builds
  from ``optim: adam|adamw|sgd``): the optimizer's own step computes the stock update and
  writes it only inside the region (no copies; :func:`step_guard` picks it where it applies).
* :class:`PathwayGuard` -- the fallback for any other ``torch.optim.Optimizer``: step hooks
  (also through ``GradScaler.step``) that restore the outside elements of each guarded
  parameter and of its optimizer-state tensors of the same shape after every
  ``optimizer.step()``.

Memory: no permanent copy of anything.  During one ``optimizer.step()`` the guard holds a
clone of each guarded parameter that has a gradient and of its same-shape state tensors
(Adam/AdamW: 3 × the guarded weights' bytes, AMSGrad 4 ×, SGD with momentum 2 ×, plain
SGD 1 ×), freed right after the step.  Restoring is one fused ``torch.where`` written in
place per tensor; there is no host-device synchronisation, so it suits GPUs.  Pass a
region that already lives on the parameters' device (the masked model keeps its masks
there for the forward pass) or each step copies the masks over.

Known approximation: the scalar ``step`` count of Adam/AdamW is per tensor, not per element,
so bias correction for a shared tensor counts the steps of every language that touched it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from espnet_pathways.masks import MaskSet, PositionCache, wide_index

_SCALAR_STATE = ("step",)


def _named(model: nn.Module | Mapping[str, Tensor]) -> dict[str, Tensor]:
    return dict(model.named_parameters()) if isinstance(model, nn.Module) else dict(model)


def _check_region(region: MaskSet, params: Mapping[str, Tensor]) -> None:
    for n, m in region.items():
        if n not in params:
            raise ValueError(f"region: tensor {n!r} is not a parameter of the model")
        if tuple(m.shape) != tuple(params[n].shape):
            raise ValueError(f"region: tensor {n!r} has shape {tuple(m.shape)}, the parameter's is {tuple(params[n].shape)}")


@torch.no_grad()
def mask_grads_(model: nn.Module | Mapping[str, Tensor], region: MaskSet) -> None:
    """grad ← grad ⊙ region in place for every masked parameter that has a gradient."""
    params = _named(model)
    _check_region(region, params)
    for n, m in region.items():
        g = params[n].grad
        if g is not None:
            g.masked_fill_(~m.to(g.device), 0)


class _Trainable:
    """What :class:`PathwayGuard` and :class:`RegionStep` share: ``trainable(region)`` for a block."""

    _region: MaskSet | None
    region: MaskSet | None

    @contextmanager
    def trainable(self, region: MaskSet | None) -> Iterator[None]:
        """Keep the steps inside the block to ``region``; restore the previous region after."""
        previous, self.region = self._region, region
        try:
            yield
        finally:
            self.region = previous


class PathwayGuard(_Trainable):
    """Keep everything outside ``region`` bit-identical across ``optimizer.step()``.

    Installs a step pre-hook (snapshot) and post-hook (restore) on ``optimizer``; set the
    trainable region before each step, e.g. ``guard.region = pathways.candidates(lang)``
    or ``with guard.trainable(masks[lang]): optimizer.step()``.  ``region=None`` makes the
    guard a no-op.  Optimizer-state tensors created by the step itself (first step of a
    parameter) get 0 outside the region, as if that element had never been stepped.
    ``remove()`` uninstalls the hooks.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, model: nn.Module | Mapping[str, Tensor]):
        self.optimizer = optimizer
        self._params = _named(model)
        self._region: MaskSet | None = None
        self._saved: list[tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]] = []
        self._handles = [
            optimizer.register_step_pre_hook(self._snapshot),
            optimizer.register_step_post_hook(self._restore),
        ]

    @property
    def region(self) -> MaskSet | None:
        return self._region

    @region.setter
    def region(self, region: MaskSet | None) -> None:
        if region is not None:
            _check_region(region, self._params)
        self._region = region

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    @torch.no_grad()
    def _snapshot(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        self._saved = []
        if self._region is None:
            return
        managed = {id(p) for g in optimizer.param_groups for p in g["params"]}
        for n, m in self._region.items():
            p = self._params[n]
            if id(p) not in managed or p.grad is None:
                continue  # the optimizer will not touch it
            state = {
                k: v.clone()
                for k, v in optimizer.state.get(p, {}).items()
                if k not in _SCALAR_STATE and torch.is_tensor(v) and v.shape == p.shape
            }
            self._saved.append((p, m.to(p.device), p.detach().clone(), state))

    @torch.no_grad()
    def _restore(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        for p, m, old_p, old_state in self._saved:
            cur = p.detach()
            torch.where(m, cur, old_p, out=cur)
            for k, v in optimizer.state.get(p, {}).items():
                if k in _SCALAR_STATE or not torch.is_tensor(v) or v.shape != p.shape:
                    continue
                if k in old_state:
                    torch.where(m, v, old_state[k], out=v)
                else:
                    v.masked_fill_(~m, 0)
        self._saved = []


# ---------------------------------------------------------------------------------------
# Region-aware optimizer steps: invariant 2 without snapshots
# ---------------------------------------------------------------------------------------
def _adam_tensor(p: Tensor, grad: Tensor, state: dict, *, lr: float, beta1: float, beta2: float, eps: float,
                 weight_decay: float, amsgrad: bool, maximize: bool, decoupled: bool) -> None:
    """One tensor of ``torch.optim.Adam``/``AdamW``'s single-tensor step (torch 2.9-2.11, float
    hyperparameters, not capturable or differentiable): the same operations in the same order."""
    if maximize:
        grad = -grad
    step_t = state["step"]
    step_t += 1
    if weight_decay != 0:
        if decoupled:
            p.mul_(1 - lr * weight_decay)
        else:
            grad = grad.add(p, alpha=weight_decay)
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    step = step_t.item()
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2**0.5
    if amsgrad:
        max_sq = state["max_exp_avg_sq"]
        torch.maximum(max_sq, exp_avg_sq, out=max_sq)
        denom = (max_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    else:
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    p.addcdiv_(exp_avg, denom, value=-step_size)


def _sgd_tensor(p: Tensor, grad: Tensor, state: dict, *, lr: float, momentum: float, dampening: float,
                weight_decay: float, nesterov: bool, maximize: bool) -> None:
    """One tensor of ``torch.optim.SGD``'s single-tensor step: the same operations in the same order."""
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad.add(p, alpha=weight_decay)
    if momentum != 0:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = grad.detach().clone()
            state["momentum_buffer"] = buf
        else:
            buf.mul_(momentum).add_(grad, alpha=1 - dampening)
        grad = grad.add(buf, alpha=momentum) if nesterov else buf
    p.add_(grad, alpha=-lr)


def _compact_step(p: Tensor, grad: Tensor, state: dict, idx: Tensor, step_fn, new_state: Iterable[str] = ()) -> None:
    """Run ``step_fn(p_c, grad_c, state_c)`` on the region's elements only (gathered by ``idx``), then
    write weights and per-element state back there.  Elements outside are never read or written.
    ``new_state``: per-element state the step may create (zero outside the region)."""
    wide = wide_index(idx)
    flat = {k: v.view(-1) for k, v in state.items() if torch.is_tensor(v) and v.shape == p.shape}
    state_c = {k: v for k, v in state.items() if k not in flat}
    state_c.update({k: v.index_select(0, idx) for k, v in flat.items()})
    p_c = p.view(-1).index_select(0, idx)
    step_fn(p_c, grad.reshape(-1).index_select(0, idx), state_c)
    p.view(-1).index_copy_(0, wide, p_c)
    for k, v in state_c.items():
        if k in flat:
            flat[k].index_copy_(0, wide, v)
        elif k in new_state:  # born in this step: 0 outside the region, as if never stepped there
            full = torch.zeros_like(p)
            full.view(-1).index_copy_(0, wide, v)
            state[k] = full
        else:
            state[k] = v  # scalars (Adam's step count: shared, incremented in place)


class _RegionStepMixin:
    """``step`` of a region-aware optimizer: each parameter with a region in ``_pathway_regions``
    steps on its region's elements only (:func:`_compact_step`), the others as stock.  A subclass
    gives its per-group hyperparameters, its lazy state and its per-tensor algorithm."""

    _pathway_regions: dict[int, Tensor]
    _pathway_index: PositionCache
    _new_state: tuple[str, ...] = ()  # per-element state the step itself may create

    def _hyper(self, group: dict) -> dict:
        raise NotImplementedError

    def _init_state(self, p: Tensor, group: dict, state: dict) -> None:
        pass

    @staticmethod
    def _tensor_step(p: Tensor, grad: Tensor, state: dict, **hyper) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        regions = getattr(self, "_pathway_regions", {})
        for group in self.param_groups:
            hyper = self._hyper(group)
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                self._init_state(p, group, state)
                r = regions.get(id(p))
                if r is None:
                    self._tensor_step(p.detach(), p.grad, state, **hyper)
                else:
                    _compact_step(p.detach(), p.grad, state, self._pathway_index(r),
                                  lambda p_c, g_c, st_c: self._tensor_step(p_c, g_c, st_c, **hyper), self._new_state)
        return loss


class _RegionAdam(_RegionStepMixin):
    """Adam/AdamW: each parameter (and its moments) updated only inside its region."""

    _tensor_step = staticmethod(_adam_tensor)

    def _hyper(self, group: dict) -> dict:
        beta1, beta2 = group["betas"]
        return dict(lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                    amsgrad=group["amsgrad"], maximize=group["maximize"],
                    decoupled=group.get("decoupled_weight_decay", isinstance(self, torch.optim.AdamW)))

    def _init_state(self, p: Tensor, group: dict, state: dict) -> None:
        if len(state) == 0:  # as Adam._init_group (not capturable, not fused)
            state["step"] = torch.tensor(0.0, dtype=torch.get_default_dtype())
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)


class _RegionSGD(_RegionStepMixin):
    """SGD: each parameter (and its momentum buffer) updated only inside its region."""

    _tensor_step = staticmethod(_sgd_tensor)
    _new_state = ("momentum_buffer",)

    def _hyper(self, group: dict) -> dict:
        return dict(lr=group["lr"], momentum=group["momentum"], dampening=group["dampening"],
                    weight_decay=group["weight_decay"], nesterov=group["nesterov"], maximize=group["maximize"])


class RegionAdam(_RegionAdam, torch.optim.Adam):
    """``torch.optim.Adam`` whose step writes only inside each parameter's pathway region."""


class RegionAdamW(_RegionAdam, torch.optim.AdamW):
    """``torch.optim.AdamW`` whose step writes only inside each parameter's pathway region."""


class RegionSGD(_RegionSGD, torch.optim.SGD):
    """``torch.optim.SGD`` whose step writes only inside each parameter's pathway region."""


_REGION_CLASSES: dict[type, type] = {torch.optim.Adam: RegionAdam, torch.optim.AdamW: RegionAdamW,
                                     torch.optim.SGD: RegionSGD}


def region_step_unsupported(optimizer: torch.optim.Optimizer) -> str | None:
    """Why ``optimizer`` cannot take a region-aware step (then :class:`PathwayGuard` is used), or ``None``."""
    cls = type(optimizer)
    if cls in _REGION_CLASSES.values():
        return None
    if cls not in _REGION_CLASSES:
        return f"{cls.__name__} (region-aware steps cover torch.optim.Adam, AdamW and SGD)"
    for group in optimizer.param_groups:
        for key in ("capturable", "differentiable", "fused"):
            if group.get(key):
                return f"{cls.__name__} with {key}=True"
        for key in ("lr", "weight_decay", "momentum", "dampening", "eps"):
            if torch.is_tensor(group.get(key)):
                return f"{cls.__name__} with a tensor {key}"
        if any(torch.is_tensor(b) for b in group.get("betas", ())):
            return f"{cls.__name__} with tensor betas"
        if any(p.is_complex() or p.is_sparse for p in group["params"]):
            return f"{cls.__name__} on complex or sparse parameters"
        if not all(p.is_contiguous() for p in group["params"]):
            return f"{cls.__name__} on non-contiguous parameters"
    return None


class RegionStep(_Trainable):
    """Invariant 2 without snapshots: the optimizer's own step writes only inside the region.

    The same interface as :class:`PathwayGuard` (``region``, ``trainable()``, ``remove()``), for
    ``torch.optim.Adam``, ``AdamW`` and ``SGD`` as ESPnet builds them (floats for every
    hyperparameter; foreach or not; not fused, capturable or differentiable; contiguous
    parameters): the instance's class becomes :class:`RegionAdam` / :class:`RegionAdamW` /
    :class:`RegionSGD`, subclasses whose ``step`` is the stock single-tensor algorithm, the same
    operations in the same order, run for a masked parameter on its region's elements only:
    weight, gradient and per-element state gathered at the region's positions, stepped, and
    written back there (``index_select`` / ``index_copy_``; elements outside are never touched).
    The positions of each region mask are found once and kept while the mask lives (int32: 4
    bytes per kept weight per region in use, e.g. per language).  Parameters without a mask in
    the region step as stock.  Nothing is snapshotted before the step or restored after it; the
    state dict, hooks, LR schedulers and ``GradScaler`` see the stock optimizer (``isinstance``
    holds, the state keys are the stock ones).  ``remove()`` gives the instance its class back.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, model: nn.Module | Mapping[str, Tensor]):
        reason = region_step_unsupported(optimizer)
        if reason is not None:
            raise ValueError(f"region-aware step: not for {reason}")
        self.optimizer = optimizer
        self._params = _named(model)
        self._region: MaskSet | None = None
        self._base = type(optimizer)
        if self._base in _REGION_CLASSES:
            optimizer.__class__ = _REGION_CLASSES[self._base]
            patch = getattr(optimizer, "_patch_step_function", None)
            if patch is not None:
                patch()  # the subclass's step runs the optimizer's hooks (the controller's) too
            if not getattr(type(optimizer).step, "hooked", False):  # a torch without that mechanism
                optimizer.__class__ = self._base
                raise ValueError(f"{self._base.__name__}: this torch cannot run step hooks around a subclass's step")
        optimizer._pathway_regions = {}
        optimizer._pathway_index = PositionCache()

    @property
    def region(self) -> MaskSet | None:
        return self._region

    @region.setter
    def region(self, region: MaskSet | None) -> None:
        if region is None:
            self.optimizer._pathway_regions = {}
        else:
            _check_region(region, self._params)
            self.optimizer._pathway_regions = {
                id(self._params[n]): m if m.device == self._params[n].device else m.to(self._params[n].device)
                for n, m in region.items()
            }
        self._region = region

    def remove(self) -> None:
        if type(self.optimizer) is not self._base:
            self.optimizer.__class__ = self._base
        self.optimizer._pathway_regions = {}


def step_guard(optimizer: torch.optim.Optimizer, model: nn.Module | Mapping[str, Tensor],
               kind: str = "auto") -> RegionStep | PathwayGuard:
    """The object that keeps invariant 2 for ``optimizer``: ``auto`` -- a :class:`RegionStep` where the
    optimizer is covered, else a :class:`PathwayGuard`; ``region`` / ``guard`` -- that one (``region``
    on an uncovered optimizer: ``ValueError`` saying why)."""
    if kind not in ("auto", "region", "guard"):
        raise ValueError(f"region_step: expected auto, region or guard, got {kind!r}")
    if kind == "guard":
        return PathwayGuard(optimizer, model)
    try:
        return RegionStep(optimizer, model)  # checks region_step_unsupported itself
    except ValueError:
        if kind == "region":
            raise
        return PathwayGuard(optimizer, model)
