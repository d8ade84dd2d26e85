"""Real ESPnet training through the plugin's entry point on a tiny data set (invariants 8, 9).

Runs ``espnet_pathways.bin.pathways_train.main`` in this process (ESPnet is imported
once) on random-audio data in two languages (tests/tiny_asr.py), with the example
configs of conf/pathways/: every mode for a few steps, resume, n-best averaging, export,
and bad input.  Decoding with stock ESPnet and the command-line error path run in
subprocesses and are marked slow.
"""

import subprocess
import sys

import pytest
import torch
import yaml

from espnet_pathways.espnet_compat import install_transducer_loss

install_transducer_loss()

from espnet2.tasks.asr_transducer import ASRTransducerTask  # noqa: E402

from espnet_pathways import export  # noqa: E402
from espnet_pathways.controller import STATE_KEY, PathwaysError, load_masks_source  # noqa: E402
from espnet_pathways.masks import MaskSet, PathwayMasks  # noqa: E402
from espnet_pathways.task import ASRPathwaysTask, StockTransducerTask  # noqa: E402
from tiny_asr import ROOT, make_data, run_in_process, train_args  # noqa: E402


@pytest.fixture(autouse=True)
def _rnnt_loss():
    """ESPnet imports warprnnt_pytorch lazily per model; another test module may have removed the shim."""
    install_transducer_loss()


CONF = ROOT / "conf" / "pathways"
MODES = ("imp", "lth", "lap", "pathways", "adaptive", "dynamic_pathways")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("tiny_asr"))


@pytest.fixture(scope="module")
def init_masks(data, tmp_path_factory):
    """Per-language masks at 50% for the tiny model (magnitude of two differently seeded models)."""
    from espnet_pathways.pruning import magnitude_prune

    parser = ASRPathwaysTask.get_parser()
    out = {}
    for lang, seed in (("en", 1), ("fr", 2)):
        args = parser.parse_args(["--config", str(CONF / "pathways.yaml"), "--token_list", str(data / "tokens.txt"), "--output_dir", "/tmp/x"])
        torch.manual_seed(seed)
        model = ASRPathwaysTask.build_model(args)
        out[lang] = magnitude_prune(model, 0.5).masks
    path = tmp_path_factory.mktemp("masks") / "masks.pt"
    PathwayMasks(out).save(path)
    return path


def train(data, out, mode, *extra, masks=None):
    args = list(extra)
    if masks is not None:
        args += ["--pathways", f"init_masks={masks}"]
    return run_in_process(train_args(data, out, CONF / f"{mode}.yaml", *args))


def ckpt_state(out):
    ck = torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=False)
    return ck, ck["optimizers"][0][STATE_KEY]


# ---------------------------------------------------------------- every mode
@pytest.mark.parametrize("mode", MODES)
def test_mode_trains_through_the_entry_point(mode, data, init_masks, tmp_path):
    out = tmp_path / mode
    masks = init_masks if mode in ("pathways", "dynamic_pathways") else None
    log = train(data, out, mode, "--max_epoch", "2", masks=masks)
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    langs = cfg["pathways"]["languages"]
    summary = log.split("2epoch results")[1].splitlines()[0]
    train_part, valid_part = summary.split("[valid]")
    for lang in langs:  # per-language losses in ESPnet's epoch summary (lap's batches are mixed)
        assert f"loss_{lang}=" in valid_part
        assert (f"loss_{lang}=" in train_part) == (mode != "lap")
    ck, state = ckpt_state(out)
    assert state["mode"] == mode and state["started"] and state["step"] > 0
    saved = load_masks_source(out / "masks.pt")
    assert saved.languages == langs
    assert load_masks_source(out / "checkpoint.pth") == saved
    final = cfg["pathways"].get("final_sparsity", 0.5)
    for lang in langs:
        for n, m in saved[lang].items():  # the target is reached (schedules end within 2 epochs)
            assert abs(int(m.sum()) - (1 - final) * m.numel()) <= 1, (lang, n)
    # checkpoints keep the stock keys; the weights no language uses are exactly zero
    stock = ASRTransducerTask.build_model_from_file(out / "config.yaml", out / "valid.loss.ave.pth")[0]
    sd = torch.load(out / "valid.loss.ave.pth", map_location="cpu")
    assert list(sd) == list(stock.state_dict())
    union = saved.union()
    for n, u in union.items():
        assert not sd[n][~u].any(), n
    if mode in ("imp", "lth", "lap", "adaptive", "dynamic_pathways"):
        assert any(e["event"] == "prune" for e in saved.history)


