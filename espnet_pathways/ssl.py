"""Self-supervised pre-training of the streaming transducer's own encoder (HuBERT-style).

:class:`EncoderSSLModel` wraps ``espnet2.asr_transducer.encoder.encoder.Encoder`` -- built
from the same ``encoder_conf`` as the transducer, so its parameters are named exactly as the
transducer's ``encoder.*`` -- with ESPnet's own masked-prediction parts:

    speech -> frontend -> (SpecAugment) -> normalisation -> encoder.embed (subsampling)
           -> span masking (``espnet2.ssl.utils.mask.Masking``: a learned mask embedding
              replaces the masked frames) -> encoder.pos_enc -> encoder.encoders
           -> ``espnet2.ssl.loss.hubert.HuBERTLoss`` (cross-entropy of the masked frames'
              cluster targets through a projection and label embeddings)

Targets (``text``) are one cluster id per *encoder* frame (after subsampling); a target
sequence may differ from the encoder's frame count by one frame (cropped, or the last
frame repeated), more is an error naming the utterance.  Attention is full context
(``chunk_size: null``) or chunked as the streaming transducer (``chunk_size: N`` encoder
frames, with the encoder's ``num_left_chunks``).

``--init_param <ssl model>:encoder:encoder`` loads the pre-trained encoder into the
transducer name for name; masks found on this model's ``encoder.*`` tensors apply to the
transducer's encoder unchanged.  The SSL head (``ssl_loss.*``) and the mask embedding
(``masking.*``) are never prunable (the pathway modes prune ``prunable.prefixes``, which for
this model default to ``encoder.`` only).

Like :class:`~espnet_pathways.model.PathwayTransducerModel`, the model takes a pathways
controller (``model.pathways``): each batch computes with its language's region.
"""

from __future__ import annotations

from typing import Any

import torch
from espnet2.asr_transducer.encoder.encoder import Encoder
from espnet2.asr_transducer.utils import TooShortUttError, check_short_utt, make_chunk_mask, make_source_mask
from espnet2.ssl.loss.hubert import HuBERTLoss
from espnet2.ssl.utils.mask import Masking
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel

from espnet_pathways.model import PathwaysHooks, features
from espnet_pathways.modes import PathwaysError

SSL_PREFIXES = ("encoder.",)
"""What the pathway modes prune in an SSL model by default: the encoder, never the head."""


def _time(v) -> int:
    return int(v[0] if isinstance(v, (tuple, list)) else v)


