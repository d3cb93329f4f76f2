import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import DEVICES
from helpers import MEAN, STD, photo_crops, run_mixup
from nvidia.dali import fn, pipeline_def, types
from scipy import stats

from dali_mixup import mixup, mixup_reference

NUM_CLASSES = 10


def normalized_chw(images):
    """The float32 CHW batch a classification pipeline hands to mixup."""
    return [np.ascontiguousarray(((im - MEAN) / STD).transpose(2, 0, 1), dtype=np.float32) for im in images]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch_size", [2, 7, 64])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("layout", ["float32-CHW", "uint8-HWC"])
def test_matches_reference(device, batch_size, per_sample, label_smoothing, layout):
    images, labels = photo_crops(batch_size, seed=batch_size)
    if layout == "float32-CHW":
        images = normalized_chw(images)
    outputs = run_mixup(
        images,
        labels,
        device,
        iterations=2,
        num_classes=NUM_CLASSES,
        alpha=0.4,
        per_sample=per_sample,
        label_smoothing=label_smoothing,
        return_params=True,
    )
    for mixed, targets, lam, perm in outputs:
        assert mixed.dtype == np.float32 and targets.dtype == np.float32
        assert lam.dtype == np.float32 and perm.dtype == np.int32
        assert lam.shape == (batch_size,) and perm.shape == (batch_size,)
        assert sorted(perm) == list(range(batch_size))
        if not per_sample:
            assert np.all(lam == lam[0])
        want_images, want_targets = mixup_reference(
            torch.from_numpy(np.stack(images)), torch.tensor(labels), torch.from_numpy(lam),
            torch.from_numpy(perm), NUM_CLASSES, label_smoothing,
        )
        tol = 1e-5 if device == "cpu" else 1e-4
        assert np.abs(mixed - want_images.numpy()).max() < tol
        assert np.abs(targets - want_targets.numpy()).max() < 1e-6
        np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)
        assert targets.min() >= 0


@pytest.mark.parametrize("device", DEVICES)
def test_a_batch_of_one_is_its_own_partner(device):
    # A batch of 1 has no other sample to mix with: λ is drawn, and the image comes back as it was.
    images, labels = photo_crops(1)
    images = normalized_chw(images)
    (mixed, targets, lam, perm), = run_mixup(images, labels, device, num_classes=NUM_CLASSES, alpha=1.0,
                                             return_params=True)
    assert perm.tolist() == [0] and 0 < lam[0] < 1
    np.testing.assert_allclose(mixed, np.stack(images), atol=1e-5)
    np.testing.assert_allclose(targets[0], np.eye(NUM_CLASSES, dtype=np.float32)[labels[0]], atol=1e-6)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 8.0])
@pytest.mark.parametrize("per_sample", [True, False])
def test_lambda_follows_beta(alpha, per_sample):
    # 2048 draws: per-sample mode takes 64 a batch; batch mode one a batch, so tiny 1-pixel batches.
    batch_size, iterations = (64, 32) if per_sample else (2, 2048)
    images, labels = photo_crops(batch_size, size=1)
    outputs = run_mixup(
        images, labels, "cpu", iterations=iterations, seed=123,
        num_classes=NUM_CLASSES, alpha=alpha, per_sample=per_sample, return_params=True,
    )
    draws = np.concatenate([lam if per_sample else lam[:1] for _, _, lam, _ in outputs])
    assert draws.size >= 2000
    result = stats.kstest(draws, stats.beta(alpha, alpha).cdf)
    assert result.pvalue > 0.01, f"KS test rejects Beta({alpha}, {alpha}): {result}"


def test_lambda_distribution_test_can_fail():
    # The KS check above has power: Beta(1, 1) draws are rejected as Beta(8, 8).
    images, labels = photo_crops(64, size=1)
    outputs = run_mixup(images, labels, "cpu", iterations=32, num_classes=NUM_CLASSES, alpha=1.0,
                        per_sample=True, return_params=True)
    draws = np.concatenate([lam for _, _, lam, _ in outputs])
    assert stats.kstest(draws, stats.beta(8.0, 8.0).cdf).pvalue < 0.01


def test_permutation_is_fresh_each_batch_and_reaches_every_partner():
    batch_size = 8
    images, labels = photo_crops(batch_size, size=2)
    outputs = run_mixup(images, labels, "cpu", iterations=200, num_classes=NUM_CLASSES, alpha=1.0,
                        return_params=True)
    perms = np.stack([perm for _, _, _, perm in outputs])
    assert all(sorted(p) == list(range(batch_size)) for p in perms)
    assert len({tuple(p) for p in perms}) > 150, "the permutation does not change from batch to batch"
    partners = np.zeros((batch_size, batch_size), bool)
    partners[np.arange(batch_size)[None, :].repeat(len(perms), 0), perms] = True
    assert partners.all(), f"some (sample, partner) pairs never occur:\n{partners.astype(int)}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["float32-CHW", "uint8-HWC"])
