"""Statistics for comparing ASR systems: paired bootstrap intervals and a written verdict rule.

Framework-free (NumPy only), so the report and the tests use it without ESPnet.

Paired bootstrap (Bisani & Ney 2004)
------------------------------------
Two systems A and B decoded the same test utterances; per utterance i we have their error
counts e_A[i], e_B[i] (edit operations against the reference) and the reference length
n[i] (words or characters).  One bootstrap replicate draws the utterances with replacement
and recomputes both corpus-level error rates, ER = 100 · Σ e / Σ n, on the same draw; the
replicates' ER_A − ER_B give the 95% interval of the difference (percentile method).

Several languages: each language's test set is resampled on its own (stratified), and the
difference of the *unweighted mean over languages* is recomputed per replicate: the same
average the tables print.

Several seeds: a system's per-utterance errors are averaged over its seeds before
resampling ("pooled"), so the interval reflects test-set sampling of the seed-averaged
systems; run-to-run variation is judged separately by the sign rule below.

Verdict rule (:func:`verdict`)
-----------------------------
For a claim "A is better than B" (lower error rate):

* **supported** -- at least ``min_seeds`` seeds, A − B < 0 on *every* seed (on the metric
  the claim is about), and the pooled 95% interval lies entirely below 0;
* **refuted** -- at least ``min_seeds`` seeds, A − B > 0 on every seed, and the interval lies
  entirely above 0;
* **inconclusive** -- anything else (the interval is printed, and why).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_RESAMPLES = 2000
DEFAULT_MIN_SEEDS = 3


@dataclass(frozen=True)
class UttErrors:
    """Per-utterance error counts of one system on one test set (utterance ids sorted)."""

    utts: tuple[str, ...]
    errors: np.ndarray  # float: averaged over seeds when pooled
    lengths: np.ndarray  # reference length per utterance

    @property
    def rate(self) -> float:
        return 100.0 * float(self.errors.sum()) / max(float(self.lengths.sum()), 1.0)

    @classmethod
    def from_mapping(cls, per_utt: Mapping[str, Sequence[float]]) -> UttErrors:
        """From ``{utt: (errors, reference length)}``."""
        utts = tuple(sorted(per_utt))
        errs = np.array([float(per_utt[u][0]) for u in utts], dtype=np.float64)
        lens = np.array([float(per_utt[u][1]) for u in utts], dtype=np.float64)
        return cls(utts, errs, lens)


def pool(runs: Sequence[UttErrors]) -> UttErrors:
    """Seed-average of one system's runs on one test set (the same utterances in each)."""
    if not runs:
        raise ValueError("pool: no runs")
    first = runs[0]
    for r in runs[1:]:
        if r.utts != first.utts:
            raise ValueError("pool: runs scored different utterances")
        if not np.array_equal(r.lengths, first.lengths):
            raise ValueError("pool: runs have different reference lengths")
    return UttErrors(first.utts, np.mean([r.errors for r in runs], axis=0), first.lengths)


@dataclass(frozen=True)
class Interval:
    """A − B in percentage points: observed difference and the bootstrap interval."""

    delta: float
    low: float
    high: float
    resamples: int
    p_a_better: float  # share of replicates with A − B < 0

    def excludes_zero(self) -> int:
        """-1: entirely below 0 (A better), +1: entirely above 0 (B better), 0: contains 0."""
        return -1 if self.high < 0 else 1 if self.low > 0 else 0

    def __str__(self) -> str:
        return f"{self.delta:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def paired_bootstrap(
    a: Mapping[str, UttErrors] | UttErrors,
    b: Mapping[str, UttErrors] | UttErrors,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> Interval:
    """Interval of ER_A − ER_B (unweighted mean over the test sets of a mapping).

    ``a`` and ``b``: one :class:`UttErrors`, or ``{test set: UttErrors}`` with the same sets
    and the same utterances per set.  Deterministic for a given ``seed``.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if isinstance(a, UttErrors):
        a, b = {"": a}, {"": b}
    if set(a) != set(b) or not a:
        raise ValueError(f"paired_bootstrap: different test sets {sorted(a)} vs {sorted(b)}")
    rng = np.random.default_rng(seed)
    observed = []
    reps = np.zeros(resamples, dtype=np.float64)
    for key in sorted(a):
        ea, eb = a[key], b[key]
        if ea.utts != eb.utts:
            raise ValueError(f"paired_bootstrap: {key or 'test set'}: the systems scored different utterances")
        n = len(ea.utts)
        if n == 0:
            raise ValueError(f"paired_bootstrap: {key or 'test set'}: no utterances")
        observed.append(ea.rate - eb.rate)
        idx = rng.integers(0, n, size=(resamples, n))
        diff = ea.errors - eb.errors
        num = diff[idx].sum(axis=1)
        den = np.maximum(ea.lengths[idx].sum(axis=1), 1.0)
        reps += 100.0 * num / den
    k = len(a)
    reps /= k
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(reps, [tail, 1.0 - tail])
    return Interval(float(np.mean(observed)), float(low), float(high), resamples, float(np.mean(reps < 0)))


@dataclass
class Verdict:
    verdict: str  # supported | refuted | inconclusive | not tested
    interval: Interval | None
    per_seed: list[float] = field(default_factory=list)  # A − B per seed
    why: str = ""

    def __str__(self) -> str:
        iv = f"pooled A − B {self.interval}" if self.interval else "no interval"
        seeds = ", ".join(f"{d:+.2f}" for d in self.per_seed)
        return f"{self.verdict} ({iv}; per seed: {seeds or '–'}; {self.why})"


def verdict(per_seed: Sequence[float], interval: Interval | None, *, min_seeds: int = DEFAULT_MIN_SEEDS) -> Verdict:
    """The written rule of this module's docstring, for the claim "A better than B"."""
    per_seed = [float(d) for d in per_seed]
    if interval is None or not per_seed:
        return Verdict("not tested", interval, per_seed, "systems missing")
    n = len(per_seed)
    side = interval.excludes_zero()
    all_better = all(d < 0 for d in per_seed)
    all_worse = all(d > 0 for d in per_seed)
    if n < min_seeds:
        return Verdict("inconclusive", interval, per_seed, f"{n} seed(s), the rule needs {min_seeds}")
    if all_better and side == -1:
        return Verdict("supported", interval, per_seed, f"better on all {n} seeds, interval below 0")
    if all_worse and side == 1:
        return Verdict("refuted", interval, per_seed, f"worse on all {n} seeds, interval above 0")
    bits = []
    if not (all_better or all_worse):
        bits.append(f"sign differs between seeds ({sum(d < 0 for d in per_seed)}/{n} better)")
    if side == 0:
        bits.append("interval contains 0")
    elif (side == -1) != all_better:
        bits.append("seeds and interval disagree")
    return Verdict("inconclusive", interval, per_seed, "; ".join(bits))


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0
