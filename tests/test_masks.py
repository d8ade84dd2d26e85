"""MaskSet / PathwayMasks: selection, verbs, file format, averaging safety (invariant 8, masks part)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from espnet_pathways.masks import (
    MaskSet,
    PathwayMasks,
    pack_bits,
    prunable_names,
    unpack_bits,
)


class Transducerish(nn.Module):
    """ESPnet-transducer-like naming: encoder / decoder / joint_network, plus an outside head."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv1d(2, 4, 3), nn.Linear(4, 6), nn.LayerNorm(6))
        self.decoder = nn.ModuleDict({"embed": nn.Embedding(5, 6), "rnn": nn.LSTM(6, 6)})
        self.joint_network = nn.Linear(6, 5)
        self.ctc = nn.Linear(6, 5)


def _rand_masks(seed, shapes, p=0.5):
    g = torch.Generator().manual_seed(seed)
    return MaskSet({n: torch.rand(s, generator=g) < p for n, s in shapes.items()})


SHAPES = {"a.weight": (3, 5), "b.weight": (7,), "c.weight": (2, 2, 3)}


def test_prunable_names_defaults_and_options():
    m = Transducerish()
    assert prunable_names(m) == ["encoder.1.weight", "joint_network.weight"]
    assert prunable_names(m, kinds=("linear", "conv", "rnn")) == [
        "encoder.0.weight",
        "encoder.1.weight",
        "decoder.rnn.weight_ih_l0",
        "decoder.rnn.weight_hh_l0",
        "joint_network.weight",
    ]
    assert prunable_names(m, prefixes=None) == ["encoder.1.weight", "joint_network.weight", "ctc.weight"]
    assert prunable_names(m, include=[r"embed\.weight$"], exclude=[r"^joint"]) == [
        "encoder.1.weight",
        "decoder.embed.weight",
    ]
    # works on any module with its own naming
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert prunable_names(seq, prefixes=None) == ["0.weight", "2.weight"]
    with pytest.raises(ValueError, match="kinds"):
        prunable_names(m, kinds=("attention",))


def test_pack_unpack_roundtrip_odd_sizes():
    g = torch.Generator().manual_seed(0)
    for shape in [(0,), (1,), (7,), (8,), (9,), (3, 5, 2)]:
        m = torch.rand(shape, generator=g) < 0.5
        packed = pack_bits(m)
        assert packed.dtype == torch.uint8 and packed.numel() == (m.numel() + 7) // 8
        assert torch.equal(unpack_bits(packed, shape), m)


def test_counts_sparsity_and_algebra():
    a = MaskSet({"x": torch.tensor([True, True, False, False]), "y": torch.tensor([[True, False], [False, False]])})
    b = MaskSet({"x": torch.tensor([True, False, True, False]), "y": torch.tensor([[True, True], [False, False]])})
    assert a.numel() == 8 and a.kept() == 3
    assert a.kept_per_tensor() == {"x": 2, "y": 1}
    assert a.sparsity() == pytest.approx(5 / 8)
    assert a.sparsity_per_tensor() == {"x": 0.5, "y": 0.75}
    assert (a | b)["x"].tolist() == [True, True, True, False]
    assert (a & b)["x"].tolist() == [True, False, False, False]
    assert (a - b)["x"].tolist() == [False, True, False, False]
    assert (~a)["y"].tolist() == [[False, True], [True, True]]
    assert a.union(b) == a | b and a.intersection(b) == a & b and a.difference(b) == a - b
    assert a.iou_per_tensor(b) == {"x": pytest.approx(1 / 3), "y": pytest.approx(1 / 2)}
    assert a.iou(b) == pytest.approx(2 / 5)
    empty = MaskSet({"x": torch.zeros(4, dtype=torch.bool)})
    assert empty.iou(empty) == 1.0
    with pytest.raises(ValueError, match="bool"):
        MaskSet({"x": torch.ones(3)})
    with pytest.raises(ValueError, match="'y'"):
        a | MaskSet({"x": a["x"]})


def test_apply_in_place_no_copy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 2))
    with torch.no_grad():
        model[0].weight[0, 0] = float("inf")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ptrs = {n: p.data_ptr() for n, p in model.named_parameters()}
    masks = MaskSet.full(model, ["0.weight", "1.weight"])
    masks["0.weight"][0, 0] = False
    masks["1.weight"][:, 1:3] = False
    masks.apply_(model)
    params = dict(model.named_parameters())
    assert {n: p.data_ptr() for n, p in params.items()} == ptrs
    for n in masks:
        m = masks[n]
        assert torch.equal(params[n][m], before[n][m])
        assert bool((params[n][~m] == 0).all())
    assert torch.equal(params["0.bias"], before["0.bias"])
    assert MaskSet.nonzero(model, masks.names) == masks


