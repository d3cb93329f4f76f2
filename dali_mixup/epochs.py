"""The epoch order: which samples every rank reads, in which batches, in every epoch, for every source.

One plan serves every format, so that exactness is argued once:

- **Train** (:func:`train_indices`): the samples ``torch.utils.data.DistributedSampler(shuffle=True,
  seed=seed, drop_last=True)`` gives rank ``rank`` after ``set_epoch(epoch)``, in its order, cut to
  whole batches as a ``DataLoader(drop_last=True)`` cuts them. Every epoch is a fresh permutation
  of the whole split, the same on every rank and a function of ``(seed, epoch)`` alone; the ranks'
  shares are disjoint; each rank takes ``len // (world_size * batch_size)`` batches, so every rank
  takes the same number of steps, and the ``len % (world_size * batch_size)`` samples that fit no
  whole batch are the ones nobody sees in that epoch (other samples in the next).
- **Val** (:func:`val_batches`): every sample exactly once across ranks, in order, rank ``r``
  taking the contiguous range ``[len·r // world_size, len·(r+1) // world_size)`` as DALI's readers
  split a set; every rank takes the same number of batches, ``ceil(ceil(len / world_size) /
  batch_size)``, and none is empty: full batches first, the last one smaller, and where a rank's
  range is a whole number of batches while another rank needs one more batch, its last full batch
  is split in two halves.

- **Repeated augmentation** (:func:`repeated_indices`, ``repeats`` > 0): the samples timm's
  ``RepeatAugSampler(num_repeats=repeats)`` (DeiT's, timm 1.0.31) gives rank ``rank``, with
  torchvision's ``RASampler`` seed, ``seed + epoch`` (timm's is the epoch alone: the same for
  ``seed=0``). The epoch's permutation, each sample repeated ``repeats`` times in a row
  (``repeat_interleave``; a fractional count as timm's), wrapped round to a multiple of
  ``world_size`` and dealt out one position to each rank in turn, so the copies of a sample land
  on ``repeats`` different ranks where ``repeats <= world_size``; each rank keeps the first
  ``floor(len // 256 · 256 / world_size)`` of its share (``ceil(len / world_size)`` below 256
  samples, at most its share), then whole batches. An epoch so reads about ``len / repeats``
  distinct samples, each ``repeats`` times, as DeiT's and ResNet strikes back's recipes train.

Nothing here depends on DALI: ``pipelines.sources`` feeds the plan's batches to the graph.
"""

import math

import numpy as np
import torch


def permutation(num_samples, seed, epoch):
    """The epoch's permutation of the split: ``DistributedSampler``'s, ``torch.randperm`` from ``seed + epoch``."""
    generator = torch.Generator()
    generator.manual_seed(seed + epoch)
    return torch.randperm(num_samples, generator=generator).numpy()


def num_train_batches(num_samples, world_size, batch_size):
    """Train batches per epoch on every rank: ``(len // world_size) // batch_size``."""
    return num_samples // world_size // batch_size


