"""``imp``, ``lth`` and ``lap``: one mask, pruned on a schedule inside itself.

* ``imp`` -- one language (``languages: [l]``; batches of other languages are an error).
  Start: m = ``init_masks``[l] or top-|θ| at s_0; θ ← θ ⊙ m.  Region r = m.  At each prune
  event: m ← top-|θ| at s(t) *inside m* (a pruned weight never returns); θ ← θ ⊙ m;
  training continues from the trained weights.
* ``lth`` -- ``imp`` plus rewinding: after each prune θ ← θ₀ ⊙ m for every parameter
  (``rewind_unmasked: false``: only the masked tensors), θ₀ = ``rewind_to`` (a state-dict
  file) or the weights at the first step (after ``--init_param``; kept in
  ``<output_dir>/pathways_theta0.pth`` for ``--resume``); the optimizer state is cleared
  (``reset_optimizer_on_rewind``).
* ``lap`` -- ``imp`` on all ``languages`` with one mask shared by every language;
  batches may mix languages (``batches: mixed``, ESPnet's own sampler) or not
  (``batches: monolingual``).  Also takes ``rewind``.
"""

from __future__ import annotations

import logging

import torch

from espnet_pathways.modes.base import ModeRule, register
from espnet_pathways.pruning import magnitude_prune

log = logging.getLogger(__name__)


@register
class Imp(ModeRule):
    name = "imp"
    monolingual = True
    shared_mask = True

    @torch.no_grad()
    def run_event(self, t: int, event: str) -> None:
        ctl = self.ctl
        cfg, lang0 = ctl.config, ctl.languages[0]
        s = ctl.sparsity_at(lang0, t)
        res = magnitude_prune(ctl.model, s, names=ctl.names, scope=cfg.scope, candidates=ctl.masks[lang0])
        new = res.masks
        if cfg.rewind:
            ctl.rewind(new)
        else:
            new.apply_(ctl.model)
        for lang in ctl.languages:
            ctl.masks[lang] = new
        ctl.masks.record(
            step=t, event="prune", language=",".join(ctl.languages), sparsity=new.sparsity(), target=s,
            rule=f"magnitude/{cfg.scope}", rewind=bool(cfg.rewind), shortfall=len(res.shortfall),
        )
        log.info("pathways: step %d %s prune to %.4f (achieved %.4f)%s", t, self.name, s, new.sparsity(),
                 ", rewound to θ₀" if cfg.rewind else "")


@register
class Lth(Imp):
    name = "lth"
    rewind = "always"


@register
class Lap(Imp):
    name = "lap"
    monolingual = False
    mixed_batches = True
