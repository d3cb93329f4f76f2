"""Drop-in parity with torchvision's ImageFolder + DataLoader: the same files, labels and pixels, and a
DataLoader's epochs; what differs on purpose (EXIF orientation) is a switch."""

import io
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torchvision import datasets, transforms

from conftest import DEVICES
from dali_mixup import check_data, formats, make_loader
from dali_mixup.datasets import imagenet_like_image, write_shards
from helpers import MEAN, STD, VAL_MAX_TOLERANCE, assert_matches_torchvision_val, collect

def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


@pytest.fixture(scope="module")
def user_tree(tmp_path_factory):
    """An ImageFolder arranged as users' folders are: nested sub-folders, a class whose images all sit in a
    sub-folder, a folder named like an image, upper-case extensions, junk files and a symlinked class."""
    root = tmp_path_factory.mktemp("tree") / "train"
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    image = iter(imagenet_like_image(label, index, seed=0) for index in range(100) for label in range(5))
    for path in ["a/1.jpg", "a/sub/2.JPEG", "a/sub/deeper/3.png", "a/x.jpg/4.jpg", "a/Z.JPG",
                 "b/only/in/here.jpeg", "c/5.Jpg", "c/6.webp.jpg"]:
        _write(str(root / path), next(image))
    for junk in ["a/notes.txt", "a/.DS_Store", "b/only/readme", "c/7.jpg.bak", "c/thumbs.db"]:
        _write(str(root / junk), b"not an image")
    _write(str(elsewhere / "d" / "8.jpg"), next(image))
    _write(str(elsewhere / "d" / "nested" / "9.jpg"), next(image))
    _write(str(elsewhere / "more" / "10.jpg"), next(image))
    os.symlink(elsewhere / "d", root / "d")  # a class folder that is a symlink
    os.symlink(elsewhere / "more", root / "c" / "linked")  # a symlinked folder inside a class
    _write(str(root / "loose.jpg"), next(image))  # a file at the top is no class
    return root


def test_image_folder_finds_what_torchvision_finds(user_tree):
    reference = datasets.ImageFolder(str(user_tree))
    files, labels, classes = formats.image_folder(str(user_tree))
    assert classes == reference.classes == ["a", "b", "c", "d"]
    assert list(zip(files, labels)) == reference.samples
    assert len(files) == 11  # the nested, renamed, upper-case and symlinked ones, and no junk


def test_val_output_equals_torchvision_sample_for_sample(user_tree):
    reference = datasets.ImageFolder(str(user_tree))
    loader = make_loader(dataset="imagefolder", root=user_tree, split="val", batch_size=4, device="cpu")
    images, labels = collect(loader)
    assert labels.tolist() == reference.targets
    assert_matches_torchvision_val(images, [path for path, _ in reference.samples])


def test_check_data_and_the_shard_packer_scan_the_same_way(user_tree, tmp_path):
    reference = datasets.ImageFolder(str(user_tree))
    assert check_data.check(str(user_tree)) == []
    paths = write_shards(str(user_tree), str(tmp_path), per_shard=4)
    samples, num_classes, problems = formats.scan_shards(paths, [formats.index_path(p) for p in paths])
    assert problems == [] and num_classes == 4
    packed = sorted((open(shard, "rb").read()[offset : offset + size], label) for shard, _, offset, size, label in samples)
    assert packed == sorted((open(path, "rb").read(), label) for path, label in reference.samples)


def test_a_class_without_images_is_an_error_naming_it(user_tree, tmp_path):
    root = tmp_path / "train"
    shutil.copytree(user_tree, root, symlinks=True)
    (root / "e" / "sub").mkdir(parents=True)
    (root / "e" / "sub" / "notes.txt").write_text("no image here")
    with pytest.raises(FileNotFoundError, match="Found no valid file for the classes e"):
        datasets.ImageFolder(str(root))  # torchvision refuses it too
    with pytest.raises(FileNotFoundError, match=f"{root / 'e'}: empty class folder"):
        make_loader(dataset="imagefolder", root=root, device="cpu", batch_size=2)


# ---- EXIF orientation ----

@pytest.fixture(scope="module")
def rotated_folder(tmp_path_factory):
    """Two photos tagged "rotate 90 degrees clockwise" (EXIF orientation 6) and one tagged 3 (rotate 180)."""
    root = tmp_path_factory.mktemp("exif")
    for label, (index, orientation) in enumerate([(0, 6), (1, 6), (2, 3)]):
        image = Image.open(io.BytesIO(imagenet_like_image(label, index, seed=1)))
        exif = Image.Exif()
        exif[0x0112] = orientation
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=95, exif=exif)
        _write(str(root / f"c{label}" / "tagged.jpg"), out.getvalue())
    return root


