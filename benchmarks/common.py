"""What every benchmark records: the machine and the versions, and a median."""

import datetime
import os
import platform
import statistics
import subprocess

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
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").lower()[:48]


def median(values):
    return statistics.median(values)
