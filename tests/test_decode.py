"""Batched decoding reproduces ESPnet's own transducer decoder (espnet_pathways.decode)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet_pathways.espnet_compat import install_transducer_loss

install_transducer_loss()

from espnet2.bin import asr_transducer_inference  # noqa: E402
from espnet2.bin.asr_transducer_inference import Speech2Text  # noqa: E402

from espnet_pathways.bin import batch_inference  # noqa: E402
from espnet_pathways.decode import BatchDecoder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from benchutil import random_model  # noqa: E402

FS = 16000
# Lengths (s) giving 1 to 5 streaming windows of 640 ms, one an exact multiple of the
# window (an empty last window), one barely above the subsampling limit.
LENGTHS = (0.3, 0.64, 1.1, 2.0, 3.1)
BLANK_PENALTY = 2.0


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    work = tmp_path_factory.mktemp("decode_model")
    cfg, mdl, _ = random_model(ROOT / "conf" / "train_tiny.yaml", work, vocab=12)
    # Random weights put blank about as likely as any label, and the search then emits
    # almost nothing: make blank less likely and the joint network more decisive, so that
    # the hypotheses compared below carry labels (and float near-ties are rare).
    sd = torch.load(mdl)
    sd["joint_network.lin_out.weight"] *= 8.0
    sd["joint_network.lin_out.bias"][0] -= BLANK_PENALTY
    torch.save(sd, mdl)
    return cfg, mdl


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """Noise with a slow envelope (so frames differ), and a wav.scp of it."""
    work = tmp_path_factory.mktemp("decode_audio")
    rng = np.random.default_rng(3)
    rows, waves = [], []
    for i, sec in enumerate(LENGTHS):
        n = int(sec * FS)
        env = 0.05 + 0.3 * np.abs(np.sin(np.linspace(0, 3 * np.pi * sec, n)))
        x = (env * rng.standard_normal(n)).astype(np.float32)
        path = work / f"u{i}.wav"
        sf.write(path, x, FS, subtype="FLOAT")
        rows.append(f"utt{i} {path}")
        waves.append(torch.from_numpy(x))
    scp = work / "wav.scp"
    scp.write_text("\n".join(rows) + "\n")
    return scp, waves


def speech2text(model, streaming, beam, **kw):
    cfg, mdl = model
    return Speech2Text(asr_train_config=cfg, asr_model_file=mdl, beam_size=beam, streaming=streaming,
                       decoding_window=640, left_context=32, **kw)


def espnet_decode(s2t, speech):
    """One utterance exactly as asr_transducer_inference's loop does it."""
    if not s2t.streaming:
        return s2t(speech)
    n = s2t.audio_processor.decoding_samples
    steps = len(speech) // n
    for i in range(steps + 1):
        hyps = s2t.streaming_decode(speech[i * n:] if i == steps else speech[i * n:(i + 1) * n], is_final=i == steps)
    return hyps


@pytest.mark.parametrize("streaming,beam", [(False, 1), (False, 4), (True, 1), (True, 2)])
def test_batched_hypotheses_equal_espnet(model, audio, streaming, beam):
    _, waves = audio
    s2t = speech2text(model, streaming, beam, nbest=2)
    expected = [espnet_decode(s2t, w) for w in waves]
    got = BatchDecoder(s2t)(waves)
    assert len(got) == len(waves)
    emitted = 0
    for exp_hyps, got_hyps in zip(expected, got):
        assert [h.yseq for h in got_hyps] == [h.yseq for h in exp_hyps]
        assert [h.score for h in got_hyps] == pytest.approx([h.score for h in exp_hyps], abs=1e-4)
        emitted += len(exp_hyps[0].yseq) - 1
    assert emitted >= 8  # the random model does emit labels: the comparison is not blank-only


def test_batch_composition_does_not_change_results(model, audio):
    _, waves = audio
    dec = BatchDecoder(speech2text(model, False, 2))
    together = dec(waves)
    alone = [dec([w])[0] for w in waves]
    assert [h[0].yseq for h in together] == [h[0].yseq for h in alone]


def test_unsupported_search_is_refused(model):
    s2t = speech2text(model, False, 2, beam_search_config={"search_type": "tsd"})
    with pytest.raises(ValueError, match="search_type 'default' only"):
        BatchDecoder(s2t)


def read(d: Path, name: str) -> dict[str, str]:
    rows = (line.split(maxsplit=1) for line in (d / "1best_recog" / name).read_text().splitlines())
    return {r[0]: (r[1] if len(r) > 1 else "") for r in rows}


@pytest.mark.parametrize("streaming", [False, True])
def test_command_line_writes_what_espnet_writes(model, audio, streaming, tmp_path):
    cfg, mdl = model
    scp, _ = audio
    common = ["--asr_train_config", str(cfg), "--asr_model_file", str(mdl), "--beam_size", "2",
              "--data_path_and_name_and_type", f"{scp},speech,sound"]
    if streaming:
        common += ["--streaming", "true", "--decoding_window", "640", "--left_context", "32"]
    asr_transducer_inference.main(common + ["--output_dir", str(tmp_path / "espnet")])
    assert batch_inference.main(common + ["--output_dir", str(tmp_path / "batched"), "--batch_size", "3"]) == 0
    for name in ("token_int", "text"):
        assert read(tmp_path / "batched", name) == read(tmp_path / "espnet", name)
    assert len(read(tmp_path / "batched", "token_int")) == len(LENGTHS)


@pytest.mark.parametrize("extra, message", [
    (["--batch_size", "0"], "--batch_size must be at least 1, got 0"),
    (["--quantize_asr_model", "true"], "--quantize_asr_model: batched decoding does not support quantised models"),
])
def test_command_line_bad_option_is_one_line(model, audio, tmp_path, capsys, extra, message):
    cfg, mdl = model
    scp, _ = audio
    rc = batch_inference.main(["--asr_train_config", str(cfg), "--asr_model_file", str(mdl), *extra,
                               "--data_path_and_name_and_type", f"{scp},speech,sound", "--output_dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err == [f"batch_inference: error: {message}"]
    assert not (tmp_path / "o").exists()


def test_streaming_encoder_batched_equals_one_by_one(model, audio):
    _, waves = audio
    dec = BatchDecoder(speech2text(model, True, 1))
    many = dec.encode_streaming_batch(waves)
    for w, got in zip(waves, many):
        one = dec.encode_streaming(w)
        assert got.shape == one.shape and one.size(0) > 0
        assert torch.allclose(got, one, atol=1e-5)
