"""CutMix, the mixup/CutMix switch and prob in the graph: against the reference (itself checked against timm),
the laws of λ and the box, and the fused operator against its fallback."""

import importlib

import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def, types
from scipy import stats

from conftest import DEVICES
from dali_mixup import mixup, mixup_reference
from helpers import MEAN, STD, crops_pipeline, photo_crops

NUM_CLASSES = 10
SIZE = (20, 28)  # height, width: the boxes are not square


def crops(batch_size, seed=0):
    images, labels = photo_crops(batch_size, size=max(SIZE), seed=seed)
    return [np.ascontiguousarray(image[: SIZE[0], : SIZE[1]]) for image in images], labels


def run(device, batch_size, iterations=2, seed=3, **mixup_args):
    """The outputs of ``iterations`` runs on real photo crops, with the inputs behind them."""
    images, labels = crops(batch_size, seed=batch_size)
    flips = [np.int32(k % 3 == 0) for k in range(batch_size)]
    pipe = crops_pipeline(images, labels, flips, device, {"num_classes": NUM_CLASSES, **mixup_args},
                          batch_size=batch_size, num_threads=2,
                          device_id=0 if device == "gpu" else None, seed=seed)
    pipe.build()
    outputs = [tuple(o.as_cpu().as_array() for o in pipe.run()) for _ in range(iterations)]
    return images, labels, flips, outputs


def reference(images, labels, flips, lam, perm, box, layout, label_smoothing=0.0):
    x = np.stack([image[:, ::-1] if flip else image for image, flip in zip(images, flips)]).astype(np.float32)
    x = torch.from_numpy((x - MEAN) / STD)
    if layout == "CHW":
        x = x.permute(0, 3, 1, 2)
    return mixup_reference(x, torch.tensor(np.array(labels)), torch.from_numpy(lam), torch.from_numpy(perm), NUM_CLASSES,
                           label_smoothing=label_smoothing, box=torch.from_numpy(box), layout=layout)


