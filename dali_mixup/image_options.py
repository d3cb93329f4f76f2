"""make_loader's image options, checked and turned into the crop, the crop policies and the erasing of
``pipelines.augment``, in the terms of timm's ``create_transform`` and torchvision's reference scripts.

:class:`ImageOptions` checks every option when it is made, naming the option, so that a trainer can
check its flags before it reads any data; :meth:`ImageOptions.build` then makes the graph's pieces
for a source (whose image size, mean and std give the defaults) and a split.
"""

import dataclasses
import logging
import numbers

from pipelines import augment as augment_lib
from pipelines.auto_augment import AutoAugment

log = logging.getLogger("dali_mixup")

# The options that change only the train crops; a val loader refuses them (its augmentation is none).
TRAIN_ONLY = ("auto_augment", "color_jitter", "color_jitter_prob", "grayscale_prob", "gaussian_blur_prob", "reprob")


_RANDOM_INTERPOLATION = ("interpolation='random' (bilinear or bicubic per crop) is for the train split's "
                         "random-resized crops")


def _fraction(name, value, low=0.0, *, low_open=False):
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not (low < value <= 1 if low_open else low <= value <= 1)):
        interval = f"({low:g}, 1]" if low_open else f"[{low:g}, 1]"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")


def _pair(name, value, check):
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
            or not check(*value)):
        raise ValueError(f"{name} must be (lo, hi) with {check.__doc__}, got {value!r}")
    return float(value[0]), float(value[1])


def _scale_ok(lo, hi):
    """0 < lo <= hi <= 1"""
    return 0 < lo <= hi <= 1


def _ratio_ok(lo, hi):
    """0 < lo <= hi"""
    return 0 < lo <= hi


def _channels(name, value):
    if (not isinstance(value, (tuple, list)) or len(value) != 3
            or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"{name} must be 3 numbers, one per channel, on the 0-1 scale (timm's), got {value!r}")
    return tuple(float(v) for v in value)