def test_dual_mode_trains_through_the_entry_point(data, tmp_path):
    out = tmp_path / "dual"
    log = train(data, out, "dual_mode", "--max_epoch", "2")
    summary = log.split("2epoch results")[1].splitlines()[0]
    train_part, valid_part = summary.split("[valid]")
    for key in ("loss_stream_sparse=", "loss_full_dense=", "loss_transducer_stream_sparse=", "loss_transducer_full_dense="):
        assert key in train_part and key in valid_part, key
    for lang in ("en", "fr"):
        assert f"loss_{lang}=" in valid_part
    _, state = ckpt_state(out)
    assert state["mode"] == "dual_mode" and state["step"] > 0
    saved = load_masks_source(out / "masks.pt")
    assert saved.languages == ["en", "fr"] and saved["en"] == saved["fr"]
    for n, m in saved["en"].items():  # the target is reached
        assert abs(int(m.sum()) - 0.3 * m.numel()) <= 1, n
    # the checkpoint is the dense supernet: stock keys, and pruned weights are not zero
    stock = ASRTransducerTask.build_model_from_file(out / "config.yaml", out / "valid.loss.ave.pth")[0]
    sd = torch.load(out / "valid.loss.ave.pth", map_location="cpu")
    assert list(sd) == list(stock.state_dict())
    assert sum(int(sd[n][~m].ne(0).sum()) for n, m in saved["en"].items()) > 0.9 * (saved["en"].numel() - saved["en"].kept())
    assert [e["event"] for e in saved.history[1:]] == ["rerank", "rerank", "prune"] * 2

    # export: two stock model dirs, each with its own BatchNorm statistics; stock decoding
    from espnet2.bin.asr_transducer_inference import Speech2Text

    from espnet_pathways.bin import export_dual

    exp = tmp_path / "export"
    with pytest.raises(SystemExit):
        export_dual.main(["--exp", str(out), "--out", str(exp)])  # BatchNorm and no --calib_data
    assert not exp.exists()
    export_dual.main(["--exp", str(out), "--out", str(exp), "--calib_data", str(data / "train" / "wav.scp"),
                      "--calib_batches", "2", "--calib_batch_size", "3"])
    sparse = torch.load(exp / "sparse_streaming" / "model.pth", map_location="cpu")
    dense = torch.load(exp / "dense_full" / "model.pth", map_location="cpu")
    assert list(sparse) == list(dense) == list(sd)
    for n, m in saved["en"].items():
        assert not sparse[n][~m].any() and torch.equal(sparse[n][m], sd[n][m]) and torch.equal(dense[n], sd[n]), n
    bn = [k for k in sd if k.endswith("running_mean")]
    assert bn and all(not torch.equal(sparse[k], dense[k]) and not torch.equal(dense[k], sd[k]) for k in bn)
    info = yaml.safe_load((exp / "sparse_streaming" / "pathway.yaml").read_text())
    assert info["batchnorm"]["recalibrated"] and info["batchnorm"]["utterances"] == 6 and info["decode_streaming"]
    wav = ASRTransducerTask.build_streaming_iterator(
        [(str(data / "valid" / "wav.scp"), "speech", "sound")], preprocess_fn=None, collate_fn=None, batch_size=1, dtype="float32",
        num_workers=0, inference=True)
    speech = next(iter(wav))[1]["speech"][0]
    for name, streaming in (("sparse_streaming", True), ("dense_full", False)):
        s2t = Speech2Text(exp / name / "config.yaml", exp / name / "model.pth", beam_size=2, streaming=streaming)
        hyps = s2t.streaming_decode(speech, is_final=True) if streaming else s2t(speech)
        assert hyps and isinstance(s2t.hypotheses_to_results(hyps)[0][0], str)


def test_dual_pathways_trains_through_the_entry_point(data, init_masks, tmp_path):
    out = tmp_path / "dual_pathways"
    cfg = yaml.safe_load((CONF / "dual_mode.yaml").read_text())
    cfg["pathways"] = {"mode": "dual_pathways", "init_masks": str(init_masks), "dual_pathways": {"policy": "both"}}
    (tmp_path / "dual_pathways.yaml").write_text(yaml.safe_dump(cfg))
    log = run_in_process(train_args(data, out, tmp_path / "dual_pathways.yaml", "--max_epoch", "1"))
    summary = log.split("1epoch results")[1].splitlines()[0]
    train_part, valid_part = summary.split("[valid]")
    for lang in ("en", "fr"):  # monolingual batches: per-language losses in train and valid
        assert f"loss_{lang}=" in train_part and f"loss_{lang}=" in valid_part
    assert "loss_stream_sparse=" in valid_part and "loss_full_dense=" in valid_part
    saved, given = load_masks_source(out / "masks.pt"), PathwayMasks.load(init_masks)
    assert all(saved[lang] == given[lang] for lang in ("en", "fr"))  # fixed masks


