"""Pathway modes: one small rule class per mode (see :mod:`espnet_pathways.modes.base`).

``MODES`` maps ``pathways.mode`` names to rule classes, in registration order (the order
errors and docs list them in): the import order below.
"""

# isort: off
from espnet_pathways.modes import prune  # noqa: F401  imp, lth, lap
from espnet_pathways.modes import pathways  # noqa: F401
from espnet_pathways.modes import adaptive  # noqa: F401
from espnet_pathways.modes import dynamic  # noqa: F401
from espnet_pathways.modes import dual  # noqa: F401
# isort: on
from espnet_pathways.modes.base import MODES, ModeRule, Pass, PathwaysError, register

__all__ = ["MODES", "ModeRule", "Pass", "PathwaysError", "register"]
