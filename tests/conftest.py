import os

import pytest
import torch

CUDA = torch.cuda.is_available()


def pytest_configure(config):
    # Under pytest-xdist every worker gets its share of the cores, and so do the trainers it starts. Left
    # at the default (a thread per core), two workers' torch threads spin against each other: two demo
    # trainings side by side on 2 cores took 44 s, against 14 s with one thread each (one alone: 9 s).
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        os.environ.setdefault("OMP_NUM_THREADS", threads)
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords and not CUDA:
            item.add_marker(skip_gpu)


# Parametrize over this to run a test on the CPU always and on the GPU where there is one.
DEVICES = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)]


@pytest.fixture(scope="session")
def imagenet_dir(tmp_path_factory):
    """An ImageNet-like dataset made by the dataset maker: train/ (4 classes x 6) and val/ (4 x 2)."""
    from dali_mixup.datasets import write_imagenet_like

    root = tmp_path_factory.mktemp("imagenet")
    write_imagenet_like(str(root / "train"), classes=4, per_class=6, seed=0)
    write_imagenet_like(str(root / "val"), classes=4, per_class=2, seed=0, start=6)
    return root


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory):
    """CIFAR-10-like (10 x 10 train, 10 x 2 test) and CIFAR-100-like (100 x 1, 100 x 1), both formats."""
    from dali_mixup.datasets import write_cifar_like

    root = tmp_path_factory.mktemp("cifar")
    write_cifar_like(str(root), "cifar10", per_class=10, test_per_class=2)
    write_cifar_like(str(root), "cifar100", per_class=1, test_per_class=1)
    return root


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """The demo dataset: scikit-learn's digits as 32x32 JPEGs in train/ and val/."""
    from dali_mixup.datasets import write_digits

    root = tmp_path_factory.mktemp("digits")
    write_digits(str(root))
    return root


@pytest.fixture(scope="session")
def spoken_dir(tmp_path_factory):
    """Speech Commands-like spoken words made by the maker: all 35 words x 4 clips, seed 0; and what it returned."""
    from dali_mixup.spoken_words import write_spoken_words

    root = tmp_path_factory.mktemp("spoken") / "set"
    splits = write_spoken_words(str(root), per_word=4, seed=0)
    return root, splits
