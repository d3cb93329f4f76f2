"""Build and load the fused ``MixupNormalize`` DALI operator (a plugin), with the graph composition as fallback.

    python -m dali_mixup.build [--cpu-only] [--verbose]

At first use the C++ (CPU) and CUDA (GPU) sources in ``dali_mixup/csrc`` are compiled against the
DALI that is installed, with ``torch.utils.cpp_extension.load`` (which brings ninja and a file
lock), and loaded with ``nvidia.dali.plugin_manager.load_library``.

- **CUDA.** The GPU backend needs an nvcc of torch's CUDA major version: a toolkit's
  ($CUDA_HOME, $CUDA_PATH, $PATH, /usr/local/cuda), else pip's (``nvidia-cuda-nvcc`` and
  ``nvidia-nvvm``, the ``cuda-build`` extra). Without one only the CPU backend is built, and
  :func:`unavailable_reason` says why. The architectures are ``$TORCH_CUDA_ARCH_LIST``, else the
  visible GPUs', else A100 and H100 with PTX for newer GPUs; they become nvcc flags of this build
  alone (the environment is left as it was).
- **Cache.** Under ``$DALI_MIXUP_CACHE`` (default ``~/.cache/dali_mixup``), one folder per
  ``dali<version>-torch<version>-cuda<version>-<hash>``, the hash over the sources, the compiler,
  the architectures and every flag: anything that changes the library builds anew.
- **Fallback.** Without a compiler, after a failed build, or with ``DALI_MIXUP_FUSED=0``,
  ``dali_mixup.mixup`` composes stock DALI operators; a warning names the cause.
"""

import argparse
import contextlib
import dataclasses
import functools
import glob
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time

CSRC = os.path.join(os.path.dirname(__file__), "csrc")
CPU_SOURCES = ("mixup_normalize.cc", "mixup_draws.cc", "log_spectrogram.cc")
CUDA_SOURCES = ("mixup_normalize.cu",)
HEADERS = ("mixup_normalize.h", "blend.h", "blend_kernel.h", "resample.h")

# Where a CUDA toolkit is looked for after $CUDA_HOME, $CUDA_PATH and $PATH.
TOOLKIT_HOME = "/usr/local/cuda"
# Without a GPU to ask: A100 and H100, plus PTX that newer GPUs compile at load time.
DEFAULT_ARCHS = "8.0;9.0+PTX"
PIP_CUDA_HINT = "pip install 'dali-mixup[cuda-build]' (nvidia-cuda-nvcc and nvidia-nvvm for CUDA 13)"

log = logging.getLogger("dali_mixup")
# A build takes well under a minute; a lock file older than this belongs to a killed build.
_STALE_LOCK_SECONDS = 600


