"""Encoder SSL (HuBERT-style) on the transducer's own encoder: loss, targets, init_param, pathways."""

from __future__ import annotations

import pytest
import torch
from espnet_pathways.espnet_compat import install_transducer_loss

install_transducer_loss()

from espnet2.torch_utils.load_pretrained_model import load_pretrained_model  # noqa: E402

from espnet_pathways.controller import PathwaysConfig, PathwaysController, PathwaysError  # noqa: E402
from espnet_pathways.masks import prunable_names  # noqa: E402
from espnet_pathways.ssl import EncoderSSLModel, TargetLengthError  # noqa: E402
from espnet_pathways.ssl_task import EncoderSSLTask  # noqa: E402
from test_model import _args, batch, build  # noqa: E402

K = 12


def ssl_model(seed=0, **conf):
    args = _args()
    args.token_list = [str(i) for i in range(K)]
    args.ssl_conf = {"final_dim": 16, "masking_conf": {"mask_prob": 0.5, "mask_length": 2}, **conf}
    torch.manual_seed(seed)
    return EncoderSSLTask.build_model(args)


def ssl_batch(model, lang="fr", seed=0, b=3, shift=0):
    x = batch(lang, seed=seed, b=b)
    with torch.no_grad():
        model.eval()
        _, lengths, _ = model.encode(x["speech"], x["speech_lengths"], mask=False)
    g = torch.Generator().manual_seed(seed)
    n = lengths + shift
    x["text"] = torch.randint(0, K, (b, int(n.max())), generator=g)
    x["text_lengths"] = n
    return x


@pytest.mark.parametrize("chunk", [None, 4])
def test_forward_backward_finite_full_context_and_chunked(chunk):
    model = ssl_model(chunk_size=chunk)
    b = ssl_batch(model)
    model.train()
    loss, stats, _ = model(**b)
    assert torch.isfinite(loss) and loss > 0 and 0 <= float(stats["acc_m"]) <= 1
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["masking.mask_embedding"] is not None and grads["masking.mask_embedding"].abs().sum() > 0
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), [n for n, g in grads.items() if g is None]


def test_chunked_attention_does_not_see_the_future():
    model = ssl_model(chunk_size=2)
    model.normalize = None  # utterance-level normalisation would carry the future into every frame
    model.eval()
    x = batch("fr", b=1)
    y = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in x.items()}
    y["speech"][:, 6000:] += 0.5
    with torch.no_grad():
        a, _, _ = model.encode(x["speech"], x["speech_lengths"], mask=False)
        c, _, _ = model.encode(y["speech"], y["speech_lengths"], mask=False)
    first = (6000 // 160 // 4 - 2) // 2 * 2  # encoder frames whose chunks end before the change
    assert first >= 2 and torch.equal(a[:, :first], c[:, :first]) and not torch.equal(a, c)


def test_targets_within_one_frame_are_aligned_else_one_line_error():
    model = ssl_model()
    for shift in (-1, 1):
        b = ssl_batch(model, shift=shift)
        model.train()
        assert torch.isfinite(model(**b)[0])
    b = ssl_batch(model, shift=3)
    with pytest.raises(TargetLengthError, match=r"fr_000100_7_0000: \d+ targets for \d+ encoder frames \(tolerance 1\)"):
        model(**b)
    lengths = torch.tensor([5, 4])
    out = model.align_targets(torch.tensor([[1, 2, 3, 4, 5, 6], [7, 8, 9, -1, -1, -1]]), torch.tensor([6, 3]), lengths, 5)
    assert out.tolist() == [[1, 2, 3, 4, 5], [7, 8, 9, 9, -1]]


def test_bad_ssl_conf():
    with pytest.raises(PathwaysError, match=r"ssl_conf\.mask_prob: unknown option"):
        ssl_model(mask_prob=0.3)
    with pytest.raises(PathwaysError, match=r"ssl_conf\.chunk_size: must be null"):
        ssl_model(chunk_size=0)


def test_init_param_loads_the_encoder_into_the_transducer_name_for_name(tmp_path):
    ssl = ssl_model(seed=3)
    path = tmp_path / "ssl.pth"
    torch.save(ssl.state_dict(), path)
    asr = build(seed=0)
    load_pretrained_model(f"{path}:encoder:encoder", asr, "cpu")
    ours = {n: p for n, p in asr.named_parameters() if n.startswith("encoder.")}
    theirs = {n: p for n, p in ssl.named_parameters() if n.startswith("encoder.")}
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[n], theirs[n]) for n in ours)
    # every mask name found on the SSL model is a tensor of the transducer, never the head or mask embedding
    names = prunable_names(ssl)
    assert names and all(n.startswith("encoder.") for n in names) and set(names) <= set(dict(asr.named_parameters()))


