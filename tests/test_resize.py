"""The fused operator's resize: Pillow's to the bit (torchvision's Resize and RandomResizedCrop on PIL images),
its GPU code run on the host under the sanitizers, the train crops on the decoder's own boxes, the composed
fallback, and the arguments refused."""

import os
import subprocess

import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def, types
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F

from conftest import DEVICES
from dali_mixup import build, mixup_reference
from dali_mixup.mixup import RESAMPLE, Resize, mixup
from helpers import MEAN, STD, VAL_MAX_TOLERANCE, VAL_MEAN_TOLERANCE, assert_exact, color_photos
from pipelines import augment

PIL_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}
TORCHVISION = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
               "lanczos": InterpolationMode.LANCZOS}


@pytest.fixture(scope="module")
def resample_on_host(tmp_path_factory):
    """The GPU backend's resize (csrc/resample.h: the weights, the order of the passes and every thread's pixels)
    as a host program, under ASan and UBSan (tests/csrc/resample_on_host.cc)."""
    import nvidia.dali.sysconfig as dali_sysconfig

    program = tmp_path_factory.mktemp("resize") / "resample_on_host"
    source = os.path.join(os.path.dirname(__file__), "csrc", "resample_on_host.cc")
    subprocess.run([os.environ.get("CXX", "c++"), "-std=c++20", "-O1", "-g", "-Wall", "-Werror",
                    "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer",
                    f"-I{build.CSRC}", f"-I{dali_sysconfig.get_include_dir()}", source, "-o", str(program)], check=True)
    return program


def _on_host(program, tmp_path, image, full, offset, size, resample, threads):
    image.tofile(tmp_path / "in")
    subprocess.run([str(program), str(tmp_path / "in"), str(tmp_path / "out"), *map(str, image.shape[:2]),
                    *map(str, full), *map(str, offset), *map(str, size), str(RESAMPLE[resample]), str(threads)],
                   check=True)
    return np.fromfile(tmp_path / "out", np.uint8).reshape(*size, 3)


def _vertical_first(in_size, full):
    """Pillow 13's order of the passes (Resample.c): vertical first where the height shrinks by more than
    twice as many pixels as the width."""
    shrink_height, shrink_width = in_size[0] - full[0], in_size[1] - full[1]
    return shrink_height > 0 and shrink_height > 2 * shrink_width


def _cases(count, seed):
    """Crops of the real photos with output sizes that shrink, stretch or both, and windows of the resize."""
    photos = [photo for _, photo in color_photos()]
    rng = np.random.default_rng(seed)
    for k in range(count):
        photo = photos[k % len(photos)]
        height, width = photo.shape[:2]
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        crop = np.ascontiguousarray(photo[top: top + rng.integers(9, height - top + 1),
                                          left: left + rng.integers(9, width - left + 1)])
        full = (int(rng.integers(5, 520)), int(rng.integers(5, 520)))
        windowed = k % 3 == 0
        size = (int(rng.integers(1, full[0] + 1)), int(rng.integers(1, full[1] + 1))) if windowed else full
        offset = (int(rng.integers(0, full[0] - size[0] + 1)), int(rng.integers(0, full[1] - size[1] + 1)))
        yield crop, full, offset, size, list(RESAMPLE)[k % 3]


def test_the_gpu_resize_run_on_the_host_is_pillows_to_the_bit(resample_on_host, tmp_path):
    orders = set()
    for k, (crop, full, offset, size, resample) in enumerate(_cases(45, seed=0)):
        ours = _on_host(resample_on_host, tmp_path, crop, full, offset, size, resample, threads=1 if k % 2 else 37)
        resized = np.asarray(Image.fromarray(crop).resize(full[::-1], PIL_FILTERS[resample]))
        theirs = resized[offset[0]: offset[0] + size[0], offset[1]: offset[1] + size[1]]
        assert np.array_equal(ours, theirs), (crop.shape, full, offset, size, resample)
        orders.add(_vertical_first(crop.shape, full))
    assert orders == {False, True}  # both orders of the passes were taken


@pipeline_def(num_threads=2, seed=12)
def resized_crops(images, labels, size, resample, device, mixing):
    """Photos cut by the random-resized crop's generator, then resized (and mixed) by the fused operator; the
    windows, flips and mixing parameters come out too."""
    data = fn.external_source(source=lambda: images, batch=True, layout="HWC")
    classes = fn.external_source(source=lambda: labels, batch=True)
    crop = augment.RandomResizedCrop(size)
    anchor, shape = crop.window(data, encoded=False)
    crops = fn.slice(data, start=anchor, shape=shape, axes=[0, 1])
    if device == "gpu":
        crops = crops.gpu()
    mirror = fn.random.coin_flip(probability=0.5)
    out, targets, lam, perm = mixup(crops, classes, num_classes=10, mean=list(MEAN), std=list(STD), mirror=mirror,
                                    resize=Resize((size, size), resample), return_params=True, **mixing)[:4]
    return out, targets, lam, perm, anchor, shape, mirror


def _photos(count):
    photos = [photo for _, photo in color_photos()]
    return [photos[k % len(photos)] for k in range(count)], [np.int32(k % 10) for k in range(count)]


def _torchvision_crops(images, anchors, shapes, mirrors, size, resample):
    """torchvision's resized_crop on the same boxes (PIL), flipped where ours were, normalized, NCHW."""
    out = []
    for image, (top, left), (height, width), flip in zip(images, anchors, shapes, mirrors):
        crop = F.resized_crop(Image.fromarray(image), int(top), int(left), int(height), int(width), [size, size],
                              TORCHVISION[resample])
        crop = F.hflip(crop) if flip else crop
        out.append(F.normalize(F.to_tensor(crop), list(MEAN / 255), list(STD / 255)))
    return torch.stack(out)


