"""The trainer's options: two recipes with the paper's settings, every one overridable by a flag."""

import argparse
import dataclasses
import os

from train.models import IMAGENET_MODELS, MODELS

DATASETS = ("imagefolder", "filelist", "webdataset", "cifar10", "cifar100")


@dataclasses.dataclass
class Config:
    recipe: str
    dataset: str
    data: str
    model: str
    epochs: int
    batch_size: int  # per rank
    lr: float  # peak learning rate for the whole (all-rank) batch
    warmup_epochs: int
    warmup_start_lr: float
    schedule: str  # "step" or "cosine"
    milestones: list
    momentum: float
    weight_decay: float
    mixup_alpha: float
    mixup_warmup_epochs: int  # no mixup for the first K epochs
    mixup_off_epoch: int  # no mixup from this epoch on (-1: never off)
    per_sample: bool
    label_smoothing: float
    dropout: float
    crop_size: int
    augment: str  # "random_resized_crop" or "pad_crop"
    min_crop_area: float
    hflip: float
    adjust_orientation: bool
    device: str
    amp: str
    channels_last: bool
    threads: int
    seed: int
    corrupt_labels: float
    out: str
    resume: str


# Zhang et al. (2018): CIFAR with SGD, lr 0.1 per 128 samples, /10 at 100 and 150 of 200, alpha 1;
# ImageNet with Goyal et al.'s large-batch setup: 1024 per step, lr warmed up 0.1 -> 0.4 over 5
# epochs, /10 at 30, 60 and 80 of 90, alpha 0.2. Both use weight decay 1e-4. The demo recipe is
# sized for the digits in a few CPU minutes. Any flag given on the command line wins.
RECIPES = {
    "cifar": dict(
        dataset="cifar10", model="preact_resnet18", epochs=200, total_batch=128, lr_per_sample=0.1 / 128,
        milestones=[100, 150], mixup_alpha=1.0, crop_size=32, augment="pad_crop",
    ),
    "imagenet": dict(
        dataset="imagefolder", model="resnet50", epochs=90, total_batch=1024, lr_per_sample=0.4 / 1024,
        warmup_epochs=5, warmup_start_factor=0.25, milestones=[30, 60, 80], mixup_alpha=0.2, crop_size=224,
        augment="random_resized_crop",
    ),
    "demo": dict(
        dataset="imagefolder", model="resnet8", epochs=10, total_batch=64, lr_per_sample=0.2 / 64,
        schedule="cosine", mixup_alpha=0.2, crop_size=32, augment="random_resized_crop", min_crop_area=0.5,
        hflip=0.0,
    ),
}
DEFAULTS = dict(
    warmup_epochs=0, warmup_start_factor=1.0, schedule="step", milestones=[], momentum=0.9, weight_decay=1e-4,
    mixup_warmup_epochs=0, mixup_off_epoch=-1, label_smoothing=0.0, dropout=0.0, min_crop_area=0.08, hflip=0.5,
    adjust_orientation=False, device="auto", amp="auto", threads=4, seed=0, corrupt_labels=0.0, out="runs/latest", resume="",
)


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Train an image classifier with mixup on a DALI loader; run under torchrun for several GPUs or nodes.",
        epilog="Every option left out takes the recipe's value, or the default shown.",
    )
    add = parser.add_argument
    add("--recipe", choices=sorted(RECIPES), default="cifar", help="the paper's settings, or the demo's (default: cifar)")
    add("--dataset", choices=DATASETS)
    add("--data", required=True, help="dataset root; an ImageFolder or shard root must hold train/ and val/")
    add("--model", choices=MODELS)
    add("--epochs", type=int)
    add("--batch-size", type=int, help="per rank (default: the recipe's total batch / world size)")
    add("--lr", type=float, help="peak lr (default: the recipe's lr per sample x the total batch)")
    add("--warmup-epochs", type=int, help="linear lr warm-up (default: 0; imagenet: 5)")
    add("--schedule", choices=["step", "cosine"], help="after the warm-up (default: step; demo: cosine)")
    add("--milestones", type=int, nargs="*", help="epochs at which a step schedule divides the lr by 10")
    add("--momentum", type=float, help="SGD momentum (default: 0.9)")
    add("--weight-decay", type=float, help="(default: 1e-4)")
    add("--mixup-alpha", type=float, help="Beta(alpha, alpha); 0 is ERM")
    add("--mixup-warmup-epochs", type=int, help="no mixup for the first K epochs (default: 0)")
    add("--mixup-off-epoch", type=int, help="no mixup from this epoch on (default: -1, never)")
    add("--per-sample", action="store_true", help="one mixup lambda per sample instead of per batch")
    add("--label-smoothing", type=float, help="(default: 0)")
    add("--dropout", type=float, help="dropout inside PreAct blocks, the paper's section 3.4 (default: 0)")
    add("--crop-size", type=int, help="(cifar, demo: 32; imagenet: 224)")
    add("--augment", choices=["random_resized_crop", "pad_crop"],
        help="train crops: ImageNet's random-resized crops, or CIFAR's 4-pixel pad and random crop, for any "
             "dataset format (cifar: pad_crop; imagenet, demo: random_resized_crop)")
    add("--min-crop-area", type=float, help="random-resized-crop area lower bound (default: 0.08)")
    add("--hflip", type=float, help="horizontal flip probability (default: 0.5; demo: 0)")
    add("--adjust-orientation", action=argparse.BooleanOptionalAction,
        help="apply JPEGs' EXIF orientation (default: off, as torchvision, whose PIL ignores it)")
    add("--device", choices=["auto", "cpu", "gpu"], help="(default: auto, the GPU if there is one)")
    add("--amp", choices=["auto", "bf16", "fp16", "off"], help="(default: auto, bf16 on GPU and off on CPU)")
    add("--channels-last", action=argparse.BooleanOptionalAction, help="(default: on for GPU)")
    add("--threads", type=int, help="DALI CPU threads per rank (default: 4)")
    add("--seed", type=int, help="(default: 0)")
    add("--corrupt-labels", type=float, help="give this fraction of the train labels another class (default: 0)")
    add("--out", help="run folder (default: runs/latest)")
    add("--resume", nargs="?", const="auto",
        help="resume from a checkpoint file, or (bare flag) from OUT/checkpoint.pt if there is one")
    return parser


