"""dali-mixup: mixup (Zhang et al., ICLR 2018) inside NVIDIA DALI pipelines."""

try:
    import nvidia.dali  # noqa: F401
except ImportError as err:
    raise ImportError(
        "dali_mixup needs NVIDIA DALI, which is not installed. Install it through an extra: "
        "pip install 'dali-mixup[cuda12]' (nvidia-dali-cuda120) or "
        "pip install 'dali-mixup[cuda13]' (nvidia-dali-cuda130)."
    ) from err

from dali_mixup.mixup import mixup
from dali_mixup.reference import mixup_reference

__all__ = ["mixup", "mixup_reference"]
__version__ = "0.1.0"