CONFIGS = {
    "cutmix": dict(alpha=0.0, cutmix_alpha=1.0),
    "switch": dict(alpha=0.4, cutmix_alpha=1.0, switch_prob=0.5, per_sample=True),
    "prob": dict(alpha=0.0, cutmix_alpha=1.0, prob=0.5, per_sample=True),
    "per_sample": dict(alpha=0.0, cutmix_alpha=1.0, per_sample=True),
    "minmax": dict(alpha=0.0, cutmix_minmax=(0.2, 0.8), per_sample=True),
    "uncorrected": dict(alpha=0.0, cutmix_alpha=0.5, correct_lam=False, per_sample=True),
    "smoothing": dict(alpha=0.2, cutmix_alpha=1.0, label_smoothing=0.1),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", ["fused", "fallback"])
@pytest.mark.parametrize("batch_size", [1, 7, 64])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_matches_the_reference(monkeypatch, device, path, batch_size, config):
    if path == "fallback":
        monkeypatch.setenv("DALI_MIXUP_FUSED", "0")
    args = CONFIGS[config]
    layout = "HWC" if list(CONFIGS).index(config) % 2 else "CHW"
    images, labels, flips, outputs = run(device, batch_size, output_layout=layout, **args)
    for out, targets, lam, perm, box in outputs:
        assert out.shape == ((batch_size, 3, *SIZE) if layout == "CHW" else (batch_size, *SIZE, 3))
        assert lam.dtype == np.float32 and perm.dtype == np.int32 and box.dtype == np.int32
        assert box.shape == (batch_size, 4) and sorted(perm) == list(range(batch_size))
        assert ((0 <= box[:, :2]) & (box[:, :2] <= box[:, 2:]) & (box[:, 2:] <= SIZE)).all(), box
        expected, expected_targets = reference(images, labels, flips, lam, perm, box, layout,
                                               args.get("label_smoothing", 0.0))
        assert np.abs(out - expected.numpy()).max() < 1e-4
        assert np.abs(targets - expected_targets.numpy()).max() < 1e-6
        if not args.get("per_sample"):  # one draw for the batch: one λ and one box
            assert (lam == lam[0]).all() and (box == box[0]).all()


def _draws(batch_size=64, iterations=32, **args):
    """λ and the boxes of many CutMix draws on the CPU, per sample."""
    _, _, _, outputs = run("cpu", batch_size, iterations=iterations, seed=11, per_sample=True, **args)
    return np.concatenate([lam for _, _, lam, _, _ in outputs]), np.concatenate([box for *_, box in outputs])


@pytest.mark.parametrize("cutmix_alpha", [0.5, 1.0])
def test_cutmix_lambda_before_correction_follows_beta(cutmix_alpha):
    lam, _ = _draws(alpha=0.0, cutmix_alpha=cutmix_alpha, correct_lam=False)
    assert stats.kstest(lam, stats.beta(cutmix_alpha, cutmix_alpha).cdf).pvalue > 0.01
    assert stats.kstest(lam, stats.beta(cutmix_alpha * 4, cutmix_alpha * 4).cdf).pvalue < 0.01  # it can fail


def test_the_box_follows_timms_area_law():
    # timm's rand_bbox: sides int(H·√(1−λ)) and int(W·√(1−λ)) around a centre uniform over the image,
    # clipped to it; in float32, as the graph computes them.
    lam, box = _draws(alpha=0.0, cutmix_alpha=1.0, correct_lam=False)
    ratio = np.sqrt(np.float32(1) - lam.astype(np.float32))
    sides = np.stack([np.floor(np.float32(size) * ratio) for size in SIZE], axis=1).astype(np.int32)
    extent = box[:, 2:] - box[:, :2]
    assert (extent <= sides).all()
    inside = (box[:, :2] > 0) & (box[:, 2:] < SIZE)  # not clipped: the whole side
    assert inside.sum() > 100 and (extent[inside] == sides[inside]).all()
    # The centre ranges over the whole image: boxes are clipped at every edge.
    for axis, size in enumerate(SIZE):
        assert (box[:, axis] == 0).mean() > 0.1 and (box[:, axis + 2] == size).mean() > 0.1
    # Corrected, λ is the share of the sample's own pixels.
    lam, box = _draws(alpha=0.0, cutmix_alpha=1.0)
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    np.testing.assert_allclose(lam, 1 - area / np.float32(SIZE[0] * SIZE[1]), atol=1e-6)


def test_minmax_boxes_are_inside_with_sides_in_range():
    lo, hi = 0.2, 0.8
    lam, box = _draws(alpha=0.0, cutmix_minmax=(lo, hi), correct_lam=False)  # minmax corrects λ anyway
    extent = box[:, 2:] - box[:, :2]
    for axis, size in enumerate(SIZE):
        sides = extent[:, axis]
        assert sides.min() == int(lo * size) and sides.max() == int(hi * size) - 1  # randint(lo·H, hi·H)
        assert (box[:, axis] >= 0).all() and (box[:, axis + 2] <= size).all()
    np.testing.assert_allclose(lam, 1 - extent.prod(1) / np.float32(SIZE[0] * SIZE[1]), atol=1e-6)


@pytest.mark.parametrize("switch_prob, cut", [(0.0, False), (1.0, True)])
def test_switch_prob_0_is_mixup_and_1_is_cutmix(switch_prob, cut):
    lam, box = _draws(iterations=4, alpha=1.0, cutmix_alpha=1.0, switch_prob=switch_prob)
    has_box = (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])
    if cut:
        assert has_box.mean() > 0.9  # all but the boxes too small to hold a pixel
    else:
        assert not has_box.any() and ((0 < lam) & (lam < 1)).all()


def test_prob_0_leaves_every_sample_alone():
    images, labels, flips, outputs = run("cpu", 16, alpha=1.0, cutmix_alpha=1.0, prob=0.0, per_sample=True)
    for out, targets, lam, perm, box in outputs:
        assert (lam == 1).all() and (box == 0).all()
        expected, expected_targets = reference(images, labels, flips, lam, np.arange(16, dtype=np.int32), box, "CHW")
        assert np.abs(out - expected.numpy()).max() < 1e-4
        np.testing.assert_array_equal(targets, np.eye(NUM_CLASSES, dtype=np.float32)[labels])


@pytest.mark.parametrize("prob", [0.25, 0.75])
def test_prob_mixes_that_share_of_the_samples(prob):
    lam, box = _draws(iterations=8, alpha=1.0, cutmix_alpha=1.0, prob=prob)
    mixed = (lam < 1) | ((box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1]))
    assert abs(mixed.mean() - prob) < 0.06, mixed.mean()


