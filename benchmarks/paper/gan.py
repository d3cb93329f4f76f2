"""The GAN experiment of Zhang et al. (2018), section 3.7 and Figure 5: mixup stabilizes GAN training.

    python -m benchmarks.paper.gan [--datasets ring grid] [--iterations 20000]
                                   [--snapshots 10 100 1000 10000 20000] [--alpha 0.2] [--hidden 512]
                                   [--seed 0] [--threads 1] [--results benchmarks/results]

The paper: the mixup GAN trains the discriminator on ``ℓ(d(λx + (1−λ)g(z)), λ)`` with
λ ~ Beta(α, α) instead of ``ℓ(d(x), 1) + ℓ(d(g(z)), 0)``, in the game ``max_g min_d``; ℓ is the
binary cross-entropy. Generator and discriminator are fully connected with three hidden layers of
512 ReLU units, the generator takes 2-D Gaussian noise, and both train for 20,000 mini-batches of
128 with Adam at its default settings, the discriminator five steps before each generator step.
Figure 5 shows the samples after 10, 100, 1,000, 10,000 and 20,000 iterations, ERM against mixup
(α = 0.2), on two toy sets.

The authors' code (hongyi-zhang/mixup, gan/example_gan.py) settles what the text leaves open, and
this module follows it: the sets are 8 Gaussians on the unit circle ("ring") and 25 on a 5x5 grid
over [-1, 1]² ("grid"), each of std 0.01; Adam with torch's defaults (lr 1e-3, betas 0.9 and
0.999) for both networks; BCE on logits; the generator maximizes the discriminator's loss (the
minimax game, not the non-saturating variant) on real and fake points unblended, for both
methods: mixup changes only what the discriminator learns; the plotted samples come from 1,000
fixed noise vectors.

What differs:

- that code draws λ ~ U(0, α) and blends two shuffled batches of real and fake points, labels
  blended alike. Here the blend is the paper's formula: each real point with one fake point, one
  λ ~ Beta(α, α) per pair, target λ. (Read literally, ``max_g`` of the blended loss would also
  train the generator on blends; a pilot run that did so (ring, 128 units) diverged, the
  generated points drifting ever farther, to a median distance of 1,700 from the modes after
  6,000 iterations: any logit far from λ raises that loss, so the generator gains by going
  wherever the discriminator extrapolates wildly. The authors' code does not do it either.)
- a CPU has far less throughput than the authors' GPU: ``--hidden`` and ``--iterations`` trade the
  network's width and the training length for time (the JSON records both).

Per snapshot, on the 1,000 plotted samples: ``high_quality``, the share of generated points within
3 std of their nearest mode, ``modes``, how many modes hold at least a quarter of a uniform share
of those points, and ``median_distance``, from a generated point to its nearest mode.

Writes DATE-gan-cpu.png (rows: data set x method, columns: snapshots; real points blue, generated
orange), DATE-gan-cpu.json and a Markdown table, DATE-gan-cpu.md, under ``--results``, and prints
the table.
"""

import argparse
import datetime
import json
import math
import os
import sys
import time

import numpy as np
import torch
from torch.nn.functional import binary_cross_entropy_with_logits as bce

from benchmarks.common import environment, require_at_least

STD = 0.01
LATENT = 2
PLOTTED = 1000
PAPER_SNAPSHOTS = [10, 100, 1000, 10000, 20000]


