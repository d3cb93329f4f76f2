"""The fused MixupNormalize plugin against the PyTorch reference, its fallback, and its build cache."""

import logging
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import numpy as np
import pytest
import torch
from nvidia.dali import types

from conftest import DEVICES
from dali_mixup import build, mixup_reference
from helpers import MEAN, STD, crops_pipeline, photo_crops


def tiled_crops(batch_size, size, seed):
    """``batch_size`` uint8 crops of the real photos, ``size`` pixels square (tiled past 256), and class ids."""
    crops, labels = photo_crops(batch_size, size=min(size, 256), seed=seed)
    return [np.ascontiguousarray(np.resize(crop, (size, size, 3))) for crop in crops], labels


def run(device, batch_size, seed=3, size=24, **mixup_args):
    images, labels = tiled_crops(batch_size, size, seed)
    flips = [np.int32(k % 3 == 0) for k in range(batch_size)]
    pipe = crops_pipeline(images, labels, flips, device, {"num_classes": 10, "alpha": 0.4, **mixup_args},
                          batch_size=batch_size, num_threads=2, device_id=0 if device == "gpu" else None, seed=seed)
    pipe.build()
    ops = _graph_ops(pipe)
    out, targets, lam, perm = (o.as_cpu().as_array() for o in pipe.run())
    return images, labels, flips, out, targets, lam, perm, ops


def _graph_ops(pipe):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "graph.dot")
        pipe.save_graph_to_dot_file(path)
        return open(path).read()


def reference(images, labels, flips, lam, perm, layout, label_smoothing=0.0, box=None):
    x = np.stack([image[:, ::-1] if flip else image for image, flip in zip(images, flips)]).astype(np.float32)
    x = torch.from_numpy((x - MEAN) / STD)
    if layout == "CHW":
        x = x.permute(0, 3, 1, 2)
    return mixup_reference(x, torch.tensor(np.array(labels)), torch.from_numpy(lam), torch.from_numpy(perm).long(),
                           10, label_smoothing=label_smoothing, box=None if box is None else torch.from_numpy(box),
                           layout=layout)


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
@pytest.mark.parametrize("dtype", [types.FLOAT, types.FLOAT16], ids=["float32", "float16"])
@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("size, batch_size", [(24, 16), (22, 16), (1100, 2)], ids=["wide", "byte-wise", "grid-stride"])
def test_gpu_matches_the_reference(dtype, layout, size, batch_size):
    # 1100 x 1100 pixels are 302,500 groups of 4, more than the grid's 1024 x 256 threads.
    assert "gpu" in build.fused_backends(), build.unavailable_reason("gpu")
    images, labels, flips, out, targets, lam, perm, ops = run("gpu", batch_size, size=size, output_layout=layout,
                                                              dtype=dtype, per_sample=True, label_smoothing=0.1)
    assert "MixupNormalize" in ops and out.dtype == (np.float16 if dtype == types.FLOAT16 else np.float32)
    expected_images, expected_targets = reference(images, labels, flips, lam, perm, layout, label_smoothing=0.1)
    if dtype == types.FLOAT16:
        assert _half_ulp_error(out, expected_images.numpy()).max() <= 1.0  # rounded to nearest
    else:
        assert np.abs(out - expected_images.numpy()).max() < 1e-5
    assert np.abs(targets - expected_targets.numpy()).max() < 1e-6


@pytest.fixture(scope="module")
def blend_on_host(tmp_path_factory):
    """The CUDA backend's host-side setup and per-thread code as a host program, under ASan and UBSan
    (tests/csrc/blend_on_host.cc)."""
    import nvidia.dali.sysconfig as dali_sysconfig

    cuda_include = build.find_toolchain(cpu_only=True).include
    assert cuda_include is not None, "no CUDA headers: the fused operator could not build here either"
    program = tmp_path_factory.mktemp("kernel") / "blend_on_host"
    source = os.path.join(os.path.dirname(__file__), "csrc", "blend_on_host.cc")
    includes = [f"-I{build.CSRC}", f"-I{dali_sysconfig.get_include_dir()}", f"-I{cuda_include}"]
    subprocess.run([os.environ.get("CXX", "c++"), "-std=c++20", "-O1", "-g", "-Wall", "-Wno-unknown-pragmas",
                    "-Werror", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer",
                    *includes, source, "-o", str(program)], check=True)
    return program


GUARD = 16  # values before and after every sample's output (blend_on_host.cc)