DRAW_CONFIGS = {
    "cutmix": dict(alpha=0.0, cutmix_alpha=1.0),
    "switch-prob": dict(alpha=0.4, cutmix_alpha=1.0, switch_prob=0.5, prob=0.7),
    "prob": dict(alpha=0.0, cutmix_alpha=0.5, prob=0.5),
    "minmax": dict(alpha=0.0, cutmix_minmax=(0.2, 0.8)),
    "uncorrected": dict(alpha=0.3, cutmix_alpha=1.0, correct_lam=False),
}


@pytest.mark.parametrize("mode", ["batch", "elem", "pair"])
@pytest.mark.parametrize("config", list(DRAW_CONFIGS))
def test_the_plugins_draws_are_the_graphs_arithmetic_on_the_same_draws(config, mode):
    """MixupDraws (one operator) and the graph's 37 to 51 give the same λ, partners and boxes, to the bit, from the
    same random draws: the fallback without the plugin mixes by the same law."""
    mixup_module = importlib.import_module("dali_mixup.mixup")  # the module (the package's `mixup` is the function)
    mixing = mixup_module.Mixing(**DRAW_CONFIGS[config], per_sample=mode == "elem", pairs=mode == "pair")
    size = lambda: types.Constant(np.array(SIZE, np.float32))  # noqa: E731

    @pipeline_def(batch_size=16, num_threads=1, device_id=None, seed=21)
    def pipe():
        perm, once = mixup_module._partners(mixing)
        draws = mixup_module._cutmix_draws(mixing)
        lam, box = mixup_module._cutmix_in_graph(mixing, size, once, draws)
        return (lam, perm, box, *mixup_module._draw_in_plugin(mixing, size, draws, perm))

    p = pipe()
    p.build()
    for _ in range(8):
        graph_lam, graph_perm, graph_box, lam, perm, box = (o.as_array() for o in p.run())
        assert np.array_equal(lam, graph_lam) and np.array_equal(box, graph_box) and np.array_equal(perm, graph_perm)
        if mode == "batch":
            assert (lam == lam[0]).all() and (box == box[0]).all()


def test_the_plugin_computes_cutmixs_draws_in_one_operator(tmp_path):
    images, labels = crops(4)
    pipe = crops_pipeline(images, labels, [np.int32(0)] * 4, "cpu", {"num_classes": NUM_CLASSES, "alpha": 0.4,
                                                                    "cutmix_alpha": 1.0, "prob": 0.8},
                          batch_size=4, num_threads=1, device_id=None)
    pipe.save_graph_to_dot_file(str(tmp_path / "graph.dot"))
    graph = (tmp_path / "graph.dot").read_text()
    assert "MixupDraws" in graph and "ArithmeticGenericOp" not in graph


@pytest.mark.parametrize("device", DEVICES)
def test_plain_normalized_images_work_through_the_composition(device):
    images, labels = crops(8)
    chw = [np.ascontiguousarray(((im - MEAN) / STD).transpose(2, 0, 1), dtype=np.float32) for im in images]

    @pipeline_def(batch_size=8, num_threads=2, device_id=0 if device == "gpu" else None, seed=5)
    def pipe():
        data = fn.external_source(source=lambda: chw, batch=True, layout="CHW")
        classes = fn.external_source(source=lambda: labels, batch=True)
        if device == "gpu":
            data = data.gpu()
        return mixup(data, classes, num_classes=NUM_CLASSES, alpha=0.0, cutmix_alpha=1.0, per_sample=True,
                     output_layout="CHW", return_params=True)

    p = pipe()
    p.build()
    out, targets, lam, perm, box = (o.as_cpu().as_array() for o in p.run())
    expected, expected_targets = mixup_reference(torch.from_numpy(np.stack(chw)), torch.tensor(np.array(labels)),
                                                 torch.from_numpy(lam), torch.from_numpy(perm), NUM_CLASSES,
                                                 box=torch.from_numpy(box))
    assert ((box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])).any()
    assert np.abs(out - expected.numpy()).max() < 1e-5 and np.abs(targets - expected_targets.numpy()).max() < 1e-6


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(cutmix_alpha=-1.0), ValueError, r"cutmix_alpha must be in \[0, inf\)"),
    (dict(cutmix_minmax=(0.8, 0.2)), ValueError, r"cutmix_minmax must be \(lo, hi\) with 0 < lo < hi <= 1"),
    (dict(cutmix_minmax=0.5), ValueError, "cutmix_minmax must be"),
    (dict(prob=1.5), ValueError, r"prob must be in \[0, 1\]"),
    (dict(switch_prob="half"), TypeError, "switch_prob must be a number"),
    (dict(correct_lam=1), TypeError, "correct_lam must be a bool"),
])
def test_bad_cutmix_arguments_raise_at_definition(kwargs, error, match):
    @pipeline_def(batch_size=2, num_threads=1, device_id=None)
    def pipe():
        data = fn.external_source(name="images", layout="HWC")
        return mixup(data, fn.external_source(name="labels"), num_classes=NUM_CLASSES, alpha=0.2, mean=list(MEAN),
                     std=list(STD), **kwargs)

    with pytest.raises(error, match=match):
        pipe()


