"""``make_loader``: a DALI pipeline as an iterable of torch batches, sharded for torchrun."""

import dataclasses
import functools
import numbers
import os

from nvidia.dali import types
from nvidia.dali.plugin.base_iterator import LastBatchPolicy
from nvidia.dali.plugin.pytorch import DALIGenericIterator

from dali_mixup.mixup import Mixing
from pipelines import augment as augment_lib
from pipelines import images as image_pipelines
from pipelines import speech as speech_pipelines
from pipelines.sources import SOURCES

DATASETS = tuple(SOURCES)
AUGMENTS = tuple(augment_lib.AUGMENTS)
AutoAugment = augment_lib.AutoAugment  # the trainer checks --auto-augment with it


class DaliLoader:
    """Iterates ``(images, targets)`` torch tensors on the pipeline's device; ``len()`` is batches per epoch.

    Train targets are float32 soft labels ``[B, num_classes]``; val targets are int64 class ids
    ``[B]``. With ``channels_last`` the images are NCHW tensors in channels-last memory format.

    As with a ``DataLoader``, every ``iter(loader)`` is a full, fresh epoch of ``len(loader)``
    batches. DALI's readers cannot rewind, so an epoch that was broken off (a ``break``, or a
    peek with ``next(iter(loader))``) is not finished: the next ``iter()`` builds the pipeline
    anew, with the next epoch's order. That costs a pipeline build instead of the rest of the
    epoch (see the README for the time), and an iterator from before it then raises.

    Args:
        build: ``build(generation)`` returns a new pipeline and a DALI iterator over it; generation
            ``k`` is the ``k``-th rebuild, and shifts the sample order and augmentation seeds.
        num_batches: batches per epoch on this rank.
        num_classes: classes in the data.
        channels_last: the pipeline's images are NHWC.
        training: targets are soft labels (train) or class ids (val).
        explain: ``explain(err)`` re-raises a pipeline error naming the files behind it.
    """

    def __init__(self, build, num_batches, num_classes, channels_last, training, explain):
        self._build = build
        self._generation = 0
        self._pipeline, self._iterator = build(0)
        self._in_epoch = False
        self._num_batches = num_batches
        self.num_classes = num_classes
        self._channels_last = channels_last
        self._training = training
        self._explain = explain

    def __len__(self):
        return self._num_batches

    @property
    def pipeline(self):
        """The DALI pipeline behind the current epoch, e.g. for ``loader.pipeline.save_graph_to_dot_file(path)``."""
        return self._pipeline

    def __iter__(self):
        return self._epoch()

    def _epoch(self):
        # A generator: this runs at the first next(), so an iter() that is never advanced costs nothing.
        if self._in_epoch:
            self._pipeline = self._iterator = None  # the old pipeline's memory is freed before the new one takes its own
            self._generation += 1
            self._pipeline, self._iterator = self._build(self._generation)
        self._in_epoch = True
        generation = self._generation
        while True:
            if generation != self._generation:
                raise RuntimeError("this iterator's epoch was broken off by a newer iter() of the loader; "
                                   "iterate the newer one")
            try:
                batch = next(self._iterator)[0]
            except StopIteration:
                self._in_epoch = False
                return
            except Exception as err:  # DALI raises plain errors; name the files behind them
                self._explain(err)
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