def test_free_zone_candidates_overlap():
    ms = {
        "en": MaskSet({"w": torch.tensor([1, 1, 0, 0, 0, 1], dtype=torch.bool)}),
        "fr": MaskSet({"w": torch.tensor([0, 1, 1, 0, 0, 0], dtype=torch.bool)}),
        "nl": MaskSet({"w": torch.tensor([0, 0, 0, 1, 0, 1], dtype=torch.bool)}),
    }
    pw = PathwayMasks(ms)
    assert pw.languages == ["en", "fr", "nl"]
    assert pw.free_zone("en")["w"].tolist() == [True, False, False, False, True, False]
    assert pw.candidates("en")["w"].tolist() == [True, True, False, False, True, True]
    assert pw.union()["w"].tolist() == [True, True, True, True, False, True]
    ov = pw.overlap()
    assert ov["en"]["en"] == 1.0 and ov["en"]["fr"] == pytest.approx(1 / 4) and ov["fr"]["nl"] == 0.0
    assert ov["nl"]["en"] == ov["en"]["nl"] == pytest.approx(1 / 4)
    assert pw.overlap_per_tensor()["w"] == ov
    single = PathwayMasks({"en": ms["en"]})
    assert bool(single.free_zone("en")["w"].all())
    with pytest.raises(ValueError, match="same names"):
        pw["de"] = MaskSet({"v": torch.ones(6, dtype=torch.bool)})


