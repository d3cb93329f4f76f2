"""Train and val pipelines for every image source: decode, augment, then mixup (train) or normalize (val).

As in DALI's EfficientNet example, the processing is plain functions of DataNodes (the crops and
crop policies of ``pipelines.augment``) and thin ``@pipeline_def`` wrappers add the reader and the
sharding, from a source of ``pipelines.sources``. Every function builds for ``device="cpu"`` and
``device="gpu"``.
"""

import dataclasses

from nvidia.dali import Pipeline, fn, pipeline_def

from dali_mixup.mixup import mixup

def _layout(channels_last):
    return "HWC" if channels_last else "CHW"


@pipeline_def(enable_conditionals=True)  # for the automatic augmentations' per-sample choice of ops
def train_pipeline(source, augment, mixing, *, policies, shard_id, num_shards, device, order_seed, channels_last,
                   image_dtype):
    """Train batches: ``(images, targets)`` with soft targets ``[B, num_classes]`` (one-hot without mixing).

    Args:
        source: a source of ``pipelines.sources``.
        augment: ``pipelines.augment.RandomResizedCrop`` or ``PadCrop``.
        policies: crop policies applied in turn to the uint8 crops (``AutoAugment``,
            ``RandomErasing``), before they are mixed.
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
    for policy in policies:
        crops = policy.apply(crops, augment.crop_size)
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
