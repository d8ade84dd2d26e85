"""``dual_mode``: dual-mode self-pruning -- a sparse streaming model inside a dense full-context one.

One supernet θ holds two models: the **dense full-context** model (all of θ, no chunk
mask) and the **sparse streaming** model (θ ⊙ m, chunked attention).  A batch is computed
in one or both modes (``pathways.dual_mode.policy``):

* ``both`` (default) -- every batch runs the full-context pass with θ and the streaming
  pass with θ ⊙ m; loss = w_d·L_full_dense + w_s·L_stream_sparse (``full_weight``,
  ``stream_weight``).  Optional in-place distillation (``distill_weight`` > 0): the
  streaming pass also learns the full-context pass's output distribution over the
  transducer lattice (KL, teacher detached).
* ``alternate`` -- optimizer step t runs the streaming pass when t is even, the
  full-context pass when t is odd (every micro-batch of a step the same pass).
* ``sample`` -- step t runs the streaming pass with probability ``stream_prob``, drawn
  from ``random.Random(f"{seed}:{t}")``: the same on every DDP rank and on resume.

The streaming pass draws its chunk uniformly from 1..``max_chunk`` encoder frames (default
and upper bound: the encoder's ``short_chunk_size``) with the encoder's
``num_left_chunks``, never full context (ESPnet's own dynamic-chunk draw is full context
about a quarter of the time).  The sparse pass computes with θ ⊙ m *functionally*
(``torch.func.functional_call``): θ is never zeroed, so weights outside m receive only
the full-context pass's gradient, and one backward gives m ⊙ g_stream + g_full.
Validation runs both passes on every batch, the streaming one with the fixed chunk
``valid_chunk`` (default ``max_chunk``), and reports ``loss_stream_sparse`` and
``loss_full_dense``.

Self-pruning: m is found on the supernet's own weights -- top-|θ| at s(t) over the whole
tensor (or globally, ``scope``) at each prune event of the schedule, re-ranked at m's
kept count every ``rerank_interval`` steps in between, frozen from the last prune event
on unless ``rerank_after_final``.  θ is never multiplied by m (the dense model needs every
weight).  One mask for every language (``languages`` defaults to all of the data's, with
mixed batches as in stock ESPnet training).

Which of this the paper specifies: the supernet with a sparse streaming and a dense
full-context model, joint training, and (from dual-mode ASR) in-place distillation.  The
policy, loss weights, chunk draw, pruning criterion and schedule, re-ranking and freezing
are our choices, each an option.
"""

from __future__ import annotations

import logging
import numbers
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from espnet_pathways.modes.base import ModeRule, Pass, PathwaysError, Region, changed, fmt_sparsity, options_from, register
from espnet_pathways.pruning import magnitude_prune, rerank

log = logging.getLogger(__name__)

POLICIES = ("both", "alternate", "sample")
STREAM, FULL = "stream_sparse", "full_dense"


