"""Run by torchrun in test_sharding.py: every rank writes the sample ids it saw to OUT/rank{RANK}.json.

Each dataset gives every sample its own label, so a target names its sample.
"""

import json
import os
import sys

from dali_mixup import make_loader


def ids(loader, training):
    seen = []
    for _, targets in loader:
        seen += targets.tolist()  # class ids: nothing mixes
    return seen


def ids_after_a_break(loader, training):
    """The ids of the epoch that follows a broken-off one and a peek, as a DataLoader would give them."""
    for _ in loader:
        break
    next(iter(loader))
    return ids(loader, training)


def main(out, root, cifar_root):
    common = {"device": "cpu", "num_threads": 1, "batch_size": 4, "crop_size": 32, "seed": 5}
    train = make_loader(dataset="filelist", root=root, file_list=os.path.join(root, "train.txt"), **common)
    cifar_train = make_loader(dataset="cifar100", root=cifar_root, **{**common, "batch_size": 10})
    seen = {
        "files_train": [ids(train, True) for _ in range(2)],
        "files_val": ids(make_loader(dataset="filelist", root=root, file_list=os.path.join(root, "val.txt"), split="val", **common), False),
        "shards_val": ids(make_loader(dataset="webdataset", root=os.path.join(root, "shards"), split="val", **common), False),
        "cifar_train": [ids(cifar_train, True) for _ in range(2)],
        "cifar_val": ids(make_loader(dataset="cifar100", root=cifar_root, split="val", **common), False),
        "files_train_after_break": ids_after_a_break(train, True),
        "cifar_train_after_break": ids_after_a_break(cifar_train, True),
        "shards_val_after_break": ids_after_a_break(
            make_loader(dataset="webdataset", root=os.path.join(root, "shards"), split="val", **common), False),
        "len": {"files_train": len(train), "cifar_train": len(cifar_train)},
    }
    with open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w") as f:
        json.dump(seen, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
