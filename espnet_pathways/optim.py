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
* :class:`PathwayGuard` -- step hooks on any ``torch.optim.Optimizer`` (Adam, AdamW, SGD,
  ... as ESPnet builds them from a config; also through ``GradScaler.step``) that restore
  the outside elements of each guarded parameter and of its optimizer-state tensors of the
  same shape after every ``optimizer.step()``.

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

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from espnet_pathways.masks import MaskSet

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


class PathwayGuard:
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

    @contextmanager
    def trainable(self, region: MaskSet | None) -> Iterator[None]:
        """Guard the steps inside the block with ``region``; restore the previous region after."""
        previous, self.region = self._region, region
        try:
            yield
        finally:
            self._region = previous

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
