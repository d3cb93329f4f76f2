"""Build and load the fused ``MixupNormalize`` DALI operator (a plugin), with the graph composition as fallback.

    python -m dali_mixup.build [--cpu-only] [--verbose]

At first use the C++ (CPU) and CUDA (GPU) sources in ``dali_mixup/csrc`` are compiled against the
DALI that is installed, with ``torch.utils.cpp_extension.load`` (which brings caching, a file
lock and nvcc detection), and loaded with ``nvidia.dali.plugin_manager.load_library``. The build
is cached under ``$DALI_MIXUP_CACHE`` (default ``~/.cache/dali_mixup``), keyed by the DALI
version, the CUDA version and a hash of the sources. Without nvcc only the CPU backend is built;
without a compiler, or with ``DALI_MIXUP_FUSED=0``, ``dali_mixup.mixup`` composes stock DALI ops.
"""

import argparse
import functools
import glob
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import time

CSRC = os.path.join(os.path.dirname(__file__), "csrc")
CPU_SOURCES = ("mixup_normalize.cc",)
CUDA_SOURCES = ("mixup_normalize.cu",)
HEADERS = ("mixup_normalize.h", "blend.h", "blend_kernel.h")

# Where a CUDA toolkit is looked for after $CUDA_HOME, $CUDA_PATH and $PATH.
TOOLKIT_HOME = "/usr/local/cuda"

log = logging.getLogger("dali_mixup")
# A build takes well under a minute; a lock file older than this belongs to a killed build.
_STALE_LOCK_SECONDS = 600


def cache_root():
    return os.environ.get("DALI_MIXUP_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "dali_mixup"))


def _toolkit_homes():
    """$CUDA_HOME and $CUDA_PATH where set, then TOOLKIT_HOME."""
    return [os.environ[name] for name in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(name)] + [TOOLKIT_HOME]


def _nvcc():
    """nvcc from $CUDA_HOME or $CUDA_PATH, else on $PATH, else in TOOLKIT_HOME (torch's order)."""
    *set_homes, default_home = _toolkit_homes()
    candidates = [os.path.join(home, "bin", "nvcc") for home in set_homes]
    candidates += [shutil.which("nvcc"), os.path.join(default_home, "bin", "nvcc")]
    return next((path for path in candidates if path and os.path.isfile(path)), None)


def _cuda_version(nvcc):
    if nvcc is None:
        return "none"
    output = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    match = re.search(r"release (\d+\.\d+)", output)
    return match.group(1) if match else "unknown"


_CUDA_HEADERS = ("cuda_runtime_api.h", os.path.join("crt", "host_config.h"), os.path.join("nv", "target"))


def _cuda_include(nvcc):
    """The CUDA headers DALI's headers include: the toolkit's, else those that torch's CUDA build brings
    along in pip packages (``nvidia/*/include``, which the ``cuda-headers`` extra completes for
    CUDA 13; Triton's copy)."""
    import importlib.util

    candidates = [os.path.join(home, "include") for home in _toolkit_homes()]
    if nvcc is not None:
        candidates.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), "include"))
    for package in ("nvidia", "triton"):
        spec = importlib.util.find_spec(package)
        for root in (spec.submodule_search_locations or []) if spec else []:
            candidates += sorted(glob.glob(os.path.join(root, "*", "include")))
            candidates += sorted(glob.glob(os.path.join(root, "backends", "nvidia", "include")))
    for include in candidates:
        if all(os.path.exists(os.path.join(include, header)) for header in _CUDA_HEADERS):
            return include
    return None


