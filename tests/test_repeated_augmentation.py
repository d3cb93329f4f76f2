"""Repeated augmentation (timm's --aug-repeats, torchvision's --ra-sampler --ra-reps) in the epoch order:
exactly timm's RepeatAugSampler's samples on every rank, its length, the copies on different ranks, and
each copy augmented on its own."""

import collections

import pytest
import torch

from dali_mixup import make_loader
from dali_mixup.epochs import EpochPlan, num_repeated_samples
from helpers import write_id_sets

timm_sampler = pytest.importorskip("timm.data.distributed_sampler")


def _timm(num_samples, rank, world_size, repeats, epoch):
    sampler = timm_sampler.RepeatAugSampler(range(num_samples), num_replicas=world_size, rank=rank,
                                            num_repeats=repeats)
    sampler.set_epoch(epoch)
    return list(sampler), len(sampler)


@pytest.mark.parametrize("num_samples, world_size, repeats", [
    (10, 4, 3), (97, 2, 3), (300, 3, 3), (1000, 8, 3), (1000, 4, 2.5), (1281, 8, 4), (600, 1, 3),
])
def test_every_ranks_samples_are_timms_repeat_aug_samplers(num_samples, world_size, repeats):
    for seed, epoch in ((0, 0), (0, 1), (0, 2), (5, 1)):
        for rank in range(world_size):
            plan = EpochPlan(num_samples, training=True, seed=seed, rank=rank, world_size=world_size, batch_size=1,
                             repeats=repeats)
            # timm seeds with the epoch alone, torchvision's RASampler with seed + epoch: ours is torchvision's.
            theirs, length = _timm(num_samples, rank, world_size, repeats, seed + epoch)
            assert plan.indices(epoch).tolist() == theirs and len(plan) == length, (seed, epoch, rank)


@pytest.mark.parametrize("num_samples, world_size, repeats, batch_size", [(1000, 4, 3, 16), (97, 3, 3, 5)])
def test_the_copies_are_on_different_ranks_and_the_epoch_is_whole_batches(num_samples, world_size, repeats,
                                                                          batch_size):
    plans = [EpochPlan(num_samples, training=True, seed=1, rank=rank, world_size=world_size, batch_size=batch_size,
                       repeats=repeats) for rank in range(world_size)]
    selected = num_repeated_samples(num_samples, world_size, repeats)
    for plan in plans:
        assert len(plan) == selected // batch_size and [len(b) for b in plan.batches(0)] == [batch_size] * len(plan)
    samples = [plan.indices(0) for plan in plans]
    counts = collections.Counter(int(i) for s in samples for i in s)
    # Every sample read is read at most `repeats` times, all but the cut's few exactly `repeats` times, each copy
    # on another rank; an epoch reads about len / repeats distinct samples.
    assert max(counts.values()) <= repeats and sum(c == repeats for c in counts.values()) >= len(counts) - 2
    ranks = collections.defaultdict(set)
    for rank, s in enumerate(samples):
        for i in s:
            ranks[int(i)].add(rank)
    assert all(len(ranks[i]) == counts[i] for i in counts)
    assert abs(len(counts) - selected * world_size / repeats) <= world_size + 2


def test_the_loader_gives_each_copy_its_own_augmentation(tmp_path, imagenet_dir, spoken_dir):
    """One rank, 3 copies: the copies of a sample come in one epoch, each with its own crop."""
    ids = write_id_sets(tmp_path, 40, imagenet_dir, spoken_dir[0], "train")["imagefolder"]
    loader = make_loader(dataset="imagefolder", batch_size=6, device="cpu", crop_size=32, aug_repeats=3, seed=2,
                         soft_targets=False, **ids)
    expected = list(loader.sampler)  # the epoch's samples (dataset positions, here each sample's label)
    assert len(loader) == num_repeated_samples(40, 1, 3) // 6 == len(expected) // 6
    images, labels = zip(*[(x, y) for x, y in loader])
    images, labels = torch.cat(images), torch.cat(labels)
    by_sample = collections.defaultdict(list)
    for image, label in zip(images, labels.tolist()):
        by_sample[label].append(image)
    repeated = [copies for copies in by_sample.values() if len(copies) >= 2]
    assert len(repeated) >= 8
    for copies in repeated:
        for a in range(len(copies)):
            for b in range(a):
                assert not torch.equal(copies[a], copies[b])
    assert sorted(labels.tolist()) == sorted(expected[: len(loader) * 6])
