"""``make_loader``: a DALI pipeline as an iterable of torch batches, sharded for torchrun."""

import numbers
import os

import numpy as np
from nvidia.dali.plugin.base_iterator import LastBatchPolicy
from nvidia.dali.plugin.pytorch import DALIGenericIterator

from dali_mixup import cifar, formats
from pipelines import cifar as cifar_pipelines
from pipelines import imagenet

DATASETS = ("imagefolder", "filelist", "webdataset", "cifar10", "cifar100")


class DaliLoader:
    """Iterates ``(images, targets)`` torch tensors on the pipeline's device; ``len()`` is batches per epoch.

    Train targets are float32 soft labels ``[B, num_classes]``; val targets are int64 class ids
    ``[B]``. With ``channels_last`` the images are NCHW tensors in channels-last memory format.
    """

    def __init__(self, iterator, num_batches, num_classes, channels_last, training, explain_error):
        self._iterator = iterator
        self._num_batches = num_batches
        self.num_classes = num_classes
        self._channels_last = channels_last
        self._training = training
        self._explain_error = explain_error

    def __len__(self):
        return self._num_batches

    def __iter__(self):
        batches = iter(self._iterator)
        while True:
            try:
                batch = next(batches)[0]
            except StopIteration:
                return
            except Exception as err:  # DALI raises plain errors; name the files behind them
                self._explain_error(err)
                raise
            images, targets = batch["images"], batch["targets"]
            if self._channels_last:
                images = images.permute(0, 3, 1, 2)  # a view: NCHW shape, NHWC memory
            yield images, (targets if self._training else targets.view(-1).long())


