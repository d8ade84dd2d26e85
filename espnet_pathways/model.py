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
"""

from __future__ import annotations

from typing import Any

from espnet2.asr_transducer.espnet_transducer_model import ESPnetASRTransducerModel


class PathwayTransducerModel(ESPnetASRTransducerModel):
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
        self.pathways = None  # PathwaysController (a plain attribute), set by the controller
        self.register_state_dict_pre_hook(_release_before_state_dict)
        self.register_load_state_dict_pre_hook(_release_before_load)

    def release(self) -> bool:
        """Restore the true weights θ (undo any swapped-in region); True if one was active."""
        return self.pathways.release() if self.pathways is not None else False

    def forward(self, speech, speech_lengths, text, text_lengths, **kwargs):
        ctl = self.pathways
        if ctl is None:
            return super().forward(speech, speech_lengths, text, text_lengths, **kwargs)
        lang = ctl.begin_batch(kwargs.get("utt_id"), self.training)
        loss, stats, weight = super().forward(speech, speech_lengths, text, text_lengths, **kwargs)
        # Only where every batch is monolingual: under DDP all ranks must register the same
        # keys (ESPnet all-reduces each), which the language sampler guarantees.
        if lang is not None and (ctl.config.batches == "monolingual" or not self.training):
            stats[f"loss_{lang}"] = stats["loss"]
        return loss, stats, weight


def _release_before_state_dict(module, prefix, keep_vars) -> None:
    module.release()


def _release_before_load(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors) -> None:
    module.release()
