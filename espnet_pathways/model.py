"""The masked transducer: ESPnet's ``ESPnetASRTransducerModel`` with language pathways.

:class:`PathwayTransducerModel` has exactly the stock model's modules, parameters and
state-dict keys (a dense ESPnet checkpoint loads as its initialisation, and its
checkpoints load in stock ESPnet).  Without a controller (``model.pathways is None``) it
*is* the stock model.  With one (:class:`~espnet_pathways.controller.PathwaysController`),
``forward`` reads the batch's language from ``utt_id`` (``utt2lang``, else the prefix
before the first ``_``), lets the controller check it (unknown language, or a mixed batch
where monolingual batches are required: ``ValueError`` naming the utterances) and swap
the language's region r_l into the weights in place
(:class:`~espnet_pathways.swap.InPlaceMasker`: no second copy of the weights), then runs
the stock forward, so the batch computes exactly what a dense model with θ ⊙ r_l
computes.  The stats gain ``loss_<lang>`` (the batch's loss under its language's key;
ESPnet's reporter fills a key missing from a batch with NaN of weight 0 and averages over
the finite values, so ``loss_fr`` is the mean over the French batches); not for the
mixed training batches of ``lap`` (``batches: mixed``), whose validation batches are
monolingual and do report it.

The swap is undone before anything reads or writes the weights: a state-dict pre-hook
(checkpoints and the epoch files ESPnet averages), a load-state-dict
pre-hook (``--resume``, ``--init_param``), and :meth:`release` (export, decoding).

Multi-pass modes (the controller's rule returns :class:`~espnet_pathways.modes.Pass` es,
e.g. ``dual_mode``): the batch's features (frontend, SpecAugment, normalisation) are
computed once, then each pass runs the stock forward with its encoder chunk (explicit:
``None`` = full context, else chunked attention with the encoder's ``num_left_chunks``;
ESPnet's own random draw is bypassed) and its weights (θ, or θ ⊙ m of the batch's language
through ``torch.func.functional_call``, which leaves θ untouched so that one backward
gives m ⊙ g_sparse + g_dense).  loss = Σ weight·loss_pass (+ distillation); the stats
gain ``loss_<pass>`` and each pass's transducer loss / CER / WER under ``<key>_<pass>``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch
from espnet2.asr_transducer.espnet_transducer_model import ESPnetASRTransducerModel, autocast
from espnet2.asr_transducer.utils import TooShortUttError, check_short_utt, make_chunk_mask, make_source_mask
from espnet2.torch_utils.device_funcs import force_gatherable
from torch import nn

from espnet_pathways.controller import language_of

_NO_PASS = object()


class PathwaysHooks:
    """What any model with a pathways controller needs: the controller slot, the release hooks,
    the start of a batch (its language's region swapped in) and the per-language loss stat."""

    def _init_pathways(self) -> None:
        self.pathways = None  # PathwaysController (a plain attribute), set by the controller
        self.register_state_dict_pre_hook(_release_before_state_dict)
        self.register_load_state_dict_pre_hook(_release_before_load)

    def release(self) -> bool:
        """Restore the true weights θ (undo any swapped-in region); True if one was active."""
        return self.pathways.release() if self.pathways is not None else False

    def begin_pathways_batch(self, kwargs: dict) -> str | None:
        """Check the batch and swap its language's region in; its language (None: none or mixed)."""
        if self.pathways is None:
            return None
        return self.pathways.begin_batch(kwargs.get("utt_id"), self.training)

    def language_stats(self, stats: dict, lang: str | None) -> None:
        """``loss_<lang>``, only where every batch is monolingual: under DDP all ranks must register
        the same keys (ESPnet all-reduces each), which the language sampler guarantees."""
        ctl = self.pathways
        if ctl is not None and lang is not None and (ctl.config.batches == "monolingual" or not self.training):
            stats[f"loss_{lang}"] = stats["loss"]


class PathwayTransducerModel(PathwaysHooks, ESPnetASRTransducerModel):
    """Stock ESPnet transducer + per-language regions computed in place (see module doc)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._init_pathways()

    @classmethod
    def from_stock(cls, model: ESPnetASRTransducerModel) -> PathwayTransducerModel:
        """Adopt a stock model in place (same modules and parameters; nothing is copied).

        Used by the task so that a run builds, and initialises with the same random
        numbers, exactly the model stock ESPnet builds from the same config.
        """
        if not isinstance(model, ESPnetASRTransducerModel):
            raise TypeError(f"expected an ESPnetASRTransducerModel, got {type(model).__name__}")
        if not isinstance(model, cls):
            model.__class__ = cls
            model._init_pathways()
        return model

    def _init_pathways(self) -> None:
        super()._init_pathways()
        self._pass_chunk: Any = _NO_PASS  # inside a multi-pass forward: the pass's encoder chunk
        self._pass_feats: tuple[torch.Tensor, torch.Tensor] | None = None
        self._pass_feats_lens: torch.Tensor | None = None
        self._sparse_cache: tuple[Any, dict[str, torch.Tensor]] | None = None

    def forward(self, speech, speech_lengths, text, text_lengths, **kwargs):
        cond = getattr(self, "lang_adapt", None)
        if cond is not None and kwargs.get("utt_id") is not None:
            with cond.rows([language_of(u, cond.utt2lang) for u in kwargs["utt_id"]]):
                return self._forward(speech, speech_lengths, text, text_lengths, **kwargs)
        return self._forward(speech, speech_lengths, text, text_lengths, **kwargs)

    def _forward(self, speech, speech_lengths, text, text_lengths, **kwargs):
        ctl = self.pathways
        if ctl is None:
            return super().forward(speech, speech_lengths, text, text_lengths, **kwargs)
        lang = self.begin_pathways_batch(kwargs)
        passes = ctl.rule.passes(self.training)
        if passes:
            loss, stats, weight = self._multi_pass(passes, lang, speech, speech_lengths, text, text_lengths, **kwargs)
        else:
            loss, stats, weight = super().forward(speech, speech_lengths, text, text_lengths, **kwargs)
        self.language_stats(stats, lang)
        return loss, stats, weight


    # -- multi-pass modes ---------------------------------------------------------------
    def _multi_pass(self, passes, lang, speech, speech_lengths, text, text_lengths, **kwargs):
        total: torch.Tensor | int = 0
        stats: dict[str, Any] = {}
        joint: dict[str, torch.Tensor] = {}
        want_joint = {p.distill_from for p in passes if p.distill_from and p.distill_weight > 0}
        lens = None
        try:
            for p in passes:
                keep = want_joint | ({p.name} if p.distill_from and p.distill_weight > 0 else set())
                with self._pass(p.chunk), _capture_joint(self.joint_network, p.name in keep) as cap:
                    if p.sparse:
                        call = _StockForward(self)
                        weights = {f"model.{n}": w for n, w in self._sparse_weights(lang).items()}
                        loss, st, _ = torch.func.functional_call(call, weights, (speech, speech_lengths, text, text_lengths), kwargs)
                    else:
                        loss, st, _ = ESPnetASRTransducerModel.forward(self, speech, speech_lengths, text, text_lengths, **kwargs)
                    lens = self._pass_feats_lens
                if cap:
                    joint[p.name] = cap[0]
                total = total + p.weight * loss
                stats[f"loss_{p.name}"] = loss.detach()
                for k in ("loss_transducer", "loss_aux_ctc", "loss_aux_lm", "cer_transducer", "wer_transducer"):
                    if st.get(k) is not None:
                        stats[f"{k}_{p.name}"] = st[k]
                if p.distill_from and p.distill_weight > 0 and p.distill_from in joint:
                    kl = lattice_kl(joint[p.distill_from].detach(), joint[p.name], lens, text_lengths)
                    total = total + p.distill_weight * kl
                    stats[f"loss_distill_{p.name}"] = kl.detach()
        finally:
            self._pass_feats = None
            self._pass_feats_lens = None
        stats = {"loss": total.detach(), **stats}
        return force_gatherable((total, stats, speech.shape[0]), total.device)

    def _sparse_weights(self, lang: str | None) -> dict[str, torch.Tensor]:
        """θ ⊙ m for the masked tensors of ``lang``'s mask (a graph from θ: gradients flow to θ)."""
        ctl = self.pathways
        lang = lang if lang is not None else ctl.languages[0]
        key = (ctl.version, lang)
        if self._sparse_cache is None or self._sparse_cache[0] != key:
            ms = ctl.masks[lang]
            self._sparse_cache = (key, {n: ms[n] for n in ctl.names})
        params = dict(self.named_parameters())
        return {n: params[n] * m for n, m in self._sparse_cache[1].items()}

    @contextmanager
    def _pass(self, chunk):
        self._pass_chunk = chunk
        try:
            yield
        finally:
            self._pass_chunk = _NO_PASS

    def encode(self, speech: torch.Tensor, speech_lengths: torch.Tensor):
        if self._pass_chunk is _NO_PASS:
            return super().encode(speech, speech_lengths)
        if self._pass_feats is None:  # the first pass of the batch: features once for all passes
            self._pass_feats = self.features(speech, speech_lengths)
        feats, feats_lengths = self._pass_feats
        out, out_lens = encoder_forward(self.encoder, feats, feats_lengths, self._pass_chunk)
        self._pass_feats_lens = out_lens
        return out, out_lens

    def features(self, speech: torch.Tensor, speech_lengths: torch.Tensor):
        return features(self, speech, speech_lengths)


class _StockForward(nn.Module):
    """Calls the stock forward of ``model``; ``functional_call`` on it overrides ``model.<param>``."""

    def __init__(self, model: ESPnetASRTransducerModel):
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        return ESPnetASRTransducerModel.forward(self.model, *args, **kwargs)


def features(model: ESPnetASRTransducerModel, speech: torch.Tensor, speech_lengths: torch.Tensor):
    """Steps 1-3 of the stock ``encode`` of any transducer model: frontend, SpecAugment (training), normalisation."""
    with autocast(False):
        feats, feats_lengths = model._extract_feats(speech, speech_lengths)
        if model.specaug is not None and model.training:
            feats, feats_lengths = model.specaug(feats, feats_lengths)
        if model.normalize is not None:
            feats, feats_lengths = model.normalize(feats, feats_lengths)
    return feats, feats_lengths


def encoder_forward(encoder, x: torch.Tensor, x_len: torch.Tensor, chunk: int | None):
    """``Encoder.forward`` of ESPnet's transducer encoder with an explicit attention chunk.

    ``chunk=None``: full context (bit-equal to stock ``forward`` with dynamic chunk training
    off); else chunks of ``chunk`` frames seeing ``encoder.num_left_chunks`` chunks back.
    """
    short, limit = check_short_utt(encoder.embed.subsampling_factor, x.size(1))
    if short:
        raise TooShortUttError(
            f"has {x.size(1)} frames and is too short for subsampling (it needs more than {limit} frames)",
            x.size(1), limit,
        )
    mask = make_source_mask(x_len)
    x, mask = encoder.embed(x, mask)
    pos_enc = encoder.pos_enc(x)
    chunk_mask = None
    if chunk is not None:
        chunk_mask = make_chunk_mask(x.size(1), chunk, num_left_chunks=encoder.num_left_chunks, device=x.device)
    x = encoder.encoders(x, pos_enc, mask, chunk_mask=chunk_mask)
    return x, mask.eq(0).sum(1)


@contextmanager
def _capture_joint(joint_network: nn.Module, on: bool):
    """Collect the joint network's lattice outputs (B, T, U+1, V) during a pass (when ``on``)."""
    out: list[torch.Tensor] = []
    if not on:
        yield out
        return

    def hook(module, args, output):
        if output.dim() == 4 and not out:
            out.append(output)

    h = joint_network.register_forward_hook(hook)
    try:
        yield out
    finally:
        h.remove()


def lattice_kl(teacher: torch.Tensor, student: torch.Tensor, t_len: torch.Tensor, u_len: torch.Tensor) -> torch.Tensor:
    """Mean over the valid lattice nodes (t < T_b, u <= U_b) of KL(softmax(teacher) ‖ softmax(student))."""
    logp_t = teacher.float().log_softmax(-1)
    logp_s = student.float().log_softmax(-1)
    kl = (logp_t.exp() * (logp_t - logp_s)).sum(-1)  # (B, T, U+1)
    b, t, u = kl.shape
    valid = (torch.arange(t, device=kl.device)[None, :, None] < t_len.to(kl.device)[:, None, None]) & (
        torch.arange(u, device=kl.device)[None, None, :] <= u_len.to(kl.device)[:, None, None]
    )
    return (kl * valid).sum() / valid.sum().clamp(min=1)


def _release_before_state_dict(module, prefix, keep_vars) -> None:
    module.release()


def _release_before_load(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors) -> None:
    module.release()
