"""CIFAR-10/100 train and val pipelines over the whole set held in memory.

The set is loaded once (``dali_mixup.cifar.load_cifar``) and kept on the pipeline's device;
:class:`CifarSource` hands ``fn.external_source`` one batch of it per iteration, sharded by
rank and reshuffled every epoch.
"""

import math

import numpy as np
from nvidia.dali import fn, pipeline_def

from dali_mixup.mixup import mixup
from pipelines.common import normalize, output_dtype

CIFAR_MEAN = [0.4914 * 255, 0.4822 * 255, 0.4465 * 255]
CIFAR_STD = [0.2470 * 255, 0.2435 * 255, 0.2616 * 255]
PAD = 4
# The 9 offsets of a 32x32 window in the 40x40 padded image, as crop_pos fractions: k / 8 is exact.
_CROP_POSITIONS = [k / (2 * PAD) for k in range(2 * PAD + 1)]


class CifarSource:
    """Batches of an in-memory set for ``fn.external_source(batch_info=True)``.

    Every rank draws the same permutation for an epoch from ``(seed, epoch)`` and takes its own
    slice, so the shards are disjoint and cover the set. Train takes ``N // num_shards`` samples
    per rank and drops the last partial batch, so all ranks run the same number of steps. Val
    splits the samples in order, and its last batch is smaller: every sample is seen once.

    Args:
        images: uint8 ``[N, 32, 32, 3]`` numpy array.
        labels: integer ``[N]`` numpy array.
        batch_size: samples per batch, per rank.
        shard_id: this rank.
        num_shards: the world size.
        training: shuffle and drop the last batch, as above.
        seed: the permutation seed, the same on every rank.
        device: ``"gpu"`` keeps the images in GPU memory (labels stay on the CPU, where the
            one-hot targets are built).
    """

    def __init__(self, images, labels, *, batch_size, shard_id, num_shards, training, seed, device):
        self.labels = np.asarray(labels, dtype=np.int32)
        self.batch_size = batch_size
        self.shard_id = shard_id
        self.num_shards = num_shards
        self.training = training
        self.seed = seed
        self.device = device
        if device == "gpu":
            import torch

            self.images = torch.from_numpy(np.ascontiguousarray(images)).cuda()
        else:
            self.images = np.ascontiguousarray(images)
        self._epoch, self._order = None, None

    def _shard(self, epoch):
        total = len(self.labels)
        if self.training:
            per_rank = total // self.num_shards
            order = np.random.default_rng([self.seed, epoch]).permutation(total)
            order = order[self.shard_id * per_rank : (self.shard_id + 1) * per_rank]
            return order[: len(order) // self.batch_size * self.batch_size]
        return np.array_split(np.arange(total), self.num_shards)[self.shard_id]

    def __len__(self):
        """Batches per epoch on this rank."""
        return math.ceil(len(self._shard(0)) / self.batch_size)

    def _indices(self, info):
        if info.epoch_idx != self._epoch:
            self._epoch, self._order = info.epoch_idx, self._shard(info.epoch_idx)
        begin = info.iteration * self.batch_size
        if begin >= len(self._order):
            raise StopIteration
        return self._order[begin : begin + self.batch_size]

    def images_batch(self, info):
        indices = self._indices(info)
        if self.device == "gpu":
            import torch

            return self.images[torch.from_numpy(indices).cuda()]
        return self.images[indices]

    def labels_batch(self, info):
        return self.labels[self._indices(info)]


def _read(source):
    # Two sources, because the images may live on the GPU while the labels stay on the CPU;
    # both derive the same indices from the iteration and epoch.
    images = fn.external_source(source=source.images_batch, batch_info=True, device=source.device, layout="HWC")
    labels = fn.external_source(source=source.labels_batch, batch_info=True)
    return images, labels


def train_crops(images):
    """Pad 4 pixels with zeros and take a random 32x32 crop, as uint8 HWC (mixup flips and normalizes)."""
    images = fn.crop(images, crop=(32 + 2 * PAD, 32 + 2 * PAD), out_of_bounds_policy="pad", fill_values=0)
    crop_x = fn.random.uniform(values=_CROP_POSITIONS)
    crop_y = fn.random.uniform(values=_CROP_POSITIONS)
    return fn.crop(images, crop=(32, 32), crop_pos_x=crop_x, crop_pos_y=crop_y)


@pipeline_def
def cifar_train_pipeline(source, *, channels_last, hflip, num_classes, mixup_alpha, per_sample, label_smoothing):
    """Train batches ``(images, targets)`` from a :class:`CifarSource`: :func:`train_crops`, then
    :func:`dali_mixup.mixup`, which flips (with probability ``hflip``), normalizes and mixes."""
    images, labels = _read(source)
    images = train_crops(images)
    mirror = fn.random.coin_flip(probability=hflip)
    return mixup(
        images,
        labels,
        num_classes=num_classes,
        alpha=mixup_alpha,
        per_sample=per_sample,
        label_smoothing=label_smoothing,
        dtype=output_dtype(source.device),
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
        mirror=mirror,
        output_layout="HWC" if channels_last else "CHW",
    )


@pipeline_def
def cifar_val_pipeline(source, *, channels_last):
    """Val batches ``(images, labels)``: normalized images and integer labels."""
    images, labels = _read(source)
    images = normalize(images, device=source.device, channels_last=channels_last, mean=CIFAR_MEAN, std=CIFAR_STD)
    if source.device == "gpu":
        labels = labels.gpu()  # so that the iterator hands both outputs over on the same device
    return images, labels