def _check_fraction(name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= 1:
        raise ValueError(f"{name} must be a number in [{low:g}, 1], got {value!r}")


def _source_class(dataset):
    source = SOURCES[dataset]
    return getattr(source, "func", source)  # (CIFAR's sources are partials of one class)


def _check_options(dataset, split, device, root, file_list, augment, adjust_orientation):
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    splits = _source_class(dataset).splits
    if split not in splits:
        raise ValueError(f"split must be one of {splits} for dataset={dataset!r}, got {split!r}")
    if device not in ("gpu", "cpu"):
        raise ValueError(f"device must be 'gpu' or 'cpu', got {device!r}")
    if augment is not None and augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS} (or None for the dataset's own), got {augment!r}")
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path, got {type(root).__name__} ({root!r})")
    if not os.path.exists(root):
        raise FileNotFoundError(f"root {os.fspath(root)!r} does not exist")
    if (file_list is None) == (dataset == "filelist"):
        raise ValueError(f"file_list is needed with dataset='filelist' and only then; got {file_list!r}")
    if not isinstance(adjust_orientation, bool):
        raise TypeError(f"adjust_orientation must be a bool, got {type(adjust_orientation).__name__}")


def _train_options(split, mixing_args, auto_augment, reprob, remode):
    """The train split's mixing (``Mixing``) and crop-policy options, checked; they apply to train only."""
    alpha = mixing_args["alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha >= 0:
        raise ValueError(f"mixup_alpha must be a number >= 0 (0 turns mixup off), got {alpha!r}")
    mixing = Mixing(**mixing_args)
    _check_fraction("reprob", reprob, 0.0)
    policies = [augment_lib.AutoAugment(auto_augment)] if auto_augment is not None else []
    if remode not in ("const", "pixel"):
        raise ValueError(f"remode must be 'const' or 'pixel', got {remode!r}")
    defaults = Mixing()
    if split != "train" and (mixing != dataclasses.replace(defaults, label_smoothing=mixing.label_smoothing)
                           or mixing.label_smoothing or policies or reprob):
        raise ValueError("mixup_alpha, per_sample, label_smoothing, the CutMix options, auto_augment and reprob "
                         "apply to split='train' only")
    return mixing, policies


# make_loader's options for images, at their defaults; an audio dataset takes none of them.
_IMAGE_OPTIONS = {"crop_size": None, "min_crop_area": 0.08, "hflip": 0.5, "augment": None, "adjust_orientation": False,
                  "channels_last": False, "auto_augment": None, "reprob": 0.0, "remode": "const", "crop_pct": 0.875}


def _check_audio_options(dataset, options):
    changed = [name for name, default in _IMAGE_OPTIONS.items() if options[name] != default]
    if changed:
        raise ValueError(f"{', '.join(changed)} apply to image datasets, not dataset={dataset!r} (audio)")


def _image_dtype(dtype, device):
    """The DALI type of the images for a torch ``dtype``: float32 (None) or, on the GPU, float16."""
    import torch

    if dtype is None or dtype == torch.float32:
        return types.FLOAT
    if dtype == torch.float16:
        if device != "gpu":
            raise ValueError("dtype=torch.float16 needs device='gpu'; DALI's CPU operators have no float16")
        return types.FLOAT16
    raise ValueError(f"dtype must be torch.float32 or torch.float16, got {dtype!r}")


def _check_distributed(rank, world_size, local_rank, device):
    """The rank, world size and GPU from the arguments, else from torchrun's environment."""
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
    return rank, world_size, local_rank


def _image_pipeline(source, training, mixing, policies, *, crop_size, min_crop_area, hflip, augment,
                    adjust_orientation, reprob, remode, crop_pct):
    """The train or val pipeline of ``pipelines.images`` for an image source, its crops and crop policies
    (``policies`` holds the automatic augmentation, if any; random erasing is added here)."""
    crop_size = crop_size or source.image_size or 224
    augment = augment or ("pad_crop" if source.image_size else "random_resized_crop")
    augment_args = {"crop_size": crop_size, "hflip": hflip, "adjust_orientation": adjust_orientation}
    if augment == "random_resized_crop":
        augment_args.update(min_crop_area=min_crop_area, crop_pct=crop_pct)
    else:  # pad_crop has neither: refuse them rather than ignore them
        given = [name for name, value, default in (("min_crop_area", min_crop_area, _IMAGE_OPTIONS["min_crop_area"]),
                                                    ("crop_pct", crop_pct, _IMAGE_OPTIONS["crop_pct"]))
                 if value != default]
        if given:
            raise ValueError(f"{', '.join(given)} apply to augment='random_resized_crop', not '{augment}'")
    augment = augment_lib.AUGMENTS[augment](**augment_args)
    if reprob:
        policies.append(augment_lib.RandomErasing(reprob, remode, tuple(source.mean), tuple(source.std)))
    if training:
        return functools.partial(image_pipelines.train_pipeline, source, augment, mixing, policies=tuple(policies))
    return functools.partial(image_pipelines.val_pipeline, source, augment)


def _speech_pipeline(source, training, mixing):
    """The train or eval pipeline of ``pipelines.speech`` for an audio source."""
    if training:
        return functools.partial(speech_pipelines.train_pipeline, source, mixing)
    return functools.partial(speech_pipelines.val_pipeline, source)


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
    crop_size=None,
    min_crop_area=0.08,
    hflip=0.5,
    augment=None,
    adjust_orientation=False,
    channels_last=False,
    dtype=None,
    num_threads=4,
    seed=0,
    rank=None,
    world_size=None,
    local_rank=None,
    cutmix_alpha=0.0,
    cutmix_minmax=None,
    mix_prob=1.0,
    switch_prob=0.5,
    auto_augment=None,
    reprob=0.0,
    remode="const",
    crop_pct=0.875,
):
    """Build the DALI pipeline for a dataset and wrap it as a torch iterable (:class:`DaliLoader`).

    Args:
        dataset: ``"imagefolder"`` (``root/class_x/**/*.JPEG``, classes, files and labels exactly
            as torchvision's ImageFolder finds them), ``"filelist"``, ``"webdataset"`` (tar
            shards with ``.jpg`` and ASCII ``.cls``), ``"cifar10"`` or ``"cifar100"`` (binary or
            python version), or ``"speechcommands"`` (Google Speech Commands v0.01/v0.02: WAV, FLAC
            or Ogg clips as ``[B, 1, 161, 101]`` log spectrograms, see ``pipelines.speech``; the
            image options below do not apply and are refused).
        root: the ImageFolder, the folder the file list's paths are relative to, the folder of
            shards, the folder that holds the CIFAR batches folder, or the Speech Commands root.
        split: ``"train"`` (augmentation, mixup, reshuffled every epoch) or ``"val"`` (the eval
            transform, every sample once across ranks); ``"test"`` too for Speech Commands
            (``validation_list.txt`` is val, ``testing_list.txt`` test, the rest train).
        batch_size: samples per batch on this rank.
        device: ``"gpu"`` (decode and augment on the GPU ``local_rank``) or ``"cpu"``.
        file_list: for ``"filelist"``: a file with one ``relative/path label`` per line.
        num_classes: inferred as ``max(label) + 1`` for file lists and shards when None; must
            agree with the data otherwise.
        mixup_alpha: Beta(α, α) for mixup on the train split; 0 is ERM (one-hot targets).
        per_sample: one λ per sample instead of one per batch.
        label_smoothing: smoothing of the one-hot targets, in ``[0, 1)``.
        crop_size: side of the output images; None is 224, or 32 for CIFAR.
        min_crop_area: with ``augment="random_resized_crop"``, train crops cover a random
            fraction in ``[min_crop_area, 1]`` of the image (torchvision's and timm's ``scale``
            lower bound).
        hflip: probability of a horizontal flip in training.
        augment: ``"random_resized_crop"`` (ImageNet's: random-resized crops for train,
            torchvision's resize and center crop for val) or ``"pad_crop"`` (CIFAR's: resize to
            ``crop_size`` if needed, pad 4 pixels with zeros and take a random crop for train;
            the resize alone for val). None picks the dataset's own: ``"pad_crop"`` for CIFAR,
            ``"random_resized_crop"`` for the others.
        adjust_orientation: apply JPEGs' EXIF orientation tags, as ``PIL.ImageOps.exif_transpose``
            would. False (the default) gives torchvision's pixels: PIL ignores the tag.
        channels_last: NHWC memory (the images still index as NCHW).
        dtype: the images' dtype, ``torch.float32`` (None, the default, as torchvision) or
            ``torch.float16`` with ``device="gpu"``: half the bytes, for a model under autocast
            (AMP), where the first layer casts its input anyway.
        num_threads: DALI CPU worker threads.
        seed: the sample-order seed (the same on all ranks); augmentation uses ``seed + rank``.
        rank: this process's rank; ``$RANK`` (torchrun) or 0 when None.
        world_size: the number of ranks; ``$WORLD_SIZE`` or 1 when None.
        local_rank: the GPU to use; ``$LOCAL_RANK`` or 0 when None.
        cutmix_alpha: CutMix's Beta(α, α) on the train split; 0 is no CutMix (see :func:`dali_mixup.mixup`).
        cutmix_minmax: None, or ``(lo, hi)``: CutMix box sides uniform in ``[lo, hi)`` of the image's.
        mix_prob: the probability of mixing a batch (a sample, with ``per_sample``) at all (timm's ``prob``).
        switch_prob: with mixup and CutMix both on, the probability of CutMix.
        auto_augment: None, or ``"rand-m<M>-n<N>[-inc1]"``, ``"trivial"``, ``"autoaugment"``:
            DALI's automatic augmentation of the train crops, ``rand-...`` named as in timm (see
            ``pipelines.augment.AutoAugment`` for how DALI's differ).
        reprob: the probability of random erasing a train crop (timm's ``re_prob``), before it is mixed.
        remode: ``"const"`` (the mean colour, within 0.5/std of 0 once normalized) or ``"pixel"`` (per-pixel noise).
        crop_pct: with ``augment="random_resized_crop"``, val's center crop as a share of the
            resized image (timm's ``crop_pct``; 0.875 is torchvision's 224 of 256).

    Returns:
        A :class:`DaliLoader`.

    Raises:
        ValueError, TypeError: for a bad option, naming it, and for a train split that gives
            this rank no whole batch; FileNotFoundError for missing data; ValueError naming the
            file and line for a label outside ``[0, num_classes)``.
    """
    _check_options(dataset, split, device, root, file_list, augment, adjust_orientation)
    for name, value, minimum in (("batch_size", batch_size, 1), ("num_threads", num_threads, 1)):
        _check_int(name, value, minimum)
    for name, value in (("crop_size", crop_size), ("num_classes", num_classes)):
        if value is not None:
            _check_int(name, value, 1)
    _check_fraction("min_crop_area", min_crop_area, 1e-6)
    _check_fraction("hflip", hflip, 0.0)
    _check_fraction("crop_pct", crop_pct, 1e-6)
    rank, world_size, local_rank = _check_distributed(rank, world_size, local_rank, device)
    image_dtype = _image_dtype(dtype, device)
    training = split == "train"
    mixing, policies = _train_options(
        split, dict(alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, cutmix_minmax=cutmix_minmax, prob=mix_prob,
                    switch_prob=switch_prob, per_sample=per_sample, label_smoothing=label_smoothing),
        auto_augment, reprob, remode)

    image_options = dict(crop_size=crop_size, min_crop_area=min_crop_area, hflip=hflip, augment=augment,
                         adjust_orientation=adjust_orientation, reprob=reprob, remode=remode, crop_pct=crop_pct)
    if _source_class(dataset).modality == "audio":
        _check_audio_options(dataset, {**image_options, "channels_last": channels_last, "auto_augment": auto_augment})

    source = SOURCES[dataset](os.fspath(root), split=split, file_list=file_list, num_classes=num_classes)
    num_batches = source.num_batches(batch_size, training=training, shard_id=rank, num_shards=world_size)
    if training and num_batches == 0:
        raise ValueError(
            f"batch_size={batch_size} gives this rank no batch: its share of the {split} split is "
            f"{len(source) // world_size} of {len(source)} samples over world_size={world_size}; "
            "use a smaller batch_size or fewer ranks"
        )
    common = {"shard_id": rank, "num_shards": world_size, "device": device, "image_dtype": image_dtype,
              "batch_size": batch_size, "num_threads": num_threads, "device_id": local_rank if device == "gpu" else None}
    if source.modality == "audio":
        pipeline = _speech_pipeline(source, training, mixing)
    else:
        common["channels_last"] = channels_last
        pipeline = _image_pipeline(source, training, mixing, policies, **image_options)

    def build(generation):
        # Each rebuild (see DaliLoader) moves the sample order and the augmentation seeds on.
        order = {"order_seed": [seed, generation]} if training else {}
        pipe = pipeline(**order, **common, seed=seed + rank + generation * world_size)
        # Train drops each rank's last partial batch, so every rank takes the same number of steps;
        # val pads the shards (pad_last_batch) and the iterator drops the padding.
        return pipe, DALIGenericIterator(
            pipe, ["images", "targets"], last_batch_policy=LastBatchPolicy.DROP if training else LastBatchPolicy.PARTIAL,
            auto_reset=True, prepare_first_batch=False,  # nothing runs until iterated: errors reach DaliLoader
            **source.iterator_args(),
        )

    return DaliLoader(build, num_batches, source.num_classes, channels_last, training, source.explain)
