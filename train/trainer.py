"""Train an image classifier with mixup on the DALI loader, from one process to many nodes.

    python -m train --recipe cifar --data DATA [...]
    torchrun --nproc_per_node=8 -m train --recipe imagenet --data /data/imagenet
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29400 -m train ...

DDP comes from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); there is no launcher code
here. The run folder gets config.json, metrics.jsonl (one line per epoch), checkpoint.pt (every
epoch, atomically) and summary.json.
"""

import dataclasses
import json
import math
import os
import random
import signal
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from dali_mixup import formats, make_loader
from train import checkpoint
from train.config import image_options, parse_config
from train.models import create_model
from train.preemption import Preemption


def log(*parts):
    # One write per line: print() writes the text and its newline apart when stdout is unbuffered
    # (PYTHONUNBUFFERED, as many CI images set), and two ranks sharing a pipe then splice their lines.
    sys.stdout.write(" ".join(map(str, parts)) + "\n")
    sys.stdout.flush()


def corrupt_labels(files, labels, num_classes, fraction, seed):
    """Give a random ``fraction`` of the samples another class, drawn uniformly; fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    noisy = np.array(labels)
    picked = rng.choice(len(labels), size=round(fraction * len(labels)), replace=False)
    noisy[picked] = (noisy[picked] + rng.integers(1, num_classes, size=len(picked))) % num_classes
    return noisy


def write_file_list(path, files, labels):
    with open(path, "w") as f:
        f.writelines(f"{os.path.abspath(file)} {label}\n" for file, label in zip(files, labels))


def data_sources(config, rank):
    """``(train_args, eval_args, train_eval_args)`` for make_loader: ``eval_args`` maps each evaluated split
    (val, and test for Speech Commands) to its arguments; the last is None without label corruption."""
    root = config.data
    if config.dataset == "speechcommands":
        splits = {split: {"dataset": config.dataset, "root": root, "split": split} for split in ("val", "test")}
        return {"dataset": config.dataset, "root": root}, splits, None
    if config.dataset in ("cifar10", "cifar100"):
        return {"dataset": config.dataset, "root": root}, {"val": {"dataset": config.dataset, "root": root}}, None
    if config.dataset == "filelist":
        lists = [os.path.join(root, f"{split}.txt") for split in ("train", "val")]
        train, val = ({"dataset": "filelist", "root": root, "file_list": path} for path in lists)
    else:  # an ImageFolder or a folder of shards, with train/ and val/ inside
        splits = [os.path.join(root, split) for split in ("train", "val")]
        if not all(os.path.isdir(split) for split in splits):
            raise SystemExit(f"--data {root!r} must hold train/ and val/ for --dataset {config.dataset}")
        train, val = ({"dataset": config.dataset, "root": split} for split in splits)
    if not config.corrupt_labels:
        return train, {"val": val}, None
    if config.dataset == "imagefolder":
        files, labels, classes = formats.image_folder(train["root"])
        num_classes = len(classes)
    else:
        files, labels, num_classes = formats.file_list(train["file_list"], root)
    noisy = corrupt_labels(files, labels, num_classes, config.corrupt_labels, config.seed)
    # Every rank writes the same lists (the same seed), each to its own file: no rank waits on another.
    train_list = os.path.join(config.out, f"train_noisy_labels.rank{rank}.txt")
    write_file_list(train_list, files, noisy)
    # To measure training error on both label sets in one pass, the eval pass over the train set
    # carries real * C + noisy as its label; the trainer splits it again.
    eval_list = os.path.join(config.out, f"train_eval_labels.rank{rank}.txt")
    write_file_list(eval_list, files, np.array(labels) * num_classes + noisy)
    train = {"dataset": "filelist", "root": "/", "file_list": train_list, "num_classes": num_classes}
    train_eval = {"dataset": "filelist", "root": "/", "file_list": eval_list, "num_classes": num_classes**2}
    return train, {"val": val}, train_eval


def lr_factor(step, steps_per_epoch, config):
    """The lr at ``step`` relative to config.lr: linear warm-up, then steps of /10 or a cosine."""
    epoch = step / steps_per_epoch
    if epoch < config.warmup_epochs:
        start = config.warmup_start_lr / config.lr if config.lr else 1.0
        return start + (1 - start) * epoch / config.warmup_epochs
    if config.schedule == "cosine":
        progress = (epoch - config.warmup_epochs) / max(1, config.epochs - config.warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 0.1 ** sum(epoch >= milestone for milestone in config.milestones)


def image_dtype(device, amp):
    """The loader's image dtype: float16 on the GPU under autocast (half the bytes; the first layer casts
    them anyway), else float32, the model's own (an fp32 model without autocast refuses float16)."""
    return torch.float16 if device == "gpu" and amp != "off" else torch.float32


