"""The memorization experiment of Zhang et al. (2018), section 3.4 and Table 2, on the demo digits.

    python -m benchmarks.paper.memorization [--data DIR] [--corrupt 0.5 [0.2 0.8]]
                                      [--methods erm erm+dropout:0.7 mixup:8 mixup:32 mixup:8+dropout:0.3]
                                      [--model resnet8] [--augment none|pad_crop|random_resized_crop]
                                      [--epochs 40] [--batch-size 32] [--lr 0.05] [--schedule cosine]
                                      [--milestones ...] [--weight-decay 1e-4] [--seed 0] [--threads 1]
                                      [--runs runs/memorization] [--results benchmarks/results] [--reuse]

A share ``--corrupt`` of the train labels is replaced by other classes (fixed by the seed; the test
labels stay clean), and each method of the paper's Table 2 trains the model with ``python -m train``
on them: ERM, ERM with dropout inside the PreAct blocks, mixup, mixup with dropout. Per method the
table gives the best and the last test error, and at the last epoch the training error on the
real labels of the uncorrupted samples and on the corrupted labels of the corrupted ones (the
paper's two training-error columns; the latter is how much of the noise the network memorized).
Both come from the last checkpoint, evaluated on the train images; the per-epoch curves come from
the trainer's metrics.jsonl, whose ``train_error_real`` is over all samples, corrupted ones
included.

The defaults are sized so that ERM memorizes the noise in a few CPU minutes per method: the
trainer's smallest PreAct network (``resnet8``, 78k parameters, dropout works there), no train
augmentation (``--augment none``: a random-resized crop of the whole image, the identity, and the
whole image at test time), batch 32, SGD at lr 0.05 on a 40-epoch cosine, weight decay 1e-4. With
the demo recipe's random-resized crops, or with CIFAR's pad-and-crop, ERM does not fit the noise in
that time (see the Markdown the run writes). Run it niced, with ``OMP_NUM_THREADS=1``, on a shared
machine.

Writes ``DATE-memorization-DEVICE.json`` (settings, commands, machine, per-method rows and
per-epoch curves), ``.md`` (the table beside the paper's) and ``.png`` (the training error on the
corrupted labels, and the test error, per epoch) under ``--results``.
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from benchmarks.common import cpu_model, require_at_least

DEFAULT_METHODS = ["erm", "erm+dropout:0.7", "mixup:8", "mixup:32", "mixup:8+dropout:0.3"]
# --augment none: a random-resized crop of exactly the whole image (area 1; no aspect ratio in
# [3/4, 4/3] but 1 fits, so DALI falls back to the whole image) and the whole image at test time.
AUGMENT_FLAGS = {
    "none": ["--augment", "random_resized_crop", "--min-crop-area", "1", "--crop-pct", "1"],
    "pad_crop": ["--augment", "pad_crop"],
    "random_resized_crop": ["--augment", "random_resized_crop", "--min-crop-area", "0.5"],  # the demo recipe's
}

# Zhang et al. (2018), Table 2: CIFAR-10, PreAct ResNet-18, 200 epochs, a share of the train labels
# replaced by random ones; per corruption level the best of dropout p in {0.5, 0.7, 0.8, 0.9},
# mixup alpha in {1, 2, 8, 32} and, with both, p in {0.1, 0.2, 0.3, 0.4, 0.5} and alpha in
# {1, 2, 4, 8} (p is the drop probability). Errors in %. The test errors were checked against a
# published transcription of the table; the training errors are from memory of the paper,
# unverified (no copy of the paper's table could be read here).
PAPER = {
    0.2: [
        {"kind": "erm", "alpha": 0, "dropout": 0, "best": 12.7, "last": 16.6, "real": 0.05, "corrupted": 0.28},
        {"kind": "erm+dropout", "alpha": 0, "dropout": 0.7, "best": 8.8, "last": 10.4, "real": 5.26,
         "corrupted": 83.55},
        {"kind": "mixup", "alpha": 8, "dropout": 0, "best": 5.9, "last": 6.4, "real": 2.27, "corrupted": 86.32},
        {"kind": "mixup+dropout", "alpha": 4, "dropout": 0.1, "best": 6.2, "last": 6.2, "real": 1.92,
         "corrupted": 85.02},
    ],
    0.5: [
        {"kind": "erm", "alpha": 0, "dropout": 0, "best": 18.8, "last": 44.6, "real": 0.26, "corrupted": 0.64},
        {"kind": "erm+dropout", "alpha": 0, "dropout": 0.8, "best": 14.1, "last": 15.5, "real": 12.71,
         "corrupted": 86.98},
        {"kind": "mixup", "alpha": 32, "dropout": 0, "best": 11.3, "last": 12.7, "real": 5.84, "corrupted": 85.71},
        {"kind": "mixup+dropout", "alpha": 8, "dropout": 0.3, "best": 10.9, "last": 10.9, "real": 7.56,
         "corrupted": 87.90},
    ],
    0.8: [
        {"kind": "erm", "alpha": 0, "dropout": 0, "best": 36.5, "last": 73.9, "real": 0.62, "corrupted": 0.83},
        {"kind": "erm+dropout", "alpha": 0, "dropout": 0.8, "best": 30.9, "last": 35.1, "real": 29.84,
         "corrupted": 86.37},
        {"kind": "mixup", "alpha": 32, "dropout": 0, "best": 25.3, "last": 30.9, "real": 18.92, "corrupted": 85.44},
        {"kind": "mixup+dropout", "alpha": 8, "dropout": 0.3, "best": 24.0, "last": 24.8, "real": 19.70,
         "corrupted": 87.67},
    ],
}
PAPER_SOURCE = (
    "Zhang et al. (2018), Table 2: CIFAR-10, PreAct ResNet-18, 200 epochs, the best hyperparameters per "
    "method and corruption level. Test errors checked against a published transcription of the table; "
    "the training errors are from memory, unverified."
)

# The pilots behind the defaults, 50% corruption, ERM, resnet8, seed 0 (2026-11-23, this machine):
PILOTS = [
    "demo recipe (random-resized crops of >= 50% of the area), batch 64, lr 0.2 cosine, 40 epochs "
    "(the 2026-11-22 table): train error on the corrupted labels 0.98 at the end, no memorization;",
    "`--augment pad_crop` (CIFAR's 4-pixel pad and random crop, no flip), batch 32, lr 0.05 cosine, "
    "wd 1e-4, 60 epochs: 0.85 at the end (train loss 1.37, the noise barely started to be fitted);",
    "`--augment none`, batch 32, lr 0.05 cosine, wd 1e-4, 40 epochs: 0.98 until epoch ~15, then "
    "falling to 0.13 at epoch 32 and 0.02 at epoch 38: ERM memorizes. These are the defaults.",
]

METHOD = re.compile(r"^(erm|mixup:(?P<alpha>\d+(\.\d*)?))(\+dropout:(?P<dropout>0?\.\d+|0))?$")


def parse_method(text):
    """``erm``, ``mixup:A``, either with ``+dropout:P``, into a dict; ValueError if it is none of these."""
    match = METHOD.match(text)
    if not match:
        raise ValueError(f"{text!r} is not erm, mixup:ALPHA, erm+dropout:P or mixup:ALPHA+dropout:P")
    alpha = float(match["alpha"] or 0)
    dropout = float(match["dropout"] or 0)
    if match["alpha"] is not None and alpha <= 0:
        raise ValueError(f"{text!r}: mixup's alpha must be > 0 (erm is alpha 0)")
    if match["dropout"] is not None and not 0 < dropout < 1:
        raise ValueError(f"{text!r}: the dropout probability must be in (0, 1)")
    kind = ("mixup" if alpha else "erm") + ("+dropout" if dropout else "")
    return {"method": text, "kind": kind, "alpha": alpha, "dropout": dropout}


def label(method):
    name = "ERM" if not method["alpha"] else f"mixup α={method['alpha']:g}"
    return name + (f" + dropout p={method['dropout']:g}" if method["dropout"] else "")


def paper_row(method, corrupt):
    """The paper's Table 2 row for this kind of method at this corruption level, if its alpha matches."""
    for row in PAPER.get(round(corrupt, 6), []):
        if row["kind"] == method["kind"] and (not method["alpha"] or row["alpha"] == method["alpha"]):
            return row
    return None