def build_key(with_cuda, nvcc):
    """``dali<version>-cuda<version>-<source hash>``: a new DALI, CUDA or source gets a new build."""
    import nvidia.dali

    digest = hashlib.sha256()
    for name in HEADERS + CPU_SOURCES + (CUDA_SOURCES if with_cuda else ()):
        with open(os.path.join(CSRC, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read())
    cuda = _cuda_version(nvcc) if with_cuda else "none"
    return f"dali{nvidia.dali.__version__}-cuda{cuda}-{digest.hexdigest()[:16]}"


def build(cpu_only=False, verbose=False):
    """Compile the plugin (or reuse the cached build) and return ``(path, backends)``.

    Raises:
        RuntimeError: when there is no C++ compiler or the build fails.
    """
    import nvidia.dali.sysconfig as sysconfig
    from torch.utils import cpp_extension

    toolkit_nvcc = _nvcc()
    nvcc = None if cpu_only else toolkit_nvcc
    with_cuda = nvcc is not None
    key = build_key(with_cuda, nvcc)
    directory = os.path.join(cache_root(), key)
    library = os.path.join(directory, "dali_mixup_ops.so")
    backends = ("cpu", "gpu") if with_cuda else ("cpu",)
    if os.path.isfile(library):
        # The key covers DALI, CUDA and the sources, so a library there is up to date. Skipping
        # cpp_extension here also skips its lock file, which every rank of a job would take in turn.
        return library, backends
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        raise RuntimeError("no C++ compiler (c++ or $CXX) to build the fused mixup operator")
    include = _cuda_include(toolkit_nvcc)
    if include is None:
        raise RuntimeError(f"no CUDA headers ({', '.join(_CUDA_HEADERS)}) from a CUDA toolkit or a pip "
                           "package; DALI's headers include them (pip install 'dali-mixup[cuda-headers]')")
    os.makedirs(directory, exist_ok=True)
    lock = os.path.join(directory, "lock")
    if os.path.isfile(lock) and time.time() - os.path.getmtime(lock) > _STALE_LOCK_SECONDS:
        # cpp_extension waits for its lock file forever; one this old was left by a killed build.
        log.warning("dali_mixup: removing a stale build lock %s", lock)
        os.remove(lock)
    ldflags = []
    if with_cuda:
        ldflags.append(f"-L{os.path.join(os.path.dirname(include), 'lib64')}")  # libcudart of the toolkit
        import torch

        if not torch.cuda.is_available():
            # No GPU to ask for its architecture: build for A100 and H100, plus PTX for newer GPUs.
            os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")
    sources = [os.path.join(CSRC, name) for name in CPU_SOURCES + (CUDA_SOURCES if with_cuda else ())]
    flags = [flag for flag in sysconfig.get_compile_flags() if not flag.startswith("-I")]
    cpp_extension.load(
        name="dali_mixup_ops",
        sources=sources,
        extra_cflags=["-O3", *flags],
        # torch builds its extensions without CUDA's half conversions; DALI's float16 needs them.
        extra_cuda_cflags=["-O3", *flags, *(f"-U__CUDA_NO_{name}__" for name in
                                            ("HALF_OPERATORS", "HALF_CONVERSIONS", "HALF2_OPERATORS",
                                             "BFLOAT16_CONVERSIONS"))],
        extra_include_paths=[sysconfig.get_include_dir(), include],
        # cpp_extension also links torch's libraries: the rpaths let DALI load the plugin without torch imported.
        extra_ldflags=[f"-L{sysconfig.get_lib_dir()}", "-ldali", "-ldali_core", f"-Wl,-rpath,{sysconfig.get_lib_dir()}",
                       f"-Wl,-rpath,{cpp_extension.TORCH_LIB_PATH}", *ldflags],
        build_directory=directory,
        with_cuda=with_cuda,
        is_python_module=False,
        verbose=verbose,
    )
    return library, backends


def fused_backends():
    """The backends of the fused operator (``"cpu"``, ``"gpu"``), or ``()`` for the fallback.

    The plugin is built (or taken from the cache) and loaded once per process;
    ``DALI_MIXUP_FUSED=0`` in the environment forces the fallback.
    """
    if os.environ.get("DALI_MIXUP_FUSED", "1") == "0":
        return ()
    return _load_plugin()


@functools.lru_cache(maxsize=None)
def _load_plugin():
    try:
        path, backends = build()
        from nvidia.dali import plugin_manager

        plugin_manager.load_library(path)
    except Exception as err:  # no compiler, a failed build: fall back, and say so once
        log.warning("dali_mixup: the fused MixupNormalize operator is unavailable (%s); "
                    "mixup composes stock DALI operators instead", str(err).strip().splitlines()[-1])
        return ()
    return backends


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-only", action="store_true", help="build the CPU backend alone")
    parser.add_argument("--verbose", action="store_true", help="show the compiler's commands")
    args = parser.parse_args(argv)
    try:
        path, backends = build(cpu_only=args.cpu_only, verbose=args.verbose)
    except Exception as err:
        sys.exit(f"build failed: {err}")
    print(f"built {path}\n  backends: {', '.join(backends)}\n  cache: {os.path.dirname(path)}")


if __name__ == "__main__":
    main()
