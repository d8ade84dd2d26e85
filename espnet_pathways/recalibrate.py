"""BatchNorm statistics for one mode of a dual-mode supernet.

The conformer convolution module normalises with BatchNorm, whose running statistics the
sparse streaming pass and the dense full-context pass share during dual-mode training, so
neither exported model has statistics of its own mode.  :func:`recalibrate_batchnorm`
resets every BatchNorm layer's running statistics and re-estimates them as the plain
average over calibration batches (``momentum=None``), computed in the exported model's
own mode (its weights, its attention chunk), with everything else in eval mode (no
dropout, no SpecAugment); no weight changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from espnet_pathways.model import encoder_forward, features


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    chunk: int | None | Callable[[], int | None],
) -> int:
    """Re-estimate ``model``'s BatchNorm statistics on ``batches`` of (speech, lengths).

    ``chunk``: the encoder's attention chunk for every batch (``None``: full context), or a
    function drawing one per batch.  Returns the number of batches used (0: the model has
    no BatchNorm, nothing is run).  The model is left in eval mode.
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    model.eval()
    momenta = [bn.momentum for bn in layers]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
        bn.train()
    n = 0
    try:
        for speech, lengths in batches:
            x, x_len = features(model, speech, lengths)
            encoder_forward(model.encoder, x, x_len, chunk() if callable(chunk) else chunk)
            n += 1
    finally:
        for bn, m in zip(layers, momenta):
            bn.momentum = m
        model.eval()
    if n == 0:
        raise ValueError("recalibration: no calibration batches")
    return n
