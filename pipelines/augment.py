"""Crop-level augmentation, as plain functions of DataNodes on uint8 HWC images, CPU or GPU.

The crops (:class:`RandomResizedCrop`, :class:`PadCrop`) decode, crop and resize; the crop policies
(``pipelines.auto_augment.AutoAugment``, :class:`ColorJitter`, :class:`RandomGrayscale`,
:class:`GaussianBlur`) then change the uint8 crops, in timm's order (``transforms_imagenet_train``'s
secondary stage), before the fused mixup operator flips, normalizes and mixes them in one pass.
:class:`RandomErasing` works on the normalized crops, as timm's, so where it is on the pipeline
normalizes first and mixes the float crops (``pipelines.images``).
"""

import dataclasses
import itertools
import math

import numpy as np
import nvidia.dali.math as dmath
from nvidia.dali import fn, types
from nvidia.dali.auto_aug.core import select

from dali_mixup.mixup import RESAMPLE, Resize

# torchvision's and timm's ImageNet eval: resize the shorter side to crop / 0.875, then center-crop.
DEFAULT_CROP_PCT = 0.875

# timm's interpolation names, as DALI's filters. Bilinear and bicubic antialias when they shrink, as
# PIL's resize does (DALI's triangular filter is its antialiased linear one). timm's "box" and
# "hamming" have no DALI filter.
INTERPOLATIONS = {"nearest": types.INTERP_NN, "bilinear": types.INTERP_TRIANGULAR, "bicubic": types.INTERP_CUBIC,
                  "lanczos": types.INTERP_LANCZOS3}
CROP_MODES = ("center", "squash", "border")


def check_interpolation(name, value, *, random_ok):
    names = tuple(INTERPOLATIONS) + (("random",) if random_ok else ())
    if value not in names:
        why = " (timm's box and hamming have no DALI filter)" if value in ("box", "hamming") else ""
        raise ValueError(f"{name} must be one of {names}{why}, got {value!r}")


def _interpolation(name):
    """The ``interp_type`` of ``fn.resize``: a filter, or for ``"random"`` one of bilinear and bicubic drawn
    per sample (timm's ``RandomResizedCropAndInterpolation``)."""
    if name != "random":
        return INTERPOLATIONS[name]
    choice = fn.random.uniform(values=[int(types.INTERP_TRIANGULAR), int(types.INTERP_CUBIC)], dtype=types.INT32)
    return fn.cast(choice, dtype=types.DALIDataType.INTERP_TYPE)


def _resample(name):
    """The fused resize's filter (``dali_mixup.mixup.RESAMPLE``), or for ``"random"`` bilinear or bicubic drawn per
    sample; None where it has none (``"nearest"``)."""
    if name == "random":
        return fn.random.uniform(values=[RESAMPLE["bilinear"], RESAMPLE["bicubic"]], dtype=types.INT32)
    return name if name in RESAMPLE else None


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


