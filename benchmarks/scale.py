"""ImageNet at full size: torchvision's ImageFolder and make_loader, side by side, at any number of files.

    python -m benchmarks.scale [--sizes 10000 100000 1281167] [--val 50000] [--root DIR] [--runs 3]
                               [--batch-size 256] [--threads N] [--check-files 20000] [--json OUT] [--quick]

The data is a tree of hard links to the dataset maker's JPEGs (1,000 distinct ImageNet-like photos
of about 500x375), laid out as ImageNet's: 1,000 class folders ``nXXXXXXXX`` of files
``nXXXXXXXX_K.JPEG`` (the default sizes are 10k, 100k and ImageNet-1k's 1,281,167 train files, with
a val tree of 50,000), beside a file list of the same files and webdataset shards of 1,000 samples
(hard links to one real shard). Links cost no data, so ImageNet's size fits anywhere; the files
are in the page cache, so the disk costs nothing and what is measured is the code.

Every number comes from a fresh process (``--measure``), the configurations in turn, ``--runs``
times (the median is kept):

- **build**: seconds and memory added (RSS) to make torchvision's ``ImageFolder`` and
  ``make_loader`` for the ImageFolder (train, and val at ``--val``), the file list and the shards;
- for make_loader's ImageFolder: the **first batch**, a **broken-off epoch** (the time of
  ``next(iter(loader))`` after another such peek: ending the old epoch and the first batch of
  the new one), and the **memory over 20 broken-off epochs** (the largest RSS over 20 peeks, less
  the RSS before them; 5 peeks before those let DALI's buffers grow to the working set of a few
  batches, a step recorded apart as ``mib_warm_up``);
- the **error latency**: one empty file in a file list, read first in epoch 0; the time from
  ``next(iter(loader))`` to the error naming the file, and the share of it spent naming it;
- **check_data**: files/s over ``--check-files`` files of the tree (its command line, start included).

Results go to ``benchmarks/results/DATE-scale-HW.json`` with a PNG of build time and memory
against the number of files for both loaders.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from benchmarks.common import environment, hardware_tag, require_at_least

IMAGENET_TRAIN, IMAGENET_VAL, CLASSES = 1_281_167, 50_000, 1000
PER_SHARD = 1000
WARM_EPOCHS = 5  # broken-off epochs before the 20 measured: DALI's buffers reach their size in the first 2-3
KINDS = ("torchvision", "imagefolder", "filelist", "webdataset")


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def wnid(label):
    return f"n{1440764 + label * 9973:08d}"


def make_sources(root):
    """The dataset maker's 1,000 JPEGs (10 classes x 100 photos), once."""
    from dali_mixup.datasets import write_imagenet_like

    folder = os.path.join(root, "src")
    if not os.path.isdir(folder):
        write_imagenet_like(folder, classes=10, per_class=100)
    return sorted(os.path.join(parent, name) for parent, _, names in os.walk(folder) for name in names)


def make_tree(root, name, files, sources):
    """``root/name``: ``files`` hard links in ImageNet's layout, ``files // 1000`` a class (the remainder
    one more in the first classes), and ``root/name.txt`` listing them with their labels. Made once."""
    folder, listing = os.path.join(root, name), os.path.join(root, f"{name}.txt")
    if os.path.isfile(listing):
        return folder, listing
    lines = []
    for label in range(CLASSES):
        count = files // CLASSES + (label < files % CLASSES)
        directory = os.path.join(folder, wnid(label))
        os.makedirs(directory, exist_ok=True)
        for k in range(count):
            relative = os.path.join(wnid(label), f"{wnid(label)}_{10000 + k * 7}.JPEG")
            target = os.path.join(folder, relative)
            if not os.path.exists(target):
                os.link(sources[(label * 31 + k) % len(sources)], target)
            lines.append(f"{relative} {label}\n")
    with open(listing + ".tmp", "w") as f:
        f.writelines(lines)
    os.replace(listing + ".tmp", listing)
    return folder, listing


