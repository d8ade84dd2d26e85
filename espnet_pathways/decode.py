"""Batched transducer decoding that reproduces ESPnet's own decoder, many utterances at a time.

ESPnet's ``asr_transducer_inference`` decodes one utterance at a time (``--batch_size 1``
is all it accepts), and its beam search calls the prediction and joint networks once per
expanded hypothesis: on a CPU the search is ~3/4 of the decoding time, on a GPU nearly all
of it is kernel-launch overhead.  :class:`BatchDecoder` keeps ESPnet's algorithm exactly --
``BeamSearchTransducer.default_beam_search`` (``search_type: default``, any beam size; beam
1 is ESPnet's greedy decoding) -- and batches its network calls over utterances:

* **full context** (``Speech2Text.__call__``): features per utterance (ESPnet's frontend on
  one unpadded waveform, so the STFT's edge frames are the same), then one padded encoder
  forward per batch (the conformer masks padding in attention and convolution);
* **streaming** (``Speech2Text.streaming_decode`` as ``inference()`` feeds it): per
  utterance the same windows of ``decoding_window`` ms through the same
  ``OnlineAudioProcessor``; then window w of every utterance through the encoder's
  streaming path (``chunk_forward``'s steps, ``left_context``) in one call, each block's
  cache stacked from the utterances' own; each utterance's window outputs are concatenated.  ESPnet's search carries its hypotheses from
  window to window (``search_cache``) and resets only at the last one, so searching the
  concatenation gives the same result as searching window by window;
* **search**: frame-synchronous over the batch.  At frame t every utterance runs ESPnet's
  loop -- pop the best hypothesis, keep its blank extension, add its top-k label
  extensions, stop when ``beam`` kept hypotheses beat every open one -- and each round of
  that loop scores the popped hypotheses of all still-open utterances with one
  ``decoder.batch_score`` and one joint-network call.  Prediction-network outputs are
  cached per label sequence, as ESPnet's ``score_cache`` does.

Hypotheses equal ESPnet's up to floating-point summation order (a batched matrix product
may round differently from a one-row one); ``tests/test_decode.py`` checks equality on a
tiny model.  Not supported (use ESPnet's decoder): language-model fusion, search types
other than ``default``, quantised models.  The batched decoder is for evaluation
throughput; it reports no per-window partial results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from espnet2.asr_transducer.utils import TooShortUttError, check_short_utt, make_source_mask

__all__ = ["BatchDecoder", "Hypothesis", "beam_search_batch"]


@dataclass
class Hypothesis:
    """As ESPnet's: total log-probability, label sequence (starting with blank 0), decoder state."""

    score: float
    yseq: list[int]
    dec_state: Any = None


