"""Robustness to adversarial examples, Zhang et al. (2018), section 3.5 and Table 3, for trainer runs.

    python -m benchmarks.paper.adversarial RUN [RUN ...] --source SOURCE_RUN [--data DIR] [--eps 4] [--steps 10]
                                     [--batch-size 100] [--threads 2] [--out JSON]

Each RUN is a trainer run folder (config.json and checkpoint.pt). On the run's val set (its dataset
through ``make_loader(split="val")``, with its crop size) every model is evaluated clean and under
FGSM and I-FGSM with an L-infinity budget of ``--eps`` on the 0-255 pixel scale (I-FGSM: ``--steps``
equal steps of eps/steps, each followed by a projection to the eps-ball and to valid pixels):

- white box: each model attacks itself;
- black box: the adversarial examples are made on SOURCE_RUN, an independently trained ERM model,
  and every RUN is evaluated on them (the paper attacks its second ERM model and its mixup model
  with examples made on a first ERM model).

The attack works in pixel space: the loader's normalized images go back to 0-255, the attack
perturbs and clamps there, and the model sees ``(x - mean) / std`` of the result. That is the same
attack as one in normalized space with a per-channel budget of eps/std (the gradient's sign does
not change under a positive per-channel scale), but the valid range is simply [0, 255] rather than
a per-channel interval. The adversarial images are not rounded to integers.

Writes a JSON (environment, command, settings, errors) and a Markdown table beside the paper's
ImageNet numbers under benchmarks/results/, and prints the table. CPU only.
"""

import argparse
import datetime
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import environment
from dali_mixup import make_loader
from pipelines.sources import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD
from train import checkpoint
from train.models import create_model

ATTACKS = ("fgsm", "ifgsm")
# How the trainer made its val images, beyond the dataset and the crop: recorded by newer trainers
# only, so passed on to make_loader only when config.json has them.
VAL_SETTINGS = ("augment", "adjust_orientation")
# Zhang et al. (2018), Table 3: ImageNet-2012 val, ResNet-101 trained with ERM and with mixup
# (alpha = 0.2, as in their Table 1), eps = 4, I-FGSM with 10 equal steps; errors in %.
# Black box: examples made on a first ERM model, tested on a second ERM model and the mixup model.
PAPER = {
    "white_box": {"erm": {"top1": {"fgsm": 90.7, "ifgsm": 99.9}, "top5": {"fgsm": 63.1, "ifgsm": 93.4}},
                  "mixup": {"top1": {"fgsm": 75.2, "ifgsm": 99.6}, "top5": {"fgsm": 49.1, "ifgsm": 95.8}}},
    "black_box": {"erm": {"top1": {"fgsm": 57.0, "ifgsm": 57.3}, "top5": {"fgsm": 24.8, "ifgsm": 18.1}},
                  "mixup": {"top1": {"fgsm": 46.0, "ifgsm": 40.9}, "top5": {"fgsm": 17.5, "ifgsm": 11.8}}},
}


class PixelModel(nn.Module):
    """A classifier that takes 0-255 pixels: it normalizes them as the loader does, then runs ``model``.

    Args:
        model: the trained network, which expects ``(x - mean) / std``.
        mean: per-channel mean on the 0-255 scale (3 values).
        std: per-channel standard deviation on the 0-255 scale (3 values).
    """

    def __init__(self, model, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, pixels):
        return self.model((pixels - self.mean) / self.std)

    def to_pixels(self, images):
        """The loader's normalized images back on the 0-255 scale."""
        return images * self.std + self.mean


def ifgsm(model, pixels, labels, eps, steps):
    """Iterative FGSM (Kurakin et al., 2017): ``steps`` signed-gradient steps of ``eps / steps``.

    After each step the images are projected to the L-infinity ball of radius ``eps`` around
    ``pixels`` and to [0, 255]. Costs ``steps`` forward and backward passes.

    Args:
        model: a :class:`PixelModel` (or any module on 0-255 pixels) in eval mode.
        pixels: float ``[B, C, H, W]`` clean images on the 0-255 scale.
        labels: int64 ``[B]`` true classes; the attack raises their cross-entropy.
        eps: the budget per pixel, on the 0-255 scale.
        steps: the number of steps; 1 is FGSM.

    Returns:
        The adversarial images, detached, the shape of ``pixels``.
    """
    step = eps / steps
    adversarial = pixels.detach()
    for _ in range(steps):
        adversarial.requires_grad_(True)
        loss = F.cross_entropy(model(adversarial), labels)
        (grad,) = torch.autograd.grad(loss, adversarial)
        adversarial = adversarial.detach() + step * grad.sign()
        # Steps of eps / steps cannot leave the ball but by rounding; the projection makes the bound exact.
        adversarial = torch.min(torch.max(adversarial, pixels - eps), pixels + eps).clamp(0, 255)
    return adversarial


