"""Magnitude pruning rules, sparsity schedules and LTH rewinding on any ``nn.Module``.

Rules make masks (:func:`magnitude_prune`, :func:`rerank`, :func:`adaptive_update_`);
schedules say when and how far (:class:`CubicSchedule`, :class:`FixedFractionSchedule`,
:class:`AdaptiveSchedule`); :func:`rewind_` is the Lottery-Ticket reset.  The two never
import each other's state: a trainer asks the schedule for the sparsity at step t and
hands it to the rule.

Keep counts are exact: per tensor ``round((1 - s) * numel)`` (``round`` is Python's,
halves to even), globally ``round((1 - s) * total)``.  Ties in |θ| are broken by position:
the lower flat index (and, globally, the earlier tensor in name order) is kept.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from espnet_pathways.masks import MaskSet, as_uint8, count_true, prunable_names

GLOBAL = "<global>"
"""Key of :attr:`PruneResult.shortfall` for a global-scope selection."""


def check_sparsity(value: float, option: str = "sparsity") -> float:
    """Return ``value`` as float if it lies in [0, 1), else raise a one-line ``ValueError``."""
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{option} must be a number in [0, 1), got {value!r}") from None
    if not 0.0 <= s < 1.0:
        raise ValueError(f"{option} must be in [0, 1), got {value!r}")
    return s


def keep_count(numel: int, sparsity: float) -> int:
    """Number of elements kept at ``sparsity``: ``round((1 - s) * numel)``."""
    return round((1.0 - check_sparsity(sparsity)) * numel)


@dataclass
class PruneResult:
    """New masks, and where a candidate region held fewer elements than the keep count.

    ``shortfall[name] = (region_size, keep_count)``: the whole region was kept, so that
    tensor's sparsity is above the target.  The key is :data:`GLOBAL` for global scope.
    """

    masks: MaskSet
    shortfall: dict[str, tuple[int, int]] = field(default_factory=dict)


def _weights(source: nn.Module | Mapping[str, Tensor], names: Iterable[str]) -> dict[str, Tensor]:
    params = dict(source.named_parameters()) if isinstance(source, nn.Module) else dict(source)
    out = {}
    for n in names:
        if n not in params:
            raise ValueError(f"no weight named {n!r}")
        out[n] = params[n].detach()
    return out


def _scores(name: str, w: Tensor, region: Tensor | None) -> Tensor:
    s = w.abs().float().reshape(-1)
    if not bool(torch.isfinite(s).all()):
        raise ValueError(f"weight {name!r} has non-finite values; cannot rank by magnitude")
    if region is not None:
        if tuple(region.shape) != tuple(w.shape):
            raise ValueError(f"candidates {name!r} has shape {tuple(region.shape)}, the weight's is {tuple(w.shape)}")
        s.masked_fill_(~region.to(s.device).reshape(-1), -1.0)
    return s


# How the k-th largest score is found (all exact, the same masks; tests/test_pruning.py):
#   partition -- NumPy's np.partition (introselect; x86-simd-sort's AVX-512 kernels where the
#                CPU has them): ~1 ms per 1M int32 keys on the 2-core VM, 5-15x torch.kthvalue
#                (bench/RESULTS.md section 8). The default on the CPU.
#   radix     -- two 16-bit histogram passes over order-preserving int32 keys; on other devices
#                from RADIX_MIN_NUMEL scores (KEYS_RADIX_MIN_NUMEL keys made already) on.
#   kthvalue  -- torch.kthvalue; on other devices below those sizes.
SELECT_METHODS = ("partition", "radix", "kthvalue")
RADIX_MIN_NUMEL = 1 << 20
KEYS_RADIX_MIN_NUMEL = 1 << 17


def _method(x: Tensor, method: str | None, radix_min: int) -> str:
    if method is not None:
        if method not in SELECT_METHODS:
            raise ValueError(f"selection method must be one of {', '.join(SELECT_METHODS)}, got {method!r}")
        return method
    if x.device.type == "cpu":
        return "partition"
    return "radix" if x.numel() >= radix_min else "kthvalue"


def _kth_value(x: Tensor, k: int, method: str):
    """The k-th largest element of the 1-D ``x`` (1 <= k < numel) by ``partition`` or ``kthvalue``.

    ``partition`` sets aside the elements <= 0 (scores: the -1 filler and zero weights) or <= 1
    (radix keys: the same two) first, with np.compress: pruned weights and other languages'
    regions make them much of a tensor, and np.partition's AVX-512 kernel slows down ~50x when
    many equal values lie near the wanted position (measured on 1M int32 keys: 60 % zeros and
    k = 30 %, or 45 % zeros and k = 50 %: 70 and 27 ms against 1-1.5 ms)."""
    n = x.numel()
    if method != "partition":
        return x.kthvalue(n - k + 1).values.item()
    a = x.detach().cpu().numpy().reshape(-1)
    high = a > (0 if a.dtype.kind == "f" else 1)
    nh = int(np.count_nonzero(high))
    if k <= nh:
        b = np.compress(high, a)
    else:  # the k-th largest is one of the low values
        b, k = np.compress(~high, a), k - nh
    return np.partition(b, b.size - k)[b.size - k].item()


def _compare(scores: Tensor, thr, strict: bool) -> Tensor:
    """``scores > thr`` or ``>=`` (NumPy's on the CPU: ~4x torch's there, zero-copy both ways)."""
    if scores.device.type == "cpu":
        a = scores.detach().numpy()
        return torch.from_numpy(a > thr if strict else a >= thr)
    return scores > thr if strict else scores >= thr


def _all_or_none(x: Tensor, k: int) -> Tensor:
    """The mask of k >= numel (everything) or k <= 0 (nothing)."""
    return torch.full_like(x, k > 0, dtype=torch.bool)


def _top_k(scores: Tensor, k: int, method: str | None = None) -> Tensor:
    """Bool mask of the k largest scores (float32, each >= 0 or the -1 filler); ties go to the lower index.

    ``method``: how the k-th largest is found (``SELECT_METHODS``; default by device and size)."""
    if k <= 0 or k >= scores.numel():
        return _all_or_none(scores, k)
    m = _method(scores, method, RADIX_MIN_NUMEL)
    if m == "radix" and scores.dtype == torch.float32:
        return _top_k_keys(_radix_keys(scores), k, "radix")
    return _keep_top(scores, _kth_value(scores, k, "kthvalue" if m == "radix" else m), k)


def _top_k_keys(key: Tensor, k: int, method: str | None = None) -> Tensor:
    """:func:`_top_k` on radix keys (:func:`_radix_keys`: order-preserving, so the same mask)."""
    if k <= 0 or k >= key.numel():
        return _all_or_none(key, k)
    m = _method(key, method, KEYS_RADIX_MIN_NUMEL)
    if m != "radix":
        return _keep_top(key, _kth_value(key, k, m), k)
    thr, greater, at_least = _radix_kth_largest(key, k)
    return _keep_top(key, thr, k, greater, at_least)


def _keep_top(scores: Tensor, thr, k: int, greater: int | None = None, at_least: int | None = None) -> Tensor:
    """The k largest ``scores`` given the k-th largest, ``thr``: every score above it and the first
    scores equal to it (ties go to the lower index).  ``greater`` / ``at_least``: how many scores
    are > / >= ``thr``, where the caller knows.  Without ties (exactly k scores >= ``thr``, the
    usual case with real-valued weights) one comparison pass."""
    if at_least is None:
        keep = _compare(scores, thr, strict=False)
        at_least = count_true(keep)
        if at_least == k:
            return keep
    elif at_least == k:
        return _compare(scores, thr, strict=False)
    keep = _compare(scores, thr, strict=True)
    short = k - (count_true(keep) if greater is None else greater)
    if short > 0:
        keep[(scores == thr).nonzero().squeeze(1)[:short]] = True
    return keep


class Magnitudes:
    """|θ| of some weights as radix keys, computed once for several selections on the same θ.

    A Dynamic ASR Pathways event ranks every language's candidates on weights that do not
    change during the event: the absolute values, the finiteness check and the keys are made
    once (one int32 per weight) instead of once per language; a language's scores are then
    one masking pass (``masked``: 0 outside its region, like the -1 filler).  Selections with
    ``magnitudes=`` give exactly the masks they give without.
    """

    def __init__(self, weights: nn.Module | Mapping[str, Tensor], names: Iterable[str]):
        self.keys = {n: _radix_keys(_scores(n, w, None)) for n, w in _weights(weights, names).items()}

    def masked(self, name: str, region: Tensor | None) -> Tensor:
        key = self.keys[name]
        if region is None:
            return key
        if region.numel() != key.numel():
            raise ValueError(f"candidates {name!r} has {region.numel()} elements, the weight {key.numel()}")
        region = region.reshape(-1).to(key.device)
        if key.device.type == "cpu":  # NumPy's product: ~3x torch's on the 2-core VM
            return torch.from_numpy(np.multiply(key.numpy(), region.numpy(), dtype=np.int32))
        return key * as_uint8(region)


def _radix_keys(scores: Tensor) -> Tensor:
    """Order-preserving int32 keys: a float32 >= 0 has its bit pattern + 1, the -1 filler 0."""
    return torch.where(scores >= 0, scores.view(torch.int32) + 1, torch.zeros((), dtype=torch.int32, device=scores.device))


def _hi_histogram(key: Tensor) -> Tensor:
    """Counts of the keys' high 16 bits (keys are in [0, 2^31)): the first pass of the radix select."""
    return torch.bincount(key >> 16, minlength=1 << 15)


