"""How fast ``check_data`` decodes a dataset: images/s over ImageNet-like JPEGs, for each thread count.

    python -m benchmarks.check_data [--data DIR] [--threads 1 2] [--runs 3] [--json OUT]

The data is an ImageFolder of ~500x375 JPEGs made by the dataset maker (10 classes x 64 when
--data is omitted), read from the page cache after the first run. The result is the median of
--runs full checks per thread count.
"""

import argparse
import json
import os
import sys
import time

from benchmarks.common import environment, hardware_tag, median
from dali_mixup import check_data, formats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="an ImageFolder of JPEGs (default: made with the dataset maker)")
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count()}))
    parser.add_argument("--runs", type=int, default=3, help="measured runs; the result is the median")
    parser.add_argument("--json", help="default: benchmarks/results/DATE-check-data-HW.json")
    args = parser.parse_args(argv)
    if args.runs < 1 or min(args.threads) < 1:
        parser.error(f"--runs and --threads must be >= 1, got {args.runs} and {args.threads}")
    if args.data is None:
        from dali_mixup.datasets import write_imagenet_like

        args.data = os.path.join("runs", "bench-data", "imagenet-like-10x64")
        if not os.path.isdir(args.data):
            write_imagenet_like(args.data, 10, 64)
    images = len(formats.image_folder(args.data)[0])
    check_data.check(args.data, threads=max(args.threads))  # warm the page cache

    runs = {threads: [] for threads in args.threads}
    for _ in range(args.runs):
        for threads in args.threads:
            start = time.perf_counter()
            problems = check_data.check(args.data, threads=threads)
            runs[threads].append(images / (time.perf_counter() - start))
            if problems:
                sys.exit(f"{args.data} is not clean: {problems[:3]}")
    results = {str(threads): median(values) for threads, values in runs.items()}
    for threads, value in results.items():
        print(f"{threads} thread(s): {value:,.0f} images/s ({images} images, median of {args.runs})")
    env = environment()
    path = args.json or os.path.join("benchmarks", "results", f"{env['date']}-check-data-{hardware_tag(env)}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"env": env, "settings": {"data": args.data, "images": images, "runs": args.runs},
                   "results_images_per_sec": results, "runs": {str(k): v for k, v in runs.items()}}, f, indent=2)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
