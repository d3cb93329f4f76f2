"""The trainer's options: recipes (the paper's, ResNet strikes back's A3, the demo), every one overridable by a flag."""

import argparse
import dataclasses
import importlib.util
import os

from dali_mixup.loader import AutoAugment
from train.models import SMALL_MODELS, SPEECH_MODELS, resolve_model

DATASETS = ("imagefolder", "filelist", "webdataset", "cifar10", "cifar100", "speechcommands")


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
    opt: str  # "sgd", "adam", "adamw" or "lamb"
    mixup_alpha: float
    cutmix_alpha: float
    cutmix_minmax: list  # [lo, hi] or None
    mix_prob: float
    switch_prob: float
    mixup_warmup_epochs: int  # no mixing for the first K epochs
    mixup_off_epoch: int  # no mixing from this epoch on (-1: never off)
    per_sample: bool
    label_smoothing: float
    bce_loss: bool
    bce_target_thresh: float  # None: the soft targets as they are
    dropout: float
    crop_size: int  # train; None for speech
    val_crop_size: int
    crop_pct: float  # val's center crop share (random_resized_crop)
    augment: str  # "random_resized_crop" or "pad_crop"
    auto_augment: str  # None, "rand-m9-n2", "trivial", "autoaugment"
    reprob: float
    remode: str
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
    save_every: int  # steps between checkpoints inside an epoch; 0: at each epoch's end only
    save_every_minutes: float  # minutes between checkpoints (rank 0's clock); 0: off
    log_steps: bool  # write every step's train loss to OUT/steps.jsonl


# Zhang et al. (2018): CIFAR with SGD, lr 0.1 per 128 samples, /10 at 100 and 150 of 200, alpha 1;
# ImageNet with Goyal et al.'s large-batch setup: 1024 per step, lr warmed up 0.1 -> 0.4 over 5
# epochs, /10 at 30, 60 and 80 of 90, alpha 0.2. Both use weight decay 1e-4. ResNet strikes back
# (Wightman et al. 2021, Table 1), A3: 100 epochs at 160 px, tested at 224 with crop 0.95, batch
# 2048, LAMB at lr 8e-3 with weight decay 0.02, 5 warm-up epochs then cosine, mixup 0.1 and CutMix
# 1.0, RandAugment 6/0.5, BCE with targets thresholded at 0.2, no label smoothing. The demo recipe
# is sized for the digits in a few CPU minutes. Any flag given on the command line wins.
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
    "rsb-a3": dict(
        dataset="imagefolder", model="resnet50", epochs=100, total_batch=2048, lr_per_sample=8e-3 / 2048, opt="lamb",
        weight_decay=0.02, warmup_epochs=5, warmup_start_factor=1e-3, schedule="cosine", mixup_alpha=0.1,
        cutmix_alpha=1.0, auto_augment="rand-m6-n2-inc1", bce_loss=True, bce_target_thresh=0.2, crop_size=160,
        val_crop_size=224, crop_pct=0.95, augment="random_resized_crop",
    ),
    # Section 3.3: Speech Commands as normalized spectrograms, mixed just before the network; Adam at
    # 3e-3, batch 100, 30 epochs, the lr divided by 10 every 10 epochs, mixup after 5 ERM epochs. Ours
    # adds a one-epoch lr warm-up: from the first step at 3e-3 LeNet stays at chance (measured on the
    # spoken words, see the README).
    "speech": dict(
        dataset="speechcommands", model="lenet_speech", epochs=30, total_batch=100, lr_per_sample=3e-3 / 100,
        opt="adam", weight_decay=0.0, warmup_epochs=1, milestones=[10, 20], mixup_alpha=0.2, mixup_warmup_epochs=5,
    ),
    "demo": dict(
        dataset="imagefolder", model="resnet8", epochs=10, total_batch=64, lr_per_sample=0.2 / 64,
        schedule="cosine", mixup_alpha=0.2, crop_size=32, augment="random_resized_crop", min_crop_area=0.5,
        hflip=0.0,
    ),
}
DEFAULTS = dict(
    # The warm-up starts at 1% of the lr, as torchvision's reference scripts (--lr-warmup-decay 0.01).
    warmup_epochs=0, warmup_start_factor=0.01, schedule="step", milestones=[], momentum=0.9, weight_decay=1e-4,
    opt="sgd", cutmix_alpha=0.0, cutmix_minmax=None, mix_prob=1.0, switch_prob=0.5, mixup_warmup_epochs=0,
    mixup_off_epoch=-1, label_smoothing=0.0, bce_loss=False, bce_target_thresh=None, dropout=0.0, crop_pct=0.875,
    crop_size=None, augment=None, auto_augment=None, reprob=0.0, remode="const", min_crop_area=0.08, hflip=0.5, adjust_orientation=False,
    device="auto", amp="auto", threads=4, seed=0, corrupt_labels=0.0, out="runs/latest", resume="", save_every=0,
    save_every_minutes=0.0,
)