def _run(images, labels, size, resample, device, **mixing):
    pipe = resized_crops(images, labels, size, resample, device, mixing, batch_size=len(images),
                         device_id=0 if device == "gpu" else None)
    pipe.build()
    return [out.as_cpu().as_array() for out in pipe.run()]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("resample", ["bilinear", "bicubic", "lanczos"])
def test_train_crops_are_torchvisions_resized_crop_on_the_same_box(resample, device):
    images, labels = _photos(12)
    out, targets, lam, perm, anchors, shapes, mirrors = _run(images, labels, 64, resample, device, alpha=0.0)
    assert_exact(torch.from_numpy(out), _torchvision_crops(images, anchors, shapes, mirrors, 64, resample))
    assert len({tuple(s) for s in shapes}) > 6 and 0 < mirrors.sum() < len(mirrors)  # many boxes; both flips


@pytest.mark.parametrize("device", DEVICES)
def test_resized_crops_are_mixed_as_the_reference_mixes_torchvisions(device):
    images, labels = _photos(16)
    out, targets, lam, perm, anchors, shapes, mirrors = _run(images, labels, 48, "bilinear", device, alpha=1.0,
                                                              per_sample=True)
    crops = _torchvision_crops(images, anchors, shapes, mirrors, 48, "bilinear")
    expected, expected_targets = mixup_reference(crops, torch.tensor(np.array(labels)), torch.from_numpy(lam),
                                                 torch.from_numpy(perm), 10)
    assert (lam < 0.95).sum() >= 4
    assert np.abs(out - expected.numpy()).max() < 1e-4 and np.abs(targets - expected_targets.numpy()).max() < 1e-6


def test_the_composed_fallback_resizes_close_to_pillow(monkeypatch):
    monkeypatch.setenv("DALI_MIXUP_FUSED", "0")
    images, labels = _photos(12)
    out, _, _, _, anchors, shapes, mirrors = _run(images, labels, 64, "bilinear", "cpu", alpha=0.0)
    difference = (torch.from_numpy(out) - _torchvision_crops(images, anchors, shapes, mirrors, 64, "bilinear")).abs()
    per_image = difference.mean(dim=(1, 2, 3))
    assert per_image.mean() < VAL_MEAN_TOLERANCE * 2 and per_image.max() < VAL_MAX_TOLERANCE * 2, per_image
    assert difference.max() > 1e-3  # DALI's filter: close, not Pillow's to the bit


@pytest.mark.parametrize("kwargs, match", [
    (dict(size=(0, 5)), r"resize's size must be \(height, width\), ints >= 1"),
    (dict(size=(8, 8), resample="box"), "resize's resample must be one of"),
    (dict(size=(8, 8), resized=object()), "resized and offset go together"),
])
def test_bad_resizes_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Resize(**kwargs)


def test_a_window_outside_the_resize_is_an_error_naming_the_sample():
    images, labels = _photos(2)

    @pipeline_def(batch_size=2, num_threads=1, device_id=None)
    def pipe():
        data = fn.external_source(source=lambda: images, batch=True, layout="HWC")
        classes = fn.external_source(source=lambda: labels, batch=True)
        window = Resize((32, 32), "bilinear", types.Constant(np.array([40, 40], np.int32)),
                        types.Constant(np.array([0, 9], np.int32)))
        return mixup(data, classes, num_classes=10, alpha=0.0, mean=list(MEAN), std=list(STD), resize=window)

    p = pipe()
    p.build()
    with pytest.raises(RuntimeError, match=r"the 32x32 window at \(0, 9\) of sample 0 is not inside its resize to 40x40"):
        p.run()


@pipeline_def(batch_size=32, num_threads=2, device_id=None, seed=9)
def whole_crops_resized(images, interpolation):
    """Whole images (the crop's scale and ratio 1) resized later, by mixup's pass, with ``interpolation``."""
    data = fn.external_source(source=lambda: images, batch=True, layout="HWC")
    crop = augment.RandomResizedCrop(40, interpolation=interpolation, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    crops, resize = crop.train(data, encoded=False, device="cpu", image_size=None, resize_later=True)
    labels = fn.cast(fn.random.coin_flip(probability=0.0), dtype=types.INT32)
    return mixup(crops, labels, num_classes=2, alpha=0.0, mean=list(MEAN), std=list(STD), resize=resize)[0]


@pytest.mark.parametrize("path", ["fused", "fallback"])
def test_random_interpolation_picks_bilinear_or_bicubic_per_crop_in_the_deferred_resize(path, monkeypatch):
    if path == "fallback":
        monkeypatch.setenv("DALI_MIXUP_FUSED", "0")
    photos = [photo for _, photo in color_photos()]
    images = [np.ascontiguousarray(photos[k % len(photos)][:96, :96]) for k in range(32)]

    def outputs(interpolation):
        pipe = whole_crops_resized(images, interpolation)
        pipe.build()
        return pipe.run()[0].as_array()

    mixed, bilinear, bicubic = outputs("random"), outputs("bilinear"), outputs("bicubic")
    picks = []
    for k, out in enumerate(mixed):
        assert np.array_equal(out, bilinear[k]) or np.array_equal(out, bicubic[k]), k
        picks.append(np.array_equal(out, bicubic[k]))
    assert 4 <= sum(picks) <= 28  # both filters, per crop
