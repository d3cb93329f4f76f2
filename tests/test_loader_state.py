"""loader.state_dict() / load_state_dict(): a new loader given the state saved after k batches yields exactly what
the first would have, the rest of that epoch and the next, for every source, train and val, on 2 ranks too."""

import io

import pytest
import torch

from dali_mixup import make_loader
from helpers import ID_SOURCES, write_id_sets

MIXING = {"mixup_alpha": 0.4, "cutmix_alpha": 1.0, "switch_prob": 0.5}


@pytest.fixture(scope="module")
def sets(tmp_path_factory, imagenet_dir, spoken_dir):
    """40 samples of every source, as a train and as a val split."""
    return {split: write_id_sets(tmp_path_factory.mktemp(split), 40, imagenet_dir, spoken_dir[0], split)
            for split in ("train", "val")}


def _kwargs(sets, dataset, split, rank, world_size):
    image = {} if dataset == "speechcommands" else {"crop_size": 32, "reprob": 0.25}
    if dataset in ("imagefolder", "cifar100") and split == "train":
        image["auto_augment"] = "rand-m9-n2"
    extra = {**MIXING, **image} if split == "train" else {k: v for k, v in image.items() if k == "crop_size"}
    return dict(dataset=dataset, split=split, batch_size=4, device="cpu", num_threads=1, seed=5, rank=rank,
                world_size=world_size, **sets[split][dataset], **extra)


def _round_trip(state):
    """Through torch.save and torch.load(weights_only=True), as a checkpoint goes."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _equal(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) and torch.equal(s, t) for (x, s), (y, t) in zip(a, b))


@pytest.mark.parametrize("split", ["train", "val"])
@pytest.mark.parametrize("dataset", ID_SOURCES)
@pytest.mark.parametrize("rank, world_size", [(0, 1), (1, 2)])
def test_a_restored_loader_goes_on_exactly(sets, dataset, split, rank, world_size):
    kwargs = _kwargs(sets, dataset, split, rank, world_size)
    first = make_loader(**kwargs)
    next(iter(first))  # an epoch broken off, then epoch 1 read for 2 batches and saved
    epoch = iter(first)
    done = [next(epoch) for _ in range(2)]
    state = _round_trip(first.state_dict())
    rest, following = list(epoch), list(first)
    assert len(done) + len(rest) == len(first) and len(following) == len(first)

    second = make_loader(**kwargs)
    second.load_state_dict(state)
    assert _equal(list(second), rest) and _equal(list(second), following)
    if split == "train":  # the test can fail: without the state, a new loader reads something else
        assert not _equal(list(make_loader(**kwargs))[2:], rest)


def test_a_state_saved_at_an_epoch_s_end_starts_the_next(sets):
    kwargs = _kwargs(sets, "filelist", "train", 0, 1)
    first = make_loader(**kwargs)
    list(first)
    state = _round_trip(first.state_dict())
    second = make_loader(**kwargs)
    second.load_state_dict(state)
    assert _equal(list(second), list(first))


def test_a_state_of_another_loader_is_refused(sets):
    state = make_loader(**_kwargs(sets, "filelist", "train", 0, 1)).state_dict()
    with pytest.raises(ValueError, match=r"the state is of another loader: rank 0 \(here 1\), world_size 1 \(here 2\)"):
        make_loader(**_kwargs(sets, "filelist", "train", 1, 2)).load_state_dict(state)
    with pytest.raises(ValueError, match="not a loader state"):
        make_loader(**_kwargs(sets, "filelist", "train", 0, 1)).load_state_dict({"epoch": 3})


def test_mixup_switched_off_comes_back_off(sets):
    kwargs = _kwargs(sets, "webdataset", "train", 0, 1)
    first = make_loader(**kwargs)
    list(first)
    first.mixup_enabled = False
    state = _round_trip(first.state_dict())
    second = make_loader(**kwargs)
    second.load_state_dict(state)
    assert not second.mixup_enabled and _equal(list(second), list(first))