def _eval_reference(files, oriented):
    """torchvision's eval transform on the files as PIL reads them, or on their exif_transpose."""
    def opened(file):
        image = Image.open(file)
        return ImageOps.exif_transpose(image) if oriented else image

    transform = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                    transforms.Normalize(MEAN / 255, STD / 255)])
    return torch.stack([transform(opened(file).convert("RGB")) for file in files])


@pytest.mark.parametrize("device", DEVICES)
def test_orientation_is_torchvisions_by_default_and_exif_transpose_on_request(rotated_folder, device):
    files, _, _ = formats.image_folder(str(rotated_folder))
    as_stored, transposed = _eval_reference(files, oriented=False), _eval_reference(files, oriented=True)
    assert (as_stored - transposed).abs().mean() > 0.3  # the tag changes the pixels: the test can fail
    for option, expected in (({}, as_stored), ({"adjust_orientation": True}, transposed)):
        loader = make_loader(dataset="imagefolder", root=rotated_folder, split="val", batch_size=3, device=device,
                             **option)
        images, _ = collect(loader)
        difference = (images.float() - expected).abs().mean(dim=(1, 2, 3))
        tolerance = VAL_MAX_TOLERANCE if device == "cpu" else 0.02  # nvJPEG's IDCT differs from libjpeg's
        assert difference.max() < tolerance, (option, difference)


def _best_shift(image, reference, pad=4):
    """The (dy, dx) in [-pad, pad] that best aligns ``image`` with ``reference`` shifted and zero-filled, and its error.

    Both are HWC float arrays of one size; ``image[y, x] == reference[y + dy, x + dx]``, zero outside.
    """
    height, width, _ = reference.shape
    padded = np.zeros((height + 2 * pad, width + 2 * pad, 3), np.float32)
    padded[pad : pad + height, pad : pad + width] = reference
    errors = {(dy, dx): np.abs(padded[pad + dy : pad + dy + height, pad + dx : pad + dx + width] - image).mean()
              for dy in range(-pad, pad + 1) for dx in range(-pad, pad + 1)}
    return min(errors.items(), key=lambda item: item[1])


def _pixels(normalized):
    """Loader output (NCHW, normalized) back to 0..255 HWC."""
    return normalized.permute(0, 2, 3, 1).numpy() * STD + MEAN


@pytest.mark.parametrize("augment", ["pad_crop", "random_resized_crop"])
def test_train_split_applies_the_orientation_too(rotated_folder, augment):
    files, labels, _ = formats.image_folder(str(rotated_folder))
    size = 96
    for adjust in (False, True):
        # Crops of the whole image (area 1), so the output is the image squeezed to a square.
        area = {"min_crop_area": 1.0} if augment == "random_resized_crop" else {}
        loader = make_loader(dataset="imagefolder", root=rotated_folder, batch_size=3, device="cpu", crop_size=size,
                             augment=augment, hflip=0.0, adjust_orientation=adjust, **area)
        images, targets = collect(loader)
        for image, target in zip(_pixels(images), targets.tolist()):  # class ids: nothing mixes
            opened = Image.open(files[labels.tolist().index(target)])
            views = [np.asarray(view.convert("RGB").resize((size, size), Image.BILINEAR), np.float32)
                     for view in (opened, ImageOps.exif_transpose(opened))]
            if augment == "pad_crop":  # the image moved by up to 4 pixels
                errors = [_best_shift(image, view)[1] for view in views]
                assert errors[int(adjust)] < 2.0 < errors[1 - int(adjust)], (adjust, errors)
            else:  # the crop may miss a sliver where the aspect ratio is out of [3/4, 4/3]
                correlations = [np.corrcoef(image.ravel(), view.ravel())[0, 1] for view in views]
                assert correlations[int(adjust)] > 0.8 > correlations[1 - int(adjust)] + 0.2, (adjust, correlations)


# ---- pad_crop for any source ----

def test_pad_crop_shifts_each_image_by_at_most_4_pixels_with_zero_fill(digits_dir):
    files, labels, _ = formats.image_folder(str(digits_dir / "val"))
    loader = make_loader(dataset="imagefolder", root=digits_dir / "val", batch_size=20, device="cpu",
                         augment="pad_crop", crop_size=32, hflip=0.0, seed=1)
    images, targets = next(iter(loader))
    assert images.shape == (20, 3, 32, 32)
    by_label = {}
    for file, label in zip(files, labels):
        by_label.setdefault(label, []).append(np.asarray(Image.open(file).convert("RGB"), np.float32))
    shifts = set()
    for image, label in zip(_pixels(images), targets.tolist()):
        # The JPEGs decode to the same bytes in DALI as in PIL (both libjpeg-turbo), so a match is exact.
        shift, error = min((_best_shift(image, reference) for reference in by_label[label]), key=lambda s: s[1])
        assert error < 1e-3, error
        shifts.add(shift)
    assert len(shifts) > 5  # the offsets vary


