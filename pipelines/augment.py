"""Crop-level augmentation, as plain functions of DataNodes on uint8 HWC images, CPU or GPU.

The crops (:class:`RandomResizedCrop`, :class:`PadCrop`) decode and crop; the crop policies
(:class:`AutoAugment`, :class:`RandomErasing`) then change the uint8 crops before the fused mixup
operator flips, normalizes and mixes them in one pass.
"""

import dataclasses
import math
import re
import warnings

import numpy as np
import nvidia.dali.math as dmath
from nvidia.dali import fn, types

# torchvision's and timm's ImageNet eval: resize the shorter side to crop / 0.875, then center-crop.
DEFAULT_CROP_PCT = 0.875


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


def _center_crop_window(shape, crop_size, crop_pct):
    """The resize and center-crop of torchvision's ``Resize(s)`` + ``CenterCrop(crop_size)``, to the pixel,
    with ``s = floor(crop_size / crop_pct)`` as timm computes it (256 for 224 at 0.875).

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
    size = math.floor(crop_size / crop_pct + 1e-9)  # 224 / 0.875 is 256 exactly, not 255.99...
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
    crop_pct)`` and ``CenterCrop(crop_size)``, to the pixel.

    Args:
        crop_size: side of the output images.
        min_crop_area: lower bound of the crop's share of the image (torchvision's ``scale[0]``).
        hflip: probability of a horizontal flip in training.
        adjust_orientation: apply the EXIF orientation tag of encoded images (see :func:`decode`).
        crop_pct: val's center crop as a share of the resized image's shorter side (timm's ``crop_pct``).
    """

    crop_size: int
    min_crop_area: float = 0.08
    hflip: float = 0.5
    adjust_orientation: bool = False
    crop_pct: float = DEFAULT_CROP_PCT
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
        resize, window = _center_crop_window(shape, self.crop_size, self.crop_pct)
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


@dataclasses.dataclass(frozen=True)
class AutoAugment:
    """Automatic augmentation of the uint8 crops with DALI's ``nvidia.dali.auto_aug``: ``rand-...`` named as in
    timm, ``trivial`` (torchvision's TrivialAugmentWide) and ``autoaugment`` (timm's ``v0``, ImageNet's policy).

    - ``"rand-mM-nN"`` (``-inc0``/``-inc1``): RandAugment, N ops at magnitude M on timm's 0–10
      scale (DALI's 11 bins); ``inc1`` takes the ops whose strength grows with M (DALI's
      ``monotonic_mag``), timm's ``_RAND_INCREASING_TRANSFORMS``. Unlike timm's, DALI applies every
      chosen op (timm: each with probability 0.5) at the fixed magnitude (timm's ``mstdX`` adds
      Gaussian noise to it, which DALI cannot, so ``mstd`` is refused), and picks from 14 ops
      (identity instead of timm's invert and solarize-add).
    - ``"trivial"``: TrivialAugment (Wide), one op at a random one of 31 magnitudes.
    - ``"autoaugment"``: AutoAugment's ImageNet policy (timm's ``v0``: the same 25 sub-policies).

    Translations are relative to the crop (``shape``), as in timm.

    Args:
        name: one of the forms above.
    """

    name: str

    def __post_init__(self):
        self.parsed()  # refuse a bad name when the loader is made, not when the pipeline is built

    def parsed(self):
        """``(kind, options)`` for :meth:`apply`."""
        if self.name in ("trivial", "autoaugment"):
            return self.name, {}
        match = re.fullmatch(r"rand((?:-[a-z]+[\d.]+)+)", self.name) if isinstance(self.name, str) else None
        if match is None:
            raise ValueError(f"auto_augment must be 'rand-m<M>-n<N>[-inc0|-inc1]', 'trivial' or 'autoaugment', "
                             f"got {self.name!r}")
        options = dict(re.findall(r"-([a-z]+)([\d.]+)", match.group(1)))
        unknown = set(options) - {"m", "n", "inc"}
        if unknown:
            hint = " (DALI's RandAugment has no magnitude noise; drop it)" if "mstd" in unknown else ""
            raise ValueError(f"auto_augment {self.name!r}: unknown option(s) {sorted(unknown)}{hint}; "
                             "expected m (magnitude 0-10), n (ops) and inc (0 or 1)")
        magnitude, ops = int(float(options.get("m", 10))), int(float(options.get("n", 2)))
        if not 0 <= magnitude <= 10 or ops < 1 or options.get("inc", "0") not in ("0", "1"):
            raise ValueError(f"auto_augment {self.name!r}: m must be 0-10, n >= 1 and inc 0 or 1")
        return "rand", {"m": magnitude, "n": ops, "num_magnitude_bins": 11, "monotonic_mag": options.get("inc") == "1"}

    def apply(self, crops, crop_size):
        """The augmented crops; the pipeline needs ``enable_conditionals=True``."""
        from nvidia.dali.auto_aug import auto_augment, rand_augment, trivial_augment

        kind, options = self.parsed()
        shape = (crop_size, crop_size)
        # DALI's own auto_aug calls the experimental aliases of operators it ships, and DALI shows
        # their deprecation whatever the filters say: drop those, pass any other warning on.
        with warnings.catch_warnings(record=True) as caught:
            if kind == "rand":
                crops = rand_augment.rand_augment(crops, shape=shape, **options)
            elif kind == "trivial":
                crops = trivial_augment.trivial_augment_wide(crops, shape=shape)
            else:
                crops = auto_augment.auto_augment(crops, policy_name="image_net", shape=shape)
        for warning in caught:
            if "nvidia.dali.fn.experimental." not in str(warning.message):
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return crops