def test_init_param_from_an_ssl_model_of_another_encoder_config_is_one_line_error(tmp_path):
    from espnet_pathways.task import ASRPathwaysTask, check_init_param

    args = _args()
    args.token_list = [str(i) for i in range(K)]
    args.ssl_conf = {"final_dim": 16}
    args.encoder_conf["body_conf"][0]["linear_size"] = 48  # another feed-forward width
    other = EncoderSSLTask.build_model(args)
    path = tmp_path / "ssl_other.pth"
    torch.save(other.state_dict(), path)
    asr = build(seed=0)
    with pytest.raises(PathwaysError, match=r"ssl_other.pth: encoder\..*has shape \(48, 32\), the model's \(64, 32\)"):
        check_init_param(f"{path}:encoder:encoder", asr)
    with pytest.raises(PathwaysError, match="has no tensor under 'encoders'"):
        check_init_param(f"{path}:encoders:encoder", asr)
    with pytest.raises(PathwaysError, match="nope.pth: no such file"):
        check_init_param(f"{tmp_path / 'nope.pth'}:encoder:encoder", asr)
    same = ssl_model(seed=3)
    torch.save(same.state_dict(), tmp_path / "ssl.pth")
    check_init_param(f"{tmp_path / 'ssl.pth'}:encoder:encoder", asr)  # fits: no error
    with pytest.raises(PathwaysError, match=r"ssl.pth: (masking|ssl_loss)\S* is not in the model"):
        check_init_param(f"{tmp_path / 'ssl.pth'}", asr)  # the whole SSL model: its head is no transducer part
    train_args = _args()  # the training entry point checks every --init_param before anything is written
    train_args.init_param = [f"{path}:encoder:encoder"]
    with pytest.raises(PathwaysError, match="has shape"):
        ASRPathwaysTask.build_optimizers(train_args, asr)


def test_pathways_on_the_ssl_model_keep_the_invariants():
    from test_model import random_masks

    model = ssl_model()
    masks = random_masks(model, keep=0.5)
    cfg = PathwaysConfig.from_dict({"mode": "pathways", "init_masks": "(test)"})
    ctl = PathwaysController(model, cfg, languages=["en", "fr"], init_masks=masks)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    ctl.install(opt)
    model.train()
    b = ssl_batch(model, "fr")
    model.train()
    ctl.start()
    model.release()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.manual_seed(1)
    loss, stats, _ = model(**b)
    assert "loss_fr" in stats
    params = dict(model.named_parameters())
    for n in masks.names:  # the batch computes with θ ⊙ m_fr
        assert not params[n].detach()[~masks["fr"][n]].any(), n
    loss.backward()
    opt.step()
    model.release()
    for n in masks.names:  # everything outside m_fr bit-identical after an AdamW step with weight decay
        out = ~masks["fr"][n]
        assert torch.equal(params[n].detach()[out], before[n][out]), n
        assert not torch.equal(params[n].detach()[masks["fr"][n]], before[n][masks["fr"][n]]), n


@pytest.mark.parametrize("config", ["train_tiny.yaml", "train_demo.yaml"])  # subsampling x4 and x6
def test_frame_counts_are_each_utterances_own_encoder_length(config):
    from tiny_asr import ROOT

    parser = EncoderSSLTask.get_parser()
    args = parser.parse_args(["--config", str(ROOT / "conf" / config), "--token_list", "x", "--output_dir", "/tmp/x"])
    args.token_list = [str(i) for i in range(K)]
    args.normalize = None
    model = EncoderSSLTask.build_model(args)
    model.eval()
    lengths = torch.tensor([6400, 7000, 7777, 9000, 12345])
    counts = model.frame_counts(lengths)
    for n, c in zip(lengths.tolist(), counts.tolist()):
        speech = torch.randn(1, n)
        with torch.no_grad():
            out, got, _ = model.encode(speech, torch.tensor([n]), mask=False)
        assert out.size(1) == c == int(got[0]), n
    # in a padded batch each utterance keeps its own length (ESPnet's embed mask would report the longest)
    with torch.no_grad():
        _, got, _ = model.encode(torch.randn(5, 12345), lengths, mask=False)
    assert got.tolist() == counts.tolist()


