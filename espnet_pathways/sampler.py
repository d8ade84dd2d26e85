"""Language-aware batch sampler: monolingual batches in a configured language order.

Each language's utterances are sorted by length and cut into batches (a ``batch_bins``
budget on summed lengths -- or on ``count × longest`` with ``padding=True`` -- or a fixed
``batch_size``), so every batch is monolingual.  The composition of the batches is fixed;
each epoch shuffles the batch order within each language and interleaves the languages by
a policy:

* ``round_robin``: cycle through ``languages`` in order, skipping exhausted ones;
* ``proportional``: draw the next language with probability ∝ its remaining batches;
* ``temperature``: draw with probability ∝ (n_l/N)^β among languages with batches left,
  n_l = language l's batches per epoch (β=1 ~ proportional, β=0 uniform).

Every utterance appears exactly once per epoch (so with β < 1 the small languages run out
first and the end of an epoch is drawn from the large ones).  The order is a function of
(seed, epoch) only.  ``accum_grad=k`` draws runs of k batches of one language, so the k
micro-batches of one optimizer step share a language; to make runs exact, each language's
batch count is raised to a multiple of k by splitting its largest batches.

DDP: ESPnet gives rank r the slice ``batch[r::world_size]`` of every global batch.  This
sampler does the same when given ``world_size``/``rank``: all ranks compute the same global
batch list, hence the same language at every step.  A batch with fewer utterances than
``world_size`` is merged into its neighbour (shorter utterances) when the batches are cut,
so every rank gets at least one utterance; a language with fewer than ``world_size``
utterances is an error.  Slice either here or in ESPnet, not both: with ``world_size > 1``
the batches this sampler returns are already this rank's share.

ESPnet interface (duck-typed, no espnet import): ``__len__``, ``__iter__`` (batches of
:attr:`epoch`), ``generate(seed)`` (= :meth:`batches_for_epoch`; ESPnet's iterator factories
pass ``epoch + seed``).  ESPnet's ``SequenceIterFactory`` only calls ``generate`` on an
``AbsSampler`` instance: register the class once in the glue with
``AbsSampler.register(LanguageBatchSampler)``, and build the factory with ``shuffle=False``
(its shuffle would undo the language order).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

POLICIES = ("round_robin", "proportional", "temperature")


def read_utt2lang(path: str | Path) -> dict[str, str]:
    """Read ``utt_id language`` lines (``utt2lang`` / ESPnet ``utt2category``)."""
    out: dict[str, str] = {}
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{i}: expected 'utt_id language', got {line!r}")
        if parts[0] in out:
            raise ValueError(f"{path}:{i}: utterance {parts[0]!r} listed twice")
        out[parts[0]] = parts[1]
    return out


def read_lengths(path: str | Path) -> dict[str, int]:
    """Read an ESPnet shape file (``utt_id 12345`` or ``utt_id 12345,80``): utt -> first dim."""
    out: dict[str, int] = {}
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            length = int(parts[1].split(",")[0])
        except ValueError:
            raise ValueError(f"{path}:{i}: expected 'utt_id length[,dim...]', got {line!r}") from None
        if parts[0] in out:
            raise ValueError(f"{path}:{i}: utterance {parts[0]!r} listed twice")
        out[parts[0]] = length
    return out


class LanguageBatchSampler:
    """Monolingual batches of utterance ids, language order by policy, per-epoch deterministic.

    ``utt2lang`` and ``lengths`` are file paths (see :func:`read_utt2lang`,
    :func:`read_lengths`) or mappings.  The utterances are those of ``lengths``; each must
    have a language.  ``languages`` (default: all present, sorted) selects and orders the
    languages; utterances of other languages are left out.  Exactly one of ``batch_bins``
    and ``batch_size`` is given.
    """

    def __init__(
        self,
        utt2lang: str | Path | Mapping[str, str],
        lengths: str | Path | Mapping[str, int],
        *,
        batch_bins: int | None = None,
        batch_size: int | None = None,
        padding: bool = False,
        policy: str = "round_robin",
        beta: float = 1.0,
        languages: Sequence[str] | None = None,
        seed: int = 0,
        accum_grad: int = 1,
        world_size: int = 1,
        rank: int = 0,
    ):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}; got {policy!r}")
        if (batch_bins is None) == (batch_size is None):
            raise ValueError("give exactly one of batch_bins and batch_size")
        for option, value in (("batch_bins", batch_bins), ("batch_size", batch_size)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{option} must be a positive integer, got {value!r}")
        for option, value in (("accum_grad", accum_grad), ("world_size", world_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{option} must be a positive integer, got {value!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank!r}")
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        lang_src = str(utt2lang) if not isinstance(utt2lang, Mapping) else "utt2lang"
        len_src = str(lengths) if not isinstance(lengths, Mapping) else "lengths"
        u2l = dict(utt2lang) if isinstance(utt2lang, Mapping) else read_utt2lang(utt2lang)
        u2n = dict(lengths) if isinstance(lengths, Mapping) else read_lengths(lengths)
        if not u2n:
            raise ValueError(f"{len_src}: no utterances")
        missing = [u for u in u2n if u not in u2l]
        if missing:
            raise ValueError(f"{lang_src}: no language for utterance {missing[0]!r} ({len(missing)} in all)")
        present = {u2l[u] for u in u2n}
        self.languages = sorted(present) if languages is None else list(languages)
        if len(set(self.languages)) != len(self.languages):
            raise ValueError(f"languages: duplicate entries in {self.languages}")
        for lang in self.languages:
            if lang not in present:
                raise ValueError(f"languages: {lang!r} has no utterances in {len_src}")

        self.policy, self.beta, self.seed = policy, float(beta), seed
        self.accum_grad, self.world_size, self.rank = accum_grad, world_size, rank
        self.epoch = 1
        self.utt2lang = {u: u2l[u] for u in u2n if u2l[u] in self.languages}
        self._batches: dict[str, list[tuple[str, ...]]] = {}
        for lang in self.languages:
            utts = sorted((u for u in self.utt2lang if self.utt2lang[u] == lang), key=lambda u: (u2n[u], u))
            if len(utts) < world_size:
                raise ValueError(f"world_size: language {lang!r} has {len(utts)} utterances, fewer than {world_size}")
            cut = self._cut(utts, u2n, batch_bins, batch_size, padding)
            cut = self._fit(lang, cut)
            # longest first inside a batch, as ESPnet's sort_in_batch=descending
            self._batches[lang] = [tuple(reversed(b)) for b in cut]

    def _cut(self, utts: list[str], u2n: Mapping[str, int], bins: int | None, size: int | None, padding: bool):
        if size is not None:
            return [utts[i : i + size] for i in range(0, len(utts), size)]
        batches: list[list[str]] = []
        cur: list[str] = []
        total = 0
        for u in utts:  # ascending length: u is the longest so far
            cost = (len(cur) + 1) * u2n[u] if padding else total + u2n[u]
            if cur and cost > bins:
                batches.append(cur)
                cur, total = [], 0
            cur.append(u)
            total += u2n[u]
        batches.append(cur)
        return batches

    def _fit(self, lang: str, batches: list[list[str]]) -> list[list[str]]:
        """Merge batches smaller than world_size; split the largest until count % accum_grad == 0."""
        ws, k = self.world_size, self.accum_grad
        i = 0
        while i < len(batches):
            if len(batches) > 1 and len(batches[i]) < ws:
                j = i - 1 if i > 0 else i + 1
                lo, hi = min(i, j), max(i, j)
                batches[lo : hi + 1] = [batches[lo] + batches[hi]]
                i = max(lo - 1, 0)
            else:
                i += 1
        while len(batches) % k:
            i = max(range(len(batches)), key=lambda j: len(batches[j]))
            b = batches[i]
            if len(b) < 2 * ws:
                raise ValueError(
                    f"accum_grad: language {lang!r} cannot be cut into a multiple of {k} batches "
                    f"of at least {ws} utterances"
                )
            half = len(b) // 2
            batches[i : i + 1] = [b[:half], b[half:]]
        return batches

    # -- epochs -----------------------------------------------------------------------
    def _global(self, epoch: int) -> tuple[list[tuple[str, ...]], list[str]]:
        if not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        rng = np.random.default_rng([self.seed, int(epoch)])
        k = self.accum_grad
        runs: dict[str, list[list[tuple[str, ...]]]] = {}
        for lang in self.languages:
            bs = self._batches[lang]
            order = rng.permutation(len(bs))
            shuffled = [bs[i] for i in order]
            runs[lang] = [shuffled[i : i + k] for i in range(0, len(shuffled), k)]
        left = {lang: len(r) for lang, r in runs.items()}
        weights = {lang: (len(self._batches[lang]) / len(self)) ** self.beta for lang in self.languages}
        order_langs: list[str] = []
        rr = 0
        while any(left.values()):
            avail = [lang for lang in self.languages if left[lang]]
            if self.policy == "round_robin":
                while not left[self.languages[rr % len(self.languages)]]:
                    rr += 1
                lang = self.languages[rr % len(self.languages)]
                rr += 1
            else:
                w = np.array([left[x] if self.policy == "proportional" else weights[x] for x in avail], dtype=float)
                lang = avail[int(rng.choice(len(avail), p=w / w.sum()))]
            order_langs.append(lang)
            left[lang] -= 1
        batches: list[tuple[str, ...]] = []
        langs: list[str] = []
        taken = {lang: 0 for lang in self.languages}
        for lang in order_langs:
            run = runs[lang][taken[lang]]
            taken[lang] += 1
            batches.extend(run)
            langs.extend([lang] * len(run))
        return batches, langs

    def batches_for_epoch(self, epoch: int) -> list[tuple[str, ...]]:
        """This rank's batches for ``epoch``: ``batch[rank::world_size]`` of the global list."""
        batches, _ = self._global(epoch)
        return [b[self.rank :: self.world_size] for b in batches]

    def languages_for_epoch(self, epoch: int) -> list[str]:
        """The language of each batch of ``epoch`` (the same on every rank)."""
        return self._global(epoch)[1]

    # -- ESPnet sampler interface -----------------------------------------------------
    def __len__(self) -> int:
        return sum(len(b) for b in self._batches.values())

    def __iter__(self) -> Iterator[tuple[str, ...]]:
        return iter(self.batches_for_epoch(self.epoch))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generate(self, seed: int) -> list[tuple[str, ...]]:
        """ESPnet hook: batches for the epoch key ``seed`` (ESPnet passes ``epoch + seed``)."""
        return self.batches_for_epoch(seed)

    def __repr__(self) -> str:
        counts = ", ".join(f"{lang}: {len(self._batches[lang])}" for lang in self.languages)
        return (
            f"{type(self).__name__}(policy={self.policy}, batches={{{counts}}}, "
            f"accum_grad={self.accum_grad}, world_size={self.world_size})"
        )
