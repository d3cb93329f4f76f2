"""ImageNet-style train and val pipelines, for JPEG folders, file lists and webdataset tar shards.

As in DALI's EfficientNet example, the processing is a plain function of DataNodes
(:func:`train_images`, :func:`val_images`) and thin ``@pipeline_def`` wrappers add the reader
and the sharding. Every function builds for ``device="cpu"`` and ``device="gpu"``.
"""

import dataclasses

import numpy as np
import nvidia.dali.math as dmath
from nvidia.dali import fn, pipeline_def, types

from dali_mixup.formats import SHARD_IMAGE_EXTS, SHARD_LABEL_EXT
from dali_mixup.mixup import mixup
from pipelines.common import normalize, output_dtype

# The reader's name, which DALI's iterator queries for the epoch size and the shard padding.
READER = "reader"
IMAGENET_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
IMAGENET_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]
# torchvision's and timm's ImageNet eval: resize the shorter side to crop / 0.875, then center-crop.
VAL_CROP_RATIO = 0.875


@dataclasses.dataclass(frozen=True)
class Files:
    """Image files and their class ids (from an ImageFolder tree or a file list)."""

    files: list
    labels: list


@dataclasses.dataclass(frozen=True)
class Shards:
    """Webdataset tar shards (``.jpg`` + ASCII ``.cls`` per sample) and their DALI index files."""

    paths: list
    indexes: list


def _decoder_args(device):
    if device != "gpu":
        return {"device": "cpu"}
    # As in DALI's ResNet-50 and EfficientNet examples: nvJPEG preallocates for the largest
    # ImageNet image, so it never reallocates mid-epoch, and hw_decoder_load sends that share
    # of the batch to the A100/H100 hardware JPEG decoder while CUDA decodes the rest.
    return {
        "device": "mixed",
        "hw_decoder_load": 0.65,
        "device_memory_padding": 211025920,
        "host_memory_padding": 140544512,
        "preallocate_width_hint": 5980,
        "preallocate_height_hint": 6430,
    }


def parse_ascii_labels(cls):
    """Turn each ``.cls`` component, ASCII digits such as ``b"417"``, into an int32 class id in the graph.

    The digits are reversed so the units come first, zero-padded to 8 and dotted with the
    powers of ten. ``formats.scan_shards`` has already refused anything but 1-8 digits.
    """
    digits = fn.cast(cls, dtype=types.INT32) - ord("0")
    # fn.flip works on images only, so the digits pass through it as a 1xLx1 HWC image.
    digits = fn.expand_dims(digits, axes=[0, 2])
    digits = fn.reshape(digits, layout="HWC")
    digits = fn.flip(digits, horizontal=1, vertical=0)
    digits = fn.pad(digits, fill_value=0, shape=[1, 8, 1])
    powers = types.Constant(np.array([10**k for k in range(8)], np.int32).reshape(1, 8, 1))
    return fn.reductions.sum(digits * powers)


def read(source, *, shard_id, num_shards, training):
    """The reader for ``source``: encoded images and int32 labels of this rank's shard.

    Args:
        source: :class:`Files` or :class:`Shards`.
        shard_id: this rank.
        num_shards: the world size.
        training: reshuffle every epoch; otherwise read in order, and pad the last batch
            so DALI's iterator can drop the padding and count every sample once.
    """
    common = {
        "shard_id": shard_id,
        "num_shards": num_shards,
        "shuffle_after_epoch": training,
        "pad_last_batch": not training,
        "name": READER,
    }
    if isinstance(source, Files):
        return fn.readers.file(files=source.files, labels=source.labels, **common)
    if isinstance(source, Shards):
        jpegs, cls = fn.readers.webdataset(
            paths=source.paths,
            index_paths=source.indexes,
            ext=[";".join(SHARD_IMAGE_EXTS), SHARD_LABEL_EXT],
            missing_component_behavior="error",
            **common,
        )
        return jpegs, parse_ascii_labels(cls)
    raise TypeError(f"source must be Files or Shards, got {type(source).__name__}")


def train_crops(jpegs, *, device, crop_size, min_crop_area=0.08):
    """Random-resized crops, the standard ImageNet train augmentation, as uint8 HWC images.

    The flip and the normalization follow in :func:`dali_mixup.mixup`, which reads each crop once.

    Args:
        jpegs: encoded images, on the CPU.
        device: ``"gpu"`` decodes with nvJPEG (``"mixed"``) and resizes on the GPU.
        crop_size: side of the square output.
        min_crop_area: the crop covers a random fraction in ``[min_crop_area, 1]`` of the image.
    """
    images = fn.decoders.image_random_crop(
        jpegs,
        output_type=types.RGB,
        random_aspect_ratio=[3 / 4, 4 / 3],
        random_area=[min_crop_area, 1.0],
        num_attempts=100,
        **_decoder_args(device),
    )
    return fn.resize(images, resize_x=crop_size, resize_y=crop_size, interp_type=types.INTERP_TRIANGULAR)