def run_on_host(program, folder, images, labels, partner, lam, mirror, *, layout, dtype, in_offset=0, out_offset=0,
                reverse=False, label_smoothing=0.0, geometry=(), boxes=None):
    """Run the host program on a batch; ``(wide, outputs, before, after, targets)`` per sample as numpy arrays.

    ``before`` and ``after`` are each sample's guards (with the offset's values before it); ``boxes``
    are the CutMix boxes (``[n, 4]`` int32), all empty when None."""
    n, (height, width, _) = len(images), images[0].shape
    boxes = np.zeros((n, 4), np.int32) if boxes is None else np.asarray(boxes, np.int32)
    inputs = folder / "in.bin"
    with open(inputs, "wb") as f:
        for array in (np.stack(images), partner, lam, mirror, np.asarray(labels, np.int32), boxes, MEAN, STD):
            f.write(np.ascontiguousarray(array, dtype=array.dtype if array.dtype == np.uint8 else None).tobytes())
    outputs = folder / "out.bin"
    args = [n, height, width, 10, int(layout == "CHW"), int(dtype == np.float16), in_offset, out_offset, int(reverse),
            label_smoothing, *geometry]
    result = subprocess.run([str(program), str(inputs), str(outputs), *map(str, args)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]  # AddressSanitizer and UBSan report here
    raw = outputs.read_bytes()
    values = height * width * 3
    per_sample = GUARD + out_offset + values + GUARD
    out = np.frombuffer(raw, dtype, n * per_sample, offset=4).reshape(n, per_sample)
    targets = np.frombuffer(raw, np.float32, offset=4 + out.nbytes).reshape(n, 10)
    shape = (3, height, width) if layout == "CHW" else (height, width, 3)
    samples = out[:, GUARD + out_offset : GUARD + out_offset + values].reshape(n, *shape)
    return bool(np.frombuffer(raw, np.int32, 1)[0]), samples, out[:, : GUARD + out_offset], out[:, -GUARD:], targets


def _half_ulp_error(out, expected):
    """How many half-ulps of float16 each value is off from the exact result (at most 1 when rounded to nearest).

    The ulp is that of the binade of the rounded magnitude, so that a value just past a power of two,
    which rounds to the power of two, is measured with the larger ulp above it."""
    exact = expected.astype(np.float64)
    ulp = np.spacing(np.abs(exact).astype(np.float16)).astype(np.float64)
    return np.abs(out.astype(np.float64) - exact) / (0.5 * ulp + 2e-6)  # + the float32 arithmetic's error


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("height, width, in_offset, out_offset, geometry, wide", [
    (20, 24, 0, 0, (), True),
    (20, 25, 0, 0, (), False),  # width % 4 = 1, 2, 3: the last group of a row is short
    (21, 22, 0, 0, (), False),
    (19, 23, 0, 0, (), False),
    (20, 24, 1, 0, (), False),  # input bytes off a 4-byte word: the wide path's loads need it
    (20, 24, 2, 0, (), False),
    (20, 24, 3, 0, (), False),
    (20, 24, 0, 1, (), False),  # output values off a 16-byte (float) or 8-byte (half) vector
    (20, 24, 0, 2, (), False),
    (20, 24, 0, 3, (), False),
    (20, 24, 0, 0, (32, 2), True),  # 64 threads for 120 groups: the grid-stride loop takes turns
    (3, 8, 0, 0, (), True),  # 256 threads for 6 groups: most threads have nothing to do
    (300, 3500, 0, 0, (), True),  # the kernels' own grid of 1024 x 256 threads, fewer than the 262,500 groups
], ids=["wide", "width%4=1", "width%4=2", "width%4=3", "input+1", "input+2", "input+3", "output+1", "output+2",
        "output+3", "grid-stride", "idle-threads", "large"])
def test_the_cuda_backend_run_on_the_host_matches_the_reference(blend_on_host, tmp_path, dtype, layout, height, width,
                                                                 in_offset, out_offset, geometry, wide):
    n = 2 if height * width > 10**5 else 8
    rng = np.random.default_rng(5)
    crops, labels = photo_crops(n, size=min(max(height, width), 256), seed=5)  # tiled up to the large size
    images = [np.ascontiguousarray(np.resize(crop, (height, width, 3))) for crop in crops]
    perm = rng.permutation(n).astype(np.int32)
    lam = rng.beta(0.4, 0.4, n).astype(np.float32)  # one λ per sample
    flips = np.array([0, 1, 1, 0, 1, 0, 0, 1][:n], np.int32)
    if n == 8:
        assert len({(flips[i], flips[j]) for i, j in enumerate(perm)}) == 4, "each (self, partner) flip pair occurs"
    # CutMix boxes on some samples: one whose edges fall inside groups of 4, the whole image, a corner;
    # the other samples are blended.
    boxes = np.zeros((n, 4), np.int32)
    boxes[1] = [min(2, height - 1), 3, height - 1, min(17, width)]
    if n > 6:
        boxes[4] = [0, 0, height, width]
        boxes[6] = [height - 3, width - 5, height, width]
    for reverse, cut in ((False, False), (True, False), (False, True), (True, True)):
        expected, expected_targets = reference(images, labels, flips, lam, perm, layout, label_smoothing=0.1,
                                               box=boxes if cut else None)
        used_wide, out, before, after, targets = run_on_host(
            blend_on_host, tmp_path, images, labels, perm, lam, flips, layout=layout, dtype=dtype,
            in_offset=in_offset, out_offset=out_offset, reverse=reverse, label_smoothing=0.1, geometry=geometry,
            boxes=boxes if cut else None)
        assert used_wide == wide
        if dtype == np.float16:
            assert _half_ulp_error(out, expected.numpy()).max() <= 1.0  # rounded to nearest
        else:
            assert np.abs(out - expected.numpy()).max() < 1e-5
        assert np.isnan(before.astype(np.float32)).all() and np.isnan(after.astype(np.float32)).all()
        assert np.abs(targets - expected_targets.numpy()).max() < 1e-6


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
    no_toolkit = f"build.TOOLKIT_HOME = {str(tmp_path / 'none')!r}; build._nvcc_candidates = lambda: []"
    library = _build_in_a_new_process(tmp_path / "cache", no_toolkit, env)
    assert os.path.isfile(library)
    commands = open(os.path.join(os.path.dirname(library), "build.ninja")).read()
    includes = re.findall(r"-I(\S+)", commands)
    cuda = [path for path in includes if os.path.isfile(os.path.join(path, "cuda_runtime_api.h"))]
    packages = sysconfig.get_paths()["platlib"]
    assert cuda and all(os.path.realpath(path).startswith(os.path.realpath(packages)) for path in cuda), includes


def _without_a_toolkit(tmp_path):
    """An environment with no CUDA toolkit to be found: no $CUDA_HOME or $CUDA_PATH, no nvcc on $PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_HOME", "CUDA_PATH", "TORCH_CUDA_ARCH_LIST")}
    env["PATH"] = os.pathsep.join(d for d in env["PATH"].split(os.pathsep) if not os.path.isfile(os.path.join(d, "nvcc")))
    return env, f"build.TOOLKIT_HOME = {str(tmp_path / 'none')!r}"


def test_without_a_toolkit_the_gpu_backend_builds_from_pips_cuda(tmp_path):
    # torch's cu13 wheels bring no nvcc; the cuda-build extra (nvidia-cuda-nvcc, nvidia-nvvm) does, and
    # its runtime library is only libcudart.so.13, which torch's "-lcudart" alone would not find.
    env, no_toolkit = _without_a_toolkit(tmp_path)
    script = (f"import os; from dali_mixup import build; {no_toolkit}; "
              "path, backends, toolchain = build.build(); "
              "print(path, ','.join(backends), toolchain.nvcc, os.environ.get('TORCH_CUDA_ARCH_LIST'))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**env, "DALI_MIXUP_CACHE": str(tmp_path / "cache"), "TORCH_CUDA_ARCH_LIST": "9.0"})
    assert result.returncode == 0, result.stderr[-3000:]
    library, backends, nvcc, arch_env = result.stdout.split()[-4:]
    packages = os.path.realpath(sysconfig.get_paths()["platlib"])
    assert backends == "cpu,gpu" and nvcc.startswith(packages), result.stdout
    assert arch_env == "9.0"  # the build read the architectures and left the environment as it was
    linked = subprocess.run(["ldd", library], capture_output=True, text=True).stdout
    assert re.search(rf"libcudart\.so\.\d+ => {re.escape(packages)}/nvidia/", linked), linked
    assert "-gencode=arch=compute_90,code=sm_90" in open(os.path.join(os.path.dirname(library), "build.ninja")).read()


def test_a_gpu_pipeline_without_the_gpu_backend_warns_with_the_cause(tmp_path):
    env, no_toolkit = _without_a_toolkit(tmp_path)
    script = f"""
import logging
logging.basicConfig()
from nvidia.dali import fn, pipeline_def
from dali_mixup import build, mixup
{no_toolkit}
build._nvcc_candidates = lambda: []

@pipeline_def(batch_size=2, num_threads=1, device_id=0)
def pipe():
    crops = fn.external_source(name="crops", device="gpu", layout="HWC")
    labels = fn.external_source(name="labels")
    return mixup(crops, labels, num_classes=3, alpha=0.2, mean=[0, 0, 0], std=[1, 1, 1])

pipe()  # defining the graph needs no GPU
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**env, "DALI_MIXUP_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("mixup on the gpu composes stock DALI operators" in result.stderr
            and "its GPU backend was not built: no nvcc for torch's CUDA" in result.stderr
            and "pip install 'dali-mixup[cuda-build]'" in result.stderr), result.stderr


