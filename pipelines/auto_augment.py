"""Automatic augmentation of the uint8 crops in the graph: timm's RandAugment, and DALI's and torchvision's policies.

``AutoAugment(name)`` parses a policy's name and ``apply(crops, crop_size)`` adds it to a graph
(with ``enable_conditionals=True``):

- ``"rand-m<M>-n<N>-p<P>-mstd<S>-mmax<X>-inc<0|1>"`` (any order; a bare ``"rand"`` is timm's defaults,
  m=10, n=2, p=0.5): **timm's RandAugment** (``timm.data.auto_augment.rand_augment_transform``),
  as timm 1.0.31 parses and applies it: N layers, each an op drawn uniformly with replacement
  from timm's 15 (``_RAND_TRANSFORMS``, or ``_RAND_INCREASING_TRANSFORMS`` with ``inc1``) and
  applied with probability P, at a magnitude drawn for that application from N(M, S) (uniform in
  [0, M] where S > 100), clipped to [0, X or 10]; each op's parameter is timm's
  ``LEVEL_TO_ARG`` of that magnitude (table below), a random sign where timm has one. The
  magnitude is kept to 0.01 (DALI's augmentations take magnitude bins; 1,001 of them over
  [0, 10]). ``m``, ``n`` and ``mmax`` must be integers and ``p`` and ``mstd`` numbers, as in timm;
  an unknown section is an error (timm ignores a section without digits and asserts on the
  others); transform sets (``t...``) are refused.
- ``"dali-rand-m<M>-n<N>[-inc0|-inc1]"``: DALI's own RandAugment (every chosen op applied, at the
  fixed magnitude M on the 0-10 scale, from DALI's 14 ops; ``inc1``: DALI's ``monotonic_mag``).
- ``"ra"``, ``"ta_wide"``, ``"imagenet"``: torchvision's reference names (``--auto-augment``):
  RandAugment (2 ops at magnitude 9 of 31 bins, each applied), TrivialAugmentWide and AutoAugment's
  ImageNet policy, run with DALI's implementations of the same policies (``trivial`` and
  ``autoaugment`` are kept as aliases of the last two). ``"augmix"`` is refused: AugMix blends
  three chains of one to three ops each with the original under Dirichlet and Beta weights,
  three more copies of every crop through the graph, which this loader does not build.

timm's ops and their parameters at level L (0-10), as DALI runs them:

| op | parameter | DALI |
| --- | --- | --- |
| AutoContrast, Equalize, Invert | none | Equalize is OpenCV's histogram formula, which differs from PIL's |
| Rotate | ±3·L degrees | ``fn.rotate`` |
| Posterize (inc: PosterizeIncreasing) | int(0.4·L) bits kept (inc: 4 − that; 0 bits is black, as Pillow < 13) | a bit mask |
| Solarize (inc: SolarizeIncreasing) | pixels ≥ min(256, int(25.6·L)) inverted (inc: 256 − that) | |
| SolarizeAdd | min(128, int(11·L)) added to pixels < 128 | |
| Color, Contrast, Brightness, Sharpness | factor 0.18·L + 0.1 (inc: max(0.1, 1 ± 0.09·L)) | ``fn.saturation`` (HSV, where PIL blends with grey) |
| ShearX, ShearY | ±0.03·L, about the corner as PIL's affine | ``fn.warp_affine`` |
| TranslateXRel, TranslateYRel | ±0.045·L of the crop's width (height) | ``fn.warp_affine`` |

The geometric ops fill with one grey (the mean of the normalization's mean colour, 115 for
ImageNet's), as DALI's warps take one value where timm fills with the mean colour (124, 116,
104); they interpolate bilinearly, timm's ``create_transform`` default.
"""

import dataclasses
import math
import re
import warnings

import numpy as np
import nvidia.dali.math as dmath
from nvidia.dali import fn, types
from nvidia.dali.auto_aug import augmentations as dali_ops
from nvidia.dali.auto_aug.core import select

TIMM_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
            "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
# timm's _RAND_INCREASING_TRANSFORMS: the same places, six ops whose strength grows with the level.
TIMM_INCREASING = {"Posterize": "PosterizeIncreasing", "Solarize": "SolarizeIncreasing", "Color": "ColorIncreasing",
                   "Contrast": "ContrastIncreasing", "Brightness": "BrightnessIncreasing",
                   "Sharpness": "SharpnessIncreasing"}