def make_shards(root, name, files, sources):
    """``root/name-shards``: ``files // 1000`` shards, each a hard link to one real shard of 1,000 samples."""
    from dali_mixup.datasets import pack_shards

    folder = os.path.join(root, f"{name}-shards")
    count = files // PER_SHARD
    if os.path.isfile(os.path.join(folder, f"shard-{count - 1:06d}.labels")):
        return folder
    base = os.path.join(root, "base-shard")
    if not os.path.isdir(base):
        pack_shards(sources[:PER_SHARD], [k % CLASSES for k in range(PER_SHARD)], base, per_shard=PER_SHARD)
    os.makedirs(folder, exist_ok=True)
    for k in range(count):
        for ext in ("tar", "idx", "labels"):  # index and labels after the tar: newer than it, so they are used
            target = os.path.join(folder, f"shard-{k:06d}.{ext}")
            if not os.path.exists(target):
                os.link(os.path.join(base, f"shard-000000.{ext}"), target)
    return folder


def warm(folder):
    """Walk a tree once, so that every measurement finds its directories in the cache."""
    for _ in os.walk(folder):
        pass


# ---- the measurements, each in its own process ----

def _loader(kind, path, batch_size, threads, split="train", listing=None):
    from dali_mixup import make_loader

    args = {"imagefolder": dict(dataset="imagefolder", root=path),
            "filelist": dict(dataset="filelist", root=path, file_list=listing),
            "webdataset": dict(dataset="webdataset", root=path)}[kind]
    return make_loader(**args, split=split, batch_size=batch_size, device="cpu", num_threads=threads, world_size=1,
                       rank=0, mixup_alpha=0.2 if split == "train" else 0.0)


def measure_build(kind, path, listing, batch_size, threads, split, deep):
    """``{"seconds", "mib"}`` of one build; with ``deep``, the first batch and broken-off epochs too."""
    import torchvision  # noqa: F401 (imported before the clock, as make_loader's modules are)

    import dali_mixup.loader  # noqa: F401

    before, start = rss_mib(), time.perf_counter()
    if kind == "torchvision":
        dataset = torchvision.datasets.ImageFolder(path)
        record = {"seconds": time.perf_counter() - start, "mib": rss_mib() - before, "files": len(dataset)}
        return record
    loader = _loader(kind, path, batch_size, threads, split, listing)
    record = {"seconds": time.perf_counter() - start, "mib": rss_mib() - before, "files": len(loader.dataset)}
    if deep:
        start = time.perf_counter()
        next(iter(loader))
        record["first_batch_s"] = time.perf_counter() - start
        after_first = rss_mib()
        for _ in range(WARM_EPOCHS):  # DALI's buffers grow to the working set of a few batches here
            next(iter(loader))
        warm, peaks, times = rss_mib(), [], []
        record["mib_warm_up"] = warm - after_first
        for _ in range(20):
            start = time.perf_counter()
            next(iter(loader))
            times.append(time.perf_counter() - start)
            peaks.append(rss_mib())
        record["broken_epoch_s"] = statistics.median(times)
        record["broken_epoch_max_s"] = max(times)
        record["mib_over_20_broken_epochs"] = max(peaks) - warm
    return record


def measure_error(listing, batch_size, threads):
    """One empty file read first in epoch 0 of a file list: the seconds to the error that names it."""
    from dali_mixup.epochs import permutation

    with open(listing) as f:
        lines = f.readlines()
    first = int(permutation(len(lines), 0, 0)[0])  # rank 0's first sample in epoch 0 (seed 0)
    root = os.path.dirname(listing)
    empty = os.path.abspath(os.path.join(root, "empty.JPEG"))
    open(empty, "wb").close()
    lines[first] = f"{empty} {lines[first].split()[-1]}\n"
    broken = os.path.join(root, "broken-list.txt")
    with open(broken, "w") as f:
        f.writelines(lines)
    loader = _loader("filelist", os.path.join(root, os.path.basename(listing)[: -len(".txt")]), batch_size, threads,
                     listing=broken)
    feed = loader._feed
    explain = feed.explain
    timing = {}

    def timed_explain(err):
        start = time.perf_counter()
        try:
            explain(err)
        finally:
            timing["naming_s"] = time.perf_counter() - start

    feed.explain = timed_explain
    start = time.perf_counter()
    try:
        next(iter(loader))
        message = ""
    except RuntimeError as err:
        message = str(err)
    return {"seconds": time.perf_counter() - start, **timing, "named": f"{empty}: is empty" in message,
            "message": message.splitlines()[:2]}