# The options that shape images; an audio dataset takes none of them.
IMAGE_OPTIONS = ("crop_size", "val_crop_size", "crop_pct", "augment", "auto_augment", "reprob", "remode",
                 "min_crop_area", "hflip", "adjust_orientation")


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Train an image or speech classifier with mixup on a DALI loader; run under torchrun for several "
                    "GPUs or nodes.",
        epilog="Every option left out takes the recipe's value, or the default shown.",
    )
    add = parser.add_argument
    add("--recipe", choices=sorted(RECIPES), default="cifar",
        help="the paper's settings (cifar, imagenet, speech), ResNet strikes back's A3, or the demo's (default: cifar)")
    add("--dataset", choices=DATASETS)
    add("--data", required=True, help="dataset root; an ImageFolder or shard root must hold train/ and val/, a "
                                      "Speech Commands root its word folders and lists")
    add("--model", help=f"{', '.join(SMALL_MODELS)}, any torchvision classification model, or any timm model "
                        "(timm installed)")
    add("--epochs", type=int)
    add("--batch-size", type=int, help="per rank (default: the recipe's total batch / world size)")
    add("--lr", type=float, help="peak lr (default: the recipe's lr per sample x the total batch)")
    add("--warmup-epochs", type=int, help="linear lr warm-up from 1%% of the lr (default: 0; imagenet: 5, from 25%%; "
                                         "rsb-a3: 5, from 0.1%%; speech: 1)")
    add("--schedule", choices=["step", "cosine"], help="after the warm-up (default: step; rsb-a3, demo: cosine)")
    add("--milestones", type=int, nargs="*", help="epochs at which a step schedule divides the lr by 10")
    add("--opt", choices=["sgd", "adam", "adamw", "lamb"],
        help="(default: sgd with momentum; speech: adam, torch's, with L2 weight decay on every parameter; adamw "
             "and lamb, the latter timm's, leave biases and norms undecayed)")
    add("--momentum", type=float, help="SGD momentum (default: 0.9)")
    add("--weight-decay", type=float, help="(default: 1e-4)")
    add("--mixup-alpha", type=float, help="Beta(alpha, alpha); 0 is no mixup (with no CutMix, ERM)")
    add("--cutmix-alpha", type=float, help="CutMix's Beta(alpha, alpha); 0 is no CutMix (default: 0)")
    add("--cutmix-minmax", type=float, nargs=2, metavar=("LO", "HI"),
        help="CutMix box sides uniform in [LO, HI) of the image's, instead of from lambda")
    add("--mix-prob", type=float, help="probability of mixing a batch (or sample) at all (default: 1)")
    add("--switch-prob", type=float, help="with mixup and CutMix, the probability of CutMix (default: 0.5)")
    add("--mixup-warmup-epochs", type=int, help="no mixing for the first K epochs (default: 0)")
    add("--mixup-off-epoch", type=int, help="no mixing from this epoch on (default: -1, never)")
    add("--per-sample", action="store_true", help="draw lambda, the switch and the box per sample instead of per batch")
    add("--label-smoothing", type=float, help="(default: 0)")
    add("--bce-loss", action=argparse.BooleanOptionalAction,
        help="binary cross-entropy on the (mixed) targets, as timm's --bce-loss (default: off; rsb-a3: on)")
    add("--bce-target-thresh", type=float,
        help="with --bce-loss, targets above this become 1, the others 0 (timm's; rsb-a3: 0.2)")
    add("--dropout", type=float, help="dropout inside PreAct blocks, the paper's section 3.4 (default: 0)")
    add("--crop-size", type=int, help="train crop side (cifar, demo: 32; imagenet: 224; rsb-a3: 160)")
    add("--val-crop-size", type=int, help="val crop side (default: --crop-size; rsb-a3: 224)")
    add("--crop-pct", type=float, help="val's center crop share of the resized image (default: 0.875; rsb-a3: 0.95)")
    add("--auto-augment", help="rand-m<M>-n<N>[-inc1], trivial or autoaugment (DALI's; default: none; rsb-a3: "
                               "rand-m6-n2-inc1)")
    add("--reprob", type=float, help="random erasing probability, timm's (default: 0)")
    add("--remode", choices=["const", "pixel"], help="random erasing fill (default: const)")
    add("--augment", choices=["random_resized_crop", "pad_crop"],
        help="train crops: ImageNet's random-resized crops, or CIFAR's 4-pixel pad and random crop, for any "
             "dataset format (cifar: pad_crop; imagenet, demo: random_resized_crop)")
    add("--min-crop-area", type=float, help="random-resized-crop area lower bound (default: 0.08)")
    add("--hflip", type=float, help="horizontal flip probability (default: 0.5; demo: 0)")
    add("--adjust-orientation", action=argparse.BooleanOptionalAction,
        help="apply JPEGs' EXIF orientation (default: off, as torchvision, whose PIL ignores it)")
    add("--device", choices=["auto", "cpu", "gpu"], help="(default: auto, the GPU if there is one)")
    add("--amp", choices=["auto", "bf16", "fp16", "off"], help="(default: auto, bf16 on GPU and off on CPU)")
    add("--channels-last", action=argparse.BooleanOptionalAction,
        help="channels-last memory for the model and the images; for speech the model's alone, the one-channel "
             "spectrograms are the same bytes either way (default: on for GPU)")
    add("--threads", type=int, help="DALI CPU threads per rank (default: 4)")
    add("--seed", type=int, help="(default: 0)")
    add("--corrupt-labels", type=float, help="give this fraction of the train labels another class (default: 0)")
    add("--out", help="run folder (default: runs/latest)")
    add("--resume", nargs="?", const="auto",
        help="resume from a checkpoint file, or (bare flag) from OUT/checkpoint.pt if there is one; inside an epoch "
             "where it was saved there, exactly (a group torchrun restarts resumes without it)")
    add("--save-every", type=int, metavar="STEPS", help="also save every STEPS optimizer steps, inside epochs (default: 0, "
                                                         "at each epoch's end only)")
    add("--save-every-minutes", type=float, metavar="M", help="also save every M minutes (default: 0, off)")
    add("--log-steps", action="store_true", help="write every step's train loss (rank 0's) to OUT/steps.jsonl; a sync "
                                                 "point a step")
    return parser


