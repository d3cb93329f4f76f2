"""Loader throughput, side by side in one run: torchvision and DALI, each with and without mixup.

    python -m benchmarks.loader [--data DIR] [--device cpu|gpu] [--batch-size 64] [--workers N]
                                [--threads N] [--runs 5] [--stages] [--quick] [--json OUT]

Each run measures every configuration once, in turn, over the same ImageNet-like JPEG folder
(made with the dataset maker when --data is omitted): one epoch, timed after an untimed one
(see ``measure``). The result is the median images/s over the runs, after a warm-up; the ratios
are taken inside each run, then the median.

``--stages`` adds the train pipeline's stages, timed the same way in the same runs, so that each
configuration can be read against what its parts cost: ``stage_decode`` (DALI's decoder, whole
images), ``stage_region_decode`` (the random crop's region alone, as the train pipeline decodes it),
``stage_region_resize`` and ``stage_region_resize_linear`` (then ``fn.resize`` to the crop size,
antialiased as today's was, and linear without antialiasing), ``stage_region_fused_resize`` (then the
fused operator's resize, flip and normalization, no mixing) and ``stage_pil_decode`` (PIL's decoding
of whole images, torchvision's, in the DataLoader's workers).
"""

import argparse
import contextlib
import json
import os
import sys
import time

import torch

from benchmarks.common import environment, fused_off, hardware_tag, interleaved_runs, median, require_at_least
from benchmarks.common import ratios as common_ratios
from nvidia.dali import fn, pipeline_def, types

from dali_mixup import make_loader, mixup
from dali_mixup.mixup import Resize
from dali_mixup.reference import mixup_reference
from pipelines import augment
from pipelines.sources import IMAGENET_MEAN, IMAGENET_STD

CONFIGS = ("torchvision", "torchvision_mixup", "torchvision_timm_mixup", "torchvision_timm_mixup_cutmix", "dali",
           "dali_mixup", "dali_cutmix", "dali_mixup_cutmix", "dali_mixup_composite", "dali_then_torch_mixup",
           "torchvision_timm_deit", "dali_deit")
RATIOS = {
    "dali_mixup / dali": ("dali_mixup", "dali"),
    "dali_cutmix / dali": ("dali_cutmix", "dali"),
    "dali_mixup_cutmix / dali": ("dali_mixup_cutmix", "dali"),
    "dali_mixup_composite / dali": ("dali_mixup_composite", "dali"),
    "dali / torchvision": ("dali", "torchvision"),
    "torchvision_mixup / torchvision": ("torchvision_mixup", "torchvision"),
    "torchvision_timm_mixup_cutmix / torchvision": ("torchvision_timm_mixup_cutmix", "torchvision"),
    "dali_then_torch_mixup / dali": ("dali_then_torch_mixup", "dali"),
    "dali_deit / torchvision_timm_deit": ("dali_deit", "torchvision_timm_deit"),
}
ALPHA = 0.2
CUTMIX_ALPHA = 1.0
STAGES = ("stage_decode", "stage_region_decode", "stage_region_resize", "stage_region_resize_linear",
          "stage_region_fused_resize", "stage_pil_decode")
STAGE_RATIOS = {"dali / stage_region_decode": ("dali", "stage_region_decode"),
                "dali_mixup / stage_region_decode": ("dali_mixup", "stage_region_decode")}
# make_loader's mixing options for each DALI configuration (the others: none).
DALI_MIXING = {
    "dali_mixup": {"mixup_alpha": ALPHA},
    "dali_mixup_composite": {"mixup_alpha": ALPHA},
    "dali_cutmix": {"cutmix_alpha": CUTMIX_ALPHA},
    "dali_mixup_cutmix": {"mixup_alpha": ALPHA, "cutmix_alpha": CUTMIX_ALPHA, "switch_prob": 0.5},
}
# DeiT's train data (Touvron et al. 2021, Table 9; timm's train.py flags of its recipe): RandAugment
# rand-m9-mstd0.5-inc1, bicubic resizes, random erasing 0.25 in pixel mode, mixup 0.8 and CutMix 1.0
# switched half and half, label smoothing 0.1; color jitter 0.4 is off under the RandAugment, in
# both. Repeated augmentation changes which samples an epoch reads, not the work per image: left out.
DEIT = {"auto_augment": "rand-m9-mstd0.5-inc1", "interpolation": "bicubic", "reprob": 0.25, "remode": "pixel",
        "mixup_alpha": 0.8, "cutmix_alpha": 1.0, "label_smoothing": 0.1}
