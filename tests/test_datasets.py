"""The dataset maker, the CIFAR formats (byte layout, restricted unpickling) and the format readers."""

import io
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dali_mixup import cifar, formats
from dali_mixup.datasets import cifar_like_arrays, imagenet_like_image, pack_shards, write_shards


def test_imagenet_like_images_are_jpegs_of_imagenet_size_and_deterministic():
    images = [imagenet_like_image(label, index, seed=0) for label in range(8) for index in range(5)]
    sizes = []
    for data in images:
        image = Image.open(io.BytesIO(data))
        assert image.format == "JPEG"
        sizes.append(image.size)
    mean_width, mean_height = np.mean(sizes, axis=0)
    assert 450 < mean_width < 550 and 335 < mean_height < 415, (mean_width, mean_height)
    assert len(set(images)) == len(images)
    assert imagenet_like_image(3, 1, seed=0) == images[3 * 5 + 1]
    assert imagenet_like_image(3, 1, seed=1) != images[3 * 5 + 1]


def test_imagenet_like_quality_is_between_75_and_95():
    # libjpeg scales the standard luminance table by quality; its first entry (16) becomes
    # 16 * (200 - 2q) / 100, which is 8 at q=75 and 2 at q=95 (rounded).
    for label in range(10):
        table = Image.open(io.BytesIO(imagenet_like_image(label, 0, seed=0))).quantization[0]
        assert 2 <= table[0] <= 8, table[0]


def test_imagenet_like_cli_writes_train_and_val(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "dali_mixup.datasets", "imagenet-like", str(tmp_path), "--classes", "3",
         "--per-class", "2", "--val-per-class", "1"],
        check=True,
    )
    files, labels, classes = formats.image_folder(str(tmp_path / "train"))
    assert len(files) == 6 and labels.tolist() == [0, 0, 1, 1, 2, 2] and len(classes) == 3
    assert len(formats.image_folder(str(tmp_path / "val"))[0]) == 3


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_round_trip_in_both_formats(tmp_path, name, classes):
    train = cifar_like_arrays(classes, 2, seed=0)
    test = cifar_like_arrays(classes, 1, seed=0, start=2)
    cifar.write_cifar(str(tmp_path), name, train, test, [f"c{k}" for k in range(classes)])
    binary, python = ("cifar-10-batches-bin", "cifar-10-batches-py") if name == "cifar10" else (
        "cifar-100-binary", "cifar-100-python")
    for hidden in (python, binary):  # read the binary version, then the python one
        os.rename(tmp_path / hidden, tmp_path / "hidden")
        for split, (images, labels) in (("train", train), ("val", test)):
            got_images, got_labels = cifar.load_cifar(str(tmp_path), name, split)
            np.testing.assert_array_equal(got_images, images)
            np.testing.assert_array_equal(got_labels, labels)
        os.rename(tmp_path / "hidden", tmp_path / hidden)


def test_cifar10_binary_bytes_follow_the_official_layout(tmp_path):
    images, labels = cifar_like_arrays(10, 5, seed=0)  # 50 images: 10 per batch file
    cifar.write_cifar(str(tmp_path), "cifar10", (images, labels), (images[:3], labels[:3]), [str(k) for k in range(10)])
    raw = (tmp_path / "cifar-10-batches-bin" / "data_batch_2.bin").read_bytes()
    assert len(raw) == 10 * 3073
    record = raw[3073 : 2 * 3073]  # second record of the second file: image 11
    assert record[0] == labels[11]
    assert record[1:1025] == images[11, :, :, 0].tobytes()  # the red plane, row-major
    assert record[1025:2049] == images[11, :, :, 1].tobytes()
    assert record[2049:] == images[11, :, :, 2].tobytes()
    assert (tmp_path / "cifar-10-batches-bin" / "batches.meta.txt").read_text().split() == [str(k) for k in range(10)]
    batch = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_2").read_bytes(), encoding="bytes")
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert batch[b"data"].shape == (10, 3072) and batch[b"data"].dtype == np.uint8
    assert batch[b"data"][1].tobytes() == record[1:]