def fgsm(model, pixels, labels, eps):
    """FGSM (Goodfellow et al., 2015): one step of ``eps`` along the sign of the loss gradient, clamped to [0, 255].

    Args:
        model: a module on 0-255 pixels, in eval mode.
        pixels: float ``[B, C, H, W]`` clean images on the 0-255 scale.
        labels: int64 ``[B]`` true classes.
        eps: the budget per pixel, on the 0-255 scale.
    """
    return ifgsm(model, pixels, labels, eps, steps=1)


@torch.no_grad()
def error_counts(model, pixels, labels):
    """``[top-1 errors, top-5 errors]`` on a batch, as a tensor; top-k with k = min(5, classes).

    Args:
        model: a module on 0-255 pixels, in eval mode.
        pixels: float ``[B, C, H, W]`` images on the 0-255 scale.
        labels: int64 ``[B]`` true classes.
    """
    logits = model(pixels)
    hits = logits.topk(min(5, logits.shape[1]), dim=1).indices == labels[:, None]
    return torch.stack([(~hits[:, 0]).sum(), (~hits.any(1)).sum()])


def evaluate(models, source, loader, eps, steps):
    """Error rates of every model, clean and under white- and black-box FGSM and I-FGSM.

    Args:
        models: :class:`PixelModel` s in eval mode, the models under test.
        source: the :class:`PixelModel` that makes the black-box examples.
        loader: batches of normalized images and int64 labels (the val loader).
        eps: the budget per pixel, on the 0-255 scale.
        steps: I-FGSM steps.

    Returns:
        ``(results, source_results, samples)``: for each model ``{"clean": {"top1", "top5"},
        "white_box": {attack: {...}}, "black_box": {attack: {...}}}`` (fractions); for the source,
        its clean errors and those of its own examples (``"white_box"``); the number of images.
    """
    # Rows: clean, white FGSM, white I-FGSM, black FGSM, black I-FGSM; columns: top-1, top-5.
    counts = [torch.zeros(5, 2, dtype=torch.long) for _ in models]
    source_counts = torch.zeros(3, 2, dtype=torch.long)
    samples = 0
    for images, labels in loader:
        pixels = source.to_pixels(images)  # every model shares the loader's normalization
        black = [fgsm(source, pixels, labels, eps), ifgsm(source, pixels, labels, eps, steps)]
        source_counts += torch.stack([error_counts(source, x, labels) for x in [pixels, *black]])
        for model, count in zip(models, counts):
            white = [fgsm(model, pixels, labels, eps), ifgsm(model, pixels, labels, eps, steps)]
            count += torch.stack([error_counts(model, x, labels) for x in [pixels, *white, *black]])
        samples += len(labels)
    if samples == 0:
        raise SystemExit("the val loader gave no images")

    def rates(row):
        return {"top1": row[0].item() / samples, "top5": row[1].item() / samples}

    results = [{"clean": rates(count[0]), "white_box": dict(zip(ATTACKS, map(rates, count[1:3]))),
                "black_box": dict(zip(ATTACKS, map(rates, count[3:5])))} for count in counts]
    source_results = {"clean": rates(source_counts[0]),
                      "white_box": dict(zip(ATTACKS, map(rates, source_counts[1:])))}
    return results, source_results, samples


def read_config(run):
    """The run's config.json as a dict.

    Args:
        run: a trainer run folder; exits naming it when config.json or checkpoint.pt is missing, or
            config.json is not JSON or lacks the model, the dataset, the data or the crop size.
    """
    for name in ("config.json", "checkpoint.pt"):
        if not os.path.isfile(os.path.join(run, name)):
            raise SystemExit(f"{run}: no {name}; a RUN is a trainer run folder (config.json and checkpoint.pt)")
    path = os.path.join(run, "config.json")
    try:
        with open(path) as f:
            config = json.load(f)
    except json.JSONDecodeError as err:
        raise SystemExit(f"{path}: not JSON ({err})") from None
    missing = [key for key in ("model", "dataset", "data", "crop_size") if key not in config]
    if missing:
        raise SystemExit(f"{path}: no {', '.join(missing)}")
    return config