# ---------------------------------------------------------------- resume (invariant 8)
@pytest.mark.parametrize("mode", ["lth", "dynamic_pathways", "dual_mode"])
def test_resumed_run_matches_uninterrupted_run(mode, data, init_masks, tmp_path):
    masks = init_masks if mode == "dynamic_pathways" else None
    # dual_mode's mixed batches: 4 steps per epoch, so its last prune must come by step 4 here;
    # re-ranks go on after it, so that the resumed epoch has events too
    extra = ["--pathways", "prune_interval=2", "--pathways", "rerank_after_final=true"] if mode == "dual_mode" else []
    full, part = tmp_path / "full", tmp_path / "part"
    train(data, full, mode, "--max_epoch", "2", *extra, masks=masks)
    train(data, part, mode, "--max_epoch", "1", *extra, masks=masks)
    _, s1 = ckpt_state(part)
    assert 0 < s1["step"] < ckpt_state(full)[1]["step"]
    train(data, part, mode, "--max_epoch", "2", "--resume", "true", *extra, masks=masks)
    a = torch.load(full / "2epoch.pth", map_location="cpu")
    b = torch.load(part / "2epoch.pth", map_location="cpu")
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert load_masks_source(full / "masks.pt") == load_masks_source(part / "masks.pt")  # bits and history
    if mode == "dual_mode":
        assert max(e["step"] for e in load_masks_source(part / "masks.pt").history) > s1["step"]
    ca, sa = ckpt_state(full)
    cb, sb = ckpt_state(part)
    assert sa["step"] == sb["step"]
    for pa, pb in zip(ca["optimizers"][0]["state"].values(), cb["optimizers"][0]["state"].values()):
        assert all(torch.equal(pa[k], pb[k]) for k in pa)


def test_resume_from_a_checkpoint_without_masks_fails(data, tmp_path):
    out = tmp_path / "exp"
    train(data, out, "imp", "--max_epoch", "1")
    ck = torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=False)
    del ck["optimizers"][0][STATE_KEY]  # as stock ESPnet writes it
    torch.save(ck, out / "checkpoint.pth")
    with pytest.raises(SystemExit) as e:
        train(data, out, "imp", "--max_epoch", "2", "--resume", "true")
    assert e.value.code == 1
    assert "resume: the checkpoint has no pathway masks" in e.value.stderr.strip().splitlines()[-1]


# ---------------------------------------------------------------- averaging and export
def test_nbest_averaging_keeps_masks_out_and_export_is_stock(data, init_masks, tmp_path):
    out = tmp_path / "exp"
    train(data, out, "pathways", "--max_epoch", "3", "--keep_nbest_models", "2", masks=init_masks)
    ave = out / "valid.loss.ave_2best.pth"
    assert ave.is_file() and (out / "valid.loss.ave.pth").resolve() == ave.resolve()
    sd = torch.load(ave, map_location="cpu")
    stock = ASRTransducerTask.build_model_from_file(out / "config.yaml", ave)[0]
    assert list(sd) == list(stock.state_dict())  # no mask tensors for averaging to touch
    masks = load_masks_source(out / "masks.pt")
    given = load_masks_source(init_masks)
    assert masks.languages == ["en", "fr"] and all(masks[lang] == given[lang] for lang in masks)

    # per-language export: a stock model dir with θ ⊙ m_l
    for lang in ("en", "fr"):
        d = export.export_pathway(out, lang, tmp_path / f"export_{lang}")
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        assert "pathways" not in cfg
        model, _ = ASRTransducerTask.build_model_from_file(d / "config.yaml", d / "model.pth")
        exported = torch.load(d / "model.pth", map_location="cpu")
        assert list(exported) == list(sd)
        for k, v in exported.items():
            expect = sd[k].masked_fill(~masks[lang][k], 0) if k in masks[lang] else sd[k]
            assert torch.equal(v, expect), k
        info = yaml.safe_load((d / "pathway.yaml").read_text())
        assert info["language"] == lang and info["sparsity"] == pytest.approx(0.5, abs=1e-3)

    # shared model + all masks: smaller than the two exports, and rebuilds each bit-exactly
    shared = export.export_shared(out, tmp_path / "shared.pt")
    assert shared.stat().st_size < 2 * (tmp_path / "export_en" / "model.pth").stat().st_size
    obj = export.load_shared(shared)
    for lang in ("en", "fr"):
        rebuilt = export.pathway_from_shared(obj, lang)
        exported = torch.load(tmp_path / f"export_{lang}" / "model.pth", map_location="cpu")
        assert list(rebuilt) == list(exported) and all(torch.equal(rebuilt[k], exported[k]) for k in exported)
    d = export.export_from_shared(shared, "fr", tmp_path / "from_shared_fr")
    a = torch.load(d / "model.pth", map_location="cpu")
    assert all(torch.equal(a[k], v) for k, v in torch.load(tmp_path / "export_fr" / "model.pth").items())

    with pytest.raises(PathwaysError, match=r"--lang: no pathway for 'nl' \(the masks have en, fr\)"):
        export.export_pathway(out, "nl", tmp_path / "x")
    (tmp_path / "plain").mkdir()
    with pytest.raises(PathwaysError, match="has no masks.pt or checkpoint.pth with masks"):
        export.export_pathway(tmp_path / "plain", "fr", tmp_path / "x")


