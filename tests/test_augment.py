"""The train crops' laws and policies and the val transforms, against torchvision's and timm's on the same
inputs: the crop's scale and ratio, color jitter, grayscale, blur, flips, random erasing (its boxes, their
count and fill), interpolation, the val crop modes, the normalization, and the options' errors.

The statistical tests are chi-square and Kolmogorov-Smirnov tests at the level ALPHA, the seeds fixed."""

import io
import math
import random

import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def, types
from PIL import Image
from scipy import stats
from torchvision import transforms
from torchvision.transforms import functional as F

from conftest import DEVICES
from dali_mixup import formats, make_loader
from dali_mixup.photos import color_photos
from helpers import MEAN, STD, VAL_MAX_TOLERANCE, VAL_MEAN_TOLERANCE, assert_exact, collect, photo_crops
from pipelines import augment
from pipelines.auto_augment import AutoAugment

ALPHA = 1e-3
SIZE = 64


def _run(pipeline, iterations=1, **kwargs):
    pipe = pipeline(num_threads=2, **kwargs)
    pipe.build()
    runs = [[o.as_cpu().as_array() for o in pipe.run()] for _ in range(iterations)]
    return [np.concatenate([r[k] for r in runs]) for k in range(len(runs[0]))]


def _jpeg(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return np.frombuffer(buffer.getvalue(), np.uint8)


# ---- the random-resized crop's law ----

@pipeline_def(seed=11, device_id=None)
def crop_shapes(data, crop, encoded):
    images = fn.external_source(source=lambda: data, batch=True)
    return crop.crop(images, encoded=encoded, device="cpu").shape()


@pytest.mark.parametrize("encoded", [True, False])
@pytest.mark.parametrize("scale, ratio", [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.35, 0.9), (0.5, 2.0))])
def test_the_crops_scale_and_ratio_follow_torchvisions_law(scale, ratio, encoded):
    """The crops the decoder (or, for decoded images, ``fn.random_crop_generator``) cuts: their share of the area
    and their aspect ratio against ``torchvision.transforms.RandomResizedCrop.get_params`` on the same image."""
    photo = dict(color_photos())["chelsea"]  # 300 x 451
    height, width = photo.shape[:2]
    crop = augment.RandomResizedCrop(32, scale=scale, ratio=ratio)
    data = [_jpeg(photo) if encoded else photo] * 500
    shapes = _run(crop_shapes, iterations=4, data=data, crop=crop, encoded=encoded, batch_size=500)[0]
    ours = shapes[:, 0] * shapes[:, 1] / (height * width), np.log(shapes[:, 1] / shapes[:, 0])
    torch.manual_seed(0)
    boxes = np.array([transforms.RandomResizedCrop.get_params(Image.fromarray(photo), list(scale), list(ratio))
                      for _ in range(len(shapes))])
    theirs = boxes[:, 2] * boxes[:, 3] / (height * width), np.log(boxes[:, 3] / boxes[:, 2])
    for mine, other in zip(ours, theirs):
        assert stats.ks_2samp(mine, other).pvalue > ALPHA
    assert scale[0] * 0.95 <= ours[0].min() and ours[0].max() <= scale[1] * 1.05


# ---- the crop policies, op by op ----

@pipeline_def(seed=5, device_id=None, enable_conditionals=True)
def jitter_factors(policy):
    return policy.factors()


@pytest.mark.parametrize("strengths", [(0.4, 0.4, 0.4, 0.0), (0.3, 0.0, 0.8, 0.1), (1.5, 0.2, 0.0, 0.5)])
def test_color_jitters_factors_and_order_follow_torchvisions(strengths):
    policy = augment.ColorJitter(*strengths)
    factors, orders = _run(jitter_factors, iterations=3, policy=policy, batch_size=1000)
    torch.manual_seed(0)
    jitter = transforms.ColorJitter(*strengths)
    draws = [transforms.ColorJitter.get_params(jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)
             for _ in range(len(factors))]
    for k, strength in enumerate(strengths):
        if not strength:
            assert (factors[:, k] == (0.0 if k == 3 else 1.0)).all()
            continue
        theirs = np.array([float(d[1 + k]) for d in draws])
        assert stats.ks_2samp(factors[:, k], theirs).pvalue > ALPHA, k
    # The order of the ops that are on: a uniform permutation, as torchvision's randperm(4) restricted to them.
    on = [k for k, strength in enumerate(strengths) if strength]
    assert sorted(orders[0]) == on and all(sorted(o) == on for o in orders)
    theirs = [tuple(int(i) for i in d[0] if i in on) for d in draws]
    names = sorted(set(theirs))
    counts = lambda seq: [sum(1 for o in seq if tuple(o) == n) for n in names]  # noqa: E731
    table = np.array([counts(orders.tolist()), counts(theirs)])
    assert len(names) == math.factorial(len(on)) and stats.chi2_contingency(table).pvalue > ALPHA