def load_model(run, config, num_classes, mean, std):
    """The run's network rebuilt from its config and checkpoint, on pixels, in eval mode, without weight gradients.

    Args:
        run: the run folder.
        config: its config.json.
        num_classes: outputs (from the val data).
        mean, std: the loader's normalization, on the 0-255 scale.
    """
    model = create_model(config["model"], num_classes, config.get("dropout", 0.0))
    try:
        model.load_state_dict(checkpoint.load(os.path.join(run, "checkpoint.pt"))["model"])
    except (RuntimeError, KeyError) as err:
        raise SystemExit(
            f"{run}: checkpoint.pt does not fit {config['model']} with {num_classes} classes: {err}"
        ) from None
    # The attacks need gradients with respect to the images only; frozen weights skip their gradients.
    return PixelModel(model, mean, std).eval().requires_grad_(False)


def val_source(dataset, data):
    """make_loader's dataset arguments for the val split, laid out as the trainer expects ``--data``.

    Args:
        dataset: the trainer's ``--dataset``.
        data: the trainer's ``--data``: the folder with train/ and val/ (or train.txt and val.txt), or
            the CIFAR root.
    """
    if dataset in ("cifar10", "cifar100"):
        return {"dataset": dataset, "root": data}
    if dataset == "filelist":
        return {"dataset": dataset, "root": data, "file_list": os.path.join(data, "val.txt")}
    return {"dataset": dataset, "root": os.path.join(data, "val")}


def check_same_data(runs, configs, data_given):
    """Exit naming the first run whose val images would differ from the source's.

    Args:
        runs: the source's folder, then the runs'.
        configs: their config.json, in the same order.
        data_given: ``--data`` overrides every run's data root, so the roots need not agree.
    """
    keys = ("dataset", "crop_size", *VAL_SETTINGS) + (() if data_given else ("data",))
    for run, config in zip(runs[1:], configs[1:]):
        for key in keys:
            if config.get(key) != configs[0].get(key):
                raise SystemExit(f"{run}: {key} is {config.get(key)!r}, but the source {runs[0]} has "
                                 f"{configs[0].get(key)!r}; the black-box examples need the same val images")


def _describe(config):
    method = "ERM" if not config.get("mixup_alpha") else f"mixup α={config['mixup_alpha']:g}"
    return f"{method}, seed {config.get('seed', '?')}, {config.get('epochs', '?')} epochs"


def _name(run):
    return os.path.basename(os.path.normpath(run))


def _percent(value):
    return f"{100 * value:.1f}"


