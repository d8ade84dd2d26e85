#!/usr/bin/env python3
"""Benchmark storage and sparse inference: what pathways cost on disk, and whether 70 % buys speed.

    python bench/storage.py                 # the demo model (~1 min on 2 cores)
    python bench/storage.py --tiny          # seconds-long smoke run (synthetic weights, no ESPnet)

Part 1 -- bytes on disk, four languages, 70 % masks:

* ``dense``: the dense model's state dict (``torch.save``, as ESPnet writes ``*.pth``);
* ``pathway (stock export)``: θ ⊙ m_l with the zeros stored densely, as
  ``espnet_pathways.export.export_pathway`` writes it for stock ESPnet; also zlib-compressed;
* ``shared model + bit-packed masks``: one dense model + ``PathwayMasks.save`` (1 bit per
  masked weight per language), and ``export.shared_payload`` (the weights of the masked
  tensors only inside ∪ m_l, + the bits);
* separate sparse models: per language, masked tensors as ``torch.sparse_csr``:
  ``Tensor.to_sparse_csr()`` saved as it comes (its column indices are a view into a
  2 × nnz int64 storage, all of which ``torch.save`` writes), with compact int64 and with
  int32 indices; and as kept values + a bit-packed mask.

Each format is written to a temporary folder and measured with ``os.path.getsize``; each
is checked to rebuild θ ⊙ m_l exactly (correctness, asserted).  Model: ``--model`` +
``--config`` (default ``exp/asr_train_demo/valid.loss.ave.pth`` and its ``config.yaml``
when the demo run exists, else the ``conf/train_demo.yaml`` architecture with random
weights -- sizes do not depend on training except through compression).  Masks: per
language the top 30 % of |θ|·exp(0.5·ε_l), ε_l ~ N(0, 1) per language -- magnitude-like
masks that overlap partly (the IoU is printed), exact 70 % per tensor.

Part 2 -- one linear layer, y = x Wᵀ, one CPU thread (streaming decoding runs on one), at
the layer shapes of the demo model and of a 70M model (d = 512, FFN 2048), for x of 1 row
(a predictor/joiner step), 16 rows (one 640 ms streaming chunk after 4× subsampling) and
256 rows (~10 s of audio at once).  Variants: ``dense`` (``F.linear`` with the zeros
stored), ``csr mm`` (``torch.sparse.mm(W_csr, xᵀ)``), ``csr linear`` (``F.linear(x, W_csr)``),
``bsr 16×16`` of the same unstructured mask (nearly every block holds a kept weight, so
BSR stores it densely), and, as a reference for what structure would buy, ``bsr 16×16,
block mask`` with 70 % of the 16×16 blocks zero (not what the plugin's magnitude masks
give).  Median µs per call over interleaved repeats, ratio to dense.  2:4 semi-structured
sparsity (``torch.sparse.to_sparse_semi_structured``) needs a CUDA GPU: measured only
when one is present.
"""

from __future__ import annotations

import argparse
import os
import warnings
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchutil import NO_GPU, ROOT, command_line, loadavg, machine_line, med, rotate, spread  # noqa: E402

LANGS = ("en", "fr", "it", "nl")
SPARSITY = 0.7
DEMO_EXP = ROOT / "exp" / "asr_train_demo"


# -- the model ----------------------------------------------------------------------------
def tiny_state():
    """A transducer-shaped state dict without ESPnet (for --tiny)."""
    import torch

    g = torch.Generator().manual_seed(0)
    st = {}
    for b in range(2):
        for n, s in (("feed_forward.w_1", (64, 16)), ("feed_forward.w_2", (16, 64)), ("self_attn.linear_q", (16, 16))):
            st[f"encoder.encoders.{b}.{n}.weight"] = torch.randn(s, generator=g) * 0.1
            st[f"encoder.encoders.{b}.{n}.bias"] = torch.zeros(s[0])
    st["decoder.embed.weight"] = torch.randn(30, 16, generator=g)
    st["joint_network.lin_out.weight"] = torch.randn(30, 16, generator=g)
    names = [k for k in st if k.endswith(".weight") and not k.startswith("decoder.embed")]
    return st, names, "synthetic tiny state dict"


