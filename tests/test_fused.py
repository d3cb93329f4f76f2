"""The fused MixupNormalize plugin against the PyTorch reference, its fallback, and its build cache."""

import ctypes
import logging
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def, types

from conftest import DEVICES
from dali_mixup import build, mixup, mixup_reference
from helpers import MEAN, STD, photo_crops


@pipeline_def
def crops_pipeline(images, labels, flips, device, mixup_args):
    crops = fn.external_source(source=lambda: images, batch=True, layout="HWC")
    classes = fn.external_source(source=lambda: labels, batch=True)
    mirror = fn.external_source(source=lambda: flips, batch=True)
    if device == "gpu":
        crops = crops.gpu()
    return mixup(crops, classes, mirror=mirror, mean=list(MEAN), std=list(STD), return_params=True, **mixup_args)


def run(device, batch_size, seed=3, size=24, **mixup_args):
    images, labels = photo_crops(batch_size, size=size, seed=seed)
    flips = [np.int32(k % 3 == 0) for k in range(batch_size)]
    pipe = crops_pipeline(images, labels, flips, device, {"num_classes": 10, "alpha": 0.4, **mixup_args},
                          batch_size=batch_size, num_threads=2, device_id=0 if device == "gpu" else None, seed=seed)
    pipe.build()
    ops = _graph_ops(pipe)
    out, targets, lam, perm = (o.as_cpu().as_array() for o in pipe.run())
    return images, labels, flips, out, targets, lam, perm, ops


def _graph_ops(pipe):
    path = f"/tmp/graph-{os.getpid()}.dot"
    pipe.save_graph_to_dot_file(path)
    text = open(path).read()
    os.remove(path)
    return text


def reference(images, labels, flips, lam, perm, layout, label_smoothing=0.0):
    x = np.stack([image[:, ::-1] if flip else image for image, flip in zip(images, flips)]).astype(np.float32)
    x = torch.from_numpy((x - MEAN) / STD)
    if layout == "CHW":
        x = x.permute(0, 3, 1, 2)
    return mixup_reference(x, torch.tensor(np.array(labels)), torch.from_numpy(lam), torch.from_numpy(perm).long(),
                           10, label_smoothing=label_smoothing)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "fallback"])
@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("per_sample", [False, True])
def test_cpu_matches_the_reference(monkeypatch, fused, layout, per_sample):
    if not fused:
        monkeypatch.setenv("DALI_MIXUP_FUSED", "0")
    elif "cpu" not in build.fused_backends():
        pytest.fail("the fused operator did not build on this machine")
    images, labels, flips, out, targets, lam, perm, ops = run(
        "cpu", 16, per_sample=per_sample, output_layout=layout, label_smoothing=0.1)
    assert ("MixupNormalize" in ops) == fused
    expected_images, expected_targets = reference(images, labels, flips, lam, perm, layout, label_smoothing=0.1)
    assert np.abs(out - expected_images.numpy()).max() < 1e-4
    assert np.abs(targets - expected_targets.numpy()).max() < 1e-6
    assert (len(set(lam.tolist())) > 1) == per_sample
    assert out.shape == ((16, 3, 24, 24) if layout == "CHW" else (16, 24, 24, 3))


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("size", [24, 22], ids=["wide", "byte-wise"])
def test_gpu_fp16_matches_the_reference(layout, size):
    assert "gpu" in build.fused_backends()
    images, labels, flips, out, targets, lam, perm, ops = run("gpu", 16, size=size, output_layout=layout,
                                                              dtype=types.FLOAT16)
    assert "MixupNormalize" in ops and out.dtype == np.float16
    expected_images, expected_targets = reference(images, labels, flips, lam, perm, layout)
    assert np.abs(out.astype(np.float32) - expected_images.numpy()).max() < 1e-2
    assert np.abs(targets - expected_targets.numpy()).max() < 1e-6


@pytest.fixture(scope="module")
def blend_on_host(tmp_path_factory):
    """The CUDA kernel's per-thread code compiled for the host (tests/csrc/blend_on_host.cc)."""
    import nvidia.dali.sysconfig as dali_sysconfig

    cuda_include = build._cuda_include(build._nvcc())
    assert cuda_include is not None, "no CUDA headers: the fused operator could not build here either"
    library = tmp_path_factory.mktemp("kernel") / "blend_on_host.so"
    source = os.path.join(os.path.dirname(__file__), "csrc", "blend_on_host.cc")
    includes = [f"-I{build.CSRC}", f"-I{dali_sysconfig.get_include_dir()}", f"-I{cuda_include}"]
    subprocess.run([os.environ.get("CXX", "c++"), "-std=c++17", "-O2", "-Wall", "-Wno-unknown-pragmas", "-Werror",
                    "-shared", "-fPIC", *includes, source, "-o", str(library)], check=True)
    function = ctypes.CDLL(str(library)).blend_on_host
    function.restype = ctypes.c_int
    return function


