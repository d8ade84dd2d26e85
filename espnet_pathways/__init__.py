"""espnet-pathways: language-specific sparse sub-networks ("pathways") for ESPnet transducers.

The core modules (`masks`, `pruning`, `optim`, `sampler`, `loss`) import torch only;
ESPnet glue lives in `model`, `task`, `trainer` and `bin/`.
"""

__version__ = "0.1.0"
