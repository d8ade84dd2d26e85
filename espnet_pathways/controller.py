"""The machinery every pathway mode shares: config, step count, hooks, state, DDP checks.

One :class:`PathwaysController` per training run holds the masks (a
:class:`~espnet_pathways.masks.PathwayMasks`, language -> mask), the global step t (the
number of ``optimizer.step()`` calls that ran: with ``accum_grad`` that is ESPnet's
update count; a step skipped for a non-finite gradient does not count) and the schedule.
It attaches to the masked model (which asks it, per batch, which region to compute with)
and to the optimizer (step pre-hook: guard the step's region; post-hook: t += 1, then the
events due at t).  No ESPnet trainer code is overridden.  It imports torch and the core
modules only.

Regions
-------
A batch of language l computes with θ ⊙ r_l and its step changes only r_l (gradients
masked to r_l, :class:`~espnet_pathways.optim.PathwayGuard` keeping every element outside
r_l -- weight and optimizer state -- bit-identical).  Validation and export use the mask
m_l.  Prunable tensors: ``prunable`` (default: linear weights of encoder, predictor and
joiner); everything else is shared, always trainable.

Modes
-----
Each mode's exact rule (its regions and its events) is a small class in
:mod:`espnet_pathways.modes` (``imp``, ``lth``, ``lap``: :mod:`~espnet_pathways.modes.prune`;
``pathways``; ``adaptive``; ``dynamic_pathways``: :mod:`~espnet_pathways.modes.dynamic`),
whose docstring states it.  This module holds what every mode shares: the config, the
step count, the optimizer hooks, checkpoint state, DDP agreement and ``masks.pt``.

Schedule: s(t) = ``schedule`` at round k = ⌊t / T⌋, T = ``prune_interval``; ``cubic``:
s_k = s_f + (s_0 − s_f)(1 − k/N)³, N = ``num_rounds``; ``fixed_fraction``: s_k =
min(s_f, 1 − (1 − s_0)(1 − p)^k), p = ``fraction``; s_f = ``final_sparsity``, s_0 =
``initial_sparsity`` (default: the sparsity of ``init_masks``, else 0).  Prune events at
t = T, 2T, ..., N·T.  "Keep the top |θ|" keeps round((1 − s)·n) per tensor
(``scope: tensor``) or over all prunable tensors (``scope: global``), ties to the lower
index.  Pick N·T no larger than the run's number of optimizer steps, or the target is
not reached.

Other keys: ``init_masks`` (a masks file, a pathways run's output dir or its
``checkpoint.pth``; must cover exactly the ``prunable`` tensors and every language),
``prunable`` (``kinds``: ``linear``/``conv``/``rnn``, ``prefixes`` (default encoder.,
decoder., joint_network.), ``include``/``exclude`` regexes; see
:func:`~espnet_pathways.masks.prunable_names`), ``scope``, ``batches`` (``monolingual``:
:class:`~espnet_pathways.sampler.LanguageBatchSampler`, the default except for ``lap``),
``policy`` (``round_robin`` | ``proportional`` | ``temperature``), ``beta`` (temperature
exponent), ``utt2lang`` (file; default: ``utt2lang`` or ``utt2category`` beside the first
data file, else the utterance-id prefix before the first ``_``), ``region_step`` (``auto``,
the default: a region-aware step for ``torch.optim.Adam``/``AdamW``/``SGD``, else the
snapshot-and-restore guard; ``region`` or ``guard`` to force one; see
:mod:`espnet_pathways.optim`), ``swap_positions`` (``cache``, the default: the flat positions
each language's swap zeroes are found once per mask and kept, 4 bytes each; ``find``: found
again at every language switch, no cache memory; see :mod:`espnet_pathways.swap`), ``grad_mask``
(``in_place``, the default: a micro-batch whose accumulated gradient is all of its own region
has ``.grad`` masked in place after accumulation; ``copy``: every micro-batch's gradient masked
as a copy before accumulation, as under DDP and after a change of region within an
accumulation cycle, which always do).  ``languages`` defaults
to every language in the training data.  Each batch's loss is also reported as
``loss_<lang>`` (train and valid).

Accumulated micro-batches of different languages (only possible with ``batches: mixed``
or a custom sampler): each micro-batch's gradient is masked to its own region and the step
may change the union of the micro-batches' regions.

Checkpoints: :meth:`PathwaysController.state_dict` (step, masks as averaging-safe int64
tensors, history) rides inside the optimizer's state dict, so ESPnet's ``checkpoint.pth``
carries it and ``--resume`` restores it (a checkpoint without it is refused), while the
model's state-dict keys stay the stock model's -- stock ``build_model_from_file`` would
ignore extra keys, but stock ``--init_param`` loads strictly and would refuse them, and
the epoch files n-best averaging reads carry no masks to corrupt.
``<output_dir>/masks.pt`` (:meth:`PathwayMasks.save` format) is rewritten with every
checkpoint.  Under DDP every rank computes the same events; the controller all-gathers
(step, mask digests) at the start, at every event and on resume, and stops on a mismatch.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from espnet_pathways.masks import DEFAULT_PREFIXES, MaskSet, PathwayMasks, prunable_names
from espnet_pathways.modes import MODES, ModeRule, PathwaysError
from espnet_pathways.modes.base import fmt_sparsity
from espnet_pathways.optim import PathwayGuard, RegionStep, step_guard
from espnet_pathways.pruning import (
    AdaptiveSchedule,
    CubicSchedule,
    FixedFractionSchedule,
    check_sparsity,
    rewind_,
)
from espnet_pathways.swap import InPlaceMasker

__all__ = ["MODES", "PathwaysConfig", "PathwaysController", "PathwaysError", "ModeRule"]

log = logging.getLogger(__name__)

STATE_KEY = "espnet_pathways"
STATE_FORMAT = "espnet_pathways.controller"
STATE_VERSION = 1
THETA0_FILE = "pathways_theta0.pth"
MASKS_FILE = "masks.pt"
_RESERVED_LANGS = ("transducer", "aux_ctc", "aux_lm")  # would collide with ESPnet's loss_* stats


# ---------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------
@dataclass
class PathwaysConfig:
    """The ``pathways:`` section of a training config (see the module docstring)."""

    mode: str
    languages: list[str] | None = None
    init_masks: str | None = None
    final_sparsity: float | None = None
    initial_sparsity: float | None = None
    schedule: str = "cubic"
    prune_interval: int | None = None
    num_rounds: int | None = None
    fraction: float | None = None
    rerank_interval: int | None = None
    rerank_after_final: bool = False
    scope: str = "tensor"
    rewind: bool | None = None
    rewind_to: str | None = None
    rewind_unmasked: bool = True
    reset_optimizer_on_rewind: bool = True
    prunable: dict[str, Any] = field(default_factory=dict)
    batches: str | None = None
    policy: str = "round_robin"
    beta: float = 1.0
    utt2lang: str | None = None
    region_step: str = "auto"
    swap_positions: str = "cache"
    grad_mask: str = "in_place"
    options: Any = field(default=None, compare=False)
    """The mode's own section (``pathways.<mode>``), parsed by its rule; not a YAML key itself."""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> PathwaysConfig | None:
        """Parse and check the section; ``None``/empty -> ``None`` (plain dense training)."""
        if not d:
            return None
        if not isinstance(d, Mapping):
            raise PathwaysError(f"pathways: expected a mapping of options, got {d!r}")
        d = dict(d)
        mode = d.get("mode")
        own = d.pop(mode, None) if isinstance(mode, str) and mode in MODES else None
        known = [k for k in cls.__dataclass_fields__ if k != "options"]
        unknown = [k for k in d if k not in known]
        if unknown:
            extra = f", {mode}" if isinstance(mode, str) and mode in MODES else ""
            raise PathwaysError(f"pathways.{unknown[0]}: unknown option (known: {', '.join(known)}{extra})")
        if "mode" not in d:
            raise PathwaysError(f"pathways.mode: missing (one of {', '.join(MODES)})")
        cfg = cls(**d)
        cfg._check(set(d))
        if own is not None and not isinstance(own, Mapping):
            raise PathwaysError(f"pathways.{mode}: expected a mapping of options, got {own!r}")
        cfg.options = cfg.rule.parse_options(own)
        return cfg

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        options = d.pop("options")
        if options is not None:
            d[self.mode] = options
        return d

    @property
    def rule(self) -> type[ModeRule]:
        """The mode's rule class."""
        return MODES[self.mode]

    def _check(self, given: set[str]) -> None:
        mode = self.mode
        if not isinstance(mode, str) or mode not in MODES:
            raise PathwaysError(f"pathways.mode: {mode!r} is not one of {', '.join(MODES)}")
        rule = self.rule
        if self.region_step not in ("auto", "region", "guard"):
            raise PathwaysError(f"pathways.region_step: {self.region_step!r} is not auto, region or guard")
        if self.swap_positions not in ("cache", "find"):
            raise PathwaysError(f"pathways.swap_positions: {self.swap_positions!r} is not cache or find")
        if self.grad_mask not in ("in_place", "copy"):
            raise PathwaysError(f"pathways.grad_mask: {self.grad_mask!r} is not in_place or copy")
        if self.languages is not None:
            if isinstance(self.languages, str):
                self.languages = self.languages.split()
            if not isinstance(self.languages, list) or not self.languages or not all(
                isinstance(x, str) and x for x in self.languages
            ):
                raise PathwaysError(f"pathways.languages: expected a list of language codes, got {self.languages!r}")
            self.languages = [str(x) for x in self.languages]
            if len(set(self.languages)) != len(self.languages):
                raise PathwaysError(f"pathways.languages: duplicate entries in {self.languages}")
            for lang in self.languages:
                check_language_code(lang, "pathways.languages")
            if rule.monolingual and len(self.languages) != 1:
                raise PathwaysError(f"pathways.languages: mode {mode} trains one language, got {self.languages}")

        def unused(keys: Iterable[str]) -> None:
            for k in keys:
                if k in given:
                    raise PathwaysError(f"pathways.{k}: not used by mode {mode}")

        if rule.needs_init_masks and not self.init_masks:
            raise PathwaysError(f"pathways.init_masks: mode {mode} needs a masks file (e.g. merged imp/lth runs, or a lap run)")
        if rule.scheduled:
            for k in ("final_sparsity", "prune_interval"):
                if getattr(self, k) is None:
                    raise PathwaysError(f"pathways.{k}: required by mode {mode}")
            self.final_sparsity = _sparsity("final_sparsity", self.final_sparsity)
            if self.initial_sparsity is not None:
                self.initial_sparsity = _sparsity("initial_sparsity", self.initial_sparsity)
                if self.initial_sparsity > self.final_sparsity:
                    raise PathwaysError(
                        f"pathways.initial_sparsity ({self.initial_sparsity}) exceeds "
                        f"pathways.final_sparsity ({self.final_sparsity})"
                    )
            _positive("prune_interval", self.prune_interval)
            if self.schedule == "cubic":
                if self.num_rounds is None:
                    raise PathwaysError("pathways.num_rounds: required by schedule cubic")
                _positive("num_rounds", self.num_rounds)
                unused(["fraction"])
            elif self.schedule == "fixed_fraction":
                if self.fraction is None:
                    raise PathwaysError("pathways.fraction: required by schedule fixed_fraction")
                if isinstance(self.fraction, bool) or not isinstance(self.fraction, (int, float)) or not 0 < self.fraction < 1:
                    raise PathwaysError(f"pathways.fraction: must be in (0, 1), got {self.fraction!r}")
                unused(["num_rounds"])
            else:
                raise PathwaysError(f"pathways.schedule: {self.schedule!r} is not cubic or fixed_fraction")
            if self.scope not in ("tensor", "global"):
                raise PathwaysError(f"pathways.scope: {self.scope!r} is not tensor or global")
        else:
            unused(["final_sparsity", "initial_sparsity", "schedule", "prune_interval", "num_rounds", "fraction", "scope"])
        if rule.does_rerank():
            if self.rerank_interval is None:
                raise PathwaysError(f"pathways.rerank_interval: required by mode {mode}")
            _positive("rerank_interval", self.rerank_interval)
            if self.rerank_interval >= self.prune_interval:
                raise PathwaysError(
                    f"pathways.rerank_interval (n={self.rerank_interval}) must be smaller than "
                    f"pathways.prune_interval (T={self.prune_interval})"
                )
        else:
            unused(["rerank_interval", "rerank_after_final"])
        if rule.rewind == "never":
            unused(["rewind", "rewind_to", "rewind_unmasked", "reset_optimizer_on_rewind"])
            self.rewind = False
        else:
            if self.rewind is None:
                self.rewind = rule.rewind == "always"
            if rule.rewind == "always" and not self.rewind:
                raise PathwaysError(f"pathways.rewind: mode {mode} always rewinds (use mode imp)")
            if not self.rewind:
                unused(["rewind_to", "rewind_unmasked", "reset_optimizer_on_rewind"])
        if self.batches is None:
            self.batches = "mixed" if rule.mixed_batches else "monolingual"
        if self.batches not in ("monolingual", "mixed"):
            raise PathwaysError(f"pathways.batches: {self.batches!r} is not monolingual or mixed")
        if self.batches == "mixed" and not rule.mixed_batches:
            raise PathwaysError(f"pathways.batches: mode {mode} needs monolingual batches")
        if self.policy not in ("round_robin", "proportional", "temperature"):
            raise PathwaysError(f"pathways.policy: {self.policy!r} is not round_robin, proportional or temperature")
        if isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) or self.beta < 0:
            raise PathwaysError(f"pathways.beta: must be a number >= 0, got {self.beta!r}")
        if not isinstance(self.prunable, Mapping):
            raise PathwaysError(f"pathways.prunable: expected a mapping, got {self.prunable!r}")
        bad = [k for k in self.prunable if k not in ("kinds", "prefixes", "include", "exclude")]
        if bad:
            raise PathwaysError(f"pathways.prunable.{bad[0]}: unknown option (known: kinds, prefixes, include, exclude)")
        rule.check_config(self, given)

    def prunable_kwargs(self) -> dict[str, Any]:
        p = dict(self.prunable)
        return dict(
            kinds=tuple(p.get("kinds", ("linear",))),
            prefixes=tuple(p.get("prefixes", DEFAULT_PREFIXES)) if p.get("prefixes", DEFAULT_PREFIXES) else None,
            include=tuple(p.get("include", ())),
            exclude=tuple(p.get("exclude", ())),
        )