def test_save_load_bit_exact_with_header(tmp_path):
    """Invariant 8 (masks): save -> load is bit-exact, header and history included."""
    pw = PathwayMasks({lang: _rand_masks(i, SHAPES, p=0.3 + 0.2 * i) for i, lang in enumerate(["en", "fr", "nl"])})
    pw.record(step=0, language="en", sparsity=0.2, rule="magnitude/tensor")
    pw.record(step=4000, language="fr", sparsity=0.5, rule="rerank/candidates")
    path = tmp_path / "masks.pth"
    pw.save(path)
    loaded = PathwayMasks.load(path)
    assert loaded == pw
    for lang in pw:
        for n in SHAPES:
            assert torch.equal(loaded[lang][n], pw[lang][n])
    assert loaded.history == pw.history
    raw = torch.load(path, weights_only=True)
    assert raw["version"] == 1 and raw["names"] == list(SHAPES) and raw["languages"] == ["en", "fr", "nl"]
    assert raw["shapes"] == [list(s) for s in SHAPES.values()]
    assert raw["sparsity"] == pw.sparsity()
    total_bytes = sum((torch.Size(s).numel() + 7) // 8 for s in SHAPES.values())
    assert all(b.dtype == torch.uint8 and b.numel() == total_bytes for b in raw["bits"].values())
    # a tampered file is refused
    raw["sparsity"]["fr"] = 0.0
    torch.save(raw, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="'fr'"):
        PathwayMasks.load(tmp_path / "bad.pth")
    torch.save({"format": "other"}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not an"):
        PathwayMasks.load(tmp_path / "other.pth")


def test_check_compatible_names_first_mismatch():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    ok = MaskSet.full(model, ["0.weight", "1.weight"])
    ok.check_compatible(model, names=["0.weight", "1.weight"])
    extra = MaskSet({"0.weight": ok["0.weight"], "9.weight": ok["1.weight"], "1.weight": ok["1.weight"]})
    with pytest.raises(ValueError, match=r"'9\.weight' is not a parameter"):
        extra.check_compatible(model)
    shape = MaskSet({"0.weight": torch.ones(4, 4, dtype=torch.bool), "1.weight": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"'0\.weight' has shape \(4, 4\), the model's is \(4, 3\)"):
        shape.check_compatible(model)
    missing = MaskSet({"1.weight": ok["1.weight"]})
    with pytest.raises(ValueError, match=r"no mask for model tensor '0\.weight'"):
        missing.check_compatible(model, names=["0.weight", "1.weight"])
    with pytest.raises(ValueError, match=r"'0\.weight'"):
        PathwayMasks({"en": shape}).check_compatible(model)


def _espnet_average(state_dicts):
    """ESPnet 202511 ``average_nbest_models``: sum all tensors, divide unless dtype is torch.int*."""
    avg = None
    for states in state_dicts:
        states = {k: v.clone() for k, v in states.items()}
        if avg is None:
            avg = states
        else:
            for k in avg:
                avg[k] = avg[k] + states[k]
    for k in avg:
        if not str(avg[k].dtype).startswith("torch.int"):
            avg[k] = avg[k] / len(state_dicts)
    return avg


def _pathways():
    return PathwayMasks({lang: _rand_masks(10 + i, SHAPES) for i, lang in enumerate(["en", "fr"])})


def test_state_tensors_survive_espnet_averaging():
    """Invariant 8 (averaging): identical masks come back bit-exact after n-best averaging."""
    pw = _pathways()
    weights = {"a.weight": torch.randn(3, 5)}
    ckpts = []
    for _ in range(3):
        sd = dict(weights)
        sd.update({f"pathway_masks.{k}": v for k, v in pw.to_state_tensors().items()})
        ckpts.append(sd)
    avg = _espnet_average(ckpts)
    tensors = {k[len("pathway_masks.") :]: v for k, v in avg.items() if k.startswith("pathway_masks.")}
    back = PathwayMasks.from_state_tensors(tensors, pw.shapes)
    assert back.languages == pw.languages
    for lang in pw:
        for n in SHAPES:
            assert torch.equal(back[lang][n], pw[lang][n])


def test_state_tensors_refuse_averaged_different_masks():
    a, b = _pathways(), _pathways()
    b["fr"] = ~b["fr"]
    avg = _espnet_average([a.to_state_tensors(), b.to_state_tensors()])
    with pytest.raises(ValueError, match="bits_fr.*differs"):
        PathwayMasks.from_state_tensors(avg, a.shapes)


def test_naive_mask_storage_is_corrupted_by_averaging():
    """Why the int64 encoding: bool, uint8-packed and float masks do not survive."""
    m = torch.tensor([True, False, True, True, True, True, True, True])
    packed = pack_bits(m)  # 253 >= 128, so uint8 sums wrap
    avg = _espnet_average([{"bool": m, "packed": packed}] * 2)
    assert avg["bool"].dtype != torch.bool
    assert not torch.equal(avg["packed"].to(torch.uint8), packed)


def test_state_tensors_are_left_alone_by_module_dtype_casts():
    holder = nn.Module()
    for k, v in _pathways().to_state_tensors().items():
        holder.register_buffer(k, v)
    holder.to(torch.float16)
    assert all(b.dtype == torch.int64 for b in holder.buffers())


def test_real_espnet_average_nbest_models(tmp_path):
    """The same check through ESPnet's own averaging function, when ESPnet is installed."""
    pytest.importorskip("espnet2")
    from espnet2.main_funcs.average_nbest_models import average_nbest_models
    from espnet2.train.reporter import Reporter

    pw = _pathways()
    reporter = Reporter()
    for epoch in (1, 2, 3):
        reporter.set_epoch(epoch)
        with reporter.observe("valid") as sub:
            sub.register({"loss": 1.0 / epoch})
        sd = {"a.weight": torch.full((2, 2), float(epoch))}
        sd.update({f"pathway_masks.{k}": v for k, v in pw.to_state_tensors().items()})
        torch.save(sd, tmp_path / f"{epoch}epoch.pth")
    average_nbest_models(tmp_path, reporter, [("valid", "loss", "min")], nbest=3)
    avg = torch.load(tmp_path / "valid.loss.ave_3best.pth", weights_only=True)
    assert torch.equal(avg["a.weight"], torch.full((2, 2), 2.0))  # the weights really were averaged
    tensors = {k[len("pathway_masks.") :]: v for k, v in avg.items() if k.startswith("pathway_masks.")}
    assert PathwayMasks.from_state_tensors(tensors, pw.shapes) == pw


def test_core_does_not_import_espnet():
    code = (
        "import sys; import espnet_pathways.masks, espnet_pathways.pruning, espnet_pathways.optim, "
        "espnet_pathways.sampler; sys.exit(any(m.split('.')[0] in ('espnet', 'espnet2') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1]).returncode == 0


def test_masks_files_are_readable_by_the_experiments_other_users(tmp_path):
    import os
    import stat

    from espnet_pathways.controller import save_masks_atomic

    old = os.umask(0o022)
    try:
        save_masks_atomic(PathwayMasks({"en": MaskSet({"w": torch.ones(2, 2, dtype=torch.bool)})}), tmp_path / "masks.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "masks.pt").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["masks.pt"]  # no temporary file left


def test_holder_counts_give_the_union_definitions_and_stay_current():
    """Counting the languages that hold each weight (one pass) gives exactly the union-based f_z, c_z and ∪."""
    g = torch.Generator().manual_seed(0)
    shapes = {"a": (7, 5), "b": (13,), "c": (3, 4, 2)}

    def rand_set(p):
        return MaskSet({n: torch.rand(s, generator=g) < p for n, s in shapes.items()})

    langs = ["en", "fr", "it", "nl", "de"]
    pw = PathwayMasks({lang: rand_set(0.3) for lang in langs})
    h = pw.holders()
    for step in range(6):
        for z in langs:
            others = pw.union([x for x in langs if x != z])
            assert pw.free_zone(z, h) == ~others == pw.free_zone(z)
            assert pw.candidates(z, h) == (~others | pw[z]) == pw.candidates(z)
        assert h.union() == pw.union()
        z = langs[step % len(langs)]  # one language's mask changes, as inside a Dynamic Pathways event
        old, new = pw[z], rand_set(0.2 + 0.1 * step)
        pw[z] = new
        h.replace(old, new)
        fresh = pw.holders()
        assert all(torch.equal(h.counts[n], fresh.counts[n]) for n in shapes)
