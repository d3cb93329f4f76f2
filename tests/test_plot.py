"""train.plot: curves of two fake runs in one PNG, and clear errors for bad metrics files."""

import json

import pytest

pytest.importorskip("matplotlib")

from PIL import Image  # noqa: E402

from train import plot  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_run(folder, top1, loss, alpha=None):
    """A run folder whose metrics.jsonl has one line per value of ``top1`` and ``loss``."""
    folder.mkdir()
    rows = [{"epoch": epoch, "train_loss": l, "val_loss": 0.5, "val_top1": t, "val_top5": 1.0, "lr": 0.1}
            for epoch, (t, l) in enumerate(zip(top1, loss))]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    if alpha is not None:
        (folder / "config.json").write_text(json.dumps({"mixup_alpha": alpha}))
    return str(folder)


def test_two_runs_make_one_png_with_both_panels(tmp_path, capsys):
    erm = make_run(tmp_path / "erm", top1=[0.5, 0.8, 0.9], loss=[2.0, 1.0, 0.5], alpha=0.0)
    mixup = make_run(tmp_path / "mixup", top1=[0.4, 0.85, 0.95], loss=[2.2, 1.4, 1.1], alpha=1.0)
    out = tmp_path / "curves.png"
    plot.main([erm, mixup, "--out", str(out), "--title", "digits"])
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(out) as image:
        assert image.size == (1000, 400)  # 10 x 4 inches at the default 100 dpi
    assert str(out) in capsys.readouterr().out


def test_panels_hold_train_loss_and_val_error_per_epoch(tmp_path):
    erm = make_run(tmp_path / "erm", top1=[0.5, 0.8], loss=[2.0, 1.0], alpha=0.0)
    mixup = make_run(tmp_path / "mixup", top1=[0.4, 0.9], loss=[2.2, 1.4], alpha=0.2)
    labels = [plot.default_label(erm), plot.default_label(mixup)]
    assert labels == ["erm (ERM)", "mixup (mixup α=0.2)"]
    loss_axes, error_axes = plot.draw([plot.read_metrics(erm), plot.read_metrics(mixup)], labels).axes
    assert [list(line.get_ydata()) for line in loss_axes.lines] == [[2.0, 1.0], [2.2, 1.4]]
    erm_error, mixup_error = (list(line.get_ydata()) for line in error_axes.lines)
    assert erm_error == pytest.approx([0.5, 0.2]) and mixup_error == pytest.approx([0.6, 0.1])
    assert [list(line.get_xdata()) for line in error_axes.lines] == [[0, 1], [0, 1]]
    assert [text.get_text() for text in error_axes.get_legend().get_texts()] == labels


def test_a_bad_metrics_line_is_an_error_naming_file_and_line(tmp_path):
    run = make_run(tmp_path / "run", top1=[0.5, 0.8], loss=[2.0, 1.0])
    with open(f"{run}/metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "train_loss": 0.9, "val_top1": \n')
    with pytest.raises(SystemExit, match=r"run/metrics\.jsonl, line 3: not JSON"):
        plot.main([run, "--out", str(tmp_path / "x.png")])
    assert not (tmp_path / "x.png").exists()


def test_a_line_without_val_top1_is_an_error_naming_the_key(tmp_path):
    run = make_run(tmp_path / "run", top1=[0.5], loss=[2.0])
    with open(f"{run}/metrics.jsonl", "a") as f:
        f.write('{"epoch": 1, "train_loss": 0.9}\n')
    with pytest.raises(plot.MetricsError, match=r"line 2: 'val_top1' must be a number, got None"):
        plot.read_metrics(run)


def test_a_run_without_metrics_is_an_error_naming_the_folder(tmp_path):
    good = make_run(tmp_path / "good", top1=[0.5], loss=[2.0])
    (tmp_path / "missing").mkdir()
    with pytest.raises(SystemExit, match=r"missing: no metrics\.jsonl"):
        plot.main([good, str(tmp_path / "missing"), "--out", str(tmp_path / "x.png")])


def test_labels_must_match_the_runs(tmp_path, capsys):
    run = make_run(tmp_path / "run", top1=[0.5], loss=[2.0])
    with pytest.raises(SystemExit):
        plot.main([run, "--out", str(tmp_path / "x.png"), "--labels", "a", "b"])
    assert "argument --labels: 2 label(s) for 1 run(s)" in capsys.readouterr().err