def _measure_main(args):
    if args.measure == "error":
        record = measure_error(args.listing, args.batch_size, args.threads)
    else:
        record = measure_build(args.measure, args.path, args.listing, args.batch_size, args.threads, args.split,
                               args.deep)
    print(json.dumps(record))


def _in_process(kind, path, args, listing=None, split="train", deep=False):
    command = [sys.executable, "-m", "benchmarks.scale", "--measure", kind, "--path", path or "",
               "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--split", split]
    if listing:
        command += ["--listing", listing]
    if deep:
        command.append("--deep")
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def _median_records(records):
    """The first record, with every number all the records have replaced by its median."""
    keys = [key for key, value in records[0].items() if isinstance(value, (int, float)) and not isinstance(value, bool)
            and all(key in record for record in records)]
    return {**records[0], **{key: statistics.median(record[key] for record in records) for key in keys}}


def measure_size(root, files, sources, args):
    """Every build at ``files`` train files, ``--runs`` rounds in turn, the order rotated each round."""
    folder, listing = make_tree(root, f"train-{files}", files, sources)
    shards = make_shards(root, f"train-{files}", files, sources)
    warm(folder)
    paths = {"torchvision": (folder, None), "imagefolder": (folder, None), "filelist": (folder, listing),
             "webdataset": (shards, None)}
    runs = {kind: [] for kind in KINDS}
    for run in range(args.runs):
        for kind in KINDS[run % len(KINDS):] + KINDS[: run % len(KINDS)]:
            path, kind_listing = paths[kind]
            runs[kind].append(_in_process(kind, path, args, kind_listing, deep=kind == "imagefolder" and run == 0))
        print(f"{files:,} files, run {run + 1}/{args.runs}: " + ", ".join(
            f"{kind} {runs[kind][-1]['seconds']:.2f} s +{runs[kind][-1]['mib']:.0f} MiB" for kind in KINDS),
            file=sys.stderr)
    deep = runs["imagefolder"][0]
    result = {kind: _median_records(records) for kind, records in runs.items()}
    result["imagefolder"].update({key: value for key, value in deep.items() if key not in ("seconds", "mib", "files")})
    result["runs"] = runs
    return result, listing


def measure_val(root, files, sources, args):
    folder, _ = make_tree(root, f"val-{files}", files, sources)
    warm(folder)
    runs = {"torchvision": [], "imagefolder": []}
    for _ in range(args.runs):
        for kind in runs:
            runs[kind].append(_in_process(kind, folder, args, split="val"))
    return {kind: _median_records(records) for kind, records in runs.items()}


def measure_check_data(root, files, sources):
    folder, _ = make_tree(root, f"check-{files}", files, sources)
    warm(folder)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "dali_mixup.check_data", folder], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    return {"files": files, "seconds": seconds, "files_per_sec": files / seconds, "exit_status": result.returncode}


