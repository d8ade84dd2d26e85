"""Binary pruning masks keyed by parameter name, stored apart from the weights.

* :class:`MaskSet` -- parameter name -> bool tensor (``True`` = kept).  Verbs: sparsity,
  kept counts, ``apply_`` (θ ← θ ⊙ m in place), union ``|``, intersection ``&``,
  difference ``-``, complement ``~``, IoU.
* :class:`PathwayMasks` -- language -> :class:`MaskSet` over the same names and shapes, with
  the free zone f_z = ¬ ∪_{l≠z} m_l, the candidates c_z = f_z ∪ m_z, the overlap (IoU)
  matrix and a pruning history.  ``save``/``load`` write one bit-packed file with a header;
  ``to_state_tensors``/``from_state_tensors`` give an encoding that survives ESPnet's n-best
  checkpoint averaging (see :meth:`PathwayMasks.to_state_tensors`).
* :func:`prunable_names` -- which parameters of a model are pruned.

Imports torch only; works on any ``nn.Module``.
"""

from __future__ import annotations

import hashlib
import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

FORMAT = "espnet_pathways.masks"
FORMAT_VERSION = 1
DEFAULT_PREFIXES = ("encoder.", "decoder.", "joint_network.")
"""ESPnet transducer naming: encoder, predictor (``decoder``) and joiner."""

_KINDS = {
    "linear": (nn.Linear,),
    "conv": (nn.modules.conv._ConvNd,),
    "rnn": (nn.RNNBase,),
}