DALI_MIXING["dali_deit"] = DEIT


def _posterize_zero_bits_as_black():
    """timm's RandAugment under Pillow 13: Pillow now refuses to posterize to 0 bits, which timm's
    PosterizeIncreasing asks for at level 10 (about 1 image in 750 with mstd0.5, which kills a
    DataLoader worker); before 13 it gave a black image, as our op does. Give timm's op that again."""
    from PIL import Image
    from timm.data import auto_augment

    for name in ("Posterize", "PosterizeIncreasing", "PosterizeOriginal"):
        original = auto_augment.NAME_TO_OP[name]
        if getattr(original, "zero_bits_black", False):
            continue

        def posterize(img, bits_to_keep, original=original, **kwargs):
            if bits_to_keep <= 0:
                return Image.new(img.mode, img.size)
            return original(img, bits_to_keep, **kwargs)

        posterize.zero_bits_black = True
        auto_augment.NAME_TO_OP[name] = posterize


def deit_transform(crop_size):
    """timm's train transform with DeiT's options (``DEIT``), as timm's train.py builds it."""
    from timm.data import create_transform

    _posterize_zero_bits_as_black()  # before the ops are made: each keeps its function
    return create_transform(crop_size, is_training=True, auto_augment=DEIT["auto_augment"],
                            interpolation=DEIT["interpolation"], color_jitter=0.4, re_prob=DEIT["reprob"],
                            re_mode=DEIT["remode"], re_count=1)


