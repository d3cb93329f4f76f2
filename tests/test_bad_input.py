"""Bad and unusual input: broken files are named, odd-but-valid images work, check_data lists exactly the bad ones."""

import io
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dali_mixup import formats, make_loader
from dali_mixup.datasets import write_shards
from dali_mixup.photos import photo
from helpers import assert_matches_torchvision_val, collect


def _jpeg(image, mode, **save_args):
    out = io.BytesIO()
    Image.fromarray(image).convert(mode).save(out, **save_args)
    return out.getvalue()


@pytest.fixture(scope="module")
def odd_dir(tmp_path_factory):
    """Valid but unusual images, one class each: grayscale, CMYK, PNG named .JPEG, smaller than the crop."""
    root = tmp_path_factory.mktemp("odd")
    coffee = np.asarray(photo("coffee"))
    files = {
        "gray/camera.JPEG": _jpeg(np.asarray(photo("camera")), "L", format="JPEG", quality=90),
        "cmyk/coffee.JPEG": _jpeg(coffee, "CMYK", format="JPEG", quality=90),
        "png/coffee.JPEG": _jpeg(coffee, "RGB", format="PNG"),
        "tiny/coffee.JPEG": _jpeg(coffee[100:112, 200:216], "RGB", format="JPEG", quality=90),
    }
    for name, data in files.items():
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture
def broken_dir(tmp_path, imagenet_dir):
    """A copy of the train set with a truncated JPEG, a text file named .JPEG and an empty class folder."""
    root = tmp_path / "broken"
    shutil.copytree(imagenet_dir / "train", root)
    files, _, _ = formats.image_folder(str(root))
    data = open(files[5], "rb").read()
    open(files[5], "wb").write(data[: len(data) // 3])
    open(files[17], "w").write("this is not a JPEG\n")
    (root / "9999_empty").mkdir()
    return root, files[5], files[17], root / "9999_empty"


@pytest.mark.parametrize("split", ["train", "val"])
def test_gray_cmyk_png_and_tiny_images_work(odd_dir, split):
    loader = make_loader(dataset="imagefolder", root=odd_dir, split=split, batch_size=4, device="cpu", crop_size=224)
    images, targets = collect(loader)
    assert images.shape == (4, 3, 224, 224) and torch.isfinite(images).all()
    assert images.std(dim=(1, 2, 3)).min() > 0.1  # each is a real picture, not a constant
    if split == "val":
        files, _, _ = formats.image_folder(str(odd_dir))  # cmyk, gray, png, tiny
        # As torchvision sees them; PIL writes Adobe-inverted CMYK that libjpeg and PIL read back alike.
        assert_matches_torchvision_val(images, files)
        # Gray decodes to three equal channels.
        gray = images[1] * torch.tensor([0.229, 0.224, 0.225])[:, None, None] + torch.tensor([0.485, 0.456, 0.406])[:, None, None]
        assert (gray[0] - gray[1]).abs().max() < 1e-3 and (gray[1] - gray[2]).abs().max() < 1e-3


def test_truncated_jpeg_error_names_the_file(broken_dir):
    root, truncated, text, empty = broken_dir
    shutil.rmtree(empty)
    open(text, "wb").write(open(formats.image_folder(str(root))[0][0], "rb").read())  # repair the text file
    loader = make_loader(dataset="imagefolder", root=root, split="val", batch_size=4, device="cpu")
    with pytest.raises(RuntimeError, match=rf"{truncated}: is a truncated JPEG \(no end-of-image marker\)"):
        collect(loader)


def test_text_file_named_jpeg_error_names_the_file(broken_dir):
    root, truncated, text, empty = broken_dir
    shutil.rmtree(empty)
    open(truncated, "wb").write(open(formats.image_folder(str(root))[0][0], "rb").read())  # repair the truncated file
    loader = make_loader(dataset="imagefolder", root=root, split="train", batch_size=4, device="cpu")
    with pytest.raises(RuntimeError, match=rf"{text}: is not an image"):
        collect(loader)


@pytest.mark.parametrize("content", [b"", b"this is not a JPEG\n"], ids=["empty", "text"])
def test_an_empty_or_text_file_anywhere_in_a_batch_is_named_and_never_a_crash(tmp_path, imagenet_dir, content):
    # DALI 2.4's CPU decoder dies by SIGSEGV on such a buffer unless it comes last in its batch.
    root = tmp_path / "train"
    shutil.copytree(imagenet_dir / "train", root)
    files = formats.image_folder(str(root))[0]
    open(files[9], "wb").write(content)
    code = ("from dali_mixup import make_loader\n"
            f"for _ in make_loader(dataset='imagefolder', root={str(root)!r}, batch_size=24, device='cpu', crop_size=32):\n"
            "    pass\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, f"exit status {result.returncode}: {result.stderr[-1500:]}"
    assert f"1 file(s) are broken:\n  {files[9]}: is " in result.stderr
    assert "Critical error in pipeline" not in result.stderr  # named before DALI was handed it


def test_an_image_that_sniffs_clean_but_does_not_decode_is_named(tmp_path, imagenet_dir):
    root = tmp_path / "train"
    shutil.copytree(imagenet_dir / "train", root)
    files, _, _ = formats.image_folder(str(root))
    png = bytearray(_jpeg(np.asarray(photo("coffee")), "RGB", format="PNG"))
    png[len(png) // 2 : len(png) // 2 + 2000] = bytes(2000)  # a PNG's signature and a broken body
    open(files[7], "wb").write(png)
    assert formats.sniff_image(files[7]) is None
    loader = make_loader(dataset="imagefolder", root=root, batch_size=4, device="cpu", crop_size=32)
    with pytest.raises(RuntimeError, match=rf"1 file\(s\) are broken:\n  {files[7]}: does not decode"):
        collect(loader)


def test_text_file_in_a_shard_error_names_the_member(tmp_path, imagenet_dir):
    root = tmp_path / "train"
    shutil.copytree(imagenet_dir / "train", root)
    files, _, _ = formats.image_folder(str(root))
    open(files[3], "w").write("this is not a JPEG\n")
    write_shards(str(root), str(tmp_path / "shards"), per_shard=10)
    loader = make_loader(dataset="webdataset", root=tmp_path / "shards", split="val", batch_size=4, device="cpu")
    with pytest.raises(RuntimeError, match=r"shard-00000\d\.tar:00000003\.jpg: is not an image"):
        collect(loader)


def test_empty_class_folder_error_names_the_folder(broken_dir):
    root, _, _, empty = broken_dir
    with pytest.raises(FileNotFoundError, match=f"{empty}: empty class folder"):
        make_loader(dataset="imagefolder", root=root, device="cpu")


def test_file_list_label_too_large_names_file_and_line(tmp_path, imagenet_dir):
    files, labels, _ = formats.image_folder(str(imagenet_dir / "train"))
    lines = [f"{f} {y}" for f, y in zip(files, labels)]
    lines[6] = f"{files[6]} 4"
    (tmp_path / "list.txt").write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"list.txt:7: label 4 is outside \[0, 4\)"):
        make_loader(dataset="filelist", root="/", file_list=tmp_path / "list.txt", num_classes=4, device="cpu")


def test_shard_label_too_large_names_the_member(tmp_path, imagenet_dir):
    write_shards(str(imagenet_dir / "train"), str(tmp_path), per_shard=100)
    with pytest.raises(ValueError, match=r"shard-000000.tar:\d+\.cls: label 3 is outside \[0, 3\)"):
        make_loader(dataset="webdataset", root=tmp_path, num_classes=3, device="cpu")


def _check_data(*args):
    result = subprocess.run([sys.executable, "-m", "dali_mixup.check_data", *map(str, args)], capture_output=True, text=True)
    return result.returncode, result.stdout.splitlines()


def test_check_data_lists_exactly_the_bad_files(broken_dir, odd_dir):
    root, truncated, text, empty = broken_dir
    status, lines = _check_data(root)
    assert status == 1
    assert sorted(line.split(":")[0] for line in lines) == sorted([truncated, text, str(empty)])
    assert any("truncated" in line for line in lines) and any("not an image" in line for line in lines)
    assert _check_data(odd_dir) == (0, [])


def test_check_data_lists_bad_labels_and_bad_shard_members(tmp_path, imagenet_dir):
    files, labels, _ = formats.image_folder(str(imagenet_dir / "train"))
    lines = [f"{f} {y}" for f, y in zip(files, labels)]
    lines[2] = f"{files[2]} 7"
    (tmp_path / "list.txt").write_text("\n".join(lines))
    status, out = _check_data("/", "--file-list", tmp_path / "list.txt", "--num-classes", 4)
    assert status == 1 and len(out) == 1 and out[0].startswith(f"{tmp_path / 'list.txt'}:3: label 7")

    root = tmp_path / "train"
    shutil.copytree(imagenet_dir / "train", root)
    open(formats.image_folder(str(root))[0][9], "w").write("text")
    write_shards(str(root), str(tmp_path / "shards"), per_shard=10)
    status, out = _check_data(tmp_path / "shards")
    assert status == 1 and len(out) == 1 and ":00000009.jpg: is not an image" in out[0]

    label_file = tmp_path / "shards" / "shard-000002.labels"
    header, *labels = label_file.read_text().splitlines()
    label_file.write_text("\n".join([header, *labels[::-1]]) + "\n")
    status, out = _check_data(tmp_path / "shards")
    assert status == 1 and len(out) == 2
    assert out[0].startswith(f"{label_file}: disagrees with the .cls members") and "is not an image" in out[1]


def test_check_data_names_every_kind_of_broken_file_and_never_dies_by_a_signal(tmp_path, imagenet_dir):
    # Before it decoded in a child process, check_data died by SIGSEGV on such a folder in 6-8 runs of 10.
    root = tmp_path / "bad"
    shutil.copytree(imagenet_dir / "val", root)
    files = formats.image_folder(str(root))[0]
    data = open(files[0], "rb").read()
    broken = {files[1]: data[: len(data) // 2], files[2]: b"", files[3]: b"just some text\n",
              files[4]: _jpeg(np.asarray(photo("coffee")), "RGB", format="GIF")}
    for path, content in broken.items():
        open(path, "wb").write(content)
    kinds = {files[1]: "is a truncated JPEG", files[2]: "is empty", files[3]: "is not an image",
             files[4]: "is a GIF image, a format DALI's decoders do not read (unsupported)"}
    for _ in range(20):
        status, lines = _check_data(root)
        assert status == 1, f"exit status {status}: " + "; ".join(lines)
        assert len(lines) == 4 and all(any(line.startswith(f"{path}: {kind}") for line in lines)
                                       for path, kind in kinds.items()), lines


def test_a_file_that_kills_the_decoder_is_named_and_the_check_goes_on(imagenet_dir, tmp_path):
    from crashing_decoder import main as crashing
    from dali_mixup import check_data

    files = [*formats.image_folder(str(imagenet_dir / "train"))[0]] * 3  # 72 files, batches of 16
    (tmp_path / "crash").mkdir()
    for k in (5, 40, 41):  # two crashes in one batch, one in another
        files[k] = str(shutil.copy(files[k], tmp_path / "crash" / f"{k}.JPEG"))
    files[60] = str(tmp_path / "text.JPEG")  # and a plain bad file after them
    open(files[60], "w").write("text")
    checker = check_data._Checker(files, files, threads=1, batch_size=16, audio=False, target=crashing)

    class Progress:
        done = 0

        def update(self, n):
            self.done += n

    progress = Progress()
    bad = checker.run(progress)
    assert sorted(bad) == sorted([(files[k], "crashes the decoder (signal SIGSEGV)") for k in (5, 40, 41)]
                                 + [(files[60], "is not an image (unknown signature)")])
    assert progress.done == len(files)


@pytest.mark.parametrize("folder", ["cifar-10-batches-bin", "cifar-10-batches-py"])
def test_check_data_checks_cifar_in_either_format(tmp_path, cifar_dir, folder):
    root = tmp_path / "root"
    shutil.copytree(cifar_dir / folder, root / folder)
    assert _check_data(root) == (0, [])
    test_batch = root / folder / ("test_batch.bin" if folder.endswith("bin") else "test_batch")
    if folder.endswith("bin"):
        data = bytearray(test_batch.read_bytes())
        data[3 * 3073] = 10  # the label byte of record 3: a class CIFAR-10 does not have
        test_batch.write_bytes(bytes(data))
    else:
        from dali_mixup import cifar

        batch = cifar.load_pickle(str(test_batch))
        batch[b"labels"][3] = 10
        test_batch.write_bytes(pickle.dumps(batch, protocol=2))
    status, lines = _check_data(root)
    assert status == 1 and lines == [f"{test_batch}: record 3 has label 10, outside [0, 10)"], lines