def test_the_build_key_changes_with_the_architectures_flags_compiler_and_torch(monkeypatch):
    import torch

    toolchain = build.Toolchain("/cuda/bin/nvcc", "13.0", "/cuda/include", None)

    def key(archs="8.0;9.0+PTX", compiler="c++ 12.2"):
        return build.build_key(toolchain, compiler, build._flags(toolchain, archs))

    base = key()
    assert key("9.0") != base and key("8.0;9.0") != base  # an H100-only build is not an A100 build
    assert key(compiler="clang++ 17") != base
    assert base == key()
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    assert key() != base
    no_gpu = build.Toolchain(None, "none", "/cuda/include", "no nvcc")
    assert build.build_key(no_gpu, "c++", build._flags(no_gpu, None)) != base


@pytest.mark.parametrize("archs, flags", [
    ("9.0", ["-gencode=arch=compute_90,code=sm_90"]),
    ("8.0;9.0+PTX", ["-gencode=arch=compute_80,code=sm_80", "-gencode=arch=compute_90,code=sm_90",
                     "-gencode=arch=compute_90,code=compute_90"]),
    ("9.0a", ["-gencode=arch=compute_90a,code=sm_90a"]),
])
def test_architectures_become_gencode_flags(archs, flags):
    assert build.gencode_flags(archs) == flags


