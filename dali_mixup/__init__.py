"""dali-mixup: mixup (Zhang et al., ICLR 2018) inside NVIDIA DALI pipelines."""

try:
    import nvidia.dali  # noqa: F401
except ImportError as err:
    raise ImportError(
        "dali_mixup needs NVIDIA DALI, which is not installed. Install it through an extra: "
        "pip install 'dali-mixup[cuda12]' (nvidia-dali-cuda120) or "
        "pip install 'dali-mixup[cuda13]' (nvidia-dali-cuda130)."
    ) from err

from dali_mixup.mixup import mixup  # noqa: I001 (the loader's pipelines import it first)
from dali_mixup.reference import mixup_reference
from dali_mixup.loader import make_loader

__all__ = ["make_loader", "mixup", "mixup_reference"]
__version__ = "0.1.0"