@dataclass
class DualOptions:
    """``pathways.dual_mode``: how each batch is computed (see the module docstring)."""

    policy: str = "both"
    stream_weight: float = 1.0
    full_weight: float = 1.0
    stream_prob: float = 0.5
    max_chunk: int | None = None
    valid_chunk: int | None = None
    distill_weight: float = 0.0

    def check(self, key: str = "pathways.dual_mode") -> None:
        if self.policy not in POLICIES:
            raise PathwaysError(f"{key}.policy: {self.policy!r} is not one of {', '.join(POLICIES)}")
        for k in ("stream_weight", "full_weight", "distill_weight"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v >= 0:
                raise PathwaysError(f"{key}.{k}: must be a number >= 0, got {v!r}")
        if self.stream_weight == 0 and self.full_weight == 0:
            raise PathwaysError(f"{key}.stream_weight, full_weight: both are zero (nothing would train)")
        p = self.stream_prob
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
            raise PathwaysError(f"{key}.stream_prob: must be in [0, 1], got {p!r}")
        for k in ("max_chunk", "valid_chunk"):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise PathwaysError(f"{key}.{k}: must be a positive integer (encoder frames), got {v!r}")
        if self.distill_weight > 0 and self.policy != "both":
            raise PathwaysError(f"{key}.distill_weight: distillation needs both passes on a batch (policy both), not {self.policy}")


@register
class DualMode(ModeRule):
    name = "dual_mode"
    shared_mask = True
    mixed_batches = True
    reranks = True
    zeroes_pruned = False
    rewind = "never"

    @classmethod
    def parse_options(cls, options: Mapping[str, Any] | None) -> DualOptions:
        opts = options_from(cls.name, DualOptions, options)
        opts.check(f"pathways.{cls.name}")
        return opts

    @property
    def options(self) -> DualOptions:
        return self.ctl.config.options

    def check_model(self) -> None:
        enc = getattr(self.ctl.model, "encoder", None)
        if enc is None or not hasattr(enc, "dynamic_chunk_training"):
            raise PathwaysError(f"pathways.mode: {self.name} needs an ESPnet transducer encoder (espnet2.asr_transducer)")
        if not enc.dynamic_chunk_training:
            raise PathwaysError(
                f"pathways.mode: {self.name} needs encoder_conf.main_conf.dynamic_chunk_training: true "
                "(it builds the causal convolutions the streaming pass needs)"
            )
        opts, limit = self.options, int(enc.short_chunk_size)
        for k in ("max_chunk", "valid_chunk"):
            v = getattr(opts, k)
            if v is not None and v > limit:
                raise PathwaysError(
                    f"pathways.{self.name}.{k}: {v} is larger than the encoder's short_chunk_size {limit} "
                    "(encoder_conf.main_conf), the largest chunk it was configured for"
                )
        self.max_chunk = opts.max_chunk or limit
        self.valid_chunk = opts.valid_chunk or self.max_chunk

    # -- regions: θ itself for every batch; the sparse pass masks functionally ----------
    def region(self, lang: str, training: bool) -> Region:
        return ("dense", self.ctl.version), None

    def support(self) -> None:
        return None

    def passes(self, training: bool) -> list[Pass]:
        opts = self.options
        if not training:
            return [Pass(FULL, opts.full_weight, False, None), Pass(STREAM, opts.stream_weight, True, self.valid_chunk)]
        chunk = int(torch.randint(1, self.max_chunk + 1, (1,)))
        stream = Pass(STREAM, opts.stream_weight, True, chunk)
        full = Pass(FULL, opts.full_weight, False, None)
        t = self.ctl.step  # the optimizer step this batch belongs to (0-based)
        if opts.policy == "alternate":
            return [stream if t % 2 == 0 else full]
        if opts.policy == "sample":
            return [stream if random.Random(f"{self.ctl.seed}:{t}").random() < opts.stream_prob else full]
        if opts.distill_weight > 0:
            stream = Pass(STREAM, opts.stream_weight, True, chunk, distill_from=FULL, distill_weight=opts.distill_weight)
        return [full, stream]

    # -- events: self-pruning on θ, which stays dense ------------------------------------
    @torch.no_grad()
    def run_event(self, t: int, event: str) -> None:
        ctl = self.ctl
        cfg, lang0 = ctl.config, ctl.languages[0]
        old = ctl.masks[lang0]
        if event == "prune":
            new = magnitude_prune(ctl.model, ctl.sparsity_at(lang0, t), names=ctl.names, scope=cfg.scope).masks
        else:
            new = rerank(ctl.model, old, scope=cfg.scope).masks
        for lang in ctl.languages:
            ctl.masks[lang] = new
        ctl.masks.record(step=t, event=event, language=",".join(ctl.languages), sparsity=new.sparsity(),
                         changed=changed(old, new), rule=f"magnitude/{cfg.scope}/self")
        if event == "prune":
            log.info("pathways: step %d dual_mode prune, sparsity %s (θ stays dense)", t, fmt_sparsity(ctl.masks.sparsity()))


@register
class DualPathways(DualMode):
    """``dual_pathways``: per-language sparse streaming pathways under one dense full-context model.

    An option no paper has.  The dense full-context pass is ``dual_mode``'s; the streaming pass
    of a batch of language l computes with θ ⊙ m_l, m_l fixed from ``init_masks`` (e.g. merged
    per-language IMP/LTH masks, as ASR Pathways), monolingual batches.  No self-pruning: ranking
    the shared θ by magnitude would give every language the same mask.  Options: ``pathways.dual_pathways``
    (those of ``dual_mode``).
    """

    name = "dual_pathways"
    shared_mask = False
    mixed_batches = False
    scheduled = False
    reranks = False
    needs_init_masks = True
    needs_batch_language = True
