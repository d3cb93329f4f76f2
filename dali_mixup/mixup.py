"""The mixup and CutMix operator: a DALI graph fragment for use inside any ``@pipeline_def``."""

import dataclasses
import functools
import logging
import math
import numbers
import os

import numpy as np
import nvidia.dali.math as dmath
from nvidia.dali import fn, types
from nvidia.dali.pipeline import Pipeline

log = logging.getLogger("dali_mixup")


def _number(name, value, low, high=math.inf, *, high_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    if not (low <= value < high if high_open else low <= value <= high):  # also refuses NaN
        upper = f"{high:g})" if high_open else ("inf)" if high == math.inf else f"{high:g}]")
        raise ValueError(f"{name} must be in [{low:g}, {upper}, got {value}")


@dataclasses.dataclass(frozen=True)
class Mixing:
    """How a batch is mixed, in the terms of timm's ``Mixup``; the arguments are checked when it is made.

    Args:
        alpha: mixup's λ ~ Beta(α, α); 0 turns mixup off.
        cutmix_alpha: CutMix's λ ~ Beta(α, α); 0 turns CutMix off unless ``cutmix_minmax`` is set.
        cutmix_minmax: ``(lo, hi)``: CutMix box sides uniform in ``[lo·H, hi·H)`` and
            ``[lo·W, hi·W)``, placed inside the image (timm's ``rand_bbox_minmax``), instead of
            sides ``int(H·√(1−λ))`` and ``int(W·√(1−λ))`` around a uniform centre (``rand_bbox``).
        prob: the probability of mixing at all; a sample left alone keeps its image and its one-hot target.
        switch_prob: with both mixup and CutMix on, the probability of CutMix instead of mixup.
        per_sample: draw λ, the switch, ``prob`` and the box for every sample (timm's ``elem``
            mode) instead of once for the batch.
        pairs: timm's ``pair`` mode: samples ``i`` and ``B − 1 − i`` mix with each other, both ways,
            with one draw of λ, the switch, ``prob`` and the box for the pair (the batch must be
            full and even; not with ``per_sample``).
        correct_lam: CutMix's target weight becomes ``1 − box area / (H·W)``, the share of its own
            pixels (always so with ``cutmix_minmax``).
        label_smoothing: ε in ``[0, 1)``: the one-hot rows become ``(1 − ε)·onehot + ε/C``.
    """

    alpha: float = 0.0
    cutmix_alpha: float = 0.0
    cutmix_minmax: tuple = None
    prob: float = 1.0
    switch_prob: float = 0.5
    per_sample: bool = False
    pairs: bool = False
    correct_lam: bool = True
    label_smoothing: float = 0.0

    def __post_init__(self):
        _number("alpha", self.alpha, 0.0)
        _number("cutmix_alpha", self.cutmix_alpha, 0.0)
        _number("prob", self.prob, 0.0, 1.0)
        _number("switch_prob", self.switch_prob, 0.0, 1.0)
        _number("label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)
        for name in ("per_sample", "pairs", "correct_lam"):
            if not isinstance(getattr(self, name), bool):
                value = getattr(self, name)
                raise TypeError(f"{name} must be a bool, got {type(value).__name__} ({value!r})")
        if self.cutmix_minmax is not None:
            minmax = self.cutmix_minmax
            if (not isinstance(minmax, (tuple, list)) or len(minmax) != 2
                    or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in minmax)
                    or not 0 < minmax[0] < minmax[1] <= 1):
                raise ValueError(f"cutmix_minmax must be (lo, hi) with 0 < lo < hi <= 1, got {minmax!r}")
            object.__setattr__(self, "cutmix_minmax", (float(minmax[0]), float(minmax[1])))
        if self.per_sample and self.pairs:
            raise ValueError("per_sample (timm's mode='elem') and pairs (its mode='pair') are two modes: choose one")

    @property
    def cutmix(self):
        return self.cutmix_alpha > 0 or self.cutmix_minmax is not None

    @property
    def mixes(self):
        return self.alpha > 0 or self.cutmix


# The filters of the fused resize, by the codes of MixupNormalize's `resample` (csrc/resample.h), and the
# DALI filters the composed fallback resizes with (antialiased where they shrink, as Pillow's).
RESAMPLE = {"bilinear": 0, "bicubic": 1, "lanczos": 2}
_DALI_FILTERS = (types.INTERP_TRIANGULAR, types.INTERP_CUBIC, types.INTERP_LANCZOS3)


@dataclasses.dataclass(frozen=True)
class Resize:
    """A resize of each crop, done by :func:`mixup` before it flips, normalizes and mixes them.

    The fused operator resizes as Pillow 13 does (torchvision's ``Resize`` and ``RandomResizedCrop``
    on PIL images, to the bit; ``csrc/resample.h``); without it, ``fn.resize`` and ``fn.slice`` do.

    Args:
        size: ``(height, width)`` of the output.
        resample: ``"bilinear"``, ``"bicubic"`` or ``"lanczos"``, or an int32 graph node with one
            code of ``RESAMPLE`` per sample (e.g. bilinear or bicubic drawn per crop).
        resized: None, or an int32 graph node ``[height, width]`` per sample: the size of the whole
            resize whose window of ``size`` at ``offset`` is the output (val's resize then center
            crop); None is ``size``.
        offset: None, or an int32 graph node ``[y, x]`` per sample: the window's corner; None is 0.
    """

    size: tuple
    resample: object = "bilinear"
    resized: object = None
    offset: object = None

    def __post_init__(self):
        size = self.size
        if (not isinstance(size, (tuple, list)) or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)):
            raise ValueError(f"resize's size must be (height, width), ints >= 1, got {size!r}")
        if isinstance(self.resample, str) and self.resample not in RESAMPLE:
            raise ValueError(f"resize's resample must be one of {tuple(RESAMPLE)} or a graph node, got {self.resample!r}")
        if (self.resized is None) != (self.offset is None):
            raise ValueError("resize's resized and offset go together (a window of the whole resize)")

    def arguments(self):
        """MixupNormalize's resize arguments."""
        resample = RESAMPLE[self.resample] if isinstance(self.resample, str) else self.resample
        window = {} if self.resized is None else {"resized": self.resized, "offset": self.offset}
        return {"size": list(self.size), "resample": resample, **window}

    def composed(self, images):
        """The same resize with stock DALI operators (not Pillow's to the bit): uint8 HWC images of ``size``."""
        if isinstance(self.resample, str):
            interp = _DALI_FILTERS[RESAMPLE[self.resample]]
        else:
            interp = fn.cast(types.Constant(np.array([int(f) for f in _DALI_FILTERS], np.int32))[self.resample],
                             dtype=types.DALIDataType.INTERP_TYPE)
        if self.resized is None:
            return fn.resize(images, resize_y=float(self.size[0]), resize_x=float(self.size[1]), interp_type=interp)
        resized = fn.cast(self.resized, dtype=types.FLOAT)
        images = fn.resize(images, resize_y=resized[0], resize_x=resized[1], interp_type=interp)
        return fn.slice(images, start=self.offset, shape=list(self.size), axes=[0, 1])


