"""Every source is sharded exactly, in every epoch, at sizes that are not whole batches.

Each set here gives every sample its own label, so a target names its sample. The ranks run in
one process (``rank=`` given), which reads the same samples as torchrun's processes would: the
sharding is a function of the arguments, checked under real launchers in test_clients.py.
"""

import collections

import pytest
import torch

from dali_mixup import make_loader
from helpers import ID_SOURCES as SOURCES
from helpers import write_id_sets


@pytest.fixture(scope="module")
def id_sets(tmp_path_factory, imagenet_dir, spoken_dir):
    """97 train samples (not a whole number of batches for any world size and batch below) and 33 val samples."""
    sets = {}
    for split, n in (("train", 97), ("val", 33)):
        sets[split] = write_id_sets(tmp_path_factory.mktemp(split), n, imagenet_dir, spoken_dir[0], split)
    return sets


def _loaders(id_sets, dataset, split, world_size, batch_size, **kwargs):
    image = {} if dataset == "speechcommands" else {"crop_size": 32}
    return [make_loader(dataset=dataset, split=split, rank=rank, world_size=world_size, batch_size=batch_size,
                        device="cpu", num_threads=1, seed=3, **image, **id_sets[split][dataset], **kwargs)
            for rank in range(world_size)]


def _ids(targets):
    return (targets.argmax(1) if targets.ndim == 2 else targets).tolist()


@pytest.mark.parametrize("world_size, batch_size", [(2, 8), (4, 6), (4, 5)])
@pytest.mark.parametrize("dataset", SOURCES)
def test_train_shards_are_disjoint_in_every_epoch_and_only_the_remainder_is_unseen(id_sets, dataset, world_size,
                                                                                   batch_size):
    n = 97
    loaders = _loaders(id_sets, dataset, "train", world_size, batch_size)
    orders = []
    for epoch in range(3):
        seen = [[sample for _, targets in loader for sample in _ids(targets)] for loader in loaders]
        for rank, samples in enumerate(seen):
            assert len(samples) == len(loaders[rank]) * batch_size, (epoch, rank)
            assert len(set(samples)) == len(samples), f"epoch {epoch}: rank {rank} sees a sample twice"
        counts = collections.Counter(sample for samples in seen for sample in samples)
        assert max(counts.values()) == 1, f"epoch {epoch}: a sample is on two ranks"
        assert n - len(counts) == n % (world_size * batch_size), f"epoch {epoch}: {n - len(counts)} unseen"
        orders.append(seen)
    assert orders[0] != orders[1] != orders[2]  # a new order every epoch


@pytest.mark.parametrize("dataset", SOURCES)
def test_val_is_every_sample_once_with_no_empty_batch_and_as_many_batches_on_every_rank(id_sets, dataset):
    # 33 samples, 2 ranks, batch 16: shares of 16 and 17; a fixed batch size would give rank 0 an empty batch.
    loaders = _loaders(id_sets, dataset, "val", 2, 16)
    batches = [[_ids(labels) for _, labels in loader] for loader in loaders]
    assert [len(b) for b in batches] == [len(loader) for loader in loaders] == [2, 2]
    assert [len(batch) for batch in batches[0]] == [8, 8] and [len(batch) for batch in batches[1]] == [16, 1]
    assert sorted(sample for rank in batches for batch in rank for sample in batch) == list(range(33))


@pytest.mark.parametrize("dataset", ["imagefolder", "webdataset", "cifar100"])
def test_each_rank_reads_what_distributed_sampler_gives_it(id_sets, dataset):
    """The shares are DistributedSampler's (seed, epoch, drop_last=True), cut to whole batches."""
    from torch.utils.data.distributed import DistributedSampler

    world_size, batch_size = 4, 5
    loaders = _loaders(id_sets, dataset, "train", world_size, batch_size)
    labels = loaders[0].dataset.labels
    for epoch in (0, 2):
        for rank, loader in enumerate(loaders):
            sampler = DistributedSampler(range(97), num_replicas=world_size, rank=rank, seed=3, drop_last=True)
            sampler.set_epoch(epoch)
            expected = list(sampler)[: len(loader) * batch_size]
            loader.set_epoch(epoch)
            assert list(loader.sampler) == expected
            assert [sample for _, targets in loader for sample in _ids(targets)] == labels[expected].tolist()


def test_set_epoch_chooses_the_epoch_and_a_broken_one_does_not_leak(id_sets):
    loader, = _loaders(id_sets, "filelist", "train", 1, 8)
    first = [_ids(t) for _, t in loader]
    second = [_ids(t) for _, t in loader]
    for _ in loader:  # epoch 2, broken off after a batch
        break
    next(iter(loader))  # epoch 3, peeked at
    loader.set_epoch(1)
    assert [_ids(t) for _, t in loader] == second  # epoch 1 again, whole
    assert [_ids(t) for _, t in loader] != first  # then epoch 2
    loader.set_epoch(0)
    assert [_ids(t) for _, t in loader] == first


def test_targets_are_class_ids_unless_something_mixes(id_sets):
    kwargs = dict(dataset="cifar100", split="train", device="cpu", batch_size=8, **id_sets["train"]["cifar100"])
    images, targets = next(iter(make_loader(**kwargs)))
    assert targets.dtype == torch.int64 and targets.shape == (8,)
    for extra in ({"soft_targets": True}, {"label_smoothing": 0.1}, {"mixup_alpha": 0.2}, {"cutmix_alpha": 1.0}):
        _, targets = next(iter(make_loader(**kwargs, **extra)))
        assert targets.dtype == torch.float32 and targets.shape == (8, 100), extra