def _radix_threshold(hi_hist: Tensor, keys: Callable[[], Iterable[Tensor]], k: int) -> tuple[int, int, int]:
    """The k-th largest key and how many keys are > and >= it (1 <= k <= the number of keys).

    ``hi_hist``: the sum of :func:`_hi_histogram` over the keys; ``keys()`` yields them (one tensor
    or many parts) again for the second pass, a histogram of the low 16 bits within the bucket.
    """
    ge = hi_hist.flip(0).cumsum(0).flip(0)  # ge[b] = #(hi >= b)
    b = int((ge >= k).sum()) - 1
    above = int(ge[b + 1]) if b + 1 < ge.numel() else 0
    lo_hist: Tensor | None = None
    for key in keys():
        h = torch.bincount(key[(key >> 16) == b] & 0xFFFF, minlength=1 << 16)
        lo_hist = h if lo_hist is None else lo_hist + h
    ge2 = lo_hist.flip(0).cumsum(0).flip(0)
    lo = int((ge2 >= k - above).sum()) - 1
    return (b << 16) | lo, above + (int(ge2[lo + 1]) if lo + 1 < ge2.numel() else 0), above + int(ge2[lo])


def _radix_kth_largest(key: Tensor, k: int) -> tuple[int, int, int]:
    """:func:`_radix_threshold` of one tensor of keys."""
    return _radix_threshold(_hi_histogram(key), lambda: (key,), k)


