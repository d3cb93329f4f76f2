"""The trainer's options: recipes (the paper's, ResNet strikes back's A3, the demo), every one overridable by a flag."""

import argparse
import dataclasses
import importlib.util
import os

from dali_mixup.image_options import ImageOptions
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
    per_sample: bool  # timm's --mixup-mode elem
    pairs: bool  # timm's --mixup-mode pair
    label_smoothing: float
    bce_loss: bool
    bce_target_thresh: float  # None: the soft targets as they are
    dropout: float
    drop_path: float  # timm models' stochastic depth
    model_ema: bool
    model_ema_decay: float
    model_ema_warmup: bool
    crop_size: int  # train; None for speech
    val_crop_size: int
    crop_pct: float  # val's crop share of its resize (random_resized_crop)
    crop_mode: str  # val's: center, squash or border
    val_resize_size: int  # instead of crop_pct's
    augment: str  # "random_resized_crop" or "pad_crop"
    auto_augment: str  # None, timm's "rand-...", "dali-rand-...", "ra", "ta_wide", "imagenet"
    color_jitter: list  # None, or 3 or 4 strengths
    color_jitter_prob: float
    grayscale_prob: float
    gaussian_blur_prob: float
    reprob: float
    remode: str
    recount: int
    aug_repeats: float
    scale: list  # [lo, hi] or None
    ratio: list
    min_crop_area: float
    hflip: float
    vflip: float
    train_interpolation: str
    interpolation: str  # val's
    mean: list  # None: the dataset's
    std: list
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
# epochs, /10 at 30, 60 and 80 of 90, alpha 0.2. Both use weight decay 1e-4.
# ResNet strikes back (Wightman et al. 2021, Table 1): A1, A2, A3 train a ResNet-50 with LAMB, batch
# 2048, 5 warm-up epochs then cosine, BCE on the mixed targets thresholded at 0.2, CutMix 1.0,
# RandAugment M/0.5 with the increasing ops, tested at 224 with crop 0.95: A1 600 epochs at 224, lr
# 5e-3, weight decay 0.01, label smoothing 0.1, stochastic depth 0.05, repeated augmentation (3),
# RandAugment 7, mixup 0.2; A2 300 epochs, the same but weight decay 0.02, no smoothing, mixup 0.1;
# A3 100 epochs at 160, lr 8e-3, weight decay 0.02, no stochastic depth or repeats, RandAugment 6,
# mixup 0.1. The warm-up starts at timm's --warmup-lr 1e-4 (A3: 0.1% of the lr).
# DeiT-S (Touvron et al. 2021, Table 9): 300 epochs, batch 1024, AdamW at 5e-4 per 512 samples,
# weight decay 0.05, 5 warm-up epochs from 1e-6 then cosine, label smoothing 0.1, stochastic depth
# 0.1, repeated augmentation (3), RandAugment rand-m9-mstd0.5-inc1, mixup 0.8, CutMix 1.0, random
# erasing 0.25 (timm's pixel mode), bicubic resizes, and DeiT's EMA of the weights (decay 0.99996).
# The demo recipe is sized for the digits in a few CPU minutes. Any flag given on the command line wins.
RSB = dict(dataset="imagefolder", model="timm:resnet50", total_batch=2048, opt="lamb", warmup_epochs=5,
           schedule="cosine", cutmix_alpha=1.0, bce_loss=True, bce_target_thresh=0.2, crop_size=224, val_crop_size=224,
           crop_pct=0.95, augment="random_resized_crop")
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
    "rsb-a1": dict(RSB, epochs=600, lr_per_sample=5e-3 / 2048, warmup_start_factor=1e-4 / 5e-3, weight_decay=0.01,
                   label_smoothing=0.1, drop_path=0.05, aug_repeats=3, auto_augment="rand-m7-mstd0.5-inc1",
                   mixup_alpha=0.2),
    "rsb-a2": dict(RSB, epochs=300, lr_per_sample=5e-3 / 2048, warmup_start_factor=1e-4 / 5e-3, weight_decay=0.02,
                   drop_path=0.05, aug_repeats=3, auto_augment="rand-m7-mstd0.5-inc1", mixup_alpha=0.1),
    "rsb-a3": dict(RSB, model="resnet50", epochs=100, lr_per_sample=8e-3 / 2048, warmup_start_factor=1e-3,
                   weight_decay=0.02, auto_augment="rand-m6-mstd0.5-inc1", mixup_alpha=0.1, crop_size=160),
    "deit-s": dict(
        dataset="imagefolder", model="deit_small_patch16_224", epochs=300, total_batch=1024, lr_per_sample=5e-4 / 512,
        opt="adamw", weight_decay=0.05, warmup_epochs=5, warmup_start_factor=1e-6 / 1e-3, schedule="cosine",
        label_smoothing=0.1, drop_path=0.1, aug_repeats=3, auto_augment="rand-m9-mstd0.5-inc1", mixup_alpha=0.8,
        cutmix_alpha=1.0, reprob=0.25, remode="pixel", model_ema=True, model_ema_decay=0.99996,
        train_interpolation="bicubic", interpolation="bicubic", crop_size=224, augment="random_resized_crop",
    ),
    # Section 3.3: Speech Commands as normalized spectrograms, mixed just before the network; Adam at
    # 3e-3, batch 100, 30 epochs, the lr divided by 10 every 10 epochs, mixup after 5 ERM epochs. Ours
    # adds a one-epoch lr warm-up: from the first step at 3e-3 LeNet stays at chance (measured on the
    # spoken words, see docs/speech.md).
    "speech": dict(
        dataset="speechcommands", model="lenet_speech", epochs=30, total_batch=100, lr_per_sample=3e-3 / 100,
        opt="adam", weight_decay=0.0, warmup_epochs=1, milestones=[10, 20], mixup_alpha=0.2, mixup_warmup_epochs=5,
    ),
    "demo": dict(
        dataset="imagefolder", model="resnet8", epochs=10, total_batch=64, lr_per_sample=0.2 / 64,
        schedule="cosine", mixup_alpha=0.2, crop_size=32, augment="random_resized_crop", scale=[0.5, 1.0],
        hflip=0.0,
    ),
}
DEFAULTS = dict(
    # The warm-up starts at 1% of the lr, as torchvision's reference scripts (--lr-warmup-decay 0.01).
    warmup_epochs=0, warmup_start_factor=0.01, schedule="step", milestones=[], momentum=0.9, weight_decay=1e-4,
    opt="sgd", cutmix_alpha=0.0, cutmix_minmax=None, mix_prob=1.0, switch_prob=0.5, mixup_warmup_epochs=0,
    mixup_off_epoch=-1, label_smoothing=0.0, bce_loss=False, bce_target_thresh=None, dropout=0.0, drop_path=0.0,
    model_ema=False, model_ema_decay=0.9998, model_ema_warmup=False, crop_pct=None, crop_mode="center",
    val_resize_size=None, crop_size=None, augment=None, auto_augment=None, color_jitter=None, color_jitter_prob=None,
    grayscale_prob=0.0, gaussian_blur_prob=0.0, reprob=0.0, remode="const", recount=1, aug_repeats=0, scale=None,
    ratio=[3 / 4, 4 / 3], min_crop_area=None, hflip=0.5, vflip=0.0, train_interpolation="bilinear",
    interpolation="bilinear", mean=None, std=None, adjust_orientation=False, device="auto", amp="auto", threads=4,
    seed=0, corrupt_labels=0.0, out="runs/latest", resume="", save_every=0, save_every_minutes=0.0,
)


