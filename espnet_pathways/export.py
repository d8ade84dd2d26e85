"""Outputs of a pathways run: stock ESPnet models per language, one shared file, merged masks.

* :func:`export_pathway` -- ``<out>/config.yaml`` (the run's config without its
  ``pathways`` section) + ``<out>/model.pth`` (θ ⊙ m_l, every key of the stock model) +
  ``<out>/pathway.yaml`` (language, sparsity, sources).  Stock ESPnet loads it
  (``ASRTransducerTask.build_model_from_file``) and decodes it
  (``espnet2.bin.asr_transducer_inference --asr_train_config <out>/config.yaml
  --asr_model_file <out>/model.pth``).
* :func:`export_shared` -- one file holding the shared weights once and every
  language's mask bit-packed: the weights of the masked tensors only where some language
  uses them (∪_l m_l), the other tensors whole.  :func:`pathway_from_shared` rebuilds any
  language's stock state dict from it bit-exactly; :func:`export_from_shared` writes the
  stock model directory from it.
* :func:`merge_masks` -- one masks file from several runs (e.g. per-language IMP/LTH runs
  -> the ``init_masks`` of ASR Pathways or Dynamic ASR Pathways).

The masks of a run are ``<exp>/masks.pt`` (rewritten with every checkpoint), or the
pathway state inside ``<exp>/checkpoint.pth``.  When the model file is an n-best average
of epochs whose masks differed (adaptive modes before their final prune), the latest
masks are applied to the averaged weights.

Imports torch and yaml; ESPnet only to check that the result loads in the stock model.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from espnet_pathways.controller import MASKS_FILE, PathwaysError, load_masks_source, save_masks_atomic
from espnet_pathways.masks import MaskSet, PathwayMasks, pack_bits, unpack_bits

SHARED_FORMAT = "espnet_pathways.shared"
SHARED_VERSION = 1
DEFAULT_MODEL = "valid.loss.ave.pth"


# -- reading a run ------------------------------------------------------------------------
def read_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise PathwaysError(f"--exp: no config.yaml in {path.parent}")
    with path.open(encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    if not isinstance(cfg, dict):
        raise PathwaysError(f"{path}: not an ESPnet config")
    return cfg


def stock_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config without the plugin's ``pathways`` section (what stock ESPnet expects)."""
    return {k: v for k, v in config.items() if k != "pathways"}


def read_model(path: str | Path, option: str = "--model_file") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise PathwaysError(f"{option}: no such file {path}")
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):  # a checkpoint.pth
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise PathwaysError(f"{option}: {path} is not a model state dict")
    return obj


def run_files(exp: str | Path, model_file: str | Path | None, masks_file: str | Path | None) -> tuple[Path, Path, Path]:
    """(config.yaml, model file, masks source) of an experiment dir, with the defaults."""
    exp = Path(exp)
    if not exp.is_dir():
        raise PathwaysError(f"--exp: no such directory {exp}")
    model = Path(model_file) if model_file else exp / DEFAULT_MODEL
    if model_file and not model.is_absolute() and not model.exists():
        model = exp / model
    if masks_file:
        masks = Path(masks_file)
    elif (exp / MASKS_FILE).is_file():
        masks = exp / MASKS_FILE
    elif (exp / "checkpoint.pth").is_file():
        masks = exp / "checkpoint.pth"
    else:
        raise PathwaysError(f"--exp: {exp} has no {MASKS_FILE} or checkpoint.pth with masks (not a pathways run?)")
    return exp / "config.yaml", model, masks


def check_masks(state: Mapping[str, torch.Tensor], masks: PathwayMasks, option: str = "--masks") -> None:
    for n, shape in masks.shapes.items():
        if n not in state:
            raise PathwaysError(f"{option}: tensor {n!r} is not in the model file")
        if tuple(state[n].shape) != tuple(shape):
            raise PathwaysError(f"{option}: tensor {n!r} has shape {tuple(shape)}, the model's is {tuple(state[n].shape)}")