# ---- the reference against timm's own functions, on the same λ and box ----

def _timm_draws(mixer, batch_size, shape, seed):
    """Replay the draws ``mixer`` (a timm Mixup) makes after ``np.random.seed(seed)``: per sample λ,
    boxes ``[y0, x0, y1, x1]`` (empty where a sample is blended or left alone) and whether it is cut."""
    from timm.data.mixup import cutmix_bbox_and_lam

    np.random.seed(seed)
    if mixer.mode == "batch":
        lam, use_cutmix = mixer._params_per_batch()
        lam, use_cutmix = np.full(batch_size, lam, np.float32), np.full(batch_size, use_cutmix)
        count = 1  # one box for the batch
    else:
        lam, use_cutmix = mixer._params_per_elem(batch_size)
        count = batch_size
    boxes = np.zeros((batch_size, 4), np.int32)
    for i in range(count):
        if lam[i] != 1.0 and use_cutmix[i]:
            (y0, y1, x0, x1), lam[i] = cutmix_bbox_and_lam(shape, lam[i], ratio_minmax=mixer.cutmix_minmax,
                                                           correct_lam=mixer.correct_lam)
            boxes[i] = [y0, x0, y1, x1]
    if mixer.mode == "batch":
        lam[:], boxes[:] = lam[0], boxes[0]
    return lam, boxes, use_cutmix & (lam != 1.0)


@pytest.mark.parametrize("mode", ["batch", "elem"])
@pytest.mark.parametrize("args", [
    dict(mixup_alpha=0.4, cutmix_alpha=0.0),
    dict(mixup_alpha=0.0, cutmix_alpha=1.0),
    dict(mixup_alpha=0.4, cutmix_alpha=1.0, switch_prob=0.5, prob=0.8),
    dict(mixup_alpha=0.0, cutmix_alpha=1.0, cutmix_minmax=(0.2, 0.8)),
    dict(mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=False),
], ids=["mixup", "cutmix", "switch-prob", "minmax", "uncorrected"])
def test_the_reference_matches_timms_mixup_with_its_flip_partner(mode, args):
    from timm.data.mixup import Mixup

    batch_size = 8
    x = torch.from_numpy(np.stack(crops(batch_size)[0]).astype(np.float32)).permute(0, 3, 1, 2).contiguous()
    y = torch.arange(batch_size) % NUM_CLASSES
    mixer = Mixup(**args, mode=mode, label_smoothing=0.1, num_classes=NUM_CLASSES)
    flip = torch.arange(batch_size - 1, -1, -1)  # timm's partner: i <-> B - 1 - i
    for seed in range(6):
        lam, boxes, use_cutmix = _timm_draws(mixer, batch_size, x.shape, seed)
        np.random.seed(seed)
        expected_x, expected_y = mixer(x.clone(), y)
        mixed, targets = mixup_reference(x, y, lam, flip, NUM_CLASSES, label_smoothing=0.1, box=boxes)
        torch.testing.assert_close(targets, expected_y, atol=1e-6, rtol=0)
        # Uncorrected, a CutMix box too small for a pixel (λ > 1 − 1/H²) leaves timm's sample as it was and
        # ours blended with that λ: they differ by at most (1 − λ) of the partner (the README says so).
        tiny = use_cutmix & ((boxes[:, 0] == boxes[:, 2]) | (boxes[:, 1] == boxes[:, 3]))
        bound = torch.from_numpy(np.where(tiny, 1 - lam, 0)).view(-1, 1, 1, 1) * (x - x[flip]).abs() + 1e-4
        assert ((mixed - expected_x).abs() <= bound).all()  # pixels in 0..255: float32 rounding