def _color_jitter(value):
    """timm's ``color_jitter``: a number for brightness, contrast and saturation (no hue), or 3 or 4 of them."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = (float(value),) * 3
    if (not isinstance(value, (tuple, list)) or len(value) not in (3, 4)
            or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and v >= 0 for v in value)
            or (len(value) == 4 and value[3] > 0.5)):
        raise ValueError("color_jitter must be a number >= 0 (brightness, contrast and saturation, as timm's) or "
                         f"3 or 4 of them (brightness, contrast, saturation[, hue <= 0.5]), got {value!r}")
    return tuple(float(v) for v in value)


@dataclasses.dataclass(frozen=True)
class ImageOptions:
    """make_loader's image options (see its docstring for each); checked when made.

    Raises:
        ValueError, TypeError: for a bad option, naming it.
    """

    crop_size: int = None
    augment: str = None
    scale: tuple = None
    ratio: tuple = (3 / 4, 4 / 3)
    min_crop_area: float = None
    hflip: float = 0.5
    vflip: float = 0.0
    interpolation: str = "bilinear"
    adjust_orientation: bool = False
    crop_pct: float = None
    crop_mode: str = "center"
    resize_size: int = None
    mean: tuple = None
    std: tuple = None
    auto_augment: str = None
    color_jitter: object = None
    color_jitter_prob: float = None
    grayscale_prob: float = 0.0
    gaussian_blur_prob: float = 0.0
    reprob: float = 0.0
    remode: str = "const"
    recount: int = 1

    def __post_init__(self):
        for name in ("crop_size", "resize_size"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be an int or None, got {type(value).__name__} ({value!r})")
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.augment is not None and self.augment not in augment_lib.AUGMENTS:
            raise ValueError(f"augment must be one of {tuple(augment_lib.AUGMENTS)} (or None for the dataset's own), "
                             f"got {self.augment!r}")
        if self.scale is not None and self.min_crop_area is not None:
            raise ValueError(f"scale={self.scale!r} and min_crop_area={self.min_crop_area!r}: give one (min_crop_area "
                             "is scale's lower bound, kept from before scale)")
        if self.min_crop_area is not None:
            _fraction("min_crop_area", self.min_crop_area, low_open=True)
        if self.scale is not None:
            object.__setattr__(self, "scale", _pair("scale", self.scale, _scale_ok))
        object.__setattr__(self, "ratio", _pair("ratio", self.ratio, _ratio_ok))
        for name in ("hflip", "vflip", "grayscale_prob", "gaussian_blur_prob", "reprob"):
            _fraction(name, getattr(self, name))
        if self.color_jitter_prob is not None:
            _fraction("color_jitter_prob", self.color_jitter_prob)
            if self.color_jitter is None:
                raise ValueError("color_jitter_prob needs color_jitter")
        if self.crop_pct is not None:
            _fraction("crop_pct", self.crop_pct, low_open=True)
            if self.resize_size is not None:
                raise ValueError(f"crop_pct={self.crop_pct} and resize_size={self.resize_size}: give one (both set "
                                 "the val resize)")
        augment_lib.check_interpolation("interpolation", self.interpolation, random_ok=True)
        if self.interpolation == "random" and self.augment == "pad_crop":
            raise ValueError(_RANDOM_INTERPOLATION)
        if self.crop_mode not in augment_lib.CROP_MODES:
            raise ValueError(f"crop_mode must be one of {augment_lib.CROP_MODES}, got {self.crop_mode!r}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std go together: give both or neither (the dataset's)")
        if self.mean is not None:
            object.__setattr__(self, "mean", _channels("mean", self.mean))
            object.__setattr__(self, "std", _channels("std", self.std))
            if not all(s > 0 for s in self.std):
                raise ValueError(f"std must be > 0, got {self.std!r}")
        if not isinstance(self.adjust_orientation, bool):
            raise TypeError(f"adjust_orientation must be a bool, got {type(self.adjust_orientation).__name__}")
        if self.auto_augment is not None:
            AutoAugment(self.auto_augment)
        if self.color_jitter is not None:
            object.__setattr__(self, "color_jitter", _color_jitter(self.color_jitter))
        if self.remode not in ("const", "rand", "pixel"):
            raise ValueError(f"remode must be 'const', 'rand' or 'pixel' (timm's), got {self.remode!r}")
        if isinstance(self.recount, bool) or not isinstance(self.recount, numbers.Integral) or self.recount < 1:
            raise ValueError(f"recount must be an int >= 1, got {self.recount!r}")

    def changed(self):
        """The names of the options not at their defaults."""
        return [field.name for field in dataclasses.fields(self) if getattr(self, field.name) != field.default]

    def check_split(self, split):
        """Refuse the train-only options (``TRAIN_ONLY``) on another split."""
        if split != "train" and self.interpolation == "random":
            raise ValueError(_RANDOM_INTERPOLATION)
        if split != "train":
            given = [name for name in TRAIN_ONLY if name in self.changed()]
            if given:
                raise ValueError(f"{', '.join(given)} apply to split='train' only")

    def normalize(self, source):
        """``(mean, std)`` on the 0-255 scale: the options', else the source's."""
        if self.mean is None:
            return tuple(source.mean), tuple(source.std)
        return tuple(255 * m for m in self.mean), tuple(255 * s for s in self.std)

    def crop(self, source, training):
        """The source's crop (``pipelines.augment.RandomResizedCrop`` or ``PadCrop``) with these options."""
        crop_size = self.crop_size or source.image_size or 224
        kind = self.augment or ("pad_crop" if source.image_size else "random_resized_crop")
        interpolation = self.interpolation
        if interpolation == "random" and not (training and kind == "random_resized_crop"):
            raise ValueError(_RANDOM_INTERPOLATION)
        common = {"crop_size": crop_size, "hflip": self.hflip, "vflip": self.vflip, "interpolation": interpolation,
                  "adjust_orientation": self.adjust_orientation}
        if kind == "pad_crop":  # it has no crop law and no val resize: refuse their options rather than ignore them
            given = [name for name in ("scale", "ratio", "min_crop_area", "crop_pct", "crop_mode", "resize_size")
                     if name in self.changed()]
            if given:
                raise ValueError(f"{', '.join(given)} apply to augment='random_resized_crop', not 'pad_crop'")
            return augment_lib.PadCrop(**common)
        scale = self.scale or (self.min_crop_area or 0.08, 1.0)
        return augment_lib.RandomResizedCrop(
            **common, scale=scale, ratio=self.ratio, crop_pct=self.crop_pct or augment_lib.DEFAULT_CROP_PCT,
            crop_mode=self.crop_mode, resize_size=self.resize_size, mean=self.normalize(source)[0])

    def policies(self, source):
        """The train crop policies, in timm's order: the automatic augmentation or the color jitter, then
        grayscale, then blur."""
        policies = []
        if self.auto_augment is not None:
            policies.append(AutoAugment(self.auto_augment, mean=self.normalize(source)[0]))
            if self.color_jitter is not None:
                log.warning("dali_mixup: color_jitter=%s is off because auto_augment=%r is on, as in timm's "
                            "create_transform", self.color_jitter, self.auto_augment)
        elif self.color_jitter is not None:
            policies.append(augment_lib.ColorJitter(*self.color_jitter, prob=self.color_jitter_prob))
        if self.grayscale_prob:
            policies.append(augment_lib.RandomGrayscale(self.grayscale_prob))
        if self.gaussian_blur_prob:
            policies.append(augment_lib.GaussianBlur(self.gaussian_blur_prob))
        return policies

    def erasing(self):
        """timm's random erasing of the normalized crops, or None."""
        if not self.reprob:
            return None
        return augment_lib.RandomErasing(self.reprob, self.remode, self.recount)

