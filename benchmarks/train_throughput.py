"""Training-step throughput: synthetic on-device tensors vs the DALI pipeline with mixup.

    python -m benchmarks.train_throughput [--model resnet50] [--device gpu] [--batch-size 256] [--steps 50]

Both measurements run the same model, optimizer, AMP and channels_last setting; the only
difference is where the batches come from. A ratio near 1 means the loader keeps up.
"""

import argparse
import itertools
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
import torchvision

from benchmarks.common import environment, hardware_tag, median
from dali_mixup import make_loader


def train_steps(model, optimizer, batches, steps, device, amp):
    """Images/s over ``steps`` training steps drawn from ``batches``."""
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)
    count, start = 0, time.perf_counter()
    for images, targets in itertools.islice(batches, steps):
        with autocast:
            logits = model(images)
        loss = torch.sum(-targets * F.log_softmax(logits.float(), dim=1), dim=1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        count += len(images)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


def endless(loader):
    while True:
        yield from loader


def main(argv=None):
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="an ImageFolder of JPEGs (default: made with the dataset maker)")
    parser.add_argument("--model", default="resnet50" if cuda else "resnet18", help="a torchvision model name")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="gpu" if cuda else "cpu")
    parser.add_argument("--batch-size", type=int, default=256 if cuda else 32)
    parser.add_argument("--crop-size", type=int, default=224 if cuda else 112)
    parser.add_argument("--steps", type=int, default=50 if cuda else 10, help="measured steps per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="DALI CPU threads")
    parser.add_argument("--json", help="default: benchmarks/results/DATE-train-throughput-HW.json")
    args = parser.parse_args(argv)
    if args.device == "gpu" and not cuda:
        parser.error("--device gpu, but torch sees no CUDA GPU")
    device = torch.device("cuda" if args.device == "gpu" else "cpu")
    on_gpu = device.type == "cuda"
    if args.data is None:
        from dali_mixup.datasets import write_imagenet_like

        args.data = os.path.join("runs", "bench-data", "imagenet-like-10x64")
        if not os.path.isdir(args.data):
            write_imagenet_like(args.data, 10, 64)

    loader = make_loader(dataset="imagefolder", root=args.data, batch_size=args.batch_size, device=args.device,
                         num_threads=args.threads, crop_size=args.crop_size, mixup_alpha=0.2, channels_last=on_gpu,
                         world_size=1, rank=0, dtype=torch.float16 if on_gpu else torch.float32)
    model = getattr(torchvision.models, args.model)(num_classes=loader.num_classes).to(device)
    memory_format = torch.channels_last if on_gpu else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    dtype = torch.float16 if on_gpu else torch.float32
    synthetic_images = torch.randn(args.batch_size, 3, args.crop_size, args.crop_size, device=device, dtype=dtype)
    synthetic_images = synthetic_images.to(memory_format=memory_format)
    synthetic_targets = torch.softmax(torch.randn(args.batch_size, loader.num_classes, device=device), dim=1)
    sources = {"synthetic": itertools.repeat((synthetic_images, synthetic_targets)), "dali_mixup": endless(loader)}

    for source in sources.values():  # warm-up: cudnn autotuning, pipeline start
        train_steps(model, optimizer, source, 3, device, on_gpu)
    runs = {name: [] for name in sources}
    for run in range(args.runs):
        for name, source in sources.items():
            runs[name].append(train_steps(model, optimizer, source, args.steps, device, on_gpu))
        print(f"run {run + 1}: " + ", ".join(f"{n} {runs[n][-1]:.1f}" for n in runs), file=sys.stderr)
    results = {name: median(values) for name, values in runs.items()}
    ratio = median([a / b for a, b in zip(runs["dali_mixup"], runs["synthetic"])])
    env = environment()
    report = {"env": env, "settings": vars(args), "results": results, "runs": runs,
              "ratios": {"dali_mixup / synthetic": ratio}}
    print(f"{args.model}, batch {args.batch_size}, {args.crop_size}px, {args.device}: synthetic "
          f"{results['synthetic']:.1f} images/s, DALI + mixup {results['dali_mixup']:.1f} images/s, ratio {ratio:.3f}")
    path = args.json or os.path.join("benchmarks", "results",
                                     f"{env['date']}-train-throughput-{args.device}-{hardware_tag(env)}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
