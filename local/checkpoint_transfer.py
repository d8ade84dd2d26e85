#!/usr/bin/env python3
"""Carry an ESPnet training checkpoint between machines in small pieces.

    checkpoint_transfer.py pack   EXP_DIR OUT_DIR [--part_mb 15]   # checkpoint.pth -> OUT_DIR/ckpt.part*
    checkpoint_transfer.py unpack IN_DIR  EXP_DIR                  # OUT_DIR/ckpt.part* -> checkpoint.pth

`pack` stores floating-point tensors (weights and Adam moments) as bfloat16, which halves
the size so that a 4M-parameter model with its optimizer state fits a 64 MiB transfer;
`unpack` turns them back into float32. The resumed weights therefore differ from the saved
ones by bfloat16 rounding (relative 2^-8): a resumed run continues training, it does not
reproduce the uninterrupted run bit for bit.
"""
import argparse
import io
from pathlib import Path

import torch


def _cast(obj, dtype_from, dtype_to):
    if isinstance(obj, torch.Tensor):
        return obj.to(dtype_to) if obj.dtype == dtype_from else obj
    if isinstance(obj, dict):
        return {k: _cast(v, dtype_from, dtype_to) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cast(v, dtype_from, dtype_to) for v in obj)
    return obj


def pack(exp: Path, out: Path, part_mb: int) -> None:
    state = torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)
    buf = io.BytesIO()
    torch.save(_cast(state, torch.float32, torch.bfloat16), buf)
    data, size = buf.getvalue(), part_mb * 2**20
    out.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(data), size):
        (out / f"ckpt.part{i // size:02d}").write_bytes(data[i:i + size])
    print(f"packed {exp}/checkpoint.pth ({len(data) / 2**20:.1f} MiB as bfloat16) into {out}/ckpt.part*")


def unpack(src: Path, exp: Path) -> None:
    parts = sorted(src.glob("ckpt.part*"))
    if not parts:
        raise SystemExit(f"checkpoint_transfer.py: {src}: no ckpt.part* files")
    state = torch.load(io.BytesIO(b"".join(p.read_bytes() for p in parts)), map_location="cpu",
                       weights_only=False)
    exp.mkdir(parents=True, exist_ok=True)
    tmp = exp / "checkpoint.pth.tmp"
    torch.save(_cast(state, torch.bfloat16, torch.float32), tmp)
    tmp.replace(exp / "checkpoint.pth")
    print(f"unpacked {len(parts)} parts into {exp}/checkpoint.pth")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["pack", "unpack"])
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--part_mb", type=int, default=15)
    a = p.parse_args()
    pack(a.src, a.dst, a.part_mb) if a.action == "pack" else unpack(a.src, a.dst)


if __name__ == "__main__":
    main()
