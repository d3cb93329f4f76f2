"""benchmarks.paper.memorization: the method names, its options, and a tiny real run's JSON, table and figure."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from benchmarks.paper import memorization
from benchmarks.paper.memorization import parse_method


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory):
    """scikit-learn's digits as write_digits makes them, 4 per class in train/ and 2 in val/ (60 images)."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("tiny-digits")
    digits = load_digits()
    for label in range(10):
        indices = np.flatnonzero(digits.target == label)[:6]
        for k, index in enumerate(indices):
            folder = root / ("train" if k < 4 else "val") / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.round(digits.images[index] * (255 / 16)).astype(np.uint8)
            Image.fromarray(pixels).convert("RGB").resize((32, 32), Image.BICUBIC).save(
                folder / f"{index:04d}.jpg", quality=95)
    return root


def test_methods_are_erm_or_mixup_with_optional_dropout():
    assert parse_method("erm") == {"method": "erm", "kind": "erm", "alpha": 0.0, "dropout": 0.0}
    assert parse_method("erm+dropout:0.7") == {"method": "erm+dropout:0.7", "kind": "erm+dropout", "alpha": 0.0,
                                               "dropout": 0.7}
    assert parse_method("mixup:32")["kind"] == "mixup" and parse_method("mixup:32")["alpha"] == 32
    method = parse_method("mixup:8+dropout:.3")
    assert (method["kind"], method["alpha"], method["dropout"]) == ("mixup+dropout", 8, 0.3)
    for bad in ("ERM", "mixup", "mixup:0", "mixup:-1", "erm+dropout:1", "erm+dropout:0.0", "cutmix:1", "erm+"):
        with pytest.raises(ValueError):
            parse_method(bad)


def test_paper_rows_match_kind_and_alpha():
    assert memorization.paper_row(parse_method("erm"), 0.5)["last"] == 44.6
    assert memorization.paper_row(parse_method("erm+dropout:0.7"), 0.5)["dropout"] == 0.8  # the paper's p at 50%
    assert memorization.paper_row(parse_method("mixup:32"), 0.5)["best"] == 11.3
    assert memorization.paper_row(parse_method("mixup:8"), 0.5) is None  # the paper's mixup at 50% is alpha 32
    assert memorization.paper_row(parse_method("mixup:8"), 0.2)["best"] == 5.9
    assert memorization.paper_row(parse_method("erm"), 0.3) is None


@pytest.mark.parametrize("options, message", [
    (["--methods", "erm", "bogus"], "--methods: 'bogus'"),
    (["--corrupt", "1"], "--corrupt must be in (0, 1)"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--weight-decay", "-0.1"], "--weight-decay must be >= 0, got -0.1"),
    (["--methods", "erm", "erm"], "must not repeat"),
    (["--model", "resnet18", "--methods", "erm+dropout:0.5"], "dropout works in the PreAct models"),
    (["--augment", "flip"], "argument --augment"),
    (["--epoch", "3"], "unrecognized arguments: --epoch"),
])
def test_bad_options_are_errors_naming_them(tmp_path, capsys, options, message):
    with pytest.raises(SystemExit) as exit_info:
        memorization.main(["--data", str(tmp_path), "--results", str(tmp_path), *options])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert os.listdir(tmp_path) == []  # nothing trained, nothing written


def test_tiny_run_writes_json_table_and_figure_and_reuses_its_runs(tiny_digits, tmp_path, capsys):
    options = ["--data", str(tiny_digits), "--epochs", "1", "--batch-size", "8", "--methods", "erm", "mixup:8",
               "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    memorization.main(options)
    (name,) = {path.removesuffix(".json") for path in os.listdir(tmp_path / "results") if path.endswith(".json")}
    assert name.endswith("-memorization-cpu")
    assert sorted(os.listdir(tmp_path / "results")) == [f"{name}.json", f"{name}.md", f"{name}.png"]
    report = json.loads((tmp_path / "results" / f"{name}.json").read_text())
    assert report["data"] == {"train": 40, "val": 20}
    assert report["settings"]["methods"] == ["erm", "mixup:8"] and report["settings"]["augment"] == "none"
    assert {"cpu", "cores", "torch", "date"} <= set(report["environment"])
    assert "--epochs 1" in report["command"]
    erm, mixup = report["rows"]
    assert (erm["label"], erm["alpha"], mixup["label"], mixup["alpha"]) == ("ERM", 0, "mixup α=8", 8)
    for row, curves in zip(report["rows"], report["curves"]):
        assert row["command"][row["command"].index("--mixup-alpha") + 1] == str(row["alpha"])
        assert row["corrupted_samples"] == 20 and row["train_samples"] == 40
        # The last checkpoint, evaluated again, gives what the trainer logged at its last epoch.
        assert row["train_error_corrupted"] == pytest.approx(row["metrics_train_error_corrupted_last"])
        assert row["train_error_real_all"] == pytest.approx(row["metrics_train_error_real_last"])
        assert curves["epoch"] == [0] and row["test_error_best"] == row["test_error_last"] == curves["test_error"][0]
        assert all(0 <= row[key] <= 1 for key in ("train_error_real_clean", "train_error_corrupted"))
    assert erm["paper"]["best"] == 18.8 and mixup["paper"] is None
    table = (tmp_path / "results" / f"{name}.md").read_text()
    assert "| corrupted | method | test error best (epoch) | last | train error real | corrupted |" in table
    assert "| 50% | ERM | " in table and "| ERM | 18.8 | 44.6 |" in table
    assert "| 50% | mixup α=8 | " in table and "| — | — | — | — | — |" in table
    assert table in capsys.readouterr().out
    assert (tmp_path / "results" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # --reuse takes the finished runs of the same commands instead of training again.
    memorization.main([*options, "--reuse"])
    again = json.loads((tmp_path / "results" / f"{name}.json").read_text())
    assert [row["reused"] for row in again["rows"]] == [True, True]
    assert [row["test_error_last"] for row in again["rows"]] == [row["test_error_last"] for row in report["rows"]]