def espnet_state(model_file: Path | None, config: Path | None):
    """State dict + prunable names of an ESPnet transducer (a trained file, or random init)."""
    import torch

    from benchutil import espnet_as_the_plugin_runs_it
    from espnet_pathways.masks import prunable_names

    espnet_as_the_plugin_runs_it()
    from espnet2.tasks.asr_transducer import ASRTransducerTask

    if model_file is not None and config is not None and model_file.is_file() and config.is_file():
        model, _ = ASRTransducerTask.build_model_from_file(str(config), str(model_file), "cpu")
        desc = f"{model_file.relative_to(ROOT) if model_file.is_relative_to(ROOT) else model_file} (trained)"
    else:
        parser = ASRTransducerTask.get_parser()
        args = parser.parse_args(["--config", str(ROOT / "conf" / "train_demo.yaml"), "--token_list", "x",
                                  "--output_dir", "/tmp/x"])
        args.token_list = ["<blank>", "<unk>"] + [f"t{i}" for i in range(297)] + ["<sos/eos>"]
        torch.manual_seed(0)
        model = ASRTransducerTask.build_model(args)
        desc = "conf/train_demo.yaml architecture, random init (no trained demo model found)"
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, prunable_names(model), desc


def make_masks(state, names):
    import torch

    from espnet_pathways.masks import PathwayMasks
    from espnet_pathways.pruning import magnitude_prune

    out = {}
    for i, lang in enumerate(LANGS):
        g = torch.Generator().manual_seed(100 + i)
        scores = {n: state[n].abs() * torch.exp(0.5 * torch.randn(state[n].shape, generator=g)) for n in names}
        out[lang] = magnitude_prune(scores, SPARSITY, names=names, scope="tensor").masks
    return PathwayMasks(out)


# -- storage formats ----------------------------------------------------------------------
def _save(obj, path: Path) -> int:
    """``torch.save`` into ``<path without suffix>/m.pth``: torch names the archive's root
    folder after the file, so one file name for all keeps the formats comparable."""
    import torch

    folder = path.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(obj, folder / "m.pth")
    return os.path.getsize(folder / "m.pth")


def _file(path: Path) -> Path:
    return path.with_suffix("") / "m.pth"


def _zlib_size(path: Path) -> int:
    return len(zlib.compress(_file(path).read_bytes(), 6))


def csr_state(pathway, names, index_dtype, compact: bool = True):
    """Masked tensors as CSR.  ``compact=False``: ``to_sparse_csr()`` as it comes -- its
    ``col_indices`` is a view into a 2 × nnz int64 storage, and ``torch.save`` writes the
    whole storage (16 bytes per kept weight instead of 8)."""
    import torch

    out = dict(pathway)
    for n in names:
        c = pathway[n].to_sparse_csr()
        if compact:
            c = torch.sparse_csr_tensor(c.crow_indices().to(index_dtype).clone(), c.col_indices().to(index_dtype).clone(),
                                        c.values().clone(), c.shape)
        out[n] = c
    return out


def bits_state(pathway, mask, names):
    import torch

    from espnet_pathways.masks import pack_bits

    out = {k: v for k, v in pathway.items() if k not in names}
    for n in names:
        out[n + ".values"] = torch.masked_select(pathway[n], mask[n])
        out[n + ".bits"] = pack_bits(mask[n])
    return out


def storage(state, names, masks, tmp: Path):
    import torch

    from espnet_pathways.export import apply_mask, pathway_from_shared, shared_payload
    from espnet_pathways.masks import PathwayMasks, unpack_bits

    rows = []  # (format, bytes for one language or the shared part, bytes for all four)
    dense = _save(state, tmp / "dense.pth")
    rows.append(("dense model (1 copy, no pathways)", dense, dense))
    rows.append(("dense model, zlib", _zlib_size(tmp / "dense.pth"), _zlib_size(tmp / "dense.pth")))

    per = {k: [] for k in ("pathway", "pathway zlib", "csr64 raw", "csr64", "csr32", "bits")}
    for lang in LANGS:
        mask = masks[lang]
        pw = apply_mask(state, mask)
        f = tmp / f"pathway_{lang}.pth"
        per["pathway"].append(_save(pw, f))
        per["pathway zlib"].append(_zlib_size(f))
        raw = csr_state(pw, names, torch.int64, compact=False)
        per["csr64 raw"].append(_save(raw, tmp / f"csr64raw_{lang}.pth"))
        c64 = csr_state(pw, names, torch.int64)
        per["csr64"].append(_save(c64, tmp / f"csr64_{lang}.pth"))
        c32 = csr_state(pw, names, torch.int32)
        per["csr32"].append(_save(c32, tmp / f"csr32_{lang}.pth"))
        bs = bits_state(pw, mask, names)
        per["bits"].append(_save(bs, tmp / f"bits_{lang}.pth"))
        # correctness (asserted): every format rebuilds θ ⊙ m_l exactly
        for n in names:
            assert torch.equal(c64[n].to_dense(), pw[n]) and torch.equal(c32[n].to_dense(), pw[n])
            assert torch.equal(raw[n].to_dense(), pw[n])
            m = unpack_bits(bs[n + ".bits"], pw[n].shape)
            assert torch.equal(torch.zeros_like(pw[n]).masked_scatter_(m, bs[n + ".values"]), pw[n])
    masks_file = tmp / "m.pt"
    masks.save(masks_file)
    mbytes = os.path.getsize(masks_file)
    assert PathwayMasks.load(masks_file) == masks
    payload = shared_payload({}, state, masks)
    sbytes = _save(payload, tmp / "shared.pth")
    for lang in LANGS:
        rebuilt = pathway_from_shared(torch.load(_file(tmp / "shared.pth"), weights_only=True), lang)
        assert all(torch.equal(rebuilt[k], v) for k, v in apply_mask(state, masks[lang]).items())

    rows.append(("pathway, stock export (dense tensors with zeros)", med(per["pathway"]), sum(per["pathway"])))
    rows.append(("pathway, stock export, zlib", med(per["pathway zlib"]), sum(per["pathway zlib"])))
    rows.append(("masks file alone (PathwayMasks.save, bit-packed)", mbytes / len(LANGS), mbytes))
    rows.append(("shared: dense model + masks file", None, dense + mbytes))
    rows.append(("shared: export.shared_payload (∪ m_l values + bits)", None, sbytes))
    rows.append(("separate sparse: CSR, int64, to_sparse_csr() saved as is", med(per["csr64 raw"]), sum(per["csr64 raw"])))
    rows.append(("separate sparse: CSR, int64 indices (compact copies)", med(per["csr64"]), sum(per["csr64"])))
    rows.append(("separate sparse: CSR, int32 indices", med(per["csr32"]), sum(per["csr32"])))
    rows.append(("separate sparse: kept values + bit-packed mask", med(per["bits"]), sum(per["bits"])))
    return rows, dense