def apply_mask(state: Mapping[str, torch.Tensor], mask: MaskSet) -> dict[str, torch.Tensor]:
    """A new state dict: θ ⊙ m for the masked tensors, the others as they are (shared)."""
    out = dict(state)
    for n, m in mask.items():
        out[n] = state[n].masked_fill(~m.to(state[n].device), 0)
    return out


def check_loads_in_stock(config: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> None:
    """Build the stock ESPnet model from ``config`` and load ``state`` strictly."""
    from espnet2.tasks.asr_transducer import ASRTransducerTask

    model = ASRTransducerTask.build_model(argparse.Namespace(**dict(config)))
    model.load_state_dict(state, strict=True)


def write_model_dir(out: Path, config: Mapping[str, Any], state: Mapping[str, torch.Tensor], info: Mapping[str, Any]) -> Path:
    """Write config.yaml, model.pth and pathway.yaml into ``out`` (via a staging dir)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        with (tmp / "config.yaml").open("w", encoding="utf-8") as f:
            yaml.safe_dump(dict(config), f, indent=4, sort_keys=False, allow_unicode=True)
        torch.save(dict(state), tmp / "model.pth")
        with (tmp / "pathway.yaml").open("w", encoding="utf-8") as f:
            yaml.safe_dump(dict(info), f, sort_keys=False, allow_unicode=True)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _language(masks: PathwayMasks, lang: str) -> MaskSet:
    if lang not in masks:
        raise PathwaysError(f"--lang: no pathway for {lang!r} (the masks have {', '.join(masks.languages)})")
    return masks[lang]


# -- per-language export ------------------------------------------------------------------
def load_run(exp: str | Path, model_file: str | Path | None, masks_file: str | Path | None):
    """(config, model state, checked masks, (model path, masks path)) of an experiment dir."""
    config_path, model_path, masks_path = run_files(exp, model_file, masks_file)
    state = read_model(model_path)
    masks = load_masks_source(masks_path, "--masks")
    check_masks(state, masks)
    return read_config(config_path), state, masks, (model_path, masks_path)


def export_pathway(
    exp: str | Path,
    lang: str,
    out: str | Path,
    *,
    model_file: str | Path | None = None,
    masks_file: str | Path | None = None,
    check: bool = True,
) -> Path:
    """Write a stock ESPnet model dir with θ ⊙ m_lang (see the module docstring)."""
    config, state, masks, (model_path, masks_path) = load_run(exp, model_file, masks_file)
    mask = _language(masks, lang)
    pathway = apply_mask(state, mask)
    cfg = stock_config(config)
    if check:
        check_loads_in_stock(cfg, pathway)
    info = {
        "language": lang,
        "sparsity": round(mask.sparsity(), 6),
        "kept": mask.kept(),
        "masked_elements": mask.numel(),
        "mode": (config.get("pathways") or {}).get("mode"),
        "exp": str(Path(exp).resolve()),
        "model_file": str(model_path.absolute()),
        "masks_file": str(Path(masks_path).absolute()),
    }
    return write_model_dir(Path(out), cfg, pathway, info)


# -- shared model + all masks -------------------------------------------------------------
def shared_payload(config: Mapping[str, Any], state: Mapping[str, torch.Tensor], masks: PathwayMasks) -> dict[str, Any]:
    union = masks.union()
    values, bits = {}, {}
    for n, u in union.items():
        values[n] = torch.masked_select(state[n], u.to(state[n].device)).cpu()
    for lang, ms in masks.items():
        bits[lang] = torch.cat([pack_bits(ms[n].cpu()) for n in masks.names])
    return {
        "format": SHARED_FORMAT,
        "version": SHARED_VERSION,
        "config": stock_config(config),
        "mode": (config.get("pathways") or {}).get("mode"),
        "languages": masks.languages,
        "names": masks.names,
        "shapes": [list(s) for s in masks.shapes.values()],
        "sparsity": masks.sparsity(),
        "history": masks.history,
        "bits": bits,
        "values": values,
        "other": {k: v.cpu() for k, v in state.items() if k not in union},
        "order": list(state),
    }


def export_shared(
    exp: str | Path,
    out_file: str | Path,
    *,
    model_file: str | Path | None = None,
    masks_file: str | Path | None = None,
) -> Path:
    """One file: the shared weights (masked tensors only inside ∪ m_l) + every mask."""
    config, state, masks, _ = load_run(exp, model_file, masks_file)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.tmp{os.getpid()}")
    try:
        torch.save(shared_payload(config, state, masks), tmp)
        os.replace(tmp, out_file)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out_file


def load_shared(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise PathwaysError(f"--from_shared: no such file {path}")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or obj.get("format") != SHARED_FORMAT:
        raise PathwaysError(f"--from_shared: {path} is not an {SHARED_FORMAT} file")
    if obj["version"] != SHARED_VERSION:
        raise PathwaysError(f"--from_shared: {path} has version {obj['version']}, this code reads {SHARED_VERSION}")
    return obj


def shared_masks(obj: Mapping[str, Any]) -> PathwayMasks:
    sizes = [(_numel(s) + 7) // 8 for s in obj["shapes"]]
    masks = {}
    for lang in obj["languages"]:
        chunks = torch.split(obj["bits"][lang], sizes)
        masks[lang] = MaskSet({n: unpack_bits(c, s) for n, s, c in zip(obj["names"], obj["shapes"], chunks)})
    return PathwayMasks(masks, obj.get("history", []))


def pathway_from_shared(obj: Mapping[str, Any], lang: str) -> dict[str, torch.Tensor]:
    """Language ``lang``'s stock state dict (θ ⊙ m_lang) from a shared file's contents."""
    masks = shared_masks(obj)
    mask = _language(masks, lang)
    union = masks.union()
    state: dict[str, torch.Tensor] = {}
    for k in obj["order"]:
        if k in obj["other"]:
            state[k] = obj["other"][k]
        else:
            v = obj["values"][k]
            full = torch.zeros(union[k].shape, dtype=v.dtype).masked_scatter_(union[k], v)
            state[k] = full.masked_fill_(~mask[k], 0)
    return state


def export_from_shared(shared_file: str | Path, lang: str, out: str | Path, *, check: bool = True) -> Path:
    obj = load_shared(shared_file)
    state = pathway_from_shared(obj, lang)
    if check:
        check_loads_in_stock(obj["config"], state)
    mask = shared_masks(obj)[lang]
    info = {"language": lang, "sparsity": round(mask.sparsity(), 6), "kept": mask.kept(),
            "masked_elements": mask.numel(), "mode": obj.get("mode"), "shared_file": str(Path(shared_file).resolve())}
    return write_model_dir(Path(out), obj["config"], state, info)


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


# -- merging masks ------------------------------------------------------------------------
def merge_masks(sources: Sequence[tuple[str, str | Path]], out: str | Path | None = None) -> PathwayMasks:
    """Language ``lang``'s mask from each ``(lang, source)`` into one :class:`PathwayMasks`.

    A source is a masks file, an experiment dir or a ``checkpoint.pth``.  Histories are
    kept, each event tagged with its source and the language it was merged as.
    """
    if not sources:
        raise PathwaysError("merge: no sources given")
    merged: dict[str, MaskSet] = {}
    history: list[dict[str, Any]] = []
    for lang, src in sources:
        if lang in merged:
            raise PathwaysError(f"merge: language {lang!r} given twice")
        masks = load_masks_source(src, f"merge {lang}={src}")
        if lang not in masks:
            raise PathwaysError(f"merge {lang}={src}: no mask for {lang!r} (it has {', '.join(masks.languages)})")
        ms = masks[lang]
        if merged:
            ref = next(iter(merged.values()))
            if ref.shapes != ms.shapes:
                diff = next(n for n in {**ref.shapes, **ms.shapes} if ref.shapes.get(n) != ms.shapes.get(n))
                raise PathwaysError(f"merge {lang}={src}: tensor {diff!r} differs from the other sources")
        merged[lang] = ms
        history += [{**e, "source": str(src), "merged_as": lang} for e in masks.history]
    result = PathwayMasks(merged, history)
    if out is not None:
        save_masks_atomic(result, out)
    return result
