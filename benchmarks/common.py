"""What every benchmark records: the machine and the versions, and a median."""

import contextlib
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys

import torch


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment():
    """The fields a result needs to be compared: date, CPU, cores, GPU, driver and versions."""
    import nvidia.dali

    env = {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "gpu": None,
        "driver": None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "dali": nvidia.dali.__version__,
    }
    import torchvision

    env["torchvision"] = torchvision.__version__
    try:
        import timm

        env["timm"] = timm.__version__
    except ImportError:
        env["timm"] = None
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
        try:
            env["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
            ).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            pass
    return env


def hardware_tag(env):
    """A short file-name tag: the GPU, or the CPU and its cores."""
    name = env["gpu"] or f"{env['cpu']}-{env['cores']}cores"
    name = re.sub(r"\((R|TM)\)|\b(CPU|Processor)\b", "", name, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:48]


def median(values):
    return statistics.median(values)


def require_at_least(parser, args, names, minimum=1):
    """Exit with a usage error naming the first of ``names`` (argparse destinations) below ``minimum``."""
    for name in names:
        if getattr(args, name) < minimum:
            parser.error(f"--{name.replace('_', '-')} must be >= {minimum}, got {getattr(args, name)}")


def interleaved_runs(measure, configs, runs):
    """``{config: [value per run]}``: ``measure(config)`` for every configuration in each of ``runs`` runs.

    Each run starts one configuration further on, so that no configuration always runs first (or
    after the same neighbour): on a noisy 2-core machine the position alone moved results by 10%.
    A line per run goes to stderr, and on a terminal tqdm's bar of the measurements (with the time left).
    """
    from tqdm import tqdm

    values = {config: [] for config in configs}
    with tqdm(total=runs * len(configs), unit="measurement", file=sys.stderr, leave=False,
              disable=not sys.stderr.isatty()) as bar:
        for run in range(runs):
            for config in configs[run % len(configs):] + configs[: run % len(configs)]:
                bar.set_postfix_str(f"run {run + 1}/{runs}: {config}")
                values[config].append(measure(config))
                bar.update()
            bar.write(f"run {run + 1}/{runs}: " + ", ".join(f"{c} {values[c][-1]:.0f}" for c in configs),
                      file=sys.stderr)
    return values


def ratios(values, pairs):
    """``{name: median of the per-run ratios}`` for each ``name: (top, bottom)`` of ``pairs`` both measured."""
    return {name: median([a / b for a, b in zip(values[top], values[bottom])])
            for name, (top, bottom) in pairs.items() if top in values and bottom in values}


@contextlib.contextmanager
def fused_off():
    """Pipelines defined inside use ``mixup``'s composition of stock DALI ops, not the fused operator."""
    saved = os.environ.get("DALI_MIXUP_FUSED")
    os.environ["DALI_MIXUP_FUSED"] = "0"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["DALI_MIXUP_FUSED"]
        else:
            os.environ["DALI_MIXUP_FUSED"] = saved
