"""``pathways`` (ASR Pathways): fixed per-language masks, no events.

Masks m_l for every language from ``init_masks`` (e.g. merged per-language ``imp``/``lth``
runs).  Start: θ ← θ ⊙ ∪_l m_l.  A batch of l: r_l = m_l.  Weights in several masks
receive updates from each of those languages.
"""

from __future__ import annotations

from espnet_pathways.modes.base import ModeRule, register


@register
class Pathways(ModeRule):
    name = "pathways"
    scheduled = False
    needs_init_masks = True
    needs_batch_language = True
    rewind = "never"