TORCHVISION_POLICIES = {"ra": "ra", "ta_wide": "ta_wide", "trivial": "ta_wide", "imagenet": "imagenet",
                        "autoaugment": "imagenet"}


# ---- timm's ops: each takes the crops, each sample's level (float, in [0, mmax]) and sign (+1 or -1), and
# computes timm's parameter (LEVEL_TO_ARG) from them in the graph, so a magnitude is continuous as timm's ----

def _u8(node):
    return fn.cast(node, dtype=types.UINT8)


def _warp(data, matrix, fill):
    # PIL's Image.transform(AFFINE) takes the map from the output's pixels to the input's, as inverse_map does.
    return fn.warp_affine(data, matrix=matrix, fill_value=fill, interp_type=types.INTERP_LINEAR, inverse_map=True)


def _auto_contrast(data, level, sign, shape, fill):
    return dali_ops.auto_contrast._op(data, None)


def _equalize(data, level, sign, shape, fill):
    return fn.equalize(data)


def _invert(data, level, sign, shape, fill):
    return types.Constant(255, dtype=types.UINT8) - data


def _rotate(data, level, sign, shape, fill):
    return fn.rotate(data, angle=level * sign * 3.0, fill_value=fill, keep_size=True, interp_type=types.INTERP_LINEAR)


def _posterize_bits(data, bits):
    # Keep the top `bits` bits: AND with 256 - 2 ** (8 - bits) (0 bits: black, as Pillow before 13).
    return data & _u8(256.0 - dmath.pow(2.0, 8.0 - bits))


def _posterize(data, level, sign, shape, fill):
    return _posterize_bits(data, dmath.floor(level * 4.0 / 10.0))


def _posterize_increasing(data, level, sign, shape, fill):
    return _posterize_bits(data, 4.0 - dmath.floor(level * 4.0 / 10.0))


def _solarize_at(data, threshold):
    inverted = fn.cast(fn.cast(data, dtype=types.FLOAT) >= threshold, dtype=types.UINT8)
    kept = types.Constant(1, dtype=types.UINT8) - inverted
    return _u8(kept * data + inverted * (types.Constant(255, dtype=types.UINT8) - data))


def _solarize(data, level, sign, shape, fill):
    return _solarize_at(data, dmath.min(256.0, dmath.floor(level * 256.0 / 10.0)))


def _solarize_increasing(data, level, sign, shape, fill):
    return _solarize_at(data, 256.0 - dmath.min(256.0, dmath.floor(level * 256.0 / 10.0)))


def _solarize_add(data, level, sign, shape, fill):
    low = fn.cast(data < types.Constant(128, dtype=types.UINT8), dtype=types.UINT8)
    return _u8(data + low * _u8(dmath.min(128.0, dmath.floor(level * 110.0 / 10.0))))


def _factor(level, sign, increasing):
    """The enhance ops' factor: 1.8·L/10 + 0.1, or with ``increasing`` max(0.1, 1 ± 0.9·L/10)."""
    if increasing:
        return dmath.max(0.1, 1.0 + level * sign * 0.9 / 10.0)
    return level * 1.8 / 10.0 + 0.1


def _enhance_ops(increasing):
    def color(data, level, sign, shape, fill):
        return fn.saturation(data, saturation=_factor(level, sign, increasing))

    def contrast(data, level, sign, shape, fill):
        return dali_ops.contrast._op(data, _factor(level, sign, increasing))

    def brightness(data, level, sign, shape, fill):
        return fn.brightness(data, brightness=_factor(level, sign, increasing))

    def sharpness(data, level, sign, shape, fill):
        # PIL's: a blend of the image with its 3x3 smoothing, as one kernel per sample.
        change = _factor(level, sign, increasing) - 1.0
        blur = types.Constant(np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13)
        identity = types.Constant(np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], np.float32))
        return fn.filter(data, identity * (1.0 + change) - blur * change)

    return color, contrast, brightness, sharpness


def _shear_x(data, level, sign, shape, fill):
    return _warp(data, fn.transforms.shear(shear=fn.stack(level * sign * 0.3 / 10.0, 0.0 * level)), fill)


def _shear_y(data, level, sign, shape, fill):
    return _warp(data, fn.transforms.shear(shear=fn.stack(0.0 * level, level * sign * 0.3 / 10.0)), fill)