def ring_means(count=8):
    """``count`` modes evenly spaced on the unit circle, float32 ``[count, 2]``.

    Args:
        count: number of modes.
    """
    angles = 2 * math.pi * np.arange(count) / count
    return np.stack([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


def grid_means(side=5):
    """``side`` x ``side`` modes on a regular grid over [-1, 1]², float32 ``[side², 2]``.

    Args:
        side: modes per row.
    """
    coordinates = np.linspace(-1, 1, side)
    return np.stack(np.meshgrid(coordinates, coordinates), axis=-1).reshape(-1, 2).astype(np.float32)


MEANS = {"ring": ring_means, "grid": grid_means}


def sample_real(means, count, rng):
    """``count`` points of the Gaussian mixture: a uniformly chosen mode plus N(0, STD²) noise.

    Args:
        means: modes, ``[k, 2]``.
        count: number of points.
        rng: a ``numpy.random.Generator``.
    """
    points = means[rng.integers(len(means), size=count)] + STD * rng.standard_normal((count, 2))
    return torch.from_numpy(points.astype(np.float32))


def noise(count, rng):
    """``count`` 2-D standard Gaussian noise vectors, the generator's input.

    Args:
        count: number of vectors.
        rng: a ``numpy.random.Generator``.
    """
    return torch.from_numpy(rng.standard_normal((count, LATENT)).astype(np.float32))


def mlp(in_features, out_features, hidden):
    """Three hidden layers of ``hidden`` ReLU units, as both of the paper's networks.

    Args:
        in_features: input size.
        out_features: output size.
        hidden: units per hidden layer (512 in the paper).
    """
    sizes = [in_features, hidden, hidden, hidden]
    layers = []
    for size_in, size_out in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(size_in, size_out), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(hidden, out_features))


def erm_discriminator_loss(d, real, fake):
    """The standard GAN objective ``ℓ(d(x), 1) + ℓ(d(g(z)), 0)``, halved.

    Halved, it is the mean BCE over one batch of the real and the fake points, as the authors'
    code computes it (one pass of the discriminator instead of two).

    Args:
        d: the discriminator, points ``[B, 2]`` to logits ``[B, 1]``.
        real: real points ``[B, 2]``.
        fake: generated points ``[B, 2]``.
    """
    targets = torch.cat([torch.ones(len(real), 1), torch.zeros(len(fake), 1)])
    return bce(d(torch.cat([real, fake])), targets)


def mixup_gan_discriminator_loss(d, real, fake, lam):
    """The mixup GAN objective ``ℓ(d(λx + (1−λ)g(z)), λ)``: BCE of the blend against the soft target λ.

    Args:
        d: the discriminator, points ``[B, 2]`` to logits ``[B, 1]``.
        real: real points ``[B, 2]``.
        fake: generated points ``[B, 2]``, blended pairwise with ``real``.
        lam: λ, ``[B, 1]`` (one per pair): the weight of the real point and the target.
    """
    return bce(d(lam * real + (1 - lam) * fake), lam)


def mixup_objective(alpha, rng):
    """``mixup_gan_discriminator_loss`` with a fresh λ ~ Beta(alpha, alpha) per pair at each call.

    Args:
        alpha: the Beta concentration.
        rng: the ``numpy.random.Generator`` that draws λ.

    Returns:
        A loss ``(d, real, fake) -> scalar`` for ``train_gan``.
    """
    def loss(d, real, fake):
        lam = torch.from_numpy(rng.beta(alpha, alpha, size=(len(real), 1)).astype(np.float32))
        return mixup_gan_discriminator_loss(d, real, fake, lam)

    return loss


def _step(optimizer, loss):
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def train_gan(means, discriminator_loss, iterations, snapshots, hidden, batch_size, d_steps, seed):
    """Train a GAN on a Gaussian mixture.

    The discriminator minimizes ``discriminator_loss``; the generator maximizes the standard
    objective, ``erm_discriminator_loss``, whichever the discriminator's.

    Args:
        means: modes of the mixture, ``[k, 2]``.
        discriminator_loss: ``(d, real, fake) -> scalar``: ``erm_discriminator_loss`` or a
            ``mixup_objective``.
        iterations: generator steps.
        snapshots: generator steps after which to draw the plotted samples.
        hidden: units per hidden layer of both networks.
        batch_size: real and fake points per step.
        d_steps: discriminator steps before each generator step.
        seed: seed of the weights, the real points and the noise (λ has its own generator).

    Returns:
        ``{iteration: generated points, float32 [PLOTTED, 2]}`` for each snapshot.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    d, g = mlp(2, 1, hidden), mlp(LATENT, 2, hidden)
    optimizer_d, optimizer_g = torch.optim.Adam(d.parameters()), torch.optim.Adam(g.parameters())
    fixed_noise = noise(PLOTTED, rng)
    samples = {}
    for iteration in range(1, iterations + 1):
        for _ in range(d_steps):
            with torch.no_grad():  # the generator is fixed during the discriminator's steps
                fake = g(noise(batch_size, rng))
            _step(optimizer_d, discriminator_loss(d, sample_real(means, batch_size, rng), fake))
        d.requires_grad_(False)  # spares the discriminator's weight gradients, which the generator's step ignores
        _step(optimizer_g, -erm_discriminator_loss(d, sample_real(means, batch_size, rng), g(noise(batch_size, rng))))
        d.requires_grad_(True)
        if iteration in snapshots:
            with torch.no_grad():
                samples[iteration] = g(fixed_noise).numpy()
    return samples


def mode_coverage(points, means):
    """How well generated points cover a Gaussian mixture's modes.

    Args:
        points: generated points ``[n, 2]``.
        means: the modes ``[k, 2]`` (each of std ``STD``).

    Returns:
        ``{"high_quality": share of points within 3 std of their nearest mode, "modes": modes
        holding at least n / (4k) of those points, "of": k, "median_distance": median distance
        of a point to its nearest mode}``. The last one tells a generator that gathers near the
        modes but not within 3 std from one that drifts away.
    """
    distances = np.linalg.norm(points[:, None, :] - means[None, :, :], axis=2)
    nearest = distances.min(axis=1)
    close = nearest <= 3 * STD
    counts = np.bincount(distances.argmin(axis=1)[close], minlength=len(means))
    return {"high_quality": float(close.mean()), "modes": int((counts >= len(points) / (4 * len(means))).sum()),
            "of": len(means), "median_distance": float(np.median(nearest))}


def plot(real, runs, path):
    """Figure 5's layout: a row per (data set, method), a column per snapshot.

    Args:
        real: ``{data set: real points [n, 2]}``.
        runs: ``{(data set, method): {iteration: generated points [n, 2]}}``.
        path: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    iterations = sorted(next(iter(runs.values())))
    fig, axes = plt.subplots(len(runs), len(iterations), figsize=(1.9 * len(iterations), 1.9 * len(runs)),
                             squeeze=False)
    for row, ((dataset, method), samples) in zip(axes, runs.items()):
        for ax, iteration in zip(row, iterations):
            ax.plot(real[dataset][:, 0], real[dataset][:, 1], ".", markersize=2, color="tab:blue")
            ax.plot(samples[iteration][:, 0], samples[iteration][:, 1], ".", markersize=2, alpha=0.3,
                    color="tab:orange")
            # The same window for every panel, so that a spreading or drifting generator shows.
            ax.set_xlim(-1.6, 1.6)
            ax.set_ylim(-1.6, 1.6)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_aspect("equal")
        row[0].set_ylabel(f"{dataset}\n{method}")
    for ax, iteration in zip(axes[0], iterations):
        ax.set_title(f"iteration {iteration:,}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(report):
    """Mode coverage per snapshot, one row per (data set, method), in Markdown.

    Args:
        report: the dict written to the JSON.
    """
    settings, env = report["settings"], report["env"]
    iterations = settings["snapshots"]
    lines = [
        f"Modes covered, share of generated points within 3 std ({3 * STD:g}) of a mode, and their median "
        f"distance to the nearest mode, {PLOTTED} samples per snapshot; "
        f"MLPs 3x{settings['hidden'][0]} ReLU, batches of {settings['batch_size']}, {settings['d_steps']} "
        f"discriminator steps per generator step, Adam ({env['date']}, {env['cpu']}, {settings['threads']} thread):",
        "",
        "| data set, method | " + " | ".join(f"iteration {it:,}" for it in iterations) + " |",
        "| --- | " + " | ".join("---:" for _ in iterations) + " |",
    ]
    for run, measures in report["measures"].items():
        cells = [f"{m['modes']}/{m['of']}, {m['high_quality']:.0%}, {m['median_distance']:.2g}"
                 for m in (measures[str(it)] for it in iterations)]
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv):
    """The options, checked; a bad one exits with a message that names it.

    Args:
        argv: the command-line arguments, without the program name.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=list(MEANS), default=list(MEANS))
    parser.add_argument("--iterations", type=int, default=20000, help="generator steps")
    parser.add_argument("--snapshots", type=int, nargs="+", default=PAPER_SNAPSHOTS,
                        help="iterations to plot; those past --iterations are dropped and the last one is added")
    parser.add_argument("--alpha", type=float, default=0.2, help="λ ~ Beta(α, α) of the mixup GAN")
    parser.add_argument("--hidden", type=int, default=512, help="units per hidden layer of both networks")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--d-steps", type=int, default=5, help="discriminator steps per generator step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; more lose to synchronization on a small, busy CPU")
    parser.add_argument("--results", default="benchmarks/results", help="folder for the PNG, the JSON and the table")
    args = parser.parse_args(argv)
    require_at_least(parser, args, ("iterations", "hidden", "batch_size", "d_steps", "threads"))
    if not args.alpha > 0:
        parser.error(f"--alpha must be > 0, got {args.alpha}")
    if min(args.snapshots) < 1:
        parser.error(f"--snapshots must be >= 1, got {args.snapshots}")
    return args


def main(argv=None):
    """Run the GAN experiment and write its results.

    Args:
        argv: the command-line arguments, without the program name (default: ``sys.argv[1:]``).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    snapshots = sorted({s for s in args.snapshots if s <= args.iterations} | {args.iterations})
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    real, runs, measures, seconds = {}, {}, {}, {}
    for dataset in args.datasets:
        means = MEANS[dataset]()
        real[dataset] = sample_real(means, PLOTTED, np.random.default_rng(args.seed)).numpy()
        objectives = {
            "ERM GAN": erm_discriminator_loss,
            f"mixup GAN (α = {args.alpha:g})": mixup_objective(args.alpha, np.random.default_rng([args.seed, 1])),
        }
        for method, loss in objectives.items():
            began = time.perf_counter()
            runs[dataset, method] = train_gan(means, loss, args.iterations, snapshots, args.hidden, args.batch_size,
                                              args.d_steps, args.seed)
            seconds[f"{dataset}, {method}"] = round(time.perf_counter() - began, 1)
            measures[f"{dataset}, {method}"] = {str(it): mode_coverage(points, means)
                                                for it, points in runs[dataset, method].items()}
            last = measures[f"{dataset}, {method}"][str(args.iterations)]
            print(f"{dataset}, {method}: {seconds[f'{dataset}, {method}']:.0f} s; at {args.iterations}: "
                  f"{last['modes']}/{last['of']} modes, {last['high_quality']:.0%} within 3 std", file=sys.stderr)

    os.makedirs(args.results, exist_ok=True)
    stem = os.path.join(args.results, f"{datetime.date.today().isoformat()}-gan-cpu")
    plot(real, runs, stem + ".png")
    report = {
        "env": environment(),
        "command": " ".join(["python -m benchmarks.paper.gan", *argv]),
        "wall_s": round(time.perf_counter() - start, 1),
        "run_s": seconds,
        "settings": {"datasets": args.datasets, "iterations": args.iterations, "snapshots": snapshots,
                     "alpha": args.alpha, "hidden": [args.hidden] * 3, "latent": LATENT,
                     "batch_size": args.batch_size, "d_steps": args.d_steps, "seed": args.seed, "threads": args.threads,
                     "mode_std": STD,
                     "optimizer": "Adam (torch defaults: lr 1e-3, betas 0.9, 0.999)",
                     "generator_objective": "maximize the standard (ERM) discriminator loss, unblended (minimax)",
                     "plotted_samples": PLOTTED, "paper": {"hidden": [512] * 3, "iterations": 20000,
                                                           "snapshots": PAPER_SNAPSHOTS, "alpha": 0.2}},
        "measures": measures,
    }
    table = markdown(report)
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=2)
    with open(stem + ".md", "w") as f:
        f.write(table + "\n")
    print(table)
    print(f"{report['wall_s']:.0f} s; wrote {stem}.png, {stem}.json and {stem}.md", file=sys.stderr)


if __name__ == "__main__":
    main()