def test_merge_masks_from_runs(init_masks, tmp_path):
    merged = export.merge_masks([("fr", init_masks), ("en", init_masks)], tmp_path / "m.pt")
    assert merged.languages == ["fr", "en"] and load_masks_source(tmp_path / "m.pt") == merged
    with pytest.raises(PathwaysError, match="no mask for 'nl'"):
        export.merge_masks([("nl", init_masks)])


# ---------------------------------------------------------------- bad input through the entry point
@pytest.mark.parametrize("extra, message", [
    (["--pathways", "final_sparsity=1.0"], "pathways.final_sparsity must be in [0, 1), got 1.0"),
    (["--pathways", "languages=[fr, de]"], "pathways.languages: mode imp trains one language"),
    (["--pathways", "languages=[de]"], "pathways.languages: no training data for 'de'"),
    (["--pathways", "rerank_interval=3"], "pathways.rerank_interval: not used by mode imp"),
    (["--pathways", "prune_interval=1000"], "the last prune event is at optimizer step 2000 (T=1000), but this run has 4 steps"),
])
def test_bad_input_fails_before_anything_is_written(extra, message, data, tmp_path, capsys):
    out = tmp_path / "exp"
    with pytest.raises(SystemExit) as e:
        run_in_process(train_args(data, out, CONF / "imp.yaml", *extra))
    assert e.value.code == 1
    last = e.value.stderr.strip().splitlines()[-1]
    assert last.startswith("pathways_train: error: ") and message in last, last
    assert not (out / "config.yaml").exists()


@pytest.mark.parametrize("mode", ["imp", "lap"])  # pathway batches (language sampler) and mixed (ESPnet's)
def test_tristage_schedule_spans_each_run(mode, data, init_masks, tmp_path):
    """``--scheduler tristagelr --scheduler_conf max_steps=auto`` (``run.sh --plugin_schedule tristage``):
    the plugin counts the run's optimizer steps, so warm-up, hold and decay end with the run; the
    base config's ``warmup_steps`` (merged in by ESPnet) is dropped, not passed on."""
    out = tmp_path / mode
    log = train(data, out, mode, "--max_epoch", "2", "--scheduler", "tristagelr", "--scheduler_conf", "max_steps=auto")
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    ck, state = ckpt_state(out)
    assert cfg["scheduler"] == "tristagelr" and "warmup_steps" not in cfg["scheduler_conf"]
    assert cfg["scheduler_conf"]["max_steps"] == state["step"] > 0  # every optimizer step of the run, counted before it
    assert f"max_steps: auto -> {state['step']}" in log and "dropped: warmup_steps" in log
    sched = ck["schedulers"][0]
    assert sched["last_epoch"] == state["step"]
    lr = ck["optimizers"][0]["param_groups"][0]["lr"]
    peak = cfg["optim_conf"]["lr"]
    assert lr == pytest.approx(peak * 0.01, rel=0.05)  # the end of the decay: final_lr_scale 0.01 of the peak


