"""What a pathway mode is: a small rule class over the controller's shared machinery.

A mode's rule says three things and nothing else:

* **what it trains** -- class attributes that the config check and the controller read
  (one language or several, one mask shared by every language or one per language,
  whether it has a sparsity schedule, whether its training regions reach beyond the
  masks, whether it needs initial masks, whether it may rewind);
* **its regions** -- :meth:`ModeRule.region` (the region a batch computes with: by
  default its mask, or :meth:`ModeRule.soft_region` while training is soft) and, for a
  mode that computes each batch more than once, :meth:`ModeRule.passes` (e.g. a sparse
  streaming pass with θ ⊙ m and a dense full-context pass with θ);
* **its events** -- :meth:`ModeRule.event_at` (which event, if any, follows optimizer
  step t) and :meth:`ModeRule.run_event` (new masks and weights for that event).

Step counting, optimizer hooks, the region guard, checkpoint state, DDP agreement and
``masks.pt`` belong to :class:`~espnet_pathways.controller.PathwaysController`, which
calls the rule and offers it the shared actions (:meth:`~PathwaysController.sparsity_at`,
:meth:`~PathwaysController.rewind`).  A new mode is one new module in this package with
one :func:`register`-ed subclass (and its import in ``modes/__init__.py``).

Imports torch and the core modules only.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from espnet_pathways.masks import MaskSet, PathwayMasks
from espnet_pathways.pruning import magnitude_prune

if TYPE_CHECKING:
    from espnet_pathways.controller import PathwaysConfig, PathwaysController


class PathwaysError(ValueError):
    """A bad option, file or batch: the entry points print it as one line and exit 1."""


Region = tuple[Hashable, "MaskSet | None"]


@dataclass(frozen=True)
class Pass:
    """One computation of a batch by a multi-pass mode (see :meth:`ModeRule.passes`).

    ``name``: its stats key (``loss_<name>``); ``weight``: its loss weight; ``sparse``:
    compute with θ ⊙ m of the batch's language (functionally: θ itself is not touched), else
    with θ; ``chunk``: the encoder's attention chunk in encoder frames (``None``: full
    context); ``distill_from``/``distill_weight``: add ``distill_weight`` × KL(teacher ‖ this
    pass) over the transducer lattice, the teacher being the earlier pass of that name
    (detached: in-place distillation).
    """

    name: str
    weight: float
    sparse: bool
    chunk: int | None
    distill_from: str | None = None
    distill_weight: float = 0.0


class ModeRule:
    """One mode's rule; ``ctl`` is the run's controller (masks, step, model, config)."""

    name: ClassVar[str] = ""
    monolingual: ClassVar[bool] = False
    """Trains exactly one language (``languages: [l]``)."""
    shared_mask: ClassVar[bool] = False
    """One mask for every language of the run (imp, lth, lap)."""
    scheduled: ClassVar[bool] = True
    """Has a sparsity schedule (``final_sparsity``, ``prune_interval``, ``schedule``...)."""
    soft: ClassVar[bool] = False
    """Training regions reach beyond the masks until the last prune event, with re-ranks
    every ``rerank_interval`` steps in between (adaptive masking)."""
    needs_init_masks: ClassVar[bool] = False
    """Starts from ``init_masks`` (per-language masks found by another run)."""
    needs_batch_language: ClassVar[bool] = False
    """A batch without utterance ids is an error (the language picks the region)."""
    rewind: ClassVar[str] = "optional"
    """``always`` (lth), ``optional`` (``rewind: true`` allowed) or ``never``."""
    mixed_batches: ClassVar[bool] = False
    """Batches may mix languages (and do by default: ESPnet's own sampler)."""
    reranks: ClassVar[bool | None] = None
    """Re-ranks every ``rerank_interval`` steps between prune events (default: ``soft``)."""
    zeroes_pruned: ClassVar[bool] = True
    """Pruned weights are zero in θ (θ ← θ ⊙ ∪ m at the start and after events); weights
    outside every mask are then known to be zero (the swap's support)."""

    def __init__(self, ctl: PathwaysController):
        self.ctl = ctl

    @classmethod
    def does_rerank(cls) -> bool:
        return cls.soft if cls.reranks is None else cls.reranks

    @classmethod
    def check_config(cls, cfg: PathwaysConfig, given: set[str]) -> None:
        """Checks of this mode's own beyond what the class attributes imply (raise PathwaysError)."""

    @classmethod
    def parse_options(cls, options: Mapping[str, Any] | None) -> Any:
        """This mode's own section (``pathways.<mode>: {...}``), parsed; ``None``: the mode has none."""
        if options:
            raise PathwaysError(f"pathways.{cls.name}: mode {cls.name} has no options of its own")
        return None

    def check_model(self) -> None:
        """Checks against the built model (e.g. its encoder's configuration); raise PathwaysError."""

    # -- start --------------------------------------------------------------------------
    @torch.no_grad()
    def start(self) -> PathwayMasks:
        """The masks at the first batch (after ``--init_param``); zeroes θ outside them (``zeroes_pruned``)."""
        masks = self.initial_masks()
        if self.zeroes_pruned:
            masks.union().apply_(self.ctl.model)  # imp/lth/lap/adaptive: θ ⊙ m; pathways/dynamic: θ ⊙ ∪ m_l
        return masks

    def initial_masks(self) -> PathwayMasks:
        """The masks at the first batch: ``init_masks``, else top-|θ| at s_0 shared by all languages."""
        ctl = self.ctl
        if ctl.init_masks is not None:
            return PathwayMasks(dict(ctl.init_masks.items()), ctl.init_masks.history)
        s0 = ctl.sparsity_at(ctl.languages[0], 0)
        m = magnitude_prune(ctl.model, s0, names=ctl.names, scope=ctl.config.scope).masks
        return PathwayMasks({lang: m for lang in ctl.languages})

    # -- regions ------------------------------------------------------------------------
    def region(self, lang: str, training: bool) -> Region:
        """(key, region) a batch of ``lang`` computes with (``None`` region: θ itself)."""
        ctl = self.ctl
        if training and ctl.soft():
            return self.soft_region(lang)
        if self.shared_mask:
            lang = ctl.languages[0]
        if ctl.mask_is_full(lang):
            return ("dense", ctl.version), None
        return ("mask", lang, ctl.version), ctl.masks[lang]

    def support(self) -> MaskSet | None:
        """Where θ may be non-zero (``None``: anywhere): the swap stashes only this."""
        ctl = self.ctl
        return ctl.masks.union() if self.zeroes_pruned and not ctl.soft() else None

    def passes(self, training: bool) -> list[Pass] | None:
        """How the model computes a batch: ``None`` (the default): once, with the region."""
        return None

    def soft_region(self, lang: str) -> Region:
        """The training region of a batch of ``lang`` while training is soft."""
        raise NotImplementedError(f"mode {self.name} has no soft training")

    # -- events -------------------------------------------------------------------------
    def event_at(self, t: int) -> str | None:
        """The event after optimizer step ``t``: ``prune``, ``rerank`` or ``None``."""
        if not self.scheduled:
            return None
        ctl = self.ctl
        sch = ctl.schedules[ctl.languages[0]]
        if sch.is_prune_step(t):
            return "prune"
        if self.does_rerank() and sch.is_rerank_step(t) and (ctl.config.rerank_after_final or t < ctl.last_event_step):
            return "rerank"
        return None

    @torch.no_grad()
    def run_event(self, t: int, event: str) -> None:
        """Update ``ctl.masks`` (and the weights) for ``event`` at step ``t``; weights are released."""
        raise NotImplementedError(f"mode {self.name} has no events")


MODES: dict[str, type[ModeRule]] = {}


def register(cls: type[ModeRule]) -> type[ModeRule]:
    """Class decorator: make ``cls`` the rule of ``pathways.mode: <cls.name>``."""
    if not cls.name or cls.name in MODES:
        raise ValueError(f"mode name {cls.name!r} is empty or taken")
    MODES[cls.name] = cls
    return cls


def options_from(mode: str, kind: type, options: Mapping[str, Any] | None) -> Any:
    """``pathways.<mode>``'s mapping as the dataclass ``kind`` (its defaults for missing keys); unknown keys are errors."""
    options = dict(options or {})
    known = [f.name for f in fields(kind)]
    bad = [k for k in options if k not in known]
    if bad:
        raise PathwaysError(f"pathways.{mode}.{bad[0]}: unknown option (known: {', '.join(known)})")
    return kind(**options)


def fmt_sparsity(sparsity: Mapping[str, float]) -> str:
    """``{"fr": 0.7, ...}`` as ``fr 0.7000, ...`` for log lines."""
    return ", ".join(f"{lang} {s:.4f}" for lang, s in sparsity.items())


def changed(a: MaskSet, b: MaskSet) -> int:
    """How many mask elements differ between ``a`` and ``b``."""
    return sum(int((a[n] != b[n]).sum()) for n in a.names)
