"""The mixup operator: a DALI graph fragment for use inside any ``@pipeline_def``."""

import functools
import logging
import numbers
import os

from nvidia.dali import fn, types

log = logging.getLogger("dali_mixup")


def _check_normalize_args(mean, std, mirror, output_layout):
    if (mean is None) != (std is None):
        raise ValueError("mean and std go together: give both (uint8 HWC crops to normalize) or neither")
    if mean is None:
        if mirror is not None or output_layout is not None:
            raise ValueError("mirror and output_layout need mean and std (the fused normalize path)")
        return
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != 3 or not all(isinstance(v, numbers.Real) for v in values):
            raise ValueError(f"{name} must be 3 numbers, one per channel, got {values!r}")
    if not all(v > 0 for v in std):
        raise ValueError(f"std must be > 0, got {std!r}")
    if output_layout not in (None, "CHW", "HWC"):
        raise ValueError(f"output_layout must be 'CHW' or 'HWC', got {output_layout!r}")


def check_mixing(alpha, per_sample, label_smoothing):
    """Raise a TypeError or ValueError naming the first of the mixing arguments that is invalid.

    Args:
        alpha: Beta concentration, a number ``>= 0``.
        per_sample: a bool.
        label_smoothing: a number in ``[0, 1)``.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha must be a number, got {type(alpha).__name__} ({alpha!r})")
    if not alpha >= 0:  # also refuses NaN
        raise ValueError(f"alpha must be >= 0 (0 turns mixup off), got {alpha}")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real):
        raise TypeError(
            f"label_smoothing must be a number, got {type(label_smoothing).__name__} ({label_smoothing!r})"
        )
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if not isinstance(per_sample, bool):
        raise TypeError(f"per_sample must be a bool, got {type(per_sample).__name__} ({per_sample!r})")


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


def _draw(alpha, per_sample):
    """λ and the partner permutation, drawn in the graph on the CPU."""
    perm = fn.batch_permutation()
    lam = fn.random.beta(alpha=float(alpha), beta=float(alpha))
    if not per_sample:
        # Every sample takes the first sample's draw: one λ per batch, decided in the graph.
        lam = fn.permute_batch(lam, indices=perm * 0)
    return lam, perm


def _fused(images, labels, num_classes, alpha, per_sample, label_smoothing, return_params, dtype, mean, std, mirror,
           output_layout):
    """One pass with the MixupNormalize plugin: read each crop and its partner once, write the output once."""
    lam, perm = _draw(alpha, per_sample)
    labels = fn.cast(labels, dtype=types.INT32)  # a CPU input on either backend, like λ, partners and flips
    flip = {} if mirror is None else {"mirror": fn.cast(mirror, dtype=types.INT32)}
    images, targets = fn.mixup_normalize(
        images, labels, lam=lam, partner=perm, mean=list(map(float, mean)), std=list(map(float, std)),
        num_classes=num_classes, label_smoothing=float(label_smoothing), dtype=dtype, output_layout=output_layout,
        **flip,
    )
    if return_params:
        return images, targets, lam, perm
    return images, targets


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
    label_smoothing=0.0,
    return_params=False,
    dtype=types.FLOAT,
    mean=None,
    std=None,
    mirror=None,
    output_layout=None,
):
    """Mix each sample with a random partner from the same batch, inside the DALI graph.

    For every iteration the graph draws a fresh permutation ``perm`` of the batch
    (``fn.batch_permutation``) and ``λ ~ Beta(alpha, alpha)`` (``fn.random.beta``); nothing is
    drawn on the host. Sample ``i`` becomes ``λ·x_i + (1−λ)·x_perm(i)`` and its target the same
    blend of the one-hot labels. With ``alpha == 0`` (ERM) the images pass through untouched,
    the targets are one-hot, and no blending op is added to the graph.

    Args:
        images: DALI batch on CPU or GPU, any layout, one shape across the batch.
        labels: integer class ids in ``[0, num_classes)``, one per sample (shape ``()`` or ``(1,)``).
        num_classes: number of classes, ``>= 1``.
        alpha: Beta concentration, ``>= 0``. The paper uses 1 for CIFAR and 0.2 for ImageNet.
        per_sample: draw one ``λ`` per sample instead of one for the whole batch (the paper).
        label_smoothing: ``eps`` in ``[0, 1)``; the one-hot rows become
            ``(1 - eps) * one_hot + eps / num_classes`` before the blend.
        return_params: also return ``λ`` (float32, one per sample) and ``perm`` (int32, one per
            sample), both on the CPU. With ``alpha == 0``, ``λ`` is 1 and ``perm`` has no effect.
        dtype: type of the mixed images, ``types.FLOAT`` or ``types.FLOAT16``. FLOAT16 needs
            GPU images of type float16 or an integer type (DALI's CPU arithmetic has no float16).
        mean: per-channel mean (3 values). With ``mean`` and ``std``, ``images`` are uint8 HWC
            crops that mixup also flips, normalizes and lays out, replacing
            ``crop_mirror_normalize``: in one pass with the fused ``MixupNormalize`` operator
            when it is built (see ``dali_mixup.build``), else with stock DALI operators.
        std: per-channel standard deviation (3 values, > 0).
        mirror: per-sample flip flags (e.g. ``fn.random.coin_flip()``); each sample is flipped
            by its own flag before the blend, as ``crop_mirror_normalize`` then mixup would.
        output_layout: ``"CHW"`` (default) or ``"HWC"`` for the normalized images.

    Returns:
        ``(images, targets)``, or ``(images, targets, lam, perm)`` with ``return_params``.
        ``targets`` are float32 ``[num_classes]`` per sample, on the images' device; each row
        sums to 1.
    """
    _check_args(num_classes, return_params, dtype)
    check_mixing(alpha, per_sample, label_smoothing)
    _check_normalize_args(mean, std, mirror, output_layout)
    on_gpu = images.device == "gpu"
    if dtype == types.FLOAT16 and not on_gpu:
        raise ValueError("dtype=types.FLOAT16 needs GPU images; DALI's CPU arithmetic has no float16")
    normalize = mean is not None
    # Imported here so that the package can import this module without importing ``build``,
    # which ``python -m dali_mixup.build`` runs as __main__.
    from dali_mixup.build import fused_backends

    if normalize and alpha > 0:
        if images.device in fused_backends():
            return _fused(images, labels, num_classes, alpha, per_sample, label_smoothing, return_params, dtype,
                          mean, std, mirror, output_layout or "CHW")
        if on_gpu and os.environ.get("DALI_MIXUP_FUSED", "1") != "0":  # (the CPU's cause is logged by the build)
            _warn_composed(images.device)
    if normalize:
        flip = {} if mirror is None else {"mirror": mirror}
        images = fn.crop_mirror_normalize(
            images, dtype=dtype, output_layout=output_layout or "CHW", mean=list(mean), std=list(std), **flip
        )

    one_hot = _one_hot(labels, num_classes, label_smoothing)
    if alpha == 0:
        targets = one_hot.gpu() if on_gpu else one_hot
        if not return_params:
            return images, targets
        lam = fn.ones(shape=[], dtype=types.FLOAT)
        return images, targets, lam, fn.batch_permutation()

    lam, perm = _draw(alpha, per_sample)
    targets = lam * one_hot + (1 - lam) * fn.permute_batch(one_hot, indices=perm)

    lam_images = lam
    if on_gpu:
        # λ is drawn on the CPU (fn.random.beta has no GPU backend); a scalar per sample is
        # all that crosses to the GPU, where the blend itself runs.
        lam_images = lam.gpu()
        targets = targets.gpu()
    if dtype == types.FLOAT16:
        lam_images = fn.cast(lam_images, dtype=types.FLOAT16)
    partners = fn.permute_batch(images, indices=perm)
    images = lam_images * images + (1 - lam_images) * partners

    if return_params:
        return images, targets, lam, perm
    return images, targets