def test_tristage_schedule_in_the_stock_entry_point(data, tmp_path):
    """The plugin's dense runs (ref, dense_small, dual full_only) go through espnet_pathways.bin.asr_transducer_train."""
    from espnet_pathways.bin import asr_transducer_train

    out = tmp_path / "dense"
    asr_transducer_train.main(train_args(data, out, ROOT / "conf" / "train_tiny.yaml", "--max_epoch", "1",
                                         "--scheduler", "tristagelr", "--scheduler_conf", "max_steps=auto"))
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    ck = torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert cfg["scheduler_conf"]["max_steps"] == ck["schedulers"][0]["last_epoch"] > 0
    assert "warmup_steps" not in cfg["scheduler_conf"]


def test_max_steps_auto_is_for_tristage_only(data, tmp_path):
    with pytest.raises(SystemExit) as e:
        train(data, tmp_path / "x", "lap", "--max_epoch", "1", "--scheduler_conf", "max_steps=auto")
    assert e.value.code != 0
    assert e.value.stderr.strip().splitlines()[-1] == (
        "pathways_train: error: scheduler_conf.max_steps: auto is for scheduler tristagelr, not warmuplr")


def test_bad_masks_files(data, init_masks, tmp_path):
    # a masks file for another model: the first mismatching tensor is named
    m = load_masks_source(init_masks)
    names = m.names
    bad = PathwayMasks({lang: MaskSet({**{n: ms[n] for n in names}, names[1]: torch.ones(2, 2, dtype=torch.bool)}) for lang, ms in m.items()})
    bad.save(tmp_path / "bad.pt")
    for src, message in (
        (tmp_path / "bad.pt", f"tensor '{names[1]}' has shape (2, 2)"),
        (tmp_path / "none.pt", "pathways.init_masks: no such file"),
    ):
        with pytest.raises(SystemExit) as e:
            run_in_process(train_args(data, tmp_path / "e1", CONF / "pathways.yaml", "--pathways", f"init_masks={src}"))
        assert message in e.value.stderr.strip().splitlines()[-1]
        assert not (tmp_path / "e1" / "config.yaml").exists()
    # a model file is not a masks file ("a checkpoint without masks")
    exp = tmp_path / "imp"
    train(data, exp, "imp", "--max_epoch", "1")
    with pytest.raises(PathwaysError, match="holds no pathway masks"):
        load_masks_source(exp / "1epoch.pth")
    with pytest.raises(SystemExit) as e:
        run_in_process(train_args(data, tmp_path / "e2", CONF / "pathways.yaml", "--pathways", f"init_masks={exp / '1epoch.pth'}"))
    assert "holds no pathway masks" in e.value.stderr