# The options that shape images; an audio dataset takes none of them.
IMAGE_OPTIONS = ("crop_size", "val_crop_size", "crop_pct", "crop_mode", "val_resize_size", "augment", "auto_augment",
                 "color_jitter", "color_jitter_prob", "grayscale_prob", "gaussian_blur_prob", "reprob", "remode",
                 "recount", "aug_repeats", "scale", "ratio", "min_crop_area", "hflip", "vflip", "train_interpolation",
                 "interpolation", "mean", "std", "adjust_orientation")
# The options that random_resized_crop has and pad_crop has not.
CROP_LAW_OPTIONS = ("scale", "ratio", "min_crop_area", "crop_pct", "crop_mode", "val_resize_size")


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Train an image or speech classifier with mixup on a DALI loader; run under torchrun for several "
                    "GPUs or nodes.",
        epilog="Every option left out takes the recipe's value, or the default shown.",
    )
    add = parser.add_argument
    add("--recipe", choices=sorted(RECIPES), default="cifar",
        help="the paper's settings (cifar, imagenet, speech), ResNet strikes back's A1, A2, A3, DeiT-S's, or the demo's "
             "(default: cifar)")
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
    add("--mixup-mode", choices=["batch", "elem", "pair"],
        help="timm's: one draw of lambda, the switch and the box per batch, per sample (elem), or per pair of "
             "samples i and B-1-i mixed with each other (pair; an even batch) (default: batch)")
    add("--per-sample", action="store_true", help="the same as --mixup-mode elem")
    add("--label-smoothing", type=float, help="(default: 0)")
    add("--bce-loss", action=argparse.BooleanOptionalAction,
        help="binary cross-entropy on the (mixed) targets, as timm's --bce-loss (default: off; rsb-a3: on)")
    add("--bce-target-thresh", type=float,
        help="with --bce-loss, targets above this become 1, the others 0 (timm's; rsb-a3: 0.2)")
    add("--dropout", type=float, help="dropout inside PreAct blocks, the paper's section 3.4 (default: 0)")
    add("--drop-path", type=float, help="stochastic depth of timm models, timm's --drop-path (default: 0; rsb-a1, "
                                        "rsb-a2: 0.05; deit-s: 0.1)")
    add("--model-ema", action=argparse.BooleanOptionalAction,
        help="keep timm's ModelEmaV3 of the weights, evaluated beside the model each epoch (default: off; deit-s: on)")
    add("--model-ema-decay", type=float, help="(default: 0.9998, timm's; deit-s: 0.99996)")
    add("--model-ema-warmup", action=argparse.BooleanOptionalAction,
        help="timm's EMA warm-up: decay 1 - (1 + step)^(-2/3) until it reaches --model-ema-decay (default: off)")
    add("--crop-size", type=int, help="train crop side (cifar, demo: 32; imagenet, rsb-a1, rsb-a2, deit-s: 224; "
                                      "rsb-a3: 160)")
    add("--val-crop-size", type=int, help="val crop side (default: --crop-size; rsb: 224)")
    add("--crop-pct", type=float, help="val's crop share of its resize, timm's (default: 0.875; rsb: 0.95)")
    add("--crop-mode", choices=["center", "squash", "border"], help="val's resize and crop, timm's (default: center)")
    add("--val-resize-size", type=int, help="val's resize size instead of --crop-pct's, torchvision's")
    add("--auto-augment", "--aa", help="timm's RandAugment (rand-m9-mstd0.5-inc1, ...), DALI's (dali-rand-m9-n2), "
                                      "torchvision's ra, ta_wide or imagenet (default: none; rsb-a1, rsb-a2: "
                                      "rand-m7-mstd0.5-inc1; rsb-a3: rand-m6-mstd0.5-inc1; deit-s: rand-m9-mstd0.5-inc1)")
    add("--color-jitter", type=float, nargs="+", metavar="STRENGTH",
        help="timm's: one strength for brightness, contrast and saturation, or 3 or 4 (with hue); off under "
             "--auto-augment (default: off)")
    add("--color-jitter-prob", type=float, help="probability of jittering a crop at all (default: always)")
    add("--grayscale-prob", type=float, help="(default: 0)")
    add("--gaussian-blur-prob", type=float, help="(default: 0)")
    add("--reprob", type=float, help="random erasing probability, timm's (default: 0; deit-s: 0.25)")
    add("--remode", choices=["const", "rand", "pixel"], help="random erasing fill (default: const; deit-s: pixel)")
    add("--recount", type=int, help="most erased boxes a crop (default: 1)")
    add("--aug-repeats", type=float, help="repeated augmentation: each sample this many times an epoch on other ranks "
                                          "(default: 0, off; rsb-a1, rsb-a2, deit-s: 3)")
    add("--augment", choices=["random_resized_crop", "pad_crop"],
        help="train crops: ImageNet's random-resized crops, or CIFAR's 4-pixel pad and random crop, for any "
             "dataset format (cifar: pad_crop; imagenet, demo: random_resized_crop)")
    add("--scale", type=float, nargs=2, metavar=("LO", "HI"), help="random-resized crop's area share (default: 0.08 1; demo: 0.5 1)")
    add("--ratio", type=float, nargs=2, metavar=("LO", "HI"), help="its aspect ratio (default: 0.75 1.33)")
    add("--min-crop-area", type=float, help="--scale LO 1 (the flag from before --scale)")
    add("--hflip", type=float, help="horizontal flip probability (default: 0.5; demo: 0)")
    add("--vflip", type=float, help="vertical flip probability (default: 0)")
    add("--train-interpolation", choices=["bilinear", "bicubic", "nearest", "lanczos", "random"],
        help="the train crops' resize (default: bilinear; deit-s: bicubic)")
    add("--interpolation", choices=["bilinear", "bicubic", "nearest", "lanczos"],
        help="val's resize (default: bilinear; deit-s: bicubic)")
    add("--mean", type=float, nargs=3, help="normalization mean on the 0-1 scale (default: the dataset's)")
    add("--std", type=float, nargs=3, help="normalization std on the 0-1 scale (default: the dataset's)")
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
    mode = args["mixup_mode"] or ("elem" if args["per_sample"] else "batch")
    if args["per_sample"] and mode != "elem":
        parser.error(f"--per-sample is --mixup-mode elem, not {mode}")
    values["per_sample"], values["pairs"] = mode == "elem", mode == "pair"
    values["log_steps"] = args["log_steps"]
    # --min-crop-area is --scale's lower bound under its older name: typed, it wins over a recipe's scale (and
    # --scale over a recipe's min_crop_area), as any typed flag wins over the recipe.
    for typed, other in (("min_crop_area", "scale"), ("scale", "min_crop_area")):
        if args[typed] is not None and args[other] is None:
            values[other] = None

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
        given = [f"--{name.replace('_', '-')}" for name in CROP_LAW_OPTIONS if args[name] is not None]
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
    if c.pairs and c.batch_size % 2:
        problems.append(f"--mixup-mode pair mixes samples i and B-1-i: the batch per rank must be even, got {c.batch_size}")
    if c.cutmix_alpha < 0:
        problems.append(f"--cutmix-alpha must be >= 0, got {c.cutmix_alpha}")
    for name in ("mix_prob", "switch_prob"):
        if not 0 <= getattr(c, name) <= 1:
            problems.append(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(c, name)}")
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
    if c.dataset != "speechcommands":
        for split, options in zip(("train", "val"), image_options(c)):
            try:
                ImageOptions(**options).check_split(split)
            except (TypeError, ValueError) as err:
                problems.append(f"{split} image options: {err}")
    if c.aug_repeats and not (c.aug_repeats >= 1):
        problems.append(f"--aug-repeats must be 0 (off) or >= 1, got {c.aug_repeats}")
    if c.drop_path and resolve_model_or_none(c.model) != "timm":
        problems.append(f"--drop-path applies to timm models, not {c.model}")
    if c.model_ema and importlib.util.find_spec("timm") is None:
        problems.append("--model-ema is timm's ModelEmaV3: pip install timm")
    if not 0 < c.model_ema_decay < 1:
        problems.append(f"--model-ema-decay must be in (0, 1), got {c.model_ema_decay}")
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


