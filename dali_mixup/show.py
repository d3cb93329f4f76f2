"""Show what mixup does: run the operator on real photos and write a PNG grid with soft labels.

    python -m dali_mixup.show --out mixup.png [--device auto|cpu|gpu] [--alpha 1.0]
"""

import argparse
import math

import numpy as np
from nvidia.dali import fn, pipeline_def
from PIL import Image, ImageDraw, ImageFont

from dali_mixup.mixup import mixup
from dali_mixup.photos import color_photos


@pipeline_def
def photo_mixup_pipeline(photos, size, alpha, per_sample, device):
    """Resize a fixed batch of photos to ``size`` x ``size`` and mix it; labels are photo indices."""
    images = fn.external_source(source=lambda: [image for _, image in photos], batch=True, layout="HWC")
    labels = fn.external_source(source=lambda: [np.int32(i) for i in range(len(photos))], batch=True)
    if device == "gpu":
        images = images.gpu()  # decode-free demo: the host arrays are copied once, then all work is on the GPU
    images = fn.resize(images, size=[size, size])
    return mixup(images, labels, num_classes=len(photos), alpha=alpha, per_sample=per_sample, return_params=True)


def _caption(target, names):
    top = np.argsort(target)[::-1][:2]
    return [f"{target[k]:.2f} {names[k]}" for k in top if target[k] >= 0.005]


def render_grid(images, targets, names, columns=5):
    """A PNG-ready grid: each mixed image above its two largest soft-label entries.

    Args:
        images: float array ``[B, H, W, 3]`` in the 0..255 range.
        targets: float array ``[B, C]`` of soft labels.
        names: the ``C`` class names.
        columns: images per row.
    """
    batch, height, width, _ = images.shape
    font = ImageFont.load_default(size=max(10, width // 14))
    line = font.size + 4
    rows = math.ceil(batch / columns)
    grid = Image.new("RGB", (columns * (width + 8) + 8, rows * (height + 2 * line + 12) + 8), "white")
    draw = ImageDraw.Draw(grid)
    for i in range(batch):
        x = 8 + (i % columns) * (width + 8)
        y = 8 + (i // columns) * (height + 2 * line + 12)
        grid.paste(Image.fromarray(np.clip(images[i], 0, 255).round().astype(np.uint8)), (x, y))
        for k, text in enumerate(_caption(targets[i], names)):
            draw.text((x, y + height + 4 + k * line), text, fill="black", font=font)
    return grid


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="mixup_grid.png", help="PNG file to write (default: %(default)s)")
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    parser.add_argument("--alpha", type=float, default=1.0, help="Beta(alpha, alpha) for λ (default: %(default)s)")
    parser.add_argument(
        "--per-sample",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one λ per image (default), so the grid shows a range of blends; --no-per-sample draws one per batch",
    )
    parser.add_argument("--size", type=int, default=192, help="side of each image in pixels (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.size < 8:
        parser.error(f"--size must be >= 8, got {args.size}")
    if args.alpha < 0:
        parser.error(f"--alpha must be >= 0, got {args.alpha}")

    device = args.device
    if device == "auto":
        import torch

        device = "gpu" if torch.cuda.is_available() else "cpu"
    photos = color_photos()
    names = [name for name, _ in photos]
    pipe = photo_mixup_pipeline(
        photos,
        args.size,
        args.alpha,
        args.per_sample,
        device,
        batch_size=len(photos),
        num_threads=2,
        device_id=0 if device == "gpu" else None,
        seed=args.seed,
    )
    pipe.build()
    images, targets, lam, perm = (out.as_cpu().as_array() for out in pipe.run())
    render_grid(images, targets, names).save(args.out)
    print(f"wrote {args.out}: {len(photos)} photos mixed on {device} with alpha={args.alpha}")
    for i, name in enumerate(names):
        print(f"  {lam[i]:.2f} {name} + {1 - lam[i]:.2f} {names[perm[i]]}")


if __name__ == "__main__":
    main()
