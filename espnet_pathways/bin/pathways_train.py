#!/usr/bin/env python3
"""Train an ESPnet transducer with language pathways (LAP, IMP, LTH, ASR Pathways, adaptive, Dynamic ASR Pathways).

    python -m espnet_pathways.bin.pathways_train <the arguments of
        python -m espnet2.bin.asr_transducer_train> --config conf/pathways/<mode>.yaml

The same command line as ESPnet's transducer training plus a ``pathways:`` section in the
config (or ``--pathways key=value``); see :mod:`espnet_pathways.controller` for the modes
and keys and :mod:`espnet_pathways.task` for what changes in ESPnet.  The plugin's RNN-T
loss is installed (see :mod:`espnet_pathways.espnet_compat`).  A bad option, file or batch
ends the run with one ``pathways_train: error: ...`` line on stderr and exit status 1.
"""

import sys
from pathlib import Path

from espnet_pathways.espnet_compat import install_transducer_loss

# At import time: ESPnet's --multiprocessing_distributed workers re-import this module.
install_transducer_loss()

from espnet_pathways.controller import PathwaysError  # noqa: E402
from espnet_pathways.task import ASRPathwaysTask  # noqa: E402


def get_parser():
    return ASRPathwaysTask.get_parser()


def _output_dir(argv) -> Path | None:
    for i, a in enumerate(argv):
        if a == "--output_dir" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if a.startswith("--output_dir="):
            return Path(a.split("=", 1)[1])
    return None


def run_task(task, name: str, cmd=None) -> None:
    """``task.main(cmd)`` with the plugin's errors as one ``<name>: error: ...`` line, exit 1."""
    install_transducer_loss()
    out = _output_dir(sys.argv[1:] if cmd is None else cmd)
    fresh = out is not None and not (out / "config.yaml").exists()
    try:
        task.main(cmd=cmd)
    except PathwaysError as e:
        # Some checks need the data iterators, which ESPnet builds after writing config.yaml:
        # a run that failed before its first step leaves no config behind.
        if fresh and not (out / "checkpoint.pth").exists():
            (out / "config.yaml").unlink(missing_ok=True)
        print(f"{name}: error: {e}", file=sys.stderr)
        sys.exit(1)


def main(cmd=None):
    run_task(ASRPathwaysTask, "pathways_train", cmd)


if __name__ == "__main__":
    main()