def _check_normalize_args(mean, std, mirror, output_layout, cutmix):
    if (mean is None) != (std is None):
        raise ValueError("mean and std go together: give both (uint8 HWC crops to normalize) or neither")
    if output_layout not in (None, "CHW", "HWC"):
        raise ValueError(f"output_layout must be 'CHW' or 'HWC', got {output_layout!r}")
    if mean is None:
        if mirror is not None:
            raise ValueError("mirror needs mean and std (the fused normalize path)")
        if output_layout is not None and not cutmix:
            raise ValueError("output_layout needs mean and std, or CutMix (then it is the layout of plain images)")
        return
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != 3 or not all(isinstance(v, numbers.Real) for v in values):
            raise ValueError(f"{name} must be 3 numbers, one per channel, got {values!r}")
    if not all(v > 0 for v in std):
        raise ValueError(f"std must be > 0, got {std!r}")


def _check_args(num_classes, return_params, dtype):
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__} ({num_classes!r})")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if not isinstance(return_params, bool):
        raise TypeError(f"return_params must be a bool, got {type(return_params).__name__} ({return_params!r})")
    if dtype not in (types.FLOAT, types.FLOAT16):
        raise ValueError(f"dtype must be types.FLOAT or types.FLOAT16, got {dtype!r}")


