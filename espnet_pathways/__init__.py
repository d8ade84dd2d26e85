"""espnet-pathways: language-specific sparse sub-networks ("pathways") for ESPnet transducers.

The core (`masks`, `pruning`, `optim`, `sampler`, `swap`, `controller`, `loss`) imports
torch and numpy only; ESPnet glue lives in `espnet_compat`, `model`, `task`, `export` and
the entry points in `bin/`.
"""

__version__ = "0.1.0"