def _subsampled_length(conv: torch.nn.Module, n: int) -> int:
    """Frames out of a ConvInput's convolution/pooling stack for n frames in (time is dim 2)."""
    for m in conv.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.MaxPool2d)):
            k, s, p = (v if isinstance(v, int) else v[0] for v in (m.kernel_size, m.stride, m.padding))
            num = n + 2 * p - k
            if isinstance(m, torch.nn.MaxPool2d) and m.ceil_mode:
                n = -(-num // s) + 1
            else:
                n = num // s + 1
    return n


def _score(decoder: Any, hyps: list[Hypothesis], caches: list[dict]) -> tuple[list[torch.Tensor], list[Any]]:
    """Prediction-network output and state after each hypothesis' label sequence.

    ``caches[i]`` is hypothesis i's utterance's cache (label sequence -> (output, state)).
    Misses are computed in one ``decoder.batch_score`` call.
    """
    outs: list[Any] = [None] * len(hyps)
    states: list[Any] = [None] * len(hyps)
    miss = []
    for i, (h, cache) in enumerate(zip(hyps, caches)):
        hit = cache.get(tuple(h.yseq))
        if hit is None:
            miss.append(i)
        else:
            outs[i], states[i] = hit
    if miss:
        out, batch_states = decoder.batch_score([hyps[i] for i in miss])
        for j, i in enumerate(miss):
            st = decoder.select_state(batch_states, j)
            outs[i], states[i] = out[j], st
            caches[i][tuple(hyps[i].yseq)] = (out[j], st)
    return outs, states


def beam_search_batch(
    decoder: Any, joint_network: Any, enc_outs: Sequence[torch.Tensor], beam_size: int,
) -> list[list[Hypothesis]]:
    """ESPnet's ``default_beam_search`` on every ``enc_outs[b]`` (T_b, D), network calls batched.

    Returns, per utterance, the final kept hypotheses (unsorted, as ESPnet's search returns
    them; sort with :meth:`BatchDecoder.nbest`).
    """
    vocab = decoder.vocab_size
    if not 1 <= beam_size <= vocab:
        raise ValueError(f"beam_size: {beam_size} is not in [1, vocabulary size {vocab}]")
    beam_k = min(beam_size, vocab - 1)
    n = len(enc_outs)
    if n == 0:
        return []
    decoder.set_device(enc_outs[0].device)
    kept = [[Hypothesis(0.0, [0], decoder.init_state(1))] for _ in range(n)]
    caches: list[dict] = [{} for _ in range(n)]
    lengths = [int(e.size(0)) for e in enc_outs]
    for t in range(max(lengths, default=0)):
        active = [b for b in range(n) if t < lengths[b]]
        hyps = {b: kept[b] for b in active}
        new_kept: dict[int, list[Hypothesis]] = {b: [] for b in active}
        enc_t = {b: enc_outs[b][t] for b in active}
        while active:
            popped = []
            for b in active:
                best = max(range(len(hyps[b])), key=lambda j: hyps[b][j].score)  # first of ties, as max()
                popped.append(hyps[b].pop(best))
            outs, states = _score(decoder, popped, [caches[b] for b in active])
            logits = joint_network(torch.stack([enc_t[b] for b in active]), torch.stack(outs))
            logp = torch.log_softmax(logits, dim=-1)
            top = logp[:, 1:].topk(beam_k, dim=-1)
            blank = logp[:, 0].tolist()
            top_v, top_i = top.values.tolist(), top.indices.tolist()
            still = []
            for i, b in enumerate(active):
                h = popped[i]
                new_kept[b].append(Hypothesis(h.score + blank[i], h.yseq, h.dec_state))
                for v, k in zip(top_v[i], top_i[i]):
                    hyps[b].append(Hypothesis(h.score + v, h.yseq + [k + 1], states[i]))
                hyps_max = max(x.score for x in hyps[b])
                most = sorted((x for x in new_kept[b] if x.score > hyps_max), key=lambda x: x.score)
                if len(most) >= beam_size:
                    kept[b] = most
                else:
                    still.append(b)
            active = still
    return kept


class BatchDecoder:
    """Decode many utterances with an ESPnet ``Speech2Text``'s model, search settings and tokens.

    ``speech2text`` must come from ``espnet2.bin.asr_transducer_inference.Speech2Text`` built
    with the options to reproduce (``streaming``, ``decoding_window``, ``left_context``,
    ``beam_size``, ``nbest``, ``beam_search_config``, ``dtype``, ``device``).
    """

    def __init__(self, speech2text: Any):
        bs = speech2text.beam_search
        if bs.search_algorithm.__func__ is not type(bs).default_beam_search:
            raise ValueError("batched decoding supports beam_search_config.search_type 'default' only")
        if bs.use_lm:
            raise ValueError("batched decoding does not support language-model fusion")
        self.s2t = speech2text
        self.model = speech2text.asr_model
        self.beam_size = bs.beam_size
        self.nbest = bs.nbest
        self.score_norm = bs.score_norm
        self.streaming = speech2text.streaming

    @property
    def dtype(self) -> torch.dtype:
        return getattr(torch, self.s2t.dtype)

    def _window_features(self, speech: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(feats (1, T, F), lengths) of each window, as ESPnet's inference() feeds streaming_decode.

        ESPnet's ``OnlineAudioProcessor``, reset before and after; its state does not depend
        on the encoder's, so the features of all windows can be computed first.
        """
        s2t = self.s2t
        n = s2t.audio_processor.decoding_samples
        steps = len(speech) // n
        speech = speech.to(device=s2t.device, dtype=self.dtype)
        s2t.audio_processor.reset_cache()
        try:
            return [s2t.audio_processor.compute_features(speech[i * n:] if i == steps else speech[i * n:(i + 1) * n],
                                                         i == steps)
                    for i in range(steps + 1)]
        finally:
            s2t.audio_processor.reset_cache()

    @torch.no_grad()
    def encode_streaming(self, speech: torch.Tensor) -> torch.Tensor:
        """(T, D) encoder output of one utterance fed window by window, as ESPnet's inference() does."""
        s2t = self.s2t
        s2t.reset_streaming_cache()
        outs = []
        try:
            for feats, feats_len in self._window_features(speech):
                enc = self.model.encoder.chunk_forward(
                    feats, feats_len, s2t.num_processed_frames, left_context=s2t.left_context,
                )
                s2t.num_processed_frames += enc.size(1)
                outs.append(enc[0])
        finally:
            s2t.reset_streaming_cache()
        return torch.cat(outs)

    @torch.no_grad()
    def encode_streaming_batch(self, speeches: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The encoder outputs of :meth:`encode_streaming` for many utterances, windows batched.

        Features: ESPnet's ``OnlineAudioProcessor`` per utterance, window by window.  Encoder:
        window w of every utterance that has one in one call, each block's streaming cache
        stacked from the utterances' own caches and split back after the call (the caches
        are per block, batch-first tensors).  Windows of equal length only share a call, so
        nothing is padded; the steps are ``encoder.chunk_forward``'s, with a per-utterance
        count of frames already seen.  Needs a non-VGG input block (else: one by one).
        """
        s2t, encoder = self.s2t, self.model.encoder
        if getattr(encoder.embed, "vgg_like", False):
            return [self.encode_streaming(sp) for sp in speeches]
        lc, device = s2t.left_context, s2t.device
        feats = [[f[0, : int(fl[0])] for f, fl in self._window_features(sp)] for sp in speeches]
        try:
            encoder.reset_cache(lc, device=device)
            blocks = list(encoder.encoders.blocks)
            fresh = [[c.clone() for c in b.cache] for b in blocks]
            caches = [[[c.clone() for c in bc] for bc in fresh] for _ in speeches]  # utt -> block -> tensors
            processed = [0] * len(speeches)
            outs: list[list[torch.Tensor]] = [[] for _ in speeches]
            for w in range(max(len(fs) for fs in feats)):
                # One call per feature length: a block's new caches are the last frames of
                # its input, so a padded window would leave padding in them.  Every window but
                # an utterance's last has the same length: one call for most of the batch.
                by_len: dict[int, list[int]] = {}
                for u in range(len(speeches)):
                    if w < len(feats[u]):
                        by_len.setdefault(feats[u][w].size(0), []).append(u)
                for t_in, group in by_len.items():
                    valid = _subsampled_length(encoder.embed.conv, t_in) - 2
                    if valid <= 0:  # a last window with no frame left adds nothing
                        continue
                    x, _ = encoder.embed(torch.stack([feats[u][w] for u in group]), None)
                    x = x[:, 1:-1, :]
                    if x.size(1) != valid:
                        raise RuntimeError(f"window {w}: {x.size(1)} frames, expected {valid}")
                    pos_enc = encoder.pos_enc(x, left_context=lc)
                    done = torch.tensor([[processed[u]] for u in group], device=device)
                    past = torch.arange(lc, device=device).view(1, lc).flip(1) >= done
                    mask = torch.cat([past, past.new_zeros(len(group), valid)], dim=1)
                    for b, block in enumerate(blocks):
                        block.cache = [torch.cat([caches[u][b][k] for u in group]) for k in range(len(fresh[b]))]
                    y = encoder.encoders.chunk_forward(x, pos_enc, mask, left_context=lc)
                    for j, u in enumerate(group):
                        for b, block in enumerate(blocks):
                            caches[u][b] = [c[j:j + 1] for c in block.cache]
                        outs[u].append(y[j])
                        processed[u] += valid
        finally:
            s2t.reset_streaming_cache()
        return [torch.cat(o) if o else torch.zeros(0, encoder.output_size, device=device) for o in outs]

    @torch.no_grad()
    def encode_full(self, speeches: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Full-context encoder outputs: features one utterance at a time, one padded encoder call."""
        model, device = self.model, self.s2t.device
        feats, lens = [], []
        for s in speeches:
            x = s.to(device=device, dtype=self.dtype).unsqueeze(0)
            f, fl = model._extract_feats(x, x.new_full([1], x.size(1), dtype=torch.long))
            if model.normalize is not None:
                f, fl = model.normalize(f, fl)
            feats.append(f[0, : int(fl[0])])
            lens.append(int(fl[0]))
        encoder = model.encoder
        for n in lens:
            short, limit = check_short_utt(encoder.embed.subsampling_factor, n)
            if short:
                raise TooShortUttError(
                    f"has {n} frames and is too short for subsampling (it needs more than {limit} frames), "
                    "return empty results", n, limit,
                )
        if len(feats) == 1 or getattr(encoder.embed, "vgg_like", False):
            # (VGG-like input blocks max-pool across the padding: no exact batched form.)
            return [encoder(f.unsqueeze(0), torch.tensor([n], device=device))[0][0] for f, n in zip(feats, lens)]
        # Not encoder.forward: its input block truncates the padding mask instead of
        # subsampling it, so the frames after a shorter utterance's end would be attended
        # as real ones.  The same blocks with the right mask:
        padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
        x, _ = encoder.embed(padded, make_source_mask(torch.tensor(lens, device=device)))
        out_lens = [_subsampled_length(encoder.embed.conv, n) for n in lens]
        if max(out_lens) != x.size(1):
            raise RuntimeError(f"subsampled lengths {out_lens} do not match the encoder's {x.size(1)} frames")
        mask = make_source_mask(torch.tensor(out_lens, device=device))
        x = encoder.encoders(x, encoder.pos_enc(x), mask, chunk_mask=None)
        return [x[b, :n] for b, n in enumerate(out_lens)]

    def nbest_of(self, hyps: list[Hypothesis]) -> list[Hypothesis]:
        """ESPnet's ``sort_nbest``."""
        key = (lambda x: x.score / len(x.yseq)) if self.score_norm else (lambda x: x.score)
        return sorted(hyps, key=key, reverse=True)[: self.nbest]

    @torch.no_grad()
    def __call__(self, speeches: Sequence[torch.Tensor]) -> list[list[Hypothesis]]:
        """N-best hypotheses of every waveform (1-D tensors), in input order."""
        if self.streaming:
            enc = self.encode_streaming_batch(speeches)
        else:
            enc = self.encode_full(speeches)
        kept = beam_search_batch(self.model.decoder, self.model.joint_network, enc, self.beam_size)
        return [self.nbest_of(k) for k in kept]

    def results(self, hyps: list[Hypothesis]) -> list[tuple[str | None, list[str], list[int], Hypothesis]]:
        """(text, tokens, token ids, hypothesis) per hypothesis: ``Speech2Text.hypotheses_to_results``."""
        return self.s2t.hypotheses_to_results(hyps)