def test_cifar100_binary_has_coarse_then_fine_label(tmp_path):
    images, labels = cifar_like_arrays(100, 1, seed=0)
    cifar.write_cifar(str(tmp_path), "cifar100", (images, labels), (images, labels), [str(k) for k in range(100)])
    raw = np.fromfile(tmp_path / "cifar-100-binary" / "train.bin", dtype=np.uint8).reshape(100, 3074)
    np.testing.assert_array_equal(raw[:, 1], labels)
    np.testing.assert_array_equal(raw[:, 0], labels // 5)


class _Payload:
    """Unpickling this calls os.system, which would create ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["top", "labels"])
def test_a_pickle_that_carries_code_is_refused_and_never_runs(tmp_path, cifar_dir, where):
    marker = tmp_path / "pwned"
    root = tmp_path / "root"
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    clean = cifar.load_pickle(str(cifar_dir / "cifar-10-batches-py" / "data_batch_1"))
    payload = _Payload(marker)
    batch = payload if where == "top" else {**clean, b"labels": [payload]}
    for k in range(1, 6):
        (folder / f"data_batch_{k}").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"data_batch_1.*posix\.system|data_batch_1.*os\.system"):
        cifar.load_cifar(str(root), "cifar10", "train")
    assert not marker.exists()
    # The same file through plain pickle does run the code: the test can fail.
    pickle.loads((folder / "data_batch_1").read_bytes())
    assert marker.exists()


def test_cifar_errors_name_the_file(tmp_path, cifar_dir):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-bin"):
        cifar.load_cifar(str(tmp_path), "cifar10", "train")
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    (folder / "test_batch.bin").write_bytes(b"\x00" * 3000)
    with pytest.raises(ValueError, match="test_batch.bin.*3073"):
        cifar.load_cifar(str(tmp_path), "cifar10", "val")
    record = np.zeros(3073, np.uint8)
    record[0] = 10  # a label outside CIFAR-10's classes
    record.tofile(folder / "test_batch.bin")
    with pytest.raises(ValueError, match="test_batch.bin: record 0 has label 10"):
        cifar.load_cifar(str(tmp_path), "cifar10", "val")


def test_file_list_errors_name_file_and_line(tmp_path, imagenet_dir):
    files, _, _ = formats.image_folder(str(imagenet_dir / "train"))
    relative = [os.path.relpath(f, imagenet_dir) for f in files[:3]]
    good = tmp_path / "good.txt"
    good.write_text(f"{relative[0]} 0\n\n{relative[1]} 2\n")
    files, labels, num_classes = formats.file_list(str(good), str(imagenet_dir))
    assert list(files) == [str(imagenet_dir / relative[0]), str(imagenet_dir / relative[1])]
    assert labels.tolist() == [0, 2] and num_classes == 3
    cases = {
        f"{relative[0]} 0\n{relative[1]} 5\n": r"bad.txt:2: label 5 is outside \[0, 4\)",
        f"{relative[0]} zero\n": r"bad.txt:1: expected 'relative/path label'",
        f"{relative[0]} 0\nmissing.JPEG 1\n": r"bad.txt:2: .*missing.JPEG does not exist",
        f"{relative[0]} -1\n": r"bad.txt:1: label -1 is outside",
        "\n": "bad.txt: the file list is empty",
    }
    for text, message in cases.items():
        (tmp_path / "bad.txt").write_text(text)
        with pytest.raises(ValueError, match=message):
            formats.file_list(str(tmp_path / "bad.txt"), str(imagenet_dir), num_classes=4)


def test_shards_hold_every_image_once_and_missing_index_names_the_command(tmp_path, imagenet_dir):
    paths = write_shards(str(imagenet_dir / "train"), str(tmp_path / "shards"), per_shard=10)
    assert len(paths) == 3
    samples, num_classes, problems = formats.scan_shards(paths, [formats.index_path(p) for p in paths])
    assert problems == [] and num_classes == 4
    files, labels, _ = formats.image_folder(str(imagenet_dir / "train"))
    packed = sorted((open(shard, "rb").read()[offset : offset + size], label)
                    for shard, _, offset, size, label in samples)
    assert packed == sorted((open(f, "rb").read(), label) for f, label in zip(files, labels))

    os.remove(formats.index_path(paths[1]))
    with pytest.raises(FileNotFoundError, match="shard-000001.tar.*python -m dali_mixup.index_shards"):
        formats.shards(str(tmp_path / "shards"))
    subprocess.run([sys.executable, "-m", "dali_mixup.index_shards", str(tmp_path / "shards")], check=True)
    assert formats.shards(str(tmp_path / "shards"))[1][1] == formats.index_path(paths[1])


def test_label_files_are_read_when_fresh_and_ignored_when_stale(tmp_path, imagenet_dir):
    paths = write_shards(str(imagenet_dir / "train"), str(tmp_path / "shards"), per_shard=10)
    indexes = [formats.index_path(p) for p in paths]
    truth = formats.scan_shards(paths, indexes, use_label_files=False)
    assert all(os.path.isfile(formats.labels_path(p)) for p in paths)
    assert formats.scan_shards(paths, indexes) == truth

    # A fresh label file is what the loader reads: prove it by changing the labels it holds.
    label_file = formats.labels_path(paths[0])
    header, *lines = open(label_file).read().splitlines()
    open(label_file, "w").write("\n".join([header, *[str((int(line) + 1) % 4) for line in lines]]) + "\n")
    shifted = formats.scan_shards(paths, indexes)[0]
    assert [s[-1] for s in shifted if s[0] == paths[0]] == [(s[-1] + 1) % 4 for s in truth[0] if s[0] == paths[0]]
    assert formats.label_file_problems(paths, indexes, truth[0]) == [
        f"{label_file}: disagrees with the .cls members of {paths[0]}; "
        f"rewrite it with: python -m dali_mixup.index_shards {paths[0]} --force"
    ]

    stale = os.path.getmtime(paths[0]) - 10
    os.utime(label_file, (stale, stale))
    assert formats.scan_shards(paths, indexes) == truth

    open(label_file, "w").write("\n".join([header, *lines[:-1]]) + "\n")
    with pytest.raises(ValueError, match=f"{label_file}: not a label file for the 10 samples.*--force"):
        formats.scan_shards(paths, indexes)


def test_index_shards_writes_no_label_file_for_a_shard_with_a_bad_label(tmp_path, imagenet_dir):
    files, labels, _ = formats.image_folder(str(imagenet_dir / "train"))
    labels = labels.tolist()
    labels[5] = "x5"
    paths = pack_shards(files[:20], labels[:20], str(tmp_path), per_shard=10)
    bad = next(p for p in paths if not os.path.isfile(formats.labels_path(p)))
    result = subprocess.run([sys.executable, "-m", "dali_mixup.index_shards", str(tmp_path)], capture_output=True,
                            text=True)
    assert result.returncode == 1
    assert f"{bad}:00000005.cls: label must be ASCII digits, got b'x5'" in result.stderr
    assert [os.path.isfile(formats.labels_path(p)) for p in paths].count(False) == 1


def test_sniff_finds_truncated_and_non_images(tmp_path, imagenet_dir):
    files, _, _ = formats.image_folder(str(imagenet_dir / "train"))
    data = open(files[0], "rb").read()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("not an image\n")
    assert formats.sniff_image(files[0]) is None
    assert "truncated" in formats.sniff_image(str(tmp_path / "trunc.jpg"))
    assert "not an image" in formats.sniff_image(str(tmp_path / "text.jpg"))