def trainer_command(args, data, out, method, corrupt):
    return [
        sys.executable, "-m", "train", "--recipe", "demo", "--data", data, "--out", out, "--device", args.device,
        "--model", args.model, *AUGMENT_FLAGS[args.augment], "--hflip", "0", "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--schedule", args.schedule,
        "--milestones", *map(str, args.milestones), "--weight-decay", str(args.weight_decay),
        "--mixup-alpha", str(method["alpha"]), "--dropout", str(method["dropout"]),
        "--corrupt-labels", str(corrupt), "--seed", str(args.seed), "--threads", str(args.threads),
    ]


@torch.no_grad()
def final_train_errors(out, threads):
    """Errors of the last checkpoint on the train images, split by the corruption (as the trainer's eval).

    Returns the error on the real labels of the uncorrupted samples (the paper's "real"), on the
    noisy labels of the corrupted ones (the paper's "corrupted"), on the real labels over all
    samples (the trainer's ``train_error_real``), and the share of the corrupted samples still
    given their real class.
    """
    from dali_mixup import formats, make_loader
    from train import checkpoint
    from train.models import create_model

    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    eval_list = os.path.join(out, "train_eval_labels.rank0.txt")
    classes = len(formats.image_folder(os.path.join(config["data"], "train"))[2])  # as the trainer counts them
    loader = make_loader(dataset="filelist", root="/", file_list=eval_list, num_classes=classes * classes,
                         split="val", device="cpu", augment=config["augment"],
                         adjust_orientation=config["adjust_orientation"], dtype=torch.float32,
                         num_threads=threads, batch_size=256, crop_size=config["val_crop_size"],
                         **({"crop_pct": config["crop_pct"]} if config["augment"] == "random_resized_crop" else {}))
    model = create_model(config["model"], classes, config["dropout"])
    model.load_state_dict(checkpoint.load(os.path.join(out, "checkpoint.pt"))["model"])
    model.eval()
    predicted, labels = [], []
    for images, batch_labels in loader:
        predicted.append(model(images).argmax(1))
        labels.append(batch_labels)
    predicted, labels = torch.cat(predicted), torch.cat(labels)
    real, noisy = labels // classes, labels % classes
    corrupted = real != noisy
    clean = ~corrupted
    return {
        "train_error_real_clean": (predicted != real)[clean].double().mean().item(),
        "train_error_corrupted": (predicted != noisy)[corrupted].double().mean().item(),
        "train_error_real_all": (predicted != real).double().mean().item(),
        "corrupted_predicted_real": (predicted == real)[corrupted].double().mean().item(),
        "train_samples": len(labels),
        "corrupted_samples": int(corrupted.sum()),
    }