def markdown(report):
    """Table 3 of the paper, our numbers beside theirs: white box, then black box, errors in %.

    Args:
        report: the record of :func:`build_report`.
    """
    settings = report["settings"]
    lines = [
        f"Adversarial examples, {settings['models']} on {settings['dataset']} ({settings['data']}, "
        f"{settings['samples']} val images, {settings['crop_size']}×{settings['crop_size']}); "
        f"ε = {settings['eps']:g} on the 0–255 scale, "
        f"I-FGSM {settings['steps']} steps of {settings['step_size']:g}, "
        f"in pixel space ({report['environment']['date']}, {report['environment']['cpu']}, "
        f"{report['environment']['cores']} cores, CPU). Errors in %. Paper: Zhang et al. (2018), Table 3, "
        "ImageNet-2012 val, ResNet-101, ERM and mixup α = 0.2; it gives no clean column.",
    ]
    source = report["source"]
    titles = {
        "white_box": "White box (each model attacks itself):",
        "black_box": f"Black box (examples made on {_name(source['run'])}, {source['training']}; its own top-1 "
                     f"errors: clean {_percent(source['clean']['top1'])}, "
                     f"FGSM {_percent(source['white_box']['fgsm']['top1'])}, "
                     f"I-FGSM {_percent(source['white_box']['ifgsm']['top1'])}):",
    }
    for box, title in titles.items():
        lines += ["", title, "", "| metric | run | training | clean | FGSM | I-FGSM | paper FGSM | paper I-FGSM |",
                  "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for metric in ("top1", "top5"):
            for row in report["runs"]:
                paper = PAPER[box]["mixup" if row["mixup_alpha"] else "erm"][metric]
                ours = row["errors"][box]
                lines.append(
                    f"| {metric.replace('top', 'top-')} | {_name(row['run'])} | {row['training']} | "
                    f"{_percent(row['errors']['clean'][metric])} | {_percent(ours['fgsm'][metric])} | "
                    f"{_percent(ours['ifgsm'][metric])} | {paper['fgsm']:.1f} | {paper['ifgsm']:.1f} |"
                )
    return "\n".join(lines) + "\n"


def _positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names it in "invalid float value: 'x'"
    return parse


def parse_args(argv):
    """The command line (``sys.argv[1:]`` when ``argv`` is None); a bad option exits naming it."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paper.adversarial", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN", help="trainer run folders (config.json, checkpoint.pt)")
    parser.add_argument("--source", required=True, help="run folder of an independently trained ERM model, "
                        "which makes the black-box examples")
    parser.add_argument("--data", help="the dataset root, as the trainer's --data (default: each run's config)")
    parser.add_argument("--eps", type=_positive(float), default=4.0,
                        help="L-inf budget on the 0-255 scale (default: 4)")
    parser.add_argument("--steps", type=_positive(int), default=10, help="I-FGSM steps of eps/steps (default: 10)")
    parser.add_argument("--batch-size", type=_positive(int), default=100)
    parser.add_argument("--threads", type=_positive(int), default=2, help="DALI CPU threads (default: 2)")
    parser.add_argument("--out", help="the JSON (default: benchmarks/results/DATE-adversarial-cpu.json); "
                        "the Markdown table goes beside it")
    args = parser.parse_args(argv)
    if args.data is not None and not os.path.isdir(args.data):
        parser.error(f"argument --data: {args.data!r} is not a folder")
    return args


def build_report(*, command, source, runs, configs, data, eps, steps, batch_size, num_classes, evaluated, seconds):
    """The JSON record: environment, command, settings, the source's and every run's errors, the paper's.

    Args:
        command: the command line, as a list.
        source: the source run folder.
        runs: the run folders under test.
        configs: the source's config, then each run's.
        data: the dataset root used.
        eps, steps, batch_size: the settings.
        num_classes: classes in the val data.
        evaluated: what :func:`evaluate` returned.
        seconds: the evaluation's wall time.
    """
    results, source_results, samples = evaluated
    return {
        "benchmark": "adversarial",
        "command": command,
        "environment": environment(),
        "settings": {
            "eps": eps, "steps": steps, "step_size": eps / steps, "space": "pixels 0-255",
            "dataset": configs[0]["dataset"], "data": data, "crop_size": configs[0]["crop_size"], "samples": samples,
            "num_classes": num_classes, "batch_size": batch_size, "device": "cpu",
            "torch_threads": torch.get_num_threads(),
            "models": ", ".join(sorted({config["model"] for config in configs})), "seconds": round(seconds, 1),
        },
        "source": {"run": source, "training": _describe(configs[0]), **source_results},
        "runs": [{"run": run, "training": _describe(config), "model": config["model"],
                  "mixup_alpha": config.get("mixup_alpha", 0.0), "seed": config.get("seed"),
                  "epochs": config.get("epochs"), "errors": errors}
                 for run, config, errors in zip(runs, configs[1:], results)],
        "paper": PAPER,
    }


def main(argv=None):
    args = parse_args(argv)
    runs = [args.source, *args.runs]
    configs = [read_config(run) for run in runs]
    check_same_data(runs, configs, args.data is not None)
    dataset, data = configs[0]["dataset"], args.data or configs[0]["data"]
    mean, std = (CIFAR_MEAN, CIFAR_STD) if dataset in ("cifar10", "cifar100") else (IMAGENET_MEAN, IMAGENET_STD)
    val_settings = {key: configs[0][key] for key in VAL_SETTINGS if key in configs[0]}
    loader = make_loader(**val_source(dataset, data), **val_settings, split="val", batch_size=args.batch_size,
                         device="cpu", crop_size=configs[0]["crop_size"], num_threads=args.threads)
    source, *models = [load_model(run, config, loader.num_classes, mean, std) for run, config in zip(runs, configs)]

    start = time.perf_counter()
    evaluated = evaluate(models, source, loader, args.eps, args.steps)
    report = build_report(
        command=["python", "-m", "benchmarks.paper.adversarial", *(sys.argv[1:] if argv is None else argv)],
        source=args.source, runs=args.runs, configs=configs, data=data, eps=args.eps, steps=args.steps,
        batch_size=args.batch_size, num_classes=loader.num_classes, evaluated=evaluated,
        seconds=time.perf_counter() - start,
    )

    out = args.out or os.path.join("benchmarks", "results", f"{datetime.date.today().isoformat()}-adversarial-cpu.json")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    table = markdown(report)
    with open(os.path.splitext(out)[0] + ".md", "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
