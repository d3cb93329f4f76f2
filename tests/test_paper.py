"""The paper reproductions: the GAN objectives' gradients, the tabular DALI graph, and the three CLIs."""

import datetime
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmarks.paper import gan, tabular, toy_boundary
from benchmarks.paper.gan import erm_discriminator_loss, mixup_gan_discriminator_loss
from dali_mixup.reference import mixup_reference

TODAY = datetime.date.today().isoformat()


def sigmoid(t):
    """σ(t) = 1 / (1 + e^−t), in plain floats.

    Args:
        t: a number.
    """
    return 1 / (1 + math.exp(-t))


def logistic_discriminator(w):
    """d(x) = w·x, a logit: one weight, no bias.

    Args:
        w: the weight.
    """
    d = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        d.weight.fill_(w)
    return d


@pytest.fixture
def restore_threads():
    """The CLIs set torch's thread count for their process; give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_mixup_gan_loss_gradient_is_the_hand_derived_one():
    # With d(x) = w·x and a pair (x, g) blended as m = λx + (1−λ)g, the loss is
    # ℓ = −[λ log σ(wm) + (1−λ) log(1 − σ(wm))]. Since dσ(t)/dt = σ(t)(1 − σ(t)),
    # dℓ/dw = −[λ(1 − σ(wm)) − (1−λ)σ(wm)]·m = (σ(wm) − λ)·m, averaged over the pairs.
    w, pairs = 0.5, [(2.0, -1.0, 0.25), (1.0, 3.0, 0.9)]
    d = logistic_discriminator(w)
    real, fake, lam = (torch.tensor([[pair[i]] for pair in pairs]) for i in range(3))
    mixup_gan_discriminator_loss(d, real, fake, lam).backward()
    blends = [(lam_ * x + (1 - lam_) * g, lam_) for x, g, lam_ in pairs]
    expected = sum((sigmoid(w * m) - lam_) * m for m, lam_ in blends) / len(pairs)
    assert d.weight.grad.item() == pytest.approx(expected, rel=1e-5)
    # At λ = 1 the blend is the real point and the loss the ERM loss on it alone.
    ones = torch.ones_like(lam)
    assert mixup_gan_discriminator_loss(d, real, fake, ones).item() == pytest.approx(
        torch.nn.functional.softplus(-w * real).mean().item(), rel=1e-6)


def test_erm_gan_loss_gradient_is_the_hand_derived_one():
    # ℓ = ½[mean −log σ(wx) + mean −log(1 − σ(wg))], so dℓ/dw = ½[mean (σ(wx) − 1)x + mean σ(wg)g].
    w, real_points, fake_points = -0.3, [2.0, 0.5], [-1.0, 1.5]
    d = logistic_discriminator(w)
    real, fake = torch.tensor([[x] for x in real_points]), torch.tensor([[g] for g in fake_points])
    erm_discriminator_loss(d, real, fake).backward()
    expected = 0.5 * (sum((sigmoid(w * x) - 1) * x for x in real_points) / 2
                      + sum(sigmoid(w * g) * g for g in fake_points) / 2)
    assert d.weight.grad.item() == pytest.approx(expected, rel=1e-5)


def test_tabular_graph_mixes_feature_vectors_like_the_reference():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((12, 5)).astype(np.float32)
    labels = rng.integers(0, 3, size=12)
    pipe = tabular.build_pipeline(features, labels, num_classes=3, alpha=0.4, batch_size=8, seed=5)
    fed = tabular.epoch_batches(features, labels, batch_size=8, seed=5)  # the same batches, in the same order
    for _ in range(3):  # 8 samples, the epoch's remaining 4, then the next epoch's first 8
        mixed, targets, lam, perm = (out.as_array() for out in pipe.run())
        batch, classes = next(fed)
        assert mixed.shape == (len(batch), 5) and targets.shape == (len(batch), 3)
        assert sorted(perm.tolist()) == list(range(len(batch)))
        assert np.all(lam == lam[0]) and 0 < lam[0] < 1  # one λ per batch
        expected_features, expected_targets = mixup_reference(np.stack(batch), np.array(classes), lam, perm, 3)
        np.testing.assert_allclose(mixed, expected_features.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(targets, expected_targets.numpy(), rtol=1e-6, atol=1e-6)


def test_tabular_cli_writes_the_json_and_the_table(tmp_path, restore_threads, capsys):
    tabular.main(["--datasets", "iris", "--seeds", "1", "--epochs", "1", "--alphas", "0.2", "1",
                  "--results", str(tmp_path)])
    report = json.loads((tmp_path / f"{TODAY}-tabular-cpu.json").read_text())
    assert {"cpu", "cores", "torch", "dali"} <= set(report["env"])
    assert report["command"].startswith("python -m benchmarks.paper.tabular --datasets iris")
    row = report["datasets"]["iris"]
    assert (row["n"], row["features"], row["classes"]) == (150, 4, 3)
    (seed,) = row["seeds"]
    assert set(seed["fixed"]) == set(seed["validation"]) == {"0.2", "1"}
    assert seed["alpha"] in (0.2, 1.0) and seed["mixup"] == seed["fixed"][f"{seed['alpha']:g}"]
    assert 0 <= seed["erm"] <= 1
    table = (tmp_path / f"{TODAY}-tabular-cpu.md").read_text()
    assert "| iris | 150 | 4 | 3 |" in table and "| 21.3 | 17.3 |" in table
    assert table.strip() in capsys.readouterr().out


def test_gan_cli_writes_the_figure_and_the_measures(tmp_path, restore_threads):
    pytest.importorskip("matplotlib")
    gan.main(["--datasets", "ring", "--iterations", "20", "--snapshots", "10", "--hidden", "16",
              "--results", str(tmp_path)])
    assert (tmp_path / f"{TODAY}-gan-cpu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((tmp_path / f"{TODAY}-gan-cpu.json").read_text())
    assert report["settings"]["snapshots"] == [10, 20]
    assert set(report["measures"]) == {"ring, ERM GAN", "ring, mixup GAN (α = 0.2)"}
    for measures in report["measures"].values():
        assert set(measures) == {"10", "20"}
        assert all(m["of"] == 8 and 0 <= m["modes"] <= 8 and 0 <= m["high_quality"] <= 1 for m in measures.values())
    assert "| ring, ERM GAN |" in (tmp_path / f"{TODAY}-gan-cpu.md").read_text()


def test_mode_coverage_counts_modes_and_close_points():
    means = gan.ring_means()
    points = np.concatenate([np.repeat(means[:3], 100, axis=0), np.full((100, 2), 5.0, np.float32)])
    assert gan.mode_coverage(points, means) == {"high_quality": 0.75, "modes": 3, "of": 8, "median_distance": 0.0}


def test_toy_boundary_cli_writes_the_figure(tmp_path, restore_threads):
    pytest.importorskip("matplotlib")
    toy_boundary.main(["--samples", "40", "--epochs", "1", "--results", str(tmp_path)])
    assert (tmp_path / f"{TODAY}-toy-boundary-cpu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((tmp_path / f"{TODAY}-toy-boundary-cpu.json").read_text())["results"]
    assert [r["alpha"] for r in results.values()] == [0.0, 1.0]
    assert all(0 <= r["transition_share"] <= 1 for r in results.values())


@pytest.mark.parametrize("module, argv, option", [
    (tabular, ["--seeds", "0"], "--seeds"),
    (tabular, ["--alphas", "0"], "--alphas"),
    (gan, ["--iterations", "0"], "--iterations"),
    (toy_boundary, ["--alpha", "0"], "--alpha"),
])
def test_bad_options_are_named(module, argv, option, capsys):
    with pytest.raises(SystemExit):
        module.parse_args(argv)
    assert option in capsys.readouterr().err


def test_the_speech_comparison_summarizes_runs_beside_the_papers_numbers():
    from benchmarks.paper import speech

    rows = [{"epoch": k, "train_loss": 1.0, "val_top1": top1, "test_top1": 0.5} for k, top1 in enumerate((0.4, 0.6, 0.55))]
    result = speech.summarize("lenet_speech", 0.1, rows)
    assert result["best_val_error"] == pytest.approx(0.4) and result["last_val_error"] == pytest.approx(0.45)
    assert result["last_test_error"] == pytest.approx(0.5) and len(result["curve"]) == 3
    assert "| LeNet | mixup α=0.1 | 40.0 | 45.0 | 50.0 | 10.1 / 10.8 |" in speech.table([result])


def test_the_speech_comparison_gives_the_trainer_options_it_takes(tmp_path):
    from benchmarks.paper import speech
    from train.config import parse_config

    command = speech.trainer_command(str(tmp_path), "runs/x", "vgg11_speech", 0.1, 12, 2, 0,
                                     ["--amp", "bf16", "--lr", "0.0003", "--channels-last"])
    assert command[1:4] == ["-m", "train", "--recipe"]
    config = parse_config(command[3:])
    assert (config.model, config.mixup_alpha, config.lr, config.amp, config.channels_last, config.epochs,
            config.milestones, config.mixup_warmup_epochs) == ("vgg11_speech", 0.1, 3e-4, "bf16", True, 12, [4, 8], 2)
    assert parse_config(speech.trainer_command(str(tmp_path), "runs/x", "lenet_speech", 0.2, 30, 2, 0, [])[3:]
                        ).milestones == [10, 20]  # the recipe's own


@pytest.mark.parametrize("argv, message", [(["--epochs", "0"], "--epochs must be >= 1"),
                                           (["--alphas", "-1"], "--alphas must be >= 0"),
                                           (["--lr", "0"], "--lr must be > 0"),
                                           (["--models", "resnet8"], "invalid choice: 'resnet8'")])
def test_the_speech_comparison_refuses_bad_options(argv, message, capsys):
    from benchmarks.paper import speech

    with pytest.raises(SystemExit):
        speech.main(argv)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("name", ["memorization", "adversarial", "tabular", "gan", "toy_boundary", "speech"])
def test_the_papers_six_experiments_live_in_benchmarks_paper(name):
    result = subprocess.run([sys.executable, "-m", f"benchmarks.paper.{name}", "--help"], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr[-2000:]
