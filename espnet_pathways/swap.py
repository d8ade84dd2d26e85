"""In-place masking of named parameters: θ ⊙ r without a second copy of the weights.

:class:`InPlaceMasker` makes a module compute with θ ⊙ r for a region r (a
:class:`~espnet_pathways.masks.MaskSet`) by editing the weights in place:

* ``activate(key, region)``: undo the previous region (if another), then stash the
  values of D = support ∖ r compactly (``index_select`` at D's flat positions: |D|
  numbers) and zero them in place (``index_fill_``).  ``support`` (default: everything)
  is where weights may be non-zero: the caller guarantees that weights outside it are zero
  (e.g. the union of all fixed masks), so they need no stash.
* ``release()``: write the stashed values back (``index_copy_``) -- bit-exact -- and
  drop the stash.
* D's positions are found once per pair of mask tensors (region, support) and cached
  (int32 where they fit, dropped with the masks; a mask edited in place is seen by its
  version): ``masked_select``/``masked_scatter_`` scan the whole tensor single-threaded
  and were ~10× slower per language switch on CPU.  ``cache_positions=False`` finds them
  again at every switch instead (no cache memory, ~2× slower switches).  Anything that reads or writes the true weights (``state_dict``,
  ``load_state_dict``, pruning, export) must release first; the masked model does it
  with module hooks.
* gradient hooks: each masked parameter's gradient becomes grad ⊙ r (``grad_region``,
  pinned at ``activate`` and kept across ``release``), so gradient clipping and DDP's
  all-reduce see the masked gradient.  Two ways, chosen per backward by ``grad_in_place``:
  a tensor hook returns a masked copy of the micro-batch's gradient before it is
  accumulated (always exact); with ``grad_in_place`` a post-accumulate hook masks ``.grad``
  itself after accumulation instead -- no copy, ~2× cheaper on CPU -- which is exact only
  when every gradient already accumulated in ``.grad`` was masked to the same region (the
  caller knows: a new accumulation cycle, or micro-batches of one region) and nothing reads
  the gradient between accumulation and the hook (not under DDP, whose reducer does).

Only the positions of D change, and only while a region is active; the optimizer must
not move them (use :func:`~espnet_pathways.optim.step_guard` with the same region).
The region and the support are read at ``activate``; ``release`` writes back exactly where
``activate`` stashed.

Memory while a region is active: |D| stashed values (at most the masked weights' size
times the share outside the region); with the cache, 4 bytes per position of D for every
region that has been active (per language: as much as its stash).  On CUDA, finding
positions (``nonzero``) synchronises with the host once per tensor; with the cache that
happens once per mask, not per swap.

Imports torch only.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import torch
from torch import Tensor, nn

from espnet_pathways.masks import MaskSet, PositionCache, as_uint8, wide_index


class InPlaceMasker:
    """Swap a region in and out of ``module``'s parameters ``names`` in place."""

    def __init__(self, module: nn.Module, names: Iterable[str], *, cache_positions: bool = True):
        params = dict(module.named_parameters())
        self.names = list(names)
        missing = [n for n in self.names if n not in params]
        if missing:
            raise ValueError(f"no parameter named {missing[0]!r}")
        strided = [n for n in self.names if not params[n].is_contiguous()]
        if strided:
            raise ValueError(f"parameter {strided[0]!r} is not contiguous: the swap edits weights through a flat view")
        self.params: dict[str, Tensor] = {n: params[n] for n in self.names}
        self.support: MaskSet | None = None
        self.grad_region: MaskSet | None = None
        self.grad_in_place = False  # mask .grad after accumulation (see the module doc) instead of a copy before
        self._key: Hashable | None = None
        self._region: MaskSet | None = None
        self._stash: dict[str, Tensor] = {}
        self._positions: dict[str, Tensor] = {}  # D's flat positions while a region is active
        self._outside_positions = PositionCache(cache_positions)
        self._hooks: list = []

    # -- state ----------------------------------------------------------------------------
    @property
    def active_key(self) -> Hashable | None:
        """Key of the region currently swapped in (``None``: the true weights)."""
        return self._key

    @property
    def active_region(self) -> MaskSet | None:
        return self._region

    def stashed_numel(self) -> int:
        return sum(v.numel() for v in self._stash.values())

    def cached_positions_numel(self) -> int:
        """Positions held by the cache (4 bytes each where int32), for every region seen."""
        return self._outside_positions.numel()

    def set_support(self, support: MaskSet | None) -> None:
        """Where weights may be non-zero (``None``: anywhere).  Releases first."""
        self.release()
        if support is not None:
            self._check(support, "support")
        self.support = support

    def _check(self, region: MaskSet, what: str) -> None:
        for n in self.names:
            if n not in region:
                raise ValueError(f"{what}: no mask for {n!r}")
            if tuple(region[n].shape) != tuple(self.params[n].shape):
                raise ValueError(f"{what}: {n!r} has shape {tuple(region[n].shape)}, the weight's is {tuple(self.params[n].shape)}")

    def _outside(self, n: str, region: MaskSet) -> Tensor:
        """Flat positions of D = support ∖ region in parameter ``n``."""
        support = None if self.support is None else self.support[n]
        device = self.params[n].device

        def outside(r: Tensor, s: Tensor | None) -> Tensor:
            d = ~r.to(device)
            return d if s is None else d & s.to(device)

        return self._outside_positions(region[n], support, derive=outside)

    # -- swapping -------------------------------------------------------------------------
    @torch.no_grad()
    def activate(self, key: Hashable, region: MaskSet | None, *, grads: bool = True) -> bool:
        """Make the weights θ ⊙ ``region`` (``None``: θ); returns True if anything moved.

        ``key`` identifies the region: activating the active key again is free.  With
        ``grads`` the gradient hooks mask to ``region`` from now on.
        """
        if grads:
            self.grad_region = region
        if key == self._key and region is self._region:
            return False  # already active
        self.release()
        if region is None:
            return False
        self._check(region, "region")
        for n in self.names:
            idx = self._outside(n, region)
            if idx.numel():
                flat = self.params[n].detach().view(-1)
                self._stash[n] = flat.index_select(0, idx)
                self._positions[n] = idx
                flat.index_fill_(0, wide_index(idx), 0)  # θ ⊙ r inside the support
        self._key, self._region = key, region
        return True

    @torch.no_grad()
    def release(self) -> bool:
        """Restore the true weights bit-exactly; returns True if a region was active."""
        if self._region is None:
            self._key = None
            return False
        for n, vals in self._stash.items():
            self.params[n].detach().view(-1).index_copy_(0, wide_index(self._positions[n]), vals)
        self._stash, self._positions = {}, {}
        self._key, self._region = None, None
        return True

    # -- gradients ------------------------------------------------------------------------
    def install_grad_hooks(self) -> None:
        """Mask each parameter's gradient to ``grad_region`` as it is computed."""
        if self._hooks:
            return
        for n, p in self.params.items():
            if p.requires_grad:
                self._hooks.append(p.register_hook(self._grad_hook(n)))
                self._hooks.append(p.register_post_accumulate_grad_hook(self._accumulated_hook(n)))

    def remove_grad_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def _mask(self, name: str, like: Tensor) -> Tensor:
        # as 0/1 bytes: float x uint8 is cheaper than float x bool (a promotion per element) on CPU
        return as_uint8(self.grad_region[name].to(like.device))

    def _grad_hook(self, name: str):
        def hook(grad: Tensor) -> Tensor | None:
            if self.grad_region is None or self.grad_in_place:
                return None
            return grad.mul(self._mask(name, grad))  # grad ⊙ r before accumulation: a copy

        return hook

    def _accumulated_hook(self, name: str):
        @torch.no_grad()
        def hook(p: Tensor) -> None:
            if self.grad_region is not None and self.grad_in_place and p.grad is not None:
                p.grad.mul_(self._mask(name, p.grad))  # .grad ⊙ r after accumulation, in place

        return hook
