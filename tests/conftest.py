import pytest
import torch

CUDA = torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords and not CUDA:
            item.add_marker(skip_gpu)


# Parametrize over this to run a test on the CPU always and on the GPU where there is one.
DEVICES = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)]
