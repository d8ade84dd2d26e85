"""``adaptive``: one language, soft pruning with re-ranking (adaptive masking).

Start: m = ``init_masks``[l] or top-|θ| at s_0; θ ← θ ⊙ m.  Training region: everything
(pruned weights are zero but keep training and can grow); validation uses θ ⊙ m.  At each
prune event t = kT: m ← top-|θ| at s(t) over the whole tensor, θ ← θ ⊙ m (with
``rewind: true``, θ ← θ₀ ⊙ m: adaptive LTH).  Every n = ``rerank_interval`` steps in
between (t % n = 0, not a prune step, t < N·T): m ← top-|θ| at m's current kept count over
the whole tensor, θ ← θ ⊙ m.  From t = N·T on the mask is fixed and r = m (fine-tuning at
the target), unless ``rerank_after_final: true`` (soft pruning and re-ranking go on).
Requires n < T.
"""

from __future__ import annotations

import logging

import torch

from espnet_pathways.modes.base import ModeRule, Region, changed, fmt_sparsity, register
from espnet_pathways.pruning import magnitude_prune, rerank

log = logging.getLogger(__name__)


@register
class Adaptive(ModeRule):
    name = "adaptive"
    monolingual = True
    soft = True

    def soft_region(self, lang: str) -> Region:
        return ("dense", self.ctl.version), None

    @torch.no_grad()
    def run_event(self, t: int, event: str) -> None:
        ctl = self.ctl
        cfg, model, lang = ctl.config, ctl.model, ctl.languages[0]
        old = ctl.masks[lang]
        if event == "prune":
            new = magnitude_prune(model, ctl.sparsity_at(lang, t), names=ctl.names, scope=cfg.scope).masks
        else:
            new = rerank(model, old, scope=cfg.scope).masks
        if event == "prune" and cfg.rewind:
            ctl.rewind(new)
        else:
            new.apply_(model)
        ctl.masks[lang] = new
        ctl.masks.record(step=t, event=event, language=lang, sparsity=new.sparsity(),
                         changed=changed(old, new), rule=f"magnitude/{cfg.scope}")
        if event == "prune":
            log.info("pathways: step %d %s prune, sparsity %s", t, self.name, fmt_sparsity(ctl.masks.sparsity()))