def parse_config(argv=None, world_size=1, cuda=False):
    """Resolve the recipe and the flags into a :class:`Config`; exit with a usage error on a bad option."""
    parser = _parser()
    args = vars(parser.parse_args(argv))
    recipe = RECIPES[args["recipe"]]
    values = {**DEFAULTS, **recipe, **{key: value for key, value in args.items() if value is not None}}
    values["per_sample"] = args["per_sample"]
    values["log_steps"] = args["log_steps"]

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
        val_crop_size=values.get("val_crop_size") or values["crop_size"],
    )
    if values["dataset"] == "speechcommands":
        given = [f"--{name.replace('_', '-')}" for name in IMAGE_OPTIONS if args[name] is not None]
        if given:
            parser.error(f"{', '.join(given)} apply to image datasets, not --dataset speechcommands")
    if values["augment"] == "pad_crop":
        given = [f"--{name.replace('_', '-')}" for name in ("min_crop_area", "crop_pct") if args[name] is not None]
        if given:
            parser.error(f"{', '.join(given)} apply to --augment random_resized_crop, not pad_crop")
    config = Config(**{key: value for key, value in values.items() if key in fields})
    problems = _check(config)
    if problems:
        parser.error("; ".join(problems))
    return config


def _check(c):
    problems = []
    for name in ("epochs", "batch_size", "crop_size", "val_crop_size", "threads"):
        if getattr(c, name) is not None and getattr(c, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1, got {getattr(c, name)}")
    for name in ("lr", "weight_decay", "momentum", "mixup_alpha", "dropout", "warmup_epochs", "mixup_warmup_epochs",
                 "save_every", "save_every_minutes"):
        if getattr(c, name) < 0:
            problems.append(f"--{name.replace('_', '-')} must be >= 0, got {getattr(c, name)}")
    for name in ("label_smoothing", "corrupt_labels", "dropout"):
        if not 0 <= getattr(c, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(c, name)}")
    if not 0 < c.min_crop_area <= 1:
        problems.append(f"--min-crop-area must be in (0, 1], got {c.min_crop_area}")
    if not 0 <= c.hflip <= 1:
        problems.append(f"--hflip must be in [0, 1], got {c.hflip}")
    if c.cutmix_alpha < 0:
        problems.append(f"--cutmix-alpha must be >= 0, got {c.cutmix_alpha}")
    for name in ("reprob", "mix_prob", "switch_prob"):
        if not 0 <= getattr(c, name) <= 1:
            problems.append(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(c, name)}")
    if not 0 < c.crop_pct <= 1:
        problems.append(f"--crop-pct must be in (0, 1], got {c.crop_pct}")
    if c.cutmix_minmax is not None and not 0 < c.cutmix_minmax[0] < c.cutmix_minmax[1] <= 1:
        problems.append(f"--cutmix-minmax must be LO HI with 0 < LO < HI <= 1, got {c.cutmix_minmax}")
    if c.bce_target_thresh is not None and not (c.bce_loss and 0 <= c.bce_target_thresh < 1):
        problems.append(f"--bce-target-thresh needs --bce-loss and a value in [0, 1), got {c.bce_target_thresh}")
    try:
        resolve_model(c.model)
    except ValueError as err:
        problems.append(f"--model: {err}")
    if c.opt == "lamb" and importlib.util.find_spec("timm") is None:
        problems.append("--opt lamb is timm's LAMB: pip install timm")
    if c.auto_augment is not None:
        try:
            AutoAugment(c.auto_augment)
        except ValueError as err:
            problems.append(f"--auto-augment: {err}")
    if c.dropout and c.model not in SMALL_MODELS:
        problems.append(f"--dropout applies to the PreAct models, not {c.model}")
    if c.amp == "fp16" and c.device == "cpu":
        problems.append("--amp fp16 needs a GPU; use bf16 or off on the CPU")
    if c.dataset == "speechcommands" and c.model not in SPEECH_MODELS:
        problems.append(f"--dataset speechcommands takes {' or '.join(SPEECH_MODELS)}, not {c.model}")
    elif c.dataset != "speechcommands" and c.model in SPEECH_MODELS:
        problems.append(f"--model {c.model} is for --dataset speechcommands, not {c.dataset}")
    if c.corrupt_labels and c.dataset not in ("imagefolder", "filelist"):
        problems.append(f"--corrupt-labels works on imagefolder and filelist datasets, not {c.dataset}")
    if any(m < 0 for m in c.milestones) or sorted(c.milestones) != list(c.milestones):
        problems.append(f"--milestones must be increasing epochs, got {c.milestones}")
    if not os.path.exists(c.data):
        problems.append(f"--data {c.data!r} does not exist")
    return problems