def _select(
    weights: dict[str, Tensor], keep: dict[str, int] | int, candidates: MaskSet | None,
    magnitudes: Magnitudes | None = None,
) -> PruneResult:
    """Keep the top-|θ| elements: ``keep`` per tensor (dict) or over all tensors (int).

    ``magnitudes``: keys of these weights made once (:class:`Magnitudes`), the same result.
    """
    if candidates is not None:
        missing = [n for n in weights if n not in candidates]
        if missing:
            raise ValueError(f"candidates: no mask for {missing[0]!r}")
    regions = {n: (candidates[n] if candidates is not None else None) for n in weights}
    shortfall: dict[str, tuple[int, int]] = {}
    masks: dict[str, Tensor] = {}
    if isinstance(keep, dict):
        for n, w in weights.items():
            k = keep[n]
            if regions[n] is not None:
                size = count_true(regions[n])
                if size < k:
                    shortfall[n] = (size, k)
                    k = size
            if magnitudes is not None:
                m = _top_k_keys(magnitudes.masked(n, regions[n]), k)
            else:
                m = _top_k(_scores(n, w, regions[n]), k)
            masks[n] = m.view(w.shape).to(w.device)
        return PruneResult(MaskSet(masks), shortfall)
    if not weights:
        return PruneResult(MaskSet({}), shortfall)
    if sum(w.numel() for w in weights.values()) >= RADIX_MIN_NUMEL:
        return _select_global_by_parts(weights, keep, regions, magnitudes)
    device = next(iter(weights.values())).device
    if magnitudes is not None:  # keys order like scores (0 = outside the region, like -1)
        keys = torch.cat([magnitudes.masked(n, regions[n]).to(device) for n in weights])
        return _split_global(weights, keys, keep, candidates is not None, _top_k_keys, keys > 0)
    scores = torch.cat([_scores(n, w, regions[n]).to(device) for n, w in weights.items()])
    return _split_global(weights, scores, keep, candidates is not None, _top_k, scores >= 0)