# ---------------------------------------------------------------- targets and the entry point
@pytest.fixture(scope="module")
def ssl_data(tmp_path_factory):
    """The tiny data set + k-means targets (k=4) for train and valid, made by local/ssl_targets.py."""
    import importlib.util

    from tiny_asr import ROOT, make_data

    data = make_data(tmp_path_factory.mktemp("ssl_data"))
    spec = importlib.util.spec_from_file_location("ssl_targets_script", ROOT / "local" / "ssl_targets.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = data / "targets"
    assert script.main(["--config", str(ROOT / "conf" / "ssl_tiny.yaml"), "--sets", str(data / "train"), str(data / "valid"),
                        "--out", str(out), "--k", "4", "--seed", "1"]) == 0
    return data, out, script


def test_targets_are_deterministic_one_per_encoder_frame_and_typed(ssl_data, tmp_path):
    from tiny_asr import ROOT

    from espnet_pathways.ssl_targets import KMeansTargets

    data, out, script = ssl_data
    again = tmp_path / "again"
    assert script.main(["--config", str(ROOT / "conf" / "ssl_tiny.yaml"), "--sets", str(data / "train"),
                        "--out", str(again), "--k", "4", "--seed", "1"]) == 0
    assert (again / "train" / "text").read_text() == (out / "train" / "text").read_text()  # same seed, same labels
    model = ssl_model()
    wavs = dict(line.split() for line in (data / "train" / "speech_shape").read_text().splitlines())
    for line in (out / "train" / "text").read_text().splitlines():
        utt, *labels = line.split()
        assert len(labels) == int(model.frame_counts(torch.tensor([int(wavs[utt])]))[0]), utt
        assert all(0 <= int(x) < 4 for x in labels)
    assert (out / "tokens.txt").read_text().split() == ["0", "1", "2", "3"]
    km = KMeansTargets.load(out / "kmeans.pkl")
    with pytest.raises(PathwaysError, match=r"--kmeans: fitted on mfcc features \(39 dims\), given layer1 features"):
        km.labels(torch.zeros(5, 32), "layer1")
    bad = script.main(["--config", str(ROOT / "conf" / "ssl_tiny.yaml"), "--sets", str(tmp_path), "--out", str(tmp_path / "x")])
    assert bad == 1 and not (tmp_path / "x").exists()


def test_ssl_train_entry_point_and_per_language_imp_never_prunes_the_head(ssl_data, tmp_path):
    from tiny_asr import ROOT, train_args

    from espnet_pathways.bin import ssl_train
    from espnet_pathways.controller import load_masks_source

    data, out, _ = ssl_data

    def args(run, *extra):
        a = train_args(data, run, ROOT / "conf" / "ssl_tiny.yaml", "--token_list", str(out / "tokens.txt"),
                       "--use_preprocessor", "false", *extra)
        for split in ("train", "valid"):  # targets instead of transcripts
            a[a.index(f"{data}/{split}/text,text,text")] = f"{out}/{split}/text,text,text_int"
            a[a.index(f"{data}/{split}/text_shape")] = f"{out}/{split}/text_shape"
        return a

    dense = tmp_path / "dense"
    ssl_train.main(args(dense, "--max_epoch", "1"))
    assert (dense / "valid.loss.ave.pth").is_file()
    imp = tmp_path / "imp_fr"
    ssl_train.main(args(imp, "--max_epoch", "1", "--init_param", str(dense / "valid.loss.ave.pth"),
                        "--pathways", "mode=imp", "--pathways", "languages=[fr]", "--pathways", "final_sparsity=0.5",
                        "--pathways", "prune_interval=1", "--pathways", "num_rounds=1"))
    masks = load_masks_source(imp / "masks.pt")
    assert masks.languages == ["fr"] and all(n.startswith("encoder.") for n in masks.names)
    assert abs(masks["fr"].sparsity() - 0.5) < 0.01


def test_ssl_masks_drive_pathways_fine_tuning_of_the_transducer_encoder():
    from test_model import random_masks

    ssl = ssl_model()
    masks = random_masks(ssl, keep=0.5)  # per-language masks over the SSL model's prunable (encoder) tensors
    asr = build()
    cfg = PathwaysConfig.from_dict({"mode": "pathways", "init_masks": "(ssl)", "prunable": {"prefixes": ["encoder."]}})
    ctl = PathwaysController(asr, cfg, languages=["en", "fr"], init_masks=masks)
    assert ctl.names == masks.names  # the same tensors, name for name
    ctl.install(torch.optim.Adam(asr.parameters()))
    asr.train()
    loss, stats, _ = asr(**batch("en"))
    assert torch.isfinite(loss) and "loss_en" in stats
    params = dict(asr.named_parameters())
    assert all(not params[n].detach()[~masks["en"][n]].any() for n in masks.names)