def test_alpha_zero_is_erm(device, layout):
    images, labels = photo_crops(7)
    if layout == "float32-CHW":
        images = normalized_chw(images)
    (out_images, targets, lam, _), = run_mixup(
        images, labels, device, num_classes=NUM_CLASSES, alpha=0.0, label_smoothing=0.1, return_params=True
    )
    assert out_images.dtype == images[0].dtype
    assert np.array_equal(out_images, np.stack(images)), "alpha=0 must return the input bit-exactly"
    np.testing.assert_array_equal(lam, np.ones(7, np.float32))
    want = np.full((7, NUM_CLASSES), 0.01, np.float32)
    want[np.arange(7), labels] = np.float32(0.9 + 0.01)
    np.testing.assert_array_equal(targets, want)


@pytest.mark.parametrize("alpha", [0.0, 0.2])
def test_alpha_zero_adds_no_blend_to_the_graph(alpha, tmp_path):
    images, labels = photo_crops(4)

    @pipeline_def(batch_size=4, num_threads=1, device_id=None)
    def pipe():
        data = fn.external_source(source=lambda: images, batch=True)
        label_data = fn.external_source(source=lambda: labels, batch=True)
        return mixup(data, label_data, num_classes=NUM_CLASSES, alpha=alpha)

    p = pipe()
    p.build()
    p.save_graph_to_dot_file(str(tmp_path / "graph.dot"))
    graph = (tmp_path / "graph.dot").read_text()
    blend_ops = ("Arithmetic", "PermuteBatch", "Beta")
    assert any(op in graph for op in blend_ops) == (alpha > 0), graph


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(alpha=-0.1), ValueError, "alpha"),
        (dict(alpha=float("nan")), ValueError, "alpha"),
        (dict(alpha="1"), TypeError, "alpha"),
        (dict(num_classes=0), ValueError, "num_classes"),
        (dict(num_classes=2.5), TypeError, "num_classes"),
        (dict(label_smoothing=1.0), ValueError, "label_smoothing"),
        (dict(label_smoothing=-0.1), ValueError, "label_smoothing"),
        (dict(per_sample=1), TypeError, "per_sample"),
        (dict(dtype=types.UINT8), ValueError, "dtype"),
        (dict(dtype=types.FLOAT16), ValueError, "FLOAT16"),  # CPU images
    ],
)
def test_bad_arguments_raise_at_definition(kwargs, error, match):
    args = dict(num_classes=NUM_CLASSES, alpha=1.0) | kwargs

    @pipeline_def(batch_size=2, num_threads=1, device_id=None)
    def pipe():
        data = fn.external_source(name="images")
        label_data = fn.external_source(name="labels")
        return mixup(data, label_data, **args)

    with pytest.raises(error, match=match):
        pipe()


def test_reference_matches_the_formula_by_hand():
    images = torch.tensor([[0.0, 10.0], [20.0, 30.0], [40.0, 50.0]])
    mixed, targets = mixup_reference(images, [0, 1, 2], lam=[0.25, 0.5, 1.0], perm=[2, 0, 1], num_classes=3)
    torch.testing.assert_close(mixed, torch.tensor([[30.0, 40.0], [10.0, 20.0], [40.0, 50.0]]))
    torch.testing.assert_close(targets, torch.tensor([[0.25, 0, 0.75], [0.5, 0.5, 0], [0, 0, 1.0]]))


def test_import_without_dali_names_the_extra():
    code = "import sys; sys.modules['nvidia.dali'] = None; import dali_mixup"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "ImportError" in result.stderr and "dali-mixup[cuda12]" in result.stderr, result.stderr


@pytest.mark.parametrize("module", ["pipelines.images", "pipelines.speech", "pipelines.sources", "dali_mixup.mixup"])
def test_the_data_flows_one_way_and_importing_a_layer_runs_none_above_it(module):
    """No import cycle: a pipeline (or the operator) imports neither the loader nor torch, and
    ``from dali_mixup import make_loader`` still works."""
    code = (f"import sys, {module}; print(sorted(m for m in ('dali_mixup.loader', 'torch', 'train') if m in sys.modules)); "
            "from dali_mixup import make_loader; print(make_loader.__module__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[:2] == ["[]", "dali_mixup.loader"], result.stdout
