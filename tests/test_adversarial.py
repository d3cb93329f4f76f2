"""benchmarks.paper.adversarial: FGSM and I-FGSM in pixel space, and the command on tiny fake runs."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.paper import adversarial
from benchmarks.paper.adversarial import PixelModel, fgsm, ifgsm
from pipelines.sources import IMAGENET_MEAN, IMAGENET_STD
from train import checkpoint
from train.models import create_model


@pytest.fixture
def batch():
    """A small ReLU network on 0-255 pixels, 64 random 8x8 images (some rows at 0 and 255), its own predictions."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(16 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, 4),
    )
    model = PixelModel(net, IMAGENET_MEAN, IMAGENET_STD).eval().requires_grad_(False)
    pixels = torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 255
    pixels[:, :, 0, :] = 0  # at the edges of the valid range the attack must clamp
    pixels[:, :, -1, :] = 255
    with torch.no_grad():
        labels = model(pixels).argmax(1)  # every clean prediction right: errors come from the attack
    return model, pixels, labels


def losses(model, pixels, labels):
    with torch.no_grad():
        return F.cross_entropy(model(pixels), labels, reduction="none")


def errors(model, pixels, labels):
    with torch.no_grad():
        return (model(pixels).argmax(1) != labels).sum().item()


def assert_valid(adversarial_pixels, pixels, eps):
    assert (adversarial_pixels - pixels).abs().max() <= eps + 1e-4
    assert adversarial_pixels.min() >= 0 and adversarial_pixels.max() <= 255


def test_pixel_model_normalizes_as_the_loader_and_inverts_it():
    model = PixelModel(nn.Identity(), IMAGENET_MEAN, IMAGENET_STD)
    pixels = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 255
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(model(pixels), (pixels - mean) / std)
    # float32 round trip through values near 124 (the mean): a few ulps of 2**-16 on the 0-255 scale
    torch.testing.assert_close(model.to_pixels(model(pixels)), pixels, atol=1e-3, rtol=0)


def test_fgsm_raises_the_loss_with_a_full_step_inside_eps_and_valid_pixels(batch):
    model, pixels, labels = batch
    eps = 16.0
    adv = fgsm(model, pixels, labels, eps)
    assert losses(model, adv, labels).mean() > losses(model, pixels, labels).mean() + 0.02
    assert errors(model, adv, labels) > 0
    assert_valid(adv, pixels, eps)
    # Away from 0 and 255 each pixel moves by the whole budget, up or down.
    inside = (pixels > eps) & (pixels < 255 - eps)
    torch.testing.assert_close((adv - pixels)[inside].abs(), torch.full_like(pixels[inside], eps), atol=1e-4, rtol=0)


def test_ifgsm_is_at_least_as_strong_as_fgsm_on_the_same_batch(batch):
    model, pixels, labels = batch
    eps = 16.0
    one_step, iterative = fgsm(model, pixels, labels, eps), ifgsm(model, pixels, labels, eps, steps=10)
    assert_valid(iterative, pixels, eps)
    assert (losses(model, iterative, labels) >= losses(model, one_step, labels) - 1e-5).all()
    assert errors(model, iterative, labels) > errors(model, one_step, labels)


def test_evaluate_attacks_each_model_itself_and_every_model_with_the_source(batch):
    source, pixels, labels = batch
    torch.manual_seed(5)
    model = PixelModel(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)), IMAGENET_MEAN, IMAGENET_STD)
    model = model.eval().requires_grad_(False)
    eps = 16.0
    # Two batches of normalized images, as the val loader gives them.
    loader = [((pixels[k : k + 40] - source.mean) / source.std, labels[k : k + 40]) for k in (0, 40)]
    (result,), source_result, samples = adversarial.evaluate([model], source, loader, eps, steps=10)
    assert samples == len(labels)
    expected = torch.zeros(4)
    for images, batch_labels in loader:
        clean = source.to_pixels(images)
        black = fgsm(source, clean, batch_labels, eps)
        white = fgsm(model, clean, batch_labels, eps)
        expected += torch.tensor([errors(model, clean, batch_labels), errors(model, white, batch_labels),
                                  errors(model, black, batch_labels), errors(source, black, batch_labels)])
    measured = [result["clean"]["top1"], result["white_box"]["fgsm"]["top1"], result["black_box"]["fgsm"]["top1"],
                source_result["white_box"]["fgsm"]["top1"]]
    assert measured == [count / len(labels) for count in expected.tolist()]
    assert expected[1] != expected[2]  # the white and black boxes differ here, so a swap would show