def prunable_names(
    model: nn.Module,
    *,
    kinds: Sequence[str] = ("linear",),
    prefixes: Sequence[str] | None = DEFAULT_PREFIXES,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> list[str]:
    """Names of the parameters to prune, in ``model.named_parameters()`` order.

    Selected: the weights of modules of ``kinds`` (``"linear"``: ``nn.Linear.weight``;
    ``"conv"``: convolution kernels; ``"rnn"``: ``weight_*`` matrices of LSTM/GRU/RNN) whose
    name starts with one of ``prefixes`` (``None`` or empty: any name), plus every parameter
    whose name matches an ``include`` regex (``re.search``); minus names matching an
    ``exclude`` regex.  Biases, norms and embeddings are only pruned through ``include``.
    """
    unknown = sorted(set(kinds) - set(_KINDS))
    if unknown:
        raise ValueError(f"kinds: unknown {unknown}; choose from {sorted(_KINDS)}")
    if isinstance(prefixes, str):
        prefixes = (prefixes,)
    types = tuple(t for k in kinds for t in _KINDS[k])
    by_kind = set()
    for mod_name, mod in model.named_modules():
        if not types or not isinstance(mod, types):
            continue
        for p_name, _ in mod.named_parameters(recurse=False):
            if p_name == "weight" or (isinstance(mod, nn.RNNBase) and p_name.startswith("weight_")):
                by_kind.add(f"{mod_name}.{p_name}" if mod_name else p_name)
    inc = [re.compile(r) for r in include]
    exc = [re.compile(r) for r in exclude]
    names = []
    for name, _ in model.named_parameters():
        chosen = (name in by_kind and (not prefixes or name.startswith(tuple(prefixes)))) or any(
            r.search(name) for r in inc
        )
        if chosen and not any(r.search(name) for r in exc):
            names.append(name)
    return names


def pack_bits(mask: Tensor) -> Tensor:
    """Pack a bool tensor (any shape) into ``ceil(numel/8)`` uint8, little bit order."""
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    shifts = torch.arange(8, dtype=torch.uint8, device=flat.device)
    return (flat.view(-1, 8) << shifts).sum(1, dtype=torch.uint8)


def unpack_bits(packed: Tensor, shape: Sequence[int]) -> Tensor:
    """Inverse of :func:`pack_bits`: uint8 bytes -> bool tensor of ``shape``."""
    n = 1
    for d in shape:
        n *= int(d)
    if packed.dtype != torch.uint8 or packed.numel() != (n + 7) // 8:
        raise ValueError(f"packed bits: expected {(n + 7) // 8} uint8 bytes for shape {tuple(shape)}")
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
    bits = (packed.reshape(-1, 1) >> shifts) & 1
    return bits.reshape(-1)[:n].bool().reshape(tuple(shape))


class MaskSet:
    """Parameter name -> bool mask (``True`` = kept), stored apart from the weights.

    The given tensors are held as they are (no copy), in the given name order.
    """

    __hash__ = None  # mutable, compared by value

    def __init__(self, masks: Mapping[str, Tensor]):
        self._m: dict[str, Tensor] = {}
        for name, m in masks.items():
            if not isinstance(m, Tensor) or m.dtype != torch.bool:
                raise ValueError(f"mask {name!r}: expected a bool tensor, got {getattr(m, 'dtype', type(m))}")
            self._m[name] = m

    # -- construction -----------------------------------------------------------------
    @classmethod
    def full(cls, model: nn.Module, names: Iterable[str] | None = None, value: bool = True) -> MaskSet:
        """All-``value`` masks for ``names`` (default :func:`prunable_names`) on the weights' devices."""
        params = dict(model.named_parameters())
        names = prunable_names(model) if names is None else list(names)
        missing = [n for n in names if n not in params]
        if missing:
            raise ValueError(f"model has no parameter {missing[0]!r}")
        return cls({n: torch.full_like(params[n], value, dtype=torch.bool) for n in names})

    @classmethod
    def nonzero(cls, model: nn.Module, names: Iterable[str] | None = None) -> MaskSet:
        """Masks of the non-zero weights (recovers hard-pruned masks from a model)."""
        params = dict(model.named_parameters())
        names = prunable_names(model) if names is None else list(names)
        return cls({n: params[n].detach() != 0 for n in names})

    # -- mapping protocol -------------------------------------------------------------
    def __getitem__(self, name: str) -> Tensor:
        return self._m[name]

    def __contains__(self, name: object) -> bool:
        return name in self._m

    def __iter__(self) -> Iterator[str]:
        return iter(self._m)

    def __len__(self) -> int:
        return len(self._m)

    def items(self):
        return self._m.items()

    @property
    def names(self) -> list[str]:
        return list(self._m)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {n: tuple(m.shape) for n, m in self._m.items()}

    def __repr__(self) -> str:
        return f"MaskSet({len(self)} tensors, {self.numel()} elements, sparsity {self.sparsity():.4f})"

    # -- counts -----------------------------------------------------------------------
    def numel(self) -> int:
        """Total number of elements covered."""
        return sum(m.numel() for m in self._m.values())

    def kept(self) -> int:
        """Number of kept (``True``) elements over all tensors."""
        return sum(self.kept_per_tensor().values())

    def kept_per_tensor(self) -> dict[str, int]:
        return {n: count_true(m) for n, m in self._m.items()}

    def sparsity(self) -> float:
        """Share of pruned elements over all tensors (0.0 for an empty set)."""
        total = self.numel()
        return 1.0 - self.kept() / total if total else 0.0

    def sparsity_per_tensor(self) -> dict[str, float]:
        return {n: 1.0 - count_true(m) / m.numel() if m.numel() else 0.0 for n, m in self._m.items()}

    # -- set algebra ------------------------------------------------------------------
    def _check_same(self, other: MaskSet) -> None:
        if self.shapes != other.shapes:
            diff = next(n for n in {**self.shapes, **other.shapes} if self.shapes.get(n) != other.shapes.get(n))
            raise ValueError(f"mask sets differ at {diff!r}")

    def _zip(self, other: MaskSet, op) -> MaskSet:
        self._check_same(other)
        return MaskSet({n: op(m, other._m[n].to(m.device)) for n, m in self._m.items()})

    def __or__(self, other: MaskSet) -> MaskSet:
        return self._zip(other, torch.logical_or)

    def __and__(self, other: MaskSet) -> MaskSet:
        return self._zip(other, torch.logical_and)

    def __sub__(self, other: MaskSet) -> MaskSet:
        return self._zip(other, lambda a, b: a & ~b)

    def __invert__(self) -> MaskSet:
        return MaskSet({n: ~m for n, m in self._m.items()})

    union, intersection, difference = __or__, __and__, __sub__

    def __eq__(self, other: object) -> bool:
        """Exact equality: same names in the same order, shapes and bits."""
        if not isinstance(other, MaskSet) or list(self._m) != list(other._m):
            return False
        return all(torch.equal(m, other._m[n].to(m.device)) for n, m in self._m.items())

    def iou_per_tensor(self, other: MaskSet) -> dict[str, float]:
        """|a ∩ b| / |a ∪ b| per tensor (1.0 where both are empty)."""
        self._check_same(other)
        out = {}
        for n, a in self._m.items():
            b = other._m[n].to(a.device)
            union = int((a | b).sum())
            out[n] = int((a & b).sum()) / union if union else 1.0
        return out

    def iou(self, other: MaskSet) -> float:
        """|a ∩ b| / |a ∪ b| over all tensors (1.0 where both are empty)."""
        union = (self | other).kept()
        return (self & other).kept() / union if union else 1.0

    # -- model interaction ------------------------------------------------------------
    def to(self, device: torch.device | str) -> MaskSet:
        return MaskSet({n: m.to(device) for n, m in self._m.items()})

    def clone(self) -> MaskSet:
        return MaskSet({n: m.clone() for n, m in self._m.items()})

    @torch.no_grad()
    def apply_(self, module: nn.Module) -> None:
        """θ ← θ ⊙ m in place for every masked parameter (no copy of the weights).

        Uses ``masked_fill_`` so pruned elements become exactly 0 even if they held inf/NaN.
        """
        params = dict(module.named_parameters())
        self.check_compatible(module)
        for n, m in self._m.items():
            p = params[n]
            p.masked_fill_(~m.to(p.device), 0)

    def check_compatible(self, model: nn.Module, names: Iterable[str] | None = None) -> None:
        """Raise ``ValueError`` naming the first tensor that does not fit ``model``.

        Checks the mask names in order (not a parameter of the model; shape mismatch), then
        the ``names`` the caller expects masks for (missing from this set).
        """
        params = dict(model.named_parameters())
        for n, m in self._m.items():
            if n not in params:
                raise ValueError(f"masks: tensor {n!r} is not a parameter of the model")
            if tuple(params[n].shape) != tuple(m.shape):
                raise ValueError(
                    f"masks: tensor {n!r} has shape {tuple(m.shape)}, the model's is {tuple(params[n].shape)}"
                )
        for n in names or ():
            if n not in self._m:
                raise ValueError(f"masks: no mask for model tensor {n!r}")


def as_uint8(mask: Tensor) -> Tensor:
    """A bool tensor seen as 0/1 bytes without a copy (arithmetic with a bool tensor promotes it
    element by element: int32 × uint8 is 2.5× faster than × bool on CPU)."""
    return mask.view(torch.uint8) if mask.dtype == torch.bool else mask


def count_true(mask: Tensor) -> int:
    """True elements of a bool tensor. On the CPU NumPy's count: ``mask.sum()`` there costs ~3 ms
    per 1M elements on the 2-core VM, ~20x more (a Dynamic Pathways event at 70M counts ~1,000
    tensors)."""
    if mask.device.type == "cpu":
        return int(np.count_nonzero(mask.detach().numpy()))
    return int(mask.sum())


def _held_or_free(mask: Tensor, count: Tensor) -> Tensor:
    """``mask | (count == 0)`` (NumPy's on the CPU: ~4x torch's there)."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.logical_or(mask.numpy(), count.numpy() == 0))
    return mask | (count == 0)


def _bytes(mask: Tensor, like: Tensor) -> Tensor:
    """A bool mask as ``like``'s integer type: a free view for uint8."""
    return as_uint8(mask) if like.dtype == torch.uint8 else mask.to(like.dtype)


def wide_index(idx: Tensor) -> Tensor:
    """Positions as int64, which ``index_fill_``/``index_copy_`` need (``index_select`` takes int32)."""
    return idx if idx.dtype == torch.long else idx.long()


class PositionCache:
    """Flat positions (int32 where they fit) of the ``True`` elements of a bool tensor made from some
    mask tensors, found once per tuple of those tensors and kept while every one of them lives
    unedited (identity and ``_version`` checked; an entry goes when one of its masks is freed, e.g.
    a re-ranked mask is a new tensor).  ``enabled=False`` finds them at every call, keeping nothing.

    ``cache(m)``: the positions of ``m``; ``cache(a, b, derive=f)``: those of ``f(a, b)`` (``None``
    may stand for a mask that is absent)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._cache: dict[tuple[int, ...], tuple[list[weakref.ref], tuple[int, ...], Tensor]] = {}

    def __call__(self, *masks: Tensor | None, derive: Callable[..., Tensor] | None = None) -> Tensor:
        live = [m for m in masks if m is not None]
        key = tuple(id(m) for m in masks)
        versions = tuple(m._version for m in live)
        hit = self._cache.get(key)
        if hit is not None and hit[1] == versions and all(r() is m for r, m in zip(hit[0], live)):
            return hit[2]
        d = masks[0] if derive is None else derive(*masks)
        idx = d.reshape(-1).nonzero().squeeze(1)
        if d.numel() < 2**31:
            idx = idx.to(torch.int32)  # half the memory; widened (wide_index) where an op needs int64, one tensor at a time
        if self.enabled:
            cache = self._cache
            drop = lambda _, k=key: cache.pop(k, None)  # noqa: E731
            cache[key] = ([weakref.ref(m, drop) for m in live], versions, idx)
        return idx

    def numel(self) -> int:
        return sum(v[2].numel() for v in self._cache.values())


class Holders:
    """Per weight, the number of languages whose mask holds it (``counts[name]``, uint8).

    Made in one pass over the languages; the Dynamic ASR Pathways event keeps it current
    with :meth:`replace` as each language's mask changes, so every language's candidate
    region (``count == 0`` or its own) and the final union (``count > 0``) cost one
    comparison each instead of unions over the other languages.
    """

    def __init__(self, masks: PathwayMasks):
        ref = masks._ref()
        dtype = torch.uint8 if len(masks) < 255 else torch.int32
        self.counts: dict[str, Tensor] = {n: torch.zeros(m.shape, dtype=dtype, device=m.device) for n, m in ref.items()}
        for lang in masks:
            for n, m in masks[lang].items():
                self.counts[n] += _bytes(m, self.counts[n])

    def replace(self, old: MaskSet, new: MaskSet) -> None:
        """One language's mask changed from ``old`` to ``new``."""
        for n, c in self.counts.items():
            c += _bytes(new[n], c)
            c -= _bytes(old[n], c)

    def union(self) -> MaskSet:
        """∪_l m_l."""
        return MaskSet({n: c > 0 for n, c in self.counts.items()})


class PathwayMasks:
    """Language -> :class:`MaskSet` over the same names and shapes, plus a pruning history.

    ``history`` is a list of events (plain dicts), e.g.
    ``{"step": 4000, "language": "fr", "sparsity": 0.5, "rule": "magnitude/tensor"}``.
    """

    def __init__(self, masks: Mapping[str, MaskSet], history: Iterable[Mapping[str, Any]] = ()):
        self._by_lang: dict[str, MaskSet] = {}
        for lang, ms in masks.items():
            self[lang] = ms
        self.history: list[dict[str, Any]] = [dict(e) for e in history]

    def __getitem__(self, lang: str) -> MaskSet:
        return self._by_lang[lang]

    def __setitem__(self, lang: str, masks: MaskSet) -> None:
        if not isinstance(masks, MaskSet):
            raise ValueError(f"language {lang!r}: expected a MaskSet")
        if self._by_lang:
            ref = next(iter(self._by_lang.values()))
            if list(ref.shapes.items()) != list(masks.shapes.items()):
                raise ValueError(f"language {lang!r}: masks do not cover the same names/shapes as the others")
        self._by_lang[lang] = masks

    def __contains__(self, lang: object) -> bool:
        return lang in self._by_lang

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_lang)

    def __len__(self) -> int:
        return len(self._by_lang)

    def items(self):
        return self._by_lang.items()

    @property
    def languages(self) -> list[str]:
        return list(self._by_lang)

    def _ref(self) -> MaskSet:
        if not self._by_lang:
            raise ValueError("pathway masks: no languages")
        return next(iter(self._by_lang.values()))

    @property
    def names(self) -> list[str]:
        return self._ref().names

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return self._ref().shapes

    def __repr__(self) -> str:
        sp = ", ".join(f"{lang}: {s:.4f}" for lang, s in self.sparsity().items())
        return f"PathwayMasks({{{sp}}}, {len(self.history)} events)"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, PathwayMasks)
            and self.languages == other.languages
            and all(self[k] == other[k] for k in self)
            and self.history == other.history
        )

    __hash__ = None

    def record(self, **event: Any) -> None:
        """Append a history event (keys such as step, language, sparsity, rule)."""
        self.history.append(event)

    def sparsity(self) -> dict[str, float]:
        return {lang: ms.sparsity() for lang, ms in self._by_lang.items()}

    def union(self, languages: Iterable[str] | None = None) -> MaskSet:
        """∪ of the masks of ``languages`` (default all); all-False if none are given."""
        langs = self.languages if languages is None else list(languages)
        out = MaskSet({n: torch.zeros_like(m) for n, m in self._ref().items()})
        for lang in langs:
            out = out | self[lang]
        return out

    def holders(self) -> Holders:
        """How many languages hold each weight: one pass over the masks (see :class:`Holders`)."""
        return Holders(self)

    def free_zone(self, lang: str, holders: Holders | None = None) -> MaskSet:
        """f_z = ¬ ∪_{l≠z} m_l: the weights no other language uses (``holders``: counts already made)."""
        if lang not in self:
            raise KeyError(lang)
        h = holders if holders is not None else self.holders()
        m = self[lang]
        return MaskSet({n: h.counts[n] == m[n] for n in m.names})  # held by z alone, or by nobody

    def candidates(self, lang: str, holders: Holders | None = None) -> MaskSet:
        """c_z = f_z ∪ m_z: where language z may re-rank its mask (``holders``: counts already made)."""
        if lang not in self:
            raise KeyError(lang)
        h = holders if holders is not None else self.holders()
        m = self[lang]
        return MaskSet({n: _held_or_free(m[n], h.counts[n]) for n in m.names})

    def overlap(self) -> dict[str, dict[str, float]]:
        """IoU matrix over all tensors: ``overlap()[a][b]``."""
        return {a: {b: self[a].iou(self[b]) for b in self} for a in self}

    def overlap_per_tensor(self) -> dict[str, dict[str, dict[str, float]]]:
        """IoU matrix per tensor: ``overlap_per_tensor()[name][a][b]``."""
        pairs = {(a, b): self[a].iou_per_tensor(self[b]) for a in self for b in self}
        return {n: {a: {b: pairs[a, b][n] for b in self} for a in self} for n in self.names}

    def check_compatible(self, model: nn.Module, names: Iterable[str] | None = None) -> None:
        """See :meth:`MaskSet.check_compatible` (all languages share names and shapes)."""
        self._ref().check_compatible(model, names)

    def to(self, device: torch.device | str) -> PathwayMasks:
        return PathwayMasks({k: v.to(device) for k, v in self.items()}, self.history)

    # -- file format ------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write all languages' masks, bit-packed, with a header, to one file.

        ``torch.save`` of a dict of plain types and uint8 tensors (``torch.load`` with
        ``weights_only=True`` reads it): format, version, languages, names, shapes,
        sparsity per language, history, and per language one uint8 tensor holding each
        tensor's bits packed to a byte boundary, in ``names`` order.
        """
        ref = self._ref()
        torch.save(
            {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "languages": self.languages,
                "names": ref.names,
                "shapes": [list(s) for s in ref.shapes.values()],
                "sparsity": self.sparsity(),
                "history": self.history,
                "bits": {
                    lang: torch.cat([pack_bits(m.cpu()) for m in ms._m.values()]) for lang, ms in self.items()
                },
            },
            str(path),
        )

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> PathwayMasks:
        """Read a file written by :meth:`save` (no model needed); bit-exact."""
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise ValueError(f"{path}: not an {FORMAT} file")
        if obj["version"] != FORMAT_VERSION:
            raise ValueError(f"{path}: format version {obj['version']}, this code reads {FORMAT_VERSION}")
        sizes = [(_numel(s) + 7) // 8 for s in obj["shapes"]]
        masks = {}
        for lang in obj["languages"]:
            bits = obj["bits"][lang]
            if bits.numel() != sum(sizes):
                raise ValueError(f"{path}: language {lang!r} has {bits.numel()} bytes, expected {sum(sizes)}")
            chunks = torch.split(bits, sizes)
            ms = MaskSet({n: unpack_bits(c, s).to(device) for n, s, c in zip(obj["names"], obj["shapes"], chunks)})
            if abs(ms.sparsity() - obj["sparsity"][lang]) > 1e-12:
                raise ValueError(f"{path}: language {lang!r} sparsity does not match its header")
            masks[lang] = ms
        return cls(masks, obj["history"])

    # -- averaging-safe tensors -------------------------------------------------------
    def to_state_tensors(self) -> dict[str, Tensor]:
        """Integer tensors to keep masks inside a model state dict, safe under n-best averaging.

        ESPnet's ``average_nbest_models`` sums every state-dict tensor over the n checkpoints
        and divides the result by n unless its dtype name starts with ``torch.int``.  So bool,
        uint8 and float masks are all changed (uint8 sums wrap at 256 and become float), while
        int64 tensors are summed exactly and kept.  This encoding stores:

        * ``count``: int64 1 (becomes n after averaging);
        * ``bits_<lang>``: int64, the packed bits in 32-bit words (0.25 byte per weight);
        * ``digest_<lang>``: int64 31-bit SHA-256 digest of the packed bits.

        :meth:`from_state_tensors` divides by ``count`` and checks the digest, so averaging
        identical masks is bit-exact and averaging different masks raises ``ValueError``.
        Integer buffers are also left alone by ``module.to(dtype)``.
        """
        out = {"count": torch.ones((), dtype=torch.int64)}
        for lang, ms in self.items():
            packed = torch.cat([pack_bits(m) for m in ms._m.values()])
            words = _bytes_to_words(packed)
            out[f"bits_{lang}"] = words
            out[f"digest_{lang}"] = torch.tensor(_digest(packed), dtype=torch.int64)
        return out

    @classmethod
    def from_state_tensors(
        cls, tensors: Mapping[str, Tensor], shapes: Mapping[str, Sequence[int]]
    ) -> PathwayMasks:
        """Decode :meth:`to_state_tensors` (possibly summed over n checkpoints).

        ``shapes``: name -> shape in the order used when encoding (e.g. ``MaskSet.shapes``).
        """
        count = tensors.get("count")
        if count is None or count.dtype != torch.int64 or int(count) < 1:
            raise ValueError("mask state: 'count' is missing or not a positive int64")
        n_ckpt = int(count)
        sizes = [(_numel(s) + 7) // 8 for s in shapes.values()]
        masks = {}
        for key, words in tensors.items():
            if not key.startswith("bits_"):
                continue
            lang = key[len("bits_") :]
            if words.dtype != torch.int64:
                raise ValueError(f"mask state: {key!r} is {words.dtype}, not int64 (was it averaged as floats?)")
            if bool((words % n_ckpt != 0).any()):
                raise ValueError(f"mask state: {key!r} differs between the averaged checkpoints")
            packed = _words_to_bytes(words // n_ckpt, sum(sizes))
            digest = tensors.get(f"digest_{lang}")
            if digest is None or digest.dtype != torch.int64 or int(digest) != n_ckpt * _digest(packed):
                raise ValueError(f"mask state: {key!r} differs between the averaged checkpoints")
            chunks = torch.split(packed, sizes)
            masks[lang] = MaskSet({n: unpack_bits(c, s) for (n, s), c in zip(shapes.items(), chunks)})
        return cls(masks)


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _digest(packed: Tensor) -> int:
    return int.from_bytes(hashlib.sha256(packed.cpu().numpy().tobytes()).digest()[:4], "little") & 0x7FFFFFFF


def _bytes_to_words(packed: Tensor) -> Tensor:
    pad = (-packed.numel()) % 4
    if pad:
        packed = torch.cat([packed, packed.new_zeros(pad)])
    b = packed.view(-1, 4).to(torch.int64)
    return b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16) | (b[:, 3] << 24)


def _words_to_bytes(words: Tensor, nbytes: int) -> Tensor:
    if words.numel() != (nbytes + 3) // 4 or bool(((words < 0) | (words > 0xFFFFFFFF)).any()):
        raise ValueError("mask state: bit words have the wrong size or range")
    shifts = torch.tensor([0, 8, 16, 24], dtype=torch.int64, device=words.device)
    return ((words.view(-1, 1) >> shifts) & 0xFF).to(torch.uint8).reshape(-1)[:nbytes]