def cache_root():
    return os.environ.get("DALI_MIXUP_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "dali_mixup"))


def _toolkit_homes():
    """$CUDA_HOME and $CUDA_PATH where set, then TOOLKIT_HOME."""
    return [os.environ[name] for name in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(name)] + [TOOLKIT_HOME]


def _package_roots(package):
    spec = importlib.util.find_spec(package)
    return list(spec.submodule_search_locations or []) if spec else []


def _nvcc_candidates():
    """Every nvcc, in the order tried: $CUDA_HOME, $CUDA_PATH, $PATH, TOOLKIT_HOME (torch's order), then pip's
    (``nvidia/cu13/bin`` from ``nvidia-cuda-nvcc``; ``nvidia/cuda_nvcc/bin`` for CUDA 12)."""
    *set_homes, default_home = _toolkit_homes()
    toolkits = [os.path.join(home, "bin", "nvcc") for home in set_homes]
    toolkits += [shutil.which("nvcc"), os.path.join(default_home, "bin", "nvcc")]
    pip = [path for root in _package_roots("nvidia") for path in sorted(glob.glob(os.path.join(root, "*", "bin", "nvcc")))]
    return list(dict.fromkeys(os.path.realpath(path) for path in toolkits + pip if path and os.path.isfile(path)))


def _cuda_version(nvcc):
    output = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    match = re.search(r"release (\d+\.\d+)", output)
    return match.group(1) if match else "unknown"


_CUDA_HEADERS = ("cuda_runtime_api.h", os.path.join("crt", "host_config.h"), os.path.join("nv", "target"))


def _cuda_include(nvcc):
    """The CUDA headers DALI's headers include: nvcc's, a toolkit's, else those that torch's CUDA build brings
    along in pip packages (``nvidia/*/include``, which the ``cuda-headers`` extra completes for
    CUDA 13; Triton's copy)."""
    candidates = [os.path.join(home, "include") for home in _toolkit_homes()]
    if nvcc is not None:
        candidates.insert(0, os.path.join(os.path.dirname(os.path.dirname(nvcc)), "include"))
    for root in _package_roots("nvidia") + _package_roots("triton"):
        candidates += sorted(glob.glob(os.path.join(root, "*", "include")))
        candidates += sorted(glob.glob(os.path.join(root, "backends", "nvidia", "include")))
    for include in candidates:
        if all(os.path.exists(os.path.join(include, header)) for header in _CUDA_HEADERS):
            return include
    return None


@dataclasses.dataclass(frozen=True)
class Toolchain:
    """What the plugin is built with.

    Attributes:
        nvcc: the CUDA compiler, or None for the CPU backend alone.
        cuda_version: its release (``"13.0"``), or ``"none"``.
        include: the CUDA headers that DALI's headers include (needed by the CPU backend too), or None.
        no_gpu_reason: why there is no GPU backend; None when there is one.
    """

    nvcc: str | None
    cuda_version: str
    include: str | None
    no_gpu_reason: str | None

    @property
    def cuda_home(self):
        return os.path.dirname(os.path.dirname(self.nvcc)) if self.nvcc else None


def find_toolchain(cpu_only=False):
    """The first nvcc of torch's CUDA major version, with the compiler front end (cicc) beside it.

    A CUDA 12 toolkit beside torch's CUDA 13 runtime is passed over, with the reason kept.
    """
    import torch

    torch_cuda = torch.version.cuda
    nvcc, version, tried = None, "none", []
    if cpu_only:
        reason = "the CPU backend alone was asked for (--cpu-only)"
    elif torch_cuda is None:
        reason = "torch is a CPU-only build"
    else:
        for candidate in _nvcc_candidates():
            candidate_version = _cuda_version(candidate)
            home = os.path.dirname(os.path.dirname(candidate))
            if candidate_version.split(".")[0] != torch_cuda.split(".")[0]:
                tried.append(f"{candidate} is CUDA {candidate_version}, torch's runtime is CUDA {torch_cuda}")
            elif not os.path.isfile(os.path.join(home, "nvvm", "bin", "cicc")):
                tried.append(f"{candidate} has no nvvm/bin/cicc beside it (pip install nvidia-nvvm)")
            else:
                nvcc, version = candidate, candidate_version
                break
        reason = None if nvcc else (f"no nvcc for torch's CUDA {torch_cuda}: " + ("; ".join(tried) or "none found")
                                    + f"; {PIP_CUDA_HINT}")
    return Toolchain(nvcc, version, _cuda_include(nvcc), reason)


def arch_list():
    """``$TORCH_CUDA_ARCH_LIST`` if set, else the visible GPUs' (the newest with PTX), else DEFAULT_ARCHS."""
    import torch

    if os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return os.environ["TORCH_CUDA_ARCH_LIST"].replace(" ", ";")
    if torch.cuda.is_available():
        archs = sorted({"{}.{}".format(*torch.cuda.get_device_capability(k)) for k in range(torch.cuda.device_count())})
        return ";".join(archs[:-1] + [archs[-1] + "+PTX"])
    return DEFAULT_ARCHS


def gencode_flags(archs):
    """nvcc's ``-gencode`` flags for an arch list such as ``"8.0;9.0+PTX"`` (SASS for each, PTX where marked)."""
    flags = []
    for arch in filter(None, archs.split(";")):
        match = re.fullmatch(r"(\d+)\.(\d+)(a?)(\+PTX)?", arch)
        if match is None:
            raise ValueError(f"TORCH_CUDA_ARCH_LIST: {arch!r} is not an architecture like 9.0 or 9.0+PTX")
        number = match.group(1) + match.group(2) + match.group(3)
        flags.append(f"-gencode=arch=compute_{number},code=sm_{number}")
        if match.group(4):
            flags.append(f"-gencode=arch=compute_{number},code=compute_{number}")
    return flags


def _compiler():
    """The host C++ compiler and its version line, or None when there is none."""
    path = shutil.which(os.environ.get("CXX", "c++"))
    if path is None:
        return None
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.splitlines()
    return f"{os.path.realpath(path)} {version[0] if version else ''}".strip()


def _cudart_dir(toolchain, directory):
    """A folder with ``libcudart.so`` for the link: the CUDA home's library folder, or, for pip's CUDA, which
    ships only ``libcudart.so.13``, a link to it in the build folder (torch adds ``-lcudart``)."""
    for lib in (os.path.join(toolchain.cuda_home, "lib64"), os.path.join(toolchain.cuda_home, "lib")):
        if os.path.isfile(os.path.join(lib, "libcudart.so")):
            return lib, lib
        versioned = sorted(glob.glob(os.path.join(lib, "libcudart.so.[0-9]*")))
        if versioned:
            links = os.path.join(directory, "cudart")
            os.makedirs(links, exist_ok=True)
            if not os.path.islink(os.path.join(links, "libcudart.so")):
                os.symlink(versioned[0], os.path.join(links, "libcudart.so"))
            return links, lib
    raise RuntimeError(f"no libcudart under {toolchain.cuda_home}; the GPU backend cannot be linked")


def _flags(toolchain, archs):
    """The compile and link flags, which the build key hashes (the paths made per build folder aside)."""
    import nvidia.dali.sysconfig as sysconfig
    import torch

    torch_lib = os.path.join(os.path.dirname(torch.__file__), "lib")  # cpp_extension.TORCH_LIB_PATH, without importing it
    dali = [flag for flag in sysconfig.get_compile_flags() if not flag.startswith("-I")]
    flags = {
        "cflags": ["-O3", *dali],
        "include_paths": [sysconfig.get_include_dir(), toolchain.include],
        # cpp_extension also links torch's libraries: the rpaths let DALI load the plugin without torch imported.
        "ldflags": [f"-L{sysconfig.get_lib_dir()}", "-ldali", "-ldali_core", f"-Wl,-rpath,{sysconfig.get_lib_dir()}",
                    f"-Wl,-rpath,{torch_lib}"],
    }
    if toolchain.nvcc:
        # torch builds its extensions without CUDA's half conversions; DALI's float16 needs them.
        undefine = [f"-U__CUDA_NO_{name}__" for name in ("HALF_OPERATORS", "HALF_CONVERSIONS", "HALF2_OPERATORS",
                                                         "BFLOAT16_CONVERSIONS")]
        flags["cuda_cflags"] = ["-O3", *dali, *gencode_flags(archs), *undefine]
    return flags


def build_key(toolchain, compiler, flags):
    """``dali<version>-torch<version>-cuda<version>-<hash>``; the hash covers the sources, the compiler,
    the nvcc, the architectures and every flag, so anything that changes the library builds anew."""
    import nvidia.dali
    import torch

    digest = hashlib.sha256()
    for name in HEADERS + CPU_SOURCES + (CUDA_SOURCES if toolchain.nvcc else ()):
        with open(os.path.join(CSRC, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read())
    digest.update(json.dumps({"compiler": compiler, "nvcc": toolchain.nvcc, "flags": flags}, sort_keys=True).encode())
    return f"dali{nvidia.dali.__version__}-torch{torch.__version__}-cuda{toolchain.cuda_version}-{digest.hexdigest()[:16]}"


@contextlib.contextmanager
def _cuda_home_for_torch(home):
    """cpp_extension takes nvcc and libcudart from its module-level CUDA_HOME: point it at ours for one build."""
    from torch.utils import cpp_extension

    saved = cpp_extension.CUDA_HOME
    cpp_extension.CUDA_HOME = home or saved
    try:
        yield
    finally:
        cpp_extension.CUDA_HOME = saved


def build(cpu_only=False, verbose=False):
    """Compile the plugin (or reuse the cached build) and return ``(path, backends, toolchain)``.

    Raises:
        RuntimeError: when there is no C++ compiler, no CUDA headers, or the build fails.
    """
    toolchain = find_toolchain(cpu_only)
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C++ compiler (c++ or $CXX) to build the fused mixup operator")
    if toolchain.include is None:
        raise RuntimeError(f"no CUDA headers ({', '.join(_CUDA_HEADERS)}) from a CUDA toolkit or a pip "
                           "package; DALI's headers include them (pip install 'dali-mixup[cuda-headers]')")
    archs = arch_list() if toolchain.nvcc else None
    flags = _flags(toolchain, archs)
    directory = os.path.join(cache_root(), build_key(toolchain, compiler, flags))
    library = os.path.join(directory, "dali_mixup_ops.so")
    backends = ("cpu", "gpu") if toolchain.nvcc else ("cpu",)
    if os.path.isfile(library):
        # The key covers everything that goes into the library, so one there is up to date. Skipping
        # cpp_extension here also skips its lock file, which every rank of a job would take in turn.
        return library, backends, toolchain
    # Imported only to build: on a machine without CUDA it warns "No CUDA runtime is found" on import.
    from torch.utils import cpp_extension

    os.makedirs(directory, exist_ok=True)
    lock = os.path.join(directory, "lock")
    if os.path.isfile(lock) and time.time() - os.path.getmtime(lock) > _STALE_LOCK_SECONDS:
        # cpp_extension waits for its lock file forever; one this old was left by a killed build.
        log.warning("dali_mixup: removing a stale build lock %s", lock)
        os.remove(lock)
    ldflags = list(flags["ldflags"])
    if toolchain.nvcc:
        link_dir, runtime_dir = _cudart_dir(toolchain, directory)
        ldflags += [f"-L{link_dir}", f"-Wl,-rpath,{runtime_dir}"]
    sources = [os.path.join(CSRC, name) for name in CPU_SOURCES + (CUDA_SOURCES if toolchain.nvcc else ())]
    with _cuda_home_for_torch(toolchain.cuda_home):
        cpp_extension.load(
            name="dali_mixup_ops",
            sources=sources,
            extra_cflags=flags["cflags"],
            extra_cuda_cflags=flags.get("cuda_cflags"),  # with -gencode flags, torch adds no architectures of its own
            extra_include_paths=flags["include_paths"],
            extra_ldflags=ldflags,
            build_directory=directory,
            with_cuda=toolchain.nvcc is not None,
            is_python_module=False,
            verbose=verbose,
        )
    return library, backends, toolchain


def fused_backends():
    """The backends of the fused operator (``"cpu"``, ``"gpu"``), or ``()`` for the fallback.

    The plugin is built (or taken from the cache) and loaded once per process;
    ``DALI_MIXUP_FUSED=0`` in the environment forces the fallback.
    """
    if os.environ.get("DALI_MIXUP_FUSED", "1") == "0":
        return ()
    return _load_plugin()[0]


def unavailable_reason(device):
    """Why the fused operator has no backend for ``device`` (``"cpu"`` or ``"gpu"``), or None if it has one."""
    if os.environ.get("DALI_MIXUP_FUSED", "1") == "0":
        return "DALI_MIXUP_FUSED=0 is set"
    backends, reason = _load_plugin()
    return None if device in backends else reason


def failure_cause(err, max_lines=12):
    """The lines of a build error worth reading: the compiler's ``error`` lines (a compile error's
    message is the whole build log), else the message, with the exception's type."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()] or lines
    shown = errors[:max_lines] + ([f"... and {len(errors) - max_lines} more"] if len(errors) > max_lines else [])
    return f"{type(err).__name__}: " + "\n  ".join(shown or ["(no message)"])


@functools.lru_cache(maxsize=None)
def _load_plugin():
    """``(backends, reason)``: what was built and loaded, and why the rest was not."""
    try:
        path, backends, toolchain = build()
        from nvidia.dali import plugin_manager

        plugin_manager.load_library(path)
    except Exception as err:  # no compiler, a failed build: fall back, and say why, once
        cause = failure_cause(err)
        log.warning("dali_mixup: the fused MixupNormalize operator is unavailable, so mixup composes stock DALI "
                    "operators instead (`python -m dali_mixup.build --verbose` shows the whole build). Cause:\n  %s",
                    cause)
        return (), cause
    return backends, toolchain.no_gpu_reason and f"its GPU backend was not built: {toolchain.no_gpu_reason}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-only", action="store_true", help="build the CPU backend alone")
    parser.add_argument("--verbose", action="store_true", help="show the compiler's commands")
    parser.add_argument("--json", action="store_true", help="print what was built as one JSON object")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        path, backends, toolchain = build(cpu_only=args.cpu_only, verbose=args.verbose)
    except Exception as err:
        sys.exit(f"build failed: {failure_cause(err)}")
    built = {"library": path, "backends": list(backends), "nvcc": toolchain.nvcc, "cuda": toolchain.cuda_version,
             "architectures": arch_list() if toolchain.nvcc else None, "no_gpu_reason": toolchain.no_gpu_reason,
             "seconds": round(time.perf_counter() - start, 1)}
    if args.json:
        print(json.dumps(built))
        return
    print(f"built {path}\n  backends: {', '.join(backends)}\n  cache: {os.path.dirname(path)}")
    if toolchain.nvcc:
        print(f"  nvcc: {toolchain.nvcc} (CUDA {toolchain.cuda_version}), architectures {built['architectures']}")
    else:
        print(f"  no GPU backend: {toolchain.no_gpu_reason}")


if __name__ == "__main__":
    main()