# ---- timm's pair mode ----

PAIR_CONFIGS = {
    "mixup": dict(alpha=0.4),
    "switch-prob": dict(alpha=0.4, cutmix_alpha=1.0, switch_prob=0.5, prob=0.8),
    "cutmix-smoothing": dict(alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.1),
}


@pytest.mark.parametrize("path", ["fused", "fallback"])
@pytest.mark.parametrize("config", list(PAIR_CONFIGS))
def test_pairs_mix_i_with_b_minus_1_minus_i_as_timms_pair_mode(monkeypatch, config, path):
    """Samples i and B - 1 - i are each other's partner with one draw per pair; timm's own ``_mix_pair``,
    given those draws, makes the same images and targets from the same normalized crops."""
    import timm.data.mixup as timm_mixup

    if path == "fallback":
        monkeypatch.setenv("DALI_MIXUP_FUSED", "0")
    batch_size, args = 8, PAIR_CONFIGS[config]
    images, labels, flips, outputs = run("cpu", batch_size, iterations=6, pairs=True, **args)
    flip = np.arange(batch_size - 1, -1, -1)
    smoothing = args.get("label_smoothing", 0.0)
    x = reference(images, labels, flips, np.ones(batch_size, np.float32), flip, np.zeros((batch_size, 4), np.int32),
                  "CHW")[0]  # the normalized, flipped crops, unmixed
    mixed_pairs = 0
    for out, targets, lam, perm, *box in outputs:
        box = box[0] if box else np.zeros((batch_size, 4), np.int32)  # (mixup alone gives no boxes)
        assert perm.tolist() == flip.tolist()
        assert (lam == lam[flip]).all() and (box == box[flip]).all()  # one draw for the pair
        expected, expected_targets = reference(images, labels, flips, lam, perm, box, "CHW", smoothing)
        assert np.abs(out - expected.numpy()).max() < 1e-4
        assert np.abs(targets - expected_targets.numpy()).max() < 1e-6
        half = batch_size // 2
        cut = (box[:half, 2] > box[:half, 0]) & (box[:half, 3] > box[:half, 1])
        mixed_pairs += int((lam[:half] < 1).sum())
        mixer = timm_mixup.Mixup(mixup_alpha=args["alpha"], cutmix_alpha=args.get("cutmix_alpha", 0.0),
                                 mode="pair", label_smoothing=smoothing, num_classes=NUM_CLASSES)
        mixer._params_per_elem = lambda n: (lam[:n].astype(np.float64), cut[:n])
        ours = iter([((b[0], b[2], b[1], b[3]), float(lam[i])) for i, b in enumerate(box[:half]) if cut[i]])
        monkeypatch.setattr(timm_mixup, "cutmix_bbox_and_lam", lambda *a, **k: next(ours))
        timm_x, timm_y = mixer(x.clone(), torch.tensor(np.array(labels)))
        assert np.abs(out - timm_x.numpy()).max() < 1e-4
        assert np.abs(targets - timm_y.numpy()).max() < 1e-6
    assert mixed_pairs >= 12


def test_pairs_lambda_follows_beta_per_pair():
    _, _, _, outputs = run("cpu", 64, iterations=24, seed=11, alpha=0.4, pairs=True)
    lam = np.concatenate([lam[:32] for _, _, lam, _ in outputs])
    assert stats.kstest(lam, stats.beta(0.4, 0.4).cdf).pvalue > 0.01
    assert len(np.unique(lam)) == len(lam)  # a draw for each pair, not one for the batch
    assert stats.kstest(lam, stats.beta(1.6, 1.6).cdf).pvalue < 0.01  # it can fail


def test_pairs_refuse_an_odd_batch_and_elem_mode():
    images, labels = crops(7)
    with pytest.raises(ValueError, match="the batch size must be even, got 7"):
        crops_pipeline(images, labels, [np.int32(0)] * 7, "cpu", {"num_classes": NUM_CLASSES, "alpha": 0.4,
                                                                  "pairs": True},
                       batch_size=7, num_threads=1, device_id=None)
    with pytest.raises(ValueError, match="two modes: choose one"):
        crops_pipeline(images, labels, [np.int32(0)] * 7, "cpu", {"num_classes": NUM_CLASSES, "alpha": 0.4,
                                                                  "pairs": True, "per_sample": True},
                       batch_size=8, num_threads=1, device_id=None)