def _one_hot(labels, num_classes, label_smoothing):
    off = label_smoothing / num_classes
    return fn.one_hot(
        labels,
        num_classes=num_classes,
        on_value=1.0 - label_smoothing + off,
        off_value=off,
        dtype=types.FLOAT,
    )


def _as_float(node):
    return fn.cast(node, dtype=types.FLOAT)


def _cutmix_box(mixing, lam, uniform, size):
    """The CutMix box ``[y0, x0, y1, x1)`` (int32) and its area's share of the image (float32), from
    CutMix's λ, four uniform draws in ``[0, 1)`` and the image's ``(height, width)``, as timm's
    ``rand_bbox`` or ``rand_bbox_minmax``.

    A DALI operator costs about 0.09 ms a batch of 64 on a CPU core whatever it computes, so the two
    sides are computed together as 2-vectors, in float32 (exact for integers up to 2**24) with one
    cast at the end: CutMix's draws take 38 operators and 3.5 ms a batch, against 59 and 5.2 ms
    one side at a time in int32.
    """
    if mixing.cutmix_minmax is None:
        cut = dmath.floor(size * dmath.sqrt(1.0 - lam))
        centre = dmath.floor(uniform[0:2] * size)
        low = dmath.clamp(centre - dmath.floor(cut * 0.5), 0.0, size)
        high = dmath.clamp(centre + dmath.floor((cut + 1.0) * 0.5), 0.0, size)
    else:
        lo, hi = mixing.cutmix_minmax
        shortest = dmath.floor(size * lo)
        cut = shortest + dmath.floor(uniform[0:2] * (dmath.floor(size * hi) - shortest))  # randint(shortest, longest)
        low = dmath.floor(uniform[2:4] * (size - cut + 1.0))  # randint(0, size - cut + 1)
        high = low + cut
    sides = high - low
    box = fn.cast(fn.cat(low, high), dtype=types.INT32)
    area = sides[0] * sides[1] / (size[0] * size[1])
    return box, area


def _pair_partners(batch_size):
    """Each sample's partner in timm's pair mode, ``B − 1 − i``, as an int32 graph node on the CPU.

    No DALI operator gives a sample its index in the batch, so a stateless external source does
    (DALI's checkpoints take it: it is a one-argument callable); the batches must be full.
    """
    partners = [np.int32(batch_size - 1 - i) for i in range(batch_size)]
    return fn.external_source(source=lambda batch_info: partners, batch=True, batch_info=True, dtype=types.INT32,
                              ndim=0)


def _cutmix_draws(mixing):
    """DALI's random draws for a batch with CutMix, per sample, by MixupDraws's argument names: mixup's λ and the
    switch where mixup is on too, ``prob``'s coin where it is below 1, CutMix's λ (not with ``cutmix_minmax``)
    and four uniforms for the box."""
    draws = {}
    if mixing.alpha > 0:
        draws["mix_lam"] = fn.random.beta(alpha=float(mixing.alpha), beta=float(mixing.alpha))
        draws["switch"] = fn.random.coin_flip(probability=mixing.switch_prob, dtype=types.INT32)
    if mixing.prob < 1:
        draws["apply"] = fn.random.coin_flip(probability=mixing.prob, dtype=types.INT32)
    if mixing.cutmix_minmax is None:
        draws["cut_lam"] = fn.random.beta(alpha=float(mixing.cutmix_alpha), beta=float(mixing.cutmix_alpha))
    draws["uniform"] = fn.random.uniform(range=[0.0, 1.0], shape=[4])
    return draws