def _sparsity(key: str, value: Any) -> float:
    try:
        return check_sparsity(value, f"pathways.{key}")
    except ValueError as e:
        raise PathwaysError(str(e)) from None


def _positive(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PathwaysError(f"pathways.{key}: must be a positive integer, got {value!r}")


def check_language_code(lang: str, option: str) -> None:
    if not lang.replace("-", "").replace("_", "").isalnum() or lang in _RESERVED_LANGS:
        raise PathwaysError(f"{option}: {lang!r} is not a usable language code (letters, digits, '-', '_')")


def language_of(utt: str, utt2lang: Mapping[str, str] | None = None) -> str:
    """The language of an utterance: ``utt2lang`` if it lists it, else the prefix before ``_``."""
    if utt2lang:
        lang = utt2lang.get(utt)
        if lang is not None:
            return lang
    return utt.split("_", 1)[0]


# ---------------------------------------------------------------------------------------
# masks files
# ---------------------------------------------------------------------------------------
def load_masks_source(path: str | Path, option: str = "pathways.init_masks") -> PathwayMasks:
    """Masks from a masks file, an experiment dir (its ``masks.pt``) or a ``checkpoint.pth``."""
    p = Path(path)
    if p.is_dir():
        p = p / MASKS_FILE
    if not p.is_file():
        raise PathwaysError(f"{option}: no such file {p}")
    try:
        return PathwayMasks.load(p)
    except ValueError as e:
        if "not an espnet_pathways.masks file" not in str(e):
            raise PathwaysError(f"{option}: {e}") from None
        first: Exception = e
    except Exception as e:  # noqa: BLE001 - e.g. a pickle that weights_only refuses
        first = e
    try:
        obj = torch.load(p, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001
        raise PathwaysError(f"{option}: {p} is not a masks file or a checkpoint ({first})") from None
    state = None
    if isinstance(obj, dict) and isinstance(obj.get("optimizers"), list):
        for o in obj["optimizers"]:
            if isinstance(o, dict) and STATE_KEY in o:
                state = o[STATE_KEY]
    if state is None or not state.get("started"):
        raise PathwaysError(f"{option}: {p} holds no pathway masks (a checkpoint or model written without espnet-pathways?)")
    return masks_from_state(state)


def masks_from_state(state: Mapping[str, Any]) -> PathwayMasks:
    shapes = {n: tuple(s) for n, s in zip(state["names"], state["shapes"])}
    masks = PathwayMasks.from_state_tensors(state["masks"], shapes)
    masks.history = [dict(e) for e in state.get("history", [])]
    return masks


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_masks_atomic(masks: PathwayMasks, path: str | Path) -> None:
    """``PathwayMasks.save`` through a temporary file and a rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        masks.save(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide the masks from the experiment's other users
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ---------------------------------------------------------------------------------------
# controller
# ---------------------------------------------------------------------------------------
class PathwaysController:
    """Masks, step count and events of one run; its mode's rule (``rule``) decides the
    regions and the events (see :mod:`espnet_pathways.modes`).

    ``model``: the masked model (any ``nn.Module``; :class:`PathwayTransducerModel` calls
    :meth:`begin_batch` from its ``forward``).  ``languages``: this run's languages (the
    config's, or those of the training data).  ``init_masks``: loaded masks (required by
    ``pathways``/``dynamic_pathways``).  ``output_dir``: where ``masks.pt`` and θ₀ go
    (only when ``writer``, i.e. on DDP rank 0).
    """

    def __init__(
        self,
        model: nn.Module,
        config: PathwaysConfig,
        *,
        languages: Sequence[str],
        init_masks: PathwayMasks | None = None,
        output_dir: str | Path | None = None,
        writer: bool = True,
        utt2lang: Mapping[str, str] | None = None,
        seed: int = 0,
    ):
        self.model = model
        self.config = cfg = config
        self.mode = cfg.mode
        self.rule: ModeRule = cfg.rule(self)
        self.languages = list(languages)
        if not self.languages:
            raise PathwaysError("pathways.languages: no languages")
        for lang in self.languages:
            check_language_code(lang, "pathways.languages")
        if self.rule.monolingual and len(self.languages) != 1:
            raise PathwaysError(
                f"pathways.languages: mode {cfg.mode} trains one language; the data has "
                f"{', '.join(self.languages)} -- set pathways.languages"
            )
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.writer = writer
        self.seed = int(seed)  # the run's seed (--seed): rules that draw per step derive from it and the step
        self.utt2lang: dict[str, str] = dict(utt2lang or {})
        try:
            self.names = prunable_names(model, **cfg.prunable_kwargs())
        except ValueError as e:
            raise PathwaysError(f"pathways.prunable: {e}") from None
        if not self.names:
            raise PathwaysError("pathways.prunable: selects no parameter of the model")
        self.masker = InPlaceMasker(model, self.names, cache_positions=cfg.swap_positions == "cache")
        trainable = [p for p in self.masker.params.values() if p.requires_grad]
        self._first_param = trainable[0] if trainable else next(iter(self.masker.params.values()))
        self.device = next(iter(self.masker.params.values())).device
        self.init_masks = self._check_init_masks(init_masks) if init_masks is not None else None
        if self.rule.needs_init_masks and self.init_masks is None:
            raise PathwaysError(f"pathways.init_masks: mode {cfg.mode} needs masks")

        self.step = 0
        self.started = False
        self.masks: PathwayMasks | None = None
        self.version = 0
        self.schedules: dict[str, Any] = {}
        self.optimizer: torch.optim.Optimizer | None = None
        self.guard: RegionStep | PathwayGuard | None = None
        self._pending: list[tuple[Hashable, MaskSet | None]] = []
        self._full: dict[str, bool] = {}
        self._theta0: dict[str, torch.Tensor] | None = None
        self._handles: list = []
        self._events = 0
        self.rule.check_model()
        self._make_schedules()  # checks the schedule against the initial masks now
        if cfg.rewind and cfg.rewind_to:
            self._check_theta0(self._load_theta0())
        if hasattr(model, "pathways"):
            model.pathways = self

    # -- set-up -----------------------------------------------------------------------
    def _check_init_masks(self, masks: PathwayMasks) -> PathwayMasks:
        opt = f"pathways.init_masks {self.config.init_masks or ''}".rstrip()
        names = set(self.names)
        for n in masks.names:
            if n not in names:
                params = dict(self.model.named_parameters())
                why = "is not a parameter of the model" if n not in params else "is not prunable under pathways.prunable"
                raise PathwaysError(f"{opt}: tensor {n!r} {why}")
        try:
            masks.check_compatible(self.model, self.names)
        except ValueError as e:
            raise PathwaysError(f"{opt}: {e}") from None
        need = self.languages
        if self.rule.shared_mask and len(masks) == 1:
            only = masks[masks.languages[0]]
            chosen = {lang: only for lang in need}
        else:
            missing = [lang for lang in need if lang not in masks]
            if missing:
                raise PathwaysError(f"{opt}: no mask for language {missing[0]!r} (the file has {', '.join(masks.languages)})")
            chosen = {lang: masks[lang] for lang in need}
            if self.rule.shared_mask:
                first = chosen[need[0]]
                for lang in need[1:]:
                    if chosen[lang] != first:
                        raise PathwaysError(f"{opt}: mode {self.mode} needs one shared mask, but {lang!r} differs from {need[0]!r}")
                chosen = {lang: first for lang in need}
        # the model's parameter order and device
        out = {}
        cache: dict[int, MaskSet] = {}
        for lang, ms in chosen.items():
            if id(ms) not in cache:
                cache[id(ms)] = MaskSet({n: ms[n].to(self.device) for n in self.names})
            out[lang] = cache[id(ms)]
        return PathwayMasks(out, masks.history)

    def install(self, optimizer: torch.optim.Optimizer) -> None:
        """Hook into ``optimizer``: region + guard around each step, events after it, state in its state dict."""
        if self.optimizer is not None:
            raise RuntimeError("controller already installed")
        self.optimizer = optimizer
        # order matters: our pre-hook (may release the swap) before the guard's snapshot,
        # the guard's restore before our post-hook (events see the restored state); a
        # region-aware step (Adam, AdamW, SGD) needs neither snapshot nor restore
        self._handles.append(optimizer.register_step_pre_hook(self._pre_step))
        try:
            self.guard = step_guard(optimizer, self.model, self.config.region_step)
        except ValueError as e:
            raise PathwaysError(f"pathways.region_step: {e}") from None
        self._handles.append(optimizer.register_step_post_hook(self._post_step))
        self._handles.append(optimizer.register_state_dict_post_hook(self._opt_state_dict))
        self._handles.append(optimizer.register_load_state_dict_pre_hook(self._opt_load_state_dict))
        self.masker.install_grad_hooks()

    def remove(self) -> None:
        self.release()
        for h in self._handles:
            h.remove()
        self._handles = []
        if self.guard is not None:
            self.guard.remove()
        self.masker.remove_grad_hooks()

    # -- schedules --------------------------------------------------------------------
    def _schedule(self, initial: float):
        cfg = self.config
        s0 = cfg.initial_sparsity if cfg.initial_sparsity is not None else initial
        if s0 > cfg.final_sparsity:
            raise PathwaysError(
                f"pathways.init_masks: sparsity {s0:.4f} is above pathways.final_sparsity {cfg.final_sparsity}"
            )
        try:
            if cfg.schedule == "cubic":
                sch = CubicSchedule(cfg.final_sparsity, interval=cfg.prune_interval, num_rounds=cfg.num_rounds, initial_sparsity=s0)
            else:
                sch = FixedFractionSchedule(cfg.final_sparsity, fraction=cfg.fraction, interval=cfg.prune_interval, initial_sparsity=s0)
            if self.rule.does_rerank():
                return AdaptiveSchedule(sch, cfg.rerank_interval)
        except ValueError as e:
            raise PathwaysError(f"pathways: {e}") from None
        return sch

    def _make_schedules(self) -> None:
        if not self.rule.scheduled:
            return
        for lang in self.languages:
            init = 0.0
            if self.init_masks is not None:
                init = round(self.init_masks[lang].sparsity(), 12)
                # Masks pruned to s_f elsewhere (e.g. LTH-70% for Dynamic Pathways at 70%) keep
                # round((1 - s_f) n) per tensor and may sit above s_f by < one element per tensor.
                total = sum(p.numel() for p in self.masker.params.values())
                final = self.config.final_sparsity
                if final < init <= final + len(self.names) / max(total, 1):
                    init = final
            self.schedules[lang] = self._schedule(init)

    @property
    def last_event_step(self) -> int:
        """N·T: the last prune step over all languages (0 for modes without a schedule)."""
        if not self.schedules:
            return 0
        return max(getattr(s, "schedule", s).last_prune_step for s in self.schedules.values())

    def soft(self) -> bool:
        """True while adaptive/dynamic training regions extend beyond the masks."""
        return self.rule.soft and (self.config.rerank_after_final or self.step < self.last_event_step)

    # -- start ------------------------------------------------------------------------
    @torch.no_grad()
    def start(self) -> None:
        """Initial masks and weights; runs once, at the first batch (after ``--init_param``)."""
        if self.started:
            return
        self.masker.release()
        if self.config.rewind:
            self._snapshot_theta0()
        self.masks = self.rule.start()
        self.started = True
        self.masks.record(step=self.step, event="start", mode=self.mode, sparsity=self.masks.sparsity())
        self._masks_changed()
        self._check_ranks("start")
        log.info("pathways: %s started, sparsity %s", self.mode, fmt_sparsity(self.masks.sparsity()))

    def sparsity_at(self, lang: str, step: int) -> float:
        """Language ``lang``'s scheduled sparsity at step ``step``."""
        return self.schedules[lang].sparsity_at(step)

    @property
    def events(self) -> int:
        """How many events (prunes and re-ranks) have run."""
        return self._events

    def _snapshot_theta0(self) -> None:
        cfg = self.config
        if cfg.rewind_to:  # read from the file at each rewind (checked in __init__)
            return
        path = self.output_dir / THETA0_FILE if self.output_dir is not None else None
        self._theta0 = {n: p.detach().to("cpu", copy=True) for n, p in self.model.named_parameters()}
        if path is not None and self.writer:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
            torch.save(self._theta0, tmp)
            os.replace(tmp, path)

    def _check_theta0(self, theta0: Mapping[str, torch.Tensor]) -> None:
        params = dict(self.model.named_parameters())
        for n in params if self.config.rewind_unmasked else self.names:
            if n not in theta0 or tuple(theta0[n].shape) != tuple(params[n].shape):
                raise PathwaysError(f"pathways.rewind_to {self.config.rewind_to}: tensor {n!r} is missing or has another shape")

    def _load_theta0(self) -> dict[str, torch.Tensor]:
        if self.config.rewind_to:
            src, option = Path(self.config.rewind_to), "pathways.rewind_to"
        elif self._theta0 is not None:
            return self._theta0
        else:
            src, option = (self.output_dir or Path(".")) / THETA0_FILE, "resume"
        if not src.is_file():
            raise PathwaysError(f"{option}: no such file {src} (θ₀ for rewinding)")
        obj = torch.load(src, map_location="cpu", weights_only=False)
        if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
            obj = obj["model"]
        if self.config.rewind_to is None:
            self._theta0 = obj
        return obj

    # -- masks bookkeeping ------------------------------------------------------------
    def _masks_changed(self) -> None:
        self.masker.release()
        self.version += 1
        self._full = {}
        for lang in self.languages:
            ms = self.masks[lang]
            self._full[lang] = ms.kept() == ms.numel()
        self.masker.set_support(self.rule.support())

    def region(self, lang: str | None, training: bool) -> tuple[Hashable, MaskSet | None]:
        """(key, region) a batch of ``lang`` computes with (``None`` region: θ itself)."""
        if lang is None:  # mixed batch: modes with one shared mask only
            lang = self.languages[0]
        return self.rule.region(lang, training)

    def mask_is_full(self, lang: str) -> bool:
        """Language ``lang``'s mask keeps every weight (compute with θ itself)."""
        return self._full.get(lang, False)

    # -- batches ----------------------------------------------------------------------
    def batch_language(self, utt_ids: Sequence[str] | None) -> str | None:
        """The batch's language (``None``: mixed, allowed by ``lap`` only); bad batches raise."""
        if utt_ids is None:
            if self.rule.needs_batch_language:
                raise PathwaysError(f"forward: the batch has no utt_id; mode {self.mode} needs each batch's language")
            return None if len(self.languages) > 1 else self.languages[0]
        by_lang: dict[str, list[str]] = {}
        for u in utt_ids:
            by_lang.setdefault(language_of(u, self.utt2lang), []).append(u)
        unknown = [lang for lang in by_lang if lang not in self.languages]
        if unknown:
            lang = unknown[0]
            raise PathwaysError(
                f"utterance ids with no known language: {_few(by_lang[lang])} (language {lang!r}; "
                f"this run's languages: {', '.join(self.languages)})"
            )
        if len(by_lang) > 1:
            if self.config.batches == "mixed":  # checked: the mode allows mixed batches
                return None
            parts = "; ".join(f"{lang}: {_few(us)}" for lang, us in by_lang.items())
            raise PathwaysError(f"mixed-language batch ({parts}); mode {self.mode} needs monolingual batches")
        return next(iter(by_lang))

    def begin_batch(self, utt_ids: Sequence[str] | None, training: bool) -> str | None:
        """Check the batch, start if needed, swap its region in; returns its language."""
        backward = training and torch.is_grad_enabled()
        lang = self.batch_language(utt_ids)
        if not self.started:
            self.start()
        key, region = self.region(lang, training)
        self.masker.activate(key, region, grads=training)
        if backward:
            if self._first_param.grad is None:
                # gradients were cleared (zero_grad): a new accumulation cycle, even if the
                # last one ended without a step (non-finite gradient, AMP overflow)
                self._pending = []
            self._pending.append((key, region))
            # every gradient accumulated so far masked to this region: mask .grad in place after
            # accumulation (no copy); under DDP the reducer reads the gradient before that hook
            self.masker.grad_in_place = (self.config.grad_mask == "in_place" and not self._distributed()
                                         and all(k == key and r is region for k, r in self._pending))
        return lang

    @staticmethod
    def _distributed() -> bool:
        dist = torch.distributed
        return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    def release(self) -> bool:
        """Put the true weights back (before anything reads or writes them)."""
        return self.masker.release()

    # -- optimizer hooks --------------------------------------------------------------
    def _step_region(self) -> MaskSet | None:
        if not self._pending:
            return self.masker.grad_region
        keys = {k for k, _ in self._pending}
        if len(keys) == 1:
            return self._pending[0][1]
        if any(r is None for _, r in self._pending):
            return None
        regions = list({id(r): r for _, r in self._pending}.values())
        out = regions[0]
        for r in regions[1:]:
            out = out | r
        return out

    def _pre_step(self, optimizer, args, kwargs) -> None:
        region = self._step_region()
        if region is not self.masker.active_region:
            self.masker.release()  # a union region: step on the true weights
        self.guard.region = region

    def _post_step(self, optimizer, args, kwargs) -> None:
        self._pending = []
        self.guard.region = None
        if not self.started:  # a step without a forward through the model
            return
        self.step += 1
        self._run_events(self.step)

    def _opt_state_dict(self, optimizer, state_dict: dict) -> dict:
        state_dict[STATE_KEY] = self.state_dict()
        if self.started and self.writer and self.output_dir is not None:
            save_masks_atomic(self.masks, self.output_dir / MASKS_FILE)
        return state_dict

    def _opt_load_state_dict(self, optimizer, state_dict: dict) -> dict:
        state = state_dict.pop(STATE_KEY, None)
        if state is None:
            raise PathwaysError(
                "resume: the checkpoint has no pathway masks or step (written by stock ESPnet? "
                "start from it with --init_param instead of --resume)"
            )
        self.load_state_dict(state)
        return state_dict

    # -- events -----------------------------------------------------------------------
    def _run_events(self, t: int) -> None:
        event = self.rule.event_at(t)
        if event is None:
            return
        self.masker.release()
        self.rule.run_event(t, event)
        self._events += 1
        self._masks_changed()
        self._check_ranks(f"step {t}")

    def rewind(self, masks: MaskSet) -> None:
        """θ ← θ₀ ⊙ ``masks`` (``rewind_unmasked``: every parameter to θ₀); clear the optimizer state if configured."""
        theta0 = self._load_theta0()
        try:
            rewind_(self.model, theta0, masks, rewind_unmasked=self.config.rewind_unmasked)
        except ValueError as e:
            raise PathwaysError(f"pathways.rewind_to: {e}") from None
        if self.config.reset_optimizer_on_rewind and self.optimizer is not None:
            self.optimizer.state.clear()

    # -- state ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "mode": self.mode,
            "languages": list(self.languages),
            "step": self.step,
            "events": self._events,
            "started": self.started,
        }
        if self.started:
            d["names"] = list(self.names)
            d["shapes"] = [list(s) for s in self.masks.shapes.values()]
            d["masks"] = {k: v.cpu() for k, v in self.masks.to_state_tensors().items()}
            d["history"] = [dict(e) for e in self.masks.history]
        return d

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise PathwaysError("resume: the checkpoint's pathway state is not readable")
        if state["mode"] != self.mode:
            raise PathwaysError(f"resume: the checkpoint is from mode {state['mode']}, this run's pathways.mode is {self.mode}")
        if list(state["languages"]) != self.languages:
            raise PathwaysError(
                f"resume: the checkpoint's languages are {state['languages']}, this run's are {self.languages}"
            )
        self.masker.release()
        self.step = int(state["step"])
        self._events = int(state.get("events", 0))
        if not state["started"]:
            self.started = False
            return
        if list(state["names"]) != self.names:
            raise PathwaysError("resume: the checkpoint's masked tensors differ from pathways.prunable")
        masks = masks_from_state(state).to(self.device)
        if self.rule.shared_mask:
            shared = masks[self.languages[0]]
            masks = PathwayMasks({lang: shared for lang in self.languages}, masks.history)
        self.masks = masks
        self.started = True
        self._masks_changed()
        self._check_ranks("resume")

    def _check_ranks(self, where: str) -> None:
        """DDP: every rank must hold the same masks at the same step (one all_gather per event)."""
        if not self._distributed():
            return
        dist = torch.distributed
        st = self.masks.to_state_tensors()
        mine = torch.tensor([self.step] + [int(st[f"digest_{lang}"]) for lang in self.languages],
                            dtype=torch.int64, device=self.device)
        every = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
        dist.all_gather(every, mine)
        bad = [r for r, x in enumerate(every) if not torch.equal(x, mine)]
        if bad:
            raise RuntimeError(f"pathways: at {where}, the masks or step of rank {bad[0]} differ from rank {dist.get_rank()}'s")
        if where == "start":
            log.info("pathways: masks identical on %d ranks", dist.get_world_size())

    def save_masks(self, path: str | Path) -> None:
        if not self.started:
            raise PathwaysError("no masks yet: the run has not started")
        save_masks_atomic(self.masks, path)


def _few(items: Sequence[str], k: int = 3) -> str:
    return ", ".join(items[:k]) + (f", ... ({len(items)} in all)" if len(items) > k else "")