def parse_config(argv=None, world_size=1, cuda=False):
    """Resolve the recipe and the flags into a :class:`Config`; exit with a usage error on a bad option."""
    parser = _parser()
    args = vars(parser.parse_args(argv))
    recipe = RECIPES[args["recipe"]]
    values = {**DEFAULTS, **recipe, **{key: value for key, value in args.items() if value is not None}}
    values["per_sample"] = args["per_sample"]

    device = {"auto": "gpu" if cuda else "cpu"}.get(values["device"], values["device"])
    if device == "gpu" and not cuda:
        parser.error("--device gpu, but torch sees no CUDA GPU")
    if args["batch_size"] is None and recipe["total_batch"] % world_size:
        parser.error(f"the recipe's total batch {recipe['total_batch']} does not split over {world_size} ranks")
    batch_size = values.get("batch_size") or recipe["total_batch"] // world_size
    lr = values.get("lr", recipe["lr_per_sample"] * batch_size * world_size)
    fields = {field.name for field in dataclasses.fields(Config)}
    values.update(
        device=device,
        batch_size=batch_size,
        lr=lr,
        warmup_start_lr=lr * values["warmup_start_factor"],
        amp={"auto": "bf16" if device == "gpu" else "off"}.get(values["amp"], values["amp"]),
        channels_last=values.get("channels_last", device == "gpu"),
    )
    config = Config(**{key: value for key, value in values.items() if key in fields})
    problems = _check(config)
    if problems:
        parser.error("; ".join(problems))
    return config


def _check(c):
    problems = []
    for name in ("epochs", "batch_size", "crop_size", "threads"):
        if getattr(c, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1, got {getattr(c, name)}")
    for name in ("lr", "weight_decay", "momentum", "mixup_alpha", "dropout", "warmup_epochs", "mixup_warmup_epochs"):
        if getattr(c, name) < 0:
            problems.append(f"--{name.replace('_', '-')} must be >= 0, got {getattr(c, name)}")
    for name in ("label_smoothing", "corrupt_labels", "dropout"):
        if not 0 <= getattr(c, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(c, name)}")
    if not 0 < c.min_crop_area <= 1:
        problems.append(f"--min-crop-area must be in (0, 1], got {c.min_crop_area}")
    if not 0 <= c.hflip <= 1:
        problems.append(f"--hflip must be in [0, 1], got {c.hflip}")
    if c.dropout and c.model in IMAGENET_MODELS:
        problems.append(f"--dropout applies to the PreAct models, not {c.model}")
    if c.amp == "fp16" and c.device == "cpu":
        problems.append("--amp fp16 needs a GPU; use bf16 or off on the CPU")
    if c.corrupt_labels and c.dataset not in ("imagefolder", "filelist"):
        problems.append(f"--corrupt-labels works on imagefolder and filelist datasets, not {c.dataset}")
    if any(m < 0 for m in c.milestones) or sorted(c.milestones) != list(c.milestones):
        problems.append(f"--milestones must be increasing epochs, got {c.milestones}")
    if not os.path.exists(c.data):
        problems.append(f"--data {c.data!r} does not exist")
    return problems