def chart(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(int(size) for size in results)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, style in (("torchvision", "o-"), ("imagefolder", "s-"), ("filelist", "^--"), ("webdataset", "v--")):
        label = "torchvision ImageFolder" if kind == "torchvision" else f"make_loader ({kind})"
        for axis, key, unit in ((axes[0], "seconds", "build time (s)"), (axes[1], "mib", "memory added (MiB)")):
            axis.plot(sizes, [results[str(size)][kind][key] for size in sizes], style, label=label)
            axis.set_xscale("log")
            axis.set_xlabel("train files")
            axis.set_ylabel(unit)
            axis.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, IMAGENET_TRAIN],
                        help="train files (default: 10k, 100k and ImageNet-1k's 1,281,167)")
    parser.add_argument("--val", type=int, default=IMAGENET_VAL, help="val files (default: ImageNet's 50,000)")
    parser.add_argument("--root", default=os.path.join("runs", "bench-data", "scale"),
                        help="where the link trees go (default: runs/bench-data/scale)")
    parser.add_argument("--runs", type=int, default=3, help="rounds of builds; the result is the median")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="DALI CPU threads")
    parser.add_argument("--check-files", type=int, default=20_000, help="files for check_data's throughput")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 2,000 files, 1 run, batch 16")
    parser.add_argument("--json", help="default: benchmarks/results/DATE-scale-HW.json")
    # A measurement, in its own process (used by the run above).
    parser.add_argument("--measure", choices=[*KINDS, "error"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--listing", help=argparse.SUPPRESS)
    parser.add_argument("--split", default="train", help=argparse.SUPPRESS)
    parser.add_argument("--deep", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    require_at_least(parser, args, ("runs", "batch_size", "threads", "check_files", "val"))
    if args.measure:
        return _measure_main(args)
    if args.quick:
        args.sizes, args.val, args.runs, args.check_files, args.batch_size = [2000], 1000, 1, 1000, 16
    if min(args.sizes) < PER_SHARD:
        parser.error(f"--sizes must be >= {PER_SHARD} (one shard), got {min(args.sizes)}")

    os.makedirs(args.root, exist_ok=True)
    sources = make_sources(args.root)
    results, largest_listing = {}, None
    for files in sorted(args.sizes):
        results[str(files)], largest_listing = measure_size(args.root, files, sources, args)
    val = measure_val(args.root, args.val, sources, args)
    error = _in_process("error", None, args, listing=largest_listing)
    check = measure_check_data(args.root, args.check_files, sources)
    largest = results[str(max(args.sizes))]
    ratios = {size: {f"{kind} build / torchvision": record[kind]["seconds"] / record["torchvision"]["seconds"]
                     for kind in KINDS[1:]} | {
                     f"{kind} memory / torchvision": record[kind]["mib"] / record["torchvision"]["mib"]
                     for kind in KINDS[1:]} for size, record in results.items()}
    env = environment()
    report = {"env": env, "settings": {key: getattr(args, key) for key in ("sizes", "val", "runs", "batch_size",
                                                                           "threads", "check_files")},
              "results": results, "val": val, "error": error, "check_data": check, "ratios": ratios,
              "targets": {"build / torchvision <= 1.0": ratios[str(max(args.sizes))]["imagefolder build / torchvision"],
                          "memory / torchvision <= 1.0": ratios[str(max(args.sizes))]["imagefolder memory / torchvision"],
                          "broken-off epoch <= 1 s": largest["imagefolder"]["broken_epoch_s"],
                          "memory over 20 broken-off epochs <= 50 MiB": largest["imagefolder"]["mib_over_20_broken_epochs"],
                          "error names the file within 1 s": error["seconds"]}}
    for size, record in results.items():
        print(f"{int(size):>10,} files: " + ", ".join(f"{kind} {record[kind]['seconds']:.2f} s +{record[kind]['mib']:.0f} MiB"
                                                       for kind in KINDS))
    for name, value in report["targets"].items():
        print(f"{name:<48}{value:.3f}")
    print(f"val {args.val:,}: " + ", ".join(f"{kind} {val[kind]['seconds']:.2f} s +{val[kind]['mib']:.0f} MiB" for kind in val))
    print(f"error: {error['seconds']:.2f} s (naming {error.get('naming_s', float('nan')):.3f} s), named: {error['named']}")
    print(f"check_data: {check['files_per_sec']:,.0f} files/s over {check['files']:,} files (start included)")
    path = args.json or os.path.join("benchmarks", "results", f"{env['date']}-scale-{hardware_tag(env)}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    png = os.path.splitext(path)[0] + ".png"
    chart(results, png, f"build time and memory against train files ({env['cpu']}, {env['cores']} cores)")
    print(f"wrote {path} and {png}", file=sys.stderr)


if __name__ == "__main__":
    main()
