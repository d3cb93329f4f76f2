"""Time the mixup operator alone and compare it with the memory-bandwidth floor.

    python -m benchmarks.mixup_op [--device gpu] [--batch-size 256] [--size 224] [--iterations 50]

Two pipelines feed the same resident batch (fp16 on the GPU, fp32 on the CPU); one returns it,
the other mixes it. The operator's time is the difference per iteration. The floor is the bytes
a blend must move (read the sample and its partner, write the result) divided by the measured
copy bandwidth of the device.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from nvidia.dali import fn, pipeline_def, types

from benchmarks.common import environment, hardware_tag, median
from dali_mixup import mixup


@pipeline_def
def resident_batch(images, labels, device, mix):
    """The same batch every iteration, with or without mixup; no copy from the source."""
    batch = fn.external_source(source=lambda: images, batch=True, device=device, no_copy=True, layout="CHW")
    classes = fn.external_source(source=lambda: labels, batch=True, no_copy=True)
    if not mix:
        return batch, fn.one_hot(classes, num_classes=1000)
    return mixup(batch, classes, num_classes=1000, alpha=0.2,
                 dtype=types.FLOAT16 if device == "gpu" else types.FLOAT)


def seconds_per_iteration(pipe, iterations):
    pipe.build()
    for _ in range(5):
        pipe.run()
    start = time.perf_counter()
    for _ in range(iterations):
        outputs = pipe.run()
    if pipe.device_id is not None:
        outputs[0].as_cpu()  # wait for the last batch's GPU work
    return (time.perf_counter() - start) / iterations


def copy_bandwidth(nbytes, device, repeats=20):
    """Bytes per second moved by a device-to-device (or host memcpy) copy: read + write."""
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        dst.copy_(src)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * nbytes * repeats / (time.perf_counter() - start)


def main(argv=None):
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "gpu"], default="gpu" if cuda else "cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", help="default: benchmarks/results/DATE-mixup-op-HW.json")
    args = parser.parse_args(argv)
    if args.device == "gpu" and not cuda:
        parser.error("--device gpu, but torch sees no CUDA GPU; --device cpu times the CPU operator")
    on_gpu = args.device == "gpu"
    torch_device = torch.device("cuda" if on_gpu else "cpu")
    dtype = torch.float16 if on_gpu else torch.float32
    images = torch.randn(args.batch_size, 3, args.size, args.size, dtype=dtype, device=torch_device)
    labels = [np.array([k % 1000], np.int32) for k in range(args.batch_size)]
    batch = images if on_gpu else images.numpy()
    pipe_args = {"batch_size": args.batch_size, "num_threads": os.cpu_count(), "device_id": 0 if on_gpu else None,
                 "prefetch_queue_depth": 1}
    plain = resident_batch(batch, labels, args.device, False, **pipe_args)
    mixed = resident_batch(batch, labels, args.device, True, **pipe_args)

    batch_bytes = images.numel() * images.element_size()
    moved = 3 * batch_bytes  # read x_i and x_perm(i), write the blend
    runs = {"plain_s": [], "mixup_s": [], "bandwidth": []}
    for _ in range(args.runs):
        runs["plain_s"].append(seconds_per_iteration(plain, args.iterations))
        runs["mixup_s"].append(seconds_per_iteration(mixed, args.iterations))
        runs["bandwidth"].append(copy_bandwidth(batch_bytes, torch_device))
    op = median([m - p for m, p in zip(runs["mixup_s"], runs["plain_s"])])
    bandwidth = median(runs["bandwidth"])
    floor = moved / bandwidth
    env = environment()
    report = {
        "env": env,
        "settings": vars(args),
        "results": {"mixup_op_ms": op * 1e3, "floor_ms": floor * 1e3, "op_over_floor": op / floor,
                    "copy_bandwidth_GBps": bandwidth / 1e9, "bytes_moved": moved, "path": "composite"},
        "runs": runs,
    }
    print(f"mixup on {args.batch_size}x3x{args.size}x{args.size} {str(dtype).split('.')[-1]} ({args.device}): "
          f"{op * 1e3:.2f} ms; floor {floor * 1e3:.2f} ms ({moved / 1e6:.0f} MB at {bandwidth / 1e9:.0f} GB/s); "
          f"{op / floor:.2f}x the floor")
    path = args.json or os.path.join("benchmarks", "results",
                                     f"{env['date']}-mixup-op-{args.device}-{hardware_tag(env)}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
