"""conf/train_mls_gpu.yaml, the papers'-scale config for real MLS: it builds, has the size it says, and trains."""

from __future__ import annotations

import pytest
import torch
from espnet_pathways.espnet_compat import install_transducer_loss

install_transducer_loss()

from espnet_pathways.controller import PathwaysConfig, PathwaysController  # noqa: E402
from espnet_pathways.masks import MaskSet, PathwayMasks, prunable_names  # noqa: E402
from espnet_pathways.task import ASRPathwaysTask  # noqa: E402
from tiny_asr import ROOT  # noqa: E402


@pytest.mark.parametrize("vocab", [1548, 5000])  # --token_type bpe_lang --nbpe 512 (the paper's merged size); bpe 5000
def test_real_mls_config_builds_at_the_papers_scale_and_takes_a_pathway_step(vocab):
    args = ASRPathwaysTask.get_parser().parse_args(
        ["--config", str(ROOT / "conf" / "train_mls_gpu.yaml"), "--token_list", "x", "--output_dir", "/tmp/x"])
    args.token_list = ["<blank>", "<unk>"] + [f"t{i}" for i in range(vocab - 3)] + ["<sos/eos>"]
    torch.manual_seed(0)
    model = ASRPathwaysTask.build_model(args)
    params = dict(model.named_parameters())
    total = sum(p.numel() for p in params.values())
    assert 100e6 <= total <= 190e6, total
    names = prunable_names(model)
    assert sum(params[n].numel() for n in names) > 0.75 * total
    assert model.encoder.output_size == 512 and len(model.encoder.encoders.blocks) == 16
    # one step of ASR Pathways (fr) on random audio: the loss is finite, only fr's region moves
    g = torch.Generator().manual_seed(0)
    masks = PathwayMasks({lang: MaskSet({n: torch.rand(params[n].shape, generator=g) < 0.3 for n in names})
                          for lang in ("en", "fr")})
    ctl = PathwaysController(model, PathwaysConfig.from_dict({"mode": "pathways", "init_masks": "(test)"}),
                             languages=["en", "fr"], init_masks=masks)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    ctl.install(opt)
    ctl.start()
    w = params[names[0]]
    before = w.detach().clone()
    model.train()
    loss, _, _ = model(speech=0.1 * torch.randn(2, 24000, generator=g), speech_lengths=torch.tensor([24000, 20000]),
                       text=torch.randint(2, vocab - 1, (2, 8), generator=g), text_lengths=torch.tensor([8, 6]),
                       utt_id=["fr_000001_1_000000", "fr_000001_1_000001"])
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    model.release()
    moved = w.detach() != before
    assert moved.any() and not moved[~masks["fr"][names[0]]].any()