# ---------------------------------------------------------------- slow: subprocesses
@pytest.mark.slow
def test_exported_pathway_decodes_with_stock_espnet(data, init_masks, tmp_path):
    out = tmp_path / "exp"
    train(data, out, "pathways", "--max_epoch", "1", masks=init_masks)
    d = tmp_path / "export_fr"
    r = subprocess.run([sys.executable, "-m", "espnet_pathways.bin.export_pathway", "--exp", str(out), "--lang", "fr",
                        "--out", str(d)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    scp = tmp_path / "wav.scp"
    lines = (data / "valid" / "wav.scp").read_text().splitlines()
    scp.write_text("\n".join(lines) + "\n")
    r = subprocess.run([sys.executable, "-m", "espnet2.bin.asr_transducer_inference", "--asr_train_config",
                        str(d / "config.yaml"), "--asr_model_file", str(d / "model.pth"), "--data_path_and_name_and_type",
                        f"{scp},speech,sound", "--output_dir", str(tmp_path / "decode"), "--beam_size", "2"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    hyps = (tmp_path / "decode" / "1best_recog" / "text").read_text().splitlines()
    assert sorted(h.split()[0] for h in hyps) == sorted(line.split()[0] for line in lines)


@pytest.mark.slow
def test_command_line_error_is_one_line(data, tmp_path):
    r = subprocess.run([sys.executable, "-m", "espnet_pathways.bin.pathways_train",
                        *train_args(data, tmp_path / "exp", CONF / "adaptive.yaml", "--pathways", "rerank_interval=3")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last == "pathways_train: error: pathways.rerank_interval (n=3) must be smaller than pathways.prune_interval (T=3)"
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("task", [ASRPathwaysTask, StockTransducerTask])
def test_main_worker_destroys_the_process_group(task, monkeypatch, tmp_path):
    """A finished (or failed) run leaves no process group for the interpreter's shutdown to tear
    down: gloo aborted a finished rank there (exit -6) in a two-process run."""
    def worker(args):
        torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
        if args == "fail":
            raise RuntimeError("training failed")

    monkeypatch.setattr(ASRTransducerTask, "main_worker", classmethod(lambda cls, args: worker(args)))
    task.main_worker("ok")
    assert not torch.distributed.is_initialized()
    with pytest.raises(RuntimeError, match="training failed"):
        task.main_worker("fail")
    assert not torch.distributed.is_initialized()


def _two_ranks(data, out, mode, init_file, *extra):
    """One training run in two gloo processes on CPU; returns rank 0's log (asserts both succeeded)."""
    args = train_args(data, out, CONF / f"{mode}.yaml", *extra, "--multiprocessing_distributed", "false",
                      "--dist_world_size", "2", "--dist_backend", "gloo", "--dist_init_method", f"file://{init_file}")
    procs = [subprocess.Popen([sys.executable, "-m", "espnet_pathways.bin.pathways_train", *args, "--dist_rank", str(r)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in (0, 1)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    return logs[0]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["dynamic_pathways", "imp"])
def test_two_process_cpu_ddp_keeps_ranks_identical(mode, data, init_masks, tmp_path):
    """gloo on CPU: the controller all-gathers (step, mask digests) at start and every event; a
    resumed DDP run picks up the same masks and step on both ranks."""
    out = tmp_path / "exp"
    extra = ["--pathways", f"init_masks={init_masks}"] if mode == "dynamic_pathways" else []
    log = _two_ranks(data, out, mode, tmp_path / "ddp_init", "--max_epoch", "2", *extra)
    assert "pathways: masks identical on 2 ranks" in log
    saved = load_masks_source(out / "masks.pt")
    lang = "en" if mode == "dynamic_pathways" else saved.languages[0]
    prunes = [e["step"] for e in saved.history if e["event"] == "prune" and e["language"] == lang]
    if mode == "dynamic_pathways":
        assert prunes == [3, 6] and ckpt_state(out)[1]["step"] == 8
        log = _two_ranks(data, out, mode, tmp_path / "ddp_init_resume", "--max_epoch", "3", *extra)
        assert "pathways: masks identical on 2 ranks" in log
        assert ckpt_state(out)[1]["step"] == 12
        resumed = load_masks_source(out / "masks.pt")
        assert resumed.history[:len(saved.history)] == saved.history  # the first two epochs' events kept as they were
    else:  # imp prunes from each rank's own weights; the all-gather after each prune stops the run if they differ
        assert prunes == [2, 4]


# mode: (epochs, {event: optimizer steps of the saved history}, step at the end); tiny data: 2 batches
# per language and epoch, halved by the two ranks' shares (fr only: 1 step per epoch per rank pair)
DDP_EVENTS = {
    "lap": (2, {"prune": [2, 4]}, 8),
    "lth": (2, {"prune": [2, 4]}, 4),
    "adaptive": (4, {"prune": [3, 6], "rerank": [1, 2, 4, 5]}, 8),
    "pathways": (2, {}, 8),
    "dual_mode": (2, {"prune": [3, 6], "rerank": [1, 2, 4, 5]}, 8),
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(DDP_EVENTS))
def test_two_process_cpu_ddp_every_other_mode(mode, data, init_masks, tmp_path):
    """The modes the test above leaves out: every event of the schedule happens on both ranks at the
    same step with the same masks (the controller's all-gather at each event stops the run otherwise)."""
    epochs, expected, last = DDP_EVENTS[mode]
    out = tmp_path / "exp"
    extra = ["--pathways", f"init_masks={init_masks}"] if mode == "pathways" else []
    log = _two_ranks(data, out, mode, tmp_path / "ddp_init", "--max_epoch", str(epochs), *extra)
    assert "pathways: masks identical on 2 ranks" in log
    saved = load_masks_source(out / "masks.pt")
    events = {}
    for e in saved.history[1:]:
        events.setdefault(e["event"], []).append(e["step"])
    assert events == expected and ckpt_state(out)[1]["step"] == last, (events, ckpt_state(out)[1]["step"])
    if mode == "pathways":  # fixed masks: the run ends with the masks it started from
        start = PathwayMasks.load(init_masks)
        assert list(saved) == list(start) and all(saved[lang] == start[lang] for lang in start)