def _round_half_even(numerator):
    """``round(numerator / 2)`` with Python's (and torchvision's) ties-to-even, in integer graph arithmetic."""
    half = numerator // 2
    return half + (numerator - 2 * half) * (half - 2 * (half // 2))


def _val_geometry(jpegs, crop_size):
    """The resize and center-crop of torchvision's ``Resize(s)`` + ``CenterCrop(crop_size)``, to the pixel.

    ``Resize(s)`` scales the shorter side to ``s`` and truncates the longer one;
    ``CenterCrop`` puts its corner at ``round((size - crop) / 2)``. DALI's ``resize_shorter``
    and ``crop_pos=0.5`` round both differently, which shifts the crop by a pixel (a mean
    difference of ~0.05 in normalized units), so the sizes and corners are computed here from
    the encoded images' shapes.
    """
    shape = fn.peek_image_shape(jpegs, dtype=types.INT32)
    height = shape[0]
    width = shape[1]
    shorter = dmath.min(height, width)
    size = round(crop_size / VAL_CROP_RATIO)
    out_height = height * size // shorter
    out_width = width * size // shorter
    crop_pos = []
    for extent in (out_width, out_height):
        slack = extent - crop_size
        # DALI places the corner at crop_pos * slack, rounded: aim a quarter-pixel past the integer.
        corner = fn.cast(_round_half_even(slack), dtype=types.FLOAT) + 0.25
        crop_pos.append(corner / fn.cast(dmath.max(slack, 1), dtype=types.FLOAT))
    resize = [fn.cast(extent, dtype=types.FLOAT) for extent in (out_width, out_height)]
    return resize, crop_pos


def val_images(jpegs, *, device, crop_size, channels_last):
    """torchvision's ImageNet eval transform: resize the shorter side to ``crop_size / 0.875`` (256 for 224),
    center-crop, normalize. Arguments as :func:`train_crops`; ``channels_last`` gives NHWC."""
    (resize_x, resize_y), (crop_x, crop_y) = _val_geometry(jpegs, crop_size)
    images = fn.decoders.image(jpegs, output_type=types.RGB, **_decoder_args(device))
    images = fn.resize(images, resize_x=resize_x, resize_y=resize_y, interp_type=types.INTERP_TRIANGULAR)
    return normalize(
        images,
        device=device,
        channels_last=channels_last,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        crop=(crop_size, crop_size),
        crop_pos_x=crop_x,
        crop_pos_y=crop_y,
    )


@pipeline_def
def imagenet_train_pipeline(
    source, *, shard_id, num_shards, device, crop_size, channels_last, min_crop_area, hflip, num_classes, mixup_alpha,
    per_sample, label_smoothing
):
    """Train batches: ``(images, targets)`` with soft targets ``[B, num_classes]`` (one-hot when ``mixup_alpha`` is 0).

    Reader and sharding arguments as :func:`read`, crops as :func:`train_crops`; ``hflip`` is the
    flip probability; mixup arguments as :func:`dali_mixup.mixup`, which also flips, normalizes
    and lays out the crops (in one pass when its fused operator is built).
    """
    jpegs, labels = read(source, shard_id=shard_id, num_shards=num_shards, training=True)
    images = train_crops(jpegs, device=device, crop_size=crop_size, min_crop_area=min_crop_area)
    mirror = fn.random.coin_flip(probability=hflip)
    return mixup(
        images,
        labels,
        num_classes=num_classes,
        alpha=mixup_alpha,
        per_sample=per_sample,
        label_smoothing=label_smoothing,
        dtype=output_dtype(device),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        mirror=mirror,
        output_layout="HWC" if channels_last else "CHW",
    )


@pipeline_def
def imagenet_val_pipeline(source, *, shard_id, num_shards, device, crop_size, channels_last):
    """Val batches: ``(images, labels)`` with integer labels; arguments as :func:`imagenet_train_pipeline`."""
    jpegs, labels = read(source, shard_id=shard_id, num_shards=num_shards, training=False)
    images = val_images(jpegs, device=device, crop_size=crop_size, channels_last=channels_last)
    if device == "gpu":
        labels = labels.gpu()  # so that the iterator hands both outputs over on the same device
    return images, labels