@pipeline_def(seed=0, device_id=None, batch_size=8)
def one_op(images, op, factors, device):
    crops = fn.external_source(source=lambda: images, batch=True, layout="HWC")
    if device == "gpu":
        crops = crops.gpu()
    return op(crops, types.Constant(np.asarray(factors, np.float32)))


# Each jitter op at a fixed factor against torchvision's functional op on PIL, in mean absolute pixel
# difference (measured, with room), and well under the op's own change.
# Measured: brightness 0.44-0.50, contrast 0.46-0.49, saturation 0.36-0.47, hue 0.37-1.08 (PIL rounds H, S
# and V to uint8 in between), against changes of 12-34.
JITTER = [("brightness", augment._brightness, F.adjust_brightness, 0, (1.3, 0.7), 0.6),
          ("contrast", augment._contrast, F.adjust_contrast, 1, (1.35, 0.65), 0.7),
          ("saturation", augment._saturation, F.adjust_saturation, 2, (1.4, 0.5), 0.7),
          ("hue", augment._hue, F.adjust_hue, 3, (0.1, -0.2), 1.6)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, op, theirs, index, values, tolerance", JITTER, ids=[j[0] for j in JITTER])
def test_each_color_jitter_op_matches_torchvisions(name, op, theirs, index, values, tolerance, device):
    images, _ = photo_crops(8, size=SIZE, seed=3)
    for value in values:
        factors = [1.0, 1.0, 1.0, 0.0]
        factors[index] = value
        pipe = one_op(images, op, factors, device, num_threads=2, device_id=0 if device == "gpu" else None)
        pipe.build()
        mine = pipe.run()[0].as_cpu().as_array().astype(np.float32)
        expected = np.stack([np.asarray(theirs(Image.fromarray(x), value)) for x in images]).astype(np.float32)
        difference, change = np.abs(mine - expected).mean(), np.abs(np.stack(images) - expected).mean()
        assert difference < tolerance and difference < 0.25 * change, (name, value, difference, change)


@pipeline_def(seed=2, device_id=None, enable_conditionals=True)
def policy_pipeline(images, policy, device):
    crops = fn.external_source(source=lambda: images, batch=True, layout="HWC")
    if device == "gpu":
        crops = crops.gpu()
    return crops, policy.apply(crops, SIZE)


def apply(policy, batch_size=64, device="cpu", iterations=2, seed=0):
    """``(inputs, outputs)`` of ``policy`` on real photo crops, as uint8 ``[N, H, W, 3]`` arrays."""
    images, _ = photo_crops(batch_size, size=SIZE, seed=seed)
    return _run(policy_pipeline, iterations=iterations, images=images, policy=policy, device=device,
                batch_size=batch_size, device_id=0 if device == "gpu" else None)


@pytest.mark.parametrize("device", DEVICES)
def test_grayscale_turns_that_share_of_the_crops_into_pils_luma(device):
    before, after = apply(augment.RandomGrayscale(0.3), device=device, iterations=4)
    grey = np.array([(after[k] == after[k][..., :1]).all() for k in range(len(after))])
    assert stats.binomtest(grey.sum(), len(grey), 0.3).pvalue > ALPHA
    luma = np.stack([np.asarray(Image.fromarray(x).convert("L")) for x in before[grey]]).astype(np.float32)
    assert np.abs(after[grey][..., 0] - luma).max() <= 1
    assert (after[~grey] == before[~grey]).all()


@pytest.mark.parametrize("device", DEVICES)
def test_gaussian_blur_blurs_that_share_of_the_crops_as_torchvisions(device):
    before, after = apply(augment.GaussianBlur(0.4), device=device, iterations=4)
    blurred = np.array([not np.array_equal(a, b) for a, b in zip(before, after)])
    assert stats.binomtest(blurred.sum(), len(blurred), 0.4).pvalue > ALPHA
    # σ is drawn per crop: the blurred crop is torchvision's GaussianBlur(23) at some σ in [0.1, 2].
    sigmas = np.linspace(0.1, 2.0, 39)
    for k in np.flatnonzero(blurred)[:12]:
        candidates = [np.asarray(F.gaussian_blur(Image.fromarray(before[k]), 23, [s, s])) for s in sigmas]
        distances = [np.abs(c.astype(np.float32) - after[k]).mean() for c in candidates]
        assert min(distances) < 0.6, (k, min(distances))


@pipeline_def(seed=4, device_id=None)
def train_crops(images, crop):
    data = fn.external_source(source=lambda: images, batch=True, layout="HWC")
    return crop.train(data, encoded=False, device="cpu", image_size=None)[0]  # resized here: no Resize left


def test_vflip_and_random_interpolation_draw_per_crop():
    """Whole-image crops (scale and ratio 1) of square photos: each output is the resize, flipped or not, by
    bilinear or bicubic."""
    images, _ = photo_crops(64, size=SIZE, seed=4)
    whole = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0))
    outputs = _run(train_crops, iterations=4, images=images, batch_size=64,
                   crop=augment.RandomResizedCrop(32, vflip=0.3, interpolation="random", **whole))[0]
    references = {name: _run(train_crops, images=images, batch_size=64,
                             crop=augment.RandomResizedCrop(32, interpolation=name, **whole))[0]
                  for name in ("bilinear", "bicubic")}
    flipped, bicubic = [], []
    for k, output in enumerate(outputs):
        matches = [(name, flip) for name, ref in references.items() for flip in (False, True)
                   if np.array_equal(output, ref[k % 64][::-1] if flip else ref[k % 64])]
        assert len(matches) >= 1, k
        flipped.append(matches[0][1])
        bicubic.append(matches[0][0] == "bicubic")
    assert stats.binomtest(sum(flipped), len(flipped), 0.3).pvalue > ALPHA
    assert stats.binomtest(sum(bicubic), len(bicubic), 0.5).pvalue > ALPHA