def torchvision_loader(root, batch_size, workers, crop_size, device, transform=None):
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    transform = transform or transforms.Compose(
        [
            transforms.RandomResizedCrop(crop_size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    return DataLoader(
        datasets.ImageFolder(root, transform), batch_size=batch_size, shuffle=True, drop_last=True,
        num_workers=workers, pin_memory=device == "gpu", persistent_workers=workers > 0,
    )


def torch_mixup(num_classes):
    """Mixup after the loader, in PyTorch, on the batch's device (as NVIDIA's DeepLearningExamples do)."""
    beta = torch.distributions.Beta(ALPHA, ALPHA)

    def apply(images, labels):
        lam = beta.sample().to(images.device).expand(len(images))
        perm = torch.randperm(len(images), device=images.device)
        return mixup_reference(images, labels, lam, perm, num_classes)

    return apply


def timm_mixup(num_classes, cutmix_alpha=0.0, alpha=ALPHA, label_smoothing=0.0):
    """timm's Mixup after the loader (as timm's train.py does without its fast collate), with CutMix when asked."""
    try:
        from timm.data import Mixup
    except ImportError:
        if cutmix_alpha:
            raise SystemExit("the timm CutMix configurations need timm: pip install timm") from None
        return torch_mixup(num_classes), "dali_mixup.reference (timm is not installed)"
    return Mixup(mixup_alpha=alpha, cutmix_alpha=cutmix_alpha, switch_prob=0.5, num_classes=num_classes,
                 label_smoothing=label_smoothing), "timm.data.Mixup"


@pipeline_def
def stage_pipeline(root, stage, crop_size, device):
    """One stage of the train pipeline over the folder's JPEGs (see the module docstring)."""
    jpegs, labels = fn.readers.file(file_root=root, name="files")
    if stage == "stage_decode":
        return augment.decode(jpegs, device=device, adjust_orientation=False)
    crop = augment.RandomResizedCrop(crop_size)
    crops = crop.crop(jpegs, encoded=True, device=device)
    if stage == "stage_region_decode":
        return crops
    if stage == "stage_region_fused_resize":
        images, _ = mixup(crops, labels, num_classes=1000, alpha=0.0, mean=IMAGENET_MEAN,
                          std=IMAGENET_STD, mirror=fn.random.coin_flip(),
                          resize=Resize((crop_size, crop_size)))
        return images
    linear = stage == "stage_region_resize_linear"
    return fn.resize(crops, resize_x=crop_size, resize_y=crop_size, antialias=not linear,
                     interp_type=types.INTERP_LINEAR if linear else types.INTERP_TRIANGULAR)


def build_stage(stage, root, args):
    """An iterator factory for one stage: each call yields its batches of one epoch (``(batch, None)``)."""
    if stage == "stage_pil_decode":
        from torch.utils.data import DataLoader
        from torchvision import datasets

        loader = DataLoader(datasets.ImageFolder(root), batch_size=args.batch_size, shuffle=True, drop_last=True,
                            num_workers=args.workers, persistent_workers=args.workers > 0,
                            collate_fn=lambda batch: (batch, None))  # decoded PIL images, whole
        return lambda: iter(loader)
    pipe = stage_pipeline(root, stage, args.crop_size, args.device, batch_size=args.batch_size,
                          num_threads=args.threads, device_id=0 if args.device == "gpu" else None, seed=0)
    pipe.build()
    batches = pipe.epoch_size("files") // args.batch_size

    def epoch():
        for _ in range(batches):
            yield pipe.run()[0], None

    return epoch


def build(config, root, num_classes, args):
    """An iterator factory for one configuration: each call yields ``(images, targets)`` for one epoch."""
    if config.startswith("stage_"):
        return build_stage(config, root, args)
    device = torch.device("cuda" if args.device == "gpu" else "cpu")
    if config.startswith("torchvision"):
        from torchvision.transforms import v2

        deit = config == "torchvision_timm_deit"
        loader = torchvision_loader(root, args.batch_size, args.workers, args.crop_size, args.device,
                                    transform=deit_transform(args.crop_size) if deit else None)
        after = {
            "torchvision": lambda: None,
            "torchvision_mixup": lambda: v2.MixUp(alpha=ALPHA, num_classes=num_classes),
            "torchvision_timm_mixup": lambda: timm_mixup(num_classes)[0],
            "torchvision_timm_mixup_cutmix": lambda: timm_mixup(num_classes, CUTMIX_ALPHA)[0],
            "torchvision_timm_deit": lambda: timm_mixup(num_classes, DEIT["cutmix_alpha"], DEIT["mixup_alpha"],
                                                        DEIT["label_smoothing"])[0],
        }[config]()

        def epoch():
            for images, labels in loader:
                images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                yield after(images, labels) if after else (images, labels)

        return epoch
    # dali_mixup_composite: the same graph with the fused operator switched off (stock DALI ops).
    with fused_off() if config == "dali_mixup_composite" else contextlib.nullcontext():
        # On the GPU, float16 images, as the trainer asks for them under AMP.
        loader = make_loader(
            dataset="imagefolder", root=root, batch_size=args.batch_size, device=args.device, num_threads=args.threads,
            crop_size=args.crop_size, world_size=1, rank=0, dtype=torch.float16 if args.device == "gpu" else torch.float32,
            **DALI_MIXING.get(config, {}),
        )
    after = torch_mixup(num_classes) if config == "dali_then_torch_mixup" else None

    def epoch():
        for images, targets in loader:
            # Without mixing the DALI loader gives class ids, as the torch mixup wants them.
            yield after(images, targets) if after else (images, targets)

    return epoch


def measure(epoch, device):
    """Images/s over one epoch, timed from the end of an untimed epoch before it.

    This is fair to both kinds of loader and keeps configurations from overlapping: DALI starts
    reading the next epoch ahead the moment an epoch ends (outside a timer that started with the
    epoch, it would get those batches free), the DataLoader's workers only when the next epoch
    starts; and the untimed epoch absorbs the read-ahead the previous configuration left running.
    The last batch is synchronized so GPU work is counted.
    """
    for _ in epoch():
        pass
    if device == "gpu":
        torch.cuda.synchronize()
    count, start = 0, time.perf_counter()
    for images, _ in epoch():
        count += len(images)
    if device == "gpu":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


def bar_chart(results, path, title):
    """A horizontal bar chart of images/s, drawn with Pillow."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)
    row = 30
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    bar_left = 20 + max(probe.textlength(name, font=font) for name in results)  # the longest name fits
    width = int(bar_left) + 560
    image = Image.new("RGB", (width, 50 + row * len(results)), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 10), title, fill="black", font=font)
    top = max(results.values())
    for k, (name, value) in enumerate(results.items()):
        y = 40 + k * row
        length = int((width - bar_left - 90) * value / top)
        draw.text((10, y + 4), name, fill="black", font=font)
        draw.rectangle([bar_left, y, bar_left + length, y + row - 8], fill="#76b900" if "dali" in name else "#ee4c2c")
        draw.text((bar_left + length + 6, y + 4), f"{value:.0f}", fill="black", font=font)
    image.save(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="an ImageFolder of JPEGs (default: made with the dataset maker)")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="gpu" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--crop-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="torchvision DataLoader workers")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="DALI CPU threads")
    parser.add_argument("--runs", type=int, default=5, help="measured runs; the result is the median")
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--stages", action="store_true", help="also time the train pipeline's stages (see above)")
    parser.add_argument("--quick", action="store_true", help="a small smoke test: 2 runs over 48 small images")
    parser.add_argument("--json", help="write the results here (default: benchmarks/results/DATE-loader-HW.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.batch_size, args.crop_size = 2, 8, 64
    require_at_least(parser, args, ("batch_size", "crop_size", "runs", "threads"))
    require_at_least(parser, args, ("workers",), minimum=0)
    if args.device == "gpu" and not torch.cuda.is_available():
        parser.error("--device gpu, but torch sees no CUDA GPU")

    if args.data is None:
        from dali_mixup.datasets import write_imagenet_like

        classes, per_class = (4, 12) if args.quick else (10, 64)
        args.data = os.path.join("runs", "bench-data", f"imagenet-like-{classes}x{per_class}")
        if not os.path.isdir(args.data):
            print(f"making {classes * per_class} ImageNet-like JPEGs in {args.data}", file=sys.stderr)
            write_imagenet_like(args.data, classes, per_class)
    num_classes = len([entry for entry in os.scandir(args.data) if entry.is_dir()])

    if args.stages:
        args.configs = list(args.configs) + [stage for stage in STAGES if stage not in args.configs]
    epochs = {config: build(config, args.data, num_classes, args) for config in args.configs}
    for config, epoch in epochs.items():  # warm-up: workers started, pipelines built, caches filled
        measure(epoch, args.device)
    runs = interleaved_runs(lambda config: measure(epochs[config], args.device), args.configs, args.runs)
    results = {config: median(values) for config, values in runs.items()}
    ratios = common_ratios(runs, {**RATIOS, **(STAGE_RATIOS if args.stages else {})})
    env = environment()
    report = {
        "env": env,
        "settings": {"device": args.device, "batch_size": args.batch_size, "crop_size": args.crop_size,
                     "workers": args.workers, "threads": args.threads, "runs": args.runs, "data": args.data,
                     "images": sum(len(files) for _, _, files in os.walk(args.data)), "mixup_alpha": ALPHA,
                     "timm_mixup": timm_mixup(num_classes)[1]},
        "results": results,
        "runs": runs,
        "ratios": ratios,
    }
    print(f"\n{'configuration':<26}{'images/s':>10}   (median of {args.runs}, {args.device}, batch {args.batch_size})")
    for config, value in results.items():
        print(f"{config:<26}{value:>10.1f}")
    for name, value in ratios.items():
        print(f"{name:<36}{value:.3f}")

    path = args.json or os.path.join(
        "benchmarks", "results", f"{env['date']}-loader-{args.device}-{hardware_tag(env)}.json"
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    chart = os.path.splitext(path)[0] + ".png"
    bar_chart(results, chart, f"images/s, {args.device}, batch {args.batch_size}, median of {args.runs} "
                              f"({env['gpu'] or env['cpu']}, {env['cores']} cores)")
    print(f"wrote {path} and {chart}", file=sys.stderr)


if __name__ == "__main__":
    main()
