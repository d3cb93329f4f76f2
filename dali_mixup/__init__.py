"""dali-mixup: mixup (Zhang et al., ICLR 2018) inside NVIDIA DALI pipelines.

``make_loader`` and ``mixup_reference`` are imported on first use (PEP 562), so that importing a
leaf module (``dali_mixup.formats``, ``dali_mixup.check_data``) or ``pipelines`` runs neither the
loader nor torch: the data flows one way, leaves to pipelines to the loader. ``mixup`` (the
operator, DALI alone) is imported here, so that the name is the function, not its module.
"""

import importlib

try:
    import nvidia.dali  # noqa: F401
except ImportError as err:
    raise ImportError(
        "dali_mixup needs NVIDIA DALI, which is not installed. Install it through an extra: "
        "pip install 'dali-mixup[cuda12]' (nvidia-dali-cuda120) or "
        "pip install 'dali-mixup[cuda13]' (nvidia-dali-cuda130)."
    ) from err

from dali_mixup.mixup import mixup  # noqa: E402 (after the check that DALI is there)

__all__ = ["make_loader", "mixup", "mixup_reference"]
__version__ = "0.1.0"
_HOMES = {"make_loader": "dali_mixup.loader", "mixup_reference": "dali_mixup.reference"}


def __getattr__(name):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'dali_mixup' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_HOMES])