def _split_global(weights: dict[str, Tensor], flat_scores: Tensor, k: int, has_region: bool, top_k, inside: Tensor):
    """Global top-k of concatenated scores (or keys), cut back into the tensors' masks."""
    shortfall: dict[str, tuple[int, int]] = {}
    if has_region:
        size = count_true(inside)
        if size < k:
            shortfall[GLOBAL] = (size, k)
            k = size
    flat = top_k(flat_scores, k)
    masks = {n: part.view(w.shape).to(w.device)
             for (n, w), part in zip(weights.items(), torch.split(flat, [w.numel() for w in weights.values()]))}
    return PruneResult(MaskSet(masks), shortfall)


def _select_global_by_parts(weights: dict[str, Tensor], k: int, regions: dict[str, Tensor | None],
                            magnitudes: Magnitudes | None = None) -> PruneResult:
    """Global top-k without concatenating the scores: the radix select of :func:`_top_k`, tensor by tensor.

    Exactly the mask of ``_top_k(torch.cat(scores), k)`` (same threshold, ties to the lower
    index in the concatenated order), but the extra memory is one int32 key per weight (kept
    per tensor) plus one tensor's temporaries, not the scores, their concatenation and its
    keys for every prunable weight at once.
    """
    keys: dict[str, Tensor] = {}  # without magnitudes: kept from the first pass

    def key_of(n: str) -> Tensor:  # with magnitudes: one masking pass each time, nothing kept
        return magnitudes.masked(n, regions[n]) if magnitudes is not None else keys[n]

    hi_hist: Tensor | None = None
    size = 0  # elements inside the candidate regions (keys > 0)
    for n, w in weights.items():
        if magnitudes is None:
            keys[n] = _radix_keys(_scores(n, w, regions[n]))
        key = key_of(n)
        size += count_true(key > 0)
        h = _hi_histogram(key)
        hi_hist = h if hi_hist is None else hi_hist + h
    shortfall: dict[str, tuple[int, int]] = {}
    if any(r is not None for r in regions.values()) and size < k:
        shortfall[GLOBAL] = (size, k)
        k = size
    total = sum(w.numel() for w in weights.values())
    if k <= 0 or k >= total:
        return PruneResult(MaskSet({n: torch.full(w.shape, k > 0, dtype=torch.bool, device=w.device)
                                    for n, w in weights.items()}), shortfall)
    thr, greater, at_least = _radix_threshold(hi_hist, lambda: (key_of(n) for n in weights), k)
    short = k - greater  # ties still to keep
    every_tie = at_least == k  # no tie left out: one comparison per tensor
    masks: dict[str, Tensor] = {}
    for n, w in weights.items():
        key = key_of(n)
        keys.pop(n, None)
        m = key >= thr if every_tie else key > thr
        if short > 0 and not every_tie:
            tie = (key == thr).nonzero().squeeze(1)[:short]
            m[tie] = True
            short -= tie.numel()
        masks[n] = m.view(w.shape).to(w.device)
    return PruneResult(MaskSet(masks), shortfall)