# ---- random erasing ----

@pipeline_def(seed=6, device_id=None)
def erasing_boxes(policy):
    return policy.boxes(SIZE)


def _timms_boxes(count, n):
    """timm's RandomErasing boxes, ``(per-crop counts, heights, widths)`` over ``n`` crops of SIZE x SIZE."""
    import timm.data.random_erasing as timm_re

    random.seed(0)
    boxes = []
    original = timm_re._get_pixels

    def record(per_pixel, rand_color, patch_size, dtype=torch.float32, device="cpu"):
        boxes[-1].append(patch_size[1:])
        return original(per_pixel, rand_color, patch_size, dtype=dtype, device="cpu")

    timm_re._get_pixels = record
    try:
        eraser = timm_re.RandomErasing(1.0, mode="const", max_count=count, device="cpu")
        for _ in range(n):
            boxes.append([])
            eraser(torch.zeros(3, SIZE, SIZE))
    finally:
        timm_re._get_pixels = original
    counts = np.array([len(b) for b in boxes])
    sides = np.array([side for b in boxes for side in b])
    return counts, sides[:, 0], sides[:, 1]


@pytest.mark.parametrize("count", [1, 3])
def test_erasings_boxes_their_count_and_sizes_follow_timms(count):
    top, left, height, width = _run(erasing_boxes, iterations=3, policy=augment.RandomErasing(1.0, "const", count),
                                    batch_size=1000)
    drawn = height > 0
    counts = drawn.sum(1)
    theirs, their_heights, their_widths = _timms_boxes(count, len(counts))
    values = np.arange(1, count + 1)
    table = np.array([[(c == v).sum() for v in values] for c in (counts, theirs)])
    assert table.sum(1).tolist() == [len(counts)] * 2 and (count == 1 or stats.chi2_contingency(table).pvalue > ALPHA)
    heights, widths = height[drawn], width[drawn]
    assert stats.ks_2samp(heights * widths, their_heights * their_widths).pvalue > ALPHA
    assert stats.ks_2samp(np.log(heights / widths), np.log(their_heights / their_widths)).pvalue > ALPHA
    assert (top[drawn] + heights <= SIZE).all() and (left[drawn] + widths <= SIZE).all() and (top >= 0).all()
    assert stats.ks_2samp(top[drawn] / (SIZE - heights + 1), np.random.default_rng(0).random(drawn.sum())).pvalue > ALPHA


@pipeline_def(seed=8, device_id=None)
def normalized_erasing(images, policy, device):
    crops = fn.external_source(source=lambda: images, batch=True, layout="HWC")
    if device == "gpu":
        crops = crops.gpu()
    normalized = fn.crop_mirror_normalize(crops, dtype=types.FLOAT, output_layout="HWC", mean=list(MEAN),
                                          std=list(STD))
    return normalized, policy.apply(normalized, SIZE)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["const", "rand", "pixel"])