def _env_int(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an int, got {value!r}") from None


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _files_source(dataset, root, file_list, num_classes):
    if dataset == "imagefolder":
        files, labels, classes = formats.image_folder(root)
        if num_classes is not None and num_classes != len(classes):
            raise ValueError(f"num_classes={num_classes}, but {root!r} holds {len(classes)} class folders")
        return files, labels, len(classes)
    return formats.file_list(file_list, root, num_classes)


def _bad_files_error(err, suspects):
    """Re-raise a decoding error with the files that look broken, or do nothing if none does."""
    bad = [f"{name}: {wrong}" for name, wrong in suspects() if wrong]
    if bad:
        raise RuntimeError(
            f"decoding failed; {len(bad)} file(s) look broken:\n  " + "\n  ".join(bad[:20])
            + "\nRun `python -m dali_mixup.check_data` on the dataset for a full check."
        ) from err


def _sniff_files(files):
    return ((file, formats.sniff_image(file)) for file in files)


def _sniff_shards(samples):
    for shard, name, offset, size, _ in samples:
        with open(shard, "rb") as tar:
            tar.seek(offset)
            data = tar.read(size)
        yield f"{shard}:{name}", formats.sniff_bytes(data[:16], data[-64:])


def make_loader(
    *,
    dataset,
    root,
    split="train",
    batch_size=256,
    device="gpu",
    file_list=None,
    num_classes=None,
    mixup_alpha=0.0,
    per_sample=False,
    label_smoothing=0.0,
    crop_size=224,
    min_crop_area=0.08,
    hflip=0.5,
    channels_last=False,
    num_threads=4,
    seed=0,
    rank=None,
    world_size=None,
    local_rank=None,
):
    """Build the DALI pipeline for a dataset and wrap it as a torch iterable (:class:`DaliLoader`).

    Args:
        dataset: ``"imagefolder"`` (``root/class_x/*.JPEG``, classes sorted as torchvision sorts
            them), ``"filelist"``, ``"webdataset"`` (tar shards with ``.jpg`` and ASCII ``.cls``),
            ``"cifar10"`` or ``"cifar100"`` (binary or python version).
        root: the ImageFolder, the folder the file list's paths are relative to, the folder of
            shards, or the folder that holds the CIFAR batches folder.
        split: ``"train"`` (augmentation, mixup, reshuffled every epoch) or ``"val"`` (resize,
            center crop, every sample once across ranks).
        batch_size: samples per batch on this rank.
        device: ``"gpu"`` (decode and augment on the GPU ``local_rank``) or ``"cpu"``.
        file_list: for ``"filelist"``: a file with one ``relative/path label`` per line.
        num_classes: inferred as ``max(label) + 1`` for file lists and shards when None; must
            agree with the data otherwise.
        mixup_alpha: Beta(α, α) for mixup on the train split; 0 is ERM (one-hot targets).
        per_sample: one λ per sample instead of one per batch.
        label_smoothing: smoothing of the one-hot targets, in ``[0, 1)``.
        crop_size: side of the output images (ImageNet-style data; CIFAR is always 32).
        min_crop_area: train crops cover a random fraction in ``[min_crop_area, 1]`` of the image
            (ImageNet-style data; torchvision's and timm's ``scale`` lower bound).
        hflip: probability of a horizontal flip in training.
        channels_last: NHWC memory (the images still index as NCHW).
        num_threads: DALI CPU worker threads.
        seed: the file-order seed (the same on every rank); augmentation uses ``seed + rank``.
        rank: this process's rank; ``$RANK`` (torchrun) or 0 when None.
        world_size: the number of ranks; ``$WORLD_SIZE`` or 1 when None.
        local_rank: the GPU to use; ``$LOCAL_RANK`` or 0 when None.

    Returns:
        A :class:`DaliLoader`.

    Raises:
        ValueError, TypeError: for a bad option, naming it; FileNotFoundError for missing data;
            ValueError naming the file and line for a label outside ``[0, num_classes)``.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if device not in ("gpu", "cpu"):
        raise ValueError(f"device must be 'gpu' or 'cpu', got {device!r}")
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path, got {type(root).__name__} ({root!r})")
    root = os.fspath(root)
    if not os.path.exists(root):
        raise FileNotFoundError(f"root {root!r} does not exist")
    if (file_list is None) == (dataset == "filelist"):
        raise ValueError(f"file_list is needed with dataset='filelist' and only then; got {file_list!r}")
    for name, value, minimum in (("batch_size", batch_size, 1), ("crop_size", crop_size, 1), ("num_threads", num_threads, 1)):
        _check_int(name, value, minimum)
    if num_classes is not None:
        _check_int("num_classes", num_classes, 1)
    if isinstance(mixup_alpha, bool) or not isinstance(mixup_alpha, numbers.Real) or not mixup_alpha >= 0:
        raise ValueError(f"mixup_alpha must be a number >= 0 (0 turns mixup off), got {mixup_alpha!r}")
    for name, value, low in (("min_crop_area", min_crop_area, 1e-6), ("hflip", hflip, 0.0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= 1:
            raise ValueError(f"{name} must be a number in [{low:g}, 1], got {value!r}")
    if split == "val" and (mixup_alpha or per_sample or label_smoothing):
        raise ValueError("mixup_alpha, per_sample and label_smoothing apply to split='train' only")
    rank = _env_int("RANK", 0) if rank is None else rank
    world_size = _env_int("WORLD_SIZE", 1) if world_size is None else world_size
    local_rank = _env_int("LOCAL_RANK", 0) if local_rank is None else local_rank
    _check_int("world_size", world_size, 1)
    _check_int("rank", rank, 0)
    _check_int("local_rank", local_rank, 0)
    if rank >= world_size:
        raise ValueError(f"rank must be < world_size ({world_size}), got {rank}")
    if device == "gpu":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("device='gpu' needs CUDA, which torch does not see; use device='cpu'")

    training = split == "train"
    pipe_args = {
        "batch_size": batch_size,
        "num_threads": num_threads,
        "device_id": local_rank if device == "gpu" else None,
        "seed": seed + rank,
    }
    mixup_args = {"mixup_alpha": mixup_alpha, "per_sample": per_sample, "label_smoothing": label_smoothing}

    if dataset in cifar.NUM_CLASSES:
        if num_classes is not None and num_classes != cifar.NUM_CLASSES[dataset]:
            raise ValueError(f"num_classes={num_classes} does not match {dataset} ({cifar.NUM_CLASSES[dataset]})")
        num_classes = cifar.NUM_CLASSES[dataset]
        images, labels = cifar.load_cifar(root, dataset, split)
        source = cifar_pipelines.CifarSource(
            images, labels, batch_size=batch_size, shard_id=rank, num_shards=world_size, training=training,
            seed=seed, device=device,
        )
        if training:
            pipe = cifar_pipelines.cifar_train_pipeline(
                source, channels_last=channels_last, hflip=hflip, num_classes=num_classes, **mixup_args, **pipe_args
            )
        else:
            pipe = cifar_pipelines.cifar_val_pipeline(source, channels_last=channels_last, **pipe_args)
        iterator = DALIGenericIterator(
            pipe, ["images", "targets"], last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=True,
            prepare_first_batch=False,
        )
        return DaliLoader(iterator, len(source), num_classes, channels_last, training, lambda err: None)

    if dataset == "webdataset":
        paths, indexes = formats.shards(root)
        samples, num_classes, problems = formats.scan_shards(paths, indexes, num_classes)
        formats._raise_problems(root, problems)
        source = imagenet.Shards(paths, indexes)
        suspects = lambda: _sniff_shards(samples)  # noqa: E731
    else:
        files, labels, num_classes = _files_source(dataset, root, file_list, num_classes)
        if training:
            # The reader reshuffles every epoch with its own fixed seed; this makes the order depend on ours.
            order = np.random.default_rng(seed).permutation(len(files))
            files, labels = [files[k] for k in order], [labels[k] for k in order]
        source = imagenet.Files(files, labels)
        suspects = lambda: _sniff_files(files)  # noqa: E731

    shard_args = {"shard_id": rank, "num_shards": world_size, "device": device, "crop_size": crop_size}
    if training:
        pipe = imagenet.imagenet_train_pipeline(
            source, **shard_args, channels_last=channels_last, min_crop_area=min_crop_area, hflip=hflip,
            num_classes=num_classes, **mixup_args, **pipe_args
        )
    else:
        pipe = imagenet.imagenet_val_pipeline(source, **shard_args, channels_last=channels_last, **pipe_args)
    # Train drops each rank's last partial batch, so every rank takes the same number of steps;
    # val pads the shards (pad_last_batch) and the iterator drops the padding.
    iterator = DALIGenericIterator(
        pipe,
        ["images", "targets"],
        reader_name=imagenet.READER,
        last_batch_policy=LastBatchPolicy.DROP if training else LastBatchPolicy.PARTIAL,
        auto_reset=True,
        prepare_first_batch=False,  # run nothing until iterated, so decoding errors reach DaliLoader.__iter__
    )
    return DaliLoader(
        iterator, len(iterator), num_classes, channels_last, training, lambda err: _bad_files_error(err, suspects)
    )
