"""The memorization experiment of Zhang et al. (2018), section 3.4, on the demo digits.

    python -m benchmarks.memorization [--data DIR] [--model resnet8] [--epochs 40] [--corrupt 0.5]
                                      [--alphas 0 8 32]

Half the train labels are replaced by other classes (fixed by the seed); each run trains the model
with the trainer and reports the test error and the training error on the corrupted labels (how
much of the noise the network memorized) and on the real ones. In the paper ERM memorizes the
noise and mixup resists it; that takes a model with the capacity to memorize (e.g.
``--model preact_resnet18 --epochs 200``, a GPU job). Writes a JSON and a Markdown table under
benchmarks/results/.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys

import torch

from benchmarks.common import cpu_model
from dali_mixup.datasets import write_digits


def run(data, out, model, alpha, epochs, corrupt, seed):
    subprocess.run(
        [sys.executable, "-m", "train", "--recipe", "demo", "--data", data, "--out", out, "--model", model,
         "--epochs", str(epochs),
         "--mixup-alpha", str(alpha), "--corrupt-labels", str(corrupt), "--seed", str(seed)],
        check=True,
    )
    with open(os.path.join(out, "metrics.jsonl")) as f:
        last = [json.loads(line) for line in f][-1]
    return {
        "alpha": alpha,
        "test_error": 1 - last["val_top1"],
        "train_error_corrupted": last["train_error_corrupted"],
        "train_error_real": last["train_error_real"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="out/digits", help="the digits (made there if missing)")
    parser.add_argument("--model", default="resnet8", help="any model the trainer knows (--model of python -m train)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--corrupt", type=float, default=0.5, help="fraction of corrupted train labels")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 8.0, 32.0], help="0 is ERM")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default="benchmarks/results")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.data):
        write_digits(args.data)

    stamp = datetime.date.today().isoformat()
    rows = [run(args.data, f"runs/memorization/{args.model}-alpha{alpha:g}", args.model, alpha, args.epochs,
                args.corrupt, args.seed)
            for alpha in args.alphas]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else cpu_model()
    table = [
        f"Memorization, {args.model} on the digits, {args.corrupt:.0%} of train labels corrupted, {args.epochs} epochs "
        f"({stamp}, {device}, {os.cpu_count()} cores):",
        "",
        "| method | test error | train error on corrupted labels | train error on real labels |",
        "| --- | --- | --- | --- |",
    ] + [
        f"| {'ERM' if row['alpha'] == 0 else 'mixup α=' + format(row['alpha'], 'g')} | {row['test_error']:.3f} | "
        f"{row['train_error_corrupted']:.3f} | {row['train_error_real']:.3f} |"
        for row in rows
    ]
    os.makedirs(args.results, exist_ok=True)
    name = os.path.join(args.results, f"{stamp}-memorization-{'gpu' if torch.cuda.is_available() else 'cpu'}")
    with open(name + ".json", "w") as f:
        json.dump({"model": args.model, "epochs": args.epochs, "corrupt": args.corrupt, "device": device, "rows": rows},
                  f, indent=2)
    with open(name + ".md", "w") as f:
        f.write("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