def resolve_model_or_none(name):
    try:
        return resolve_model(name)
    except ValueError:
        return None


def image_options(c):
    """make_loader's image options of the train split and of the eval splits (see ``dali_mixup.image_options``)."""
    both = {"augment": c.augment, "adjust_orientation": c.adjust_orientation, "mean": c.mean, "std": c.std}
    train = {**both, "crop_size": c.crop_size, "hflip": c.hflip, "vflip": c.vflip,
             "interpolation": c.train_interpolation, "auto_augment": c.auto_augment, "reprob": c.reprob,
             "remode": c.remode, "recount": c.recount,
             "color_jitter": c.color_jitter[0] if c.color_jitter and len(c.color_jitter) == 1 else c.color_jitter,
             "color_jitter_prob": c.color_jitter_prob, "grayscale_prob": c.grayscale_prob,
             "gaussian_blur_prob": c.gaussian_blur_prob}
    evaluation = {**both, "crop_size": c.val_crop_size, "interpolation": c.interpolation}
    if c.augment != "pad_crop":  # pad_crop has no crop law and no val resize (parse_config refuses them)
        train.update(scale=c.scale, ratio=c.ratio, min_crop_area=c.min_crop_area)
        evaluation.update(crop_pct=c.crop_pct, crop_mode=c.crop_mode, resize_size=c.val_resize_size)
    return train, evaluation
