"""Time the mixup operator alone and compare it with the memory-bandwidth floor.

    python -m benchmarks.mixup_op [--device gpu] [--batch-size 256] [--size 224] [--iterations 50] [--runs 5]

The pipelines feed the same resident batch of uint8 HWC crops, as the ImageNet pipeline hands
them to ``mixup``, and write normalized CHW images (float16 on the GPU, float32 on the CPU):

- ``plain`` returns the crops untouched: the cost of running a pipeline at all;
- ``normalize`` flips and normalizes them (``crop_mirror_normalize``), as the pipeline does without mixup;
- ``fused`` flips, normalizes and mixes them in one pass with the ``MixupNormalize`` operator;
- ``composite`` does the same with stock DALI operators (the fallback);
- ``fused_cutmix`` and ``composite_cutmix``: the same with CutMix (a box per sample) instead of mixup;
- ``fused_resize``: crops 1.5 x 1.25 times the output's side resized in the operator's pass (Pillow's
  bilinear), then flipped, normalized and mixed; ``resize_then_fused``: ``fn.resize`` first, then ``fused``.

A path's time is its time per iteration less ``plain``'s. Its floor is the bytes it must move
(read each crop once, and for mixup its partner too; write the output once; the resize paths read
each larger crop once and write the output) divided by the measured copy bandwidth of the device
(read + write).
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from nvidia.dali import fn, pipeline_def, types

from benchmarks.common import environment, fused_off, hardware_tag, median, require_at_least
from dali_mixup import mixup
from dali_mixup.build import fused_backends
from dali_mixup.mixup import Resize

MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]
NUM_CLASSES = 1000


@pipeline_def
def resident_batch(crops, labels, device, path, size=None):
    """The same batch every iteration, through one path; no copy from the source."""
    images = fn.external_source(source=lambda: crops, batch=True, device=device, no_copy=True, layout="HWC")
    classes = fn.external_source(source=lambda: labels, batch=True, no_copy=True)
    if path == "plain":
        return images, fn.one_hot(classes, num_classes=NUM_CLASSES)
    dtype = types.FLOAT16 if device == "gpu" else types.FLOAT
    mirror = fn.random.coin_flip()
    if path == "normalize":
        images = fn.crop_mirror_normalize(images, dtype=dtype, output_layout="CHW", mean=MEAN, std=STD, mirror=mirror)
        return images, fn.one_hot(classes, num_classes=NUM_CLASSES)
    mixing = {"alpha": 0.0, "cutmix_alpha": 1.0, "per_sample": True} if path.endswith("cutmix") else {"alpha": 0.2}
    if path == "resize_then_fused":
        images = fn.resize(images, resize_x=size, resize_y=size, interp_type=types.INTERP_TRIANGULAR)
    resize = {"resize": Resize((size, size))} if path == "fused_resize" else {}
    return mixup(images, classes, num_classes=NUM_CLASSES, dtype=dtype, mean=MEAN, std=STD, mirror=mirror, **mixing,
                 **resize)


def seconds_per_iteration(pipe, iterations):
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
    parser.add_argument("--runs", type=int, default=5, help="measured runs; the result is the median")
    parser.add_argument("--json", help="default: benchmarks/results/DATE-mixup-op-DEVICE-HW.json")
    args = parser.parse_args(argv)
    require_at_least(parser, args, ("batch_size", "size", "iterations", "runs"))
    if args.device == "gpu" and not cuda:
        parser.error("--device gpu, but torch sees no CUDA GPU; --device cpu times the CPU operator")
    on_gpu = args.device == "gpu"
    torch_device = torch.device("cuda" if on_gpu else "cpu")
    crops = torch.randint(0, 256, (args.batch_size, args.size, args.size, 3), dtype=torch.uint8, device=torch_device)
    labels = [np.array([k % NUM_CLASSES], np.int32) for k in range(args.batch_size)]
    pipe_args = {"batch_size": args.batch_size, "num_threads": os.cpu_count(), "device_id": 0 if on_gpu else None,
                 "prefetch_queue_depth": 1}
    source = crops if on_gpu else crops.numpy()
    # Crops as the decoder cuts them, larger than the output, for the resize paths.
    big = torch.randint(0, 256, (args.batch_size, args.size * 3 // 2, args.size * 5 // 4, 3), dtype=torch.uint8,
                        device=torch_device)
    big_source = big if on_gpu else big.numpy()
    pipes = {"plain": resident_batch(source, labels, args.device, "plain", **pipe_args),
             "normalize": resident_batch(source, labels, args.device, "normalize", **pipe_args)}
    for mix in ("", "_cutmix"):
        if args.device in fused_backends():
            pipes["fused" + mix] = resident_batch(source, labels, args.device, "fused" + mix, **pipe_args)
        with fused_off():
            pipes["composite" + mix] = resident_batch(source, labels, args.device, "composite" + mix, **pipe_args)
    if args.device in fused_backends():
        for path in ("fused_resize", "resize_then_fused"):
            pipes[path] = resident_batch(big_source, labels, args.device, path, args.size, **pipe_args)
    if args.device not in fused_backends():
        print(f"the fused operator is not built for {args.device}; timing the composite paths only", file=sys.stderr)
    for pipe in pipes.values():
        pipe.build()

    crop_bytes = crops.numel()
    out_bytes = crops.numel() * (2 if on_gpu else 4)
    moved = {"normalize": crop_bytes + out_bytes}
    for path in ("fused", "composite", "fused_cutmix", "composite_cutmix"):
        moved[path] = 2 * crop_bytes + out_bytes
    for path in ("fused_resize", "resize_then_fused"):
        moved[path] = big.numel() + out_bytes
    runs = {name: [] for name in pipes}
    runs["bandwidth"] = []
    for _ in range(args.runs):
        for name, pipe in pipes.items():
            runs[name].append(seconds_per_iteration(pipe, args.iterations))
        runs["bandwidth"].append(copy_bandwidth(out_bytes, torch_device))
    bandwidth = median(runs["bandwidth"])
    results = {"copy_bandwidth_GBps": bandwidth / 1e9}
    output = f"{args.batch_size}x3x{args.size}x{args.size} {'float16' if on_gpu else 'float32'}"
    print(f"uint8 crops to {output} ({args.device}); copy bandwidth {bandwidth / 1e9:.1f} GB/s")
    for name in [name for name in pipes if name != "plain"]:
        op = median([t - p for t, p in zip(runs[name], runs["plain"])])
        floor = moved[name] / bandwidth
        results[name] = {"ms": op * 1e3, "floor_ms": floor * 1e3, "over_floor": op / floor, "bytes_moved": moved[name]}
        print(f"{name:<18}{op * 1e3:>9.2f} ms   floor {floor * 1e3:7.2f} ms   {op / floor:5.2f}x the floor")

    env = environment()
    report = {"env": env, "settings": vars(args), "results": results, "runs": runs}
    path = args.json or os.path.join("benchmarks", "results",
                                     f"{env['date']}-mixup-op-{args.device}-{hardware_tag(env)}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    chart(report, os.path.splitext(path)[0] + ".png")
    print(f"wrote {path} and its .png", file=sys.stderr)


def chart(report, path):
    """The operator's ms per batch beside the bandwidth floor, as a bar chart (Pillow, as benchmarks.loader's)."""
    from benchmarks.loader import bar_chart

    settings = report["settings"]
    bars = {}
    for name, result in report["results"].items():
        if isinstance(result, dict):
            bars[name] = max(0.0, result["ms"])  # op less plain pipeline: noise can make a tiny op negative
            bars[f"{name} floor"] = result["floor_ms"]
    bar_chart(bars, path, f"ms per batch of {settings['batch_size']} crops of {settings['size']}, "
                          f"{settings['device']}, median of {settings['runs']} (lower is better)")


if __name__ == "__main__":
    main()
