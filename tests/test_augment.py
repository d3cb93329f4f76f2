"""Automatic augmentation and random erasing of the train crops, and the val crop's share (crop_pct)."""

import math

import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def
from torchvision import transforms

from conftest import DEVICES
from dali_mixup import formats, make_loader
from helpers import MEAN, STD, VAL_MAX_TOLERANCE, VAL_MEAN_TOLERANCE, collect, photo_crops
from pipelines.augment import AutoAugment, RandomErasing

SIZE = 64


@pipeline_def(enable_conditionals=True)
def policy_pipeline(images, policy, device):
    crops = fn.external_source(source=lambda: images, batch=True, layout="HWC")
    if device == "gpu":
        crops = crops.gpu()
    return crops, policy.apply(crops, SIZE)


def apply(policy, batch_size=32, device="cpu", iterations=1, seed=0):
    """``(inputs, outputs)`` of ``policy`` on real photo crops, as uint8 ``[N, H, W, 3]`` arrays."""
    images, _ = photo_crops(batch_size, size=SIZE, seed=seed)
    pipe = policy_pipeline(images, policy, device, batch_size=batch_size, num_threads=2,
                           device_id=0 if device == "gpu" else None, seed=seed)
    pipe.build()
    runs = [[o.as_cpu().as_array() for o in pipe.run()] for _ in range(iterations)]
    return np.concatenate([r[0] for r in runs]), np.concatenate([r[1] for r in runs])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["rand-m9-n2", "rand-m6-n2-inc1", "trivial", "autoaugment"])
def test_auto_augment_changes_the_crops(name, device):
    before, after = apply(AutoAugment(name), device=device)
    assert after.shape == before.shape and after.dtype == np.uint8
    changed = [not np.array_equal(a, b) for a, b in zip(before, after)]
    # RandAugment applies both of its ops; TrivialAugment and AutoAugment can draw an identity.
    assert np.mean(changed) > (0.8 if name.startswith("rand") else 0.4), np.mean(changed)


@pytest.mark.parametrize("name, message", [
    ("rand-m7-mstd0.5-inc1", r"unknown option\(s\) \['mstd'\] \(DALI's RandAugment has no magnitude noise"),
    ("rand-m12-n2", "m must be 0-10"),
    ("v0", "auto_augment must be 'rand-m<M>-n<N>"),
])
def test_bad_auto_augment_names_are_refused(name, message):
    with pytest.raises(ValueError, match=message):
        AutoAugment(name)


def _erased_boxes(before, after):
    """The bounding box ``(top, left, height, width)`` of each sample's changed pixels, None if none changed."""
    boxes = []
    for a, b in zip(before, after):
        changed = np.argwhere((a != b).any(axis=2))
        if len(changed) == 0:
            boxes.append(None)
            continue
        (top, left), (bottom, right) = changed.min(0), changed.max(0)
        boxes.append((top, left, bottom - top + 1, right - left + 1))
    return boxes


@pytest.mark.parametrize("device", DEVICES)
def test_random_erasing_const_fills_one_box_of_timms_size_with_the_mean(device):
    policy = RandomErasing(0.5, "const", tuple(MEAN), tuple(STD))
    before, after = apply(policy, batch_size=64, device=device, iterations=4)
    boxes = _erased_boxes(before, after)
    erased = [k for k, box in enumerate(boxes) if box is not None]
    assert 0.35 < len(erased) / len(boxes) < 0.65  # prob 0.5
    mean = np.round(MEAN).astype(np.uint8)
    for k in erased:
        top, left, height, width = boxes[k]
        region = after[k, top : top + height, left : left + width]
        assert (region == mean).all()  # the whole box, and nothing outside it, is the mean colour
        area = height * width / SIZE**2
        assert 0.02 * 0.8 <= area <= 1 / 3 * 1.2 and 0.3 * 0.8 <= height / width <= 1 / 0.3 * 1.2, boxes[k]


def test_random_erasing_pixel_fills_the_box_with_noise_of_the_normalizations_statistics():
    policy = RandomErasing(1.0, "pixel", tuple(MEAN), tuple(STD))
    before, after = apply(policy, batch_size=64, iterations=2)
    values = []
    for k, box in enumerate(_erased_boxes(before, after)):
        assert box is not None  # prob 1: every crop has a box (a box always fits a 64 x 64 crop)
        top, left, height, width = box
        values.append(after[k, top : top + height, left : left + width].reshape(-1, 3))
    values = np.concatenate(values)
    normalized = (values - MEAN) / STD
    # N(0, 1) once normalized, but clipped to the pixels' 0-255 (about -2.1 to 2.2 standard deviations,
    # so 3% of the values sit at 0 or 255).
    assert abs(normalized.mean()) < 0.05 and 0.85 < normalized.std() < 1.0
    assert 0.01 < np.isin(values, [0, 255]).mean() < 0.06


def test_val_crop_pct_is_timms_resize_and_center_crop(imagenet_dir):
    files, _, _ = formats.image_folder(str(imagenet_dir / "val"))
    loader = make_loader(dataset="imagefolder", root=imagenet_dir / "val", split="val", batch_size=8, device="cpu",
                         crop_size=224, crop_pct=0.95)
    images, _ = collect(loader)
    transform = transforms.Compose([transforms.Resize(math.floor(224 / 0.95)), transforms.CenterCrop(224),
                                    transforms.ToTensor(), transforms.Normalize(MEAN / 255, STD / 255)])
    from PIL import Image

    expected = torch.stack([transform(Image.open(f).convert("RGB")) for f in files])
    difference = (images - expected).abs().mean(dim=(1, 2, 3))
    assert difference.mean() < VAL_MEAN_TOLERANCE and difference.max() < VAL_MAX_TOLERANCE, difference


def test_the_train_loader_takes_every_new_option(imagenet_dir):
    loader = make_loader(dataset="imagefolder", root=imagenet_dir / "train", batch_size=8, device="cpu", crop_size=48,
                         mixup_alpha=0.2, cutmix_alpha=1.0, switch_prob=0.5, mix_prob=0.9, auto_augment="rand-m9-n2",
                         reprob=0.5, remode="pixel")
    images, targets = collect(loader)
    assert images.shape == (24, 3, 48, 48) and torch.isfinite(images).all()
    torch.testing.assert_close(targets.sum(1), torch.ones(24), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kwargs", [dict(cutmix_alpha=1.0), dict(auto_augment="trivial"), dict(reprob=0.25)])
def test_train_only_options_are_refused_on_val(imagenet_dir, kwargs):
    with pytest.raises(ValueError, match="apply to split='train' only"):
        make_loader(dataset="imagefolder", root=imagenet_dir / "val", split="val", device="cpu", **kwargs)
