#!/usr/bin/env python3
"""ESPnet's ``espnet2.bin.asr_transducer_train`` with the plugin's RNN-T loss installed.

    python -m espnet_pathways.bin.asr_transducer_train <the same arguments as
        python -m espnet2.bin.asr_transducer_train>

Identical command line, outputs and ``config.yaml`` (stock ESPnet loads them): the
differences are that ``scheduler_conf.max_steps: auto`` is resolved to the run's own optimizer
steps (``espnet_pathways.task.StockTransducerTask``; the recipe's ``--plugin_schedule
tristage``), and that ``import warprnnt_pytorch`` inside ESPnet's
``ESPnetASRTransducerModel._calc_transducer_loss`` finds the plugin's loss instead of exiting
(see :mod:`espnet_pathways.espnet_compat`).  The implementation is chosen with the environment
variable ``ESPNET_PATHWAYS_RNNT_LOSS`` = ``auto`` (default: pure PyTorch on CPU, torchaudio on
CUDA) | ``pytorch`` | ``torchaudio`` | ``warp`` (use a real warp-transducer build) -- not a
command-line option, so that ESPnet's own parser and saved config stay untouched.
"""

from espnet_pathways.espnet_compat import install_transducer_loss

# At import time, not in main(): ESPnet's --multiprocessing_distributed workers are started
# with the "spawn" method and re-import this module (as __mp_main__) without calling main().
install_transducer_loss()

from espnet_pathways.task import StockTransducerTask  # noqa: E402  (after the shim)


def get_parser():
    """ESPnet's own parser for the ASR Transducer task (unchanged)."""
    return StockTransducerTask.get_parser()


def main(cmd=None):
    """Run ESPnet's ``ASRTransducerTask.main`` with the plugin's transducer loss installed."""
    install_transducer_loss()  # idempotent; for callers that import and call main()
    StockTransducerTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
