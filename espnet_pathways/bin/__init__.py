"""Command-line entry points (``python -m espnet_pathways.bin.<name>``).

Importing this package turns typeguard's import-time instrumentation off before any entry
point imports ESPnet (``espnet_compat.skip_typeguard``: ~13 s less start-up per process on
the 2-core CPU; ``ESPNET_PATHWAYS_TYPECHECK=1`` keeps it).
"""
from espnet_pathways.espnet_compat import skip_typeguard

skip_typeguard()
