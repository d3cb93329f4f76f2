"""Train and val pipelines for every image source: decode, augment, then mixup (train) or normalize (val).

As in DALI's EfficientNet example, the processing is plain functions of DataNodes (the crops and
crop policies of ``pipelines.augment``) and thin ``@pipeline_def`` wrappers add the reader: a
``pipelines.sources.Feed``, which holds the source and this rank's batches of every epoch. Every function builds for ``device="cpu"`` and
``device="gpu"``.
"""

import dataclasses

from nvidia.dali import fn, pipeline_def, types

from dali_mixup.mixup import mixup


def _layout(channels_last):
    return "HWC" if channels_last else "CHW"


@pipeline_def(enable_conditionals=True)  # for the crop policies' per-sample choices; the loader turns them
# off (enable_conditionals=False at the call) where no policy needs them
def train_pipeline(feed, augment, mixing, *, policies, erasing, normalize, device, channels_last, image_dtype,
                   soft_targets):
    """Train batches: ``(images, targets)``, targets soft ``[B, num_classes]`` or, with ``soft_targets`` off, class ids.

    Args:
        feed: a ``pipelines.sources.Feed``: the source and this rank's batches of each epoch.
        augment: ``pipelines.augment.RandomResizedCrop`` or ``PadCrop``.
        mixing: :class:`dali_mixup.mixup.Mixing`; :func:`dali_mixup.mixup` also flips, normalizes and lays
            out the crops, in one pass when its fused operator is built.
        policies: crop policies applied in turn to the uint8 crops (``AutoAugment``, ``ColorJitter``,
            ``RandomGrayscale``, ``GaussianBlur``), before they are mixed.
        erasing: None, or ``pipelines.augment.RandomErasing``, applied to the normalized crops before they are
            mixed, as timm's.
        normalize: ``(mean, std)``, per channel on the 0-255 scale.
        device: ``"gpu"`` or ``"cpu"``.
        channels_last: NHWC output instead of NCHW.
        image_dtype: ``types.FLOAT``, or ``types.FLOAT16`` on the GPU (half the bytes, for AMP).
        soft_targets: the mixed (or one-hot) rows; False (only where nothing mixes or smooths)
            gives the int32 class ids, as a ``DataLoader`` does.
    """
    source = feed.source
    images, labels = source.read(feed, device=device)
    # Where nothing in between needs the crops at their size, mixup resizes them in its own pass.
    crops, resize = augment.train(images, encoded=source.encoded, device=device, image_size=source.image_size,
                                  resize_later=not policies and erasing is None)
    for policy in policies:
        crops = policy.apply(crops, augment.crop_size)
    mirror = fn.random.coin_flip(probability=augment.hflip)
    mean, std = normalize
    layout = _layout(channels_last)
    if erasing is None:
        images, targets = mixup(crops, labels, num_classes=source.num_classes, **dataclasses.asdict(mixing),
                                dtype=image_dtype, mean=mean, std=std, mirror=mirror, output_layout=layout,
                                resize=resize)
        return images, targets if soft_targets else _on(labels, device)
    # timm erases the normalized crops: flip and normalize them first (float32, HWC), erase, then mix the
    # float crops, with stock operators (about six passes more than the fused operator's one).
    images = fn.crop_mirror_normalize(crops, dtype=types.FLOAT, output_layout="HWC", mean=mean, std=std,
                                      mirror=mirror)
    images = erasing.apply(images, augment.crop_size)
    if image_dtype != types.FLOAT:
        images = fn.cast(images, dtype=image_dtype)
    images, targets = mixup(images, labels, num_classes=source.num_classes, **dataclasses.asdict(mixing),
                            dtype=image_dtype, output_layout="HWC" if mixing.cutmix else None)
    if layout == "CHW":
        images = fn.transpose(images, perm=[2, 0, 1], output_layout="CHW")
    return images, targets if soft_targets else _on(labels, device)


def _on(labels, device):
    # so that the iterator hands both outputs over on the same device
    return labels.gpu() if device == "gpu" else labels


@pipeline_def
def val_pipeline(feed, augment, *, normalize, device, channels_last, image_dtype):
    """Val batches: ``(images, labels)``, normalized images and integer labels; arguments as :func:`train_pipeline`."""
    source = feed.source
    images, labels = source.read(feed, device=device)
    images, window, resize = augment.val(images, encoded=source.encoded, device=device, image_size=source.image_size,
                                         resize_later=True)
    mean, std = normalize
    if resize is not None:  # the resize, its center crop and the normalization in mixup's one pass (nothing mixed)
        images, _ = mixup(images, labels, num_classes=source.num_classes, alpha=0.0, dtype=image_dtype, mean=mean,
                          std=std, output_layout=_layout(channels_last), resize=resize)
        return images, _on(labels, device)
    images = fn.crop_mirror_normalize(images, dtype=image_dtype, output_layout=_layout(channels_last),
                                      mean=mean, std=std, **window)
    return images, _on(labels, device)
