"""make_loader over every source: shapes, dtypes, layouts, ranges, seeds, and the val reference."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def

from conftest import DEVICES
from dali_mixup import build, formats, make_loader
from dali_mixup.cifar import load_cifar
from dali_mixup.datasets import write_shards
from helpers import MEAN, STD, assert_matches_torchvision_val, collect
from pipelines.sources import parse_ascii_labels

CROP = 64


@pytest.fixture(scope="module")
def sources(imagenet_dir, cifar_dir, tmp_path_factory):
    """``dataset -> (train kwargs, val kwargs, train size, val size)`` for every source."""
    shards = tmp_path_factory.mktemp("shards")
    write_shards(str(imagenet_dir / "train"), str(shards / "train"), per_shard=10)
    write_shards(str(imagenet_dir / "val"), str(shards / "val"), per_shard=10)
    lists = {}
    for split in ("train", "val"):
        files, labels, _ = formats.image_folder(str(imagenet_dir / split))
        lists[split] = shards / f"{split}.txt"
        lists[split].write_text("".join(f"{split}/{f.split('/')[-2]}/{f.split('/')[-1]} {y}\n" for f, y in zip(files, labels)))
    image_size = {"crop_size": CROP}
    return {
        "imagefolder": [dict(root=imagenet_dir / s, **image_size) for s in ("train", "val")] + [24, 8, 4],
        "filelist": [dict(root=imagenet_dir, file_list=lists[s], **image_size) for s in ("train", "val")] + [24, 8, 4],
        "webdataset": [dict(root=shards / s, **image_size) for s in ("train", "val")] + [24, 8, 4],
        "cifar10": [dict(root=cifar_dir), dict(root=cifar_dir), 100, 20, 10],
        "cifar100": [dict(root=cifar_dir), dict(root=cifar_dir), 100, 100, 100],
    }


def _loader(sources, dataset, split, device="cpu", **kwargs):
    train_args, val_args, *_ = sources[dataset]
    args = {**(train_args if split == "train" else val_args), **kwargs}
    return make_loader(dataset=dataset, split=split, device=device, num_threads=2, world_size=1, rank=0, **args)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dataset", ["imagefolder", "filelist", "webdataset", "cifar10", "cifar100"])
def test_train_batches(sources, dataset, device):
    *_, train_size, _, num_classes = sources[dataset]
    loader = _loader(sources, dataset, "train", device, batch_size=8, mixup_alpha=1.0)
    images, targets = collect(loader)
    size = CROP if "cifar" not in dataset else 32
    assert len(loader) == train_size // 8 and images.shape == (train_size // 8 * 8, 3, size, size)
    assert images.dtype == torch.float32  # as torchvision gives them; float16 on request (below)
    assert targets.dtype == torch.float32 and targets.shape == (len(images), num_classes)
    torch.testing.assert_close(targets.sum(1), torch.ones(len(images)), atol=1e-5, rtol=0)
    # Normalized pixels of a real photo: roughly zero-centred, within the normalized 0..255 range.
    low, high = (0 - MEAN.max()) / STD.min(), (255 - MEAN.min()) / STD.min()
    assert low <= images.min() < -1 and 1 < images.max() <= high
    assert abs(images.float().mean()) < 1
    # With α = 1, λ is uniform: a target row is nearly one-hot (max > 0.99) only when λ is within
    # 0.01 of 0 or 1, or the partner has the same class; at least half the rows are soft.
    assert (targets.max(1).values < 0.99).float().mean() >= 0.5, targets.max(1).values


@pytest.mark.parametrize("split", ["train", "val"])
@pytest.mark.parametrize("dataset", ["imagefolder", "webdataset", "cifar10"])
def test_the_pipelines_resize_and_mix_with_the_fused_operator(sources, dataset, split, tmp_path):
    """Train crops are resized, flipped, normalized and mixed in the fused operator; val's resize, center crop and
    normalization are its one step too, but for CIFAR (pad_crop), whose images need no resize."""
    assert "cpu" in build.fused_backends(), "the fused operator did not build on this machine"
    loader = _loader(sources, dataset, split, batch_size=4, **({"mixup_alpha": 0.2} if split == "train" else {}))
    loader.pipeline.save_graph_to_dot_file(str(tmp_path / "graph.dot"))
    graph = (tmp_path / "graph.dot").read_text()
    assert ("MixupNormalize" in graph) == (split == "train" or dataset != "cifar10")
    assert "__Resize_" not in graph  # no separate resize pass


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dataset", ["imagefolder", "filelist", "webdataset", "cifar10", "cifar100"])
def test_val_batches_count_every_sample_once(sources, dataset, device):
    *_, val_size, num_classes = sources[dataset]
    loader = _loader(sources, dataset, "val", device, batch_size=3)
    images, labels = collect(loader)
    assert len(loader) == -(-val_size // 3) and len(images) == val_size
    assert labels.dtype == torch.int64 and labels.shape == (val_size,)
    assert 0 <= labels.min() and labels.max() < num_classes
    if dataset in ("imagefolder", "filelist"):
        assert labels.tolist() == sorted(labels.tolist())  # val reads in order


@pytest.mark.gpu
@pytest.mark.parametrize("split", ["train", "val"])
def test_gpu_images_are_float16_on_request(sources, split):
    loader = _loader(sources, "imagefolder", split, "gpu", batch_size=4, dtype=torch.float16)
    images, _ = next(iter(loader))
    assert images.dtype == torch.float16 and images.is_cuda


def test_float16_on_the_cpu_is_an_error(sources):
    with pytest.raises(ValueError, match="dtype=torch.float16 needs device='gpu'"):
        _loader(sources, "imagefolder", "train", "cpu", batch_size=4, dtype=torch.float16)
    with pytest.raises(ValueError, match="dtype must be torch.float32 or torch.float16, got torch.bfloat16"):
        _loader(sources, "imagefolder", "train", "cpu", batch_size=4, dtype=torch.bfloat16)


def test_webdataset_labels_match_the_image_folder(sources):
    _, by_folder = collect(_loader(sources, "imagefolder", "val", batch_size=4))
    _, by_shards = collect(_loader(sources, "webdataset", "val", batch_size=4))
    assert sorted(by_shards.tolist()) == sorted(by_folder.tolist())


def test_ascii_labels_are_parsed_in_the_graph():
    values = [0, 7, 10, 42, 999, 1000, 65535, 12345678]

    @pipeline_def(batch_size=len(values), num_threads=1, device_id=None)
    def parse():
        cls = fn.external_source(source=lambda: [np.frombuffer(str(v).encode(), np.uint8) for v in values], batch=True)
        return parse_ascii_labels(cls)

    pipe = parse()
    pipe.build()
    assert pipe.run()[0].as_array().tolist() == values


def test_cifar_val_images_are_the_bytes_on_disk(sources, cifar_dir):
    images, labels = collect(_loader(sources, "cifar10", "val", batch_size=7))
    raw, raw_labels = load_cifar(str(cifar_dir), "cifar10", "val")
    expected = (torch.from_numpy(raw).float() - torch.from_numpy(np.array([0.4914, 0.4822, 0.4465]) * 255).float())
    expected = (expected / torch.from_numpy(np.array([0.2470, 0.2435, 0.2616]) * 255).float()).permute(0, 3, 1, 2)
    torch.testing.assert_close(images, expected, atol=1e-4, rtol=0)
    assert labels.tolist() == raw_labels.tolist()


def test_cifar_train_is_a_padded_random_crop_with_flips(sources, cifar_dir):
    images, targets = collect(_loader(sources, "cifar10", "train", batch_size=10, channels_last=True))
    raw, raw_labels = load_cifar(str(cifar_dir), "cifar10", "train")
    mean = np.array([0.4914, 0.4822, 0.4465], np.float32) * 255
    std = np.array([0.2470, 0.2435, 0.2616], np.float32) * 255
    padded = (np.pad(raw.astype(np.float32), ((0, 0), (4, 4), (4, 4), (0, 0))) - mean) / std
    offsets, flips = set(), set()
    for image, target in zip(images.permute(0, 2, 3, 1).numpy(), targets.numpy()):
        found = []
        for k in np.flatnonzero(raw_labels == target):  # class ids: nothing mixes
            for y in range(9):
                for x in range(9):
                    window = padded[k, y : y + 32, x : x + 32]
                    found += [(y, x, flip) for flip in (False, True)
                              if np.abs((window[:, ::-1] if flip else window) - image).max() < 1e-4]
        assert found, "a train image is not a 32x32 window of its padded source"
        offsets.add(found[0][:2])
        flips.add(found[0][2])
    assert len(offsets) > 20 and flips == {False, True}


def test_channels_last_gives_the_same_values_in_channels_last_memory(sources):
    nchw, _ = collect(_loader(sources, "imagefolder", "val", batch_size=4))
    loader = _loader(sources, "imagefolder", "val", batch_size=4, channels_last=True)
    images, _ = next(iter(loader))
    assert images.shape == (4, 3, CROP, CROP) and images.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(images, nchw[:4], atol=0, rtol=0)


def test_a_fixed_seed_reproduces_a_batch_and_epochs_are_reshuffled(sources):
    def first_epochs(seed):
        loader = _loader(sources, "imagefolder", "train", batch_size=4, seed=seed)
        return [collect(loader) for _ in range(2)]

    (images_a, targets_a), (images_a2, targets_a2) = first_epochs(3)
    (images_b, targets_b), _ = first_epochs(3)
    (images_c, _), _ = first_epochs(4)
    torch.testing.assert_close(images_a, images_b, atol=0, rtol=0)
    torch.testing.assert_close(targets_a, targets_b, atol=0, rtol=0)
    assert not torch.equal(images_a, images_c)
    assert not torch.equal(targets_a, targets_a2)  # a new order in epoch 2 (class ids: nothing mixes)


def test_val_matches_torchvision_on_real_photos(imagenet_dir):
    files, _, _ = formats.image_folder(str(imagenet_dir / "val"))
    loader = make_loader(dataset="imagefolder", root=imagenet_dir / "val", split="val", batch_size=8, device="cpu")
    images, _ = collect(loader)
    assert images.shape == (len(files), 3, 224, 224)
    assert_matches_torchvision_val(images, files)


@pytest.mark.gpu
def test_gpu_val_is_close_to_cpu_val(imagenet_dir):
    kwargs = dict(dataset="imagefolder", root=imagenet_dir / "val", split="val", batch_size=8)
    cpu, _ = collect(make_loader(device="cpu", **kwargs))
    gpu, _ = collect(make_loader(device="gpu", **kwargs))
    assert gpu.shape == cpu.shape
    assert (gpu.float() - cpu).abs().mean() < 0.05


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(dataset="imagenet"), ValueError, "dataset must be one of"),
        (dict(split="test"), ValueError, r"split must be one of \('train', 'val'\) for dataset='imagefolder', got 'test'"),
        (dict(augment="pad_crop", min_crop_area=0.5, batch_size=4), ValueError,
         "min_crop_area apply to augment='random_resized_crop', not 'pad_crop'"),
        (dict(augment="pad_crop", split="val", crop_pct=0.95), ValueError,
         "crop_pct apply to augment='random_resized_crop', not 'pad_crop'"),
        (dict(device="tpu"), ValueError, "device must be 'gpu', 'cuda', 'cuda:N', 'cpu' or a torch.device of those, got 'tpu'"),
        (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
        (dict(batch_size=2.5), TypeError, "batch_size must be an int"),
        (dict(crop_size=0), ValueError, "crop_size must be >= 1"),
        (dict(mixup_alpha=-1), ValueError, "mixup_alpha must be a number >= 0"),
        (dict(label_smoothing=1.5), ValueError, r"label_smoothing must be in \[0, 1\)"),
        (dict(split="val", mixup_alpha=0.2), ValueError, "split='train' only"),
        (dict(mixup_alpha=0.2, pairs=True, batch_size=5), ValueError, "batch_size must be even, got 5"),
        (dict(mixup_alpha=0.2, pairs=True, per_sample=True), ValueError, "two modes: choose one"),
        (dict(rank=2, world_size=2), ValueError, r"rank must be < world_size \(2\)"),
        (dict(file_list="list.txt"), ValueError, "file_list is needed with dataset='filelist'"),
        (dict(root="/nonexistent"), FileNotFoundError, "/nonexistent"),
        (dict(num_classes=5), ValueError, "num_classes=5, but .* holds 4 class folders"),
    ],
)
def test_bad_options_raise_naming_the_option(imagenet_dir, kwargs, error, message):
    args = {"dataset": "imagefolder", "root": imagenet_dir / "train", "device": "cpu", **kwargs}
    with pytest.raises(error, match=message):
        make_loader(**args)


def test_gpu_without_cuda_is_a_clear_error(imagenet_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="device='gpu' needs CUDA"):
        make_loader(dataset="imagefolder", root=imagenet_dir / "train", device="gpu")


def test_rank_and_world_size_come_from_torchrun_environment(imagenet_dir, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    loader = make_loader(dataset="imagefolder", root=imagenet_dir / "val", split="val", batch_size=1, device="cpu")
    assert len(loader) == 2  # 8 samples over 4 ranks
    monkeypatch.setenv("WORLD_SIZE", "four")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an int, got 'four'"):
        make_loader(dataset="imagefolder", root=imagenet_dir / "val", split="val", device="cpu")


def test_a_world_of_several_ranks_without_a_rank_is_an_error(imagenet_dir, monkeypatch):
    # PyTorch Lightning's launcher sets WORLD_SIZE and LOCAL_RANK but not RANK.
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="world_size is 2 .* no rank was given: RANK is not set and no "
                                         "torch.distributed process group is initialized"):
        make_loader(dataset="imagefolder", root=imagenet_dir / "val", split="val", device="cpu")
    loader = make_loader(dataset="imagefolder", root=imagenet_dir / "val", split="val", device="cpu", rank=1,
                         batch_size=2)
    assert len(loader) == 2  # 8 samples over 2 ranks


def test_the_rank_comes_from_the_process_group_first(imagenet_dir, monkeypatch, tmp_path):
    import torch.distributed as dist

    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        loader = make_loader(dataset="imagefolder", root=imagenet_dir / "val", split="val", device="cpu", batch_size=2)
        assert len(loader) == 4 and len(list(loader.sampler)) == 8  # the group's world of one, not the environment's
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("device", ["cuda", "cuda:1", torch.device("cuda", 0)])
def test_torch_s_device_names_are_taken(imagenet_dir, device):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="device='gpu' needs CUDA"):
        make_loader(dataset="imagefolder", root=imagenet_dir / "val", split="val", device=device)


def test_a_cpu_torch_device_is_the_cpu(imagenet_dir):
    loader = make_loader(dataset="imagefolder", root=imagenet_dir / "val", split="val", device=torch.device("cpu"),
                         batch_size=4, crop_size=32)
    images, labels = next(iter(loader))
    assert images.device.type == "cpu" and labels.dtype == torch.int64


def test_mixup_enabled_off_stops_the_mixing_and_on_needs_mixing(imagenet_dir):
    kwargs = dict(dataset="imagefolder", root=imagenet_dir / "train", device="cpu", batch_size=4, crop_size=32)
    loader = make_loader(**kwargs, mixup_alpha=1.0)
    assert loader.mixup_enabled
    assert (torch.cat([t for _, t in loader]).max(1).values < 0.999).any()
    loader.mixup_enabled = False
    targets = torch.cat([t for _, t in loader])
    assert targets.shape == (24, 4) and torch.equal(targets.max(1).values, torch.ones(24))  # one-hot rows, soft
    plain = make_loader(**kwargs)
    plain.mixup_enabled = False  # nothing to stop
    with pytest.raises(ValueError, match="mixup_enabled=True: this loader was made without mixing"):
        plain.mixup_enabled = True


def test_a_cpu_run_prints_no_cuda_warning(imagenet_dir):
    assert "cpu" in build.fused_backends()  # built (the build itself may warn; the runs after it must not)
    code = ("from dali_mixup import make_loader; loader = make_loader(dataset='imagefolder', root=%r, device='cpu', "
            "batch_size=4, crop_size=32, mixup_alpha=0.2); next(iter(loader))" % str(imagenet_dir / "train"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "CUDA" not in result.stderr, result.stderr


def test_zero_threads_is_one_as_a_dataloader_s_zero_workers(imagenet_dir):
    loader = make_loader(dataset="imagefolder", root=imagenet_dir / "val", split="val", device="cpu", batch_size=4,
                         crop_size=32, num_threads=0)
    assert loader.pipeline.num_threads == 1 and len(next(iter(loader))[0]) == 4