def _divide_half_even(numerator, denominator):
    """``round(numerator / denominator)`` with ties to even, for positive int32 graph nodes."""
    quotient = numerator // denominator
    twice_rest = 2 * (numerator - quotient * denominator)
    up = fn.cast(twice_rest > denominator, dtype=types.INT32)
    tie = fn.cast(twice_rest == denominator, dtype=types.INT32)
    return quotient + up + tie * (quotient - 2 * (quotient // 2))


def _center_corner(extent, crop):
    """The corner of a ``crop`` centered in ``extent`` (int32 nodes): ``round((extent - crop) / 2)`` as
    torchvision's ``CenterCrop``, and where the crop is larger, minus the padding before it,
    ``(crop - extent) // 2``, as timm's ``CenterCropOrPad``. Python ints give an int."""
    slack = extent - crop
    if isinstance(slack, int):
        return round(slack / 2) if slack >= 0 else -(-slack // 2)
    inside = fn.cast(slack >= 0, dtype=types.INT32)
    return inside * _round_half_even(dmath.max(slack, 0)) - (1 - inside) * (dmath.max(-slack, 0) // 2)


def _crop_pos(corner, slack):
    """``crop_mirror_normalize``'s ``crop_pos`` that puts the crop's corner at ``corner`` (ints, ``slack >= 0``):
    DALI places it at ``crop_pos * slack``, rounded, so aim a quarter-pixel past the integer."""
    if isinstance(corner, int):
        return (corner + 0.25) / max(slack, 1)
    return (fn.cast(corner, dtype=types.FLOAT) + 0.25) / fn.cast(dmath.max(slack, 1), dtype=types.FLOAT)


def _float(value):
    return float(value) if isinstance(value, int) else fn.cast(value, dtype=types.FLOAT)


def _int32(value):
    return types.Constant(value, dtype=types.INT32) if isinstance(value, int) else fn.cast(value, dtype=types.INT32)


def _coin(prob):
    return fn.random.coin_flip(probability=float(prob), dtype=types.BOOL)


def _vflip(crops, prob):
    if not prob:
        return crops
    return fn.flip(crops, horizontal=0, vertical=fn.random.coin_flip(probability=prob))


def _val_size(crop_size, crop_pct, resize_size):
    """The val resize's size: ``resize_size`` (torchvision's ``--val-resize-size``), else timm's
    ``floor(crop_size / crop_pct)`` (256 for 224 at 0.875)."""
    if resize_size is not None:
        return resize_size
    return math.floor(crop_size / crop_pct + 1e-9)  # 224 / 0.875 is 256 exactly, not 255.99...


@dataclasses.dataclass(frozen=True)
class RandomResizedCrop:
    """ImageNet's augmentation (torchvision's ``RandomResizedCrop``) and eval transform (timm's three crop modes).

    Train: a crop of a share of the area uniform in ``scale`` and an aspect ratio (width / height)
    log-uniform in ``ratio``, the first of 10 tries that fits (torchvision's ``get_params``), resized
    to ``crop_size`` squared, flipped. Val, with ``s = resize_size`` or ``floor(crop_size / crop_pct)``:

    - ``"center"``: torchvision's ``Resize(s)`` (shorter side to ``s``) and ``CenterCrop(crop_size)``, to the pixel;
    - ``"squash"``: timm's ``Resize((s, s))`` and ``CenterCrop(crop_size)``;
    - ``"border"``: timm's ``ResizeKeepRatio(s, longest=1)`` (the longer side to ``s``) and
      ``CenterCropOrPad(crop_size)``, padding with the mean colour rounded to uint8.

    Args:
        crop_size: side of the output images.
        scale: ``(lo, hi)``, the crop's share of the image's area (torchvision's and timm's ``scale``).
        ratio: ``(lo, hi)``, the crop's aspect ratio, width / height (their ``ratio``).
        hflip: probability of a horizontal flip in training (done by the mixup operator).
        vflip: probability of a vertical flip in training.
        interpolation: the train resize's filter (``INTERPOLATIONS`` or ``"random"``, bilinear or
            bicubic per sample) and the val resize's (not ``"random"``).
        adjust_orientation: apply the EXIF orientation tag of encoded images (see :func:`decode`).
        crop_pct: val's center crop as a share of the resized image (timm's ``crop_pct``).
        crop_mode: val's ``"center"``, ``"squash"`` or ``"border"`` (timm's ``crop_mode``).
        resize_size: val's resize size; None is ``floor(crop_size / crop_pct)``.
        mean: the mean colour (0-255) that ``"border"`` pads with.
    """

    crop_size: int
    scale: tuple = (0.08, 1.0)
    ratio: tuple = (3 / 4, 4 / 3)
    hflip: float = 0.5
    vflip: float = 0.0
    interpolation: str = "bilinear"
    adjust_orientation: bool = False
    crop_pct: float = DEFAULT_CROP_PCT
    crop_mode: str = "center"
    resize_size: int = None
    mean: tuple = (0.485 * 255, 0.456 * 255, 0.406 * 255)
    name = "random_resized_crop"

    def _window(self):
        return {"random_area": list(self.scale), "random_aspect_ratio": list(self.ratio), "num_attempts": 10}

    def window(self, images, *, encoded):
        """``(anchor, shape)``: each image's random crop, ``[y, x]`` and ``[height, width]`` (int64), drawn by
        DALI's crop generator (the law of ``fn.decoders.image_random_crop``) from the image's shape, which for
        encoded images is read from their headers."""
        if encoded:
            shape = fn.peek_image_shape(images, dtype=types.INT64, adjust_orientation=self.adjust_orientation)
        else:
            shape = images.shape(dtype=types.INT64)
        return fn.random_crop_generator(shape[0:2], **self._window())

    def crop(self, images, *, encoded, device, window=None):
        """The random crops before their resize (uint8 HWC); ``window`` is :meth:`window`'s, drawn here if None."""
        anchor, shape = window or self.window(images, encoded=encoded)
        if encoded:
            # The decoder decodes only the crop's region of each JPEG (the same pixels as the whole image's).
            return fn.decoders.image_slice(images, anchor, shape, axes=[0, 1], output_type=types.RGB,
                                           adjust_orientation=self.adjust_orientation, **_decoder_args(device))
        return fn.slice(images, start=anchor, shape=shape, axes=[0, 1])

    def train(self, images, *, encoded, device, image_size, resize_later=False):
        """``(crops, resize)``: uint8 HWC crops; the horizontal flip and the normalization follow in
        :func:`dali_mixup.mixup`. With ``resize_later`` (nothing in between needs the crops at their size), the
        crops come as cut, and ``resize`` (a ``dali_mixup.mixup.Resize``) is for ``mixup`` to do in its pass;
        otherwise (and for ``"nearest"``, or with a vertical flip) they come resized and ``resize`` is None."""
        crops = self.crop(images, encoded=encoded, device=device)
        resample = _resample(self.interpolation) if resize_later and not self.vflip else None
        if resample is not None:
            return crops, Resize((self.crop_size, self.crop_size), resample)
        crops = fn.resize(crops, resize_x=self.crop_size, resize_y=self.crop_size,
                          interp_type=_interpolation(self.interpolation))
        return _vflip(crops, self.vflip), None

    def val(self, images, *, encoded, device, image_size, resize_later=False):
        """``(images, window, resize)``: resized uint8 HWC images and the center crop for ``crop_mirror_normalize``;
        or with ``resize_later``, for the ``"center"`` and ``"squash"`` modes, the decoded images, no window,
        and the resize and its window as a ``dali_mixup.mixup.Resize`` for ``mixup`` to do in its pass."""
        if encoded:
            shape = fn.peek_image_shape(images, dtype=types.INT32, adjust_orientation=self.adjust_orientation)
            images = decode(images, device=device, adjust_orientation=self.adjust_orientation)
        else:
            shape = images.shape(dtype=types.INT32)
        size = _val_size(self.crop_size, self.crop_pct, self.resize_size)
        height, width = shape[0], shape[1]
        if self.crop_mode == "squash":
            out_height = out_width = size
        elif self.crop_mode == "border":  # the longer side to `size`, the shorter rounded as timm's
            longer = dmath.max(height, width)
            out_height, out_width = _divide_half_even(height * size, longer), _divide_half_even(width * size, longer)
        else:  # torchvision's Resize(size): the shorter side to `size`, the longer truncated
            shorter = dmath.min(height, width)
            out_height, out_width = height * size // shorter, width * size // shorter
        corner_y, corner_x = _center_corner(out_height, self.crop_size), _center_corner(out_width, self.crop_size)
        if resize_later and self.crop_mode != "border" and self.interpolation in RESAMPLE:
            resized = fn.stack(_int32(out_height), _int32(out_width))
            offset = fn.stack(_int32(corner_y), _int32(corner_x))
            return images, {}, Resize((self.crop_size, self.crop_size), self.interpolation, resized, offset)
        images = fn.resize(images, resize_x=_float(out_width), resize_y=_float(out_height),
                           interp_type=INTERPOLATIONS[self.interpolation])
        if self.crop_mode == "border":  # the crop can be larger than the image: a slice pads it
            images = fn.slice(images, start=fn.stack(corner_y, corner_x), shape=[self.crop_size, self.crop_size],
                              axes=[0, 1], out_of_bounds_policy="pad",
                              fill_values=[float(min(255, round(m))) for m in self.mean])
            return images, {}, None
        return images, {"crop": (self.crop_size, self.crop_size),
                        "crop_pos_x": _crop_pos(corner_x, out_width - self.crop_size),
                        "crop_pos_y": _crop_pos(corner_y, out_height - self.crop_size)}, None


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
        vflip: probability of a vertical flip in training.
        interpolation: the resize's filter, where there is one (not ``"random"``).
        adjust_orientation: apply the EXIF orientation tag of encoded images (see :func:`decode`).
        pad: the padding, 4 in the paper.
    """

    crop_size: int
    hflip: float = 0.5
    vflip: float = 0.0
    interpolation: str = "bilinear"
    adjust_orientation: bool = False
    pad: int = 4
    name = "pad_crop"

    def _resized(self, images, encoded, device, image_size):
        if encoded:
            images = decode(images, device=device, adjust_orientation=self.adjust_orientation)
        elif image_size == self.crop_size:
            return images  # CIFAR at its own size: nothing to resize
        return fn.resize(images, resize_x=self.crop_size, resize_y=self.crop_size,
                         interp_type=INTERPOLATIONS[self.interpolation])

    def train(self, images, *, encoded, device, image_size, resize_later=False):
        """``(crops, None)``: uint8 HWC crops, already at their size; the horizontal flip and the normalization
        follow in :func:`dali_mixup.mixup`."""
        images = self._resized(images, encoded, device, image_size)
        # The window's corner, in pixels from the image's, one offset in [-pad, pad] per axis.
        corner = fn.random.uniform(values=list(range(-self.pad, self.pad + 1)), shape=[2], dtype=types.INT32)
        crops = fn.slice(images, start=corner, shape=[self.crop_size, self.crop_size], axes=[0, 1],
                         out_of_bounds_policy="pad", fill_values=0)
        return _vflip(crops, self.vflip), None

    def val(self, images, *, encoded, device, image_size, resize_later=False):
        """``(images, window, None)``: uint8 HWC images of the output size, no crop and no resize left to do."""
        return self._resized(images, encoded, device, image_size), {}, None


AUGMENTS = {"random_resized_crop": RandomResizedCrop, "pad_crop": PadCrop}


# ---- crop policies: uint8 HWC crops in, uint8 HWC crops out, in timm's order ----

def _grey(data):
    """PIL's ``convert("L")`` (ITU-R 601-2 luma), one channel."""
    return fn.color_space_conversion(data, image_type=types.RGB, output_type=types.GRAY)


def _blend(data, degenerate, factor):
    """PIL's ``Image.blend(degenerate, data, factor)``: ``degenerate + factor·(data − degenerate)``, clipped to uint8."""
    return fn.cast_like(dmath.clamp(degenerate + (data - degenerate) * factor, 0.0, 255.0), data)


def _brightness(data, factors):
    return fn.brightness(data, brightness=factors[0])


def _contrast(data, factors):
    # PIL's ImageEnhance.Contrast: a blend with the grey level of the image's mean luma.
    mean = fn.reductions.mean(data, axis_names="HW", keep_dims=True)
    luma = fn.reductions.sum(mean * types.Constant(np.array([0.299, 0.587, 0.114], np.float32)), axis_names="C",
                             keep_dims=True)
    return _blend(data, dmath.floor(luma + 0.5), factors[1])


def _saturation(data, factors):
    # PIL's ImageEnhance.Color: a blend with the image's luma.
    return _blend(data, fn.cast(_grey(data), dtype=types.FLOAT), factors[2])


def _hue(data, factors):
    """torchvision's ``adjust_hue``: the HSV hue turned by ``trunc(255·h)/255`` of the circle (its uint8 shift),
    in float HSV (PIL stores H, S and V as uint8 in between)."""
    pixels = fn.cast(data, dtype=types.FLOAT)
    red, green, blue = pixels[:, :, 0], pixels[:, :, 1], pixels[:, :, 2]
    value = dmath.max(dmath.max(red, green), blue)
    spread = value - dmath.min(dmath.min(red, green), blue)
    safe = dmath.max(spread, 1e-6)
    is_red = fn.cast(red == value, dtype=types.FLOAT)
    is_green = (1.0 - is_red) * fn.cast(green == value, dtype=types.FLOAT)
    sextant = (is_red * (green - blue) / safe + is_green * (2.0 + (blue - red) / safe)
               + (1.0 - is_red - is_green) * (4.0 + (red - green) / safe))
    shift = fn.cast(fn.cast(factors[3] * 255.0, dtype=types.INT32), dtype=types.FLOAT) / 255.0
    hue = sextant / 6.0 + shift + 2.0
    hue = (hue - dmath.floor(hue)) * 6.0  # in [0, 6)
    channels = []
    for n in (5.0, 3.0, 1.0):  # HSV to RGB: value - spread * clamp(min(k, 4 - k), 0, 1), k = (n + hue) mod 6
        k = n + hue
        k = k - 6.0 * dmath.floor(k / 6.0)
        channels.append(value - spread * dmath.clamp(dmath.min(k, 4.0 - k), 0.0, 1.0))
    return fn.cast(dmath.clamp(fn.stack(*channels, axis=2), 0.0, 255.0), dtype=types.UINT8)


@dataclasses.dataclass(frozen=True)
class ColorJitter:
    """torchvision's ``ColorJitter(brightness, contrast, saturation, hue)``, as timm's ``color_jitter`` makes it.

    Each crop draws a factor per op, uniform in ``[max(0, 1 − b), 1 + b]`` for brightness, contrast and
    saturation and in ``[−h, h]`` for hue, and applies the ops that are on in a random order
    (torchvision's ``torch.randperm(4)``), as PIL's ``ImageEnhance`` does: brightness scales the
    pixels, contrast blends with the grey of the mean luma, saturation with the luma; hue turns the
    HSV hue by ``h`` of the circle (about 45 DALI operators a crop, where hue is on). With
    ``prob`` (timm's ``color_jitter_prob``, torchvision's ``RandomApply``) a crop is jittered at all
    with that probability.

    Args:
        brightness, contrast, saturation: the jitter's strength, ``>= 0`` (0: off).
        hue: the hue's, in ``[0, 0.5]``.
        prob: the probability of jittering a crop; None is always.
    """

    brightness: float
    contrast: float
    saturation: float
    hue: float = 0.0
    prob: float = None

    def _on(self):
        return [k for k, strength in enumerate((self.brightness, self.contrast, self.saturation, self.hue)) if strength]

    def factors(self):
        """Every crop's four factors (float32 ``[4]``; an op that is off gets 1, or 0 for hue) and its order of
        the ops that are on (int32 ``[len(on)]``, their indices into brightness, contrast, saturation, hue)."""
        draws = []
        for k, strength in enumerate((self.brightness, self.contrast, self.saturation)):
            draws.append(fn.random.uniform(range=[max(0.0, 1.0 - strength), 1.0 + strength]) if strength
                         else types.Constant(1.0))
        draws.append(fn.random.uniform(range=[-self.hue, self.hue]) if self.hue else types.Constant(0.0))
        on = self._on()
        orders = types.Constant(np.array(list(itertools.permutations(on)), np.int32))
        order = orders[fn.random.uniform(values=list(range(math.factorial(len(on)))), dtype=types.INT32)]
        return fn.stack(*draws), order

    def _jitter(self, crops):
        factors, order = self.factors()
        ops = [_brightness, _contrast, _saturation, _hue]
        for k in range(len(self._on())):
            crops = select(ops, order[k], crops, factors=factors)
        return crops

    def apply(self, crops, crop_size):
        if self.prob is None:
            return self._jitter(crops)
        if _coin(self.prob):
            crops = self._jitter(crops)
        return crops


@dataclasses.dataclass(frozen=True)
class RandomGrayscale:
    """torchvision's ``RandomGrayscale(prob)``: with probability ``prob`` a crop becomes its luma, in three channels."""

    prob: float

    def apply(self, crops, crop_size):
        if _coin(self.prob):
            crops = fn.color_space_conversion(_grey(crops), image_type=types.GRAY, output_type=types.RGB)
        return crops


@dataclasses.dataclass(frozen=True)
class GaussianBlur:
    """timm's ``gaussian_blur_prob``: torchvision's ``GaussianBlur(kernel_size=23)`` with probability ``prob``,
    σ uniform in [0.1, 2] per crop, the same on both axes, the border reflected (torch's ``reflect``)."""

    prob: float
    kernel: int = 23
    sigma: tuple = (0.1, 2.0)

    def apply(self, crops, crop_size):
        if _coin(self.prob):
            sigma = fn.random.uniform(range=list(self.sigma))
            crops = fn.gaussian_blur(crops, window_size=self.kernel, sigma=fn.stack(sigma, sigma))
        return crops


def _int(node):
    return fn.cast(node, dtype=types.INT32)


@dataclasses.dataclass(frozen=True)
class RandomErasing:
    """timm's ``RandomErasing(prob, mode, max_count=count)`` on the normalized float crops (HWC), before they are mixed.

    With probability ``prob`` a crop gets ``n`` boxes, ``n`` uniform in ``[1, count]``; each box has a
    share of the area uniform in ``[0.02, 1/3]`` divided by ``n`` and an aspect ratio log-uniform in
    ``[0.3, 1/0.3]``, the first of 10 tries that fits, at a uniform place. The fill is timm's, in
    normalized units: ``"const"`` 0 (the mean colour), ``"rand"`` one N(0, 1) value per channel a
    box, ``"pixel"`` N(0, 1) per pixel and channel.

    Args:
        prob: the probability of erasing a crop.
        mode: ``"const"``, ``"rand"`` or ``"pixel"``.
        count: the most boxes a crop gets (timm's ``re_count``).
    """

    prob: float
    mode: str = "const"
    count: int = 1
    tries = 10
    area = (0.02, 1 / 3)
    aspect = (0.3, 1 / 0.3)

    def boxes(self, size):
        """``(top, left, height, width)``: int32 ``[count]`` each per crop; the boxes it does not get are 0 x 0."""
        shape = [self.count, self.tries]
        boxes = fn.random.uniform(values=list(range(1, self.count + 1)), dtype=types.INT32)  # timm's randint(1, count)
        area = fn.random.uniform(range=list(self.area), shape=shape) * float(size * size) / fn.cast(boxes, dtype=types.FLOAT)
        aspect = dmath.exp(fn.random.uniform(range=[math.log(a) for a in self.aspect], shape=shape))
        heights = _int(dmath.floor(dmath.sqrt(area * aspect) + 0.5))
        widths = _int(dmath.floor(dmath.sqrt(area / aspect) + 0.5))
        fits = _int((heights < size) & (widths < size))
        tries = types.Constant(np.tile(np.arange(self.tries, dtype=np.int32), (self.count, 1)))
        first = fn.reductions.min(tries + self.tries * (1 - fits), axes=1, keep_dims=True)  # `tries` if none fits
        chosen = _int(tries == first)
        erased = _int(fn.random.coin_flip(probability=self.prob))
        wanted = _int(types.Constant(np.arange(self.count, dtype=np.int32)) < boxes) * erased
        height = _int(fn.reductions.sum(heights * chosen, axes=1)) * wanted
        width = _int(fn.reductions.sum(widths * chosen, axes=1)) * wanted
        corner = fn.random.uniform(range=[0.0, 1.0], shape=[2, self.count])
        top = _int(dmath.floor(corner[0] * fn.cast(size - height + 1, dtype=types.FLOAT)))  # randint(0, size - h)
        left = _int(dmath.floor(corner[1] * fn.cast(size - width + 1, dtype=types.FLOAT)))
        return top, left, height, width

    def apply(self, images, crop_size):
        """The normalized HWC crops with their boxes erased."""
        top, left, height, width = self.boxes(crop_size)
        if self.mode == "const":
            anchor = fn.reshape(fn.cast(fn.stack(top, left, axis=1), dtype=types.FLOAT), shape=[-1])
            shape = fn.reshape(fn.cast(fn.stack(height, width, axis=1), dtype=types.FLOAT), shape=[-1])
            return fn.erase(images, anchor=anchor, shape=shape, axis_names="HW", fill_value=0.0)
        # Paste a patch of noise into each box, in turn (a later box covers an earlier one, as timm's).
        patches, anchors, shapes = [], [fn.stack(0 * top[0], 0 * top[0])], [fn.stack(0 * top[0] + crop_size,
                                                                                      0 * top[0] + crop_size)]
        for k in range(self.count):
            if self.mode == "pixel":
                patch = fn.random.normal(shape=fn.stack(height[k], width[k], 3), device=images.device)
            else:
                colour = fn.random.normal(shape=[3])
                patch = fn.ones(shape=fn.stack(height[k], width[k], 1), dtype=types.FLOAT) * colour
                patch = patch.gpu() if images.device == "gpu" else patch
            patches.append(fn.reshape(patch, layout="HWC"))
            anchors.append(fn.stack(top[k], left[k]))
            shapes.append(fn.stack(height[k], width[k]))
        return fn.multi_paste(images, *patches, output_size=[crop_size, crop_size], out_anchors=fn.stack(*anchors),
                              shapes=fn.stack(*shapes))