def _draw_in_plugin(mixing, image_size, draws=None, perm=None):
    """``(lam, perm, box)`` with CutMix on, as :func:`_draw` gives them, from DALI's random draws (``draws``: those
    of :func:`_cutmix_draws`, and ``perm`` a permutation of the batch, made here if None) by the plugin's
    MixupDraws: one operator where the graph takes 37 to 51 (the same float32 arithmetic, so the same values
    from the same draws)."""
    mode = 2 if mixing.pairs else 1 if mixing.per_sample else 0
    partner = {} if mixing.pairs else {"partner": perm if perm is not None else fn.batch_permutation()}
    draws = draws if draws is not None else _cutmix_draws(mixing)
    return fn.mixup_draws(**partner, **draws, image_size=image_size(), mode=mode, correct_lam=mixing.correct_lam,
                          cutmix_minmax=list(mixing.cutmix_minmax or []))


def _partners(mixing):
    """``(perm, once)``: each sample's partner (int32), and the function that gives every sample the draw it
    takes: its own (per sample), the first sample's (batch), or the first of its pair's (pair mode)."""
    if mixing.pairs:
        batch_size = Pipeline.current().max_batch_size
        perm = _pair_partners(batch_size)
        firsts = [min(i, batch_size - 1 - i) for i in range(batch_size)]  # the pair's first sample draws for both
    else:
        perm = fn.batch_permutation()
    first = []  # every sample's index of the first sample, made once

    def once(node):
        if mixing.per_sample:
            return node
        if mixing.pairs:
            return fn.permute_batch(node, indices=firsts)
        if not first:
            first.append(perm * 0)
        return fn.permute_batch(node, indices=first[0])

    return perm, once


def _cutmix_in_graph(mixing, image_size, once, draws):
    """``(lam, box)`` with CutMix on, from :func:`_cutmix_draws`'s draws, in graph arithmetic (37 to 51 operators)."""
    # Each sample is cut (weight `cut`), blended (`blend`) or left alone; these are 0 or 1.
    cut = blend = lam_mix = None
    if "mix_lam" in draws:
        lam_mix = once(draws["mix_lam"])
        cut = once(_as_float(draws["switch"]))
        blend = 1.0 - cut
    if "apply" in draws:
        apply = once(_as_float(draws["apply"]))
        cut, blend = (apply, None) if cut is None else (cut * apply, blend * apply)
    lam_cut = once(draws["cut_lam"]) if "cut_lam" in draws else None
    box, area = _cutmix_box(mixing, lam_cut, once(draws["uniform"]), image_size())
    if mixing.correct_lam or lam_cut is None:
        lam_cut = 1.0 - area
    if cut is None:  # CutMix on every sample
        return lam_cut, box
    lam = cut * lam_cut + (1.0 - cut) + (0.0 if blend is None else blend * (lam_mix - 1.0))
    return lam, box * fn.cast(cut, dtype=types.INT32)


def _draw(mixing, image_size):
    """``(lam, perm, box)`` drawn on the CPU: the weight of each sample's own label (float32), its partner
    (int32), and its CutMix box (int32 ``[4]``, empty for a blended or untouched sample; None without
    CutMix). Per sample; or, as in timm's batch mode, one draw for the batch: every sample takes the
    first sample's; or, in pair mode, one draw for each pair ``(i, B − 1 − i)``, which are each other's
    partners. ``image_size()`` gives ``[height, width]`` as a float32 graph node, for CutMix's box. With
    CutMix, the plugin computes the box and λ where it is loaded (:func:`_draw_in_plugin`), else the graph
    does."""
    from dali_mixup.build import fused_backends

    if mixing.cutmix and "cpu" in fused_backends():
        return _draw_in_plugin(mixing, image_size)
    perm, once = _partners(mixing)
    if not mixing.cutmix:  # mixup alone: the graph of before CutMix, op for op, so the same draws
        lam = once(fn.random.beta(alpha=float(mixing.alpha), beta=float(mixing.alpha)))
        if mixing.prob < 1:
            lam = 1.0 + once(_as_float(fn.random.coin_flip(probability=mixing.prob))) * (lam - 1.0)
        return lam, perm, None
    lam, box = _cutmix_in_graph(mixing, image_size, once, _cutmix_draws(mixing))
    return lam, perm, box