def test_a_bad_architecture_is_an_error_naming_it():
    with pytest.raises(ValueError, match="TORCH_CUDA_ARCH_LIST: 'sm_90' is not an architecture"):
        build.gencode_flags("8.0;sm_90")


def test_every_source_is_hashed_into_the_build_key_and_ships_with_the_package():
    import configparser
    import fnmatch

    hashed = set(build.HEADERS + build.CPU_SOURCES + build.CUDA_SOURCES)
    assert set(os.listdir(build.CSRC)) - {"__pycache__"} == hashed  # an unhashed header would leave stale builds
    config = configparser.ConfigParser()
    config.read(os.path.join(os.path.dirname(build.__file__), os.pardir, "setup.cfg"))
    patterns = [p.strip() for p in config["options.package_data"]["dali_mixup"].split(",")]
    assert all(any(fnmatch.fnmatch(f"csrc/{name}", p) for p in patterns) for name in hashed)


def test_no_compiler_falls_back_with_one_warning_that_names_the_cause(monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("DALI_MIXUP_CACHE", str(tmp_path))  # an empty cache: there is something to build
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        build.build()
    with caplog.at_level(logging.WARNING, logger="dali_mixup"):
        assert build._load_plugin.__wrapped__()[0] == ()
    records = [record.getMessage() for record in caplog.records if record.name == "dali_mixup"]
    assert len(records) == 1 and "composes stock DALI operators" in records[0]
    assert "Cause:\n  RuntimeError: no C++ compiler (c++ or $CXX)" in records[0]


def test_a_failed_compile_is_logged_with_the_compilers_error(tmp_path):
    sources = tmp_path / "csrc"
    shutil.copytree(build.CSRC, sources)
    with open(sources / "mixup_normalize.cc", "a") as f:
        f.write("\nthis is not C++;\n")
    script = (f"import logging; logging.basicConfig(); from dali_mixup import build; build.CSRC = {str(sources)!r}; "
              "build._nvcc_candidates = lambda: []; print(build.fused_backends())")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "DALI_MIXUP_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0 and result.stdout.strip().endswith("()"), result.stderr[-2000:]
    assert "composes stock DALI operators" in result.stderr
    assert re.search(r"Cause:\n  RuntimeError: .*\n  .*mixup_normalize\.cc:\d+:\d+: error: .*this", result.stderr), \
        result.stderr[-3000:]
