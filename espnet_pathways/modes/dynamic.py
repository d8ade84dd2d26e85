"""``dynamic_pathways`` (Dynamic ASR Pathways): per-language masks that adapt together.

All ``languages``, masks m_z from ``init_masks`` (LAP, LTH or IMP masks at a lower
sparsity), each language's schedule starting at its mask's sparsity.  Start: θ ← θ ⊙
∪_l m_l (the free pool starts at zero).  A batch of z trains r_z = c_z = m_z ∪ f_z,
f_z = ¬ ∪_{l≠z} m_l (weights no other language uses: free-pool weights grow from zero,
possibly for several languages until the next event).  Every n steps (not a prune step,
t < N·T): for each language z in turn -- the order rotates by one language per event so
that no language always chooses first -- m_z ← top-|θ| inside c_z (computed from the masks
as updated so far in this event) at m_z's kept count.  Every T steps: the same, with
top-|θ| inside c_z at s_z(t).  After every event: θ ← θ ⊙ ∪_l m_l (soft: the free pool
goes back to zero and stays trainable).  Because c_z excludes every weight another
language holds and m_z is re-ranked before the next language looks, no re-rank takes a
weight that only other languages use, and a weight freed by one language can be claimed
by a later one in the same event.  From N·T on the masks are fixed and r_z = m_z (ASR
Pathways fine-tuning), unless ``rerank_after_final``.

``pathways.dynamic_pathways.free_pool`` (our option; the poster zeroes pruned weights):
``zero`` (default) as above; ``keep``: weights no language holds keep their values across
the re-ranks and prune events while training is soft (they go on training in every
candidate region that contains them, so a weight can grow over many intervals, not only
over the n steps since the last event, and win a later re-rank), and the free pool goes
to zero once, at the event after which the masks are fixed (N·T; never with
``rerank_after_final``, where validation and export still use θ ⊙ m_l).  Measured reason
(results/table2_cpu_v1): with ``zero`` a weight grows ≲ lr per step from zero, ~0.004 in
n = 9 Adam steps at 4e-4 against ~0.046 for the smallest kept weight, so re-ranks almost
never admit one and the masks do not adapt.  Measured with ``keep`` (results/table2_cpu_v1/keep,
Dynamic from LTH-50): ~80x more weights swapped in, still removed by the next prunes, and a
worse model (+6.9 CER points, 3 seeds): batches train through the kept pool, which the freeze at N·T takes away.

Why these details (the poster is terse): the free pool is zeroed after every event, not
only every T steps, so that no language ever computes with a value that another language
left in a weight nobody holds; the language order rotates so that no language always
claims freed weights first; the masks freeze at N·T so that the last epochs (the ones
n-best averaging picks) and the export share one mask.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from espnet_pathways.masks import MaskSet
from espnet_pathways.modes.base import ModeRule, PathwaysError, Region, changed, fmt_sparsity, options_from, register
from espnet_pathways.pruning import Magnitudes, magnitude_prune, rerank

log = logging.getLogger(__name__)

FREE_POOL = ("zero", "keep")


@dataclass
class DynamicOptions:
    """``pathways.dynamic_pathways``: what happens to weights no language holds (module docstring)."""

    free_pool: str = "zero"


@register
class DynamicPathways(ModeRule):
    name = "dynamic_pathways"
    soft = True
    needs_init_masks = True
    needs_batch_language = True
    rewind = "never"

    def __init__(self, ctl):
        super().__init__(ctl)
        self._cand: tuple[tuple, MaskSet] | None = None  # the last candidates region, keyed by mask version

    @classmethod
    def parse_options(cls, options: Mapping[str, Any] | None) -> DynamicOptions:
        opts = options_from(cls.name, DynamicOptions, options)
        if opts.free_pool not in FREE_POOL:
            raise PathwaysError(f"pathways.{cls.name}.free_pool: {opts.free_pool!r} is not one of {', '.join(FREE_POOL)}")
        return opts

    @property
    def free_pool(self) -> str:
        return (self.ctl.config.options or DynamicOptions()).free_pool

    def soft_region(self, lang: str) -> Region:
        key = ("candidates", lang, self.ctl.version)
        if self._cand is None or self._cand[0] != key:
            self._cand = (key, self.ctl.masks.candidates(lang))
        return self._cand

    @torch.no_grad()
    def run_event(self, t: int, event: str) -> None:
        ctl = self.ctl
        cfg, model = ctl.config, ctl.model
        self._cand = None
        k = ctl.events % len(ctl.languages)
        holders = ctl.masks.holders()  # one count of the languages holding each weight, kept current below
        mags = Magnitudes(model, ctl.names)  # θ does not change within the event: |θ| ranked once
        for lang in ctl.languages[k:] + ctl.languages[:k]:
            old = ctl.masks[lang]
            cand = ctl.masks.candidates(lang, holders)
            if event == "prune":
                new = magnitude_prune(model, ctl.sparsity_at(lang, t), names=ctl.names, scope=cfg.scope,
                                      candidates=cand, magnitudes=mags).masks
            else:
                new = rerank(model, old, candidates=cand, scope=cfg.scope, magnitudes=mags).masks
            ctl.masks[lang] = new
            holders.replace(old, new)
            ctl.masks.record(step=t, event=event, language=lang, sparsity=new.sparsity(),
                             changed=changed(old, new), rule=f"magnitude/{cfg.scope}/candidates")
        if self.free_pool == "zero" or not ctl.soft():  # keep: zeroed once, when the masks become fixed
            holders.union().apply_(model)  # the free pool back to zero
        if event == "prune":
            log.info("pathways: step %d %s prune, sparsity %s", t, self.name, fmt_sparsity(ctl.masks.sparsity()))
