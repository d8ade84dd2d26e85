#!/usr/bin/env python3
"""Export pathways from a training run: stock ESPnet model dirs, or one shared file.

    # a stock ESPnet model dir with θ ⊙ m_fr (config.yaml, model.pth, pathway.yaml)
    python -m espnet_pathways.bin.export_pathway --exp exp/dyn --lang fr --out exp/dyn/export_fr
    # several languages: {lang} in --out
    python -m espnet_pathways.bin.export_pathway --exp exp/dyn --lang en fr --out 'exp/dyn/export_{lang}'
    # one file: shared weights + every mask (bit-packed)
    python -m espnet_pathways.bin.export_pathway --exp exp/dyn --shared exp/dyn/shared.pt
    # a stock model dir from a shared file
    python -m espnet_pathways.bin.export_pathway --from_shared exp/dyn/shared.pt --lang fr --out x/fr

The result decodes with stock ESPnet:
``python -m espnet2.bin.asr_transducer_inference --asr_train_config <out>/config.yaml
--asr_model_file <out>/model.pth ...``.  ``--model_file`` (default ``valid.loss.ave.pth``,
relative to ``--exp``) and ``--masks`` (default ``<exp>/masks.pt``, else the masks in
``<exp>/checkpoint.pth``) pick the inputs; ``--lang all`` exports every language.
Errors: one ``export_pathway: error: ...`` line, exit status 1.
"""

import argparse
import sys
from pathlib import Path

from espnet_pathways.controller import PathwaysError


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--exp", type=Path, help="a pathways training run (its output_dir)")
    src.add_argument("--from_shared", type=Path, help="a file written with --shared")
    p.add_argument("--lang", nargs="+", help="language(s) to export, or 'all'")
    p.add_argument("--out", help="output model dir; with several languages it must contain {lang}")
    p.add_argument("--shared", type=Path, help="write the shared model + all masks to this file")
    p.add_argument("--model_file", help="model state dict (default: valid.loss.ave.pth in --exp)")
    p.add_argument("--masks", help="masks file (default: <exp>/masks.pt, else <exp>/checkpoint.pth)")
    p.add_argument("--no_check", action="store_true", help="skip loading the result into the stock ESPnet model")
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    try:
        run(args)
    except PathwaysError as e:
        print(f"export_pathway: error: {e}", file=sys.stderr)
        sys.exit(1)


def run(args: argparse.Namespace) -> None:
    from espnet_pathways import export

    if args.shared is not None:
        if args.exp is None:
            raise PathwaysError("--shared needs --exp")
        path = export.export_shared(args.exp, args.shared, model_file=args.model_file, masks_file=args.masks)
        print(f"wrote {path} ({path.stat().st_size} bytes)")
        if not args.lang:
            return
    if not args.lang or not args.out:
        raise PathwaysError("--lang and --out are required (or --shared)")
    if args.from_shared is not None:
        langs = export.shared_masks(export.load_shared(args.from_shared)).languages
    else:
        _, _, masks_path = export.run_files(args.exp, args.model_file, args.masks)
        langs = export.load_masks_source(masks_path, "--masks").languages
    wanted = langs if args.lang == ["all"] else args.lang
    if len(wanted) > 1 and "{lang}" not in args.out:
        raise PathwaysError("--out must contain {lang} when exporting several languages")
    for lang in wanted:
        if lang not in langs:
            raise PathwaysError(f"--lang: no pathway for {lang!r} (the masks have {', '.join(langs)})")
    for lang in wanted:
        out = args.out.replace("{lang}", lang)
        if args.from_shared is not None:
            path = export.export_from_shared(args.from_shared, lang, out, check=not args.no_check)
        else:
            path = export.export_pathway(args.exp, lang, out, model_file=args.model_file,
                                         masks_file=args.masks, check=not args.no_check)
        print(f"{lang}: wrote {path}/model.pth and config.yaml")


if __name__ == "__main__":
    main()
