#!/usr/bin/env python3
"""Pre-train the transducer's encoder self-supervised (HuBERT-style), optionally with pathways.

    python -m espnet_pathways.bin.ssl_train <the arguments of python -m espnet2.bin.asr_transducer_train> \\
        --config conf/ssl_tiny.yaml --token_list <cluster ids> \\
        --train_data_path_and_name_and_type dump/raw/train/wav.scp,speech,sound \\
        --train_data_path_and_name_and_type <targets>/train/text,text,text_int ...

Model and keys: :mod:`espnet_pathways.ssl`, :mod:`espnet_pathways.ssl_task`; a ``pathways:``
section prunes or shares the encoder as in transducer training.  The result loads into the
streaming transducer with ``--init_param <exp>/valid.loss.ave.pth:encoder:encoder``.  A bad
option, file or batch ends the run with one ``ssl_train: error: ...`` line and exit status 1.
"""

import sys

from espnet_pathways.bin.pathways_train import run_task
from espnet_pathways.ssl_task import EncoderSSLTask


def get_parser():
    return EncoderSSLTask.get_parser()


def main(cmd=None):
    run_task(EncoderSSLTask, "ssl_train", cmd)


if __name__ == "__main__":
    main()