def mixing_draws(mixing, size):
    """``(lam, perm, box)`` of a batch, drawn as :func:`mixup` draws them (see ``_draw``), for an operator that
    mixes by itself (the plugin's LogSpectrogram); ``size`` is ``(height, width)``; ``box`` is None without
    CutMix."""
    return _draw(mixing, lambda: types.Constant(np.array(size, np.float32)))


def _image_size(images, layout):
    """``[height, width]`` of ``images`` (a float32 graph node, CPU) for its layout."""
    shape = fn.cast(images.shape(), dtype=types.FLOAT)
    return shape[1:3] if layout == "CHW" else shape[0:2]


def _fused(images, labels, num_classes, mixing, draws, dtype, mean, std, mirror, output_layout, resize):
    """One pass with the MixupNormalize plugin: read each crop and its partner once, write the output once
    (with ``resize``, each crop is resized once first). Without draws nothing is mixed."""
    labels = fn.cast(labels, dtype=types.INT32)  # a CPU input on either backend, like λ, partners and flips
    extra = {} if mirror is None else {"mirror": fn.cast(mirror, dtype=types.INT32)}
    if draws is not None:
        lam, perm, box = draws
        extra.update(lam=lam, partner=perm)
        if box is not None:
            extra["box"] = box
    if resize is not None:
        extra.update(resize.arguments())
    images, targets = fn.mixup_normalize(
        images, labels, mean=list(map(float, mean)), std=list(map(float, std)),
        num_classes=num_classes, label_smoothing=float(mixing.label_smoothing), dtype=dtype,
        output_layout=output_layout, **extra,
    )
    return images, targets


def _composed(images, one_hot, draws, dtype, on_gpu):
    """The same mix with stock DALI operators: permute_batch for the partners, arithmetic for the blend,
    and for CutMix a mask that fn.erase cuts the box into."""
    lam, perm, box = draws
    targets = lam * one_hot + (1 - lam) * fn.permute_batch(one_hot, indices=perm)
    weight = lam
    if box is not None:  # a cut sample keeps its own pixels outside the box
        has_box = _as_float((box[2] > box[0]) & (box[3] > box[1]))
        weight = lam + has_box * (1.0 - lam)
    if on_gpu:
        # λ is drawn on the CPU (fn.random.beta has no GPU backend); a scalar per sample is
        # all that crosses to the GPU, where the blend itself runs.
        weight = weight.gpu()
        targets = targets.gpu()
    if dtype == types.FLOAT16:
        weight = fn.cast(weight, dtype=types.FLOAT16)
    partners = fn.permute_batch(images, indices=perm)
    mixed = weight * images + (1 - weight) * partners
    if box is None:
        return mixed, targets
    corner = _as_float(fn.stack(box[0], box[1]))
    size = _as_float(fn.stack(box[2] - box[0], box[3] - box[1]))
    outside = fn.erase(mixed * 0 + 1, anchor=corner, shape=size, axis_names="HW", fill_value=0)
    return mixed * outside + partners * (1 - outside), targets


@functools.lru_cache(maxsize=None)
def _warn_composed(device):
    """Say once per process and device why mixup composes stock operators instead of the fused one."""
    from dali_mixup.build import unavailable_reason

    log.warning("dali_mixup: mixup on the %s composes stock DALI operators (about six float passes over the batch "
                "instead of one) because the fused operator is unavailable there: %s", device,
                unavailable_reason(device))