def run(args, data, method, corrupt):
    """Train one method (or reuse its finished run with ``--reuse``); its row and curves."""
    slug = f"corrupt{corrupt:g}-{method['method'].replace(':', '').replace('+', '-')}"
    out = os.path.join(args.runs, slug)
    command = trainer_command(args, data, out, method, corrupt)
    stamp_path = os.path.join(out, "memorization-command.json")
    reused = False
    if args.reuse and os.path.isfile(stamp_path) and os.path.isfile(os.path.join(out, "summary.json")):
        with open(stamp_path) as f:
            stamp = json.load(f)
        reused = stamp["command"][1:] == command[1:]
    if reused:
        seconds, cpu_seconds = stamp["seconds"], stamp["cpu_seconds"]
        print(f"reusing {out}", flush=True)
    else:
        print("running", " ".join(command), flush=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=None if args.verbose else subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        with open(stamp_path, "w") as f:
            json.dump({"command": command, "seconds": seconds, "cpu_seconds": cpu_seconds}, f, indent=2)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        epochs = [json.loads(line) for line in f]
    test_errors = [1 - row["val_top1"] for row in epochs]
    best = int(np.argmin(test_errors))
    final = final_train_errors(out, args.threads)
    last = epochs[-1]
    row = {
        **method,
        "label": label(method),
        "corrupt": corrupt,
        "run": out,
        "command": command,
        "reused": reused,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "test_error_best": test_errors[best],
        "best_epoch": best,
        "test_error_last": test_errors[-1],
        **final,
        "metrics_train_error_real_last": last["train_error_real"],
        "metrics_train_error_corrupted_last": last["train_error_corrupted"],
        "paper": paper_row(method, corrupt),
    }
    curves = {
        "epoch": [r["epoch"] for r in epochs],
        "train_loss": [r["train_loss"] for r in epochs],
        "test_error": test_errors,
        "train_error_real": [r["train_error_real"] for r in epochs],
        "train_error_corrupted": [r["train_error_corrupted"] for r in epochs],
        "lr": [r["lr"] for r in epochs],
    }
    print(f"{row['label']}, {corrupt:.0%} corrupted: test error best {row['test_error_best']:.3f} "
          f"(epoch {best}), last {row['test_error_last']:.3f}; train error real {row['train_error_real_clean']:.3f}, "
          f"corrupted {row['train_error_corrupted']:.3f} ({seconds:.0f} s)", flush=True)
    return row, curves


def percent(value):
    return f"{100 * value:.1f}"


def reading(rows):
    """One sentence per corruption level, from the numbers: did ERM memorize, did the others."""
    sentences = []
    for corrupt in sorted({row["corrupt"] for row in rows}):
        level = [row for row in rows if row["corrupt"] == corrupt]
        erm = next((row for row in level if row["kind"] == "erm"), None)
        others = [row for row in level if row is not erm]
        parts = []
        if erm:
            verdict = "memorized the noise" if erm["train_error_corrupted"] < 0.2 else "did not memorize the noise"
            parts.append(
                f"ERM {verdict}: its training error on the corrupted labels ends at "
                f"{percent(erm['train_error_corrupted'])}% and its test error goes from "
                f"{percent(erm['test_error_best'])}% (epoch {erm['best_epoch']}) to "
                f"{percent(erm['test_error_last'])}% at the end"
            )
        if others:
            corrupted = [row["train_error_corrupted"] for row in others]
            last = [row["test_error_last"] for row in others]
            real = [row["corrupted_predicted_real"] for row in others]
            parts.append(
                f"{', '.join(row['label'] for row in others)} end at "
                f"{percent(min(corrupted))}–{percent(max(corrupted))}% on the corrupted labels (they still give "
                f"{percent(min(real))}–{percent(max(real))}% of the corrupted samples their real class) and at "
                f"{percent(min(last))}–{percent(max(last))}% test error"
            )
        sentences.append(f"At {corrupt:.0%} corruption, " + "; ".join(parts) + ".")
    return sentences


def table(report):
    s = report["settings"]
    env = report["environment"]
    lines = [
        f"Memorization of corrupted labels, {s['model']} on the digits ({report['data']['train']:,} train, "
        f"{report['data']['val']:,} test images, 32×32), {s['epochs']} epochs ({env['date']}, {env['cpu']}, "
        f"{env['cores']} cores, {env['device']}). Errors in %; training errors at the last epoch, on the "
        "real labels of the uncorrupted samples and on the corrupted labels of the corrupted ones. Paper: "
        "CIFAR-10, PreAct ResNet-18, 200 epochs, its best hyperparameters (training errors from memory, "
        "unverified).",
        "",
        "| corrupted | method | test error best (epoch) | last | train error real | corrupted "
        "| paper: method | best | last | real | corrupted |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in report["rows"]:
        paper = row["paper"]
        if paper:
            paper_cells = [
                label({"alpha": paper["alpha"], "dropout": paper["dropout"]}),
                f"{paper['best']:.1f}", f"{paper['last']:.1f}", f"{paper['real']:.2f}", f"{paper['corrupted']:.2f}",
            ]
        else:
            paper_cells = ["—"] * 5
        lines.append(
            f"| {row['corrupt']:.0%} | {row['label']} | {percent(row['test_error_best'])} ({row['best_epoch']}) "
            f"| {percent(row['test_error_last'])} | {percent(row['train_error_real_clean'])} "
            f"| {percent(row['train_error_corrupted'])} | " + " | ".join(paper_cells) + " |"
        )
    missing = sorted({row["corrupt"] for row in report["rows"] if row["paper"] is None and row["alpha"]})
    if missing:
        lines += ["", "— : the paper has one mixup row per corruption level, with its best α (8 at 20%, 32 at "
                      "50% and 80%; mixup + dropout α=4, p=0.1 at 20%, α=8, p=0.3 at 50% and 80%)."]
    lines += ["", *reading(report["rows"])]
    others = [f"{level:.0%}" for level in sorted(PAPER) if level not in {round(c, 6) for c in s["corrupt"]}]
    if others:
        lines += ["", f"Not run here: the paper's other corruption levels ({', '.join(others)}); add them with "
                      f"`--corrupt {' '.join(f'{level:g}' for level in sorted(PAPER))}` (about as long per level "
                      "as the runs below)."]
    total = sum(row["seconds"] for row in report["rows"])
    label_seconds = [f"{row['label']} {row['seconds']:.0f} s" for row in report["rows"]]
    cpu = sum(row["cpu_seconds"] for row in report["rows"])
    lines += [
        "",
        f"Settings: `{s['model']}`, train augmentation `{s['augment']}` ({' '.join(AUGMENT_FLAGS[s['augment']])}), "
        f"no flips, batch {s['batch_size']}, SGD with momentum 0.9 at lr {s['lr']:g}, {s['schedule']} schedule"
        + (f" (milestones {s['milestones']})" if s["schedule"] == "step" else "")
        + f", weight decay {s['weight_decay']:g}, seed {s['seed']}, {s['threads']} DALI thread(s), "
        f"OMP_NUM_THREADS={env['omp_num_threads']}. One seed per method. "
        f"Training took {total / 60:.1f} min wall and {cpu / 60:.1f} min CPU in all "
        f"({', '.join(label_seconds)}).",
        "",
        f"What differs from the paper: the data (scikit-learn's handwritten digits, {report['data']['train']:,} "
        f"train and {report['data']['val']:,} test images upsampled from 8×8 to 32×32, 10 classes, against "
        f"CIFAR-10's 50,000 and 10,000), the model (`{s['model']}`, {s['parameters']:,} parameters, against "
        f"PreAct ResNet-18's 11M), the training ({s['epochs']} epochs with train augmentation `{s['augment']}`, "
        "against the paper's 200 CIFAR-10 epochs) and the hyperparameters (one α or p per method and one seed "
        "here; the paper reports the best of a grid per method and corruption level).",
        "",
        f"Command: `{report['command']}`; each method runs `python -m train` as in the JSON's `command`"
        + (" (with `--reuse`, the finished runs of an earlier invocation with the same trainer commands were "
           "evaluated again, not retrained; the times are theirs)." if any(row["reused"] for row in report["rows"])
           else "."),
        "",
        "How the defaults were chosen (pilots, 50% corruption, ERM, resnet8, seed 0):",
        "",
        *[f"- {pilot}" for pilot in PILOTS],
        "",
        "The trainer's `train_error_real` (in the JSON's curves) is over all train samples, corrupted ones "
        "included, against their real labels: a network that memorizes 50% corrupted labels gets ~0.5 there. "
        "The table's \"train error real\" is over the uncorrupted samples only (as the paper's, where ERM "
        "gets 0.26% at 50%), computed from the last checkpoint; its \"corrupted\" column agrees with the "
        "trainer's last `train_error_corrupted`.",
    ]
    return "\n".join(lines) + "\n"


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    levels = sorted({row["corrupt"] for row in report["rows"]})
    fig, axes = plt.subplots(2, len(levels), figsize=(max(8.0, 5.5 * len(levels)), 7.5), squeeze=False, sharex=True)
    for column, corrupt in enumerate(levels):
        for row, curves in zip(report["rows"], report["curves"]):
            if row["corrupt"] != corrupt:
                continue
            style = {"linestyle": "-" if row["alpha"] else "--", "linewidth": 2 if row["kind"] == "erm" else 1.5}
            axes[0][column].plot(curves["epoch"], curves["train_error_corrupted"], label=row["label"], **style)
            axes[1][column].plot(curves["epoch"], curves["test_error"], label=row["label"], **style)
        axes[0][column].set_title(f"{corrupt:.0%} of the train labels corrupted")
        axes[0][column].set_ylabel("train error on the corrupted labels")
        axes[1][column].set_ylabel("test error")
        axes[1][column].set_xlabel("epoch")
        axes[0][column].set_ylim(0, 1.02)
        axes[1][column].set_ylim(0, max(0.05, min(1.0, max(max(c["test_error"]) for c in report["curves"]) * 1.05)))
        for axis in axes[:, column]:
            axis.grid(alpha=0.3)
        axes[0][column].legend(fontsize=8)
    s = report["settings"]
    fig.suptitle(f"Memorization of corrupted labels: {s['model']} on the digits, augmentation {s['augment']},\n"
                 f"{s['epochs']} epochs, {report['environment']['date']} (dashed: no mixup)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def count_images(folder):
    return sum(len(files) for _, _, files in os.walk(folder))


def _parser():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paper.memorization", description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    add = parser.add_argument
    add("--data", default="out/digits", help="the digits, train/ and val/ (made there if missing)")
    add("--corrupt", type=float, nargs="+", default=[0.5], help="share(s) of corrupted train labels (default: 0.5)")
    add("--methods", nargs="+", default=DEFAULT_METHODS,
        help="erm, mixup:ALPHA, either with +dropout:P (dropout needs a PreAct model: resnet8, preact_resnet18, "
             f"wrn28_10) (default: {' '.join(DEFAULT_METHODS)})")
    add("--model", default="resnet8", help="any model the trainer knows (default: resnet8)")
    add("--augment", choices=sorted(AUGMENT_FLAGS), default="none",
        help="train augmentation: none, CIFAR's pad_crop, or the demo's random_resized_crop (default: none)")
    add("--epochs", type=int, default=40)
    add("--batch-size", type=int, default=32)
    add("--lr", type=float, default=0.05)
    add("--schedule", choices=["cosine", "step"], default="cosine")
    add("--milestones", type=int, nargs="*", default=[], help="epochs of the step schedule's /10")
    add("--weight-decay", type=float, default=1e-4)
    add("--seed", type=int, default=0)
    add("--threads", type=int, default=1, help="DALI CPU threads (default: 1)")
    add("--device", choices=["cpu", "gpu"], default="cpu", help="where the trainer runs (default: cpu)")
    add("--runs", default="runs/memorization", help="where the trainer's run folders go")
    add("--results", default="benchmarks/results", help="where the JSON, Markdown and PNG go")
    add("--reuse", action="store_true", help="reuse a finished run folder made by the same command")
    add("--verbose", action="store_true", help="show the trainer's per-epoch log")
    return parser


def parse_args(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        args.methods = [parse_method(text) for text in args.methods]
    except ValueError as err:
        parser.error(f"--methods: {err}")
    require_at_least(parser, args, ("epochs", "batch_size", "threads"))
    require_at_least(parser, args, ("lr", "weight_decay"), minimum=0)
    if any(not 0 < corrupt < 1 for corrupt in args.corrupt):
        parser.error(f"--corrupt must be in (0, 1), got {args.corrupt}")
    if len({method["method"] for method in args.methods}) < len(args.methods) or len(set(args.corrupt)) < len(
            args.corrupt):
        parser.error("--methods and --corrupt must not repeat")
    from train.models import SMALL_MODELS

    if any(method["dropout"] for method in args.methods) and args.model not in SMALL_MODELS:
        parser.error(f"dropout works in the PreAct models ({', '.join(SMALL_MODELS)}), not {args.model}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if not os.path.isdir(args.data):
        from dali_mixup.datasets import write_digits

        write_digits(args.data)
    started = time.perf_counter()
    rows, curves = [], []
    for corrupt in args.corrupt:
        for method in args.methods:
            row, curve = run(args, args.data, method, corrupt)
            rows.append(row)
            curves.append(curve)
    gpu = args.device == "gpu"
    environment = {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "device": torch.cuda.get_device_name() if gpu else "CPU only",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "nice": os.nice(0),
    }
    settings = {key: value for key, value in vars(args).items() if key not in ("methods", "verbose", "reuse")}
    settings["methods"] = [method["method"] for method in args.methods]
    from train.models import create_model

    settings["parameters"] = sum(p.numel() for p in create_model(args.model, 10).parameters())
    report = {
        "benchmark": "memorization (Zhang et al. 2018, section 3.4, Table 2)",
        "command": " ".join(["python", "-m", "benchmarks.paper.memorization", *(argv if argv is not None else sys.argv[1:])]),
        "environment": environment,
        "settings": settings,
        "data": {"train": count_images(os.path.join(args.data, "train")),
                 "val": count_images(os.path.join(args.data, "val"))},
        "seconds": time.perf_counter() - started,
        "rows": rows,
        "curves": curves,
        "paper": {"source": PAPER_SOURCE, "rows": {f"{k:g}": v for k, v in PAPER.items()}},
        "pilots": PILOTS,
    }
    os.makedirs(args.results, exist_ok=True)
    name = os.path.join(args.results, f"{environment['date']}-memorization-{args.device}")
    with open(name + ".json", "w") as f:
        json.dump(report, f, indent=2)
    text = table(report)
    with open(name + ".md", "w") as f:
        f.write(text)
    plot(report, name + ".png")
    print(text)
    print(f"wrote {name}.json, .md and .png")


if __name__ == "__main__":
    main()
