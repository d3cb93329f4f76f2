"""Figure 1b of Zhang et al. (2018): the decision boundary of ERM and of mixup (α = 1) on a 2-D toy problem.

    python -m benchmarks.paper.toy_boundary [--samples 200] [--noise 0.2] [--epochs 100] [--alpha 1]
                                            [--seed 0] [--results benchmarks/results]

The paper's figure shades p(y = 1 | x) of a network trained with ERM and with mixup (α = 1) on
two classes of 2-D points (green: class 0, orange: class 1): ERM switches from one class to the
other abruptly, mixup gradually between the classes. It does not say which data or network
drew the figure; here the data are scikit-learn's two moons and the network and training those of
``benchmarks.paper.tabular`` (two hidden layers of 128 ReLU units, Adam, batches of 16, mixing in
the DALI graph), for ``--epochs`` epochs.

The number beside each panel: the share of the plotted window where 0.1 < p(y = 1 | x) < 0.9,
the width of the transition. Writes DATE-toy-boundary-cpu.png and DATE-toy-boundary-cpu.json
under ``--results``.
"""

import argparse
import datetime
import json
import os
import sys

import numpy as np
import torch
from sklearn.datasets import make_moons

from benchmarks.common import environment
from benchmarks.paper.tabular import evaluate, train

GRID = 200
MARGIN = 0.5
BATCH_SIZE = 16  # the tabular experiment's, the paper's


def probability_map(model, low, high):
    """p(y = 1 | x) of ``model`` on a ``GRID`` x ``GRID`` grid over a window.

    Args:
        model: a two-class classifier returning logits.
        low: the window's lower-left corner ``(x, y)``.
        high: the window's upper-right corner ``(x, y)``.

    Returns:
        ``(xs, ys, p)``: the grid's coordinates and the probabilities, each ``[GRID, GRID]``.
    """
    xs, ys = np.meshgrid(np.linspace(low[0], high[0], GRID), np.linspace(low[1], high[1], GRID))
    points = torch.from_numpy(np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32))
    with torch.no_grad():
        p = torch.softmax(model(points), dim=1)[:, 1].numpy()
    return xs, ys, p.reshape(GRID, GRID)


def plot(features, labels, maps, path):
    """One panel per method: p(y = 1 | x) shaded blue, class 0 green, class 1 orange, as the paper's figure.

    Args:
        features: the training points ``[n, 2]``.
        labels: their classes ``[n]``.
        maps: ``{method: (xs, ys, p, transition share)}``.
        path: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, len(maps), figsize=(4.2 * len(maps), 3.6), squeeze=False)
    for ax, (method, (xs, ys, p, transition)) in zip(axes[0], maps.items()):
        shading = ax.contourf(xs, ys, p, levels=np.linspace(0, 1, 11), cmap="Blues", vmin=0, vmax=1)
        for label, color in ((0, "tab:green"), (1, "tab:orange")):
            chosen = labels == label
            ax.scatter(features[chosen, 0], features[chosen, 1], s=8, color=color, edgecolors="none")
        ax.set_title(f"{method}: 0.1 < p < 0.9 on {transition:.0%}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shading, ax=axes[0].tolist(), label="p(y = 1 | x)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def parse_args(argv):
    """The options, checked; a bad one exits with a message that names it.

    Args:
        argv: the command-line arguments, without the program name.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="points of the two moons, both classes")
    parser.add_argument("--noise", type=float, default=0.2, help="std of the Gaussian noise on the moons")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default="benchmarks/results", help="folder for the PNG and the JSON")
    args = parser.parse_args(argv)
    if args.samples < 4:
        parser.error(f"--samples must be >= 4, got {args.samples}")
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.noise < 0:
        parser.error(f"--noise must be >= 0, got {args.noise}")
    if not args.alpha > 0:
        parser.error(f"--alpha must be > 0, got {args.alpha}")
    return args


def main(argv=None):
    """Run the toy boundary figure and write its results.

    Args:
        argv: the command-line arguments, without the program name (default: ``sys.argv[1:]``).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    torch.set_num_threads(1)  # a 2x128 network: threads would cost more than they give
    features, labels = make_moons(args.samples, noise=args.noise, random_state=args.seed)
    features = features.astype(np.float32)
    low, high = features.min(axis=0) - MARGIN, features.max(axis=0) + MARGIN
    maps, results = {}, {}
    for method, alpha in (("ERM", 0.0), (f"mixup (α = {args.alpha:g})", args.alpha)):
        model = train(features, labels, 2, alpha, args.epochs, BATCH_SIZE, args.seed)
        xs, ys, p = probability_map(model, low, high)
        transition = float(((p > 0.1) & (p < 0.9)).mean())
        maps[method] = (xs, ys, p, transition)
        results[method] = {"alpha": alpha, "train_error": evaluate(model, features, labels)[0],
                           "transition_share": transition}
        print(f"{method}: train error {results[method]['train_error']:.3f}, 0.1 < p < 0.9 on {transition:.1%} "
              "of the window", file=sys.stderr)

    os.makedirs(args.results, exist_ok=True)
    stem = os.path.join(args.results, f"{datetime.date.today().isoformat()}-toy-boundary-cpu")
    plot(features, labels, maps, stem + ".png")
    report = {
        "env": environment(),
        "command": " ".join(["python -m benchmarks.paper.toy_boundary", *argv]),
        "settings": {"data": "sklearn.datasets.make_moons", "samples": args.samples, "noise": args.noise,
                     "epochs": args.epochs, "batch_size": BATCH_SIZE, "hidden": [128, 128], "seed": args.seed,
                     "window": [low.tolist(), high.tolist()]},
        "results": results,
    }
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {stem}.png and {stem}.json", file=sys.stderr)


if __name__ == "__main__":
    main()