def test_erasing_fills_its_boxes_in_normalized_units_as_timms(mode, device):
    images, _ = photo_crops(64, size=SIZE, seed=5)
    before, after = _run(normalized_erasing, iterations=2, images=images, policy=augment.RandomErasing(0.5, mode, 2),
                         device=device, batch_size=64, device_id=0 if device == "gpu" else None)
    changed = (before != after).any(axis=3)
    erased = changed.any(axis=(1, 2))
    assert stats.binomtest(erased.sum(), len(erased), 0.5).pvalue > ALPHA
    values = after[changed]
    if mode == "const":
        assert (values == 0).all()  # the mean colour, exactly
    elif mode == "pixel":
        assert abs(values.mean()) < 0.05 and abs(values.std() - 1) < 0.05 and len(np.unique(values)) > 0.9 * values.size
    else:  # one colour a box: few distinct colours, normal
        colours = np.unique(values, axis=0)
        assert len(colours) <= 2 * erased.sum() and abs(colours.std() - 1) < 0.2


def test_erasing_in_the_loader_is_on_the_normalized_crops_before_mixing(imagenet_dir):
    loader = make_loader(dataset="imagefolder", root=imagenet_dir / "train", batch_size=8, device="cpu", crop_size=48,
                         reprob=1.0, remode="const", recount=2)
    images, _ = collect(loader)
    assert ((images == 0).all(dim=1).flatten(1).any(dim=1)).all()  # every crop has pixels at exactly 0 everywhere
    mixed = make_loader(dataset="imagefolder", root=imagenet_dir / "train", batch_size=8, device="cpu", crop_size=48,
                        reprob=1.0, mixup_alpha=1.0, cutmix_alpha=1.0, auto_augment="rand-m9-mstd0.5-inc1",
                        color_jitter=0.4, channels_last=True)
    images, targets = collect(mixed)
    assert images.shape == (24, 3, 48, 48) and torch.isfinite(images).all()
    torch.testing.assert_close(targets.sum(1), torch.ones(24), atol=1e-5, rtol=0)


# ---- val: interpolation, crop modes, resize size, normalization ----

def _val(imagenet_dir, **kwargs):
    loader = make_loader(dataset="imagefolder", root=imagenet_dir / "val", split="val", batch_size=8, device="cpu",
                         **kwargs)
    return collect(loader)[0]


def _files(imagenet_dir):
    return formats.image_folder(str(imagenet_dir / "val"))[0]


def _torchvision(files, steps, mean=MEAN / 255, std=STD / 255):
    transform = transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(mean, std)])
    return torch.stack([transform(Image.open(f).convert("RGB")) for f in files])


def _difference(a, b):
    return (a - b).abs().mean(dim=(1, 2, 3))


def test_val_crop_pct_is_timms_resize_and_center_crop(imagenet_dir):
    images = _val(imagenet_dir, crop_size=224, crop_pct=0.95)
    expected = _torchvision(_files(imagenet_dir), [transforms.Resize(math.floor(224 / 0.95)), transforms.CenterCrop(224)])
    assert_exact(images, expected)


def test_val_resize_size_is_torchvisions(imagenet_dir):
    images = _val(imagenet_dir, crop_size=176, resize_size=232)
    expected = _torchvision(_files(imagenet_dir), [transforms.Resize(232), transforms.CenterCrop(176)])
    assert_exact(images, expected)


def test_bicubic_is_torchvisions_bicubic_on_the_same_box(imagenet_dir):
    files = _files(imagenet_dir)
    images = _val(imagenet_dir, crop_size=160, interpolation="bicubic")
    steps = lambda mode: [transforms.Resize(182, interpolation=mode), transforms.CenterCrop(160)]  # noqa: E731
    assert_exact(images, _torchvision(files, steps(transforms.InterpolationMode.BICUBIC)))
    bilinear = _difference(images, _torchvision(files, steps(transforms.InterpolationMode.BILINEAR)))
    assert (bilinear > 0.001).all(), bilinear  # the filter makes a difference here