def make_run(folder, data, seed, crop_size=16, mixup_alpha=0.0):
    """A trainer-like run folder: config.json and checkpoint.pt of an untrained resnet8 for 4 classes."""
    folder.mkdir()
    torch.manual_seed(seed)
    checkpoint.save(str(folder / "checkpoint.pt"), {"model": create_model("resnet8", 4).state_dict(), "epoch": 1})
    config = {"model": "resnet8", "dataset": "imagefolder", "data": str(data), "crop_size": crop_size,
              "dropout": 0.0, "mixup_alpha": mixup_alpha, "seed": seed, "epochs": 1}
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def test_command_writes_json_and_table(tmp_path, imagenet_dir, capsys):
    source = make_run(tmp_path / "source", imagenet_dir, seed=1)
    mixup = make_run(tmp_path / "mixup", imagenet_dir, seed=2, mixup_alpha=1.0)
    out = tmp_path / "result.json"
    adversarial.main([mixup, source, "--source", source, "--steps", "2", "--batch-size", "8", "--out", str(out)])

    report = json.loads(out.read_text())
    settings = report["settings"]
    assert (settings["eps"], settings["steps"], settings["samples"], settings["num_classes"]) == (4.0, 2, 8, 4)
    assert report["environment"]["torch"] == torch.__version__
    assert "--source" in report["command"]
    assert [row["run"] for row in report["runs"]] == [mixup, source]
    for row in report["runs"]:
        errors = row["errors"]
        rates = [errors["clean"]] + [errors[box][attack] for box in ("white_box", "black_box")
                                     for attack in ("fgsm", "ifgsm")]
        assert all(0 <= rate["top1"] <= 1 for rate in rates)
        assert all(rate["top5"] == 0 for rate in rates)  # 4 classes: the top 5 hold every class
    # The source tested on its own examples: the black box is its white box, and what it reports for itself.
    as_run = report["runs"][1]["errors"]
    assert as_run["black_box"] == as_run["white_box"] == report["source"]["white_box"]
    assert as_run["clean"] == report["source"]["clean"]
    table = (tmp_path / "result.md").read_text()
    assert "White box" in table and "Black box" in table and "| 90.7 | 99.9 |" in table
    assert table in capsys.readouterr().out


def test_command_names_a_run_without_checkpoint(tmp_path, imagenet_dir):
    source = make_run(tmp_path / "source", imagenet_dir, seed=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match=r"empty: no c"):
        adversarial.main([str(tmp_path / "empty"), "--source", source])


def test_command_refuses_runs_on_other_val_images(tmp_path, imagenet_dir):
    source = make_run(tmp_path / "source", imagenet_dir, seed=1)
    other = make_run(tmp_path / "other", imagenet_dir, seed=2, crop_size=24)
    with pytest.raises(SystemExit, match=r"other: crop_size is 24, but the source .* has 16"):
        adversarial.main([other, "--source", source])


@pytest.mark.parametrize("option, value", [("--eps", "0"), ("--steps", "-1"), ("--eps", "four")])
def test_bad_options_are_errors_naming_them(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:
        adversarial.main([str(tmp_path), "--source", str(tmp_path), option, value])
    assert exit_info.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err
