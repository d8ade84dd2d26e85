"""Reading ESPnet's per-epoch summary lines (espnet_pathways.train_log)."""

from espnet_pathways.train_log import epoch_results, parse_epoch_line

LINE = ("[vm] 2026-12-02 19:54:42,741 (trainer:394) INFO: 12epoch results: [train] iter_time=0.019, loss=5.034, "
        "loss_fr=4.5, time=1 minute and 3.2 seconds, total_count=4144, [valid] loss=2.223, loss_fr=2.1, "
        "time=0.18 seconds, total_count=2")


def test_epoch_line_fields(tmp_path):
    r = parse_epoch_line(LINE)
    assert r.epoch == 12 and r.steps == 4144
    assert r.field(r.train, "loss") == "5.034" and r.field(r.valid, "loss") == "2.223"
    assert r.field(r.valid, "loss_fr") == "2.1" and r.field(r.train, "loss_en") == ""
    assert parse_epoch_line("12epoch:train:1-20batch: loss=3.0") is None
    log = tmp_path / "train.log"
    log.write_text("start\n" + LINE.replace("12epoch", "1epoch") + "\nnoise\n" + LINE + "\n")
    assert [x.epoch for x in epoch_results(log)] == [1, 12]
    assert epoch_results(tmp_path / "missing.log") == []
