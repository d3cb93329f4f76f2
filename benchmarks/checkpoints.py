"""What preemption safety costs: a save with the loaders' state, training with --save-every, and the ranks' agreement.

    python -m benchmarks.checkpoints [--data DIR] [--models resnet18 resnet50] [--intervals 0 20 5 1]
                                     [--runs 3] [--json OUT] [--quick]

- **save**: for each model (with SGD's momentum filled by one step), the train loader's
  ``state_dict()`` (DALI's checkpoint of its pipeline), and ``checkpoint.save`` of the whole state
  to the run folder's disk (fsync included): milliseconds and bytes.
- **training**: the demo recipe on the digits (``--data``, made when omitted), one epoch on one
  process, with ``--save-every`` at each interval (0: at the epoch's end only): images/s, the median
  of ``--runs`` runs in turn, and the ratio to interval 0.
- **agreement**: two gloo ranks under torchrun, each doing a fixed CPU workload per step, with and
  without :class:`train.preemption.Preemption`'s per-step poll: its cost per step in microseconds.

Results go to ``benchmarks/results/DATE-checkpoints-HW.json``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from benchmarks.common import environment, hardware_tag, interleaved_runs, require_at_least


def measure_save(model_name, data, folder):
    """``{"state_dict_ms", "save_ms", "bytes"}`` of a checkpoint of ``model_name`` with a train loader's state."""
    import torchvision

    from dali_mixup import make_loader
    from train import checkpoint

    loader = make_loader(dataset="imagefolder", root=os.path.join(data, "train"), device="cpu", batch_size=32,
                         crop_size=32, num_threads=1, mixup_alpha=0.2, world_size=1, rank=0)
    iterator = iter(loader)
    next(iterator)
    model = getattr(torchvision.models, model_name)(num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    start = time.perf_counter()
    loader_state = loader.state_dict()
    state_ms = (time.perf_counter() - start) * 1000
    path = os.path.join(folder, f"{model_name}.pt")
    state = checkpoint.training_state(
        model=model, optimizer=optimizer, scheduler=scheduler, scaler=torch.amp.GradScaler("cpu", enabled=False),
        epoch=0, position=1, step=1, best_top1=0.0, rng=[checkpoint.rng_state()], loaders=[loader_state],
        partial=[{"loss_sum": 0.0, "seen": 32, "seconds": 1.0}], metrics=[])
    start = time.perf_counter()
    checkpoint.save(path, state)
    return {"state_dict_ms": state_ms, "loader_state_bytes": len(loader_state["checkpoint"]),
            "save_ms": (time.perf_counter() - start) * 1000, "bytes": os.path.getsize(path)}


def measure_training(data, interval, folder):
    """Images/s of one demo epoch on one process, with ``--save-every interval``."""
    out = os.path.join(folder, f"every-{interval}-{time.monotonic_ns()}")
    command = [sys.executable, "-m", "train", "--recipe", "demo", "--data", data, "--epochs", "1", "--batch-size",
               "32", "--threads", "1", "--out", out, "--save-every", str(interval)]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return json.loads(f.readline())["images_per_sec"]


AGREEMENT = """
import json, os, sys, time, torch, torch.distributed as dist
from train.preemption import Preemption
dist.init_process_group("gloo")
torch.set_num_threads(1)
a = torch.randn(192, 192)
def steps(poll, count):
    preemption = Preemption(torch.device("cpu")) if poll else None
    dist.barrier()
    start = time.perf_counter()
    for _ in range(count):
        for _ in range(64):  # about 10 ms of compute a step here
            a @ a
        if poll:
            preemption.poll(dist.get_rank() == 0)
    if poll:
        preemption.settle()
    dist.barrier()
    return (time.perf_counter() - start) / count
result = {"plain": [], "poll": []}
for _ in range(int(sys.argv[2])):
    for mode in ("plain", "poll"):
        result[mode].append(steps(mode == "poll", int(sys.argv[1])))
if dist.get_rank() == 0:
    print(json.dumps(result))
dist.destroy_process_group()
"""


def measure_agreement(steps, runs):
    """Per-step seconds of a fixed workload on 2 gloo ranks, without and with the preemption poll."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:  # torchrun runs a file
        f.write(AGREEMENT)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", f.name,
               str(steps), str(runs)]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1",
                                                                         "PYTHONPATH": os.getcwd()})
    os.remove(f.name)
    if result.returncode:
        raise SystemExit(f"the agreement measurement failed:\n{result.stderr[-2000:]}")
    times = json.loads(result.stdout.strip().splitlines()[-1])
    plain, poll = statistics.median(times["plain"]), statistics.median(times["poll"])
    return {"step_ms": plain * 1000, "step_with_poll_ms": poll * 1000, "poll_us": (poll - plain) * 1e6,
            "runs": times}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="the digits (train/ and val/; default: made with the dataset maker)")
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"], help="torchvision models to save")
    parser.add_argument("--intervals", type=int, nargs="+", default=[0, 20, 5, 1], help="--save-every values")
    parser.add_argument("--runs", type=int, default=3, help="runs of each interval, in turn; the median is kept")
    parser.add_argument("--steps", type=int, default=200, help="steps a run of the agreement measurement")
    parser.add_argument("--quick", action="store_true", help="a smoke test: resnet18, intervals 0 and 5, 1 run")
    parser.add_argument("--json", help="default: benchmarks/results/DATE-checkpoints-HW.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.intervals, args.runs, args.steps = ["resnet18"], [0, 5], 1, 30
    require_at_least(parser, args, ("runs", "steps"))
    if min(args.intervals) < 0:
        parser.error(f"--intervals must be >= 0, got {args.intervals}")
    if args.data is None:
        from dali_mixup.datasets import write_digits

        args.data = os.path.join("runs", "bench-data", "digits")
        if not os.path.isdir(os.path.join(args.data, "val")):
            write_digits(args.data)

    with tempfile.TemporaryDirectory(dir="runs" if os.path.isdir("runs") else None) as folder:
        saves = {model: measure_save(model, args.data, folder) for model in args.models}
        runs = interleaved_runs(lambda interval: measure_training(args.data, interval, folder), args.intervals,
                                args.runs)
    training = {str(interval): statistics.median(values) for interval, values in runs.items()}
    ratios = {f"save every {interval} / epoch end only": training[str(interval)] / training[str(args.intervals[0])]
              for interval in args.intervals[1:]}
    agreement = measure_agreement(args.steps, args.runs)
    env = environment()
    report = {"env": env, "settings": vars(args), "save": saves, "training_images_per_sec": training,
              "training_runs": {str(k): v for k, v in runs.items()}, "ratios": ratios, "agreement": agreement}
    for model, record in saves.items():
        print(f"{model}: loader state_dict {record['state_dict_ms']:.1f} ms ({record['loader_state_bytes']:,} B), "
              f"save {record['save_ms']:.0f} ms ({record['bytes'] / 2**20:.1f} MiB)")
    for interval, value in training.items():
        print(f"--save-every {interval}: {value:.0f} images/s")
    for name, value in ratios.items():
        print(f"{name}: {value:.3f}")
    print(f"agreement: {agreement['poll_us']:.0f} us a step (a step of {agreement['step_ms']:.2f} ms, 2 gloo ranks)")
    path = args.json or os.path.join("benchmarks", "results", f"{env['date']}-checkpoints-{hardware_tag(env)}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