def test_pad_crop_val_is_the_resize_alone(digits_dir):
    files, _, _ = formats.image_folder(str(digits_dir / "val"))
    loader = make_loader(dataset="imagefolder", root=digits_dir / "val", split="val", batch_size=16, device="cpu",
                         augment="pad_crop", crop_size=32)
    images, _ = next(iter(loader))
    expected = np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32) for f in files[:16]])
    np.testing.assert_allclose(_pixels(images), expected, atol=1e-3)


# ---- a DataLoader's epochs ----

def _count(loader, stop=None):
    count = 0
    for count, _ in enumerate(loader, 1):
        if count == stop:
            break
    return count


@pytest.mark.parametrize("dataset", ["imagefolder", "cifar10"])
@pytest.mark.parametrize("split", ["train", "val"])
def test_every_iter_is_a_full_fresh_epoch(imagenet_dir, cifar_dir, dataset, split, recwarn):
    root = imagenet_dir / split if dataset == "imagefolder" else cifar_dir
    loader = make_loader(dataset=dataset, root=root, split=split, batch_size=2 if split == "val" else 4,
                         crop_size=32, device="cpu", num_threads=1)
    assert len(loader) >= 4
    assert _count(loader) == len(loader)  # a full epoch
    assert _count(loader, stop=2) == 2  # broken off
    assert _count(loader) == len(loader)
    next(iter(loader))  # a peek
    next(iter(loader))
    assert _count(loader) == len(loader)
    assert _count(loader) == len(loader)
    assert not [w for w in recwarn.list if "DALI" in str(w.message)]


def test_an_epoch_after_a_break_is_fresh_and_covers_the_set(tmp_path, imagenet_dir):
    files, _, _ = formats.image_folder(str(imagenet_dir / "train"))
    (tmp_path / "list.txt").write_text("".join(f"{f} {k}\n" for k, f in enumerate(files)))  # a label names a file
    loader = make_loader(dataset="filelist", root="/", file_list=tmp_path / "list.txt", batch_size=4, crop_size=32,
                         device="cpu")
    first = next(iter(loader))[1].tolist()
    epoch = torch.cat([targets for _, targets in loader]).tolist()
    assert sorted(epoch) == list(range(len(files)))
    assert epoch[:4] != first  # the new epoch has its own order


def test_a_stale_iterator_raises_instead_of_reading_the_new_epoch(imagenet_dir):
    loader = make_loader(dataset="imagefolder", root=imagenet_dir / "train", batch_size=4, crop_size=32, device="cpu")
    old = iter(loader)
    next(old)
    assert _count(loader) == len(loader)
    with pytest.raises(RuntimeError, match="broken off by a newer iter"):
        next(old)


@pytest.mark.parametrize("dataset, world_size, share, total", [("imagefolder", 4, 6, 24), ("cifar10", 8, 12, 100)])
def test_a_train_split_smaller_than_a_batch_is_an_error(imagenet_dir, cifar_dir, dataset, world_size, share, total):
    root = imagenet_dir / "train" if dataset == "imagefolder" else cifar_dir
    with pytest.raises(ValueError, match=rf"batch_size=16 gives the ranks no whole batch: each rank's share of the train split "
                                         rf"is {share} of {total} samples over world_size={world_size}"):
        make_loader(dataset=dataset, root=root, batch_size=16, device="cpu", world_size=world_size, rank=1)


def test_nearest_val_is_torchvisions_crop_to_the_pixel(imagenet_dir):
    """interpolation="nearest" keeps fn.resize and crop_mirror_normalize's window: the same center crop as
    torchvision's, to the pixel (the two nearest-neighbour filters round a few ties apart: 0.03% of values)."""
    from torchvision import transforms

    files, _, _ = formats.image_folder(str(imagenet_dir / "val"))
    loader = make_loader(dataset="imagefolder", root=imagenet_dir / "val", split="val", batch_size=4, device="cpu",
                         interpolation="nearest")
    images, _ = collect(loader)
    nearest = transforms.InterpolationMode.NEAREST
    transform = transforms.Compose([transforms.Resize(256, interpolation=nearest), transforms.CenterCrop(224),
                                    transforms.ToTensor(), transforms.Normalize(MEAN / 255, STD / 255)])
    theirs = torch.stack([transform(Image.open(f).convert("RGB")) for f in files])
    assert ((images - theirs).abs() < 1e-5).float().mean() > 0.999