def mixing_at(epoch, config):
    """make_loader's mixing options for ``epoch``: none in the mixup warm-up and from the off epoch
    (mixup and CutMix together, as timm's ``--mixup-off-epoch``)."""
    off = epoch < config.mixup_warmup_epochs or 0 <= config.mixup_off_epoch <= epoch
    return {"mixup_alpha": 0.0 if off else config.mixup_alpha, "cutmix_alpha": 0.0 if off else config.cutmix_alpha,
            "cutmix_minmax": None if off else config.cutmix_minmax, "mix_prob": config.mix_prob,
            "switch_prob": config.switch_prob}


def loss_function(config):
    """The loss on the targets, in float32 whatever the autocast dtype: cross-entropy, or with ``--bce-loss``
    binary cross-entropy per class, the targets thresholded first with ``--bce-target-thresh`` (timm's
    ``BinaryCrossEntropy``). The targets are soft rows ``[B, C]`` where the loader mixes or smooths, else
    class ids ``[B]``."""
    if not config.bce_loss:
        def cross_entropy(logits, targets):
            if targets.ndim == 1:
                return F.cross_entropy(logits.float(), targets)
            return torch.sum(-targets * F.log_softmax(logits.float(), dim=1), dim=1).mean()

        return cross_entropy
    threshold = config.bce_target_thresh

    def bce(logits, targets):
        if targets.ndim == 1:
            targets = F.one_hot(targets, logits.shape[1]).float()
        if threshold is not None:
            targets = (targets > threshold).to(targets.dtype)
        return F.binary_cross_entropy_with_logits(logits.float(), targets)

    return bce


def make_optimizer(config, model):
    """SGD with momentum on every parameter (the paper's), Adam (the paper's speech setup), or AdamW or
    timm's LAMB with biases and normalization weights left out of the weight decay (timm's default for both)."""
    if config.opt == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": config.weight_decay}]
    if config.opt == "adam":  # the paper's speech setup: torch's Adam, its weight decay an L2 term on every weight
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if config.opt == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    from timm.optim import Lamb  # config.py has checked that timm is there

    return Lamb(groups, lr=config.lr)


def all_reduce_sum(values, device):
    """Sum a list of numbers over all ranks (a sync point)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor.tolist()


@torch.no_grad()
def evaluate(model, loader, device, autocast, split_labels=None):
    """Loss, top-1 and top-5 over every sample of ``loader``, exact across ranks.

    With ``split_labels`` (the number of classes C), each label is ``real * C + noisy`` and the
    result is the error on the real labels and, over the corrupted samples, on the noisy ones.
    """
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)
    for images, labels in loader:
        with autocast:
            logits = model(images).float()
        if split_labels:
            real, noisy = labels // split_labels, labels % split_labels
            predicted = logits.argmax(1)
            corrupted = real != noisy
            totals += torch.stack([(predicted != real).sum(), ((predicted != noisy) & corrupted).sum(),
                                   corrupted.sum(), torch.tensor(len(labels), device=device)]).double()
            continue
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top5 == labels[:, None]
        loss = F.cross_entropy(logits, labels, reduction="sum")
        totals += torch.stack([loss, hits[:, 0].sum(), hits.any(1).sum(), torch.tensor(len(labels), device=device)]).double()
    if dist.is_initialized():
        dist.all_reduce(totals)  # sync point: once per evaluation
    a, b, c, count = totals.tolist()
    model.train()
    if split_labels:
        return {"train_error_real": a / count, "train_error_corrupted": b / max(c, 1)}
    return {"loss": a / count, "top1": b / count, "top5": c / count}


class Progress:
    """tqdm's bar for an epoch, on rank 0 and a terminal only (images/s and the time left); nothing otherwise:
    the epoch's log line says it all."""

    def __init__(self, enabled, total, epoch, batch_size, initial=0):
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=initial, desc=f"epoch {epoch}", unit="batch", leave=False,
                        disable=not (enabled and sys.stdout.isatty()), file=sys.stdout, dynamic_ncols=True)
        self.batch_size, self.position = batch_size, initial

    def update(self, position):
        self.bar.update(position - self.position)
        self.position = position
        if not self.bar.disable:
            rate = self.bar.format_dict["rate"]
            self.bar.set_postfix_str(f"{rate * self.batch_size:,.0f} images/s" if rate else "", refresh=False)

    def close(self):
        self.bar.close()