def mixup(
    images,
    labels,
    *,
    num_classes,
    alpha,
    per_sample=False,
    pairs=False,
    label_smoothing=0.0,
    return_params=False,
    dtype=types.FLOAT,
    mean=None,
    std=None,
    mirror=None,
    output_layout=None,
    cutmix_alpha=0.0,
    cutmix_minmax=None,
    correct_lam=True,
    switch_prob=0.5,
    prob=1.0,
    resize=None,
):
    """Mix each sample with a random partner from the same batch, inside the DALI graph: mixup, CutMix, or both.

    For every iteration the graph draws a fresh permutation ``perm`` of the batch
    (``fn.batch_permutation``), so any batch size works, and the mixing parameters (``fn.random``);
    nothing is drawn on the host. With mixup, sample ``i`` becomes ``λ·x_i + (1−λ)·x_perm(i)``; with
    CutMix it takes its partner's pixels inside a box and its own outside. Its target is
    ``λ·y_i + (1−λ)·y_perm(i)`` of the (smoothed) one-hot labels, λ being the weight of its own
    label. With ``alpha == 0`` and no CutMix (ERM) the images pass through untouched, the targets
    are one-hot, and no mixing op is added to the graph.

    Args:
        images: DALI batch on CPU or GPU, one shape across the batch; any layout for mixup, CHW or
            HWC (``output_layout``) for CutMix.
        labels: integer class ids in ``[0, num_classes)``, one per sample (shape ``()`` or ``(1,)``).
        num_classes: number of classes, ``>= 1``.
        alpha: mixup's Beta concentration, ``>= 0``. The paper uses 1 for CIFAR and 0.2 for ImageNet.
        per_sample: draw λ (and the switch, ``prob`` and the box) for each sample instead of once
            for the batch (timm's ``elem`` mode; the paper draws once per batch).
        pairs: timm's ``pair`` mode: sample ``i`` and sample ``B − 1 − i`` are each other's partner
            and share one draw of λ (and the switch, ``prob`` and the box), so each pair is mixed
            both ways. The pipeline's batches must be full and its batch size even, as timm's.
        label_smoothing: ``eps`` in ``[0, 1)``; the one-hot rows become
            ``(1 - eps) * one_hot + eps / num_classes`` before the blend.
        return_params: also return ``λ`` (float32, the weight of each sample's own label) and
            ``perm`` (int32), and with CutMix the box (int32 ``[y0, x0, y1, x1]``, half-open, in
            output pixels; empty where a sample was blended or left alone), all on the CPU. With
            ``alpha == 0`` and no CutMix, ``λ`` is 1 and ``perm`` has no effect.
        dtype: type of the mixed images, ``types.FLOAT`` or ``types.FLOAT16``. FLOAT16 needs
            GPU images of type float16 or an integer type (DALI's CPU arithmetic has no float16).
        mean: per-channel mean (3 values). With ``mean`` and ``std``, ``images`` are uint8 HWC
            crops that mixup also flips, normalizes and lays out, replacing
            ``crop_mirror_normalize``: in one pass with the fused ``MixupNormalize`` operator
            when it is built (see ``dali_mixup.build``), else with stock DALI operators.
        std: per-channel standard deviation (3 values, > 0).
        mirror: per-sample flip flags (e.g. ``fn.random.coin_flip()``); each sample is flipped
            by its own flag before it is mixed, as ``crop_mirror_normalize`` then mixup would.
        output_layout: ``"CHW"`` (default) or ``"HWC"``: of the normalized images, or, for plain
            images with CutMix, their own layout (where H and W are).
        cutmix_alpha: CutMix's Beta concentration, ``>= 0``; 0 is no CutMix (unless ``cutmix_minmax``).
        cutmix_minmax: None, or ``(lo, hi)`` for box sides uniform in ``[lo·H, hi·H)`` and
            ``[lo·W, hi·W)`` (timm's ``rand_bbox_minmax``; CutMix is then on).
        correct_lam: CutMix's λ becomes the share of the sample's own pixels, ``1 − area/(H·W)``
            (always so with ``cutmix_minmax``).
        switch_prob: with both ``alpha`` and CutMix on, the probability of CutMix instead of mixup.
        prob: the probability of mixing a batch (or a sample, with ``per_sample``) at all.
        resize: None, or a :class:`Resize` (with ``mean`` and ``std``): ``images`` are uint8 HWC crops of
            any size, each resized first (as Pillow resizes, in the fused operator's pass); with or
            without mixing, so that val's resize and normalization are one step too.

    Returns:
        ``(images, targets)``, or with ``return_params`` ``(images, targets, lam, perm)`` and,
        with CutMix, ``(images, targets, lam, perm, box)``. ``targets`` are float32
        ``[num_classes]`` per sample, on the images' device; each row sums to 1.
    """
    _check_args(num_classes, return_params, dtype)
    mixing = Mixing(alpha=alpha, cutmix_alpha=cutmix_alpha, cutmix_minmax=cutmix_minmax, prob=prob,
                    switch_prob=switch_prob, per_sample=per_sample, pairs=pairs, correct_lam=correct_lam,
                    label_smoothing=label_smoothing)
    if mixing.pairs and mixing.mixes and Pipeline.current().max_batch_size % 2:
        raise ValueError(f"pairs=True mixes samples i and B - 1 - i: the batch size must be even, got "
                         f"{Pipeline.current().max_batch_size}")
    _check_normalize_args(mean, std, mirror, output_layout, mixing.cutmix)
    if resize is not None and (mean is None or not isinstance(resize, Resize)):
        raise ValueError(f"resize needs mean and std (uint8 HWC crops) and must be a Resize, got {resize!r}")
    on_gpu = images.device == "gpu"
    if dtype == types.FLOAT16 and not on_gpu:
        raise ValueError("dtype=types.FLOAT16 needs GPU images; DALI's CPU arithmetic has no float16")
    normalize = mean is not None
    # Imported here so that the package can import this module without importing ``build``,
    # which ``python -m dali_mixup.build`` runs as __main__.
    from dali_mixup.build import fused_backends

    draws = None
    if mixing.mixes:  # the crops are HWC when normalized here; plain images are in output_layout
        size = (lambda: types.Constant(np.array(resize.size, np.float32))) if resize is not None else (
            lambda: _image_size(images, "HWC" if normalize else output_layout or "CHW"))
        draws = _draw(mixing, size)
    if normalize and (mixing.mixes or resize is not None):
        if images.device in fused_backends():
            mixed = _fused(images, labels, num_classes, mixing, draws, dtype, mean, std, mirror, output_layout or "CHW",
                           resize)
            if not return_params:
                return mixed
            if draws is None:
                return (*mixed, fn.ones(shape=[], dtype=types.FLOAT), fn.batch_permutation())
            return (*mixed, *(d for d in draws if d is not None))
        if on_gpu and os.environ.get("DALI_MIXUP_FUSED", "1") != "0":  # (the CPU's cause is logged by the build)
            _warn_composed(images.device)
        if resize is not None:
            images = resize.composed(images)
    if normalize:
        flip = {} if mirror is None else {"mirror": mirror}
        images = fn.crop_mirror_normalize(
            images, dtype=dtype, output_layout=output_layout or "CHW", mean=list(mean), std=list(std), **flip
        )

    one_hot = _one_hot(labels, num_classes, label_smoothing)
    if not mixing.mixes:
        targets = one_hot.gpu() if on_gpu else one_hot
        if not return_params:
            return images, targets
        return images, targets, fn.ones(shape=[], dtype=types.FLOAT), fn.batch_permutation()
    mixed = _composed(images, one_hot, draws, dtype, on_gpu)
    return (*mixed, *(d for d in draws if d is not None)) if return_params else mixed