# -- sparse inference speed ---------------------------------------------------------------
def layer_shapes(state, names):
    seen = []
    for n in names:
        s = tuple(state[n].shape)
        if len(s) == 2 and s not in seen:
            seen.append(s)
    return seen


def block_mask(shape, block, sparsity, g):
    import torch

    o, i = shape
    bo, bi = -(-o // block), -(-i // block)
    keep = torch.rand(bo, bi, generator=g) >= sparsity
    return keep.repeat_interleave(block, 0).repeat_interleave(block, 1)[:o, :i]


def speed(shapes_by_model, rows_list, repeats, min_time):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    out = []
    for model_name, shapes in shapes_by_model:
        for shape in shapes:
            o, i = shape
            w = torch.randn(shape, generator=g) * 0.05
            m = torch.rand(shape, generator=g) >= SPARSITY
            wz = w * m
            csr = wz.to_sparse_csr()
            block = 16 if o % 16 == 0 and i % 16 == 0 else None
            variants = {"dense": lambda x: F.linear(x, wz),
                        "csr mm": lambda x: torch.sparse.mm(csr, x.t()).t(),
                        "csr linear": lambda x: F.linear(x, csr)}
            if block:
                bsr = wz.to_sparse_bsr((block, block))
                wb = w * block_mask(shape, block, SPARSITY, g)
                bsr_b = wb.to_sparse_bsr((block, block))
                variants["bsr 16×16"] = lambda x: torch.sparse.mm(bsr, x.t()).t()
                variants["dense, block mask"] = lambda x: F.linear(x, wb)
                variants["bsr 16×16, block mask"] = lambda x: torch.sparse.mm(bsr_b, x.t()).t()
            for rows in rows_list:
                x = torch.randn(rows, i, generator=g)
                ref = F.linear(x, wz)
                for k, f in variants.items():  # correctness + warm-up
                    y = f(x)
                    want = F.linear(x, wb) if "block mask" in k else ref
                    assert torch.allclose(y, want, atol=1e-4, rtol=1e-4), f"{k} {shape} differs from dense"
                # calls per timing so that one timing takes >= min_time
                t = time.perf_counter()
                f = variants["dense"]
                f(x)
                reps = max(1, int(min_time / max(time.perf_counter() - t, 1e-7)))
                times = {k: [] for k in variants}
                for r in range(repeats):
                    for k in rotate(list(variants), r):
                        f = variants[k]
                        t = time.perf_counter()
                        for _ in range(reps):
                            f(x)
                        times[k].append((time.perf_counter() - t) / reps)
                out.append((model_name, shape, rows, times))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=DEMO_EXP / "valid.loss.ave.pth")
    p.add_argument("--config", type=Path, default=DEMO_EXP / "config.yaml")
    p.add_argument("--rows", type=int, nargs="+", default=[1, 16, 256])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.02, help="seconds per timing (calls are repeated to fill it)")
    p.add_argument("--no-70m", action="store_true", help="skip the 70M-model layer shapes")
    p.add_argument("--tiny", action="store_true", help="smoke run: synthetic tiny weights, no ESPnet")
    a = p.parse_args(argv)

    import torch

    warnings.filterwarnings("ignore", message=".*Sparse (CSR|BSR) tensor support is in beta.*")
    if a.tiny:
        state, names, desc = tiny_state()
        a.rows, a.repeats, a.min_time, a.no_70m = [16], 2, 0.002, True
    else:
        state, names, desc = espnet_state(a.model, a.config)
    masks = make_masks(state, names)
    n_all = sum(v.numel() for v in state.values())
    n_masked = sum(state[n].numel() for n in names)
    ious = [masks[x].iou(masks[y]) for i, x in enumerate(LANGS) for y in LANGS[i + 1:]]

    print("# Storage of four 70% pathways, and sparse vs dense linear layers on one CPU thread")
    print(machine_line())
    print(command_line())
    print(f"# model: {desc}; {n_all / 1e6:.2f}M parameters, {n_masked / 1e6:.2f}M in {len(names)} prunable "
          f"tensors ({100 * n_masked / n_all:.0f}%); masks: pairwise IoU {min(ious):.2f}–{max(ious):.2f}, "
          f"∪ of the four covers {100 * (1 - masks.union().sparsity()):.0f}% of the masked weights\n")
    with tempfile.TemporaryDirectory() as d:
        rows, dense = storage(state, names, masks, Path(d))
    print("| format | bytes per language | bytes, 4 languages | 4 languages / (4 × dense) |")
    print("|---|---:|---:|---:|")
    for name, one, four in rows:
        print(f"| {name} | {'' if one is None else f'{one:,.0f}'} | {four:,.0f} | {four / (4 * dense):.3f} |")
    print()

    shapes = [("demo" if not a.tiny else "tiny", layer_shapes(state, names))]
    if not a.no_70m:
        shapes.append(("70M (d=512)", [(2048, 512), (512, 2048), (512, 512), (1024, 512)]))
    print(f"# load average before timing: {loadavg()}; median of {a.repeats} interleaved repeats, µs per call; "
          "ratio < 1 is faster than dense")
    res = speed(shapes, a.rows, a.repeats, a.min_time)
    cols = ["csr mm", "csr linear", "bsr 16×16", "dense, block mask", "bsr 16×16, block mask"]
    print("| model | W (out × in) | x rows | dense µs | " + " | ".join(f"{c} µs (/dense)" for c in cols) + " |")
    print("|---|---|---:|---:|" + "---:|" * len(cols))
    for model_name, shape, rows, times in res:
        d = med(times["dense"])
        cells = []
        for c in cols:
            if c in times:
                ratios = [t / b for t, b in zip(times[c], times["dense"])]
                cells.append(f"{med(times[c]) * 1e6:.1f} ({spread(ratios, '{:.2f}')})")
            else:
                cells.append("n/a (shape not a multiple of 16)")
        print(f"| {model_name} | {shape[0]} × {shape[1]} | {rows} | {d * 1e6:.1f} | " + " | ".join(cells) + " |")
    print(f"# load average after timing: {loadavg()}")
    print()
    print("| 2:4 semi-structured (to_sparse_semi_structured) vs dense, GPU | result |")
    print("|---|---|")
    if torch.cuda.is_available():
        print(f"| {torch.cuda.get_device_name(0)} | {semi_structured_gpu()} |")
    else:
        print(f"| all shapes | {NO_GPU} |")
    return 0


def semi_structured_gpu() -> str:
    """2:4 sparse vs dense F.linear, fp16, 70M-model FFN shape, on the GPU (if any)."""
    import torch
    import torch.nn.functional as F

    try:
        from torch.sparse import to_sparse_semi_structured

        w = torch.randn(2048, 512, device="cuda", dtype=torch.float16)
        m = torch.tensor([0, 0, 1, 1], device="cuda", dtype=torch.bool).tile(2048, 128)
        w = w * m
        x = torch.randn(256, 512, device="cuda", dtype=torch.float16)
        ws = to_sparse_semi_structured(w)
        out = []
        for f in (lambda: F.linear(x, w), lambda: F.linear(x, ws)):
            for _ in range(10):
                f()
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            for _ in range(200):
                f()
            e.record()
            torch.cuda.synchronize()
            out.append(s.elapsed_time(e) / 200)
        return f"W 2048×512, x 256 rows fp16: dense {out[0] * 1e3:.1f} µs, 2:4 {out[1] * 1e3:.1f} µs ({out[1] / out[0]:.2f}×)"
    except Exception as e:  # noqa: BLE001
        return f"failed: {type(e).__name__}: {str(e)[:120]}"


if __name__ == "__main__":
    sys.exit(main())
