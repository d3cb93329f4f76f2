"""Checkpoints written atomically and read back with ``weights_only=True``."""

import contextlib
import os
import random
import shutil

import torch


def save(path, state):
    """Write ``state`` to ``path`` through a temporary file, flushed to the disk, and a rename.

    ``os.replace`` is atomic on POSIX, so a process killed mid-save leaves the previous checkpoint
    whole (at worst a stray ``.tmp`` file remains, which the next save replaces). A save that fails
    removes its ``.tmp`` and raises an ``OSError`` naming the path and the system's error (a full
    disk is ``[Errno 28] No space left on device``, where ``torch.save`` to a path would say only
    ``unexpected pos``).
    """
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f:  # a file of ours, so that a failed write raises the OSError itself
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise OSError(err.errno, f"could not write the checkpoint {path}: {err.strerror}") from err
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def state_bytes(model, optimizer_slots=2):
    """About how many bytes a checkpoint of ``model`` takes: its parameters and buffers, and
    ``optimizer_slots`` optimizer tensors the size of each parameter (SGD's momentum is 1, Adam's moments 2)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return params * (1 + optimizer_slots) + buffers + (1 << 20)  # and about 1 MiB of states and metrics


def check_writable(folder):
    """Make the run folder if it is not there, and refuse one that cannot be written to.

    Raises:
        OSError: naming the folder and the system's error.
    """
    probe = os.path.join(folder, f".write-test-{os.getpid()}")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"0")
        os.remove(probe)
    except OSError as err:
        raise OSError(err.errno, f"the run folder {folder} is not writable: {err.strerror}") from err


def check_room(folder, checkpoint_bytes):
    """Refuse to start a run whose folder has no room for about two checkpoints (the checkpoint, and its
    ``.tmp`` while it is replaced).

    Raises:
        OSError: naming the folder, the free and the needed bytes.
    """
    free = shutil.disk_usage(folder).free
    if free < 2 * checkpoint_bytes:
        raise OSError(28, f"the run folder {folder} has {free:,} bytes free; its checkpoints need about "
                          f"{2 * checkpoint_bytes:,} (two of {checkpoint_bytes:,}): free some room or give another --out")


def load(path):
    """Load a checkpoint; tensors, numbers, strings and containers only, no code."""
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state():
    """This process's RNG states: Python's, torch's CPU generator and, with CUDA, its current GPU's.

    One GPU's state, not every visible GPU's: a rank uses one GPU, and a resume that sees fewer
    GPUs per process (per-rank ``CUDA_VISIBLE_DEVICES``) can then still restore it.
    """
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state):
    """Restore what :func:`rng_state` saved (a GPU state goes to the current GPU)."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def training_state(*, model, optimizer, scheduler, scaler, epoch, position, step, best_top1, rng, loaders, partial,
                   metrics, ema=None):
    """What a checkpoint holds, for :func:`save`; :func:`restore` puts it back.

    Args:
        model: the model, unwrapped from DDP.
        optimizer, scheduler, scaler: the optimizer, learning-rate scheduler and AMP gradient scaler.
        epoch: the epoch to run next, or the one being run when ``position`` > 0.
        position: the batches of ``epoch`` already trained (0 at an epoch's start).
        step: the optimizer steps taken so far.
        best_top1: the best val top-1 so far.
        rng: every rank's :func:`rng_state`, in rank order.
        loaders: every rank's train loader state (``DaliLoader.state_dict``), in rank order.
        partial: every rank's running sums of the epoch in progress (``{"loss_sum", "seen", "seconds"}``).
        metrics: the rows of ``metrics.jsonl`` of the epochs done (the file is rewritten from them at a resume).
        ema: timm's ``ModelEmaV3`` of the weights, or None.
    """
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "epoch": epoch, "position": position, "step": step, "best_top1": best_top1,
            "rng": rng, "loaders": loaders, "partial": partial, "metrics": metrics,
            "ema": None if ema is None else ema.state_dict()}


def restore(state, *, model, optimizer, scheduler, scaler, rank):
    """Put a checkpoint's training state back: weights, optimizer (its momentum buffers), schedule,
    loss scaler, and this rank's RNG states (rank 0's when the run had fewer ranks).

    Args:
        state: what the trainer saved (see :func:`load`).
        model: the model, unwrapped from DDP.
        optimizer: the optimizer over ``model``'s parameters.
        scheduler: the learning-rate scheduler.
        scaler: the AMP gradient scaler.
        rank: this process's rank.
    """
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0])