def _translate_x(data, level, sign, shape, fill):
    return _warp(data, fn.transforms.translation(offset=fn.stack(level * sign * 0.45 / 10.0 * shape[1], 0.0 * level)),
                 fill)


def _translate_y(data, level, sign, shape, fill):
    return _warp(data, fn.transforms.translation(offset=fn.stack(0.0 * level, level * sign * 0.45 / 10.0 * shape[0])),
                 fill)


def timm_suite(increasing):
    """timm's 15 ops in ``_RAND_TRANSFORMS`` order (``increasing``: ``_RAND_INCREASING_TRANSFORMS``)."""
    color, contrast, brightness, sharpness = _enhance_ops(increasing)
    return [_auto_contrast, _equalize, _invert, _rotate, _posterize_increasing if increasing else _posterize,
            _solarize_increasing if increasing else _solarize, _solarize_add, color, contrast, brightness, sharpness,
            _shear_x, _shear_y, _translate_x, _translate_y]


@dataclasses.dataclass(frozen=True)
class TimmRandAugment:
    """timm's RandAugment's settings, as its ``rand-...`` string gives them (see the module docstring)."""

    magnitude: int = 10
    layers: int = 2
    prob: float = 0.5
    magnitude_std: float = 0.0
    magnitude_max: int = 10
    increasing: bool = False

    def op_names(self):
        return [TIMM_INCREASING.get(name, name) if self.increasing else name for name in TIMM_OPS]

    def layer_draws(self):
        """One layer's draws for every sample: ``(op, applied, level, sign)``: the op's index (int32), whether it
        is applied (int32 0/1), the magnitude (float32, drawn and clipped to [0, mmax] as timm's) and the sign."""
        op = fn.random.uniform(values=list(range(len(TIMM_OPS))), dtype=types.INT32)
        applied = fn.random.coin_flip(probability=self.prob, dtype=types.INT32)
        if math.isinf(self.magnitude_std):
            level = fn.random.uniform(range=[0.0, float(self.magnitude)])
        else:
            level = fn.random.normal(mean=float(self.magnitude), stddev=float(self.magnitude_std))
        level = dmath.clamp(level, 0.0, float(self.magnitude_max))
        sign = fn.cast(fn.random.coin_flip(probability=0.5, dtype=types.INT32), dtype=types.FLOAT) * 2.0 - 1.0
        return op, applied, level, sign

    def apply(self, crops, crop_size, fill):
        ops = timm_suite(self.increasing)
        shape = types.Constant(np.array([crop_size, crop_size], np.float32))
        for _ in range(self.layers):
            op, applied, level, sign = self.layer_draws()
            if applied:
                crops = select(ops, op, crops, level=level, sign=sign, shape=shape, fill=fill)
        return crops


def _parse_timm(name):
    """:class:`TimmRandAugment` from timm's ``rand-...`` string (timm 1.0.31's grammar, stricter on unknown parts)."""
    parts = name.split("-")
    settings = {}
    for part in parts[1:]:
        if part.startswith("t"):
            raise ValueError(f"auto_augment {name!r}: timm's transform sets ({part!r}: tweights, 3a) are not in the "
                             "graph; drop the section")
        match = re.fullmatch(r"([a-z]+)(\d.*)", part)
        if match is None or match.group(1) not in ("m", "n", "p", "mstd", "mmax", "inc"):
            raise ValueError(f"auto_augment {name!r}: unknown section {part!r}; timm's are m<int>, n<int>, p<float>, "
                             "mstd<float>, mmax<int> and inc<0|1>")
        key, value = match.groups()
        try:
            number = float(value) if key in ("p", "mstd") else int(value)
        except ValueError:
            kind = "a number" if key in ("p", "mstd") else "an integer"
            raise ValueError(f"auto_augment {name!r}: {key} must be {kind}, as timm parses it, got {value!r}") from None
        settings[key] = number
    if "inc" in settings and settings["inc"] not in (0, 1):
        raise ValueError(f"auto_augment {name!r}: inc must be 0 or 1, got {settings['inc']}")
    policy = TimmRandAugment(
        magnitude=settings.get("m", 10), layers=settings.get("n", 2), prob=settings.get("p", 0.5),
        magnitude_std=math.inf if settings.get("mstd", 0.0) > 100 else settings.get("mstd", 0.0),
        magnitude_max=settings.get("mmax", 10), increasing=bool(settings.get("inc", 0)))
    if not (0 <= policy.magnitude <= 30 and policy.layers >= 1 and 0 <= policy.prob <= 1 and policy.magnitude_std >= 0
            and 1 <= policy.magnitude_max <= 30):
        raise ValueError(f"auto_augment {name!r}: needs 0 <= m <= 30, n >= 1, 0 <= p <= 1, mstd >= 0 and "
                         "1 <= mmax <= 30")
    return policy