def _positive_int(value: object, option: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{option} must be a positive integer, got {value!r}")
    return int(value)


def _check_scope(scope: str) -> None:
    if scope not in ("tensor", "global"):
        raise ValueError(f"scope must be 'tensor' or 'global', got {scope!r}")


def _keep_counts(weights: Mapping[str, Tensor], sparsity: float, scope: str) -> dict[str, int] | int:
    """Elements kept at ``sparsity``: per tensor (a dict) or over all tensors together (an int)."""
    if scope == "tensor":
        return {n: round((1.0 - sparsity) * t.numel()) for n, t in weights.items()}
    return round((1.0 - sparsity) * sum(t.numel() for t in weights.values()))


def magnitude_prune(
    weights: nn.Module | Mapping[str, Tensor],
    sparsity: float,
    *,
    names: Iterable[str] | None = None,
    scope: str = "tensor",
    candidates: MaskSet | None = None,
    magnitudes: Magnitudes | None = None,
) -> PruneResult:
    """Masks keeping the largest |θ| at ``sparsity`` (``magnitudes``: |θ| made once, :class:`Magnitudes`).

    ``names`` default to ``candidates.names``, else :func:`prunable_names` of a module.
    ``scope="tensor"`` keeps ``round((1-s)·n)`` per tensor; ``"global"`` ranks all tensors
    together and keeps ``round((1-s)·N)`` in total.  With ``candidates`` only elements
    inside the region are ranked (sparsity is still measured against the full tensor); IMP
    passes its current mask so pruned weights cannot return, Dynamic ASR Pathways passes
    c_z.  If a region is smaller than the keep count, all of it is kept and
    :attr:`PruneResult.shortfall` says so.
    """
    s = check_sparsity(sparsity)
    _check_scope(scope)
    if names is None:
        if candidates is not None:
            names = candidates.names
        elif isinstance(weights, nn.Module):
            names = prunable_names(weights)
        else:
            names = list(weights)
    w = _weights(weights, names)
    if not w:
        raise ValueError("magnitude_prune: no tensors to prune (pass names=...)")
    return _select(w, _keep_counts(w, s, scope), candidates, magnitudes)


def random_prune(
    weights: nn.Module | Mapping[str, Tensor],
    sparsity: float,
    *,
    generator: torch.Generator,
    names: Iterable[str] | None = None,
    scope: str = "tensor",
) -> PruneResult:
    """Masks keeping a uniformly random subset at ``sparsity`` (the ASR Pathways paper's
    random-mask control).

    Exactly the keep counts of :func:`magnitude_prune` (per tensor or global), chosen by
    ranking i.i.d. uniform scores drawn from ``generator`` instead of |θ|; the weights'
    values are not read, only their names and shapes.  Deterministic for a generator state.
    """
    s = check_sparsity(sparsity)
    _check_scope(scope)
    if names is None:
        names = prunable_names(weights) if isinstance(weights, nn.Module) else list(weights)
    w = _weights(weights, names)
    if not w:
        raise ValueError("random_prune: no tensors to prune (pass names=...)")
    scores = {n: torch.rand(t.shape, generator=generator, dtype=torch.float32).to(t.device) for n, t in w.items()}
    return _select(scores, _keep_counts(w, s, scope), None)


def rerank(
    weights: nn.Module | Mapping[str, Tensor],
    masks: MaskSet,
    *,
    candidates: MaskSet | None = None,
    scope: str = "tensor",
    magnitudes: Magnitudes | None = None,
) -> PruneResult:
    """Re-rank ``masks`` by magnitude at their current sparsity (exact kept counts).

    Per tensor (``scope="tensor"``) each tensor keeps as many elements as ``masks`` keeps
    there; globally the total count is kept.  Ranking runs over ``candidates`` (default:
    the whole tensor), so a pruned weight whose magnitude grew can come back.
    """
    _check_scope(scope)
    w = _weights(weights, masks.names)
    keep: dict[str, int] | int = masks.kept_per_tensor() if scope == "tensor" else masks.kept()
    return _select(w, keep, candidates, magnitudes)


def adaptive_update_(
    model: nn.Module,
    masks: MaskSet,
    *,
    sparsity: float | None = None,
    candidates: MaskSet | None = None,
    scope: str = "tensor",
) -> PruneResult:
    """Adaptive masking step: re-rank, then prune softly (zero the weights outside the new mask).

    ``sparsity=None`` re-ranks at the current kept counts (every n steps); a value prunes
    one step further along the schedule (every T steps).  Nothing is frozen: zeroed weights
    stay trainable and can return at the next re-rank if they grow.
    """
    if sparsity is None:
        result = rerank(model, masks, candidates=candidates, scope=scope)
    else:
        result = magnitude_prune(model, sparsity, names=masks.names, scope=scope, candidates=candidates)
    result.masks.apply_(model)
    return result


@torch.no_grad()
def rewind_(
    model: nn.Module,
    theta0: Mapping[str, Tensor],
    masks: MaskSet,
    *,
    rewind_unmasked: bool = True,
) -> None:
    """Lottery-Ticket rewinding in place: survivors ← θ₀ exactly, pruned ← 0.

    ``theta0`` is a state dict (the dense model or an early checkpoint).  Parameters
    without a mask (biases, norms, ...) are reset to θ₀ as well unless
    ``rewind_unmasked=False``.
    """
    params = dict(model.named_parameters())
    masks.check_compatible(model)
    names = list(params) if rewind_unmasked else masks.names
    for n in names:
        if n not in theta0:
            raise ValueError(f"theta0 has no tensor {n!r}")
        if tuple(theta0[n].shape) != tuple(params[n].shape):
            raise ValueError(
                f"theta0 tensor {n!r} has shape {tuple(theta0[n].shape)}, the model's is {tuple(params[n].shape)}"
            )
    for n in names:
        p = params[n]
        p.copy_(theta0[n])
        if n in masks:
            p.masked_fill_(~masks[n].to(p.device), 0)


class _RoundSchedule:
    """Sparsity rising in rounds of ``interval`` steps: round k starts at step k·interval.

    Step 0 is at ``initial_sparsity`` (round 0, set up before training); prune events
    happen at steps T, 2T, ..., num_rounds·T; from then on the sparsity is final.
    """

    def __init__(self, final_sparsity: float, initial_sparsity: float, interval: int):
        self.final = check_sparsity(final_sparsity, "final_sparsity")
        self.initial = check_sparsity(initial_sparsity, "initial_sparsity")
        if self.initial > self.final:
            raise ValueError(f"initial_sparsity ({self.initial}) must not exceed final_sparsity ({self.final})")
        self.interval = _positive_int(interval, "interval")
        self.num_rounds = 0

    def sparsity_at_round(self, k: int) -> float:
        raise NotImplementedError

    def sparsity_at(self, step: int) -> float:
        """Target sparsity in force at training step ``step`` (≥ 0)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return self.sparsity_at_round(step // self.interval)

    def is_prune_step(self, step: int) -> bool:
        """True at steps T, 2T, ..., num_rounds·T."""
        return step > 0 and step % self.interval == 0 and step // self.interval <= self.num_rounds

    @property
    def last_prune_step(self) -> int:
        return self.num_rounds * self.interval


class CubicSchedule(_RoundSchedule):
    """Zhu & Gupta (2017): s_k = s_f + (s_i − s_f)(1 − k/N)³ at step t = k·T, k = 0..N."""

    def __init__(self, final_sparsity: float, *, interval: int, num_rounds: int, initial_sparsity: float = 0.0):
        super().__init__(final_sparsity, initial_sparsity, interval)
        self.num_rounds = _positive_int(num_rounds, "num_rounds")

    def sparsity_at_round(self, k: int) -> float:
        k = min(max(k, 0), self.num_rounds)
        return self.final + (self.initial - self.final) * (1.0 - k / self.num_rounds) ** 3

    def __repr__(self) -> str:
        return f"CubicSchedule({self.initial}->{self.final}, T={self.interval}, N={self.num_rounds})"


class FixedFractionSchedule(_RoundSchedule):
    """IMP rounds: prune ``fraction`` of the remaining weights each round, the last one clipped.

    s_k = min(s_f, 1 − (1 − s_i)(1 − p)^k); ``num_rounds`` is the first k reaching s_f.
    """

    def __init__(self, final_sparsity: float, *, fraction: float, interval: int, initial_sparsity: float = 0.0):
        super().__init__(final_sparsity, initial_sparsity, interval)
        if not isinstance(fraction, numbers.Real) or not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
        self.fraction = float(fraction)
        k = 0
        while self._raw(k) < self.final - 1e-12:
            k += 1
        self.num_rounds = k

    def _raw(self, k: int) -> float:
        return 1.0 - (1.0 - self.initial) * (1.0 - self.fraction) ** k

    def sparsity_at_round(self, k: int) -> float:
        k = max(k, 0)
        return self.final if k >= self.num_rounds else self._raw(k)

    def __repr__(self) -> str:
        return f"FixedFractionSchedule({self.initial}->{self.final}, p={self.fraction}, T={self.interval}, N={self.num_rounds})"


class AdaptiveSchedule:
    """Adaptive masking timing: prune along ``schedule`` every T steps, re-rank every n < T steps.

    Re-rank steps are the positive multiples of n that are not prune steps (a prune step
    re-ranks anyway).  They continue after the last prune; a trainer that wants a fixed
    final mask stops asking.
    """

    def __init__(self, schedule: _RoundSchedule, rerank_interval: int):
        rerank_interval = _positive_int(rerank_interval, "rerank_interval")
        if rerank_interval >= schedule.interval:
            raise ValueError(
                f"rerank_interval (n={rerank_interval}) must be smaller than the prune interval "
                f"(T={schedule.interval})"
            )
        self.schedule = schedule
        self.rerank_interval = rerank_interval

    def sparsity_at(self, step: int) -> float:
        return self.schedule.sparsity_at(step)

    def is_prune_step(self, step: int) -> bool:
        return self.schedule.is_prune_step(step)

    def is_rerank_step(self, step: int) -> bool:
        return step > 0 and step % self.rerank_interval == 0 and not self.schedule.is_prune_step(step)