def train_indices(num_samples, epoch, *, seed, rank, world_size, batch_size):
    """This rank's train samples of ``epoch`` in reading order (``num_train_batches * batch_size`` of them).

    ``DistributedSampler(drop_last=True)``: the permutation cut to ``(len // world_size) *
    world_size`` samples, of which rank ``r`` takes every ``world_size``-th from ``r``; then its
    last partial batch is dropped.
    """
    per_rank = num_samples // world_size
    mine = permutation(num_samples, seed, epoch)[rank : per_rank * world_size : world_size]
    return mine[: per_rank // batch_size * batch_size]


def num_repeated_samples(num_samples, world_size, repeats):
    """Samples a rank keeps with repeated augmentation: timm 1.0.31's ``RepeatAugSampler.num_selected_samples``
    (``selected_round=256``), which is torchvision's ``RASampler``'s from 256 samples on."""
    share = math.ceil(num_samples * repeats / world_size)
    if num_samples >= 256:
        selected = math.floor(num_samples // 256 * 256 / world_size)
    else:
        selected = math.ceil(num_samples / world_size)
    return min(selected, share)


def repeated_indices(num_samples, epoch, *, seed, rank, world_size, repeats):
    """This rank's samples of ``epoch`` with repeated augmentation, in reading order (see the module docstring)."""
    order = permutation(num_samples, seed, epoch)
    if float(repeats).is_integer():
        repeated = np.repeat(order, int(repeats))
    else:  # timm's resampling: position i takes sample i // repeats
        repeated = order[np.floor_divide(np.arange(math.ceil(repeats * num_samples)), repeats).astype(np.int64)]
    positions = rank + world_size * np.arange(num_repeated_samples(num_samples, world_size, repeats))
    return repeated[positions % len(repeated)]


def val_range(num_samples, rank, world_size):
    """``(begin, end)``: rank ``rank``'s contiguous share of the val samples."""
    return num_samples * rank // world_size, num_samples * (rank + 1) // world_size


def num_val_batches(num_samples, world_size, batch_size):
    """Val batches per epoch on every rank: those of the largest share, ``ceil(ceil(len / world_size) / batch_size)``."""
    return math.ceil(math.ceil(num_samples / world_size) / batch_size)


def val_batch_sizes(num_samples, *, rank, world_size, batch_size):
    """The sizes of rank ``rank``'s val batches: ``num_val_batches`` of them, none empty, none over ``batch_size``.

    Raises:
        ValueError: where no such sizes exist: a rank with no sample (fewer samples than ranks),
            or ``batch_size=1`` with shares of unequal size.
    """
    begin, end = val_range(num_samples, rank, world_size)
    count = end - begin
    batches = num_val_batches(num_samples, world_size, batch_size)
    sizes = [batch_size] * (count // batch_size) + ([count % batch_size] if count % batch_size else [])
    if len(sizes) == batches:
        return sizes
    # This share is a whole number of batches, one batch short of the largest share's count.
    if count == 0 or batch_size == 1:
        largest = math.ceil(num_samples / world_size)
        raise ValueError(
            f"the val split's {num_samples} samples over world_size={world_size} give rank {rank} {count} sample(s) "
            f"and another rank {largest}: with batch_size={batch_size} they cannot make the same number of "
            "non-empty batches on every rank; use a batch_size >= 2 and at least as many samples as ranks"
        )
    return sizes[:-1] + [batch_size - batch_size // 2, batch_size // 2]


class EpochPlan:
    """The batches of one split on one rank, epoch by epoch (see the module docstring).

    Args:
        num_samples: samples in the split.
        training: the train plan (reshuffled every epoch) or the val plan (every sample once, in order).
        seed: the order's seed, the same on every rank (train only).
        rank: this rank.
        world_size: the number of ranks.
        batch_size: samples per batch on this rank.
        repeats: repeated augmentation's count of each sample (train only; 0 is off).

    Raises:
        ValueError: for a train split that gives the ranks no whole batch, or a val split that
            cannot give every rank the same number of non-empty batches.
    """

    def __init__(self, num_samples, *, training, seed, rank, world_size, batch_size, repeats=0):
        if not 0 <= rank < world_size or batch_size < 1 or (repeats and not training) or not (repeats == 0 or
                                                                                          repeats >= 1):
            raise ValueError(f"need 0 <= rank < world_size, batch_size >= 1 and repeats 0 or >= 1 (train only), got "
                             f"rank={rank}, world_size={world_size}, batch_size={batch_size}, repeats={repeats}")
        self.num_samples, self.training, self.seed = num_samples, training, seed
        self.rank, self.world_size, self.batch_size, self.repeats = rank, world_size, batch_size, repeats
        if training:
            share = num_repeated_samples(num_samples, world_size, repeats) if repeats else num_samples // world_size
            self._len = share // batch_size
            if self._len == 0:
                raise ValueError(
                    f"batch_size={batch_size} gives the ranks no whole batch: each rank's share of the train split "
                    f"is {share} of {num_samples} samples over world_size={world_size}"
                    f"{f' with aug_repeats={repeats}' if repeats else ''}; use a smaller batch_size or fewer ranks"
                )
        else:
            self._sizes = val_batch_sizes(num_samples, rank=rank, world_size=world_size, batch_size=batch_size)
            self._len = len(self._sizes)

    def __len__(self):
        """Batches per epoch on this rank (the same on every rank)."""
        return self._len

    def indices(self, epoch):
        """This rank's samples of ``epoch`` in reading order, as an int64 array."""
        if self.training and self.repeats:
            mine = repeated_indices(self.num_samples, epoch, seed=self.seed, rank=self.rank,
                                    world_size=self.world_size, repeats=self.repeats)
            return mine[: self._len * self.batch_size]
        if self.training:
            return train_indices(self.num_samples, epoch, seed=self.seed, rank=self.rank,
                                 world_size=self.world_size, batch_size=self.batch_size)
        begin, end = val_range(self.num_samples, self.rank, self.world_size)
        return np.arange(begin, end, dtype=np.int64)

    def batch_sizes(self):
        """The sizes of this rank's ``len(self)`` batches, in order (every epoch the same)."""
        return [self.batch_size] * self._len if self.training else list(self._sizes)

    def batches(self, epoch):
        """This rank's batches of ``epoch``: a list of ``len(self)`` int64 arrays of sample indices."""
        return np.split(self.indices(epoch), np.cumsum(self.batch_sizes())[:-1])