@dataclasses.dataclass(frozen=True)
class RandomErasing:
    """timm's ``RandomErasing`` on the uint8 crops, before they are mixed.

    With probability ``prob`` a sample gets one box of a uniform share in ``[0.02, 1/3]`` of its
    area and a log-uniform aspect ratio in ``[0.3, 1/0.3]``, the first of 10 tries that fits, at a
    uniform place; ``"const"`` fills it with the mean colour rounded to uint8 (within 0.5/std of 0
    once normalized, where timm fills 0), ``"pixel"`` with per-pixel, per-channel Gaussian noise of the normalization's mean and std (N(0, 1)
    once normalized, as timm's, but rounded to whole pixel values and clipped to 0–255).

    Args:
        prob: the probability of erasing a sample.
        mode: ``"const"`` or ``"pixel"``.
        mean, std: the normalization's per-channel mean and std (0–255 scale).
    """

    prob: float
    mode: str
    mean: tuple
    std: tuple
    tries = 10

    def __post_init__(self):
        if self.mode not in ("const", "pixel"):
            raise ValueError(f"remode must be 'const' or 'pixel', got {self.mode!r}")

    def _box(self, size):
        """``(top, left, height, width)`` of each sample's box (int32; 0 x 0 where it is not erased)."""
        area = fn.random.uniform(range=[0.02, 1 / 3], shape=[self.tries]) * float(size * size)
        aspect = dmath.exp(fn.random.uniform(range=[math.log(0.3), math.log(1 / 0.3)], shape=[self.tries]))
        heights = fn.cast(dmath.floor(dmath.sqrt(area * aspect) + 0.5), dtype=types.INT32)
        widths = fn.cast(dmath.floor(dmath.sqrt(area / aspect) + 0.5), dtype=types.INT32)
        fits = fn.cast((heights < size) & (widths < size), dtype=types.INT32)
        tries = types.Constant(np.arange(self.tries, dtype=np.int32))
        first = fn.reductions.min(tries + self.tries * (1 - fits))  # `tries` when none fits: no box
        chosen = fn.cast(tries == first, dtype=types.INT32) * fn.cast(
            fn.random.coin_flip(probability=self.prob), dtype=types.INT32)
        height = fn.cast(fn.reductions.sum(heights * chosen), dtype=types.INT32)
        width = fn.cast(fn.reductions.sum(widths * chosen), dtype=types.INT32)
        corner = fn.random.uniform(range=[0.0, 1.0], shape=[2])
        top = fn.cast(dmath.floor(corner[0] * fn.cast(size - height + 1, dtype=types.FLOAT)), dtype=types.INT32)
        left = fn.cast(dmath.floor(corner[1] * fn.cast(size - width + 1, dtype=types.FLOAT)), dtype=types.INT32)
        return top, left, height, width

    def apply(self, crops, crop_size):
        """The crops with their boxes erased."""
        top, left, height, width = self._box(crop_size)
        if self.mode == "const":
            anchor = fn.cast(fn.stack(top, left), dtype=types.FLOAT)
            shape = fn.cast(fn.stack(height, width), dtype=types.FLOAT)
            return fn.erase(crops, anchor=anchor, shape=shape, axis_names="HW",
                            fill_value=[float(round(m)) for m in self.mean])
        noise = fn.random.normal(shape=fn.stack(height, width, 3), device=crops.device)
        noise = noise * np.asarray(self.std, np.float32) + np.asarray(self.mean, np.float32)
        patch = fn.reshape(fn.cast(dmath.clamp(noise, 0.0, 255.0), dtype=types.UINT8), layout="HWC")
        return fn.multi_paste(
            crops, patch, output_size=[crop_size, crop_size],
            out_anchors=fn.stack(fn.stack(0 * top, 0 * left), fn.stack(top, left)),
            shapes=fn.stack(fn.stack(0 * top + crop_size, 0 * left + crop_size), fn.stack(height, width)),
        )


AUGMENTS = {"random_resized_crop": RandomResizedCrop, "pad_crop": PadCrop}
