"""Train and val pipelines for every image source: decode, augment, then mixup (train) or normalize (val).

As in DALI's EfficientNet example, the processing is plain functions of DataNodes (the
augmentations :class:`RandomResizedCrop` and :class:`PadCrop`) and thin ``@pipeline_def``
wrappers add the reader and the sharding, from a source of ``pipelines.sources``. Every function
builds for ``device="cpu"`` and ``device="gpu"``.
"""

import dataclasses

import nvidia.dali.math as dmath
from nvidia.dali import Pipeline, fn, pipeline_def, types

from dali_mixup.mixup import mixup

# torchvision's and timm's ImageNet eval: resize the shorter side to crop / 0.875, then center-crop.
VAL_CROP_RATIO = 0.875


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


def decode(jpegs, *, device, adjust_orientation):
    """Decode to uint8 HWC RGB; ``device="gpu"`` decodes with nvJPEG (``"mixed"``) onto the GPU.

    ``adjust_orientation`` applies the EXIF orientation tag, as ``PIL.ImageOps.exif_transpose``
    would; torchvision (PIL) ignores it, hence False for torchvision's pixels.
    """
    return fn.decoders.image(jpegs, output_type=types.RGB, adjust_orientation=adjust_orientation,
                             **_decoder_args(device))


def _round_half_even(numerator):
    """``round(numerator / 2)`` with Python's (and torchvision's) ties-to-even, in integer graph arithmetic."""
    half = numerator // 2
    return half + (numerator - 2 * half) * (half - 2 * (half // 2))


def _center_crop_window(shape, crop_size):
    """The resize and center-crop of torchvision's ``Resize(s)`` + ``CenterCrop(crop_size)``, to the pixel.

    ``Resize(s)`` scales the shorter side to ``s`` and truncates the longer one;
    ``CenterCrop`` puts its corner at ``round((size - crop) / 2)``. DALI's ``resize_shorter``
    and ``crop_pos=0.5`` round both differently, which shifts the crop by a pixel (a mean
    difference of ~0.05 in normalized units), so the sizes and corners are computed here from
    the images' ``shape`` (HWC, int32).

    Returns:
        ``({"resize_x", "resize_y"}, {"crop", "crop_pos_x", "crop_pos_y"})``: arguments for
        ``fn.resize`` and ``fn.crop_mirror_normalize``.
    """
    height = shape[0]
    width = shape[1]
    shorter = dmath.min(height, width)
    size = round(crop_size / VAL_CROP_RATIO)
    out_height = height * size // shorter
    out_width = width * size // shorter
    corners = []
    for extent in (out_width, out_height):
        slack = extent - crop_size
        # DALI places the corner at crop_pos * slack, rounded: aim a quarter-pixel past the integer.
        corner = fn.cast(_round_half_even(slack), dtype=types.FLOAT) + 0.25
        corners.append(corner / fn.cast(dmath.max(slack, 1), dtype=types.FLOAT))
    resize = {"resize_x": fn.cast(out_width, dtype=types.FLOAT), "resize_y": fn.cast(out_height, dtype=types.FLOAT)}
    return resize, {"crop": (crop_size, crop_size), "crop_pos_x": corners[0], "crop_pos_y": corners[1]}


@dataclasses.dataclass(frozen=True)
class RandomResizedCrop:
    """ImageNet's augmentation (torchvision's ``RandomResizedCrop``) and eval transform.

    Train: a random crop of ``[min_crop_area, 1]`` of the area with aspect ratio in
    ``[3/4, 4/3]``, resized to ``crop_size`` squared. Val: torchvision's ``Resize(crop_size /
    0.875)`` and ``CenterCrop(crop_size)``, to the pixel.

    Args:
        crop_size: side of the output images.
        min_crop_area: lower bound of the crop's share of the image (torchvision's ``scale[0]``).
        hflip: probability of a horizontal flip in training.
        adjust_orientation: apply the EXIF orientation tag of encoded images (see :func:`decode`).
    """

    crop_size: int
    min_crop_area: float = 0.08
    hflip: float = 0.5
    adjust_orientation: bool = False
    name = "random_resized_crop"

    def train(self, images, *, encoded, device, image_size):
        """uint8 HWC crops; the flip and the normalization follow in :func:`dali_mixup.mixup`."""
        crop = {"random_aspect_ratio": [3 / 4, 4 / 3], "random_area": [self.min_crop_area, 1.0], "num_attempts": 100}
        if encoded:
            # The decoder decodes only the crop's region of each JPEG.
            images = fn.decoders.image_random_crop(
                images, output_type=types.RGB, adjust_orientation=self.adjust_orientation, **crop,
                **_decoder_args(device),
            )
            return fn.resize(images, resize_x=self.crop_size, resize_y=self.crop_size,
                             interp_type=types.INTERP_TRIANGULAR)
        return fn.random_resized_crop(images, size=[self.crop_size, self.crop_size],
                                      interp_type=types.INTERP_TRIANGULAR, **crop)

    def val(self, images, *, encoded, device, image_size):
        """``(images, window)``: resized uint8 HWC images and the center crop for ``crop_mirror_normalize``."""
        if encoded:
            shape = fn.peek_image_shape(images, dtype=types.INT32, adjust_orientation=self.adjust_orientation)
            images = decode(images, device=device, adjust_orientation=self.adjust_orientation)
        else:
            shape = fn.shapes(images, dtype=types.INT32)
        resize, window = _center_crop_window(shape, self.crop_size)
        return fn.resize(images, **resize, interp_type=types.INTERP_TRIANGULAR), window


@dataclasses.dataclass(frozen=True)
class PadCrop:
    """CIFAR's augmentation (Zhang et al., after He et al.): pad with zeros, random crop, flip.

    Train: resize to ``crop_size`` squared if the images are not that size, pad ``pad``
    pixels of zeros on every side and take a random ``crop_size`` window (one op: a slice that
    reads outside the image as zeros), so each image moves by at most ``pad`` pixels. Val: the
    resize alone.

    Args:
        crop_size: side of the output images.
        hflip: probability of a horizontal flip in training.
        adjust_orientation: apply the EXIF orientation tag of encoded images (see :func:`decode`).
        pad: the padding, 4 in the paper.
    """

    crop_size: int
    hflip: float = 0.5
    adjust_orientation: bool = False
    pad: int = 4
    name = "pad_crop"

    def _resized(self, images, encoded, device, image_size):
        if encoded:
            images = decode(images, device=device, adjust_orientation=self.adjust_orientation)
        elif image_size == self.crop_size:
            return images  # CIFAR at its own size: nothing to resize
        return fn.resize(images, resize_x=self.crop_size, resize_y=self.crop_size, interp_type=types.INTERP_TRIANGULAR)

    def train(self, images, *, encoded, device, image_size):
        """uint8 HWC crops; the flip and the normalization follow in :func:`dali_mixup.mixup`."""
        images = self._resized(images, encoded, device, image_size)
        # The window's corner, in pixels from the image's, one offset in [-pad, pad] per axis.
        corner = fn.random.uniform(values=list(range(-self.pad, self.pad + 1)), shape=[2], dtype=types.INT32)
        return fn.slice(images, start=corner, shape=[self.crop_size, self.crop_size], axes=[0, 1],
                        out_of_bounds_policy="pad", fill_values=0)

    def val(self, images, *, encoded, device, image_size):
        """``(images, window)``: uint8 HWC images of the output size, and no crop."""
        return self._resized(images, encoded, device, image_size), {}


AUGMENTS = {"random_resized_crop": RandomResizedCrop, "pad_crop": PadCrop}


def _layout(channels_last):
    return "HWC" if channels_last else "CHW"


@pipeline_def
def train_pipeline(source, augment, mixing, *, shard_id, num_shards, device, order_seed, channels_last, image_dtype):
    """Train batches: ``(images, targets)`` with soft targets ``[B, num_classes]`` (one-hot when ``mixing.alpha`` is 0).

    Args:
        source: a source of ``pipelines.sources``.
        augment: :class:`RandomResizedCrop` or :class:`PadCrop`.
        mixing: :class:`dali_mixup.mixup.Mixing`; :func:`dali_mixup.mixup` also flips, normalizes (with the
            source's mean and std) and lays out the crops, in one pass when its fused
            operator is built.
        shard_id, num_shards: this rank and the world size.
        device: ``"gpu"`` or ``"cpu"``.
        order_seed: the sample order's seed (see ``Source.read``).
        channels_last: NHWC output instead of NCHW.
        image_dtype: ``types.FLOAT``, or ``types.FLOAT16`` on the GPU (half the bytes, for AMP).
    """
    batch_size = Pipeline.current().max_batch_size
    images, labels = source.read(training=True, shard_id=shard_id, num_shards=num_shards, batch_size=batch_size,
                                 device=device, order_seed=order_seed)
    crops = augment.train(images, encoded=source.encoded, device=device, image_size=source.image_size)
    mirror = fn.random.coin_flip(probability=augment.hflip)
    return mixup(
        crops,
        labels,
        num_classes=source.num_classes,
        **dataclasses.asdict(mixing),
        dtype=image_dtype,
        mean=source.mean,
        std=source.std,
        mirror=mirror,
        output_layout=_layout(channels_last),
    )


@pipeline_def
def val_pipeline(source, augment, *, shard_id, num_shards, device, channels_last, image_dtype):
    """Val batches: ``(images, labels)``, normalized images and integer labels; arguments as :func:`train_pipeline`."""
    batch_size = Pipeline.current().max_batch_size
    images, labels = source.read(training=False, shard_id=shard_id, num_shards=num_shards, batch_size=batch_size,
                                 device=device, order_seed=[0])
    images, window = augment.val(images, encoded=source.encoded, device=device, image_size=source.image_size)
    images = fn.crop_mirror_normalize(images, dtype=image_dtype, output_layout=_layout(channels_last),
                                      mean=source.mean, std=source.std, **window)
    if device == "gpu":
        labels = labels.gpu()  # so that the iterator hands both outputs over on the same device
    return images, labels