def _parse_dali(name):
    match = re.fullmatch(r"dali-rand((?:-[a-z]+\d+)*)", name)
    options = dict(re.findall(r"-([a-z]+)(\d+)", match.group(1))) if match else None
    if options is None or set(options) - {"m", "n", "inc"}:
        raise ValueError(f"auto_augment {name!r}: DALI's RandAugment is 'dali-rand-m<M>-n<N>[-inc0|-inc1]' "
                         "(no magnitude noise, every chosen op applied)")
    magnitude, ops, increasing = int(options.get("m", 10)), int(options.get("n", 2)), options.get("inc", "0")
    if not 0 <= magnitude <= 10 or ops < 1 or increasing not in ("0", "1"):
        raise ValueError(f"auto_augment {name!r}: m must be 0-10, n >= 1 and inc 0 or 1")
    return {"m": magnitude, "n": ops, "num_magnitude_bins": 11, "monotonic_mag": increasing == "1"}


@dataclasses.dataclass(frozen=True)
class AutoAugment:
    """An automatic augmentation of the uint8 crops by its name (see the module docstring); the name is checked
    when it is made.

    Args:
        name: ``"rand-..."`` (timm's), ``"dali-rand-..."`` (DALI's), ``"ra"``, ``"ta_wide"``, ``"imagenet"``
            (torchvision's names), ``"trivial"`` or ``"autoaugment"``.
        mean: the normalization's mean colour (0-255): timm's geometric ops fill with it (here with its
            mean, one grey).
    """

    name: str
    mean: tuple = (0.485 * 255, 0.456 * 255, 0.406 * 255)

    def __post_init__(self):
        self.parsed()

    def parsed(self):
        """``(kind, settings)``: ``("timm", TimmRandAugment)``, ``("dali-rand", options)`` or ``(policy, {})``."""
        if not isinstance(self.name, str):
            raise ValueError(f"auto_augment must be a policy's name, got {self.name!r}")
        if self.name in TORCHVISION_POLICIES:
            return TORCHVISION_POLICIES[self.name], {}
        if self.name == "augmix":
            raise ValueError("auto_augment 'augmix' is refused: AugMix blends three chains of ops with the original "
                             "crop, three more copies of every crop through the graph, which this loader does not build")
        if self.name == "rand" or self.name.startswith("rand-"):
            return "timm", _parse_timm(self.name)
        if self.name.startswith("dali-rand"):
            return "dali-rand", _parse_dali(self.name)
        raise ValueError(f"auto_augment must be 'rand-...' (timm's RandAugment), 'dali-rand-...', 'ra', 'ta_wide', "
                         f"'imagenet', 'trivial' or 'autoaugment', got {self.name!r}")

    def apply(self, crops, crop_size):
        """The augmented crops; the pipeline needs ``enable_conditionals=True``."""
        from nvidia.dali.auto_aug import auto_augment, rand_augment, trivial_augment

        kind, settings = self.parsed()
        shape = (crop_size, crop_size)
        # DALI's own auto_aug calls the experimental aliases of operators it ships, and DALI shows
        # their deprecation whatever the filters say: drop those, pass any other warning on.
        with warnings.catch_warnings(record=True) as caught:
            if kind == "timm":
                crops = settings.apply(crops, crop_size, fill=float(round(sum(self.mean) / 3)))
            elif kind == "dali-rand":
                crops = rand_augment.rand_augment(crops, shape=shape, **settings)
            elif kind == "ra":
                crops = rand_augment.rand_augment(crops, n=2, m=9, num_magnitude_bins=31, shape=shape)
            elif kind == "ta_wide":
                crops = trivial_augment.trivial_augment_wide(crops, shape=shape)
            else:
                crops = auto_augment.auto_augment(crops, policy_name="image_net", shape=shape)
        for warning in caught:
            if "nvidia.dali.fn.experimental." not in str(warning.message):
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return crops
