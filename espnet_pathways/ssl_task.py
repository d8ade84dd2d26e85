"""ESPnet registration of the encoder SSL model: ``EncoderSSLTask``.

``EncoderSSLTask(ASRPathwaysTask)`` trains :class:`~espnet_pathways.ssl.EncoderSSLModel`
with everything ESPnet's transducer task has (the same config keys: ``frontend``,
``normalize``, ``encoder_conf`` ..., so one config serves pre-training and fine-tuning) and
everything the pathways task adds (``--pathways``: IMP/LTH masks on the SSL loss, ASR
Pathways-style sparse-sharing pre-training).  It changes:

* ``--ssl_conf``: ``final_dim`` (HuBERT projection, default 256), ``masking_conf``
  (``espnet2.ssl.utils.mask.Masking``'s options: ``mask_prob`` (0.8), ``mask_length`` (10)
  ...), ``chunk_size`` (null: full-context attention; N: chunks of N encoder frames),
  ``target_tolerance`` (frames a target sequence may differ from the encoder's, 1);
* data: ``text`` holds one cluster id per encoder frame (ESPnet type ``text_int``); the
  token list is the cluster ids (its length is the number of classes); no preprocessing;
* ``build_model``: the SSL model (decoder and joint network options are ignored).
"""

from __future__ import annotations

import argparse
import logging

from espnet2.asr_transducer.encoder.encoder import Encoder
from espnet2.tasks.asr_transducer import frontend_choices, normalize_choices, specaug_choices
from espnet2.utils.nested_dict_action import NestedDictAction

from espnet_pathways.controller import PathwaysError
from espnet_pathways.ssl import EncoderSSLModel
from espnet_pathways.task import ASRPathwaysTask, pathways_config

log = logging.getLogger(__name__)

SSL_KEYS = ("final_dim", "masking_conf", "chunk_size", "target_tolerance")


class EncoderSSLTask(ASRPathwaysTask):
    """HuBERT-style pre-training of the transducer's encoder, with pathways (see module doc)."""

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_task_arguments(parser)
        group = parser.add_argument_group(description="Encoder SSL (espnet-pathways)")
        group.add_argument("--ssl_conf", action=NestedDictAction, default={},
                           help="final_dim, masking_conf (espnet2.ssl.utils.mask.Masking options), "
                                "chunk_size (null: full context), target_tolerance")

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool):
        return None  # raw audio; targets are already integer ids

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> EncoderSSLModel:
        pathways_config(args)  # fail early, before ESPnet writes anything
        if getattr(args, "lang_adapt_conf", None):
            raise PathwaysError("lang_adapt_conf: per-language modules are for the transducer, not the SSL model")
        conf = dict(getattr(args, "ssl_conf", None) or {})
        bad = [k for k in conf if k not in SSL_KEYS]
        if bad:
            raise PathwaysError(f"ssl_conf.{bad[0]}: unknown option (known: {', '.join(SSL_KEYS)})")
        chunk = conf.get("chunk_size")
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
            raise PathwaysError(f"ssl_conf.chunk_size: must be null (full context) or a positive integer, got {chunk!r}")
        if isinstance(args.token_list, str):
            with open(args.token_list, encoding="utf-8") as f:
                args.token_list = [line.rstrip() for line in f]
        num_classes = len(args.token_list)
        if num_classes < 2:
            raise PathwaysError(f"--token_list: {num_classes} cluster ids; SSL needs at least 2")
        if args.input_size is None:
            frontend = frontend_choices.get_class(args.frontend)(**args.frontend_conf)
            input_size = frontend.output_size()
        else:
            frontend, input_size = None, args.input_size
        specaug = specaug_choices.get_class(args.specaug)(**args.specaug_conf) if args.specaug else None
        normalize = normalize_choices.get_class(args.normalize)(**args.normalize_conf) if args.normalize else None
        encoder = Encoder(input_size, **args.encoder_conf)
        log.info("encoder SSL: %d classes, %s", num_classes, conf)
        return EncoderSSLModel(num_classes, frontend, specaug, normalize, encoder, **conf)
