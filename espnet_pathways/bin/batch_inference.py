#!/usr/bin/env python3
"""Batched transducer decoding with the options and outputs of ESPnet's asr_transducer_inference.

    python -m espnet_pathways.bin.batch_inference --batch_size 32 \\
        --asr_train_config exp/m/config.yaml --asr_model_file exp/m/valid.loss.ave.pth \\
        --config conf/decode.yaml --streaming true \\
        --data_path_and_name_and_type dump/raw/fr_test/wav.scp,speech,sound --output_dir out/fr_test

Every option is ``espnet2.bin.asr_transducer_inference``'s (same parser), with two
differences: ``--batch_size`` (default 32) is the number of utterances decoded together,
where ESPnet accepts only 1; ``--language L`` decodes a model with per-language encoder
modules (``lang_adapt_conf`` in its config: the embedding and adapter baselines, which are
not stock ESPnet modules) with language L's modules, the model built by the plugin's task.  The model, the audio reading and the output files
(``<output_dir>/<n>best_recog/{text,token,token_int,score}``) are ESPnet's; the decoding is
:class:`espnet_pathways.decode.BatchDecoder` (ESPnet's default beam search, network calls
batched over utterances; see that module for what it reproduces and what it does not).
Progress: one log line per batch.  Errors: one ``batch_inference: error: ...`` line, exit 1.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from typing import Any

import torch

log = logging.getLogger("batch_inference")


def get_parser():
    from espnet2.bin.asr_transducer_inference import get_parser as espnet_parser

    parser = espnet_parser()
    parser.description = __doc__
    parser.set_defaults(batch_size=32)
    parser.add_argument("--language", default=None,
                        help="the test set's language, for a model with per-language modules (lang_adapt_conf)")
    return parser


@contextmanager
def _model_builder(config: str | None, language: str | None):
    """Speech2Text builds the model with the plugin's task where the config has per-language modules."""
    import yaml
    from espnet2.bin import asr_transducer_inference

    conf = {}
    if config:
        with open(config, encoding="utf-8") as f:
            conf = yaml.safe_load(f) or {}
    adapted = bool(conf.get("lang_adapt_conf"))
    if adapted and language is None:
        raise ValueError(f"--asr_train_config {config}: the model has per-language modules (lang_adapt_conf): "
                         "give --language")
    if not adapted:
        if language is not None:
            raise ValueError(f"--language {language}: the model of {config} has no per-language modules")
        yield
        return
    from espnet_pathways.task import ASRPathwaysTask

    stock = asr_transducer_inference.ASRTransducerTask
    asr_transducer_inference.ASRTransducerTask = ASRPathwaysTask
    try:
        yield
    finally:
        asr_transducer_inference.ASRTransducerTask = stock


def inference(args: Any) -> None:
    from espnet2.asr_transducer.utils import TooShortUttError
    from espnet2.bin.asr_transducer_inference import Speech2Text
    from espnet2.fileio.datadir_writer import DatadirWriter
    from espnet2.tasks.asr_transducer import ASRTransducerTask
    from espnet2.torch_utils.set_all_random_seed import set_all_random_seed

    from espnet_pathways.decode import BatchDecoder, Hypothesis

    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be at least 1, got {args.batch_size}")
    if args.ngpu > 1:
        raise ValueError("--ngpu: only single-GPU decoding is supported")
    if args.lm_train_config or args.lm_file:
        raise ValueError("--lm_train_config/--lm_file: batched decoding does not support LM fusion")
    if args.quantize_asr_model:
        raise ValueError("--quantize_asr_model: batched decoding does not support quantised models")
    device = "cuda" if args.ngpu >= 1 else "cpu"
    set_all_random_seed(args.seed)
    with _model_builder(args.asr_train_config, args.language):
        s2t = Speech2Text.from_pretrained(
            model_tag=args.model_tag, asr_train_config=args.asr_train_config, asr_model_file=args.asr_model_file,
            beam_search_config=args.beam_search_config, token_type=args.token_type, bpemodel=args.bpemodel,
            device=device, dtype=args.dtype, beam_size=args.beam_size, nbest=args.nbest,
            quantize_asr_model=False, streaming=args.streaming, decoding_window=args.decoding_window,
            left_context=args.left_context,
        )
    if args.language is not None:
        s2t.asr_model.lang_adapt.fixed(args.language)
    decoder = BatchDecoder(s2t)
    loader = ASRTransducerTask.build_streaming_iterator(
        args.data_path_and_name_and_type, dtype=args.dtype, batch_size=1, key_file=args.key_file,
        num_workers=args.num_workers,
        preprocess_fn=ASRTransducerTask.build_preprocess_fn(s2t.asr_train_args, False),
        collate_fn=ASRTransducerTask.build_collate_fn(s2t.asr_train_args, False),
        allow_variable_data_keys=args.allow_variable_data_keys, inference=True,
    )
    utts = [(keys[0], batch["speech"][0]) for keys, batch in loader]
    # Similar lengths together: less padding in the full-context encoder, fewer idle rows
    # in the search.  Outputs are keyed by utterance, so the order does not matter.
    order = sorted(range(len(utts)), key=lambda i: -len(utts[i][1]))
    start, done = time.time(), 0
    with DatadirWriter(args.output_dir) as writer:
        for i in range(0, len(order), args.batch_size):
            group = [utts[j] for j in order[i:i + args.batch_size]]
            try:
                nbests = decoder([s for _, s in group])
            except TooShortUttError:  # find the short one(s): decode this batch one by one
                nbests = []
                for key, s in group:
                    try:
                        nbests.append(decoder([s])[0])
                    except TooShortUttError as e:
                        logging.warning(f"Utterance {key} {e}")
                        nbests.append(None)
            for (key, _), hyps in zip(group, nbests):
                if hyps is None:  # as ESPnet writes a too-short utterance
                    results = [(" ", ["<space>"], [2], Hypothesis(0.0, []))] * args.nbest
                else:
                    results = decoder.results(hyps)
                for n, (text, token, token_int, hyp) in zip(range(1, args.nbest + 1), results):
                    w = writer[f"{n}best_recog"]
                    w["token"][key] = " ".join(token)
                    w["token_int"][key] = " ".join(map(str, token_int))
                    w["score"][key] = str(hyp.score)
                    if text is not None:
                        w["text"][key] = text
            done += len(group)
            log.info("decoded %d/%d utterances (%.1f utt/s)", done, len(utts), done / max(time.time() - start, 1e-9))


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        with torch.no_grad():
            inference(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"batch_inference: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
