"""Pieces shared by the ImageNet and CIFAR pipelines."""

from nvidia.dali import fn, types


def output_dtype(device):
    """float16 on the GPU halves the bytes the trainer reads; DALI's CPU arithmetic has no float16."""
    return types.FLOAT16 if device == "gpu" else types.FLOAT


def normalize(images, *, device, channels_last, mean, std, **crop_args):
    """``crop_mirror_normalize`` to the output dtype of ``device``, in NHWC (``channels_last``) or NCHW.

    ``crop_args`` (``crop``, ``crop_pos_x``, ``mirror``, ...) pass through to DALI.
    """
    return fn.crop_mirror_normalize(
        images,
        dtype=output_dtype(device),
        output_layout="HWC" if channels_last else "CHW",
        mean=mean,
        std=std,
        **crop_args,
    )
