"""Training curves of trainer runs: train loss and val error per epoch, several runs on one figure.

    python -m train.plot RUN [RUN ...] --out curves.png [--labels LABEL ...] [--title TITLE]

Two panels, as the paper's Figure 3b (ERM against mixup): the train loss, and the val error
(1 - val_top1), both against the epoch, from each run's metrics.jsonl. Needs matplotlib.
"""

import argparse
import importlib.util
import json
import os

REQUIRED = ("epoch", "train_loss", "val_top1")


class MetricsError(ValueError):
    """A run's metrics.jsonl is missing or malformed; the message names the file (and line)."""


def read_metrics(run):
    """The epochs logged in ``run/metrics.jsonl``, in file order.

    Args:
        run: a trainer run folder.

    Returns:
        A list of dicts, one per line, each with at least ``epoch``, ``train_loss`` and ``val_top1``.

    Raises:
        MetricsError: naming the run folder for a missing or empty file, and the file and line for a
            line that is not a JSON object with numeric ``epoch``, ``train_loss`` and ``val_top1``.
    """
    path = os.path.join(run, "metrics.jsonl")
    if not os.path.isfile(path):
        raise MetricsError(f"{run}: no metrics.jsonl (is it a trainer run folder?)")
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise MetricsError(f"{path}, line {number}: not JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise MetricsError(f"{path}, line {number}: not a JSON object")
            for key in REQUIRED:
                value = row.get(key)
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise MetricsError(f"{path}, line {number}: {key!r} must be a number, got {value!r}")
            rows.append(row)
    if not rows:
        raise MetricsError(f"{run}: metrics.jsonl has no epochs yet")
    return rows


def default_label(run):
    """The run folder's name, with ERM or mixup's alpha from its config.json when that is readable."""
    name = os.path.basename(os.path.normpath(run))
    try:
        with open(os.path.join(run, "config.json")) as f:
            alpha = json.load(f)["mixup_alpha"]
    except (OSError, ValueError, KeyError, TypeError):
        return name
    return f"{name} (ERM)" if not alpha else f"{name} (mixup α={alpha:g})"


def draw(curves, labels, title=None):
    """A figure with two panels, train loss and val error against the epoch, one line per run.

    Args:
        curves: per run, the rows of :func:`read_metrics`.
        labels: per run, its legend entry.
        title: an optional figure title.

    Returns:
        A matplotlib ``Figure`` (10 x 4 inches), not tied to any GUI backend.
    """
    from matplotlib.figure import Figure  # the object API: no pyplot, no global backend state
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axes, error_axes = figure.subplots(1, 2)
    for rows, label in zip(curves, labels):
        epochs = [row["epoch"] for row in rows]
        loss_axes.plot(epochs, [row["train_loss"] for row in rows], label=label)
        error_axes.plot(epochs, [1 - row["val_top1"] for row in rows], label=label)
    for axes, name in ((loss_axes, "train loss"), (error_axes, "val error (1 - top-1)")):
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(name)
        axes.grid(alpha=0.3)
        axes.legend()
    if title:
        figure.suptitle(title)
    return figure


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m train.plot", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN", help="trainer run folders (each with metrics.jsonl)")
    parser.add_argument("--out", required=True, help="the image to write (PNG, or any format matplotlib knows)")
    parser.add_argument("--labels", nargs="+", help="one legend entry per RUN (default: folder name, ERM or mixup α)")
    parser.add_argument("--title")
    parser.add_argument("--dpi", type=int, default=100, help="dots per inch (default: 100, a 1000x400 image)")
    args = parser.parse_args(argv)
    if args.labels is not None and len(args.labels) != len(args.runs):
        parser.error(f"argument --labels: {len(args.labels)} label(s) for {len(args.runs)} run(s)")
    if args.dpi <= 0:
        parser.error(f"argument --dpi: must be > 0, got {args.dpi}")
    if importlib.util.find_spec("matplotlib") is None:
        raise SystemExit("train.plot needs matplotlib: pip install matplotlib")
    try:
        curves = [read_metrics(run) for run in args.runs]
    except MetricsError as err:
        raise SystemExit(f"train.plot: {err}") from None
    labels = args.labels or [default_label(run) for run in args.runs]
    draw(curves, labels, args.title).savefig(args.out, dpi=args.dpi)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
