"""Frame targets for encoder SSL: features per encoder frame, k-means, label files.

One feature vector per *encoder* frame of an utterance, computed with the SSL model's own
frontend so that the frame count is exactly the encoder's (:meth:`EncoderSSLModel.frame_counts`):

* ``mfcc`` (first iteration, as HuBERT): the frontend's log-mel filterbank -> DCT (13
  coefficients) + deltas + delta-deltas (39 dims), mean/variance-normalised per utterance,
  averaged over the filterbank frames that fall into each encoder frame (frame i covers
  feature frames ⌊i·T/N⌋ .. ⌊(i+1)·T/N⌋ − 1 of T feature frames and N encoder frames);
* ``layer<k>`` (second iteration): the output of encoder block k (1-based) of a pre-trained
  SSL model, full context, no masking.

:func:`fit_kmeans` fits scikit-learn's ``MiniBatchKMeans`` (seeded) on a seeded sample of
the frames of all languages; :class:`KMeansTargets` keeps the model with the feature type it
was fitted on and refuses features of another type or size.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torchaudio

from espnet_pathways.modes import PathwaysError
from espnet_pathways.ssl import EncoderSSLModel, subsampled_lengths

N_MFCC = 13


def pool(feats: torch.Tensor, frames: int) -> torch.Tensor:
    """(T, D) -> (frames, D): the mean of the feature frames each encoder frame covers."""
    t = feats.size(0)
    if frames < 1 or t < frames:
        raise ValueError(f"cannot pool {t} feature frames into {frames} encoder frames")
    edges = [(i * t) // frames for i in range(frames + 1)]
    return torch.stack([feats[edges[i]:max(edges[i + 1], edges[i] + 1)].mean(0) for i in range(frames)])


@torch.no_grad()
def mfcc_per_frame(model: EncoderSSLModel, speech: torch.Tensor) -> torch.Tensor:
    """39-dim MFCC (+Δ, ΔΔ), utterance-normalised, one row per encoder frame of ``speech`` (1-D)."""
    n = torch.tensor([speech.numel()])
    logmel, flen = model.frontend(speech[None].float(), n)
    logmel = logmel[0, : int(flen[0])]
    dct = torchaudio.functional.create_dct(N_MFCC, logmel.size(-1), "ortho")
    c = logmel @ dct  # (T, 13)
    d1 = torchaudio.functional.compute_deltas(c.T[None])[0].T
    d2 = torchaudio.functional.compute_deltas(d1.T[None])[0].T
    f = torch.cat([c, d1, d2], dim=1)
    f = (f - f.mean(0)) / f.std(0).clamp(min=1e-5)
    frames = int(subsampled_lengths(model.encoder.embed, flen)[0])
    return pool(f, frames)


@torch.no_grad()
def layer_per_frame(model: EncoderSSLModel, speech: torch.Tensor, layer: int) -> torch.Tensor:
    """Output of encoder block ``layer`` (1-based), full context, one row per encoder frame."""
    blocks = model.encoder.encoders.blocks
    if not 1 <= layer <= len(blocks):
        raise PathwaysError(f"--feature layer{layer}: the encoder has blocks 1..{len(blocks)}")
    out: list[torch.Tensor] = []
    h = blocks[layer - 1].register_forward_hook(lambda m, a, o: out.append(o[0] if isinstance(o, tuple) else o))
    was, chunk = model.training, model.chunk_size
    try:
        model.eval()
        model.chunk_size = None
        model.encode(speech[None].float(), torch.tensor([speech.numel()]), mask=False)
    finally:
        h.remove()
        model.train(was)
        model.chunk_size = chunk
    return out[0][0]


def features_for(model: EncoderSSLModel, speech: torch.Tensor, feature: str) -> torch.Tensor:
    if feature == "mfcc":
        return mfcc_per_frame(model, speech)
    if feature.startswith("layer") and feature[5:].isdigit():
        return layer_per_frame(model, speech, int(feature[5:]))
    raise PathwaysError(f"--feature: {feature!r} is not mfcc or layer<k>")


class KMeansTargets:
    """A fitted k-means model and what it was fitted on (feature type, dimension, seed, frames)."""

    def __init__(self, kmeans, feature: str, dim: int, seed: int, frames: int):
        self.kmeans, self.feature, self.dim, self.seed, self.frames = kmeans, feature, dim, seed, frames

    @property
    def k(self) -> int:
        return int(self.kmeans.n_clusters)

    def labels(self, feats: torch.Tensor, feature: str) -> np.ndarray:
        if feature != self.feature or feats.size(1) != self.dim:
            raise PathwaysError(f"--kmeans: fitted on {self.feature} features ({self.dim} dims), "
                                f"given {feature} features ({feats.size(1)} dims)")
        return self.kmeans.predict(feats.double().numpy())

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            pickle.dump({"kmeans": self.kmeans, "feature": self.feature, "dim": self.dim, "seed": self.seed,
                         "frames": self.frames}, f)
        path.with_suffix(".json").write_text(json.dumps({"feature": self.feature, "dim": self.dim, "k": self.k,
                                                         "seed": self.seed, "frames": self.frames}, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> KMeansTargets:
        if not Path(path).is_file():
            raise PathwaysError(f"--kmeans: no such file {path}")
        with open(path, "rb") as f:
            d = pickle.load(f)  # noqa: S301 - our own file
        if not isinstance(d, dict) or "kmeans" not in d:
            raise PathwaysError(f"--kmeans: {path} is not a k-means file of espnet_pathways.ssl_targets")
        return cls(d["kmeans"], d["feature"], d["dim"], d["seed"], d["frames"])


def fit_kmeans(feats: Iterable[torch.Tensor], k: int, feature: str, seed: int, max_frames: int = 200_000) -> KMeansTargets:
    """MiniBatchKMeans (seeded) on at most ``max_frames`` frames drawn with ``seed`` from all of ``feats``."""
    from sklearn.cluster import MiniBatchKMeans

    allf = torch.cat(list(feats)).double().numpy()
    if len(allf) < k:
        raise PathwaysError(f"--k {k}: only {len(allf)} frames to cluster")
    rng = np.random.default_rng(seed)
    if len(allf) > max_frames:
        allf = allf[np.sort(rng.choice(len(allf), max_frames, replace=False))]
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=10_000, n_init=3, max_iter=100)
    km.fit(allf)
    return KMeansTargets(km, feature, allf.shape[1], seed, len(allf))


def read_scp(path: Path) -> Iterator[tuple[str, str]]:
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            utt, _, wav = line.partition(" ")
            yield utt, wav.strip()