@pytest.mark.parametrize("mode", ["squash", "border"])
def test_val_crop_modes_are_timms(imagenet_dir, mode):
    from timm.data import transforms_factory

    images = _val(imagenet_dir, crop_size=160, crop_pct=0.9, crop_mode=mode)
    timm_eval = transforms_factory.transforms_imagenet_eval(img_size=160, crop_pct=0.9, crop_mode=mode)
    expected = torch.stack([timm_eval(Image.open(f).convert("RGB")) for f in _files(imagenet_dir)])
    difference = _difference(images, expected)
    center = _difference(_val(imagenet_dir, crop_size=160, crop_pct=0.9), expected)
    if mode == "squash":  # the fused resize, Pillow's to the bit
        assert_exact(images, expected)
    else:  # border pads after DALI's fn.resize
        assert difference.mean() < VAL_MEAN_TOLERANCE and difference.max() < VAL_MAX_TOLERANCE, difference
    assert (difference < 0.3 * center).all(), (difference, center)  # the mode changes the crop, and ours follows


def test_mean_and_std_are_timms_0_to_1_statistics(imagenet_dir):
    images = _val(imagenet_dir, crop_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    expected = _torchvision(_files(imagenet_dir), [transforms.Resize(256), transforms.CenterCrop(224)],
                            mean=[0.5] * 3, std=[0.5] * 3)
    assert_exact(images, expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["rand-m9-n2", "rand-m6-mstd0.5-inc1", "dali-rand-m9-n2", "ra", "ta_wide", "imagenet"])
def test_automatic_augmentations_change_the_crops(name, device):
    before, after = apply(AutoAugment(name), device=device, iterations=1)
    assert after.shape == before.shape and after.dtype == np.uint8
    changed = np.mean([not np.array_equal(a, b) for a, b in zip(before, after)])
    # timm's applies each of its two ops with p=0.5; the others can draw an identity.
    assert changed > (0.6 if name.startswith("rand") else 0.4), changed


@pytest.mark.parametrize("kwargs, message", [
    (dict(scale=(0.5, 0.2)), r"scale must be \(lo, hi\) with 0 < lo <= hi <= 1"),
    (dict(scale=(0.5, 1), min_crop_area=0.5), "give one"),
    (dict(ratio=(0, 1)), r"ratio must be \(lo, hi\) with 0 < lo <= hi"),
    (dict(vflip=2), r"vflip must be a number in \[0, 1\]"),
    (dict(interpolation="box"), "timm's box and hamming have no DALI filter"),
    (dict(interpolation="area"), "interpolation must be one of"),
    (dict(split="val", interpolation="random"), "interpolation='random'"),
    (dict(crop_mode="crop"), "crop_mode must be one of"),
    (dict(crop_pct=0.9, resize_size=256), "give one"),
    (dict(mean=(0.5, 0.5, 0.5)), "mean and std go together"),
    (dict(mean=(128, 128), std=(1, 1)), "mean must be 3 numbers"),
    (dict(color_jitter=(0.4, 0.4)), "color_jitter must be a number"),
    (dict(color_jitter=(0.4, 0.4, 0.4, 0.6)), "hue <= 0.5"),
    (dict(color_jitter_prob=0.5), "color_jitter_prob needs color_jitter"),
    (dict(grayscale_prob=-0.1), "grayscale_prob must be"),
    (dict(remode="noise", reprob=0.5), "remode must be 'const', 'rand' or 'pixel'"),
    (dict(recount=0, reprob=0.5), "recount must be an int >= 1"),
    (dict(aug_repeats=0.5), "aug_repeats must be 0"),
    (dict(split="val", aug_repeats=3), "aug_repeats applies to split='train' only"),
    (dict(split="val", color_jitter=0.4), "color_jitter apply to split='train' only"),
    (dict(split="val", reprob=0.25), "reprob apply to split='train' only"),
    (dict(split="val", auto_augment="ra"), "auto_augment apply to split='train' only"),
    (dict(augment="pad_crop", scale=(0.5, 1)), "scale apply to augment='random_resized_crop'"),
    (dict(auto_augment="augmix"), "AugMix"),
])
def test_bad_image_options_are_refused_naming_the_option(imagenet_dir, kwargs, message):
    split = kwargs.pop("split", "train")
    with pytest.raises(ValueError, match=message):
        make_loader(dataset="imagefolder", root=imagenet_dir / split, split=split, device="cpu", batch_size=4, **kwargs)


def test_color_jitter_is_off_under_auto_augment_as_timms(imagenet_dir, caplog):
    from dali_mixup.image_options import ImageOptions

    options = ImageOptions(auto_augment="rand-m9-mstd0.5", color_jitter=0.4)
    policies = options.policies(type("S", (), {"mean": list(MEAN), "std": list(STD)})())
    assert [type(p).__name__ for p in policies] == ["AutoAugment"]
    assert "color_jitter=(0.4, 0.4, 0.4) is off because auto_augment" in caplog.text