def _pointer(array):
    return array.ctypes.data_as(ctypes.c_void_p)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("height, width, in_offset, out_offset, wide", [
    (20, 24, 0, 0, True),
    (20, 25, 0, 0, False),  # width % 4 = 1, 2, 3: the last group of a row is short
    (21, 22, 0, 0, False),
    (19, 23, 0, 0, False),
    (20, 24, 1, 0, False),  # offsets of one value take the input off 4 bytes, the output off 16 or 8
    (20, 24, 0, 1, False),
], ids=["wide", "width%4=1", "width%4=2", "width%4=3", "unaligned-input", "unaligned-output"])
def test_the_cuda_kernel_run_on_the_host_matches_the_reference(blend_on_host, dtype, layout, height, width,
                                                                in_offset, out_offset, wide):
    n = 8
    crops, labels = photo_crops(n, size=max(height, width), seed=5)
    images = [np.ascontiguousarray(crop[:height, :width]) for crop in crops]
    rng = np.random.default_rng(5)
    perm = rng.permutation(n).astype(np.int32)
    lam = rng.beta(0.4, 0.4, n).astype(np.float32)
    flips = np.array([0, 1, 1, 0, 1, 0, 0, 1], np.int32)
    assert len({(flips[i], flips[j]) for i, j in enumerate(perm)}) == 4, "each (self, partner) flip pair occurs"
    batch = np.zeros(in_offset + n * height * width * 3, np.uint8)
    batch[in_offset:] = np.stack(images).ravel()
    shape = (n, 3, height, width) if layout == "CHW" else (n, height, width, 3)
    size, guard = int(np.prod(shape)), 16
    expected, _ = reference(images, labels, flips, lam, perm, layout)
    mean, std = np.ascontiguousarray(MEAN), np.ascontiguousarray(STD)
    # Many groups per thread (32 threads), and a few threads run last first: a write outside a
    # thread's own groups is then left in place in one of the two orders.
    for threads, reverse in [(32, False), (7, True)]:
        buffer = np.full(out_offset + size + guard, np.nan, dtype)
        used_wide = blend_on_host(_pointer(batch[in_offset:]), n, height, width, _pointer(perm), _pointer(lam),
                                  _pointer(flips), _pointer(mean), _pointer(std), layout == "CHW",
                                  dtype == np.float16, threads, reverse, _pointer(buffer[out_offset:]))
        assert bool(used_wide) == wide
        out = buffer[out_offset : out_offset + size].reshape(shape).astype(np.float32)
        assert np.abs(out - expected.numpy()).max() < (1e-2 if dtype == np.float16 else 1e-4)
        assert np.isnan(buffer[:out_offset]).all() and np.isnan(buffer[out_offset + size :]).all()


@pytest.mark.parametrize("device", DEVICES)
def test_the_operator_refuses_a_label_outside_the_classes(device):
    assert device in build.fused_backends()
    with pytest.raises(RuntimeError, match=r"label 2 of sample 2 is outside \[0, 2\)"):
        run(device, 4, num_classes=2)  # the labels are 0, 1, 2, 3


def _build_in_a_new_process(cache, setup, env=None):
    """The library ``build.build(cpu_only=True)`` returns, run after ``setup`` in a fresh interpreter.

    A process can load one MixupNormalize plugin (DALI refuses to register an operator twice), and
    a fresh one sees only what ``setup`` and ``env`` change.
    """
    script = f"from dali_mixup import build; {setup}; print(build.build(cpu_only=True)[0])"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**(os.environ if env is None else env), "DALI_MIXUP_CACHE": str(cache)})
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def test_build_cache_is_reused_and_rebuilt_when_the_source_changes(tmp_path):
    sources = tmp_path / "csrc"
    shutil.copytree(build.CSRC, sources)

    def build_in_a_new_process():
        return _build_in_a_new_process(tmp_path / "cache", f"build.CSRC = {str(sources)!r}")

    first = build_in_a_new_process()
    built_at = os.path.getmtime(first)
    again = build_in_a_new_process()
    assert again == first and os.path.getmtime(again) == built_at
    with open(sources / "mixup_normalize.cc", "a") as f:
        f.write("\n// a change\n")
    changed = build_in_a_new_process()
    assert changed != first and os.path.isfile(changed) and os.path.isfile(first)
    assert changed.startswith(str(tmp_path / "cache"))


def test_without_a_toolkit_the_cpu_backend_builds_with_the_pip_cuda_headers(tmp_path):
    # No nvcc, no $CUDA_HOME or $CUDA_PATH, no toolkit where one is looked for: what is left are
    # torch's pip CUDA headers and the cuda-headers extra.
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_HOME", "CUDA_PATH")}
    no_toolkit = f"build.TOOLKIT_HOME = {str(tmp_path / 'none')!r}; build._nvcc = lambda: None"
    library = _build_in_a_new_process(tmp_path / "cache", no_toolkit, env)
    assert os.path.isfile(library)
    commands = open(os.path.join(os.path.dirname(library), "build.ninja")).read()
    includes = re.findall(r"-I(\S+)", commands)
    cuda = [path for path in includes if os.path.isfile(os.path.join(path, "cuda_runtime_api.h"))]
    packages = sysconfig.get_paths()["platlib"]
    assert cuda and all(os.path.realpath(path).startswith(os.path.realpath(packages)) for path in cuda), includes


def test_every_source_is_hashed_into_the_build_key_and_ships_with_the_package():
    import configparser
    import fnmatch

    hashed = set(build.HEADERS + build.CPU_SOURCES + build.CUDA_SOURCES)
    assert set(os.listdir(build.CSRC)) - {"__pycache__"} == hashed  # an unhashed header would leave stale builds
    config = configparser.ConfigParser()
    config.read(os.path.join(os.path.dirname(build.__file__), os.pardir, "setup.cfg"))
    patterns = [p.strip() for p in config["options.package_data"]["dali_mixup"].split(",")]
    assert all(any(fnmatch.fnmatch(f"csrc/{name}", p) for p in patterns) for name in hashed)


def test_no_compiler_falls_back_with_one_clear_line(monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("DALI_MIXUP_CACHE", str(tmp_path))  # an empty cache: there is something to build
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        build.build()
    with caplog.at_level(logging.WARNING, logger="dali_mixup"):
        assert build._load_plugin.__wrapped__() == ()
    assert len(caplog.records) == 1 and "composes stock DALI operators" in caplog.records[0].getMessage()
