"""Every pipeline the loader makes for ``device="gpu"`` is a valid DALI graph, checked where there is no GPU.

DALI builds a pipeline's graph in Python when the pipeline is made, before anything runs; its checks
(an argument input on the GPU, a GPU node given to a CPU operator, an operator with no GPU backend)
need no GPU. So here ``torch.cuda.is_available`` says yes, the iterator (which would start the
executor) is a stub and CIFAR's copy to the GPU stays on the host, and each GPU graph is made for
real. The first run of this check found CIFAR's val resize reading its images' shapes on the GPU
(``fn.shapes``), which DALI refuses as the resize's arguments.
"""
import numpy as np
import pytest
import torch

from dali_mixup import loader as loader_module
from dali_mixup.build import fused_backends
from dali_mixup.datasets import write_cifar_like
from pipelines import sources
from tests.helpers import ID_SOURCES, write_id_sets


class _Iterator:
    """In place of DALIGenericIterator, which builds the pipeline (and so needs a GPU)."""

    def __init__(self, pipeline, *args, **kwargs):
        self.pipeline = pipeline


@pytest.fixture
def gpu_graphs(monkeypatch):
    """``make_loader`` as on a GPU machine, up to the graph."""
    fused_backends()  # the plugin is built and loaded first: its build asks torch about the GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(loader_module, "DALIGenericIterator", _Iterator)
    monkeypatch.setattr(sources.Cifar, "on_gpu", lambda self, device: torch.from_numpy(self.images))

    def make(**kwargs):
        loader = loader_module.make_loader(device="gpu", batch_size=4, num_threads=1, **kwargs)
        return loader.pipeline, _operators(loader.pipeline)

    return make


def _operators(pipeline):
    """The names of the operators the pipeline's outputs depend on."""
    names, todo, seen = set(), list(pipeline._graph_out), set()
    while todo:
        operator = todo.pop().source
        if operator is not None and id(operator) not in seen:
            seen.add(id(operator))
            names.add(operator.name.strip("_").rsplit("_", 1)[0])
            todo.extend(operator.inputs)
    return names


def _on_gpu(pipeline):
    return [node.device for node in pipeline._graph_out] == ["gpu", "gpu"]


@pytest.fixture(scope="module")
def id_sets(tmp_path_factory, imagenet_dir, spoken_dir):
    root = tmp_path_factory.mktemp("gpu-graphs")
    return {split: write_id_sets(root / split, 8, imagenet_dir, spoken_dir[0], split) for split in ("train", "val")}


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "stock"])
@pytest.mark.parametrize("dataset", ID_SOURCES)
@pytest.mark.parametrize("split", ["train", "val"])
def test_every_source_makes_gpu_graphs(gpu_graphs, id_sets, dataset, split, fused, monkeypatch):
    if not fused:
        monkeypatch.setenv("DALI_MIXUP_FUSED", "0")
    mixing = {"mixup_alpha": 0.2} if split == "train" else {}
    pipeline, operators = gpu_graphs(dataset=dataset, split=split, **id_sets[split][dataset], **mixing)
    assert _on_gpu(pipeline)
    if dataset != "speechcommands" and (split == "train" or dataset != "cifar100"):
        assert ("MixupNormalize" in operators) == fused, operators


# The option sets that take other branches of the image graphs, on ImageNet-like JPEGs and on CIFAR's arrays.
OPTIONS = [
    {"split": "train", "mixup_alpha": 0.8, "cutmix_alpha": 1.0},
    {"split": "train", "cutmix_alpha": 1.0, "per_sample": True},
    {"split": "train", "mixup_alpha": 0.2, "pairs": True},
    {"split": "train", "mixup_alpha": 0.2, "auto_augment": "rand-m9-mstd0.5-inc1", "reprob": 0.25},
    {"split": "train", "mixup_alpha": 0.2, "auto_augment": "dali-rand-m9-n2"},
    {"split": "train", "mixup_alpha": 0.2, "color_jitter": 0.4, "grayscale_prob": 0.2, "gaussian_blur_prob": 0.5},
    {"split": "train", "mixup_alpha": 0.2, "interpolation": "random", "vflip": 0.5},
    {"split": "train", "label_smoothing": 0.1, "dtype": torch.float16, "channels_last": True},
    {"split": "val", "crop_mode": "border"},
    {"split": "val", "crop_mode": "squash", "interpolation": "bicubic", "dtype": torch.float16},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda options: "-".join(map(str, options.values())))
def test_imagenet_options_make_gpu_graphs(gpu_graphs, imagenet_dir, options):
    pipeline, _ = gpu_graphs(dataset="imagefolder", root=imagenet_dir, crop_size=64, **options)
    assert _on_gpu(pipeline)


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu-graphs-cifar")
    write_cifar_like(str(root), "cifar10", per_class=1, test_per_class=1)
    return root


@pytest.mark.parametrize("options", [
    {"split": "train", "mixup_alpha": 1.0, "cutmix_alpha": 1.0, "auto_augment": "rand-m9-mstd0.5-inc1", "reprob": 0.25},
    *({"split": split, "augment": "random_resized_crop", "crop_size": 64, "crop_mode": mode}
      for split in ("train", "val") for mode in ("center", "border")),
], ids=lambda options: "-".join(map(str, options.values())))
def test_cifar_options_make_gpu_graphs(gpu_graphs, cifar_root, options):
    # CIFAR's images come undecoded (and on the GPU): their shapes are read from the tensors.
    pipeline, _ = gpu_graphs(dataset="cifar10", root=cifar_root, **options)
    assert _on_gpu(pipeline)


@pytest.mark.parametrize("path", ["plain", "normalize", "fused", "composite", "fused_cutmix", "composite_cutmix",
                                  "fused_resize", "resize_then_fused"])
def test_the_operator_benchmark_makes_gpu_graphs(gpu_graphs, path, monkeypatch):
    from benchmarks.mixup_op import resident_batch

    if path.startswith("composite"):
        monkeypatch.setenv("DALI_MIXUP_FUSED", "0")
    crops, labels = np.zeros((2, 48, 40, 3), np.uint8), [np.array([k], np.int32) for k in range(2)]
    pipeline = resident_batch(crops, labels, "gpu", path, 32, batch_size=2, num_threads=1, device_id=0)
    assert [node.device for node in pipeline._graph_out] == ["gpu", "gpu" if path not in ("plain", "normalize")
                                                              else "cpu"]
    assert ("MixupNormalize" in _operators(pipeline)) == ("fused" in path)


@pytest.mark.parametrize("stage", ["stage_decode", "stage_region_decode", "stage_region_fused_resize",
                                   "stage_region_resize_linear", "stage_region_resize"])
def test_the_loader_benchmark_stages_make_gpu_graphs(gpu_graphs, imagenet_dir, stage):
    from benchmarks.loader import stage_pipeline

    pipeline = stage_pipeline(str(imagenet_dir / "train"), stage, 64, "gpu", batch_size=2, num_threads=1, device_id=0)
    assert [node.device for node in pipeline._graph_out] == ["gpu"]


@pytest.mark.parametrize("per_sample", [False, True])
def test_the_demo_grid_makes_a_gpu_graph(gpu_graphs, per_sample):
    from dali_mixup.photos import color_photos
    from dali_mixup.show import photo_mixup_pipeline

    photos = color_photos()
    pipeline = photo_mixup_pipeline(photos, 64, 1.0, per_sample, "gpu", batch_size=len(photos), num_threads=1,
                                    device_id=0)
    assert [node.device for node in pipeline._graph_out][:2] == ["gpu", "gpu"]
