"""Per-language modules on the transducer's encoder: the embedding and adapter baselines.

Two ways of giving each language room of its own that sparse sharing is compared with
(both added to a stock ``ESPnetASRTransducerModel`` without touching its modules or its
state-dict keys; the added parameters live under ``lang_adapt.*``):

* ``embedding``: a learned vector per language (size of the encoder blocks) added to every
  frame of the encoder's input to its blocks (the output of ``encoder.embed``, i.e. after
  the convolutional subsampling).  Zero at initialisation.
* ``adapter``: a bottleneck adapter per language after each encoder block (Houlsby et al.
  2019, Bapna & Firat 2019): ``x + W_up relu(W_down LayerNorm(x))`` with
  ``bottleneck`` units; ``W_up`` starts at zero, so the model starts as the one it was
  initialised from.

Both act through forward hooks on modules that ESPnet calls in full-utterance *and*
chunk-by-chunk (streaming) encoding: ``encoder.embed`` and each block's ``norm_final`` (its
last operation, in ``forward`` and ``chunk_forward`` alike).  Each row of a batch uses its
own utterance's language (set by :meth:`LanguageConditioning.rows`, from the utterance ids
in training, or :meth:`LanguageConditioning.fixed` for decoding one language's test set);
``enabled = False`` turns every hook into the identity (the stock model's output).

Our choices where the sparse-sharing paper is silent about its baselines: the embedding
enters after subsampling (at the blocks' width, not at the 80-dim features); adapters
after every block, ReLU, pre-LayerNorm, zero-initialised up-projection.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

KINDS = ("embedding", "adapter")


class LangAdaptError(ValueError):
    """A bad ``lang_adapt_conf`` or a batch without a known language."""


class BottleneckAdapter(nn.Module):
    def __init__(self, size: int, bottleneck: int):
        super().__init__()
        self.norm = nn.LayerNorm(size)
        self.down = nn.Linear(size, bottleneck)
        self.up = nn.Linear(bottleneck, size)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(torch.relu(self.down(self.norm(x))))


class LanguageConditioning(nn.Module):
    """The per-language parameters of one model and the hooks that apply them (module doc)."""

    def __init__(self, kind: str, languages: Sequence[str], size: int, num_blocks: int, bottleneck: int = 32):
        super().__init__()
        if kind not in KINDS:
            raise LangAdaptError(f"lang_adapt_conf.type: {kind!r} is not one of {', '.join(KINDS)}")
        if not languages or len(set(languages)) != len(languages):
            raise LangAdaptError(f"lang_adapt_conf.languages: need distinct languages, got {list(languages)}")
        if kind == "adapter" and (isinstance(bottleneck, bool) or not isinstance(bottleneck, int) or bottleneck < 1):
            raise LangAdaptError(f"lang_adapt_conf.bottleneck: a positive integer, got {bottleneck!r}")
        self.kind = kind
        self.languages = list(languages)
        self.enabled = True
        self.utt2lang: dict[str, str] | None = None  # utterance -> language (None: the id's prefix)
        self._rows: torch.Tensor | None = None  # (B,) language index of each row of the batch
        self._language: str | None = None  # fixed() language, used where no rows are set
        if kind == "embedding":
            self.embedding = nn.Parameter(torch.zeros(len(languages), size))
        else:
            self.adapters = nn.ModuleList(
                nn.ModuleList(BottleneckAdapter(size, bottleneck) for _ in languages) for _ in range(num_blocks)
            )

    def extra_repr(self) -> str:
        return f"kind={self.kind}, languages={self.languages}"

    def index(self, lang: str) -> int:
        try:
            return self.languages.index(lang)
        except ValueError:
            raise LangAdaptError(
                f"language {lang!r} has no {self.kind} (lang_adapt_conf.languages: {', '.join(self.languages)})"
            ) from None

    @contextmanager
    def rows(self, langs: Sequence[str]) -> Iterator[None]:
        """Within the block, row i of every batch uses language ``langs[i]``."""
        prev = self._rows
        self._rows = torch.tensor([self.index(lang) for lang in langs], dtype=torch.long)
        try:
            yield
        finally:
            self._rows = prev

    def fixed(self, lang: str) -> None:
        """Every row uses ``lang`` from now on (decoding one language's test set)."""
        self.index(lang)
        self._language = lang
        self._rows = None

    def _row_index(self, batch: int) -> torch.Tensor:
        if self._rows is not None:
            if len(self._rows) != batch:
                raise LangAdaptError(f"{len(self._rows)} utterance languages for a batch of {batch}")
            return self._rows
        lang = self._language
        if lang is None:
            raise LangAdaptError("lang_adapt: no language for this batch (utterance ids or --language needed)")
        return torch.full((batch,), self.index(lang), dtype=torch.long)

    # -- the two transformations -------------------------------------------------------
    def add_embedding(self, x: torch.Tensor) -> torch.Tensor:
        idx = self._row_index(x.size(0)).to(x.device)
        return x + self.embedding[idx].unsqueeze(1).to(x.dtype)

    def adapt(self, block: int, x: torch.Tensor) -> torch.Tensor:
        idx = self._row_index(x.size(0)).to(x.device)
        out = torch.empty_like(x)
        for k in idx.unique().tolist():
            sel = (idx == k).nonzero(as_tuple=True)[0]
            out[sel] = self.adapters[block][k](x[sel])
        return out

    def added_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def attach(model: nn.Module, conf: dict) -> LanguageConditioning:
    """Add ``model.lang_adapt`` built from ``conf`` (``type``, ``languages``, ``bottleneck``) and its hooks."""
    known = {"type", "languages", "bottleneck"}
    bad = sorted(set(conf) - known)
    if bad:
        raise LangAdaptError(f"lang_adapt_conf.{bad[0]}: unknown option (known: {', '.join(sorted(known))})")
    encoder = model.encoder
    blocks = list(encoder.encoders.blocks)
    missing = [i for i, b in enumerate(blocks) if not isinstance(getattr(b, "norm_final", None), nn.Module)]
    if missing:
        raise LangAdaptError(f"lang_adapt: encoder block {missing[0]} has no norm_final to attach an adapter after")
    size = encoder.output_size
    cond = LanguageConditioning(conf.get("type"), list(conf.get("languages") or []), size, len(blocks),
                                conf.get("bottleneck", 32))
    model.lang_adapt = cond

    if cond.kind == "embedding":
        def on_embed(module, args, output):
            if not cond.enabled:
                return output
            x, mask = output
            return cond.add_embedding(x), mask
        encoder.embed.register_forward_hook(on_embed)
    else:
        for i, b in enumerate(blocks):
            def on_block(module, args, output, i=i):
                return cond.adapt(i, output) if cond.enabled else output
            b.norm_final.register_forward_hook(on_block)
    return cond