def check_restarts_are_safe():
    """Refuse ``torchrun --max-restarts`` where a restarted group could read the failed group's addresses.

    By default torchrun hands its rendezvous store to the workers and keeps it across restarts;
    the restarted process group then finds the previous group's keys there, connects to ports of
    dead workers and hangs or fails (pytorch/pytorch#135712). With c10d rendezvous and
    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, every round gets a fresh store.
    """
    restarts = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", 0))
    if restarts > 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        raise RuntimeError(
            f"torchrun --max-restarts={restarts} needs a fresh store for every restart, else the restarted "
            "workers can connect to the failed ones' ports and hang (pytorch/pytorch#135712): launch with "
            "--standalone or --rdzv-backend=c10d, and TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in torchrun's "
            f"environment, e.g. TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --standalone --max-restarts={restarts} ..."
        )


def main(argv=None):
    # ---- processes and devices: everything comes from torchrun's environment ----
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    config = parse_config(argv, world_size=world_size, cuda=torch.cuda.is_available())
    if config.device == "gpu":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        torch.backends.cudnn.benchmark = True
    else:
        device = torch.device("cpu")
    master = rank == 0
    if world_size > 1:
        check_restarts_are_safe()
        dist.init_process_group("nccl" if config.device == "gpu" else "gloo")
    random.seed(config.seed + rank)
    torch.manual_seed(config.seed + rank)
    checkpoint.check_writable(config.out)  # before anything is written there (every rank writes its own lists)

    # ---- resume: from a file, or OUT/checkpoint.pt when it exists; a group restarted by torchrun
    # (--max-restarts) resumes from there whether or not --resume was given ----
    checkpoint_path = os.path.join(config.out, "checkpoint.pt")
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0))
    if restart and not config.resume:
        config = dataclasses.replace(config, resume="auto")
        if master and os.path.isfile(checkpoint_path):
            log(f"restart {restart} of the group (torchrun --max-restarts): resuming from {checkpoint_path}")
    resume_from = checkpoint_path if config.resume == "auto" else config.resume
    state = None
    if resume_from and os.path.isfile(resume_from):
        state = checkpoint.load(resume_from)
    elif config.resume and config.resume != "auto":
        raise SystemExit(f"--resume {config.resume!r}: no such checkpoint")
    start_epoch, position, step = (state["epoch"], state["position"], state["step"]) if state else (0, 0, 0)
    if state and start_epoch >= config.epochs and not position:  # nothing left: change nothing in the run folder
        if master:
            log(f"{resume_from} is of a finished run ({start_epoch} of {config.epochs} epochs): nothing to do")
        if dist.is_initialized():
            dist.destroy_process_group()
        return 0
    if state and position and len(state["loaders"]) != world_size:
        raise SystemExit(f"{resume_from} was saved inside epoch {start_epoch} by {len(state['loaders'])} rank(s); "
                         f"resume it with as many ranks, not {world_size} (a checkpoint at an epoch's end takes any)")
    if master:
        with open(os.path.join(config.out, "config.json"), "w") as f:
            json.dump({**dataclasses.asdict(config), "world_size": world_size}, f, indent=2)
        where = f"resuming at epoch {start_epoch}" + (f", batch {position}" if position else "") if state else "starting"
        log(f"{where}: {config.model} on {config.dataset} ({config.data}), {world_size} rank(s) on {config.device}, "
            f"batch {config.batch_size}/rank, lr {config.lr:g}")

    # ---- data: DALI pipelines behind make_loader; each epoch's order is a function of the seed and the epoch ----
    train_args, eval_args, train_eval_args = data_sources(config, rank)
    image_train, image_eval = image_options(config) if config.dataset != "speechcommands" else ({}, {})
    common = {"device": config.device, "dtype": image_dtype(config.device, config.amp), "num_threads": config.threads,
              "batch_size": config.batch_size}
    if config.dataset != "speechcommands":
        common["channels_last"] = config.channels_last
    evaluation = {**common, "split": "val", **image_eval}

    def train_loader(mixing):
        # Mixing is built into the graph, so new mixing options are a new pipeline (at a warm-up's end).
        return make_loader(**train_args, **common, **mixing, **image_train, split="train",
                           per_sample=config.per_sample, pairs=config.pairs,
                           label_smoothing=config.label_smoothing, seed=config.seed,
                           aug_repeats=config.aug_repeats)

    eval_loaders = {split: make_loader(**{**evaluation, **args}) for split, args in eval_args.items()}
    train_eval_loader = make_loader(**train_eval_args, **evaluation) if train_eval_args else None
    loader_mixing = mixing_at(start_epoch, config)
    loader = train_loader(loader_mixing)
    num_classes, steps_per_epoch = loader.num_classes, len(loader)

    # ---- model, optimizer, schedule, AMP ----
    model = create_model(config.model, num_classes, config.dropout, config.drop_path).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = None
    if world_size > 1:
        model = DistributedDataParallel(model, device_ids=[local_rank] if config.device == "gpu" else None)
    bare = model.module if world_size > 1 else model
    optimizer = make_optimizer(config, model)
    criterion = loss_function(config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, steps_per_epoch, config))
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp)
    autocast = torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")  # bf16 needs no loss scaling
    best_top1, rows = 0.0, []
    if state:
        checkpoint.restore(state, model=bare, optimizer=optimizer, scheduler=scheduler, scaler=scaler, rank=rank)
        best_top1, rows = state["best_top1"], list(state["metrics"])
    if config.model_ema:
        # timm's EMA of the weights (and buffers), updated after every optimizer step; made from the
        # restored weights, then given the checkpoint's EMA where it has one.
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(bare, decay=config.model_ema_decay, use_warmup=config.model_ema_warmup)
        if state and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
    if master:  # before any training: the folder must hold two checkpoints, or this run would fail at its first save
        checkpoint.check_room(config.out, checkpoint.state_bytes(bare, optimizer_slots=1 if config.opt == "sgd" else 2))

    # ---- metrics: the file says what the checkpoint holds, whatever the moment a run was killed ----
    metrics_path = os.path.join(config.out, "metrics.jsonl")
    steps_path = os.path.join(config.out, "steps.jsonl")
    if master:
        with open(metrics_path, "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
        if config.log_steps:
            kept = []
            if state and os.path.isfile(steps_path):
                with open(steps_path) as f:
                    kept = [line for line in f if json.loads(line)["step"] <= step]
            with open(steps_path, "w") as f:
                f.writelines(kept)

    def save(epoch, position, partial):
        """Every rank's RNG, loader state and running sums gathered; rank 0 writes them with the model's."""
        gathered = [None] * world_size
        mine = {"rng": checkpoint.rng_state(), "loader": loader.state_dict(), "partial": partial}
        if world_size > 1:
            preemption.settle()
            dist.all_gather_object(gathered, mine)
        else:
            gathered = [mine]
        if master:
            start = time.perf_counter()
            checkpoint.save(checkpoint_path, checkpoint.training_state(
                model=bare, optimizer=optimizer, scheduler=scheduler, scaler=scaler, epoch=epoch, position=position,
                step=step, best_top1=best_top1, rng=[g["rng"] for g in gathered],
                loaders=[g["loader"] for g in gathered], partial=[g["partial"] for g in gathered], metrics=rows,
                ema=ema,
            ))
            if position:
                log(f"saved epoch {epoch}, batch {position} (step {step}) in {time.perf_counter() - start:.2f} s")
        preemption.saved()

    # ---- training ----
    preemption = Preemption(device, config.save_every_minutes)
    images_per_sec, row = 0.0, {}
    for epoch in range(start_epoch, config.epochs):
        mixing = mixing_at(epoch, config)
        if mixing != loader_mixing:
            loader = None  # one train pipeline at a time: the old one's memory goes before the new one is built
            loader, loader_mixing = train_loader(mixing), mixing
        loader.set_epoch(epoch)
        partial = {"loss_sum": 0.0, "seen": 0, "seconds": 0.0}
        if epoch == start_epoch and position:  # inside an epoch: this rank's loader and sums from where they were
            loader.load_state_dict(state["loaders"][rank])
            partial = dict(state["partial"][rank])
        model.train()
        progress = Progress(master, len(loader), epoch, config.batch_size, initial=position)
        loss_sum = torch.zeros((), device=device, dtype=torch.float64) + partial["loss_sum"]
        seen, start = partial["seen"], time.perf_counter() - partial["seconds"]
        for position, (images, targets) in enumerate(loader, start=position + 1):
            with autocast:
                logits = model(images)
            loss = criterion(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            if ema is not None:
                ema.update(bare, step=step)
            loss_sum += loss.detach()  # no .item() here: that would be a sync point every step
            seen += len(images)
            progress.update(position)
            if config.log_steps and master:  # a sync point a step: asked for, to compare runs step by step
                with open(steps_path, "a") as f:
                    f.write(json.dumps({"step": step, "epoch": epoch, "loss": loss.item()}) + "\n")
            stop, due = preemption.poll(master)
            if stop or due or (config.save_every and step % config.save_every == 0):
                partial = {"loss_sum": loss_sum.item(), "seen": seen, "seconds": time.perf_counter() - start}
                save(epoch, position, partial)
            if stop:
                progress.close()
                log(f"rank {rank}: signal {signal.Signals(preemption.signal).name}: saved at epoch {epoch}, batch "
                    f"{position}; exiting with status {preemption.exit_status} (resume with --resume)")
                if dist.is_initialized():
                    dist.barrier()  # rank 0 has written the checkpoint before any rank exits
                    dist.destroy_process_group()
                return preemption.exit_status
        position = 0
        progress.close()
        preemption.settle()
        train_loss, seen = all_reduce_sum([loss_sum.item() / max(1, len(loader)), seen], device)
        train_time = time.perf_counter() - start
        images_per_sec = seen / train_time

        row = {"epoch": epoch, "train_loss": train_loss / world_size}
        for split, eval_loader in eval_loaders.items():  # val, and test where the dataset has one
            row.update({f"{split}_{key}": value for key, value in evaluate(model, eval_loader, device, autocast).items()})
            if ema is not None:  # the EMA's weights on the same batches, beside the model's (timm's --model-ema)
                row.update({f"{split}_ema_{key}": value
                            for key, value in evaluate(ema.module, eval_loader, device, autocast).items()})
        if train_eval_loader is not None:
            row.update(evaluate(model, train_eval_loader, device, autocast, split_labels=num_classes))
        best_top1 = max(best_top1, row["val_top1"])
        row.update({"images_per_sec": images_per_sec, "lr": optimizer.param_groups[-1]["lr"],
                    "mixup_alpha": mixing["mixup_alpha"], "cutmix_alpha": mixing["cutmix_alpha"],
                    "time": time.perf_counter() - start})

        # ---- checkpoint, then log: the checkpoint holds the rows, and the file is written from them ----
        rows.append(row)
        save(epoch + 1, 0, {"loss_sum": 0.0, "seen": 0, "seconds": 0.0})
        if master:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")
            log(f"epoch {epoch}: train loss {row['train_loss']:.4f}, val loss {row['val_loss']:.4f}, "
                f"top-1 {row['val_top1']:.4f}, top-5 {row['val_top5']:.4f}"
                + (f", EMA top-1 {row['val_ema_top1']:.4f}" if ema is not None else "")
                + f", {images_per_sec:.0f} images/s, "
                f"lr {row['lr']:.4g}, mixup alpha {mixing['mixup_alpha']:g}"
                + (f", cutmix alpha {mixing['cutmix_alpha']:g}" if mixing["cutmix_alpha"] else "")
                + (f", test top-1 {row['test_top1']:.4f}" if "test_top1" in row else ""))

    preemption.restore()
    if master:
        summary = {"final_top1": row.get("val_top1"), "best_top1": best_top1, "final_top5": row.get("val_top5"),
                   "epochs": config.epochs, "images_per_sec": images_per_sec}
        if "test_top1" in row:
            summary["final_test_top1"] = row["test_top1"]
        with open(os.path.join(config.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        log(f"done: final top-1 {row.get('val_top1', 0):.4f}, best top-1 {best_top1:.4f}, {images_per_sec:.0f} images/s")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0