def subsampled_lengths(embed: torch.nn.Module, lengths: torch.Tensor) -> torch.Tensor:
    """Each utterance's frame count after the encoder's convolutional subsampling (``embed.conv``).

    The time-axis arithmetic of every Conv2d / MaxPool2d in order (PyTorch's output-size
    rules, ``ceil_mode`` included): what the subsampling gives an utterance *alone*.  (ESPnet's
    ``ConvInput`` truncates the input-rate padding mask instead, so in a padded batch every
    utterance reports the longest one's length; SSL targets need the true one.)
    """
    out = []
    for n in lengths.tolist():
        n = int(n)
        for m in embed.conv.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.MaxPool2d)):
                k, st, pad = _time(m.kernel_size), _time(m.stride), _time(m.padding)
                dil = _time(m.dilation)
                span = n + 2 * pad - dil * (k - 1) - 1
                if getattr(m, "ceil_mode", False):
                    o = -(-span // st) + 1
                    if (o - 1) * st >= n + pad:
                        o -= 1
                else:
                    o = span // st + 1
                n = max(o, 0)
        out.append(n)
    return torch.tensor(out, dtype=torch.long, device=lengths.device)


class TargetLengthError(PathwaysError):
    """Targets made for another frame rate (one line naming the utterance)."""


class EncoderSSLModel(PathwaysHooks, AbsESPnetModel):
    """HuBERT-style masked prediction on the transducer's encoder (see the module docstring)."""

    def __init__(
        self,
        num_classes: int,
        frontend: Any,
        specaug: Any,
        normalize: Any,
        encoder: Encoder,
        final_dim: int = 256,
        masking_conf: dict | None = None,
        chunk_size: int | None = None,
        target_tolerance: int = 1,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.frontend, self.specaug, self.normalize, self.encoder = frontend, specaug, normalize, encoder
        self.masking = Masking(encoder.output_size, **dict(masking_conf or {}))
        self.ssl_loss = HuBERTLoss(encoder.output_size, num_classes, final_dim)
        self.chunk_size = chunk_size
        self.target_tolerance = target_tolerance
        self._init_pathways()

    # ESPnet's feature helpers (the transducer's, so features match it exactly)
    def _extract_feats(self, speech: torch.Tensor, speech_lengths: torch.Tensor):
        if self.frontend is None:
            return speech, speech_lengths
        return self.frontend(speech, speech_lengths)

    def collect_feats(self, speech, speech_lengths, text=None, text_lengths=None, **kwargs):
        feats, feats_lengths = self._extract_feats(speech, speech_lengths)
        return {"feats": feats, "feats_lengths": feats_lengths}

    def encode(self, speech: torch.Tensor, speech_lengths: torch.Tensor, mask: bool = True):
        """(encoder output, its lengths, mask info or None): the masked forward of the encoder."""
        x, x_len = features(self, speech, speech_lengths)
        enc = self.encoder
        short, limit = check_short_utt(enc.embed.subsampling_factor, x.size(1))
        if short:
            raise TooShortUttError(f"has {x.size(1)} frames and is too short for subsampling "
                                   f"(it needs more than {limit} frames)", x.size(1), limit)
        x, _ = enc.embed(x, make_source_mask(x_len))
        lengths = subsampled_lengths(enc.embed, x_len).clamp(max=x.size(1))
        pad = torch.arange(x.size(1), device=x.device)[None, :] >= lengths[:, None]  # True: padding
        info = None
        if mask:
            x, info = self.masking(x, pad)
        pos_enc = enc.pos_enc(x)
        chunk_mask = None
        if self.chunk_size is not None:
            chunk_mask = make_chunk_mask(x.size(1), self.chunk_size, num_left_chunks=enc.num_left_chunks, device=x.device)
        x = enc.encoders(x, pos_enc, pad, chunk_mask=chunk_mask)
        return x, lengths, info

    def frame_counts(self, speech_lengths: torch.Tensor) -> torch.Tensor:
        """Encoder frames of utterances of these sample counts (what their targets must have)."""
        if self.frontend is None:
            return subsampled_lengths(self.encoder.embed, speech_lengths)
        with torch.no_grad():
            _, feat_lengths = self.frontend(torch.zeros(1, int(speech_lengths.max())).expand(len(speech_lengths), -1).clone(),
                                            speech_lengths)
        return subsampled_lengths(self.encoder.embed, feat_lengths)

    def align_targets(self, text: torch.Tensor, text_lengths: torch.Tensor, lengths: torch.Tensor, frames: int,
                      utt_ids=None) -> torch.Tensor:
        """Targets (B, frames): each row cropped or extended (last target repeated) to its encoder length."""
        out = torch.full((text.size(0), frames), -1, dtype=torch.long, device=text.device)
        for b in range(text.size(0)):
            n, t = int(lengths[b]), int(text_lengths[b])
            if abs(n - t) > self.target_tolerance:
                who = utt_ids[b] if utt_ids else f"batch row {b}"
                raise TargetLengthError(f"{who}: {t} targets for {n} encoder frames (tolerance {self.target_tolerance}); "
                                        "were the targets made for this encoder's subsampling?")
            row = text[b, : min(n, t)].long()
            if t < n:
                row = torch.cat([row, row[-1:].expand(n - t)])
            out[b, :n] = row
        return out

    def forward(self, speech, speech_lengths, text, text_lengths, **kwargs):
        lang = self.begin_pathways_batch(kwargs)
        x, lengths, info = self.encode(speech, speech_lengths)
        targets = self.align_targets(text, text_lengths, lengths, x.size(1), kwargs.get("utt_id"))
        loss, st = self.ssl_loss([x], lengths, targets, lengths, info)
        stats = {"loss": loss.detach(), "acc_m": torch.tensor(float(st["hubert_acc_m_0"]))}
        self.language_stats(stats, lang)
        return force_gatherable((loss, stats, speech.shape[0]), loss.device)
