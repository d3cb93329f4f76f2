"""Sharding across real torchrun processes: train shards are disjoint and cover the set, val sees each sample once."""

import json
import os
import subprocess
import sys

import numpy as np

from dali_mixup import formats
from dali_mixup.cifar import write_cifar
from dali_mixup.datasets import cifar_like_arrays, pack_shards

HERE = os.path.dirname(__file__)


def test_two_ranks_split_every_dataset_exactly(tmp_path, imagenet_dir):
    files = [*formats.image_folder(str(imagenet_dir / "train"))[0], *formats.image_folder(str(imagenet_dir / "val"))[0]]
    # One label per file: 24 train files (3 batches of 4 per rank), 25 val files (uneven: 13 + 12).
    (tmp_path / "train.txt").write_text("".join(f"{f} {k}\n" for k, f in enumerate(files[:24])))
    (tmp_path / "val.txt").write_text("".join(f"{f} {k}\n" for k, f in enumerate(files[:25])))
    pack_shards(files[:25], list(range(25)), str(tmp_path / "shards"), per_shard=10)
    images, _ = cifar_like_arrays(100, 1, seed=0)
    write_cifar(str(tmp_path / "cifar"), "cifar100", (images, np.arange(100)), (images[:99], np.arange(99)),
                [str(k) for k in range(100)])

    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         os.path.join(HERE, "shard_worker.py"), str(tmp_path), str(tmp_path), str(tmp_path / "cifar")],
        check=True, timeout=300,
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]

    for name, size in (("files_train", 24), ("cifar_train", 100)):
        assert ranks[0]["len"][name] == ranks[1]["len"][name]  # the same number of steps on every rank
        for epoch in range(2):
            first, second = ranks[0][name][epoch], ranks[1][name][epoch]
            assert len(first) == len(second) == size // 2
            assert not set(first) & set(second), f"{name}: ranks share samples in epoch {epoch}"
            assert sorted(first + second) == list(range(size)), f"{name}: epoch {epoch} does not cover the set"
        assert ranks[0][name][0] != ranks[0][name][1], f"{name}: epoch 2 repeats epoch 1's order"
    for name, size in (("files_val", 25), ("shards_val", 25), ("cifar_val", 99), ("shards_val_after_break", 25)):
        assert sorted(ranks[0][name] + ranks[1][name]) == list(range(size)), f"{name}: not every sample once"
    # After a `break` and a peek, a new loop is a whole epoch: len(loader) batches, disjoint shards.
    for name, size, batch in (("files_train_after_break", 24, 4), ("cifar_train_after_break", 100, 10)):
        first, second = ranks[0][name], ranks[1][name]
        assert len(first) == len(second) == ranks[0]["len"][name[: -len("_after_break")]] * batch
        assert not set(first) & set(second) and sorted(first + second) == list(range(size)), name
